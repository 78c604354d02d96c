"""The statistics behind every "better / worse / within noise" of a report: small functions over numbers (scipy).

- `paired`: two runs scored on the same items (lm-eval's per-item results, `eval/samples/<task>.jsonl`, matched
  by `doc_id`). Binary scores (accuracy, exact match): McNemar's exact test (a two-sided binomial test on the
  discordant pairs) with a paired-bootstrap CI of the mean difference; other scores: paired bootstrap (CI and a
  two-sided p from the bootstrap distribution of the mean difference, shifted to the null).
- `unpaired_from_se`: two scores on different items, only their standard errors known: a normal
  approximation, Δ ± 1.96·√(se₁²+se₂²), p from the z score.
- `t_interval` / `welch`: repeats of a measurement (bench step time): mean with its Student-t 95% CI, and
  Welch's t-test between two variants (unequal variances).
- `bootstrap_ratio_diff`: held-out loss as Σ loss / Σ tokens over documents (sequences), resampled by document.

Every function returns a `Test`: the difference, its 95% CI, p, n and the name of the test, so the report can
print which test was used. `seed` makes the bootstrap reproducible (the same runs give the same report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _sps():
    # Imported on first use: scipy.stats costs about a second of start-up that a report without a comparison
    # never needs.
    from scipy import stats

    return stats


LEVEL = 0.95
ALPHA = 1 - LEVEL
BOOTSTRAP = 2000
SEED = 0


@dataclass(frozen=True)
class Test:
    test: str  # "McNemar (exact)", "paired bootstrap", "unpaired (normal, stderr)", "Welch t", …
    delta: float  # run − baseline
    low: float  # 95% CI of delta
    high: float
    p: float | None
    n: int  # items (pairs), or repeats per side for Welch (the smaller)

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < ALPHA and not (self.low <= 0 <= self.high)


def _bootstrap_means(d: np.ndarray, iters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(iters, d.size))
    return d[idx].mean(axis=1)


def paired_bootstrap(a, b, iters: int = BOOTSTRAP, seed: int = SEED) -> Test:
    """Mean of b − a over paired items: percentile CI and a two-sided bootstrap p (null: mean difference 0)."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    delta = float(d.mean())
    if d.size < 2 or np.all(d == d[0]):
        return Test("paired bootstrap", delta, delta, delta, 1.0 if delta == 0 else 0.0, int(d.size))
    means = _bootstrap_means(d, iters, seed)
    low, high = np.quantile(means, [ALPHA / 2, 1 - ALPHA / 2])
    null = means - delta  # the bootstrap distribution moved to mean 0
    p = float((np.sum(np.abs(null) >= abs(delta)) + 1) / (iters + 1))
    return Test("paired bootstrap", delta, float(low), float(high), min(1.0, p), int(d.size))


def mcnemar(a, b, iters: int = BOOTSTRAP, seed: int = SEED) -> Test:
    """Binary paired scores (0/1): exact McNemar p = two-sided binomial test of b01 vs b10; CI by paired bootstrap."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    gained, lost = int(np.sum((x == 0) & (y == 1))), int(np.sum((x == 1) & (y == 0)))
    p = 1.0 if gained + lost == 0 else float(_sps().binomtest(gained, gained + lost, 0.5).pvalue)
    boot = paired_bootstrap(x, y, iters, seed)
    return Test("McNemar (exact)", boot.delta, boot.low, boot.high, p, boot.n)


def paired(a, b) -> Test:
    """McNemar for 0/1 scores, else the paired bootstrap."""
    values = np.concatenate([np.asarray(a, dtype=float), np.asarray(b, dtype=float)])
    binary = values.size and np.all((values == 0) | (values == 1))
    return mcnemar(a, b) if binary else paired_bootstrap(a, b)


def unpaired_from_se(a: float, se_a: float, b: float, se_b: float) -> Test:
    """Different items, only standard errors known: normal approximation."""
    se = math.sqrt(se_a**2 + se_b**2)
    delta = b - a
    z = _sps().norm.ppf(1 - ALPHA / 2)
    p = float(2 * _sps().norm.sf(abs(delta) / se)) if se > 0 else (1.0 if delta == 0 else 0.0)
    return Test("unpaired (normal, stderr)", delta, delta - z * se, delta + z * se, p, 0)


def t_interval(values) -> tuple[float, float, float] | None:
    """Mean and its Student-t 95% CI; None for fewer than 2 values."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size < 2:
        return None
    mean, sem = float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))
    half = float(_sps().t.ppf(1 - ALPHA / 2, x.size - 1) * sem)
    return mean, mean - half, mean + half


def welch(a, b) -> Test | None:
    """Welch's t-test of mean(b) − mean(a) (unequal variances) with the Welch–Satterthwaite CI."""
    x = np.asarray([v for v in a if v is not None], dtype=float)
    y = np.asarray([v for v in b if v is not None], dtype=float)
    if x.size < 2 or y.size < 2:
        return None
    delta = float(y.mean() - x.mean())
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    if se == 0:
        return Test("Welch t", delta, delta, delta, 1.0 if delta == 0 else 0.0, int(min(x.size, y.size)))
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    p = float(_sps().ttest_ind(y, x, equal_var=False).pvalue)
    half = float(_sps().t.ppf(1 - ALPHA / 2, df) * se)
    return Test("Welch t", delta, delta - half, delta + half, p, int(min(x.size, y.size)))


def bootstrap_ratio_diff(
    loss_a, tok_a, loss_b, tok_b, transform=None, paired: bool | None = None, iters: int = BOOTSTRAP, seed: int = SEED
) -> Test:
    """f(Σloss/Σtokens) of b minus that of a (f = `transform`, e.g. exp for perplexity; identity by default),
    resampled over documents: together when `paired` (default: when both runs scored the same token counts per
    document, i.e. the same sequences), else each run over its own documents."""
    la, ta, lb, tb = (np.asarray(v, dtype=float) for v in (loss_a, tok_a, loss_b, tok_b))
    f = transform or (lambda v: v)
    vf = np.vectorize(f) if transform else f
    delta = float(f(lb.sum() / tb.sum()) - f(la.sum() / ta.sum()))
    rng = np.random.default_rng(seed)
    same = (la.size == lb.size and np.array_equal(ta, tb)) if paired is None else paired and la.size == lb.size
    ia = rng.integers(0, la.size, size=(iters, la.size))
    ib = ia if same else rng.integers(0, lb.size, size=(iters, lb.size))
    diffs = vf(lb[ib].sum(1) / tb[ib].sum(1)) - vf(la[ia].sum(1) / ta[ia].sum(1))
    low, high = np.quantile(diffs, [ALPHA / 2, 1 - ALPHA / 2])
    null = diffs - delta
    spread = not np.allclose(diffs, delta, rtol=1e-9, atol=1e-12)
    p = float((np.sum(np.abs(null) >= abs(delta)) + 1) / (iters + 1)) if spread else float(delta == 0)
    name = "paired bootstrap over sequences" if same else "bootstrap over sequences"
    return Test(name, delta, float(low), float(high), min(1.0, p), int(min(la.size, lb.size)))
