"""Nested mappings as dotted keys: the one `flatten` for config diffs, foreign configs and SET overrides.

An empty mapping stays a key of its own (its value `{}`), so a change from `{}` to a filled mapping, or a
section that is present but empty, is never hidden.

>>> flatten({"train": {"lr": 0.001, "betas": [0.9, 0.95]}, "bench": {"matrix": {}}})
{'train.lr': 0.001, 'train.betas': [0.9, 0.95], 'bench.matrix': {}}

Deeper levels join with dots; lists and other values are leaves:

>>> flatten({"data": {"source": {"type": "files", "train": ["a.txt"]}}, "stages": []})
{'data.source.type': 'files', 'data.source.train': ['a.txt'], 'stages': []}
"""

from __future__ import annotations

from typing import Any


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
