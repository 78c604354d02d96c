"""Generate apptainer.def from the Containerfile with spython, and check both for spython's known mistakes.

    python containers/convert.py Containerfile > apptainer.def     # what `make apptainer.def` runs
    python containers/convert.py Containerfile --check apptainer.def

spython 0.3.14 converts a subset of the Containerfile syntax correctly; outside it the definition is wrong
in ways that only show at build or run time (merged stages, CMD folded into %runscript, relative %files
destinations resolved against / instead of WORKDIR, several labels merged into one, HEALTHCHECK copied into
%test, ARG without a default left as ${X} in From:). The checks below catch those, on both files.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HEADER = "# Generated from Containerfile by containers/convert.py (spython); do not edit - run `make apptainer.def`.\n"


def convert(containerfile: Path) -> str:
    from spython.main.parse.parsers import DockerParser
    from spython.main.parse.writers import SingularityWriter

    text = SingularityWriter(DockerParser(str(containerfile)).recipe).convert().rstrip() + "\n"
    return HEADER + fix_labels(text)


def fix_labels(text: str) -> str:
    """spython writes `%labels` lines as key="value", but Apptainer reads `key value` (split at the first
    space): a real build turned them into keys with empty values and split the description mid-sentence.
    This is the one post-processing step applied to spython's output."""

    def rewrite(match: re.Match) -> str:
        lines = []
        for line in match.group(2).splitlines():
            label = re.fullmatch(r'\s*([^\s=]+)="(.*)"\s*', line)
            lines.append(f"{label.group(1)} {label.group(2)}" if label else line)
        return match.group(1) + "\n".join(lines) + "\n"

    return re.sub(r"(^%labels\n)(.*?)\n(?=^%|\Z)", rewrite, text, flags=re.M | re.S)


def containerfile_problems(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    problems = []
    if sum(line.upper().startswith("FROM ") for line in lines) != 1:
        problems.append("exactly one FROM (spython merges stages)")
    if not any(line == 'ENTRYPOINT ["python", "-m", "pipeline"]' for line in lines):
        problems.append('ENTRYPOINT ["python", "-m", "pipeline"] is missing')
    for word in ("CMD", "USER", "HEALTHCHECK", "SHELL", "ONBUILD"):
        if any(line.upper().startswith(word + " ") for line in lines):
            problems.append(f"{word} is not converted correctly by spython")
    for line in lines:
        if line.upper().startswith("ARG ") and "=" not in line:
            problems.append(f"ARG without a default: {line}")
        if line.upper().startswith("LABEL ") and len(re.findall(r'\S+="[^"]*"|\S+=\S+', line[6:])) > 1:
            problems.append(f"one LABEL per line: {line}")
        if line.upper().startswith("ENV ") and "=" not in line.split(None, 2)[1]:
            problems.append(f"ENV KEY value form crashes spython: {line}")
        if line.upper().startswith(("COPY ", "ADD ")):
            if "--from" in line or "--chown" in line:
                problems.append(f"unsupported COPY flag: {line}")
            dest = line.split()[-1]
            if not dest.startswith("/"):
                problems.append(f"COPY destination must be absolute: {line}")
        if line.upper().startswith("RUN ") and ("--mount" in line or "<<" in line):
            problems.append(f"RUN --mount / heredoc is copied verbatim: {line}")
    return problems


def definition_problems(text: str) -> list[str]:
    problems = []
    sections = dict(re.findall(r"^%(\w+)\n(.*?)(?=^%\w+|\Z)", text, flags=re.M | re.S))
    froms = re.findall(r"^From:\s*(.+)$", text, flags=re.M)
    if len(froms) != 1 or text.count("Bootstrap:") != 1:
        problems.append("one Bootstrap/From expected (merged stages?)")
    if froms and "${" in froms[0]:
        problems.append(f"unresolved variable in From: {froms[0]}")
    for line in sections.get("files", "").strip().splitlines():
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("/"):
            problems.append(f"%files destination must be absolute: {line}")
    run = [line.strip() for line in sections.get("runscript", "").strip().splitlines()]
    if 'exec python -m pipeline "$@"' not in run or any("/bin/bash" in line for line in run):
        problems.append(f'%runscript must exec python -m pipeline "$@" (CMD folded in?): {run}')
    if [line for line in run if line.startswith("exec ")] != ['exec python -m pipeline "$@"']:
        problems.append(f"%runscript has extra exec lines: {run}")
    if "test" in sections:
        problems.append("%test section (a HEALTHCHECK copied verbatim)")
    for line in sections.get("labels", "").strip().splitlines():
        key = line.split(" ", 1)[0]
        if "=" in key or '"' in key or " " not in line.strip():
            problems.append(f"%labels line must be `key value` (Apptainer splits at the first space): {line}")
    if "export HF_HUB_OFFLINE=1" not in sections.get("environment", ""):
        problems.append("%environment lacks export HF_HUB_OFFLINE=1")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("containerfile", type=Path)
    parser.add_argument("--check", type=Path, metavar="DEF", help="compare with a committed definition instead")
    args = parser.parse_args(argv)
    problems = containerfile_problems(args.containerfile.read_text())
    generated = convert(args.containerfile)
    problems += definition_problems(generated)
    if problems:
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 1
    if args.check:
        if args.check.read_text() != generated:
            print(
                f"error: {args.check} differs from a fresh conversion of {args.containerfile}; run "
                f"`make apptainer.def`",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
