"""The matrix history DB: every finished cell across matrix runs; flaky cells, changes, comparisons."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from test_matrix import fabricate_cell

from harness.errors import UnknownName
from harness.results import new_run_folder
from harness.results.db import CellResult, History, MatrixIndex, folder_time
from harness.verdict import Outcome

K47, K56 = "debian:6.1.0-47", "debian:6.1.0-56"


def matrix_run(root: Path, stamp: str, cells: dict[str, list[Outcome]]) -> MatrixIndex:
    """A finished matrix folder with one fabricated cell per kernel."""
    folder = new_run_folder("matrix", "t", root)
    index = MatrixIndex(id=folder.name, folder=folder, started=stamp, status="done")
    for kernel, outcomes in cells.items():
        cell_dir = fabricate_cell(folder, kernel, "ext4_inline", outcomes)
        index = index.with_cell(CellResult.from_folder(f"{kernel}:ext4_inline", kernel, cell_dir, folder))
    index.write()
    return index


def test_cell_result_reads_the_summary_shape(tmp_path):
    folder = fabricate_cell(tmp_path, K47, "ext4_inline", [Outcome.CLEAN, Outcome.REPRODUCED])
    c = CellResult.from_folder(f"{K47}:ext4_inline", K47, folder, tmp_path)
    assert (c.verdict, c.hits, c.runs, c.expectation, c.met, c.status) == ("REPRODUCED", 1, 2, "reproduce", True, "done")
    assert c.folder == folder.name and c.started == folder_time(folder.name) and c.time_to_hit == (7.0,)
    assert [r.verdict for r in c.results] == ["CLEAN", "REPRODUCED"] and c.wall_seconds == 83.0
    assert CellResult.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_index_round_trip(tmp_path):
    index = matrix_run(tmp_path, "2026-01-01T00:00:00", {K47: [Outcome.REPRODUCED], K56: [Outcome.CLEAN]})
    loaded = MatrixIndex.load(index.folder)
    assert loaded.cells == index.cells and loaded.id == index.id
    assert loaded.counts() == {"cells": 2, "done": 2, "met": 1, "unmet": 1, "errors": 0}
    assert loaded.kernels == [K47, K56] and loaded.repros == ["ext4_inline"]
    with pytest.raises(UnknownName, match="is not a matrix folder"):
        MatrixIndex.load(tmp_path / "nowhere")


def test_history_recent_flaky_changes_compare(tmp_path):
    db = History(tmp_path / "history.sqlite3")
    a = matrix_run(tmp_path, "2026-01-01T00:00:00", {K47: [Outcome.REPRODUCED], K56: [Outcome.REPRODUCED]})
    b = matrix_run(tmp_path, "2026-01-02T00:00:00", {K47: [Outcome.REPRODUCED, Outcome.CLEAN], K56: [Outcome.CLEAN]})
    c = matrix_run(tmp_path, "2026-01-03T00:00:00", {K47: [Outcome.REPRODUCED], K56: [Outcome.CLEAN]})
    for index in (a, b, c):
        db.record(index)
    db.record(c)  # idempotent: one row per (matrix, cell)

    db = History(tmp_path / "history.sqlite3")  # kept across processes
    recent = db.recent()
    assert [r.id for r in recent] == [c.id, b.id, a.id]
    assert (recent[0].cells, recent[0].met, recent[0].unmet, recent[0].errors) == (2, 1, 1, 0)
    assert len(db.recent(limit=1)) == 1

    flaky = {f.cell: f for f in db.flaky()}
    assert set(flaky) == {f"{K47}:ext4_inline", f"{K56}:ext4_inline"}
    assert flaky[f"{K47}:ext4_inline"].verdicts == ("REPRODUCED",) and flaky[f"{K47}:ext4_inline"].partial == 1
    assert flaky[f"{K56}:ext4_inline"].verdicts == ("REPRODUCED", "CLEAN") and flaky[f"{K56}:ext4_inline"].rows == 3

    changes = db.changes(f"{K56}:ext4_inline")
    assert [(r.matrix, r.verdict) for r in changes] == [(a.id, "REPRODUCED"), (b.id, "CLEAN")]
    assert changes[1].met is False and changes[0].met is True and Path(changes[0].folder).is_dir()

    assert db.compare(a.id, b.id)[0].cell == f"{K56}:ext4_inline"
    assert [(x.before, x.after) for x in db.compare(a.id, "latest")] == [("REPRODUCED", "CLEAN")]
    assert db.compare("previous", "latest") == []
    assert db.matrix_id(a.id) == a.id and db.matrix_id("previous") == b.id
    with pytest.raises(UnknownName, match="Ambiguous matrix run"):
        db.matrix_id(a.id[:8])  # the three share their date
    with pytest.raises(UnknownName, match="Unknown matrix run 'nope'. Available: "):
        db.compare("nope", "latest")
    with pytest.raises(UnknownName, match="Unknown cell 'debian:9:x'"):
        db.changes("debian:9:x")


def test_unfinished_cells_stay_out_of_the_history(tmp_path):
    index = matrix_run(tmp_path, "2026-01-01T00:00:00", {K47: [Outcome.REPRODUCED], K56: [Outcome.CLEAN]})
    index = index.with_cell(replace(index.cells[1], status="interrupted"))
    index = index.with_cell(CellResult(cell="debian:6.12.117:ext4_inline", kernel="debian:6.12.117", repro="ext4_inline"))
    db = History(tmp_path / "h.sqlite3")
    db.record(index)
    assert [r.cell for r in db.cells()] == [f"{K47}:ext4_inline"]


def test_a_cell_cut_short_before_its_first_run_has_no_verdict(tmp_path):
    folder = fabricate_cell(tmp_path, K47, "ext4_inline", [], status="interrupted")
    c = CellResult.from_folder(f"{K47}:ext4_inline", K47, folder, tmp_path)
    assert (c.status, c.verdict, c.runs) == ("interrupted", None, 0)


def test_error_cells_count_as_errors_not_as_unmet(tmp_path):
    """build_error() records met=False for a must-reproduce kernel; the history counts it as an error."""
    from harness.errors import KernelError
    from harness.repro import spec as specs
    from harness.repro.run import build_error

    index = matrix_run(tmp_path, "2026-01-01T00:00:00", {K47: [Outcome.REPRODUCED]})
    broken = build_error(specs.load("ext4_inline"), K56, KernelError("apt-get download failed"), index.folder)
    index = index.with_cell(CellResult.from_folder(f"{K56}:ext4_inline", K56, broken.folder, index.folder))
    assert index.cell(f"{K56}:ext4_inline").met is False and index.cell(f"{K56}:ext4_inline").is_error
    assert index.counts() == {"cells": 2, "done": 2, "met": 1, "unmet": 0, "errors": 1}
    db = History(tmp_path / "h.sqlite3")
    db.record(index)
    (row,) = db.recent()
    assert (row.cells, row.met, row.unmet, row.errors) == (2, 1, 0, 1)


def test_a_run_folder_is_absolute_whatever_root_it_was_given(tmp_path, monkeypatch):
    """A relative --results (`--results out/cell` in a CI job) once reached the compile guest as a relative
    path, which vng's guest could not find from its own working directory: run folders are absolute."""
    monkeypatch.chdir(tmp_path)
    folder = new_run_folder("ext4_inline", "debian-src:6.1.192", Path("out/cell"))
    assert folder.is_absolute() and folder.parent == tmp_path / "out" / "cell" and folder.is_dir()
    monkeypatch.setenv("HARNESS_RESULTS", "rel")
    assert new_run_folder("x", "k").parent == tmp_path / "rel"
