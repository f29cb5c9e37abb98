"""JUnit XML for a matrix run: one testcase per cell (classname = reproducer, name = kernel).

- failure: the cell ran and contradicts the spec's expectation for that kernel;
- error: BOOT_FAILURE, INFRA_ERROR or BUILD_ERROR (the harness could not judge);
- skipped: no expectation for that kernel, or the cell did not finish;
- the failure/error text is the crash report (report.txt) or the last 50 lines
  of the console log of the run that decided the cell.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.results import write_text
from harness.results.db import CellResult, MatrixIndex

TAIL_LINES = 50
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _XML_BAD.sub("", text)


def deciding_run(cell: CellResult) -> int | None:
    """The run that shows the cell's verdict (the first such), else the last run."""
    for r in cell.results:
        if r.verdict == cell.verdict:
            return r.index
    return cell.results[-1].index if cell.results else None


def excerpt(cell: CellResult, base: Path, lines: int = TAIL_LINES) -> str:
    """report.txt of the deciding run, else the tail of its console.log (or the cell's error)."""
    if cell.folder is None:
        return cell.error or ""
    run = deciding_run(cell)
    parts = [cell.error] if cell.error else []
    if cell.proof and cell.proof.get("statement"):
        parts.append(cell.proof["statement"])
    if run is not None:
        run_dir = base / cell.run_dir(next(r for r in cell.results if r.index == run))
        console = run_dir / "console.log"
        whole = [f for f in (run_dir / "report.txt", run_dir / "build-error.txt") if f.exists()]
        if whole:
            parts.append(f"{whole[0].relative_to(base)}:\n{whole[0].read_text(errors='replace')}")
        elif console.exists():
            tail = console.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"{console.relative_to(base)} (last {len(tail)} lines):\n" + "\n".join(tail))
    return "\n".join(parts)


def outcome(cell: CellResult) -> tuple[str, str] | None:
    """(junit element, message) for a cell, or None when it passed."""
    hits = f"{cell.hits}/{cell.runs} hits"
    got = f"{cell.verdict}{f' ({cell.title})' if cell.title else ''}"
    if cell.status == "missing":
        return "error", cell.error or "no result for this cell"
    if cell.status != "done":
        return "skipped", f"{cell.status}: {cell.runs} run(s) recorded"
    if cell.is_error:
        return "error", f"{got}: {cell.error or 'the harness could not judge this kernel'}"[:1000]
    if cell.met is False:
        return "failure", f"expected {cell.expectation}, got {got} · {hits}"
    if cell.expectation is None:
        return "skipped", f"no expectation for {cell.kernel}: {got} · {hits}"
    return None


def testcase(cell: CellResult, base: Path) -> ET.Element:
    case = ET.Element("testcase", classname=cell.repro, name=cell.kernel, time=f"{cell.wall_seconds:.2f}")
    props = ET.SubElement(case, "properties")
    for key in ("cell", "expectation", "verdict", "title", "hits", "runs", "folder"):
        value = getattr(cell, key)
        if value is not None:
            ET.SubElement(props, "property", name=key, value=_clean(str(value)))
    for side in ("base", "patched") if cell.proof else ():  # a proof: both kernels
        s = cell.proof.get(side) or {}
        ET.SubElement(props, "property", name=side, value=_clean(f"{s.get('kernel')}: {s.get('hits')}/{s.get('runs')} hits"))
    result = outcome(cell)
    if result is not None:
        tag, message = result
        el = ET.SubElement(case, tag, message=_clean(message))
        if tag != "skipped":
            el.set("type", cell.verdict or "")
            el.text = _clean(excerpt(cell, base))
    if cell.folder:
        ET.SubElement(case, "system-out").text = _clean(str(base / cell.folder))
    return case


def _count(cases: list[ET.Element]) -> dict[str, str]:
    def n(tag: str) -> str:
        return str(sum(c.find(tag) is not None for c in cases))

    seconds = sum(float(c.get("time", 0)) for c in cases)
    return {"tests": str(len(cases)), "failures": n("failure"), "errors": n("error"),
            "skipped": n("skipped"), "time": f"{seconds:.2f}"}


def to_xml(index: MatrixIndex) -> str:
    """One testsuite per reproducer inside one testsuites element."""
    root = ET.Element("testsuites", name=index.id)
    every: list[ET.Element] = []
    for repro in index.repros:
        cases = [testcase(c, index.folder) for c in index.cells if c.repro == repro]
        suite = ET.SubElement(root, "testsuite", name=repro, **_count(cases))
        if index.started:
            suite.set("timestamp", index.started)
        suite.extend(cases)
        every += cases
    root.attrib.update(_count(every))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(index: MatrixIndex, path: Path | None = None) -> Path:
    return write_text(path or index.folder / "junit.xml", to_xml(index))
