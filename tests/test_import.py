"""`make import`: runs written by Lingua, the HF Trainer, Lightning and lm-eval become run directories whose
reports show the source's numbers, get the same checks, and bad sources fail with file and line.

These fixtures are written by tests/import_fixtures.py (Lingua, which is not pip-installable, and seed 000's
numbers; small hand-made HF/Lightning/lm-eval files for damaged-source and edge cases). Runs made by the tools
themselves are tested in tests/test_import_real_tools.py (tests/real_tool_fixtures.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import import_fixtures as fx
import pytest
from conftest import TINY, pipeline_cmd, pipeline_env, write_experiment

from pipeline.config.load import load_experiment
from pipeline.config.resolve import freeze
from pipeline.errors import UserError
from pipeline.importers import run_import
from pipeline.importers.common import SourceError
from pipeline.report.checks import run_checks
from pipeline.report.loader import load_run
from pipeline.report.render import render
from pipeline.rundir import RunDir


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """Imports and reports resolve experiments/ and runs/ from the working directory."""
    (tmp_path / "experiments").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def import_and_render(src: Path, fmt: str, name: str, **kw) -> tuple[Path, str]:
    run_dir = run_import(src, fmt, name, **kw)
    cfg = load_experiment(name)
    freeze(cfg, RunDir(run_dir))
    (report,) = render(run_dir, cfg, Path("reports") / name)
    return run_dir, report.read_text(encoding="utf-8")


def table(report: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table after `## heading`, as rows keyed by column header."""
    section = report.split(f"## {heading}\n", 1)[1].splitlines()
    start = next(i for i, ln in enumerate(section) if ln.startswith("|"))
    end = next((i for i in range(start, len(section)) if not section[i].startswith("|")), len(section))
    lines = section[start:end]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]


def summary_row(report: str, label: str) -> str:
    match = re.search(rf"^\| {re.escape(label)}[^|]* \| (.*) \|$", report, re.M)
    assert match, f"no summary row {label!r}"
    return match.group(1)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rules(run_dir: Path) -> dict[str, str]:
    return {f.rule: f.message for f in run_checks(load_run(run_dir))}


