"""The Containerfile and the apptainer.def generated from it with spython: no drift, and none of spython's
known conversion mistakes (checked on the committed files and on mutated copies, so each check can fail)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "containers"))
import convert  # noqa: E402

CONTAINERFILE = REPO / "Containerfile"


def test_committed_definition_matches_a_fresh_conversion():
    assert (REPO / "apptainer.def").read_text() == convert.convert(CONTAINERFILE)
    assert convert.main([str(CONTAINERFILE), "--check", str(REPO / "apptainer.def")]) == 0


def test_committed_files_have_no_known_spython_problems():
    assert convert.containerfile_problems(CONTAINERFILE.read_text()) == []
    assert convert.definition_problems((REPO / "apptainer.def").read_text()) == []


def test_containerfile_keeps_the_base_torch():
    text = CONTAINERFILE.read_text()
    assert "grep -v -E '^torch" in text and "torch.__version__" in text and "-c /tmp/torch-pin.txt" in text
    assert "pip install torch" not in text


@pytest.mark.parametrize(
    "mutation, problem",
    [
        (lambda t: t + 'CMD ["--help"]\n', "CMD"),
        (lambda t: t.replace("COPY pipeline /opt/labnote/pipeline", "COPY pipeline pipeline"), "absolute"),
        (
            lambda t: t.replace("ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime", "ARG BASE_IMAGE"),
            "ARG without a default",
        ),
        (lambda t: t + 'LABEL a="1" b="2"\n', "one LABEL per line"),
        (lambda t: t + "USER nobody\n", "USER"),
        (lambda t: "FROM debian AS build\nRUN true\n" + t, "exactly one FROM"),
    ],
)
def test_containerfile_checks_fire(mutation, problem):
    problems = convert.containerfile_problems(mutation(CONTAINERFILE.read_text()))
    assert any(problem in p for p in problems), problems


def test_definition_checks_fire_on_what_spython_produces_from_bad_input(tmp_path: Path):
    bad = tmp_path / "Containerfile"
    text = CONTAINERFILE.read_text().replace("COPY pipeline /opt/labnote/pipeline", "COPY pipeline pipeline")
    bad.write_text(text + 'CMD ["--help"]\nHEALTHCHECK CMD true\n')
    problems = convert.definition_problems(convert.convert(bad))
    assert any("%files destination must be absolute" in p for p in problems), problems
    assert any("%runscript" in p for p in problems), problems
    assert convert.main([str(bad)]) == 1


def test_drift_is_detected(tmp_path: Path):
    stale = tmp_path / "apptainer.def"
    stale.write_text((REPO / "apptainer.def").read_text().replace("0.1.0", "0.0.9"))
    assert convert.main([str(CONTAINERFILE), "--check", str(stale)]) == 1


def test_make_n_shows_the_apptainer_commands(tmp_path: Path):
    import subprocess

    from conftest import project_copy

    project = project_copy(tmp_path)
    proc = subprocess.run(
        ["make", "-n", "report", "EXP=smoke", "RUNTIME=apptainer", "SIF=x.sif", f"HF_HOME={tmp_path}/hf"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "python -m pipeline" in line]
    stages = [line.split("python -m pipeline ")[1].split()[0] for line in lines]
    assert stages == ["resolve", "prepare", "train", "eval", "report"]
    for line in lines:
        assert line.startswith(f"apptainer exec --nv --bind {project}:{project} --bind {tmp_path}/hf --pwd {project}")
        assert "--env HF_HUB_OFFLINE=1 --env HF_DATASETS_OFFLINE=1" in line
        assert f"--env LABNOTE_IMAGE={project}/x.sif" in line and " x.sif python -m pipeline " in line


def test_labels_are_written_the_way_apptainer_reads_them():
    from spython.main.parse.parsers import DockerParser
    from spython.main.parse.writers import SingularityWriter

    raw = SingularityWriter(DockerParser(str(CONTAINERFILE)).recipe).convert()
    assert any("%labels line must be" in p for p in convert.definition_problems(raw))  # spython's own output
    fixed = (REPO / "apptainer.def").read_text()
    assert "org.opencontainers.image.title labnote\n" in fixed
    assert "org.opencontainers.image.description Reproducible language-model experiments" in fixed
