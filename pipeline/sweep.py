"""Repeats and sweeps: one experiment, several member runs (`repeat:` seeds × `sweep:` points).

An experiment with `repeat: {seeds: [...]}` (or `SEEDS="0 1 2"`, a shorthand for `SET="repeat.seeds=[0,1,2]"`)
and/or `sweep: {grid: {...}, zip: {...}}` expands into members. Each member is a complete normal run in its own
directory under `runs/<EXP>/` — its own config, stamps, lock and provenance — made from the experiment plus the
member's overrides (the swept keys and `train.seed`), with `repeat:` and `sweep:` removed:

    seeds only            runs/<EXP>/seed-<n>/
    a sweep, one seed     runs/<EXP>/<point>/
    sweep × seeds         runs/<EXP>/<point>/seed-<n>/

Point names join `<abbreviation>-<value>` with `_` (`lr-3e-3_bs-16`): member directories are Make targets, and
GNU Make cannot take `=` or `,` in a target name. The abbreviations are `ABBREVIATIONS`; another key uses its
last dotted component.

>>> point_name({"train.lr": 0.003, "train.batch_size": 16})
'lr-3e-3_bs-16'
>>> [format_value(v) for v in (1e-3, 0.0003, 1.5e-3, 0.01, 0.5, 2.0, 300, True, "bf16", 1e20)]
['1e-3', '3e-4', '1.5e-3', '1e-2', '0.5', '2', '300', 'true', 'bf16', '1e20']
>>> [p for p in grid_points({"a": [1, 2], "b": ["x", "y"]}, {})]
[{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
>>> grid_points({"a": [1, 2]}, {"c": [5, 6], "d": [7, 8]})
[{'a': 1, 'c': 5, 'd': 7}, {'a': 1, 'c': 6, 'd': 8}, {'a': 2, 'c': 5, 'd': 7}, {'a': 2, 'c': 6, 'd': 8}]
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.names import valid

# Short names of the keys people sweep; a key not listed here uses its last dotted component.
ABBREVIATIONS: dict[str, str] = {
    "train.lr": "lr",
    "train.batch_size": "bs",
    "train.grad_accum": "accum",
    "train.weight_decay": "wd",
    "train.warmup_steps": "warmup",
    "train.steps": "steps",
    "train.epochs": "epochs",
    "train.min_lr_ratio": "minlr",
    "train.clip": "clip",
    "train.precision": "prec",
    "train.betas": "betas",
    "model.arch": "arch",
    "model.dim": "dim",
    "model.layers": "layers",
    "model.heads": "heads",
    "model.kv_heads": "kv",
    "model.ffn_dim": "ffn",
    "model.dropout": "dropout",
    "model.max_seq_len": "ctx",
    "data.seq_len": "seq",
    "data.tokenizer.vocab_size": "vocab",
}
# Keys a sweep may not vary: the experiment's identity, the member machinery itself, and the seed (repeat: seeds).
NOT_SWEPT = ("name", "extends", "sweep", "repeat", "imported", "train.seed")


def format_value(value: Any) -> str:
    """A swept value as it appears in a point name: short, and only name characters."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        if value != 0 and (abs(value) < 0.1 or abs(value) >= 1e15):
            mantissa, exponent = f"{value:.6e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return repr(value)
    if isinstance(value, list | tuple):
        return "-".join(format_value(v) for v in value)
    return str(value)


def abbreviations(keys: Sequence[str]) -> dict[str, str]:
    """Each swept key's short name; keys whose short names would collide keep their full dotted name."""
    short = {k: ABBREVIATIONS.get(k, k.rsplit(".", 1)[-1]) for k in keys}
    clashes = {s for s in short.values() if list(short.values()).count(s) > 1}
    return {k: (k if s in clashes else s) for k, s in short.items()}


def point_name(point: dict[str, Any]) -> str:
    short = abbreviations(list(point))
    return "_".join(f"{short[k]}-{format_value(v)}" for k, v in point.items())


def grid_points(grid: dict[str, list], zipped: dict[str, list]) -> list[dict[str, Any]]:
    """The grid's cartesian product (last key fastest) × the zip lists taken side by side."""
    rows = [dict(zip(grid, values, strict=True)) for values in product(*grid.values())] if grid else [{}]
    n = len(next(iter(zipped.values()))) if zipped else 1
    zips = [{k: v[i] for k, v in zipped.items()} for i in range(n)] if zipped else [{}]
    return [{**g, **z} for g in rows for z in zips]


def lookup(tree: Any, dotted: str) -> Any:
    """The value at a dotted key of a (validated) config; AttributeError when a part does not exist."""
    node, parts = tree, dotted.split(".")
    for i, part in enumerate(parts):
        fields = getattr(type(node), "model_fields", None)
        if fields is None:
            raise AttributeError(f"{'.'.join(parts[:i])} is not set, so {part} does not exist")
        if part not in fields:
            raise AttributeError(f"{part} does not exist in the schema")
        node = getattr(node, part)
    return node


