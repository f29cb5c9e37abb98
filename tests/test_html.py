"""The static HTML page: table, colours, relative links, the SVG plot, and a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from test_junit import build_index

from harness.results import html
from harness.results.db import MatrixIndex

pytestmark = pytest.mark.usefixtures("frozen_reproducers")

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--hide-scrollbars",
)


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.tags: set[str] = set()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        if "href" in a:
            self.hrefs.append(a["href"])
        if "src" in a:
            self.srcs.append(a["src"])


def page(tmp_path) -> tuple[MatrixIndex, str]:
    index = build_index(tmp_path)
    return index, html.write(index).read_text()


def test_table_colours_marks_and_relative_links(tmp_path):
    index, text = page(tmp_path)
    assert f"<title>Kernel × reproducer matrix {index.id}</title>" in text
    rows = re.findall(r"<tr><th>([^<]+)</th>", text[text.index("<tbody>"):])
    assert rows == index.kernels  # kernels are rows, in matrix order
    assert "<th>ext4_inline</th>" in text
    assert f'style="background:{html.COLOURS["REPRODUCED"]}" data-cell="debian:6.1.0-47:ext4_inline"' in text
    assert f'style="background:{html.COLOURS["BUILD_ERROR"]}" data-cell="debian:6.1.0-50:ext4_inline"' in text
    assert text.count('class="met yes"') == 1 and text.count('class="met no"') == 1
    assert "1/1 hits · expect reproduce" in text and "0/2 hits · expect reproduce" in text
    assert "no expectation" in text and ">pending<" in text and ">missing<" in text

    links = Links()
    links.feed(text)
    assert "script" not in links.tags and not links.srcs  # no JS, nothing fetched
    assert all("://" not in h for h in links.hrefs)  # relative links only: works from a CI artifact
    console = [h for h in links.hrefs if h.endswith("console.log")]
    reports = [h for h in links.hrefs if h.endswith("report.txt")]
    assert len(console) == 5 and len(reports) == 2  # every run; reports where a crash was parsed
    for href in links.hrefs:
        assert (index.folder / unquote(href)).exists() or href in ("matrix.json", "junit.xml"), href


def test_time_to_first_hit_plot(tmp_path):
    index, text = page(tmp_path)
    svg = text[text.index("<svg"): text.index("</svg>")]
    assert svg.count("<circle") == sum(len(c.time_to_hit) for c in index.cells) == 2  # REPRODUCED, OTHER_CRASH
    assert "3.50 s (1/1)" in svg and "no hit in 2 run(s)" in svg
    assert re.search(r'<rect x="300" y="\d+" width="[\d.]+" height="14" fill="#f28b82"/>', svg)
    empty = MatrixIndex(id="m", folder=tmp_path)
    assert "no cell has run yet" in html.tth_svg(empty)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: apt-get install -y chromium")
    pytest.skip("chromium is not installed (apt-get install -y chromium); the screenshot test needs it")


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(profile)},
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_screenshot_in_headless_chromium(tmp_path):
    binary = chromium()
    index, _ = page(tmp_path)
    url = (index.folder / "index.html").as_uri()
    shot = tmp_path / "matrix.png"
    done = run_chromium(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1100", url)
    assert shot.exists(), done.stderr[-2000:]
    assert png_size(shot) == (1280, 1100)
    assert shot.stat().st_size > 30_000, "a blank page compresses to a few KB"
    dom = run_chromium(binary, tmp_path / "profile", "--dump-dom", url).stdout
    assert f"Kernel × reproducer matrix {index.id}" in dom and "debian:6.1.0-47" in dom and "<svg" in dom
    if os.environ.get("HARNESS_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(shot, os.environ["HARNESS_SCREENSHOT"])


def test_fstests_cell_shows_counts_and_links_the_out_bad_diffs(tmp_path):
    """An fstests cell: the run's pass/fail/notrun counts and a link to each failed test's .out.bad."""
    import json

    from harness.results.db import CellResult

    cell_dir = tmp_path / "cells" / "fstests-xfs"
    run = cell_dir / "run-01"
    (run / "fstests" / "generic").mkdir(parents=True)
    (run / "fstests" / "generic" / "263.out.bad").write_text("READ BAD DATA: offset = 0x1200\n")
    (run / "console.log").write_text("[ 1.0] harness: run fstests\n")
    tests = [{"name": "generic/002", "status": "pass", "seconds": 59, "reason": ""},
             {"name": "generic/263", "status": "fail", "seconds": 89, "reason": "output mismatch",
              "out_bad": str(run / "fstests" / "generic" / "263.out.bad")},
             {"name": "generic/548", "status": "notrun", "seconds": None, "reason": "No encryption support for xfs"}]
    record = {"run": 1, "verdict": "TEST_FAILED", "wall_seconds": 900.0,
              "fstests": {"complete": True, "counts": {"pass": 1, "fail": 1, "notrun": 1, "unfinished": 0,
                                                       "unreached": 0}, "tests": tests}}
    (cell_dir / "result.json").write_text(json.dumps({"repro": "fstests-xfs", "verdict": "TEST_FAILED", "hits": 1,
                                                      "runs": 1, "status": "done", "results": [record]}))
    cell = CellResult.from_folder("debian:6.1:fstests-xfs", "debian:6.1", cell_dir, tmp_path)
    assert cell.results[0].fstests["failed"] == [{"name": "generic/263", "out_bad": "fstests/generic/263.out.bad"}]
    again = CellResult.from_dict(json.loads(json.dumps(cell.to_dict())))  # the history keeps it
    assert again.results[0].fstests == cell.results[0].fstests
    text = html.cell_html(cell, tmp_path)
    assert "fstests: 1 pass, 1 fail, 1 notrun" in text
    hrefs = re.findall(r'href="([^"]+)"', text)
    target = next(h for h in hrefs if h.endswith(".out.bad"))
    assert (tmp_path / unquote(target)).read_text().startswith("READ BAD DATA")
