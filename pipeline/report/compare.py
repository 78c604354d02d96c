"""Compare a run with a baseline run: config diff, comparability guards, metric deltas, no-op detection.

Guards come before numbers: perplexities under different tokenizers, datasets or sequence lengths are not
comparable, and a different device or code commit changes speed and sometimes results. A delta inside the
known noise (lm-eval stderr, bench repeat spread) is "within noise", never "better" or "worse".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.dotted import flatten
from pipeline.report import tables
from pipeline.report.i18n import N_, Msg
from pipeline.report.loader import Run

IGNORED_KEYS = ("name", "description", "extends", "report.")
# What the comparability guards compare, as the report names it.
GUARDS = {
    "tokenizer": N_("tokenizer"),
    "dataset": N_("dataset"),
    "sequence length": N_("sequence length"),
    "device": N_("device"),
    "code commit": N_("code commit"),
}


def config_diff(baseline: dict, run: dict) -> list[dict]:
    """Only the keys whose values differ: old -> new, with the ratio for numbers."""
    a, b = flatten(baseline), flatten(run)
    rows = []
    for key in sorted(set(a) | set(b)):
        if key.startswith(IGNORED_KEYS) or a.get(key) == b.get(key):
            continue
        old, new = a.get(key), b.get(key)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
        rows.append({"key": key, "old": old, "new": new, "ratio": (new / old) if numeric and old else None})
    return rows


@dataclass(frozen=True)
class Guard:
    what: Msg
    baseline: str
    run: str


def _device(run: Run) -> str:
    dev = run.provenance.device
    return ", ".join(g.name for g in dev.gpus) if dev.gpus else f"CPU {dev.cpu or '?'}"


def guards(base: Run, run: Run) -> list[Guard]:
    """Differences that make the numbers below not directly comparable."""

    def facts(r: Run) -> dict:
        prep = r.prepared
        return {
            GUARDS["tokenizer"]: f"{prep.tokenizer} ({prep.vocab_size} tokens)",
            GUARDS["dataset"]: str(prep.source),
            GUARDS["sequence length"]: str(
                (r.config.get("data") or {}).get("seq_len") or (r.config.get("model") or {}).get("max_seq_len")
            ),
            GUARDS["device"]: _device(r),
            GUARDS["code commit"]: str(r.provenance.git.commit)[:10],
        }

    fa, fb = facts(base), facts(run)
    return [Guard(k, fa[k], fb[k]) for k in fa if fa[k] != fb[k]]


def _val(run: Run, col: str, best: bool = False):
    frame = run.validation.dropna(subset=[col]) if len(run.validation) else run.validation
    if not len(frame):
        return None
    return float(frame[col].min() if best else frame[col].iloc[-1])


def metric_rows(base: Run, run: Run) -> list[dict]:
    def last_loss(r):
        return float(r.metrics["loss"].dropna().iloc[-1]) if len(r.metrics) else None

    def ppl(r):
        value = r.perplexity.perplexity
        return value if isinstance(value, (int, float)) else None

    rows = [
        (N_("final training loss"), last_loss(base), last_loss(run), False, None),
        (N_("final validation loss"), _val(base, "val_loss"), _val(run, "val_loss"), False, None),
        (
            N_("best validation perplexity"),
            _val(base, "val_perplexity", True),
            _val(run, "val_perplexity", True),
            False,
            None,
        ),
        (N_("held-out perplexity"), ppl(base), ppl(run), False, None),
        (
            N_("throughput, median tokens/s"),
            tables.throughput(base).get("median"),
            tables.throughput(run).get("median"),
            True,
            None,
        ),
    ]
    for r in _harness_pairs(base, run):
        rows.append(r)
    out = []
    for name, old, new, higher_better, noise in rows:
        if old is None and new is None:
            continue
        out.append(delta_row(name, old, new, higher_better, noise))
    return out


def _harness_pairs(base: Run, run: Run):
    if not len(base.harness) or not len(run.harness):
        return []
    merged = base.harness.merge(run.harness, on=["task", "metric", "filter"], suffixes=("_a", "_b"))
    pairs = []
    for r in merged.itertuples():
        se = [s for s in (r.stderr_a, r.stderr_b) if s == s and s is not None]
        noise = 2 * math.sqrt(sum(s * s for s in se)) if len(se) == 2 else None
        label = f"{r.task} {r.metric}" + (f" ({r.filter})" if r.filter and r.filter != "none" else "")
        pairs.append((label, r.value_a, r.value_b, bool(r.higher_is_better_a), noise))
    return pairs


def delta_row(name: str, old, new, higher_better: bool, noise: float | None) -> dict:
    row = {"metric": name, "baseline": old, "run": new, "delta": None, "pct": None, "verdict": "—"}
    if old is None or new is None:
        return row
    delta = new - old
    row.update(delta=delta, pct=100 * delta / old if old else None)
    if noise is not None and abs(delta) <= noise:
        row["verdict"] = N_("within noise (±{noise:.4g})", noise=noise)
    elif delta == 0:
        row["verdict"] = N_("same")
    elif noise is not None:
        row["verdict"] = N_("better") if (delta > 0) == higher_better else N_("worse")
    else:
        row["verdict"] = N_("better (noise unknown)") if (delta > 0) == higher_better else N_("worse (noise unknown)")
    return row


def no_op(base: Run, run: Run, diff: list[dict]) -> Msg | None:
    """The config changed but training did not: identical train-input hash, or curves equal to 4 digits."""
    if not diff:
        return None
    hash_a, hash_b = base.done.train_hash, run.done.train_hash
    if hash_a and hash_a == hash_b:
        return N_("the resolved training inputs are identical (same train hash): the change cannot affect training")
    la, lb = base.metrics.get("loss"), run.metrics.get("loss")
    if (
        la is not None
        and lb is not None
        and len(la) == len(lb)
        and len(la) >= 3
        and np.array_equal(np.round(la.to_numpy(dtype=float), 4), np.round(lb.to_numpy(dtype=float), 4))
        and list(base.metrics["step"]) == list(run.metrics["step"])
    ):
        return N_("the training loss curves are identical to 4 digits over {n} log steps", n=len(la))
    return None


def comparison(base: Run, run: Run) -> dict:
    diff = config_diff(base.config, run.config)
    return {
        "baseline": base.name,
        "diff": diff,
        "guards": [vars(g) for g in guards(base, run)],
        "metrics": metric_rows(base, run),
        "no_op": no_op(base, run, diff),
    }