# --------------------------------------------------------------------------- Lingua
def test_lingua_dump_numbers_equal_the_source(workdir):
    src = fx.lingua_dump(workdir / "lingua_out")
    run_dir, report = import_and_render(src, "lingua", "debug_3_lingua")
    source = jsonl(src / "metrics.jsonl")
    ours = jsonl(run_dir / "train" / "metrics.jsonl")
    assert [r["step"] for r in ours] == [s["global_step"] for s in source]
    for o, s in zip(ours, source):  # exact equality: copied, not recomputed
        assert (o["loss"], o["tokens_per_s"], o["grad_norm"], o["lr"], o["mem_peak_gib"], o["flops_per_s"]) == (
            s["loss/out"],
            s["speed/wps"],
            s["optim/grad_norm"],
            s["optim/lr"],
            s["memory/max_active_gib"],
            s["speed/FLOPS"],
        )
        assert o["power_w"] == pytest.approx(s["memory/power_draw"] / 1000, rel=1e-12)
    rows = table(report, "Training")
    assert [int(r["step"]) for r in rows] == [s["global_step"] for s in source]
    for row, s in zip(rows, source):
        assert row["loss"] == format(s["loss/out"], ".4f")
        assert row["tokens/s"] == format(s["speed/wps"], ",.0f")
        assert row["peak mem %"] == format(s["memory/max_active_pct"], ".0f")
        assert row["FLOP/s"] == format(s["speed/FLOPS"], ".3e")


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_lingua_checks_incomplete_chance_and_warmup_excluded(workdir):
    run_dir, report = import_and_render(fx.lingua_dump(workdir / "out"), "lingua", "l")
    found = rules(run_dir)
    assert "100 of 1000 configured steps" in found["run_incomplete"]
    assert "piqa acc 0.5158" in found["at_chance"] and "hellaswag acc 0.2572" in found["at_chance"]
    assert "⚠️ partial" in report
    wps = [s[4] for s in fx.LINGUA_STEPS]
    steady = wps[1:]  # the 2.16e4 warm-up step is the first after the start
    assert summary_row(report, "Throughput").startswith(
        f"{sorted(steady)[len(steady) // 2]:,.0f} ({min(steady):,.0f}–{max(steady):,.0f}) tokens/s"
    )
    assert f"{min(wps):,.0f}" not in summary_row(report, "Throughput").split(",", 1)[0]
    memory = summary_row(report, "Peak device **memory**")
    assert "20% of the device's memory" in memory and "18.62 GiB" in memory
    assert not re.search(r"GPU (utili[sz]ation|使用率)", report)
    tasks = {r["task"]: r for r in table(report, "lm-evaluation-harness")}
    for task, (_metric, value, stderr, n, _choices) in fx.TASKS.items():
        assert tasks[task]["value"] == format(value, ".4f") and tasks[task]["± stderr"] == format(stderr, ".4f")
        assert tasks[task]["items"] == f"{n:,}"
    assert tasks["piqa"]["chance"] == "0.5000" and tasks["hellaswag"]["chance"] == "0.2500"


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_lingua_resumed_run_has_segments(workdir):
    """Killed after logging step 80, resumed from the step-50 checkpoint into the same metrics.jsonl."""
    first = fx.LINGUA_STEPS[:8]
    resumed = [(60, 2.95, 1.9, 8.85e-06, 2.0e4, 0.1228, 610.0)] + fx.LINGUA_STEPS[6:]
    src = fx.lingua_dump(workdir / "out", steps=first + resumed)
    run_dir, report = import_and_render(src, "lingua", "resumed")
    run = load_run(run_dir)
    assert [(s["first_step"], s["last_step"], s["rows"]) for s in run.segments] == [(10, 80, 8), (60, 100, 5)]
    assert (
        "2 segments" in rules(run_dir)["resumed_run"]
        and "21 step(s) were trained again" in rules(run_dir)["resumed_run"]
    )
    assert float(run.metrics.set_index("step").loc[60, "loss"]) == 2.95  # the later segment's value
    seg_rows = table(report, "Segments")
    assert [(r["first step"], r["last step"]) for r in seg_rows] == [("10", "80"), ("60", "100")]
    throughput = summary_row(report, "Throughput")
    assert "steps 10, 60" in throughput and "20,000" not in throughput and "21,600" not in throughput


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_lingua_stdout_lines(workdir):
    src = fx.lingua_stdout(workdir / "slurm-3849979.out")
    run_dir, report = import_and_render(src, "lingua", "from_stdout", steps_planned=1000)
    rows = table(report, "Training")
    assert [(int(r["step"]), r["loss"]) for r in rows] == [(s[0], format(s[1], ".4f")) for s in fx.LINGUA_STEPS]
    ours = jsonl(run_dir / "train" / "metrics.jsonl")
    assert [o["mem_peak_pct"] for o in ours] == [20] * len(fx.LINGUA_STEPS)  # `mem: 20%` is memory
    assert [o["power_w"] for o in ours] == [s[6] for s in fx.LINGUA_STEPS]
    assert "100 of 1000" in rules(run_dir)["run_incomplete"]


# --------------------------------------------------------------------------- HF Trainer
def test_hf_trainer_log_history(workdir):
    src = fx.hf_output_dir(workdir / "hf_out")
    run_dir, report = import_and_render(src, "hf-trainer", "hf")
    history = json.loads((src / "trainer_state.json").read_text())["log_history"]
    train = [h for h in history if "loss" in h]
    ours = jsonl(run_dir / "train" / "metrics.jsonl")
    assert [(o["step"], o["loss"], o["grad_norm"], o["lr"], o["epoch"]) for o in ours] == [
        (h["step"], h["loss"], h["grad_norm"], h["learning_rate"], h["epoch"]) for h in train
    ]
    evals = [h for h in history if "eval_loss" in h]
    assert [v["val_loss"] for v in jsonl(run_dir / "train" / "validation.jsonl")] == [h["eval_loss"] for h in evals]
    assert [r["loss"] for r in table(report, "Validation")] == [format(h["eval_loss"], ".4f") for h in evals]
    assert summary_row(report, "Source summary: `train_runtime`") == "812.3456"
    assert re.search(r"(✅|⚠️|❌) completed", report) and "run_incomplete" not in rules(run_dir)


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_hf_trainer_unfinished_run_reads_newest_checkpoint(workdir):
    out = workdir / "hf_out"
    fx.hf_output_dir(out / "checkpoint-200", logged=200, with_summary=False)
    fx.hf_output_dir(out / "checkpoint-300", logged=300, with_summary=False)
    run_dir, report = import_and_render(out, "hf-trainer", "hf_partial")
    found = rules(run_dir)
    assert "300 of 500 configured steps" in found["run_incomplete"]
    assert "checkpoint-300" in found["import_warnings"]


