"""Data sources and tokenizers, for real: the offline built-in texts, local files, the HF `datasets` path
with local files, and the one-line error for a dataset missing from the offline cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SHARED, TINY, pipeline_cmd, pipeline_env, write_experiment

from pipeline.config.schema import BPETokenizer, ByteTokenizer, FilesSource, HFSource
from pipeline.data.sources import holdout_split, kjv_chapters, load_documents
from pipeline.data.tokenizer import build_tokenizer, encode_documents
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
    assert ids.count(tok.eos_token_id) == 2
    assert tok.decode(ids[: ids.index(tok.eos_token_id)]) == docs[0]


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
