"""Learning-curve phases on synthetic curves with known breakpoints (seeded noise, no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.report.phases import (
    EARLY_STOPPED,
    PLATEAUED,
    RISING,
    STILL_IMPROVING,
    TOO_SHORT,
    Phase,
    segment,
    smooth,
    verdict,
)

# A found breakpoint may be this far from the true one, as a fraction of the curve's step range
# (the module docstring states the same). Noise in these curves is 1.5% of the value range.
BREAKPOINT_TOLERANCE = 0.05

STEPS = np.arange(0, 5000, 10, dtype=float)  # 500 logged steps, 0..4990
SPAN = STEPS[-1] - STEPS[0]


def noise(sigma: float, n: int = STEPS.size, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sigma, n)


def plateau_drop_plateau(steps: np.ndarray) -> np.ndarray:
    """3.0 until step 1600, straight down to 1.0 at step 3000, then 1.0."""
    return np.interp(steps, [0, 1600, 3000, 5000], [3.0, 3.0, 1.0, 1.0])


@pytest.mark.parametrize("steps", [STEPS, np.linspace(0, 4990, 20_000)], ids=["500 points", "20k points binned"])
def test_three_phases_found_near_the_true_breakpoints(steps):
    values = plateau_drop_plateau(steps) + noise(0.03, steps.size)
    phases = segment(steps, values)
    assert [p.kind for p in phases] == ["plateau", "rapid drop", "plateau"]
    tol = BREAKPOINT_TOLERANCE * SPAN
    assert abs(phases[1].start_step - 1600) <= tol, phases
    assert abs(phases[2].start_step - 3000) <= tol, phases
    assert phases[0].start_step == steps[0] and phases[-1].end_step == steps[-1]
    assert phases[1].slope == pytest.approx(-2.0 / 1.4, rel=0.1)  # per 1000 steps
    assert verdict(steps, values) == PLATEAUED


def test_exponential_decay_is_still_improving():
    values = 1.0 + 3.0 * np.exp(-STEPS / 1500) + noise(0.01)  # last 20% of steps: -8.4%
    phases = segment(STEPS, values)
    assert phases[0].kind == "rapid drop"
    assert all(p.kind != "rising" for p in phases), phases
    assert all(p.improvement_pct > 0 for p in phases), phases
    assert verdict(STEPS, values) == STILL_IMPROVING


def test_u_shaped_curve_is_rising_at_the_end():
    values = 1.0 + 2.0 * ((STEPS - 3000) / 3000) ** 2 + noise(0.02)  # minimum at step 3000
    phases = segment(STEPS, values)
    assert phases[0].kind in ("rapid drop", "slow decrease")
    assert phases[-1].kind == "rising"
    assert phases[-1].improvement_pct < 0
    assert verdict(STEPS, values) == RISING


@pytest.mark.parametrize("seed", range(5))
def test_noisy_straight_line_is_one_phase(seed):
    values = 3.0 - 0.4 * STEPS / 1000 + noise(0.05, seed=seed)
    phases = segment(STEPS, values)
    assert len(phases) == 1, phases
    assert phases[0].kind == "slow decrease"
    assert phases[0].slope == pytest.approx(-0.4, abs=0.02)


def test_exact_straight_line_is_one_phase():
    phases = segment(STEPS, 3.0 - 0.4 * STEPS / 1000)
    assert len(phases) == 1
    assert phases[0].slope == pytest.approx(-0.4)
    assert phases[0].start_value == pytest.approx(3.0) and phases[0].end_value == pytest.approx(3.0 - 0.4 * 4.99)


@pytest.mark.parametrize("seed", range(5))
def test_pure_noise_is_one_plateau(seed):
    values = 3.0 + noise(0.05, seed=seed)
    phases = segment(STEPS, values)
    assert [p.kind for p in phases] == ["plateau"]
    assert abs(phases[0].improvement_pct) < 1.0
    assert verdict(STEPS, values) == PLATEAUED


@pytest.mark.parametrize("seed", range(5))
def test_noise_swings_over_one_percent_are_not_a_trend(seed):
    # Level 0.1, noise 10%: the fitted tail change reaches 2-4% for most seeds, but |t| < 2.
    values = 0.1 + noise(0.01, seed=seed)
    assert verdict(STEPS, values) == PLATEAUED


def test_constant_curve_is_one_flat_plateau():
    assert segment(STEPS, np.full(STEPS.size, 2.5)) == [Phase(0.0, 4990.0, 2.5, 2.5, 0.0, 0.0, "plateau")]
    assert verdict(STEPS, np.full(STEPS.size, 2.5)) == PLATEAUED


def test_slow_decline_is_a_plateau_of_the_shape_but_still_improving():
    # 3.0 -> 1.0 by step 1000, then 1.0 -> 0.95 by step 5000 (noise-free): normalised slope of the
    # tail -0.05/4000 * 4990 / 2.05 = -0.03 -> "plateau"; yet -1.3% over the last 20% of steps.
    values = np.where(STEPS < 1000, 3.0 - 2.0 * STEPS / 1000, 1.0 - 0.05 * (STEPS - 1000) / 4000)
    assert [p.kind for p in segment(STEPS, values)] == ["rapid drop", "plateau"]
    assert verdict(STEPS, values) == STILL_IMPROVING


def test_insignificant_slope_on_a_short_noisy_curve_is_a_plateau():
    # Normalised slope -0.4 (beyond the 0.1 plateau band) but t = -1.4: noise, not a decrease.
    values = [3.0, 3.07, 3.06, 2.97, 2.99, 2.97, 3.03, 3.0, 3.04, 2.91]
    assert [p.kind for p in segment(np.arange(10) * 100, values)] == ["plateau"]


def test_neighbouring_phases_of_the_same_kind_are_merged():
    # Two rapid slopes (-2.0 then -1.8 per 1000 steps; range 3.85) then a plateau: three exact
    # segments, reported as one rapid drop and one plateau.
    values = np.interp(STEPS, [0, 1000, 2000, 5000], [5.0, 3.0, 1.2, 1.15])
    phases = segment(STEPS, values)
    assert [p.kind for p in phases] == ["rapid drop", "plateau"]
    assert phases[0].start_step == 0 and abs(phases[1].start_step - 2000) <= 10  # step 2000 fits both lines


def test_improvement_pct_matches_hand_computation():
    # Kink at step 1000, between the logged steps 950 and 1050:
    # 4.0 - 2.0 per 1000 steps, then 2.0 - 0.5 per 1000 steps (continuous at 1000).
    steps = np.arange(50, 2000, 100, dtype=float)
    values = np.where(steps < 1000, 4.0 - 2.0 * steps / 1000, 2.0 - 0.5 * (steps - 1000) / 1000)
    first, second = segment(steps, values)
    assert (first.start_step, first.end_step, second.start_step, second.end_step) == (50, 950, 1050, 1950)
    assert (first.start_value, first.end_value) == pytest.approx((3.9, 2.1))
    assert first.improvement_pct == pytest.approx((3.9 - 2.1) / 3.9 * 100)  # 46.15%
    assert (second.start_value, second.end_value) == pytest.approx((1.975, 1.525))
    assert second.improvement_pct == pytest.approx((1.975 - 1.525) / 1.975 * 100)  # 22.78%
    assert (first.slope, second.slope) == pytest.approx((-2.0, -0.5))
    # Normalised slopes -2.0e-3 * 1900 / 2.375 = -1.6 and -0.4 (range 3.9 - 1.525 = 2.375).
    assert (first.kind, second.kind) == ("rapid drop", "slow decrease")


def test_max_phases_caps_the_count():
    # Two steps down: 5 true phases.
    values = np.interp(STEPS, [0, 1000, 1500, 2500, 3000, 5000], [3, 3, 2, 2, 1, 1]) + noise(0.03)
    assert [p.kind for p in segment(STEPS, values, max_phases=5)] == ["plateau", "rapid drop"] * 2 + ["plateau"]
    assert 1 < len(segment(STEPS, values)) <= 4  # default max_phases=4
    assert len(segment(STEPS, values, max_phases=1)) == 1


def test_fewer_than_min_points_gives_an_empty_list():
    assert segment([], []) == []
    assert segment([0, 10], [3.0, 2.0]) == []  # 2 < min_points=3
    assert len(segment([0, 10, 20], [3.0, 2.0, 1.0])) == 1  # exactly min_points: one phase
    assert segment([0, 10, 20, 30], [3.0, 2.0, 1.0, 0.5], min_points=5) == []
    assert verdict([0, 10], [3.0, 2.0]) == TOO_SHORT


def test_nans_and_infs_are_dropped():
    values = plateau_drop_plateau(STEPS) + noise(0.03)
    holes = np.random.default_rng(1).choice(STEPS.size, 40, replace=False)
    dirty = values.copy()
    dirty[holes[:30]] = np.nan
    dirty[holes[30:]] = np.inf
    keep = np.ones(STEPS.size, bool)
    keep[holes] = False
    assert segment(STEPS, dirty) == segment(STEPS[keep], values[keep])
    assert [p.kind for p in segment(STEPS, dirty)] == ["plateau", "rapid drop", "plateau"]
    assert verdict(STEPS, dirty) == PLATEAUED
    assert segment([0, 10, 20, 30], [np.nan, 2.0, np.nan, 1.0]) == []  # 2 finite points left


def test_unsorted_input_is_sorted_and_mismatched_lengths_raise():
    values = plateau_drop_plateau(STEPS) + noise(0.03)
    order = np.random.default_rng(2).permutation(STEPS.size)
    assert segment(STEPS[order], values[order]) == segment(STEPS, values)
    with pytest.raises(ValueError):
        segment([0, 1, 2], [1.0, 2.0])


def test_early_stopped_only_when_flagged_and_short_of_the_plan():
    values = plateau_drop_plateau(STEPS) + noise(0.03)
    assert verdict(STEPS, values, stopped_early=True, planned_steps=10_000) == EARLY_STOPPED
    assert verdict(STEPS, values, stopped_early=True, planned_steps=4990) == PLATEAUED  # reached the plan
    assert verdict(STEPS, values, stopped_early=False, planned_steps=10_000) == PLATEAUED


def test_small_tail_change_below_one_percent_is_plateaued():
    # Falls 0.5% over the last 20% of steps, noise-free: a trend, but under the 1% threshold.
    values = np.where(STEPS < 4000, 3.0 - 0.5 * STEPS / 1000, 1.0 - 0.005 * (STEPS - 4000) / 1000)
    assert verdict(STEPS, values) == PLATEAUED
    steeper = np.where(STEPS < 4000, values, 1.0 - 0.02 * (STEPS - 4000) / 1000)  # 2%: improving
    assert verdict(STEPS, steeper) == STILL_IMPROVING


def test_smooth_median_removes_spikes_without_lag_and_keeps_nans():
    step_curve = np.r_[np.full(50, 3.0), np.full(50, 1.0)]
    spiky = step_curve.copy()
    spiky[[10, 70]] = 9.0
    spiky[30] = np.nan
    out = smooth(spiky, 5)
    assert out.shape == spiky.shape and math.isnan(out[30])
    np.testing.assert_allclose(np.delete(out, 30), np.delete(step_curve, 30))  # spikes gone, edge stays at 50


def test_smooth_ema_lags_and_reduces_noise():
    values = 3.0 + noise(0.1)
    out = smooth(values, 20, method="ema")
    assert np.std(out[100:]) < 0.5 * np.std(values[100:])
    ramp = smooth(np.r_[np.zeros(10), np.ones(10)], 5, method="ema")
    assert 0 < ramp[10] < 1 and ramp[-1] > 0.9
    np.testing.assert_allclose(
        smooth([0.0, 1.0, 1.0, np.nan, 1.0], 3, method="ema"), [0.0, 0.5, 0.75, np.nan, 0.875]
    )  # alpha = 2 / (3 + 1); NaN skipped
    np.testing.assert_array_equal(smooth(values, 1, method="ema"), values)
    with pytest.raises(ValueError):
        smooth(values, 0)
    with pytest.raises(ValueError):
        smooth(values, 3, method="mean")


def test_the_end_of_a_run_is_judged_on_its_validation_passes_when_there_are_a_few():
    """A run whose validation loss fell at every pass must not read "rising at the end" because its smoothed
    training loss turned up over the last steps (the phases follow the training loss below 6 passes)."""
    from pathlib import Path

    import pandas as pd

    from pipeline.report.loader import METRIC_COLUMNS, VALIDATION_COLUMNS, Run
    from pipeline.report.phases import RISING, STILL_IMPROVING
    from pipeline.report.tables import curve_phases

    steps = np.arange(10, 401, 10)
    train = np.where(steps < 300, 6.0 - steps / 100, 3.0 + (steps - 300) / 40)  # falls, then turns up
    metrics = pd.DataFrame({"step": steps, "loss": train}).reindex(columns=METRIC_COLUMNS)
    metrics["step"], metrics["loss"] = steps, train
    val = pd.DataFrame({"step": [0, 100, 200, 300, 400], "val_loss": [7.0, 6.0, 5.0, 4.0, 3.0]})
    run = Run(name="t", root=Path("runs/t"), config={"train": {"steps": 400}}, metrics=metrics,
              validation=val.reindex(columns=VALIDATION_COLUMNS).assign(**val))  # fmt: skip
    curve = curve_phases(run)
    assert "training loss" in str(curve["curve"])
    assert RISING not in str(curve["verdict"]) and str(curve["verdict"]).startswith(STILL_IMPROVING)
    assert "(judged on the 5 validation passes)" in str(curve["verdict"])
    run.validation = run.validation.iloc[:2]  # two passes: too few to judge, the training loss decides
    assert str(curve_phases(run)["verdict"]) == RISING
