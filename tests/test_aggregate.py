"""Seeds and sweeps reports (pipeline/report/aggregate.py) and noise-aware comparisons between experiments, from
synthetic member run directories (no training: each member is written the way the stages write a finished run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats as sps
from test_loader import jsonl, metric, write_config, write_provenance

from pipeline.report import aggregate, compare, stats
from pipeline.report.aggregate import render_aggregate

STEPS = 50


def fake_member(exp: Path, rel: str, final: float, *, tps: float = 5000.0, wall: float = 12.0, load: float = 0.02,
                steps_done: int = STEPS, items: list[int] | None = None) -> Path:  # fmt: skip
    """A finished run at runs/<exp>/<rel>/ whose training and validation loss end at `final`; `items`: 0/1 scores of
    an lm-eval task on items 0..n-1 (eval/tasks.jsonl + eval/samples/)."""
    run = exp / rel
    write_config(run, steps=STEPS, tmp_root=exp.parent.parent)
    name = exp.name if exp.parent.name == "runs" else rel  # a member keeps its experiment's name
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("name: tiny", f"name: {name}", 1))
    write_provenance(run)
    prov = json.loads((run / "provenance.json").read_text())
    prov["stages"]["train"]["duration_s"] = wall
    (run / "provenance.json").write_text(json.dumps(prov))
    train = run / "train"
    train.mkdir(exist_ok=True)
    steps = [s for s in (10, 20, 30, 40, 50) if s <= steps_done]
    rows = [{**metric(s, final + (STEPS - s) / 20), "tokens_per_s": tps + s % 20, "host_load": load} for s in steps]
    (train / "metrics.jsonl").write_text(jsonl(rows))
    val = [(0, 5.6), (25, final + 0.6), (50, final + 0.1)]
    (train / "validation.jsonl").write_text(
        jsonl(
            {"step": s, "epoch": s / 100, "val_loss": v, "val_perplexity": math.exp(v), "val_accuracy": 0.2}
            for s, v in val
            if s <= steps_done
        )
    )
    (train / "DONE").write_text(
        json.dumps(
            {"status": "completed", "steps_done": steps_done, "steps_planned": STEPS, "world_size": 1,
             "parameters": {"total": 1000, "trainable": 1000, "embedding": 400, "non_embedding": 600}}
        )
    )  # fmt: skip
    if items is not None:
        ev = run / "eval"
        (ev / "samples").mkdir(parents=True, exist_ok=True)
        acc = sum(items) / len(items)
        (ev / "tasks.jsonl").write_text(
            jsonl([{"task": "cloze", "metric": "acc", "filter": "none", "value": acc, "stderr": 0.03,
                    "n": len(items), "higher_is_better": True}])
        )  # fmt: skip
        (ev / "samples" / "cloze.jsonl").write_text(
            jsonl({"doc_id": i, "doc_hash": f"h{i}", "filter": "none", "acc": float(c)} for i, c in enumerate(items))
        )
    return run


def write_members(exp: Path, members: list[dict], swept_keys=(), seeds=()) -> None:
    aggregate.MEMBERS.write(exp, {"members": members, "swept_keys": list(swept_keys), "seeds": list(seeds)})


def seeds_experiment(root: Path, name: str, finals: list[float], **kw) -> Path:
    exp = root / "runs" / name
    for seed, final in enumerate(finals):
        fake_member(exp, f"seed-{seed}", final, **kw)
    write_members(exp, [{"name": f"seed-{s}", "run_dir": f"seed-{s}", "seed": s, "point": {}, "overrides": [
        f"train.seed={s}"]} for s in range(len(finals))], seeds=range(len(finals)))  # fmt: skip
    return exp


# --------------------------------------------------------------------------- statistics the reports rest on
def test_welch_against_scipy_on_known_data():
    a, b = [3.10, 3.05, 3.12], [2.95, 3.01, 2.90]
    t = stats.welch(a, b)
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert t.p == pytest.approx(ref.pvalue) and t.delta == pytest.approx(sum(b) / 3 - sum(a) / 3)
    # the CI is the Welch–Satterthwaite interval scipy reports for the same test
    ci = ref.confidence_interval(0.95)
    assert (t.low, t.high) == pytest.approx((ci.low, ci.high))


def test_mean_ci_of_a_hand_derivable_case():
    # values 1, 2, 3: mean 2, sd 1, sem 1/√3; t(0.975, 2) = 4.302653 -> half-width 4.302653/√3 = 2.484138
    s = aggregate.summary([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["mean"] == 2.0
    assert s["half"] == pytest.approx(2.484138, abs=1e-6)
    assert (s["low"], s["high"]) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    one = aggregate.summary([2.5])
    assert one["mean"] == 2.5 and one["low"] is None and one["half"] is None


# --------------------------------------------------------------------------- seeds report
def test_seed_report_has_mean_ci_per_seed_values_curves_and_links(tmp_path):
    exp = seeds_experiment(tmp_path, "trio", [3.0, 3.2, 3.1], items=None)
    reports = tmp_path / "reports" / "trio"
    for s in range(3):  # each seed's own report (written by its own report stage)
        (reports / f"seed-{s}").mkdir(parents=True)
        (reports / f"seed-{s}" / "report.md").write_text("# seed\n")
    (out,) = render_aggregate(exp, reports)
    text = out.read_text()
    best = [3.1, 3.3, 3.2]  # val loss at step 50 = final + 0.1, the lowest of each curve
    mean, low, high = stats.t_interval(best)
    row = next(line for line in text.splitlines() if line.startswith("| best validation loss |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "3" and cells[2] == f"{mean:.4f}" and cells[3] == f"{high - mean:.4f}"
    assert cells[4] == f"{low:.4f} – {high:.4f}"
    assert cells[5] == "seed 0: 3.1000, seed 1: 3.3000, seed 2: 3.2000"
    assert "| training wall time (s) |" in text and "| throughput, median tokens/s |" in text
    assert "[seed-1/report.md](seed-1/report.md)" in text
    assert (reports / "seeds_loss.png").is_file() and "](seeds_loss.png)" in text
    assert "noise is unknown" not in text.split("## Headline metrics")[1]


def test_one_seed_says_the_noise_is_unknown(tmp_path):
    exp = seeds_experiment(tmp_path, "solo", [3.0])
    text = render_aggregate(exp, tmp_path / "reports" / "solo")[0].read_text()
    assert "One completed seed: the seed noise is unknown" in text
    assert "unknown (n = 1)" in text and "`noise_unknown`" in text


def test_band_is_min_and_max_over_seeds_at_common_steps(tmp_path):
    exp = seeds_experiment(tmp_path, "band", [3.0, 3.4])
    _members, results = aggregate.load_members(exp, tmp_path / "reports" / "band")
    band = aggregate._curve_band(results, lambda r: r.validation, "val_loss")
    last = band[band["step"] == 50].iloc[0]
    assert (last["min"], last["max"], last["mean"]) == pytest.approx((3.1, 3.5, 3.3))


def test_a_failed_member_is_a_row_with_its_error_and_the_others_report(tmp_path):
    exp = seeds_experiment(tmp_path, "flaky", [3.0, 3.2, 3.1])
    members = json.loads((exp / "members.json").read_text())
    for seed in (3, 4, 5):
        members["members"].append({"name": f"seed-{seed}", "run_dir": f"seed-{seed}", "seed": seed})
    (exp / "members.json").write_text(json.dumps(members))
    # seed 3: its make failed before training (only member.json); seed 4: killed at step 30 of 50; seed 5: not run
    failed = {"status": "failed", "exit_code": 2, "goal": "report", "error": "error: CUDA out of memory", "log": "x"}
    aggregate.MEMBER_STATUS.write(exp / "seed-3", failed)
    fake_member(exp, "seed-4", 2.0, steps_done=30)
    text = render_aggregate(exp, tmp_path / "reports" / "flaky")[0].read_text()
    row = next(line for line in text.splitlines() if line.startswith("| seed-3 "))
    assert "| failed " in row and "error: CUDA out of memory" in row
    partial = next(line for line in text.splitlines() if line.startswith("| seed-4 "))
    assert "| partial " in partial and "30 of 50 steps ran" in partial
    assert "| not run " in next(line for line in text.splitlines() if line.startswith("| seed-5 "))
    assert "`members_failed`" in text and "3 of 6 member runs did not complete" in text
    row = next(line for line in text.splitlines() if line.startswith("| best validation loss |"))
    assert row.split("|")[2].strip() == "3"  # the statistics use the three completed seeds only


# --------------------------------------------------------------------------- sweep report
def sweep(root: Path, finals: dict[float, list[float]], name: str = "lrs") -> Path:
    exp = root / "runs" / name
    members = []
    for lr, values in finals.items():
        for seed, final in enumerate(values):
            point = f"lr-{lr:.0e}".replace("e-0", "e-")
            rel = f"{point}/seed-{seed}" if len(values) > 1 else point
            fake_member(exp, rel, final, tps=5000 * (1 + lr))
            members.append({"name": rel, "run_dir": rel, "point_name": point, "seed": seed, "point": {"train.lr": lr},
                            "overrides": [f"train.lr={lr}", f"train.seed={seed}"]})  # fmt: skip
    write_members(exp, members, swept_keys=["train.lr"], seeds=range(max(len(v) for v in finals.values())))
    return exp


def _sweep_line(text: str, point: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("| ") and f"| {point} " in line)


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_sweep_marks_the_best_and_the_points_welch_cannot_tell_from_it(tmp_path):
    finals = {1e-3: [3.00, 3.02, 2.98], 3e-3: [3.01, 3.05, 2.99], 1e-2: [3.60, 3.62, 3.58]}
    exp = sweep(tmp_path, finals)
    reports = tmp_path / "reports" / "lrs"
    text = render_aggregate(exp, reports)[0].read_text()
    p_tied = sps.ttest_ind([v + 0.1 for v in finals[3e-3]], [v + 0.1 for v in finals[1e-3]], equal_var=False).pvalue
    assert p_tied >= 0.05  # the data make 3e-3 indistinguishable from 1e-3, 1e-2 distinguishable
    assert "★ best" in _sweep_line(text, "lr-1e-3")
    assert f"≈ best (p = {p_tied:.3g})" in _sweep_line(text, "lr-3e-3")
    assert "worse (p = " in _sweep_line(text, "lr-1e-2")
    assert "Indistinguishable: lr-3e-3." in text and "p ≥ 0.05" in text
    assert (reports / "sweep_train_lr.png").is_file()
    assert aggregate.log_axis("train.lr", [1e-3, 3e-3]) and aggregate.log_axis("train.batch_size", [8, 16, 128])
    assert not aggregate.log_axis("train.batch_size", [16, 32])


def test_sweep_with_one_seed_per_point_says_it_cannot_decide(tmp_path):
    exp = sweep(tmp_path, {1e-3: [3.0], 3e-3: [3.1]}, name="quick")
    text = render_aggregate(exp, tmp_path / "reports" / "quick")[0].read_text()
    assert "cannot be decided" in text and "★ best" in _sweep_line(text, "lr-1e-3")
    assert "≈ best" not in text


def test_a_failed_point_is_a_row_with_its_status_and_error(tmp_path):
    exp = sweep(tmp_path, {1e-3: [3.0, 3.1], 3e-3: [3.1, 3.2]}, name="broken")
    members = json.loads((exp / "members.json").read_text())
    members["members"].append({"name": "lr-1e-1", "run_dir": "lr-1e-1", "point_name": "lr-1e-1", "seed": 0,
                               "point": {"train.lr": 0.1}})  # fmt: skip
    (exp / "members.json").write_text(json.dumps(members))
    fake_member(exp, "lr-1e-1", 9.0, steps_done=20)
    aggregate.MEMBER_STATUS.write(exp / "lr-1e-1", {"status": "failed", "exit_code": 2, "error": "error: diverged"})
    text = render_aggregate(exp, tmp_path / "reports" / "broken")[0].read_text()
    row = _sweep_line(text, "lr-1e-1")
    assert "failed: 1 of 1 members" in row and "lr-1e-1: error: diverged" in row
    assert "★ best" in _sweep_line(text, "lr-1e-3")


def test_japanese_aggregate_report(tmp_path):
    exp = sweep(tmp_path, {1e-3: [3.0, 3.1], 3e-3: [3.3, 3.4]}, name="ja")
    text = render_aggregate(exp, tmp_path / "reports" / "ja", ["ja"])[0].read_text()
    assert (tmp_path / "reports" / "ja" / "report.ja.md").is_file()
    assert "★ 最良" in text and "## スイープ" in text


# --------------------------------------------------------------------------- comparisons that know the noise
def test_comparison_of_two_three_seed_experiments_uses_welch(tmp_path):
    a = [3.10, 3.05, 3.12]
    b = [2.70, 2.75, 2.72]
    base = compare.seed_group(seeds_experiment(tmp_path, "base", a))
    new = compare.seed_group(seeds_experiment(tmp_path, "new", b))
    rows = {str(r["metric"]): r for r in compare.seed_comparison(base, new)["rows"]}
    row = rows["final training loss"]
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert row["p"] == pytest.approx(ref.pvalue) and row["delta"] == pytest.approx(sum(b) / 3 - sum(a) / 3)
    assert row["test"] == "Welch t over per-seed values" and row["verdict"] == "better beyond noise"
    same = compare.seed_group(seeds_experiment(tmp_path, "same", [3.11, 3.04, 3.13]))
    row = {str(r["metric"]): r for r in compare.seed_comparison(base, same)["rows"]}["final training loss"]
    assert str(row["verdict"]).startswith("within seed noise (p = ")


def test_one_seed_each_is_noise_unknown(tmp_path):
    base = compare.seed_group(seeds_experiment(tmp_path, "a1", [3.0]))
    new = compare.seed_group(seeds_experiment(tmp_path, "b1", [2.0]))
    result = compare.seed_comparison(base, new)
    assert not result["noise_known"]
    for row in result["rows"]:
        assert "noise unknown" in str(row["verdict"]) and row["p"] is None


def test_lm_eval_deltas_on_the_same_items_are_paired_over_items(tmp_path):
    gained = [1] * 30 + [0] * 50 + [1] * 15 + [0] * 5
    lost = [1] * 30 + [0] * 50 + [0] * 15 + [1] * 5
    base = compare.seed_group(seeds_experiment(tmp_path, "la", [3.0, 3.1], items=lost))
    new = compare.seed_group(seeds_experiment(tmp_path, "lb", [3.0, 3.1], items=gained))
    row = {str(r["metric"]): r for r in compare.seed_comparison(base, new)["rows"]}["cloze acc"]
    # every seed scored the same items the same way: the per-item means are 0/1, so McNemar on 15 vs 5
    assert row["test"] == "McNemar (exact), paired items"
    assert row["p"] == pytest.approx(sps.binomtest(15, 20).pvalue) and row["verdict"] == "better beyond item noise"


def test_compare_to_in_a_seeds_experiment_renders_the_comparison(tmp_path):
    seeds_experiment(tmp_path, "ref", [3.10, 3.05, 3.12])
    exp = seeds_experiment(tmp_path, "cand", [2.70, 2.75, 2.72])
    for seed in range(3):
        cfg = exp / f"seed-{seed}" / "config.yaml"
        cfg.write_text(cfg.read_text().replace("compare_to: null", "compare_to: ref"))
    text = render_aggregate(exp, tmp_path / "reports" / "cand")[0].read_text()
    assert "## Comparison with `ref`" in text and "by Welch's t test" in text
    line = next(x for x in text.splitlines() if x.startswith("| final training loss"))
    assert "better beyond noise" in line


def test_throughput_under_different_host_load_is_not_comparable_across_seeds(tmp_path):
    quiet = compare.seed_group(seeds_experiment(tmp_path, "quiet", [3.0, 3.1], tps=9000.0, load=0.0))
    busy = compare.seed_group(seeds_experiment(tmp_path, "busy", [3.0, 3.1], tps=3000.0, load=0.5))
    row = {str(r["metric"]): r for r in compare.seed_comparison(quiet, busy)["rows"]}["throughput, median tokens/s"]
    assert str(row["verdict"]) == "not comparable: host load differs (0% vs 50%)" and row["p"] < 0.05


def test_make_compare_of_seeds_experiments_reports_welch(tmp_path):
    from pipeline.errors import UserError
    from pipeline.report.index import build_compare

    seeds_experiment(tmp_path, "ref", [3.10, 3.05, 3.12])
    seeds_experiment(tmp_path, "cand", [2.70, 2.75, 2.72])
    fake_member(tmp_path / "runs" / "plain", ".", 2.0)  # a plain run: one seed, noise unknown
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    text = build_compare(["ref", "cand", "plain"], "seeds", runs, reports).read_text()
    assert "| ref (mean of 3 seeds) " in text and "| cand (mean of 3 seeds) " in text
    assert "## Differences against `ref`, with seed noise" in text
    cand = text.split("### `cand` − `ref`")[1].split("###")[0]
    assert "| final training loss " in cand and "better beyond noise" in cand
    plain = text.split("### `plain` − `ref`")[1]
    line = next(x for x in plain.splitlines() if x.startswith("| final training loss"))
    assert "noise unknown: 3 and 1 seed(s), need 2 each" in line
    sweep(tmp_path, {1e-3: [3.0], 3e-3: [3.1]}, name="grid")
    with pytest.raises(UserError, match="grid is a sweep"):
        build_compare(["ref", "grid"], "x", runs, reports)


def test_a_member_report_compares_with_the_same_seed_of_a_seeds_baseline(tmp_path):
    from pipeline.config.resolve import load_resolved
    from pipeline.report.render import render

    seeds_experiment(tmp_path, "ref", [3.10, 3.05, 3.12])
    exp = seeds_experiment(tmp_path, "cand", [2.70, 2.75, 2.72])
    member = exp / "seed-1"
    cfg = member / "config.yaml"
    cfg.write_text(cfg.read_text().replace("compare_to: null", "compare_to: ref").replace("seed: 0", "seed: 1"))
    text = render(member, load_resolved(member), tmp_path / "reports" / "cand" / "seed-1")[0].read_text()
    assert "## Comparison with `ref`" in text and "compared with its member `seed-1`" in text
    assert "does not exist yet" not in text


def test_seed_outlier_fires_on_a_seed_far_from_the_others_and_not_on_agreeing_seeds(tmp_path):
    def findings(name, finals):
        exp = seeds_experiment(tmp_path, name, finals)
        _members, results = aggregate.load_members(exp, tmp_path / "reports" / name)
        return {f.rule: f for f in aggregate.aggregate_checks(results, aggregate.points_of(results))}

    out = findings("odd", [3.0, 3.01, 2.99, 3.5])
    assert set(out) == {"seed_outlier"} and str(out["seed_outlier"].message).startswith("seed-3: 3.6000 vs 3.1000")
    assert findings("even", [3.0, 3.01, 2.99, 3.02]) == {}


@pytest.mark.slow
def test_real_tiny_runs_with_two_seeds_aggregate(tmp_path, monkeypatch):
    """Two real member runs (prepare, train, eval, report in this process) of one experiment, seeds 0 and 1, laid
    out as the orchestration lays them out; the aggregate reads their files."""
    from conftest import TINY, write_experiment

    from pipeline.config.load import load_experiment
    from pipeline.config.resolve import freeze, load_resolved
    from pipeline.data.prepare import run_prepare
    from pipeline.evaluate.stage import run_eval
    from pipeline.provenance import record_stage
    from pipeline.report.render import render
    from pipeline.rundir import RunDir
    from pipeline.train.loop import run_train

    write_experiment(tmp_path, "pair", TINY)
    monkeypatch.chdir(tmp_path)
    members = []
    for seed in (0, 1):
        run = RunDir(Path("runs") / "pair" / f"seed-{seed}")
        freeze(load_experiment("pair", [f"train.seed={seed}"]), run)
        cfg = load_resolved(run.root)
        for stage, func in (("prepare", run_prepare), ("train", run_train), ("eval", run_eval)):
            func(cfg, run.root)
            record_stage(run, stage, "t0", "t1", 1.0, "h")
        render(run.root, cfg, Path("reports") / "pair" / f"seed-{seed}")
        aggregate.MEMBER_STATUS.write(run.root, {"status": "completed", "exit_code": 0, "goal": "report"})
        members.append({"name": f"seed-{seed}", "run_dir": f"seed-{seed}", "seed": seed,
                        "overrides": [f"train.seed={seed}"]})  # fmt: skip
    write_members(Path("runs") / "pair", members, seeds=[0, 1])
    (out,) = aggregate.run_aggregate(Path("runs") / "pair", Path("reports") / "pair")
    text = out.read_text()
    _m, results = aggregate.load_members(Path("runs") / "pair", Path("reports") / "pair")
    finals = [r.values["final_train_loss"] for r in results]
    assert all(r.ok for r in results) and finals[0] != finals[1]  # the seed changes the run
    row = next(line for line in text.splitlines() if line.startswith("| final training loss |"))
    mean, low, high = stats.t_interval(finals)
    assert f"| 2 | {mean:.4f} | {high - mean:.4f} | {low:.4f} – {high:.4f} |" in row
    assert "| held-out perplexity |" in text and "[seed-1/report.md](seed-1/report.md)" in text
    assert (Path("reports") / "pair" / "seeds_loss.png").is_file()


def test_the_index_has_a_row_per_seeds_experiment_and_sweep(tmp_path):
    from pipeline.report.index import build_index

    seeds_experiment(tmp_path, "trio", [3.0, 3.2, 3.1])
    exp = sweep(tmp_path, {1e-3: [3.0], 3e-3: [3.1]}, name="grid")
    aggregate.MEMBER_STATUS.write(exp / "lr-3e-3", {"status": "failed", "exit_code": 2, "error": "error: x"})
    fake_member(tmp_path / "runs" / "plain", ".", 2.0)
    reports = tmp_path / "reports"
    render_aggregate(tmp_path / "runs" / "trio", reports / "trio")
    text = build_index(tmp_path / "runs", reports).read_text()
    trio = next(line for line in text.splitlines() if line.startswith("| trio (mean of 3 seeds) "))
    assert "| completed " in trio and "trio/report.md" in trio
    assert f" {sum(math.exp(v) for v in (3.1, 3.3, 3.2)) / 3:,.2f} |" in trio  # mean best validation perplexity
    grid = next(line for line in text.splitlines() if line.startswith("| grid (sweep: 2 points) "))
    assert "| 1 of 2 members completed " in grid and "⚠️ 1 warning(s)" in grid
    assert "| plain " in text
