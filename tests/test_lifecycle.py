"""Early stopping and the best checkpoint's rule, the continuation hash, and hash stability for configs that do not
use the new keys (fast, no training; the training runs are in tests/test_custom_model.py)."""

from __future__ import annotations

import copy

import pytest
from conftest import TINY

from pipeline.config.schema import EarlyStopping, Experiment, KeepBest
from pipeline.train.lifecycle import Lifecycle


def experiment(**train) -> Experiment:
    body = copy.deepcopy(TINY)
    body["train"].update(train)
    return Experiment.model_validate({"name": "tiny", **body})


def passes(life: Lifecycle, metric: str, values: list[float]) -> list[tuple[bool, bool]]:
    return [
        (best, why is not None)
        for best, why in (life.observe({"step": 10 * (i + 1), metric: v}) for i, v in enumerate(values))
    ]


def test_early_stopping_counts_passes_without_an_improvement_beyond_min_delta():
    life = Lifecycle(EarlyStopping(metric="val_loss", patience=2, min_delta=0.05), KeepBest(metric="val_loss"))
    got = passes(life, "val_loss", [3.0, 2.97, 2.8, 2.78, 2.79])
    # keep_best takes every improvement; early stopping only those by more than min_delta
    assert [best for best, _ in got] == [True, True, True, True, False]
    assert [stop for _, stop in got] == [False, False, False, False, True]
    assert life.stopping.best == 2.8 and life.stopping.best_step == 30
    assert life.keeping.best == 2.78 and life.keeping.best_step == 40


def test_accuracy_is_better_higher_and_nonfinite_values_never_improve():
    life = Lifecycle(EarlyStopping(metric="val_accuracy", patience=2), None)
    got = passes(life, "val_accuracy", [0.1, 0.2, "nan", 0.15])
    assert [stop for _, stop in got] == [False, False, False, True]
    assert life.stopping.best == 0.2


def test_the_untrained_baseline_is_not_a_candidate_and_a_replay_gives_the_same_state():
    cfg = experiment(early_stopping={"patience": 3}, keep_best={"metric": "val_loss"})
    rows = [{"step": 0, "val_loss": 1.0}, {"step": 4, "val_loss": 5.0}, {"step": 8, "val_loss": 5.5}]
    life = Lifecycle.replayed(cfg, rows)
    assert life.keeping.best == 5.0 and life.keeping.best_step == 4  # step 0's 1.0 is not the best checkpoint
    assert life.stopping.since_best == 1


def test_only_a_length_change_keeps_the_continuation_hash():
    from pipeline.stages import continuation_hash, stage_hashes

    base = experiment()
    longer, other = experiment(steps=20), experiment(lr=1e-3)
    assert stage_hashes(longer)["train"] != stage_hashes(base)["train"]
    assert continuation_hash(longer) == continuation_hash(base)
    assert continuation_hash(other) != continuation_hash(base)


RELEASED_MODEL_KEYS = (
    "arch", "dim", "layers", "heads", "kv_heads", "ffn_dim", "vocab_size", "max_seq_len", "dropout",
    "tie_embeddings", "attn_implementation",
)  # fmt: skip
RELEASED_TRAIN_KEYS = (
    "steps", "epochs", "batch_size", "grad_accum", "lr", "min_lr_ratio", "warmup_steps", "weight_decay", "betas",
    "clip", "precision", "seed", "device", "compile", "log_every", "eval_every", "eval_batches", "checkpoint_every",
    "keep_checkpoints", "stop_on_nonfinite",
)  # fmt: skip


def test_unset_new_keys_and_the_mirror_leave_the_train_hash_as_it_was():
    from pipeline.config.resolve import digest, to_dict
    from pipeline.stages import stage_hashes

    cfg = experiment()
    d = to_dict(cfg)
    # The model/train keys of the release before model.custom, train.command and the lifecycle keys: a config that
    # sets none of the newer keys must hash exactly as it did then (upgrading reruns nothing).
    model = {k: v for k, v in d["model"].items() if k in RELEASED_MODEL_KEYS}
    train = {k: v for k, v in d["train"].items() if k in RELEASED_TRAIN_KEYS}
    assert set(d["model"]) > set(model) and set(d["train"]) > set(train)  # newer keys exist and are left out
    before = digest({"prepare": stage_hashes(cfg)["prepare"], "model": model, "train": train, "seq_len": cfg.seq_len})
    assert stage_hashes(cfg)["train"] == before
    assert stage_hashes(experiment(mirror=["tensorboard"]))["train"] == before
    assert stage_hashes(experiment(keep_best={"metric": "val_loss"}))["train"] != before


@pytest.mark.parametrize(
    ("train", "eval_", "message"),
    [
        ({}, {"checkpoint": "best"}, "eval.checkpoint: 'best' needs train.keep_best"),
        ({"mirror": ["wandb", "wandb"]}, {}, "train.mirror: name each tracker once"),
        ({"early_stopping": {"metric": "loss"}}, {}, "val_loss"),
    ],
)
def test_bad_lifecycle_keys_are_errors(train, eval_, message):
    body = copy.deepcopy(TINY)
    body["train"].update(train)
    body["eval"].update(eval_)
    with pytest.raises(ValueError, match=message):
        Experiment.model_validate({"name": "tiny", **body})


def test_a_missing_mirror_package_is_one_line(monkeypatch):
    import importlib.util

    from pipeline.errors import ConfigError
    from pipeline.train import mirror

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    mirror.check_available(["tensorboard"])
    with pytest.raises(ConfigError, match=r"^train.mirror: wandb needs the wandb package, which is not installed"):
        mirror.check_available(["tensorboard", "wandb"])


def test_the_tensorboard_mirror_reads_back_through_the_importer(tmp_path):
    """Fast round trip of the writer alone (the training run's is in tests/test_custom_model.py)."""
    from pipeline.importers import read_source
    from pipeline.train.mirror import Mirror

    rows = [{"step": s, "loss": 5.0 - 0.1 * s, "lr": 1e-3 / s, "mfu": None, "segment": 0} for s in (1, 2, 3)]
    val = {"step": 3, "val_loss": 4.5, "val_perplexity": 90.0, "time_utc": "x"}
    m = Mirror(["tensorboard"], tmp_path, "t", steps_planned=3, config={})
    for row in [*rows, val]:
        m.log(row)
    m.close()
    imp = read_source(tmp_path / "mirror" / "tensorboard", "tensorboard")
    assert [(r["step"], r["loss"], r["lr"]) for r in imp.metrics] == [
        (r["step"], pytest.approx(r["loss"], rel=1e-6), pytest.approx(r["lr"], rel=1e-6)) for r in rows
    ]
    assert [(v["step"], v["val_loss"]) for v in imp.validation] == [(3, 4.5)]
    assert imp.steps_planned == 3
