"""Data sources and tokenizers, for real: the offline built-in texts, local files, the HF `datasets` path
with local files, and the one-line error for a dataset missing from the offline cache."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, TINY, pipeline_cmd, pipeline_env, write_experiment

from pipeline.config.schema import BPETokenizer, ByteTokenizer, FilesSource, HFSource
from pipeline.data.prepare import TokenWriter, prepare_text_file
from pipeline.data.sources import holdout_split, iter_text_documents, kjv_chapters, load_documents
from pipeline.data.tokenizer import BatchEncoder, build_tokenizer, byte_table, encode_documents
from pipeline.errors import DataError


def test_kjv_is_english_chapters():
    chapters = kjv_chapters()
    assert len(chapters) > 1000
    assert chapters[0].startswith("In the beginning God created the heaven and the earth.")
    assert sum(map(len, chapters)) > 3_000_000


@pytest.mark.slow
def test_gensim_wiki_articles_are_clean_text():
    from pipeline.data.sources import gensim_wiki_articles

    articles = gensim_wiki_articles()
    assert len(articles) > 90 and sum(map(len, articles)) > 2_500_000
    assert articles[0].startswith("Anarchism is a political philosophy")
    assert not any("'''" in a or "[[" in a for a in articles)


def test_holdout_split_is_deterministic_and_disjoint():
    docs = [f"doc {i}" for i in range(100)]
    a, b = holdout_split(docs, 0.1, 0.05), holdout_split(docs, 0.1, 0.05)
    assert a == b
    assert (len(a["train"]), len(a["validation"]), len(a["test"])) == (85, 10, 5)
    assert not set(a["train"]) & set(a["validation"]) and not set(a["validation"]) & set(a["test"])


def test_files_source_text_and_jsonl(tmp_path: Path):
    (tmp_path / "a.txt").write_text("first doc\nline two\n\nsecond doc\n\n\nthird doc\n")
    (tmp_path / "b.jsonl").write_text('{"text": "json one"}\n\n{"text": "json two"}\n')
    text = FilesSource(
        type="files", train=[tmp_path / "a.txt"], validation=[tmp_path / "a.txt"], test=[tmp_path / "a.txt"]
    )
    docs = load_documents(text, 0.1, 0.1)
    assert docs["train"] == ["first doc\nline two", "second doc", "third doc"]
    jsonl = FilesSource(type="files", format="jsonl", train=[tmp_path / "b.jsonl"] * 10)
    docs = load_documents(jsonl, 0.1, 0.1)  # no validation/test files: carved from train
    assert len(docs["validation"]) == 2 and len(docs["test"]) == 2 and len(docs["train"]) == 16


def test_jsonl_error_names_file_and_line(tmp_path: Path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"txt": "wrong key"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected an object with a string 'text' field"):
        load_documents(FilesSource(type="files", format="jsonl", train=[tmp_path / "bad.jsonl"]), 0.1, 0.1)


def test_hf_datasets_path_with_local_files(tmp_path: Path):
    """The real `datasets.load_dataset` code path (the 'text' builder needs no hub)."""
    (tmp_path / "train.txt").write_text("\n".join(f"line {i}" for i in range(50)))
    (tmp_path / "test.txt").write_text("held out one\nheld out two\n")
    src = HFSource(
        type="hf",
        name="text",
        data_files={"train": [str(tmp_path / "train.txt")], "test": [str(tmp_path / "test.txt")]},
    )
    docs = load_documents(src, 0.1, 0.1)
    assert docs["test"] == ["held out one", "held out two"]
    assert len(docs["validation"]) == 5 and len(docs["train"]) == 45


@pytest.mark.parametrize(
    "spec, vocab", [(BPETokenizer(type="bpe", vocab_size=300), 300), (ByteTokenizer(type="bytes"), 257)]
)
def test_tokenizers_round_trip(spec, vocab):
    docs = kjv_chapters()[:30]
    tok = build_tokenizer(spec, docs)
    assert len(tok) == vocab
    ids = encode_documents(tok, docs[:2])
    assert ids.dtype == np.uint16 and (ids == tok.eos_token_id).sum() == 2
    assert tok.decode(ids[: int(np.argmax(ids == tok.eos_token_id))]) == docs[0]


# Text that could trip a byte table: multi-byte UTF-8, emoji, controls, the EOS string itself, empty documents.
TRICKY = ["hé", "", "日本語 \n\t x", "😀 a\x00b\x7f", "a<|endoftext|>b", "  ", "\r\n", "ÿ\u0100\uffff", "<|endoftext|>"]


def reference_ids(tok, docs: list[str]) -> list[int]:
    """What prepare wrote before it streamed: the tokenizer's own ids, EOS after each document."""
    out: list[int] = []
    for ids in tok(docs, add_special_tokens=False)["input_ids"]:
        out += [*ids, tok.eos_token_id]
    return out


