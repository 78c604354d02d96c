"""Learning-curve phases: "slow until step 1600, then a rapid drop, still improving at the end".

Pure functions over (steps, values) of a loss curve (lower is better); numpy and pandas only.

`segment` fits a piecewise-linear curve to the loss and cuts it where the slope changes:

* NaN/inf points are dropped, points are sorted by step. Fewer than `min_points` points left -> `[]`
  (an empty list, never a one-point "phase": there is nothing to describe).
* Curves longer than `MAX_POINTS` are averaged into `MAX_POINTS` contiguous equal-count bins first
  (`min_points` then counts bins). Spiky training loss should go through `smooth(..., method="median")`.
* For each k = 1..max_phases, dynamic programming over all breakpoints finds the k-segment fit with the
  least residual sum of squares (each segment its own least-squares line, >= `min_points` points).
* k is chosen by a strengthened BIC, n*ln(RSS_k/n) + BIC_PENALTY*(3k-1)*ln(n), smallest k on ties;
  a fit whose residual rms is below `EXACT_FIT_RMS` of the value range counts as exact and stops the
  search. So a straight line (noisy or not) is ONE phase and noise does not create phases.
* Each segment gets a kind from its slope, normalised as r = slope * (whole step span) / (value range):
  how many curve ranges the loss would move at this slope over the whole run.
  |r| < PLATEAU (0.1), or a slope within MIN_T (2) standard errors of zero, "plateau";
  otherwise r <= RAPID_DROP (-1.5) "rapid drop", r < 0 "slow decrease", r > 0 "rising".
  The range is max - min of the (binned) values, so an early spike makes later phases look flatter,
  and pure noise is judged against its own spread.
* Adjacent phases of the same kind are merged (and refitted): the description stays readable and an
  extra breakpoint inside one steady drop does not show up as two phases.

A `Phase` covers its own points: start_step/end_step are its first/last logged step (the next phase
starts at the next logged step), start_value/end_value are its fitted line at those steps.
improvement_pct = (start_value - end_value) / |start_value| * 100 (positive = loss went down; NaN when
start_value is 0).

`verdict` looks only at the last `TAIL_FRACTION` (20%) of the step range (at least the last 3 points):
a least-squares line over it gives the fitted relative change (first - last) / |first| of the tail.
> +TAIL_MIN_CHANGE (1%) "still improving at the end"; < -1% "rising at the end" (overfitting or
instability); otherwise "plateaued". A trend also needs |t| >= MIN_T (2) on the tail slope, so
noise alone reads as "plateaued". `stopped_early=True` gives "early-stopped" unless the last step
reached `planned_steps`. Fewer than 3 points: "too short to judge". The last phase of `segment` may
be a "plateau" relative to the whole curve's range while the verdict still says improving: the verdict
is about the level, the kind about the curve's shape.

Tested on synthetic curves with known breakpoints (tests/test_phases.py): with noise at 1.5% of the
value range, breakpoints are found within BREAKPOINT_TOLERANCE = 5% of the step range. Heavier noise
blurs them (at 10% noise and 100 points about half land within 5%): smooth first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.report.i18n import N_

if TYPE_CHECKING:
    pass

# pandas only where a frame is built (see loader.py: the index imports this module without reading frames).

MAX_POINTS = 512  # longer curves are bin-averaged to this many points before segmenting
BIC_PENALTY = 1.5  # x BIC's ln(n) per parameter; > 1 because breakpoint search overfits plain BIC
EXACT_FIT_RMS = 1e-6  # residual rms (fraction of the value range) below which a fit is exact
RAPID_DROP = -1.5  # normalised slope r at or below which a phase is a "rapid drop"
PLATEAU = 0.1  # |r| below this is a "plateau"; r at or above it is "rising"
TAIL_FRACTION = 0.2  # verdict looks at the last 20% of the step range
TAIL_MIN_CHANGE = 0.01  # relative change over the tail that counts as a trend (1%)
MIN_T = 2.0  # a slope within this many standard errors of zero is noise: plateau / plateaued
BREAKPOINT_TOLERANCE = 0.05  # documented accuracy on synthetic curves, fraction of the step range

# Kinds and verdicts are strings marked for translation (pipeline/report/i18n.py): they compare equal to the
# English words, and the report prints them in its language.
RAPID, SLOW, PLATEAU_KIND, RISING_KIND = N_("rapid drop"), N_("slow decrease"), N_("plateau"), N_("rising")
KINDS = (RAPID, SLOW, PLATEAU_KIND, RISING_KIND)
STILL_IMPROVING = N_("still improving at the end")
PLATEAUED = N_("plateaued")
RISING = N_("rising at the end")
EARLY_STOPPED = N_("early-stopped")
TOO_SHORT = N_("too short to judge")


@dataclass(frozen=True)
class Phase:
    """One stretch of the curve with a roughly constant slope."""

    start_step: float
    end_step: float
    start_value: float  # fitted value at start_step
    end_value: float  # fitted value at end_step
    slope: float  # value change per 1000 steps
    improvement_pct: float  # (start_value - end_value) / |start_value| * 100; positive = loss went down
    kind: str  # one of KINDS


def smooth(values, window: int, method: str = "median") -> np.ndarray:
    """Smooth a noisy curve; same length as `values`, NaN where the input is NaN.

    method="median": centred rolling median over `window` points (no lag, removes isolated spikes:
    the better input for `segment`). method="ema": exponential moving average with span `window`
    (alpha = 2 / (window + 1), out[0] = values[0], out[i] = alpha * values[i] + (1 - alpha) * out[i-1]);
    it lags by about window/2 points, which shifts breakpoints later. NaN/inf are skipped inside the
    windows and come back as NaN. window=1 returns a copy.
    """
    import pandas as pd

    if int(window) != window or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    y = np.array(values, dtype=float)  # a copy: non-finite values become NaN
    y[~np.isfinite(y)] = np.nan
    series = pd.Series(y)
    if method == "median":
        out = series.rolling(int(window), center=True, min_periods=1).median().to_numpy(copy=True)
    elif method == "ema":
        out = series.ewm(span=window, adjust=False, ignore_na=True).mean().to_numpy(copy=True)
    else:
        raise ValueError(f"method must be 'median' or 'ema', got {method!r}")
    out[np.isnan(y)] = np.nan
    return out


def _clean(steps, values) -> tuple[np.ndarray, np.ndarray]:
    """Finite (step, value) pairs, sorted by step (stable)."""
    x, y = np.asarray(steps, dtype=float).ravel(), np.asarray(values, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"steps and values differ in length: {x.size} vs {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    order = np.argsort(x, kind="stable")
    return x[order], y[order]


def _bins(x: np.ndarray, y: np.ndarray, max_points: int):
    """Bin means (x, y) plus each bin's first and last step; identity when short enough."""
    if x.size <= max_points:
        return x, y, x, x
    chunks = np.array_split(np.arange(x.size), max_points)
    first = np.array([x[c[0]] for c in chunks])
    last = np.array([x[c[-1]] for c in chunks])
    return (np.array([x[c].mean() for c in chunks]), np.array([y[c].mean() for c in chunks]), first, last)


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares line y = a + b * (x - x[0]): (a, b, t) with t = b / stderr(b).

    Slope 0 when x is constant; t is inf for an exact fit or fewer than 3 points (no test possible).
    """
    dx = x - x[0]
    sxx = float(np.sum((dx - dx.mean()) ** 2))
    b = float(np.sum((dx - dx.mean()) * (y - y.mean())) / sxx) if sxx > 0 else 0.0
    a = float(y.mean() - b * dx.mean())
    rss = float(np.sum((y - a - b * dx) ** 2))
    if sxx == 0:
        return a, b, 0.0
    stderr = math.sqrt(rss / (x.size - 2) / sxx) if x.size > 2 else 0.0
    return a, b, (b / stderr if stderr > 0 else math.copysign(math.inf, b) if b else 0.0)


def _segment_costs(x: np.ndarray, y: np.ndarray, min_points: int) -> np.ndarray:
    """cost[i, j] = RSS of one line through points i..j-1; inf for fewer than min_points points."""
    m = x.size
    cost = np.full((m, m + 1), np.inf)
    for i in range(m - min_points + 1):
        dx, dy = x[i:] - x[i], y[i:] - y[i]  # shifting per start keeps the cumulative sums exact enough
        n = np.arange(1, dx.size + 1)
        sx, sy = np.cumsum(dx), np.cumsum(dy)
        sxx = np.cumsum(dx * dx) - sx * sx / n
        sxy = np.cumsum(dx * dy) - sx * sy / n
        syy = np.cumsum(dy * dy) - sy * sy / n
        with np.errstate(divide="ignore", invalid="ignore"):
            rss = np.where(sxx > 1e-15, syy - sxy * sxy / sxx, syy)
        cost[i, i + min_points :] = np.maximum(rss[min_points - 1 :], 0.0)
    return cost


def _best_splits(cost: np.ndarray, max_k: int) -> list[tuple[float, list[int]]]:
    """For k = 1..max_k: (least total RSS, segment start indices) by dynamic programming."""
    m = cost.shape[0]
    best = cost[0].copy()  # best[j]: least RSS of points 0..j-1 in k segments
    back = []
    out = [(float(best[m]), [0])]
    for _ in range(2, max_k + 1):
        total = best[:m, None] + cost  # total[i, j]: first k-1 segments end at i, the last is i..j-1
        back.append(np.argmin(total, axis=0))
        best = total[back[-1], np.arange(m + 1)]
        if not np.isfinite(best[m]):
            break
        starts, j = [], m
        for arg in reversed(back):
            j = int(arg[j])
            starts.append(j)
        out.append((float(best[m]), [0] + starts[::-1]))
    return out


def _choose(fits: list[tuple[float, list[int]]], m: int) -> list[int]:
    """Segment starts of the fit with the best penalised score (see module docstring)."""
    exact = m * EXACT_FIT_RMS**2
    scores = []
    for k, (rss, starts) in enumerate(fits, start=1):
        if rss <= exact:
            return starts
        scores.append(m * math.log(rss / m) + BIC_PENALTY * (3 * k - 1) * math.log(m))
    return fits[int(np.argmin(scores))][1]


def _kind(slope_per_step: float, t: float, span: float, scale: float) -> str:
    r = slope_per_step * span / scale if scale > 0 else 0.0
    if abs(r) < PLATEAU or abs(t) < MIN_T:
        return PLATEAU_KIND
    if r <= RAPID_DROP:
        return RAPID
    if r <= -PLATEAU:
        return SLOW
    return RISING_KIND


def _phase(xb, yb, first, last, i0: int, i1: int, span: float, scale: float) -> Phase:
    """The phase over bins i0..i1-1, fitted on the bin means."""
    a, b, t = _line(xb[i0:i1], yb[i0:i1])
    start, end = float(first[i0]), float(last[i1 - 1])
    v0, v1 = a + b * (start - xb[i0]), a + b * (end - xb[i0])
    pct = (v0 - v1) / abs(v0) * 100 if v0 != 0 else math.nan
    return Phase(start, end, float(v0), float(v1), b * 1000, float(pct), _kind(b, t, span, scale))


def segment(steps, values, max_phases: int = 4, min_points: int = 3) -> list[Phase]:
    """Cut a loss curve into at most `max_phases` phases of roughly constant slope.

    Returns [] when fewer than `min_points` finite points remain, else at least one Phase, in step
    order. See the module docstring for the algorithm and thresholds.
    """
    if max_phases < 1 or min_points < 2:
        raise ValueError("need max_phases >= 1 and min_points >= 2")
    x, y = _clean(steps, values)
    if x.size < min_points:
        return []
    xb, yb, first, last = _bins(x, y, MAX_POINTS)
    span, scale = float(x[-1] - x[0]), float(yb.max() - yb.min())
    m = xb.size
    # Fit in normalised units (steps and values on [0, 1]) so the exact-fit threshold is scale-free.
    xn = (xb - xb[0]) / (xb[-1] - xb[0]) if xb[-1] > xb[0] else np.zeros(m)
    yn = (yb - yb.min()) / scale if scale > 0 else np.zeros(m)
    max_k = max(1, min(max_phases, m // min_points))
    starts = _choose(_best_splits(_segment_costs(xn, yn, min_points), max_k), m)
    bounds = list(zip(starts, starts[1:] + [m]))
    while True:  # merge neighbours of the same kind, one pair at a time, refitting each merge
        phases = [_phase(xb, yb, first, last, i0, i1, span, scale) for i0, i1 in bounds]
        same = next((i for i in range(len(phases) - 1) if phases[i].kind == phases[i + 1].kind), None)
        if same is None:
            return phases
        bounds[same : same + 2] = [(bounds[same][0], bounds[same + 1][1])]


def verdict(steps, values, *, stopped_early: bool = False, planned_steps: float | None = None) -> str:
    """How the curve ends: "still improving at the end", "plateaued" or "rising at the end".

    Also "early-stopped" when `stopped_early` and the last step is short of `planned_steps` (or no
    plan is given), and "too short to judge" for fewer than 3 finite points. Thresholds: module docstring.
    """
    x, y = _clean(steps, values)
    if stopped_early and (planned_steps is None or x.size == 0 or x[-1] < planned_steps):
        return EARLY_STOPPED
    if x.size < 3:
        return TOO_SHORT
    tail = x >= x[-1] - TAIL_FRACTION * (x[-1] - x[0])
    if tail.sum() < 3:
        tail = np.arange(x.size) >= x.size - 3
    xt, yt = x[tail], y[tail]
    a, b, t = _line(xt, yt)
    width = float(xt[-1] - xt[0])
    change = -b * width  # fitted decrease over the tail
    level = abs(a) if a != 0 else float(y.max() - y.min())
    if level == 0 or width == 0:
        return PLATEAUED
    significant = abs(t) >= MIN_T
    if significant and change / level > TAIL_MIN_CHANGE:
        return STILL_IMPROVING
    if significant and change / level < -TAIL_MIN_CHANGE:
        return RISING
    return PLATEAUED
