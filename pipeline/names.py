"""Names that become paths: experiments (`EXP`, `EXPS`, `BASELINE`, `--exp` of an import), comparisons.

A name is one path component: `[A-Za-z0-9][A-Za-z0-9._-]*`, so `runs/<name>/` and `reports/<name>/` can never
point outside `runs/` and `reports/`. The Makefile checks the same pattern before anything runs.

>>> check_name("smoke_lr-2.b", "EXP")
'smoke_lr-2.b'
>>> valid("../x"), valid(""), valid("a b"), valid(".hidden")
(False, False, False, False)
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.errors import ConfigError

PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
NAME = re.compile(PATTERN)


def valid(name: str) -> bool:
    return isinstance(name, str) and NAME.fullmatch(name) is not None


def check_name(name: str, what: str = "EXP") -> str:
    if not valid(name):
        shown = "empty" if not name else f"{name!r} is not a valid name"
        raise ConfigError(f"{what}: {shown}: use letters, digits, '.', '_' and '-', starting with a letter or digit")
    return name


def check_run_dir(run_dir: str | Path, what: str = "run directory") -> Path:
    """A stage's run directory: its last component must be a valid name (runs/<EXP>)."""
    path = Path(run_dir)
    check_name(path.name if str(run_dir) not in ("", ".") else "", what)
    return path
