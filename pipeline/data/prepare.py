"""Prepare stage: documents -> tokenizer + token streams in `runs/<EXP>/prepared/`.

>>> run_prepare(load_resolved(Path("runs/smoke")), Path("runs/smoke"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline import records
from pipeline.atomic import atomic_dir
from pipeline.config.schema import Experiment
from pipeline.data.sources import SPLITS, describe, load_documents
from pipeline.data.tokenizer import build_tokenizer, encode_documents
from pipeline.rundir import RunDir

log = logging.getLogger(__name__)


def run_prepare(cfg: Experiment, run_dir: Path) -> Path:
    run = RunDir(run_dir)
    docs = load_documents(cfg.data.source, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.max_documents)
    log.info("documents: %s", {k: len(v) for k, v in docs.items()})
    tokenizer = build_tokenizer(cfg.data.tokenizer, docs["train"])
    vocab = len(tokenizer)
    if cfg.model.vocab_size and vocab > cfg.model.vocab_size:
        from pipeline.errors import ConfigError

        raise ConfigError(
            f"model.vocab_size: the tokenizer has {vocab} tokens, more than model.vocab_size={cfg.model.vocab_size}"
        )
    dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max else np.uint32
    stats = {
        "source": describe(cfg.data.source),
        "tokenizer": cfg.data.tokenizer.type,
        "vocab_size": vocab,
        "eos_token_id": tokenizer.eos_token_id,
        "token_dtype": np.dtype(dtype).name,
        "splits": {},
    }
    with atomic_dir(run.prepared) as tmp:
        tokenizer.save_pretrained(tmp / "tokenizer")
        for split in SPLITS:
            ids = np.asarray(encode_documents(tokenizer, docs[split]), dtype=dtype)
            np.save(tmp / f"{split}.npy", ids)
            stats["splits"][split] = {
                "documents": len(docs[split]),
                "characters": sum(map(len, docs[split])),
                "tokens": int(ids.size),
            }
            log.info("%s: %d documents, %d tokens", split, len(docs[split]), ids.size)
        records.PREPARED_STATS.write_file(tmp / "stats.json", stats)  # the folder is built aside, then renamed
        (tmp / "DONE").write_text("ok\n")
    return run.prepared


def load_tokens(run_dir: Path, split: str) -> np.ndarray:
    path = RunDir(run_dir).prepared / f"{split}.npy"
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        from pipeline.errors import DataError

        if isinstance(exc, PermissionError):
            raise
        why = "missing" if isinstance(exc, FileNotFoundError) else f"damaged ({str(exc).splitlines()[0][:120]})"
        raise DataError(
            f"{path}: {why}; prepare it again: rm {RunDir(run_dir).prepared / 'DONE'} && make report EXP=<exp>"
        ) from None
