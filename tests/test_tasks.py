"""The local lm-eval tasks in pipeline/tasks/: the generator is deterministic, the shipped data is well-formed,
and the harness really runs all three tasks offline on a tiny random model from a foreign working directory."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from conftest import REPO

from pipeline.tasks import build_tasks

TASKS_DIR = REPO / "pipeline" / "tasks"
DATA_DIR = TASKS_DIR / "data"
TASK_NAMES = ["labnote_cloze", "labnote_nextword", "labnote_rolling"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict]]:
    return {name: read_jsonl(DATA_DIR / name) for name in build_tasks.FILES}


@pytest.fixture
def offline(monkeypatch):
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(key, "1")


def test_generator_is_deterministic(tmp_path: Path):
    written = build_tasks.write(tmp_path)
    assert sorted(p.name for p in written) == sorted(build_tasks.FILES)
    assert sorted(p.name for p in DATA_DIR.glob("*.jsonl")) == sorted(build_tasks.FILES)
    for path in written:
        assert path.read_bytes() == (DATA_DIR / path.name).read_bytes(), (
            f"{path.name} differs from the committed file: run 'python -m pipeline.tasks.build_tasks'"
        )


def test_data_files_are_small(data):
    assert sum((DATA_DIR / name).stat().st_size for name in data) <= 150_000


def test_cloze_items_are_valid(data):
    for name, n in (
        ("labnote_cloze.jsonl", build_tasks.N_CLOZE),
        ("labnote_cloze_fewshot.jsonl", build_tasks.N_FEWSHOT),
    ):
        rows = data[name]
        assert len(rows) == n and len({r["id"] for r in rows}) == n
        for r in rows:
            assert len(r["context"].split()) == build_tasks.CLOZE_CONTEXT_WORDS
            assert len(r["choices"]) == 4 and len({c.lower() for c in r["choices"]}) == 4
            assert all(len(c.split()) == build_tasks.CLOZE_CONTINUATION_WORDS for c in r["choices"])
            assert isinstance(r["label"], int) and 0 <= r["label"] < 4
        labels = [r["label"] for r in rows]
        if n >= 100:  # positions are shuffled: every position is used, none dominates
            assert all(0.15 < labels.count(k) / n < 0.35 for k in range(4))
    test_contexts = {r["context"] for r in data["labnote_cloze.jsonl"]}
    assert not test_contexts & {r["context"] for r in data["labnote_cloze_fewshot.jsonl"]}


def test_nextword_items_are_valid(data):
    for name, n in (
        ("labnote_nextword.jsonl", build_tasks.N_NEXTWORD),
        ("labnote_nextword_fewshot.jsonl", build_tasks.N_FEWSHOT),
    ):
        rows = data[name]
        assert len(rows) == n and len({r["id"] for r in rows}) == n
        for r in rows:
            assert r["prompt"].startswith("Text: ") and r["prompt"].endswith("\nNext word:")
            words = r["prompt"][len("Text: ") : -len("\nNext word:")].split()
            assert len(words) == build_tasks.NEXTWORD_CONTEXT_WORDS
            assert r["target"].startswith(" ") and r["target"][1:].isalpha()  # one word, no punctuation
    test_prompts = {r["prompt"] for r in data["labnote_nextword.jsonl"]}
    assert not test_prompts & {r["prompt"] for r in data["labnote_nextword_fewshot.jsonl"]}


def test_rolling_passages_are_valid(data):
    rows = data["labnote_rolling.jsonl"]
    assert len(rows) == build_tasks.N_ROLLING and len({r["text"] for r in rows}) == len(rows)
    assert all(build_tasks.MIN_PASSAGE_CHARS <= len(r["text"]) <= build_tasks.MAX_PASSAGE_CHARS for r in rows)


def test_task_yamls_resolve_data_files_independently_of_cwd(tmp_path, monkeypatch, offline):
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(tmp_path)
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    assert set(TASK_NAMES + ["labnote_local"]) <= set(tm.all_tasks)
    tasks = tm.load(["labnote_local"])["tasks"]
    assert sorted(tasks) == TASK_NAMES
    sizes = {name: len(task.eval_docs) for name, task in tasks.items()}
    assert sizes == {"labnote_cloze": 300, "labnote_nextword": 200, "labnote_rolling": 40}
    for task in tasks.values():
        for path in task.config.dataset_kwargs["data_files"].values():
            assert Path(path).is_absolute() and Path(path).parent == DATA_DIR


@pytest.mark.slow
def test_harness_runs_all_tasks_on_a_tiny_model(tmp_path, monkeypatch, offline):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from pipeline.config.schema import BPETokenizer, ModelConfig
    from pipeline.data.sources import kjv_chapters
    from pipeline.data.tokenizer import build_tokenizer
    from pipeline.model import build_model

    model_dir = tmp_path / "tiny"
    tok = build_tokenizer(BPETokenizer(type="bpe", vocab_size=300), kjv_chapters()[:50])
    model = build_model(ModelConfig(dim=32, layers=1, heads=2, max_seq_len=256), len(tok), tok.eos_token_id)
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)

    work = tmp_path / "elsewhere"  # not the repository root: data paths must not depend on the cwd
    work.mkdir()
    monkeypatch.chdir(work)
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    loaded = tm.load(TASK_NAMES)["tasks"]
    loaded["labnote_nextword"].set_config(key="num_fewshot", value=5)  # per-task shots, from its fewshot split
    limit = 10
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_dir), "dtype": "float32"},
        tasks=[loaded[name] for name in TASK_NAMES],
        task_manager=tm,
        batch_size=8,
        device="cpu",
        limit=limit,
    )

    assert out["max_length"] == 256  # the HF wrapper takes the model's max_position_embeddings
    assert out["n-shot"] == {"labnote_cloze": 0, "labnote_nextword": 5, "labnote_rolling": 0}
    assert {name: out["n-samples"][name]["effective"] for name in TASK_NAMES} == dict.fromkeys(TASK_NAMES, limit)
    res = out["results"]
    for task, keys in (
        ("labnote_cloze", ("acc,none", "acc_norm,none")),
        ("labnote_nextword", ("exact_match,none", "exact_match,first_word")),
    ):
        for key in keys:
            assert 0.0 <= res[task][key] <= 1.0
            stderr = res[task][key.replace(",", "_stderr,")]
            assert math.isfinite(stderr) and stderr >= 0.0
    rolling = res["labnote_rolling"]
    assert all(
        math.isfinite(rolling[k]) for k in ("word_perplexity,none", "byte_perplexity,none", "bits_per_byte,none")
    )
    assert rolling["word_perplexity,none"] > 1 and rolling["byte_perplexity,none"] > 1
    # an untrained model with a 300-token vocabulary: about log2(300) bits per token, a few bits per byte
    assert 1.0 < rolling["bits_per_byte,none"] < 12.0
    assert math.isclose(rolling["bits_per_byte,none"], math.log2(rolling["byte_perplexity,none"]), rel_tol=1e-6)
    # the few-shot prompt really holds 5 solved examples from the fewshot split
    prompt = out["samples"]["labnote_nextword"][0]["arguments"][0][0]
    assert prompt.count("\nNext word:") == 6 and prompt.endswith("\nNext word:")
    # everything but config.model_dtype (a torch.dtype) is plain JSON
    json.dumps({k: v for k, v in out.items() if k != "config"})
    json.dumps(out, default=str)
    assert os.getcwd() == str(work)
