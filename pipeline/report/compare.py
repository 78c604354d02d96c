"""Compare a run with a baseline run: config diff, comparability guards, metric deltas, no-op detection.

Guards come before numbers: perplexities under different tokenizers, datasets or sequence lengths are not
comparable, and a different device or code commit changes speed and sometimes results. A verdict needs a noise
estimate (pipeline/report/stats.py), and the row names the test it came from:

- lm-eval deltas: a paired test when both runs logged the same items (`eval/samples/`: McNemar for 0/1 scores,
  a paired bootstrap otherwise), else the unpaired normal rule from the two stderrs (items differ);
- held-out loss / perplexity / bits per byte: a bootstrap over the scored sequences (`eval/perplexity_items.jsonl`);
- throughput: Welch's t over the steady log intervals, and "not comparable" when the host's load from other
  processes (`host_load`) differs by more than HOST_LOAD_LIMIT;
- anything else (final training / validation loss): the number, no verdict.

Across tokenizers, per-token numbers (losses, perplexities) get no Δ: bits per byte and per character of the
same text are compared instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.dotted import flatten
from pipeline.errors import UserError
from pipeline.report import stats, tables
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
    return float(frame[col].iloc[-1] if not best else frame[col].min())


# The tests a delta can be judged by, as the report names them (pipeline/report/stats.py).
TESTS = {
    "McNemar (exact)": N_("McNemar (exact), paired"),
    "paired bootstrap": N_("paired bootstrap"),
    "unpaired (normal, stderr)": N_("unpaired: 1.96·√(se₁²+se₂²), items differ"),
    "Welch t": N_("Welch t over log intervals"),
    "paired bootstrap over sequences": N_("paired bootstrap over sequences"),
    "bootstrap over sequences": N_("bootstrap over sequences"),
}
HOST_LOAD_LIMIT = 0.10  # other processes' share of the cores: a difference above this makes speed incomparable
NO_VERDICT = N_("noise unknown: no verdict")


def same_tokenizer(base: Run, run: Run) -> bool:
    a, b = base.prepared, run.prepared
    return (a.tokenizer, a.vocab_size) == (b.tokenizer, b.vocab_size)


def host_load(run: Run) -> float | None:
    """Median share of the host's cores other processes used over the logged intervals (`host_load`)."""
    if "host_load" not in run.metrics:
        return None
    values = run.metrics["host_load"].dropna()
    return float(values.median()) if len(values) else None


def _steady_tps(run: Run) -> list[float]:
    frame = run.metrics
    if not len(frame):
        return []
    first = {s["first_step"] for s in run.segments} if run.segments else {int(frame["step"].iloc[0])}
    steady = frame[~frame["step"].isin(first)]
    if "interval_event" in steady:
        steady = steady[steady["interval_event"].isna()]
    return [float(v) for v in steady["tokens_per_s"].dropna()]


def _ppl_test(base: Run, run: Run, what: str):
    """Bootstrap over the scored sequences: per-token loss / perplexity (same tokenizer), bits per byte."""
    a, b = base.ppl_items, run.ppl_items
    if len(a) < 2 or len(b) < 2:
        return None
    la, lb = [r["loss_sum"] for r in a], [r["loss_sum"] for r in b]
    if what == "bits_per_byte":
        if any(r.get("bytes") is None for r in a + b):
            return None
        ta, tb = [r["bytes"] * math.log(2) for r in a], [r["bytes"] * math.log(2) for r in b]
        return stats.bootstrap_ratio_diff(la, ta, lb, tb)
    ta, tb = [r["tokens"] for r in a], [r["tokens"] for r in b]
    transform = math.exp if what == "perplexity" else None
    return stats.bootstrap_ratio_diff(la, ta, lb, tb, transform=transform)


