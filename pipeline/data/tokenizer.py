"""Tokenizers as `transformers` fast tokenizers, so every checkpoint loads with AutoTokenizer (and lm-eval).

- `bpe`: byte-level BPE trained with `tokenizers` on the training split only;
- `bytes`: the 256 byte symbols, no merges (Lingua's byte tokenizer, seed 000);
- `pretrained`: AutoTokenizer from a local directory (or the hub cache when offline).
"""

from __future__ import annotations

from collections.abc import Iterable

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


def encode_documents(tokenizer, docs: list[str], batch: int = 256) -> list[int]:
    """Concatenate documents, each followed by EOS, as one token stream."""
    eos = tokenizer.eos_token_id
    out: list[int] = []
    for start in range(0, len(docs), batch):
        for ids in tokenizer(docs[start : start + batch], add_special_tokens=False)["input_ids"]:
            out.extend(ids)
            out.append(eos)
    return out