@pytest.mark.parametrize("spec, kind", [(ByteTokenizer(type="bytes"), "byte table"),
                                        (BPETokenizer(type="bpe", vocab_size=300), "tokenizers batch")])  # fmt: skip
def test_batch_encoder_gives_the_tokenizers_own_ids(spec, kind):
    docs = kjv_chapters()[:40]
    tok = build_tokenizer(spec, docs)
    encoder = BatchEncoder(tok)
    assert encoder.kind == kind
    for batch in (docs, TRICKY[:4] + TRICKY[5:8], TRICKY, [TRICKY[1]]):  # with and without the EOS string
        ids, nbytes = encoder.encode(batch)
        assert ids.tolist() == reference_ids(tok, batch)
        assert nbytes == sum(len(d.encode("utf-8")) for d in batch)
    assert encode_documents(tok, TRICKY + docs[:3]).tolist() == reference_ids(tok, TRICKY + docs[:3])
    tok.backend_tokenizer.enable_truncation(8)  # a tokenizer.json may carry truncation; prepare never truncates
    assert encode_documents(tok, docs[:3]).tolist() == reference_ids(tok, docs[:3])
    assert len(encode_documents(tok, docs[:3])) > 3 * 9


def test_byte_table_only_for_plain_byte_tokenizers():
    byte_tok = build_tokenizer(ByteTokenizer(type="bytes"), [])
    table = byte_table(byte_tok)
    assert table is not None and sorted(table.tolist()) == list(range(1, 257))  # EOS is 0
    assert byte_table(build_tokenizer(BPETokenizer(type="bpe", vocab_size=300), kjv_chapters()[:20])) is None


def test_token_writer_appends_chunks_into_one_memory_mapped_npy(tmp_path: Path):
    path = tmp_path / "t.npy"
    chunks = [np.arange(5, dtype=np.uint32), np.zeros(0, np.uint32), np.arange(1_000_003, dtype=np.uint32) % 70_000]
    with TokenWriter(path, np.uint32) as out:
        for chunk in chunks:
            out.write(chunk)
    back = np.load(path, mmap_mode="r")
    assert isinstance(back, np.memmap) and back.dtype == np.uint32 and back.shape == (1_000_008,)
    assert np.array_equal(back, np.concatenate(chunks))
    with pytest.raises(TypeError, match="dtype int64"), TokenWriter(tmp_path / "u.npy", np.uint16) as out:
        out.write(np.arange(3))


def test_streamed_text_documents_equal_splitting_the_whole_file(tmp_path: Path):
    text = "a\r\nb  \r\n \t\n\nc\x0c\n\n\n d \n e\n  \n\x0b\n f  \n\n\n" + "g" * 100_000 + "\n\nlast"
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    whole = path.read_text(encoding="utf-8")  # universal newlines, as the stream reads it
    expected = [b.strip() for b in re.split(r"\n\s*\n", whole) if b.strip()]
    assert list(iter_text_documents(path)) == expected
    assert expected[:3] == ["a\nb", "c", "d \n e"] and expected[-1] == "last"


