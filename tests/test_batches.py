"""Batch order: drawn once per epoch, the same as drawing it from `seed + epoch` at every step (resume needs it)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.train.batches import BatchPlan


def reference(plan: BatchPlan, seed: int, step: int) -> list[np.ndarray]:
    """The definition, recomputed from scratch for every step."""
    epoch, within = divmod(step, plan.steps_per_epoch)
    order = np.random.default_rng(seed + epoch).permutation(plan.n_sequences)
    chunk = order[within * plan.sequences_per_step : (within + 1) * plan.sequences_per_step]
    return list(chunk.reshape(plan.world_size, plan.grad_accum, plan.micro_batch)[plan.rank])


@pytest.mark.parametrize("world_size,rank", [(1, 0), (2, 1)])
def test_cached_epoch_order_equals_the_definition_across_epoch_boundaries(world_size: int, rank: int):
    plan = BatchPlan(1000, micro_batch=4, grad_accum=2, world_size=world_size, rank=rank)
    steps = [0, 1, plan.steps_per_epoch - 1, plan.steps_per_epoch, 3 * plan.steps_per_epoch + 2, 5]  # and back
    for step in steps:
        got, want = plan.indices(7, step), reference(plan, 7, step)
        assert len(got) == len(want) and all((a == b).all() for a, b in zip(got, want))


def test_a_resumed_plan_sees_the_same_batches_and_epochs_differ():
    fresh, resumed = BatchPlan(500, 5, 1), BatchPlan(500, 5, 1)
    for step in range(0, 40):
        fresh.indices(3, step)
    assert all((a == b).all() for a, b in zip(fresh.indices(3, 150), resumed.indices(3, 150)))
    assert not (BatchPlan(500, 5, 1).epoch_order(3, 0) == BatchPlan(500, 5, 1).epoch_order(3, 1)).all()


def test_interrupted_and_resumed_loading_gives_the_uninterrupted_batches(tmp_path):
    """The train loop's path: rows of the memory-mapped prepared file, step by step. A run stopped after step 7
    and resumed by a new process (new plan, new loader, same seed) must load exactly the batches an
    uninterrupted run loads, across epoch boundaries. (Losses after a real SIGKILL: tests/test_train.py.)"""
    import torch

    from pipeline.data.prepare import TokenWriter, load_tokens
    from pipeline.train.batches import DeviceBatches, as_sequences

    (tmp_path / "prepared").mkdir()
    with TokenWriter(tmp_path / "prepared" / "train.npy", np.uint16) as out:
        for start in range(0, 16 * 103, 500):  # in chunks, as prepare writes it
            out.write(np.arange(start, min(start + 500, 16 * 103), dtype=np.uint16))
    rows = as_sequences(load_tokens(tmp_path, "train"), 16)  # 103 sequences: 12 steps of 8 per epoch
    plan = lambda: BatchPlan(len(rows), micro_batch=4, grad_accum=2)  # noqa: E731
    cpu = torch.device("cpu")

    def batches(start: int, stop: int) -> list[list[torch.Tensor]]:
        return [b for _, b in DeviceBatches(rows, plan(), 11, cpu).steps(start, stop)]

    straight = batches(0, 30)
    resumed = batches(0, 7) + batches(7, 30)
    assert len(straight) == len(resumed) == 30
    for a, b in zip(straight, resumed):
        assert len(a) == 2 and all(torch.equal(x, y) for x, y in zip(a, b))
    # each epoch covers distinct sequences (row i holds tokens 16i..16i+15, so a row's first token names it)
    epoch0 = torch.cat([t for step in straight[:12] for t in step])[:, 0] // 16
    assert len(set(epoch0.tolist())) == 96
    assert not all(torch.equal(x, y) for x, y in zip(straight[0], straight[12]))  # epoch 1 is another order
