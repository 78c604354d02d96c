"""Load an experiment: defaults -> `extends:` parents -> the experiment YAML -> `SET=` overrides.

Every failure becomes a `ConfigError` whose message is one line naming the file and the dotted key,
e.g. `experiments/x.yaml: train.lr: expected a number, got 'fast'`.
"""

from __future__ import annotations

import difflib
import shlex
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config.schema import Experiment, FilesSource
from pipeline.errors import ConfigError

EXPERIMENTS_DIR = Path("experiments")


def experiment_path(name: str, root: Path = EXPERIMENTS_DIR) -> Path:
    path = root / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in root.glob("*.yaml"))
        hint = difflib.get_close_matches(name, known, n=1)
        extra = f"; did you mean '{hint[0]}'?" if hint else f"; known: {', '.join(known) or 'none'}"
        raise ConfigError(f"{path}: experiment file not found{extra}")
    return path


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def _merge(base: dict, override: dict, origin: dict[str, str], source: str, prefix: str = "") -> dict:
    """Deep-merge mappings (lists and scalars are replaced) and remember which file set each key."""
    out = dict(base)
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not _retagged(out[key], value):
            out[key] = _merge(out[key], value, origin, source, dotted + ".")
        else:
            out[key] = value
            origin[dotted] = source
            if isinstance(value, dict):
                for sub in _dotted_keys(value, dotted + "."):
                    origin[sub] = source
    return out


def _retagged(old: dict, new: dict) -> bool:
    """A tagged section (e.g. data.source) that changes its `type` is replaced, not merged key by key."""
    return "type" in old and "type" in new and old["type"] != new["type"]


def _dotted_keys(tree: dict, prefix: str) -> Iterable[str]:
    for key, value in tree.items():
        yield f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _dotted_keys(value, f"{prefix}{key}.")


def _load_chain(name: str, root: Path, origin: dict[str, str], seen: tuple[str, ...] = ()) -> dict:
    if name in seen:
        raise ConfigError(f"{experiment_path(seen[-1], root)}: extends: cycle {' -> '.join(seen + (name,))}")
    path = experiment_path(name, root)
    raw = _read_yaml(path)
    parent = raw.get("extends")
    merged: dict = {}
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: extends: expected an experiment name, got {parent!r}")
        merged = _load_chain(parent, root, origin, seen + (name,))
    merged = _merge(merged, raw, origin, str(path))
    merged["name"] = name
    return merged


def parse_overrides(items: Iterable[str]) -> dict:
    """`["train.steps=50", "model.arch=gpt2"]` (or one space-separated string) -> nested dict."""
    tree: dict = {}
    for item in (tok for chunk in items for tok in shlex.split(chunk)):
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"SET: expected key.path=value, got {item!r}")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"SET: {key}: {part} is set to a value and a mapping at once")
        node[leaf] = value
    return tree


def load_experiment(name: str, overrides: Iterable[str] = (), root: Path = EXPERIMENTS_DIR) -> Experiment:
    origin: dict[str, str] = {}
    tree = _load_chain(name, root, origin)
    tree = _merge(tree, parse_overrides(overrides), origin, "SET")
    try:
        exp = Experiment.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, str(experiment_path(name, root)))) from None
    _check_files_exist(exp, origin, str(experiment_path(name, root)))
    return exp


def _check_files_exist(exp: Experiment, origin: dict[str, str], default: str) -> None:
    source = exp.data.source
    if not isinstance(source, FilesSource):
        return
    for split in ("train", "validation", "test"):
        for i, path in enumerate(getattr(source, split)):
            if not path.is_file():
                key = f"data.source.{split}"
                raise ConfigError(f"{origin.get(key, default)}: {key}[{i}]: file not found: {path}")


# --------------------------------------------------------------------------- error text
_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "dict_type": "a mapping",
    "model_type": "a mapping", "list_type": "a list", "tuple_type": "a list",
}


def _describe(exc: ValidationError, origin: dict[str, str], default_file: str) -> str:
    err = exc.errors()[0]
    loc = _display_loc(err["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    where = _origin_of(key, origin, default_file)
    kind, given = err["type"], err.get("input")
    if kind == "extra_forbidden":
        fields = _fields_at(err["loc"][:-1])
        hint = difflib.get_close_matches(str(loc[-1]), fields, n=1)
        tail = f"did you mean '{hint[0]}'?" if hint else f"expected one of: {', '.join(fields)}"
        return f"{where}: {key}: unknown key; {tail}"
    if kind == "missing":
        return f"{where}: {key}: required key is missing"
    if kind == "value_error":
        msg = str(err["ctx"]["error"])
        # Cross-field validators already name their key at the start of the message.
        return f"{where}: {msg}" if ":" in msg.split(" ")[0] else f"{where}: {key}: {msg}"
    if kind in ("literal_error", "union_tag_invalid"):
        expected = err.get("ctx", {}).get("expected", "")
        return f"{where}: {key}: expected one of {expected}, got {given!r}"
    if kind == "union_tag_not_found":
        return f"{where}: {key}: missing 'type' (expected one of {err['ctx']['expected_tags']})"
    if kind in _TYPE_WORDS:
        return f"{where}: {key}: expected {_TYPE_WORDS[kind]}, got {given!r}"
    return f"{where}: {key}: {err['msg'].lower()}, got {given!r}"


def _origin_of(key: str, origin: dict[str, str], default: str) -> str:
    while key:
        if key in origin:
            return origin[key]
        key = key.rpartition(".")[0]
    return default


def _walk(loc: tuple) -> tuple[tuple, type[BaseModel] | None]:
    """Follow a pydantic error location through the schema.

    Returns the location as the user wrote it (pydantic inserts the discriminator tag of tagged
    unions, e.g. `data.source.files.train`) and the section model found at its end.
    """
    shown: list = []
    model: type[BaseModel] | None = Experiment
    members: list[type[BaseModel]] = []
    for part in loc:
        if members:
            chosen = [m for m in members if part in getattr(m.model_fields["type"].annotation, "__args__", ())]
            members = []
            if chosen:
                model = chosen[0]
                continue
        shown.append(part)
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            model = None
            continue
        found = _annotation_models(model.model_fields[part].annotation)
        model = found[0] if len(found) == 1 else None
        members = found if len(found) > 1 else []
    return tuple(shown), model


def _display_loc(loc: tuple) -> tuple:
    return _walk(loc)[0]


def _fields_at(loc: tuple) -> list[str]:
    model = _walk(loc)[1]
    return list(model.model_fields) if model else []


def _annotation_models(annotation: Any) -> list[type[BaseModel]]:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _annotation_models(a)]