def test_prepare_text_file_streams_a_file_into_tokens(tmp_path: Path):
    docs = ["first doc\nline two", "second doc é", "third"]
    (tmp_path / "c.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    tok = build_tokenizer(ByteTokenizer(type="bytes"), [])
    stats = prepare_text_file(tmp_path / "c.txt", tok, tmp_path / "out")
    tokens = np.load(tmp_path / "out" / "train.npy", mmap_mode="r")
    assert tokens.tolist() == reference_ids(tok, docs)
    assert stats["documents"] == 3 and stats["tokens"] == tokens.size
    assert stats["bytes"] == sum(len(d.encode()) for d in docs) and stats["characters"] == sum(map(len, docs))
    assert stats["seconds"] > 0 and stats["text_mb_per_s"] > 0 and stats["tokens_per_s"] > 0


def test_prepare_stage_writes_memory_mapped_splits_and_its_throughput(tmp_path: Path):
    from pipeline import records
    from pipeline.config.schema import Experiment
    from pipeline.data.prepare import load_tokens, run_prepare
    from pipeline.train.batches import as_sequences

    cfg = Experiment.model_validate({"name": "tiny", **TINY})
    run_prepare(cfg, tmp_path)
    stats = records.PREPARED_STATS.read(tmp_path)
    docs = load_documents(cfg.data.source, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.max_documents)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "prepared" / "tokenizer")
    for split in ("train", "validation", "test"):
        tokens = load_tokens(tmp_path, split)
        assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
        assert tokens.tolist() == reference_ids(tok, docs[split])
        assert stats.splits[split].tokens == tokens.size and stats.splits[split].documents == len(docs[split])
        rows = as_sequences(tokens, 32)
        assert np.shares_memory(rows, tokens)  # the rows are a view of the mapped file, not a copy
    t = stats.throughput
    assert t.encoder == "tokenizers batch" and t.encode_seconds > 0 and t.tokens_per_s > 0 and t.text_mb_per_s > 0
    assert t.load_seconds >= 0 and t.tokenizer_seconds > 0


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_missing_hub_dataset_is_one_clear_line(tmp_path: Path):
    body = {
        **TINY,
        "data": {**TINY["data"], "source": {"type": "hf", "name": "wikitext", "config": "wikitext-2-raw-v1"}},
    }
    write_experiment(tmp_path, "hubonly", body)
    env = pipeline_env(HF_HOME=str(tmp_path / "empty-cache"))
    assert subprocess.run(pipeline_cmd("resolve", "hubonly"), cwd=tmp_path, env=env).returncode == 0
    proc = subprocess.run(
        pipeline_cmd("prepare", "runs/hubonly"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data.source: dataset hf:wikitext/wikitext-2-raw-v1")
    assert "make data EXP=hubonly" in lines[0]
    assert not (tmp_path / "runs" / "hubonly" / "prepared").exists()


@pytest.mark.skipif(
    not (SHARED / "data" / "wikitext-2" / "valid.txt").is_file(),
    reason="needs ../shared/data/wikitext-2 (developer machines only)",
)
def test_wikitext2_local_files():
    src = FilesSource(
        type="files", train=[SHARED / "data/wikitext-2/valid.txt"], test=[SHARED / "data/wikitext-2/test.txt"]
    )
    docs = load_documents(src, 0.05, 0.05)
    assert len(docs["train"]) > 1000 and len(docs["test"]) > 1000 and docs["validation"]


def test_make_data_does_not_download_tasks_from_include_path(tmp_path: Path, monkeypatch):
    """`make data` asks the same question as the eval stage (`is_local_task`): a task whose YAML is in
    eval.harness.include_path is the user's own, so only the hub task is fetched.

    lm-eval's task loading is replaced by a recorder: the real one would index ~15k bundled tasks and
    download the hub task's dataset, and this test must run offline and only check what was asked for."""
    import sys
    import types

    from pipeline.config.schema import Experiment
    from pipeline.data.fetch import fetch

    tasks_dir = tmp_path / "my_tasks"
    (tasks_dir / "sub").mkdir(parents=True)
    (tasks_dir / "sub" / "my_task.yaml").write_text("task: my_task\ndataset_path: json\n")
    asked = []
    fake = types.ModuleType("lm_eval.tasks")
    fake.TaskManager = lambda *a, **kw: None
    fake.get_task_dict = lambda names, manager: asked.append(list(names))
    monkeypatch.setitem(sys.modules, "lm_eval.tasks", fake)
    harness = {"tasks": ["my_task", {"task": "piqa", "limit": 10}, "labnote_cloze"], "include_path": [str(tasks_dir)]}
    cfg = Experiment.model_validate({"name": "mine", **TINY, "eval": {**TINY["eval"], "harness": harness}})
    fetched = fetch(cfg)
    assert asked == [["piqa"]]  # not my_task (include_path), not labnote_cloze (pipeline/tasks/)
    assert fetched == ["lm-eval task datasets piqa"]
    asked.clear()
    only_local = {**harness, "tasks": ["my_task", "labnote_cloze"]}
    assert fetch(Experiment.model_validate({"name": "mine", **TINY, "eval": {"harness": only_local}})) == []
    assert asked == []
