"""Scale-out: export the matrix to GitHub Actions / GitLab, run the jobs' cells, merge the artifacts."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import junitparser
import pytest
import yaml
from test_matrix import SMALL, available, fabricate_cell, fake_kernel, fake_runner, write_matrix

from harness.cli import matrix as matrix_cli
from harness.errors import ExitCode, HarnessError
from harness.matrix import ci as export
from harness.matrix.run import exit_code, run_matrix
from harness.matrix.spec import load_matrix
from harness.options import RunOptions
from harness.results.db import History, MatrixIndex
from harness.verdict import Outcome

pytestmark = pytest.mark.usefixtures("frozen_reproducers")

ROOT = Path(__file__).resolve().parent.parent


def github_jobs(spec: Path) -> dict:
    cells = load_matrix(spec, available=available).cells
    return yaml.safe_load(export.github_actions(cells, "matrix.yaml"))


def test_github_actions_workflow_shape(tmp_path):
    wf = github_jobs(write_matrix(tmp_path, SMALL))
    assert True in wf  # YAML 1.1 reads the key `on` as True; GitHub reads it as "on"
    cell, merge = wf["jobs"]["cell"], wf["jobs"]["merge"]
    include = cell["strategy"]["matrix"]["include"]
    assert [e["cell"] for e in include] == [
        "debian:6.1.0-47:ext4_inline", "debian:6.1.0-56:ext4_inline", "debian:6.12.117:ext4_inline"
    ]
    assert include[0] == {"cell": "debian:6.1.0-47:ext4_inline", "kernel": "debian:6.1.0-47",
                          "repro": "ext4_inline", "artifact": "cell-debian_6.1.0-47_ext4_inline"}
    assert cell["strategy"]["fail-fast"] is False
    runs = [s.get("run", "") for s in cell["steps"]]
    assert 'harness matrix run matrix.yaml --only "${{ matrix.cell }}" --results out/' in runs
    upload = next(s for s in cell["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"] == {"name": "${{ matrix.artifact }}", "path": "out/", "if-no-files-found": "warn"}
    assert upload["if"] == "always()"
    assert merge["needs"] == "cell" and merge["if"] == "always()"
    assert "harness matrix merge cells/ --spec matrix.yaml --results merged/" in [s.get("run") for s in merge["steps"]]


def test_gitlab_pipeline_shape(tmp_path):
    cells = load_matrix(write_matrix(tmp_path, SMALL), available=available).cells
    ci = yaml.safe_load(export.gitlab(cells))
    job = ci["matrix-cell"]
    assert job["parallel"]["matrix"] == [{"CELL": [c.id for c in cells]}]
    assert 'harness matrix run matrix.yaml --only "$CELL" --results "out/$CI_JOB_ID"' in job["script"]
    assert job["artifacts"] == {"when": "always", "paths": ["out/"]}
    assert ci["matrix-merge"]["needs"] == ["matrix-cell"]
    assert ci["matrix-merge"]["artifacts"]["reports"]["junit"] == "merged/*/junit.xml"


def test_shipped_workflow_is_the_export_of_the_shipped_matrix():
    cells = load_matrix(ROOT / "matrix.yaml", available=lambda kind: []).cells
    shipped = (ROOT / ".github" / "workflows" / "matrix.yml").read_text()
    assert shipped == export.github_actions(cells, "matrix.yaml"), (
        "regenerate: harness matrix export --github-actions -o .github/workflows/matrix.yml"
    )


def test_export_then_merge_round_trip(tmp_path):
    """Each exported job runs its one cell into its own out/; the merge job rebuilds one matrix."""
    spec = write_matrix(tmp_path, SMALL)
    include = github_jobs(spec)["jobs"]["cell"]["strategy"]["matrix"]["include"]
    downloads = tmp_path / "cells"
    for entry in include[:2]:  # the third job died before it could upload anything
        out = tmp_path / "jobs" / entry["artifact"] / "out"
        run_matrix(spec, RunOptions(accel="tcg", results=out), only=[entry["cell"]], available=available,
                   resolver=fake_kernel, runner=fake_runner())
        shutil.copytree(out, downloads / entry["artifact"])  # actions/download-artifact: cells/<name>/
    assert len(list(downloads.glob("*/*-matrix-small/matrix.json"))) == 2

    merged_root = tmp_path / "merged"
    index = export.merge([downloads], results_root=merged_root, spec=spec, available=available)
    saved = MatrixIndex.load(index.folder)
    assert [(c.cell, c.status, c.verdict) for c in saved.cells] == [
        ("debian:6.1.0-47:ext4_inline", "done", "REPRODUCED"),
        ("debian:6.1.0-56:ext4_inline", "done", "CLEAN"),
        ("debian:6.12.117:ext4_inline", "missing", None),
    ]
    for c in saved.cells[:2]:  # the cell folders were copied in, not referenced
        assert (index.folder / c.folder / "run-01" / "console.log").exists()
        assert (index.folder / c.folder).parent == index.folder
    assert json.loads((index.folder / "matrix.json").read_text())["merged_from"] == [str(downloads.resolve())]

    xml = junitparser.JUnitXml.fromfile(str(index.folder / "junit.xml"))
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (3, 1, 1, 0)

    page = (index.folder / "index.html").read_text()
    for c in saved.cells:
        assert f"<th>{c.kernel}</th>" in page
    assert f'href="{saved.cells[0].folder}/run-01/report.txt"' in page

    rows = History(merged_root / "history.sqlite3").cells(matrix=index.id)
    assert [(r.cell, r.verdict) for r in rows] == [("debian:6.1.0-47:ext4_inline", "REPRODUCED"),
                                                    ("debian:6.1.0-56:ext4_inline", "CLEAN")]
    assert exit_code(index) == ExitCode.UNMET


def test_merge_prefers_a_finished_cell_and_takes_bare_folders(tmp_path):
    """A retried job leaves two folders for one cell; a folder without matrix.json still merges."""
    a, b = tmp_path / "a", tmp_path / "b"
    fabricate_cell(a, "debian:6.1.0-47", "ext4_inline", [Outcome.CLEAN], status="interrupted")
    fabricate_cell(b, "debian:6.1.0-47", "ext4_inline", [Outcome.REPRODUCED])
    fabricate_cell(b, "debian:6.1.0-56", "ext4_inline", [Outcome.REPRODUCED])
    found = export.find_cells([a, b])
    assert sorted(found) == ["debian:6.1.0-47:ext4_inline", "debian:6.1.0-56:ext4_inline"]
    assert found["debian:6.1.0-47:ext4_inline"][0].parent == b
    index = export.merge([a, b], results_root=tmp_path / "merged")
    assert [(c.cell, c.verdict, c.met) for c in index.cells] == [
        ("debian:6.1.0-47:ext4_inline", "REPRODUCED", True), ("debian:6.1.0-56:ext4_inline", "REPRODUCED", True)
    ]
    assert exit_code(index) == ExitCode.OK


def test_merge_cli(tmp_path, capsys):
    fabricate_cell(tmp_path / "in", "debian:6.1.0-47", "ext4_inline", [Outcome.REPRODUCED])
    p = argparse.ArgumentParser()
    matrix_cli.add_parsers(p.add_subparsers(dest="command"))
    args = p.parse_args(["matrix", "merge", str(tmp_path / "in"), "--results", str(tmp_path / "out")])
    assert args.func(args) == 0
    assert capsys.readouterr().out.startswith("1 met, 0 not met, 0 errors, 0 not run of 1 cells · ")
    args = p.parse_args(["matrix", "merge", str(tmp_path / "nothing-here")])
    with pytest.raises(HarnessError, match="nothing-here: no such folder"):
        args.func(args)
