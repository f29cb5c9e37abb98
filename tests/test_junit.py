"""JUnit XML of a matrix run, read back with junitparser."""

from __future__ import annotations

from dataclasses import replace

import junitparser
import pytest
from test_matrix import fabricate_cell

from harness.matrix.run import error_cell
from harness.matrix.spec import Cell
from harness.results import junit, new_run_folder
from harness.results.db import CellResult, MatrixIndex
from harness.verdict import Outcome

pytestmark = pytest.mark.usefixtures("frozen_reproducers")


def build_index(tmp_path) -> MatrixIndex:
    folder = new_run_folder("matrix", "junit", tmp_path)
    index = MatrixIndex(id=folder.name, folder=folder, started="2026-01-01T00:00:00", status="done")

    def add(kernel: str, outcomes: list[Outcome], **kw) -> None:
        nonlocal index
        cell_dir = fabricate_cell(folder, kernel, "ext4_inline", outcomes)
        result = CellResult.from_folder(f"{kernel}:ext4_inline", kernel, cell_dir, folder)
        index = index.with_cell(replace(result, **kw))

    add("debian:6.1.0-47", [Outcome.REPRODUCED])  # pass
    add("debian:6.1.0-48", [Outcome.CLEAN, Outcome.CLEAN])  # failure: must reproduce, stayed clean
    add("debian:6.12.117", [Outcome.OTHER_CRASH])  # failure: must stay clean, crashed
    add("debian:6.12.100", [Outcome.CLEAN])  # skipped: no expectation
    cell = Cell("debian:6.1.0-50", "ext4_inline", expectation="reproduce")
    broken = error_cell(cell, folder, "BUILD_ERROR", "make failed: error: 'foo' undeclared")
    index = index.with_cell(CellResult.from_folder(cell.id, cell.kernel_id, broken, folder))  # error
    index = index.with_cell(Cell("debian:6.1.0-51", "ext4_inline", expectation="reproduce").pending())  # skipped
    index = index.with_cell(replace(Cell("debian:6.1.0-52", "ext4_inline").pending(), status="missing",
                                    error="no cell folder: its job produced nothing"))  # error
    return index


def patched(index: MatrixIndex) -> MatrixIndex:
    # the OTHER_CRASH cell must contradict a 'clean' expectation: give it one
    c = index.cell("debian:6.12.117:ext4_inline")
    return index.with_cell(replace(c, expectation="clean", met=False))


def test_junit_counts_and_cases(tmp_path):
    index = patched(build_index(tmp_path))
    path = junit.write(index)
    xml = junitparser.JUnitXml.fromfile(str(path))
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (7, 2, 2, 2)
    (suite,) = list(xml)
    assert suite.name == "ext4_inline" and (suite.tests, suite.failures, suite.errors, suite.skipped) == (7, 2, 2, 2)
    cases = {c.name: c for c in suite}
    assert all(c.classname == "ext4_inline" for c in cases.values())

    def kind(name: str) -> str:
        results = cases[name].result
        return type(results[0]).__name__ if results else "passed"

    assert {n: kind(n) for n in cases} == {
        "debian:6.1.0-47": "passed", "debian:6.1.0-48": "Failure", "debian:6.12.117": "Failure",
        "debian:6.12.100": "Skipped", "debian:6.1.0-50": "Error", "debian:6.1.0-51": "Skipped",
        "debian:6.1.0-52": "Error",
    }
    assert cases["debian:6.1.0-47"].time == 41.0


def test_failure_text_is_the_report_or_the_console_tail(tmp_path):
    index = patched(build_index(tmp_path))
    xml = junitparser.JUnitXml.fromfile(str(junit.write(index)))
    cases = {c.name: c for suite in xml for c in suite}

    crashed = cases["debian:6.12.117"].result[0]
    assert crashed.message.startswith("expected clean, got OTHER_CRASH (WARNING in ext4_da_update_reserve_space)")
    assert "report.txt:\nWARNING in ext4_da_update_reserve_space\nCall Trace:" in crashed.text

    clean = cases["debian:6.1.0-48"].result[0]
    assert clean.message == "expected reproduce, got CLEAN · 0/2 hits" and clean.type == "CLEAN"
    lines = clean.text.splitlines()
    assert lines[0].endswith("run-01/console.log (last 50 lines):") and len(lines) == 51
    assert lines[1].endswith("boot line 30 of debian:6.1.0-48 run 1") and lines[-1].endswith("boot line 79 of debian:6.1.0-48 run 1")

    error = cases["debian:6.1.0-50"].result[0]
    assert error.type == "BUILD_ERROR" and "'foo' undeclared" in error.message and "'foo' undeclared" in error.text
    assert cases["debian:6.1.0-51"].result[0].message == "pending: 0 run(s) recorded"
    assert "no expectation for debian:6.12.100: CLEAN" in cases["debian:6.12.100"].result[0].message


def test_console_control_characters_do_not_break_the_xml(tmp_path):
    index = build_index(tmp_path)
    cell = index.cell("debian:6.1.0-48:ext4_inline")
    console = index.folder / cell.folder / "run-01" / "console.log"
    console.write_text("\x1b[0mQEMU \x00\x07 escape codes\n")
    xml = junitparser.JUnitXml.fromfile(str(junit.write(index)))
    text = next(c for s in xml for c in s if c.name == "debian:6.1.0-48").result[0].text
    assert "QEMU  escape codes" in text.replace("[0m", "")
