"""Tokenizers as `transformers` fast tokenizers, so every checkpoint loads with AutoTokenizer (and lm-eval).

- `bpe`: byte-level BPE trained with `tokenizers` on the training split only;
- `bytes`: the 256 byte symbols, no merges (Lingua's byte tokenizer, seed 000);
- `pretrained`: AutoTokenizer from a local directory (or the hub cache when offline).

Encoding is by batch of documents (`BatchEncoder`: one numpy array per batch, each document followed by EOS), never
a list of every id. A plain byte tokenizer (byte-level symbols, no merges, no normaliser) is a table lookup
on the UTF-8 bytes (`byte_table`), with ids identical to the tokenizer's own; any other tokenizer runs
`tokenizers`' batch encoder, which spreads a batch over all cores itself.

>>> tok = build_tokenizer(ByteTokenizer(type="bytes"), [])
>>> encode_documents(tok, ["hé", ""]).tolist()  # 'h', the two bytes of 'é', EOS; EOS
[72, 128, 103, 0, 0]
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import chain

import numpy as np

from pipeline.config.schema import BPETokenizer, ByteTokenizer, PretrainedTokenizer
from pipeline.errors import DataError

EOS = "<|endoftext|>"


def build_tokenizer(spec, train_docs: Iterable[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if isinstance(spec, PretrainedTokenizer):
        try:
            tok = AutoTokenizer.from_pretrained(spec.path)
        except (OSError, ValueError) as exc:
            raise DataError(
                f"data.tokenizer.path: cannot load tokenizer '{spec.path}' offline "
                f"({str(exc).splitlines()[0][:120]}); run 'make data EXP=<exp>' or give a local directory"
            ) from None
        if tok.eos_token is None:
            tok.add_special_tokens({"eos_token": EOS})
        return tok

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if isinstance(spec, BPETokenizer):
        core = Tokenizer(models.BPE())
        core.pre_tokenizer = byte_level
        trainer = trainers.BpeTrainer(
            vocab_size=spec.vocab_size,
            min_frequency=spec.min_frequency,
            special_tokens=[EOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        core.train_from_iterator(train_docs, trainer=trainer)
    elif isinstance(spec, ByteTokenizer):
        alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
        vocab = {EOS: 0, **{ch: i + 1 for i, ch in enumerate(alphabet)}}
        core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        core.add_special_tokens([EOS])
    else:  # pragma: no cover - the schema admits no other type
        raise DataError(f"data.tokenizer: unsupported type {spec!r}")
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=EOS, bos_token=EOS, pad_token=EOS, unk_token=None, model_max_length=1 << 30
    )


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max else np.uint32)


def encode_documents(tokenizer, docs: list[str]) -> np.ndarray:
    """Documents, each followed by EOS, as one token array (small inputs: prepare writes batch by batch)."""
    return BatchEncoder(tokenizer)(list(docs))


class BatchEncoder:
    """Documents -> ids of the documents joined with EOS, with exactly the ids `tokenizer(docs)` gives."""

    def __init__(self, tokenizer):
        self.eos = tokenizer.eos_token_id
        self.dtype = token_dtype(len(tokenizer))
        # A copy without the truncation or padding a tokenizer.json may carry: `tokenizer(docs)` turns those off too.
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self.backend.no_truncation()
        self.backend.no_padding()
        table = byte_table(tokenizer)
        self.kind = "byte table" if table is not None else "tokenizers batch"
        if table is not None:
            # Byte 0xFF never occurs in UTF-8, so it can end each document in the joined bytes and look up as EOS.
            self.lookup = table.copy()
            self.lookup[0xFF] = self.eos
        # Text equal to an added token (EOS) is that token, not its bytes: such batches go to the tokenizer.
        self.added = [t.content.encode("utf-8") for t in self.backend.get_added_tokens_decoder().values()]

    def __call__(self, docs: list[str]) -> np.ndarray:
        return self.encode(docs)[0]

    def encode(self, docs: list[str]) -> tuple[np.ndarray, int]:
        """The ids and the number of UTF-8 bytes of text they encode."""
        if self.kind == "byte table":
            joined = b"\xff".join([d.encode("utf-8") for d in docs] + [b""])
            if not any(a in joined for a in self.added):
                return self.lookup[np.frombuffer(joined, dtype=np.uint8)], len(joined) - len(docs)
        encodings = self.backend.encode_batch_fast(docs, add_special_tokens=False)
        total = sum(len(e) for e in encodings) + len(docs)
        ids = np.fromiter(chain.from_iterable(chain(e.ids, (self.eos,)) for e in encodings), self.dtype, total)
        return ids, sum(len(d) if d.isascii() else len(d.encode("utf-8")) for d in docs)


def byte_table(tokenizer) -> np.ndarray | None:
    """The id of each of the 256 byte values when `tokenizer` maps text to its UTF-8 bytes one id each (byte-level
    symbols, no merges, no normaliser, no regex split, no prefix space); None for any other tokenizer."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    plain = (
        model.get("type") == "BPE"
        and not model.get("merges")
        and not model.get("dropout")
        and not model.get("continuing_subword_prefix")
        and not model.get("end_of_word_suffix")
        and spec.get("normalizer") is None
        and pre.get("type") == "ByteLevel"
        and not pre.get("use_regex")
        and not pre.get("add_prefix_space")
    )
    if not plain:
        return None
    vocab = model.get("vocab") or {}
    symbols = _byte_symbols()
    if not all(ch in vocab for ch in symbols):
        return None
    return np.array([vocab[ch] for ch in symbols], dtype=token_dtype(len(tokenizer)))


def _byte_symbols() -> list[str]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte value 0..255."""
    keep = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    symbols, extra = {}, 0
    for b in range(256):
        if b in keep:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]
