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