# --------------------------------------------------------------------------- Lightning
def test_lightning_versions_join_as_segments(workdir):
    logs = workdir / "lightning_logs"
    fx.lightning_version(logs / "version_0", range(0, 150))
    fx.lightning_version(logs / "version_1", range(100, 400))
    run_dir, report = import_and_render(logs, "lightning", "pl", steps_planned=400)
    run = load_run(run_dir)
    # Lightning's step counts from 0: carried as step + 1 (optimizer steps done), so 400 planned steps end at 400
    assert [(s["first_step"], s["last_step"]) for s in run.segments] == [(1, 150), (101, 400)]
    import csv

    with open(logs / "version_1" / "metrics.csv", newline="") as fh:
        source = [r for r in csv.DictReader(fh) if r["train_loss_step"]]
    frame = run.metrics.set_index("step")
    for r in source:
        assert float(frame.loc[int(r["step"]) + 1, "loss"]) == float(r["train_loss_step"])
        assert float(frame.loc[int(r["step"]) + 1, "lr"]) == float(r["lr-AdamW"])
    later = {}  # a step logged in both versions shows the later (resumed) value
    for version in ("version_0", "version_1"):
        with open(logs / version / "metrics.csv", newline="") as fh:
            later.update({int(r["step"]) + 1: r for r in csv.DictReader(fh) if r["train_loss_step"]})
    shown = table(report, "Training")
    assert len(shown) == 25
    for row in shown:
        src = later[int(row["step"])]
        assert (row["loss"], row["lr"], row["grad norm"]) == (
            format(float(src["train_loss_step"]), ".4f"),
            format(float(src["lr-AdamW"]), ".3e"),
            format(float(src["grad_2.0_norm_total"]), ".4g"),
        )
    assert "unknown" not in report.split("\n")[2] and "400 of 400" in report
    assert "resumed_run" in rules(run_dir) and "planned_steps_unknown" not in rules(run_dir)


def test_lightning_custom_column_names_and_unknown_plan(workdir):
    v0 = fx.lightning_version(workdir / "v0", range(0, 60))
    text = (v0 / "metrics.csv").read_text().replace("train_loss_step", "nll_train", 1)
    (v0 / "metrics.csv").write_text(text)
    with pytest.raises(SourceError, match=r"metrics\.csv:1: no loss column .*MAP"):
        run_import(v0, "lightning", "pl_nomap")
    run_dir, report = import_and_render(v0, "lightning", "pl_map", mapping={"loss": "nll_train"})
    assert len(load_run(run_dir).metrics) == 60
    assert "**Status: ❔ unknown length** — 60 steps done" in report and "planned_steps_unknown" in rules(run_dir)


# --------------------------------------------------------------------------- lm-eval
def test_lm_eval_results_file(workdir):
    out = workdir / "lm_out" / "outputs__debug_3"
    out.mkdir(parents=True)
    result = fx.lm_eval_result()
    (out / "results_2025-10-13T22-00-00.000001.json").write_text(json.dumps({"results": {"piqa": {"acc,none": 0.9}}}))
    (out / "results_2025-10-14T01-29-03.123456.json").write_text(json.dumps(result))
    run_dir, report = import_and_render(workdir / "lm_out", "lm-eval", "lme")
    rows = {(r["task"], r["metric"]): r for r in table(report, "lm-evaluation-harness")}
    assert rows[("piqa", "acc")]["value"] == format(result["results"]["piqa"]["acc,none"], ".4f")  # the newest file
    assert rows[("nq_open", "exact_match")]["chance"] == "—" and rows[("nq_open", "exact_match")]["few-shot"] == "5"
    # seed 000's nq_open: exact_match 0 on all 3,610 items (all_zero_generative, an error) and two scores at chance:
    # the status line carries the worst finding, never a bare ✅
    assert {"at_chance", "all_zero_generative"} <= set(rules(run_dir))
    assert "**Status: ❌ completed — 1 error check(s)**" in report
    assert not (run_dir / "train").exists()
    assert json.loads((run_dir / "eval" / "lm_eval.json").read_text()) == result


