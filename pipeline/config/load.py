"""Load an experiment: defaults -> `extends:` parents -> the experiment YAML -> `SET=` overrides.

Every failure becomes a `ConfigError` whose message is one line naming the file and the dotted key,
e.g. `experiments/x.yaml: train.lr: expected a number, got 'fast'`.

`SET=` overrides: space-separated `key.path=value` items, each value read as YAML (numbers, lists):

>>> parse_overrides(["train.steps=50 model.arch=gpt2", "data.source.train=[a.txt,b.txt]"])
{'train': {'steps': 50}, 'model': {'arch': 'gpt2'}, 'data': {'source': {'train': ['a.txt', 'b.txt']}}}
>>> parse_overrides(["train.lr"])
Traceback (most recent call last):
...
pipeline.errors.ConfigError: SET: expected key.path=value, got 'train.lr'
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipeline import redact
from pipeline.config.schema import Experiment, FilesSource
from pipeline.errors import ConfigError
from pipeline.names import check_name

EXPERIMENTS_DIR = Path("experiments")
RUNS_DIR = Path("runs")


def imported_config_path(name: str, runs: Path = RUNS_DIR) -> Path:
    """Where `make import` keeps the config it derived; it stands in for experiments/<name>.yaml."""
    return runs / name / "import" / "config.yaml"


def experiment_path(name: str, root: Path = EXPERIMENTS_DIR) -> Path:
    path = root / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in root.glob("*.yaml"))
        hint = difflib.get_close_matches(name, known, n=1)
        extra = f"; did you mean '{hint[0]}'?" if hint else f"; known: {', '.join(known) or 'none'}"
        raise ConfigError(f"{path}: experiment file not found{extra}")
    return path


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that rejects a key given twice in one mapping (YAML would keep the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                continue
            if first is not None:
                raise ConfigError(
                    f"{self.name}: line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                    f"(first given on line {first}); keep one"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_text_file(path: Path) -> str:
    """A user's text file as UTF-8, or one line naming the file and the first byte that is not."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def load_yaml_text(text: str, name: str):
    """YAML with duplicate keys rejected; `name` is the file named in errors."""
    loader = _UniqueKeyLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml_text(read_text_file(path), str(path))
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
    try:
        path = experiment_path(name, root)
    except ConfigError as exc:
        if not seen:
            raise
        raise ConfigError(f"{root / (seen[-1] + '.yaml')}: extends: {exc}") from None
    raw = _read_yaml(path)
    parent = raw.get("extends")
    merged: dict = {}
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: extends: expected an experiment name, got {parent!r}")
        check_name(parent, f"{path}: extends")
        merged = _load_chain(parent, root, origin, seen + (name,))
    merged = _merge(merged, raw, origin, str(path))
    merged["name"] = name
    return merged


def split_overrides(items: Iterable[str]) -> list[str]:
    """`SET="a=1 b='x y'"` -> ["a=1", "b=x y"] (shell quoting); an unbalanced quote is one error line."""
    out: list[str] = []
    for chunk in items:
        try:
            out += shlex.split(chunk)
        except ValueError as exc:
            raise ConfigError(
                f"SET: {str(exc).lower()} in {chunk!r}; put a value that holds an apostrophe or spaces "
                'in double quotes, e.g. report.title="Bob\'s run"'
            ) from None
    return out


def parse_overrides(items: Iterable[str]) -> dict:
    """`["train.steps=50", "model.arch=gpt2"]` (or one space-separated string) -> nested dict."""
    tree: dict = {}
    for item in split_overrides(items):
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"SET: expected key.path=value, got {item!r}")
        try:
            value = load_yaml_text(text, f"SET: {key}") if text else ""
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


def load_experiment(
    name: str, overrides: Iterable[str] = (), root: Path = EXPERIMENTS_DIR, runs: Path = RUNS_DIR
) -> Experiment:
    check_name(name, "EXP")
    origin: dict[str, str] = {}
    imported = imported_config_path(name, runs)
    if not (root / f"{name}.yaml").is_file() and imported.is_file():
        tree, source = _read_yaml(imported), str(imported)  # an imported run: no experiment file exists
    else:
        tree = _load_chain(name, root, origin)
        source = str(experiment_path(name, root))
    tree = _merge(tree, parse_overrides(overrides), origin, "SET")
    try:
        exp = Experiment.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, source)) from None
    _check_files_exist(exp, origin, source)
    redact.configure(exp.report.redact)  # this run's extra secret patterns, for everything written from now on
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
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
}


_TAGS = {"data.source": "builtin, hf, files", "data.tokenizer": "bpe, bytes, pretrained"}


def _priority(err: dict) -> int:
    # An unknown key explains a "missing" error next to it (a typo such as `trian:`), so report it first.
    return {"extra_forbidden": 0, "missing": 2}.get(err["type"], 1)


def _describe(exc: ValidationError, origin: dict[str, str], default_file: str) -> str:
    err = sorted(exc.errors(), key=_priority)[0]
    loc = _display_loc(err["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    kind, given = err["type"], err.get("input")
    if kind == "value_error":
        msg = str(err["ctx"]["error"])
        # Cross-field validators start their message with the key at fault; blame the file that set it.
        named = msg.split(":", 1)[0] if ":" in msg.split(" ")[0] else None
        where = _origin_of(named or key, origin, default_file)
        return f"{where}: {msg}" if named else f"{where}: {key}: {msg}"
    where = _origin_of(key, origin, default_file)
    if kind == "extra_forbidden":
        fields = _fields_at(err["loc"][:-1])
        hint = difflib.get_close_matches(str(loc[-1]), fields, n=1)
        tail = f"did you mean '{hint[0]}'?" if hint else f"expected one of: {', '.join(fields)}"
        return f"{where}: {key}: unknown key; {tail}"
    if kind == "missing":
        return f"{where}: {key}: required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = err.get("ctx", {}).get("expected_tags") or _TAGS.get(key, "")
        got = given.get("type") if isinstance(given, dict) else given
        if kind == "union_tag_not_found":
            return f"{where}: {key}.type: required key is missing (expected one of {tags})"
        return f"{where}: {key}.type: expected one of {tags}, got {got!r}"
    if kind == "literal_error":
        return f"{where}: {key}: expected one of {err.get('ctx', {}).get('expected', '')}, got {given!r}"
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
