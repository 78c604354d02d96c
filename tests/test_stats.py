"""The report's statistics against scipy on known data (pipeline/report/stats.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from pipeline.report import stats


def test_mcnemar_matches_scipys_binomial_test_on_the_discordant_pairs():
    # 100 items: 30 right in both, 50 wrong in both, 15 gained (0 -> 1), 5 lost (1 -> 0)
    a = np.array([1] * 30 + [0] * 50 + [0] * 15 + [1] * 5)
    b = np.array([1] * 30 + [0] * 50 + [1] * 15 + [0] * 5)
    t = stats.paired(a, b)
    assert t.test == "McNemar (exact)" and t.n == 100
    assert t.delta == pytest.approx(0.10)
    assert t.p == pytest.approx(sps.binomtest(15, 20, 0.5).pvalue)  # 0.0414
    assert t.p == pytest.approx(0.041389, abs=1e-6)
    assert t.low < 0.10 < t.high and t.low > 0  # 10 of 100 more right: the CI excludes 0
    assert t.significant


def test_paired_bootstrap_ci_agrees_with_scipys_bootstrap():
    rng = np.random.default_rng(3)
    a = rng.normal(0.0, 1.0, 400)
    b = a + 0.1 + rng.normal(0.0, 0.2, 400)  # paired: the per-item difference is what matters
    t = stats.paired_bootstrap(a, b, iters=4000)
    ref = sps.bootstrap((b - a,), np.mean, n_resamples=4000, method="percentile", random_state=1)
    assert t.test == "paired bootstrap"
    assert t.delta == pytest.approx(float(np.mean(b - a)))
    assert t.low == pytest.approx(ref.confidence_interval.low, abs=0.005)
    assert t.high == pytest.approx(ref.confidence_interval.high, abs=0.005)
    assert t.p < 0.001
    # the paired test sees what an unpaired one cannot: the same data as independent samples
    assert sps.ttest_ind(b, a).pvalue > 0.05


def test_no_difference_gives_p_one_and_a_zero_width_ci():
    a = np.array([1, 0, 1, 1, 0])
    t = stats.paired(a, a)
    assert (t.delta, t.low, t.high, t.p) == (0.0, 0.0, 0.0, 1.0) and not t.significant


def test_welch_matches_scipy():
    a, b = [101.0, 99.5, 100.2], [90.1, 91.0, 89.7]
    t = stats.welch(a, b)
    assert t.p == pytest.approx(sps.ttest_ind(b, a, equal_var=False).pvalue)
    assert t.low < t.delta < t.high < 0
    assert stats.welch([1.0], [2.0, 3.0]) is None


def test_t_interval_matches_scipy():
    values = [10.0, 11.0, 12.5, 9.5]
    mean, low, high = stats.t_interval(values)
    ref = sps.t.interval(0.95, 3, loc=np.mean(values), scale=sps.sem(values))
    assert (low, high) == pytest.approx(ref)
    assert mean == pytest.approx(10.75)
    assert stats.t_interval([1.0]) is None


def test_unpaired_normal_approximation():
    t = stats.unpaired_from_se(0.25, 0.02, 0.30, 0.02)
    assert t.delta == pytest.approx(0.05)
    assert t.high - t.low == pytest.approx(2 * 1.959964 * np.sqrt(0.0008), rel=1e-5)
    assert t.p == pytest.approx(2 * sps.norm.sf(0.05 / np.sqrt(0.0008)))


def test_bootstrap_over_documents_is_paired_for_the_same_documents():
    rng = np.random.default_rng(0)
    tokens = rng.integers(50, 200, 300).astype(float)
    loss_a = tokens * rng.normal(4.0, 0.5, 300)
    loss_b = loss_a - tokens * 0.05  # 0.05 nats/token better on every document
    t = stats.bootstrap_ratio_diff(loss_a, tokens, loss_b, tokens)
    assert t.test == "paired bootstrap over sequences"
    assert t.delta == pytest.approx(-0.05) and t.low == pytest.approx(-0.05) and t.high == pytest.approx(-0.05)
    t2 = stats.bootstrap_ratio_diff(loss_a, tokens, loss_a[:200] * 1.0, tokens[:200])
    assert t2.test == "bootstrap over sequences" and t2.low < t2.delta < t2.high