def metric_rows(base: Run, run: Run) -> list[dict]:
    def last_loss(r):
        return float(r.metrics["loss"].dropna().iloc[-1]) if len(r.metrics) else None

    def ppl(r, key="perplexity"):
        value = getattr(r.perplexity, key)
        return value if isinstance(value, (int, float)) else None

    tokens_comparable = same_tokenizer(base, run)
    token_rows = [
        (N_("final training loss"), last_loss(base), last_loss(run), False, None),
        (N_("final validation loss"), _val(base, "val_loss"), _val(run, "val_loss"), False, None),
        (
            N_("best validation perplexity"),
            _val(base, "val_perplexity", True),
            _val(run, "val_perplexity", True),
            False,
            None,
        ),
        (N_("held-out loss (nats/token)"), ppl(base, "loss"), ppl(run, "loss"), False, _ppl_test(base, run, "loss")),
        (N_("held-out perplexity"), ppl(base), ppl(run), False, _ppl_test(base, run, "perplexity")),
    ]
    rows = []
    for name, old, new, hib, test in token_rows:
        if tokens_comparable:
            rows.append((name, old, new, hib, test))
        elif old is not None or new is not None:
            row = delta_row(name, old, new, hib, None)
            row.update(delta=None, pct=None, verdict=N_("per token: tokenizers differ, see bits per byte"))
            rows.append(row)
    rows.append(
        (
            N_("held-out bits per byte"),
            ppl(base, "bits_per_byte"),
            ppl(run, "bits_per_byte"),
            False,
            _ppl_test(base, run, "bits_per_byte"),
        )
    )
    rows.append((N_("held-out bits per character"), ppl(base, "bits_per_char"), ppl(run, "bits_per_char"), False, None))
    rows.append(throughput_row(base, run))
    rows += _harness_pairs(base, run)
    out = []
    for item in rows:
        if isinstance(item, dict):
            out.append(item)
            continue
        name, old, new, higher_better, noise = item
        if old is None and new is None:
            continue
        out.append(delta_row(name, old, new, higher_better, noise))
    return out


def throughput_row(base: Run, run: Run) -> dict:
    old, new = tables.throughput(base).get("median"), tables.throughput(run).get("median")
    la, lb = host_load(base), host_load(run)
    if la is None or lb is None:
        name = N_("throughput, median tokens/s (host load not recorded)")
    else:
        name = N_("throughput, median tokens/s (host load {a:.0%} → {b:.0%})", a=la, b=lb)
    test = stats.welch(_steady_tps(base), _steady_tps(run)) if old is not None and new is not None else None
    row = delta_row(name, old, new, True, test)
    if la is not None and lb is not None and abs(la - lb) > HOST_LOAD_LIMIT and row["delta"] is not None:
        row["verdict"] = N_("not comparable: host load differs ({a:.0%} vs {b:.0%})", a=la, b=lb)
    elif (la is None or lb is None) and row["delta"] is not None:
        row["verdict"] = N_("host load unknown: no verdict")
    return row


def _item_values(items: list[dict], metric: str, filt) -> dict | None:
    """(doc_id, doc_hash) -> the item's value of `metric` under `filt`; None when an item lacks it."""
    out = {}
    for item in items:
        if (item.get("filter") or "none") != (filt or "none"):
            continue
        if metric not in item:
            return None
        out[(item.get("doc_id"), item.get("doc_hash"))] = item[metric]
    return out or None


ROLLING = {"bits_per_byte": 1 / math.log(2), "byte_perplexity": None, "word_perplexity": None}


def harness_test(base: Run, run: Run, task: str, metric: str, filt, se_a, se_b):
    """The paired test when both runs logged the same items, else the unpaired rule from the stderrs."""
    a = _item_values(base.samples.get(task) or [], metric, filt)
    b = _item_values(run.samples.get(task) or [], metric, filt)
    if a and b and set(a) == set(b):
        keys = sorted(a, key=str)
        va, vb = [a[k] for k in keys], [b[k] for k in keys]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in va + vb):
            return stats.paired(va, vb)
        if metric in ROLLING and all(isinstance(v, list) and len(v) == 2 for v in va + vb):
            # (loglikelihood, words or bytes) per document: the aggregate is a ratio of sums
            nll_a, n_a = [-v[0] for v in va], [v[1] for v in va]
            nll_b, n_b = [-v[0] for v in vb], [v[1] for v in vb]
            if metric == "bits_per_byte":
                n_a, n_b = [n * math.log(2) for n in n_a], [n * math.log(2) for n in n_b]
                return stats.bootstrap_ratio_diff(nll_a, n_a, nll_b, n_b, paired=True)
            return stats.bootstrap_ratio_diff(nll_a, n_a, nll_b, n_b, transform=math.exp, paired=True)
    if se_a is not None and se_b is not None and se_a == se_a and se_b == se_b:
        return stats.unpaired_from_se(0.0, se_a, 0.0, se_b)
    return None