# --------------------------------------------------------------------------- bad sources
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_text(p.read_text().replace("}\n", "\n", 3)), r"metrics\.jsonl:1: not valid JSON"),
        (
            lambda p: p.write_text(p.read_text().replace('"global_step": 30', '"step": 30')),
            r"metrics\.jsonl:3: no 'global_step'",
        ),
        (
            lambda p: p.write_text(p.read_text().replace('"loss/out": 3.2732', '"loss/out": "n/a"')),
            r"metrics\.jsonl:4: loss/out: expected a number, got 'n/a'",
        ),
    ],
)
def test_malformed_lingua_names_file_and_line(workdir, damage, message):
    src = fx.lingua_dump(workdir / "out")
    damage(src / "metrics.jsonl")
    with pytest.raises(SourceError, match=message):
        run_import(src, "lingua", "bad")
    assert not (workdir / "runs" / "bad").exists()


def test_torn_last_line_is_a_warning_not_an_error(workdir):
    src = fx.lingua_dump(workdir / "out")
    path = src / "metrics.jsonl"
    path.write_text(path.read_text() + '{"global_step": 110, "loss/out": 2.69')  # killed mid-write
    run_dir = run_import(src, "lingua", "torn")
    assert "metrics.jsonl:11: last line is cut off" in rules(run_dir)["import_warnings"]
    assert load_run(run_dir).steps_done == 100


