"""Absolute `data_files` for the local lm-eval tasks, so they load from any working directory.

How the task YAMLs find their data, and why this way (checked against lm-eval 0.4.13 + datasets 5.2):

- lm-eval hands `dataset_kwargs` to `datasets.load_dataset(path=dataset_path, **dataset_kwargs)` unchanged
  (`ConfigurableTask.download`, lm_eval/api/task.py). Nothing in lm-eval rewrites `data_files`, and
  `datasets` resolves a relative `data_files` entry against the *current working directory*
  (`load_dataset("json", data_files="data/x.jsonl")` from /tmp looks for /tmp/data/x.jsonl). So a
  relative path in the YAML works only when the eval runs from `pipeline/tasks/`.
- `include:` paths are the only thing lm-eval resolves relative to the YAML (lm_eval/tasks/_yaml_loader.py).
- A `!function mod.name` tag is resolved when the task is built (`load_yaml(..., resolve_func=True)` in
  lm_eval/tasks/_factory.py) by loading `mod.py` *from the YAML's own directory* and returning
  `getattr(mod, name)` - any attribute, not only a function. (While lm-eval only indexes tasks it reads the
  YAML with `resolve_func=False` and the tag becomes a harmless path string.)

So each YAML keeps the plain `dataset_path: json` loader and writes
`dataset_kwargs: {data_files: !function paths.<task>}`; the dicts below are built from `__file__`, so they
hold absolute paths to `pipeline/tasks/data/` wherever the checkout lives and whatever the cwd is. The
absolute paths then show up in the results' `configs` (useful provenance, JSON-serialisable).

Alternatives considered: `custom_dataset: !function ...` (a loader callable; works, but lm-eval logs a
warning on every load and passes all task metadata as kwargs); a `class:` Python task overriding
`download()` (more code, depends on private task internals); an absolute path written into the YAML at
build time (breaks when the repository moves).
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"


def _files(**splits: str) -> dict[str, str]:
    return {split: str(DATA_DIR / name) for split, name in splits.items()}


labnote_cloze = _files(test="labnote_cloze.jsonl", fewshot="labnote_cloze_fewshot.jsonl")
labnote_nextword = _files(test="labnote_nextword.jsonl", fewshot="labnote_nextword_fewshot.jsonl")
labnote_rolling = _files(test="labnote_rolling.jsonl")