def yaml_value(value: Any) -> str:
    """A value as the YAML text of a SET item that reads back as the same value."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()


@dataclass(frozen=True)
class Member:
    name: str  # its directory relative to runs/<EXP>/, e.g. `lr-3e-3/seed-1`
    point_name: str | None
    seed: int
    point: dict[str, Any]
    overrides: list[str]
    config: Any = field(repr=False, compare=False)  # the member's Experiment

    def record(self) -> dict:
        """Its entry of members.json (records.Member)."""
        return {"name": self.name, "run_dir": self.name, "point_name": self.point_name, "seed": self.seed,
                "point": self.point, "overrides": self.overrides}  # fmt: skip


def is_multi(cfg) -> bool:
    return cfg.repeat is not None or cfg.sweep is not None


def base_overrides(items: Sequence[str]) -> list[str]:
    """The SET items that reach every member: all but those about the members themselves (repeat/sweep)."""
    return [i for i in items if i.partition("=")[0].split(".")[0] not in ("repeat", "sweep")]


def expand(cfg, overrides: Sequence[str] = (), load=None) -> list[Member]:
    """The members of an experiment, each with its validated config (`load(name, overrides)` builds them;
    default `load_experiment`). A value that does not fit its key is one error line naming the member."""
    if load is None:
        from pipeline.config.load import load_experiment as load
    if not is_multi(cfg):
        return []
    sweep = cfg.sweep
    points = grid_points(dict(sweep.grid), dict(sweep.zip)) if sweep else [{}]
    seeds = list(cfg.repeat.seeds) if cfg.repeat else [cfg.train.seed]
    base = base_overrides(overrides)
    members, seen = [], {}
    for raw in points:
        sets = [f"{k}={yaml_value(v)}" for k, v in raw.items()]
        for seed in seeds:
            member_sets = [*sets, f"train.seed={seed}"]
            try:
                # One SET string, shell-quoted: load_experiment splits it once (a value may hold spaces or braces).
                member_cfg = load(cfg.name, [shlex.join([*base, *member_sets])])
            except ConfigError as exc:
                shown = ", ".join(member_sets)
                raise ConfigError(f"sweep: the member with {shown}: {exc}") from None
            point = {k: lookup(member_cfg, k) for k in raw}  # typed: "1e-3" in YAML 1.1 is a string until here
            member_sets = [*(f"{k}={yaml_value(v)}" for k, v in point.items()), f"train.seed={seed}"]
            pname = point_name(point) if point else None
            if pname is not None and not valid(pname):
                raise ConfigError(
                    f"sweep: point {pname!r} is not a valid directory name; swept strings may use letters, "
                    "digits, '.', '_' and '-'"
                )
            parts = [p for p in (pname, f"seed-{seed}" if cfg.repeat else None) if p]
            name = "/".join(parts)
            if name in seen:
                raise ConfigError(f"sweep: points {seen[name]} and {raw} have the same name {name!r}; list each once")
            seen[name] = raw
            # The member's own report says which member it is (the experiment's title is the aggregate's).
            title = f"{member_cfg.report.title or cfg.name} · {name}"
            report = member_cfg.report.model_copy(update={"title": title})
            member_cfg = member_cfg.model_copy(update={"sweep": None, "repeat": None, "report": report})
            members.append(Member(name, pname, seed, point, member_sets, member_cfg))
    return members


def find(members: list[Member], name: str, experiment: str) -> Member:
    for member in members:
        if member.name == name:
            return member
    known = ", ".join(m.name for m in members) or "none (the experiment has no repeat: or sweep:)"
    raise ConfigError(f"MEMBER: {name!r} is not a member of {experiment}; members: {known}")


def members_record(cfg, members: list[Member]) -> dict:
    """runs/<EXP>/members.json (records.Members)."""
    swept = [*cfg.sweep.grid, *cfg.sweep.zip] if cfg.sweep else []
    return {
        "experiment": cfg.name,
        "description": cfg.description,
        "swept_keys": swept,
        "seeds": list(cfg.repeat.seeds) if cfg.repeat else [cfg.train.seed],
        "report": cfg.report.model_dump(mode="json"),
        "members": [m.record() for m in members],
    }


def members_targets(cfg, members: list[Member]) -> str:
    """runs/<EXP>/stamps/targets.mk of a multi-member experiment: its members and its aggregate's files."""
    from pipeline.stages import report_files

    outputs = " ".join(f"$(REPORT_DIR)/{f}" for f in report_files(cfg))
    return (
        "# written by `python -m pipeline resolve` (pipeline/sweep.py): the members of this experiment; do not edit\n"
        f"MEMBERS := {' '.join(m.name for m in members)}\n"
        f"REPORT_OUTPUTS := {outputs}\n"
    )


def freeze_members(cfg, members: list[Member], root: Path) -> None:
    """Write members.json and the Make targets of a multi-member experiment into `root` (runs/<EXP>/)."""
    from pipeline import records
    from pipeline.atomic import write_if_changed

    # write_if_changed: Make re-renders the aggregate when the member list changes, not on every resolve.
    record = members_record(cfg, members)
    records.MEMBERS.record.model_validate(record)
    write_if_changed(records.MEMBERS.at(root), json.dumps(record, indent=2) + "\n")
    write_if_changed(root / "stamps" / "targets.mk", members_targets(cfg, members))
    write_if_changed(root / "stamps" / "layout", "members\n")