def _harness_pairs(base: Run, run: Run):
    if not len(base.harness) or not len(run.harness):
        return []
    merged = base.harness.merge(run.harness, on=["task", "metric", "filter"], suffixes=("_a", "_b"))
    pairs = []
    for r in merged.itertuples():
        test = harness_test(base, run, r.task, r.metric, r.filter, r.stderr_a, r.stderr_b)
        if test is not None and test.test.startswith("unpaired"):  # centred on this row's own delta
            test = stats.unpaired_from_se(r.value_a, r.stderr_a, r.value_b, r.stderr_b)
        label = f"{r.task} {r.metric}" + (f" ({r.filter})" if r.filter and r.filter != "none" else "")
        hib = r.higher_is_better_a
        pairs.append((label, r.value_a, r.value_b, bool(hib) if hib == hib and hib is not None else True, test))
    return pairs


def delta_row(name: str, old, new, higher_better: bool, noise) -> dict:
    """Δ, Δ % and a verdict that needs a noise estimate: a `stats.Test` (its CI and p decide) or a number (|Δ| ≤
    noise is within noise). Without either, the row is a number and no verdict."""
    row = {"metric": name, "baseline": old, "run": new, "delta": None, "pct": None, "verdict": "—"}
    row.update(test=None, low=None, high=None, p=None)
    if old is None or new is None:
        return row
    delta = new - old
    row.update(delta=delta, pct=100 * delta / old if old else None)
    if isinstance(noise, stats.Test):
        row.update(test=TESTS.get(noise.test, noise.test), low=noise.low, high=noise.high, p=noise.p)
        if delta == 0:
            row["verdict"] = N_("same")
        elif not noise.significant:
            row["verdict"] = N_("within noise (p = {p:.3g})", p=noise.p)
        else:
            row["verdict"] = N_("better") if (delta > 0) == higher_better else N_("worse")
    elif noise is not None and abs(delta) <= noise:
        row["verdict"] = N_("within noise (±{noise:.4g})", noise=noise)
    elif delta == 0:
        row["verdict"] = N_("same")
    elif noise is not None:
        row["verdict"] = N_("better") if (delta > 0) == higher_better else N_("worse")
    else:
        row["verdict"] = NO_VERDICT
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


# --------------------------------------------------------------------------- experiments with several seeds
@dataclass
class SeedGroup:
    """One side of a noise-aware comparison: an experiment's completed member runs (one for a plain run)."""

    name: str
    runs: list[Run]


def seed_group(exp_runs_dir, reports_dir=None) -> SeedGroup | None:
    """`runs/<EXP>/` as a SeedGroup: the completed members of a seeds experiment (`members.json`), or the run itself;
    None when neither exists."""
    from pathlib import Path

    from pipeline.report import aggregate
    from pipeline.report.loader import load_run

    exp_runs_dir = Path(exp_runs_dir)
    if aggregate.is_aggregate(exp_runs_dir):
        members, results = aggregate.load_members(exp_runs_dir, Path(reports_dir or "reports") / exp_runs_dir.name)
        if len(aggregate.points_of(results)) > 1:
            raise UserError(
                f"{exp_runs_dir.name} is a sweep: its points are compared with each other in "
                f"reports/{exp_runs_dir.name}/report.md; compare one point's run directory instead"
            )
        return SeedGroup(exp_runs_dir.name, [r.run for r in results if r.ok and r.run is not None])
    if (exp_runs_dir / "config.yaml").is_file():
        return SeedGroup(exp_runs_dir.name, [load_run(exp_runs_dir)])
    return None


SEED_TESTS = {
    "Welch t": N_("Welch t over per-seed values"),
    "McNemar (exact)": N_("McNemar (exact), paired items"),
    "paired bootstrap": N_("paired bootstrap over items (per-item mean over seeds)"),
}


def seed_verdict(test: stats.Test | None, n_a: int, n_b: int, higher_better: bool) -> Msg:
    """Within seed noise, or better/worse beyond it, from a test; with one seed on a side the noise is unknown."""
    if test is None:
        return N_("noise unknown: {a} and {b} seed(s), need 2 each", a=n_a, b=n_b)
    if not test.significant:
        return N_("within seed noise (p = {p:.3g})", p=test.p)
    better = (test.delta > 0) == higher_better
    return N_("better beyond noise") if better else N_("worse beyond noise")


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _same_items_test(base: SeedGroup, run: SeedGroup, task: str, metric: str, filt) -> stats.Test | None:
    """The paired per-item test when every run of both sides scored the same items: each item's score averaged over
    a side's seeds (McNemar when that leaves 0/1 scores, a paired bootstrap otherwise)."""
    sides = []
    for group in (base, run):
        per_run = [_item_values(r.samples.get(task) or [], metric, filt) for r in group.runs]
        if not per_run or any(not v for v in per_run):
            return None
        sides.append(per_run)
    keys = set(sides[0][0])
    if any(set(v) != keys for side in sides for v in side):
        return None
    order = sorted(keys, key=str)
    means = []
    for side in sides:
        values = [[v[k] for v in side] for k in order]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for row in values for x in row):
            return None
        means.append([float(np.mean(row)) for row in values])
    return stats.paired(means[0], means[1])