def test_malformed_hf_and_csv_name_the_line(workdir):
    src = fx.hf_output_dir(workdir / "hf")
    state = src / "trainer_state.json"
    data = json.loads(state.read_text())
    data["log_history"][4]["loss"] = "NaN?"
    state.write_text(json.dumps(data, indent=2, sort_keys=True))
    line = next(i for i, ln in enumerate(state.read_text().splitlines(), 1) if '"NaN?"' in ln)
    entry_start = max(i for i, ln in enumerate(state.read_text().splitlines()[:line], 1) if ln.strip() == "{")
    with pytest.raises(
        SourceError, match=rf"trainer_state\.json:{entry_start}: log_history\[4\]: loss: expected a number, got 'NaN\?'"
    ):
        run_import(src, "hf-trainer", "bad_hf")
    v0 = fx.lightning_version(workdir / "v0", range(0, 10))
    lines = (v0 / "metrics.csv").read_text().splitlines()
    lines[5] += ",1"
    (v0 / "metrics.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"metrics\.csv:6: 8 fields, the header has 7"):
        run_import(v0, "lightning", "bad_pl")
    (workdir / "empty.json").write_text('{"config": {}}')
    with pytest.raises(SourceError, match=r"empty\.json: no 'results'"):
        run_import(workdir / "empty.json", "lm-eval", "bad_lme")


def test_cli_error_is_one_line_exit_2(tmp_path):
    src = fx.lingua_dump(tmp_path / "out")
    (src / "metrics.jsonl").write_text('{"global_step": 10}\nnot json\n{"global_step": 30}\n')
    proc = subprocess.run(
        pipeline_cmd("import", str(src), "--from", "lingua", "--exp", "x"),
        cwd=tmp_path,
        env=pipeline_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {src}/metrics.jsonl:2: not valid JSON (Expecting value)"
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- run directory safety
def test_never_overwrites_a_trained_run_or_shadows_an_experiment(workdir):
    src = fx.lingua_dump(workdir / "out")
    trained = workdir / "runs" / "mine"
    (trained / "train").mkdir(parents=True)
    (trained / "train" / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    with pytest.raises(UserError, match="runs/mine/ holds a run this project made"):
        run_import(src, "lingua", "mine")
    assert (trained / "train" / "metrics.jsonl").read_text() == '{"step": 1, "loss": 1.0}\n'
    write_experiment(workdir, "tiny", TINY)
    with pytest.raises(UserError, match="experiments/tiny.yaml defines an experiment"):
        run_import(src, "lingua", "tiny")


def test_reimport_replaces_an_imported_run(workdir):
    src = fx.lingua_dump(workdir / "out")
    run_import(src, "lingua", "again")
    fx.lingua_dump(workdir / "out2", steps=fx.LINGUA_STEPS[:5])
    run_dir = run_import(workdir / "out2", "lingua", "again")
    assert load_run(run_dir).steps_done == 50
    assert sorted(p.name for p in (workdir / "runs").iterdir()) == ["again"]  # no temp or old dirs left


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_imported_run_has_no_stages_to_run(workdir):
    run_dir = run_import(fx.lingua_dump(workdir / "out"), "lingua", "imp")
    freeze(load_experiment("imp"), RunDir(run_dir))
    proc = subprocess.run(
        pipeline_cmd("train", str(run_dir)), cwd=workdir, env=pipeline_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2 and "imported from lingua" in proc.stderr and "only `make report`" in proc.stderr


@pytest.mark.slow
def test_make_import_then_make_report(tmp_path):
    from conftest import project_copy
    from test_make import make  # same Make invocation as the stage tests (PY=, no venv)

    root = project_copy(tmp_path / "repo")
    src = fx.lingua_dump(tmp_path / "lingua_out")
    proc = make(root, "import", f"SRC={src}", "FROM=lingua", "EXP=seed000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = make(root, "report", "EXP=seed000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (root / "reports" / "seed000" / "report.md").read_text()
    assert "Imported from **lingua**" in report and "run_incomplete" in report
    again = make(root, "report", "EXP=seed000")
    assert "-m pipeline report" not in again.stdout  # nothing changed: nothing re-rendered
    ja = make(root, "report", "EXP=seed000", "REPORT_LANG=ja")
    assert ja.returncode == 0, ja.stderr[-2000:]
    assert "インポート" in (root / "reports" / "seed000" / "report.ja.md").read_text()


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_japanese_imported_report_has_the_same_numbers(workdir):
    from test_report_lang import NUMBER, TIMESTAMP

    logs = workdir / "lightning_logs"
    fx.lightning_version(logs / "version_0", range(0, 60))
    fx.lightning_version(logs / "version_1", range(40, 120))
    run_import(logs, "lightning", "both", steps_planned=200)
    reports = {}
    for lang in ("en", "ja"):
        cfg = load_experiment("both", [f"report.language={lang}"])
        freeze(cfg, RunDir("runs/both"))
        (written,) = render(Path("runs/both"), cfg, Path("reports") / lang)
        text = written.read_text()
        reports[lang] = sorted(NUMBER.findall(TIMESTAMP.sub("", text)))  # word order differs, numbers do not
    assert reports["en"] == reports["ja"] and len(reports["en"]) > 100


# --------------------------------------------------------------------------- shared readers
def _naive_array_lines(text: str, key: str) -> list[int]:
    """The old, quadratic way: decode each element, count newlines from the file's start to it."""
    import json as _json

    from pipeline.importers.common import _skip_space

    match = re.search(rf'"{re.escape(key)}"\s*:\s*\[', text)
    decoder, pos, lines = _json.JSONDecoder(), match.end(), []
    while True:
        pos = _skip_space(text, pos)
        if pos >= len(text) or text[pos] == "]":
            return lines
        lines.append(text.count("\n", 0, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)
        pos = _skip_space(text, pos)
        if text[pos] == ",":
            pos += 1


@pytest.mark.parametrize("indent", [None, 1, 2, 4])
def test_array_lines_equal_the_naive_count(indent):
    from pipeline.importers.common import array_lines

    history = [{"step": i, "loss": 1.0 / (i + 1), "nested": {"a": [1, 2, {"b": "x\ny"}]}} for i in range(300)]
    history[7] = [1, 2]  # not every element is an object
    text = json.dumps({"best": None, "log_history": history, "max_steps": 300}, indent=indent)
    lines = array_lines(text, "log_history")
    assert lines == _naive_array_lines(text, "log_history") and len(lines) == 300
    if indent:  # the line each element starts on really holds its opening bracket
        assert all(text.splitlines()[n - 1].strip() in ("{", "[") for n in lines)
    assert array_lines(text, "missing") == []
    assert array_lines('{"log_history": [\n{"step": 1},\n{"step": ', "log_history") == [2, 3]  # torn file


# --------------------------------------------------------------------------- the adapter interface
def test_every_adapter_says_the_same_when_src_holds_nothing(workdir):
    from pipeline.importers import ADAPTERS

    (workdir / "empty").mkdir()
    for name, adapter in ADAPTERS.items():
        with pytest.raises(SourceError) as err:
            run_import(workdir / "empty", name, "nothing")
        assert str(err.value) == f"{workdir / 'empty'}: no {adapter.find.looked_for()}; FROM={name} reads " + (
            adapter.description
        )
    assert not (workdir / "runs").exists()


def test_registry_is_the_one_list(workdir, monkeypatch):
    """FROM= names, the schema's imported.format, the CLI help and the MAP rule all come from ADAPTERS:
    a new importer is one Adapter subclass and its registry line, here a two-column CSV of (step, loss)."""
    from pipeline.cli import build_parser
    from pipeline.config.schema import ImportInfo
    from pipeline.importers import ADAPTERS
    from pipeline.importers.adapter import Adapter, Find, Rows
    from pipeline.importers.common import number, required_step

    class Toy(Adapter):
        name = "toy"
        description = "a toy trainer: a directory with losses.csv"
        find = Find("losses.csv")

        def records(self, path, imp):
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                step, loss = line.split(",")
                yield f"{path}:{lineno}", {"step": step, "loss": loss}

        def rows(self, record, where, imp):
            return Rows(metrics={"step": required_step(record, "step", where), "loss": number(record["loss"], where)})

    with pytest.raises(ValueError, match=r"format\n.*expected one of 'lingua', 'hf-trainer'.*got 'toy'"):
        ImportInfo(format="toy", source="x", provides=["train"])
    with pytest.raises(
        UserError, match="FROM=toy: expected one of lingua, hf-trainer, lightning, wandb, tensorboard, lm-eval"
    ):
        run_import(workdir, "toy", "t")
    monkeypatch.setitem(ADAPTERS, "toy", Toy)
    (workdir / "toy_out").mkdir()
    (workdir / "toy_out" / "losses.csv").write_text("1,3.5\n2,3.25\n3,3.0\n")
    run_dir, report = import_and_render(workdir / "toy_out", "toy", "toy_run", steps_planned=3)
    assert [(r["step"], r["loss"]) for r in jsonl(run_dir / "train" / "metrics.jsonl")] == [
        (1, 3.5),
        (2, 3.25),
        (3, 3.0),
    ]
    assert load_experiment("toy_run").imported.format == "toy" and "Imported from **toy**" in report
    with pytest.raises(
        UserError, match=r"MAP: only FROM=lightning, FROM=wandb, FROM=tensorboard takes column names \(got FROM=toy\)"
    ):
        run_import(workdir / "toy_out", "toy", "toy_run", mapping={"loss": "x"})
    (workdir / "toy_out" / "losses.csv").write_text("1,oops\n")
    with pytest.raises(SourceError, match=r"losses\.csv:1: expected a number, got 'oops'"):
        run_import(workdir / "toy_out", "toy", "toy_run")
    help_text = build_parser()._subparsers._group_actions[0].choices["import"].format_help()
    for name, adapter in ADAPTERS.items():
        assert name in help_text and adapter.description.split(":")[0] in help_text


def test_a_missing_reader_package_is_one_line(monkeypatch):
    # The image has no tensorboard/wandb (requirements-test.txt is the venv's): simulate their absence here.
    import builtins

    from pipeline.errors import UserError
    from pipeline.importers.common import optional_package

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.delitem(sys.modules, "tensorboard.util.tensor_util", raising=False)
    with pytest.raises(UserError, match=r"FROM=tensorboard: reading these files needs the 'tensorboard' package"):
        optional_package("tensorboard.util.tensor_util", "tensorboard")