def seed_comparison(base: SeedGroup, run: SeedGroup) -> dict:
    """Every headline metric of two experiments: per-seed finals by Welch's t test (mean difference, 95% CI, p);
    lm-eval scores by the paired per-item test where both sides scored the same items, else Welch over seeds."""
    from pipeline.report import aggregate

    vals_a = [aggregate.member_values(r) for r in base.runs]
    vals_b = [aggregate.member_values(r) for r in run.runs]
    rows = []
    for key, (label, higher_better, _spec) in aggregate.HEADLINE.items():
        a = [v[key] for v in vals_a if v.get(key) is not None]
        b = [v[key] for v in vals_b if v.get(key) is not None]
        if a or b:
            rows.append(_seed_row(label, a, b, higher_better, stats.welch(a, b)))
        if key == "tokens_per_s" and rows and rows[-1]["delta"] is not None:
            _host_load_guard(rows[-1], base, run)
    h_a = [aggregate.harness_values(r) for r in base.runs]
    h_b = [aggregate.harness_values(r) for r in run.runs]
    common = set.intersection(*(set(h) for h in h_a + h_b)) if h_a and h_b else set()
    for key in sorted(common, key=str):
        a = [h[key]["value"] for h in h_a if h[key]["value"] is not None]
        b = [h[key]["value"] for h in h_b if h[key]["value"] is not None]
        higher_better = h_a[0][key]["higher_is_better"]
        test = _same_items_test(base, run, *key) or stats.welch(a, b)
        rows.append(_seed_row(aggregate.harness_label(key), a, b, higher_better, test))
    diff = []
    if base.runs and run.runs:
        diff = [d for d in config_diff(base.runs[0].config, run.runs[0].config) if d["key"] != "train.seed"]
    return {
        "n_base": len(base.runs),
        "n_run": len(run.runs),
        "noise_known": len(base.runs) >= 2 and len(run.runs) >= 2,
        "rows": rows,
        "diff": diff,
        "guards": [vars(g) for g in guards(base.runs[0], run.runs[0])] if base.runs and run.runs else [],
    }


def _host_load_guard(row: dict, base: SeedGroup, run: SeedGroup) -> None:
    """Throughput measured under different load from other processes is not comparable (HOST_LOAD_LIMIT)."""
    loads = []
    for group in (base, run):
        values = [v for r in group.runs if (v := host_load(r)) is not None]
        loads.append(_mean(values) if len(values) == len(group.runs) else None)
    la, lb = loads
    if la is None or lb is None:
        row["verdict"] = N_("host load unknown: no verdict")
    elif abs(la - lb) > HOST_LOAD_LIMIT:
        row["verdict"] = N_("not comparable: host load differs ({a:.0%} vs {b:.0%})", a=la, b=lb)


def _seed_row(label, a: list[float], b: list[float], higher_better: bool, test: stats.Test | None) -> dict:
    old, new = _mean(a), _mean(b)
    row = {"metric": label, "baseline": old, "run": new, "n_base": len(a), "n_run": len(b)}
    row.update(delta=None, low=None, high=None, p=None, test=None, verdict="—")
    if old is None or new is None:
        return row
    row["delta"] = new - old
    if test is not None:
        row.update(low=test.low, high=test.high, p=test.p, test=SEED_TESTS.get(test.test, test.test))
    if test is not None and test.test != "Welch t":
        row["verdict"] = item_verdict(test, len(a), len(b), higher_better)
    else:
        row["verdict"] = seed_verdict(test, len(a), len(b), higher_better)
    return row


def item_verdict(test: stats.Test, n_a: int, n_b: int, higher_better: bool) -> Msg:
    """A paired test over items knows the items' noise, not the seeds': with one seed on a side it says so."""
    if not test.significant:
        verdict = N_("within item noise (p = {p:.3g})", p=test.p)
    elif (test.delta > 0) == higher_better:
        verdict = N_("better beyond item noise")
    else:
        verdict = N_("worse beyond item noise")
    if min(n_a, n_b) < 2:
        return N_("{verdict}; seed noise unknown (one seed)", verdict=verdict)
    return verdict
