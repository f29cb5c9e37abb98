"""xfs_mkwrite_delalloc: the reproducer's marker verifier, compiled and run on the host.

The C functions that decide what a page must hold are mirrored here; files
written by Python from the mirror must verify clean, and every page damaged
on purpose must come out as one ``@@lost`` line that the harness's verdict
turns into DATA_LOSS.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from harness.guest.protocol import StepResult
from harness.repro import spec as specs
from harness.verdict import Evidence, Outcome, data_rule, judge

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "reproducers" / "xfs_mkwrite_delalloc"
PAGE = 4096
LOST_RE = re.compile(r"^@@lost page (\d+) offset (\d+) expected 0x([0-9a-f]{16}) got 0x([0-9a-f]{16})$", re.M)


def marker_value(rnd: int, page: int) -> int:  # mirrors repro.c
    return 0x4D4B000000000000 | ((rnd & 0xFFFFFF) << 24) | (page & 0xFFFFFF)


def marker_offset(page: int) -> int:  # mirrors repro.c
    return ((page * 37 + 5) % (PAGE // 8)) * 8


def page_image(rnd: int, page: int) -> bytearray:
    buf = bytearray(PAGE)
    buf[marker_offset(page) : marker_offset(page) + 8] = struct.pack("<Q", marker_value(rnd, page))
    return buf


@pytest.fixture(scope="module")
def repro(tmp_path_factory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc missing (run `harness setup`)")
    out = tmp_path_factory.mktemp("bin") / "repro"
    subprocess.run([gcc, "-O2", "-Wall", "-Werror", "-pthread", "-o", str(out), str(FOLDER / "repro.c")], check=True)
    return out


def _run(repro: Path, *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(repro), *args], capture_output=True, text=True, timeout=timeout)


def _evidence(output: str) -> Evidence:
    steps = (StepResult("run", 0, 1.0, 2.0),)
    return Evidence(console="", output=f"@@harness guest up 1.0 kernel x\n{output}@@harness done\n", steps=steps)


def test_marker_layout():
    offsets = {marker_offset(p) for p in range(512)}
    assert len(offsets) == 512 and all(o % 8 == 0 and o + 8 <= PAGE for o in offsets)  # every slot, once
    values = {marker_value(r, p) for r in (1, 2) for p in range(2000)}
    assert len(values) == 4000 and 0 not in values


def test_python_written_file_verifies_clean(repro, tmp_path):
    data = tmp_path / "f"
    data.write_bytes(b"".join(page_image(5, p) for p in range(300)))
    done = _run(repro, "--verify", str(data), "-p", "300", "-r", "5")
    assert done.returncode == 0, done.stdout
    assert "verify: 0 bad pages of 300" in done.stdout and "@@lost" not in done.stdout
    wrong_round = _run(repro, "--verify", str(data), "-p", "300", "-r", "6")
    assert wrong_round.returncode == 1 and len(LOST_RE.findall(wrong_round.stdout)) == 300
    assert "verify: 300 bad pages of 300" in wrong_round.stdout


def test_damaged_pages_are_reported_exactly(repro, tmp_path):
    pages = [page_image(9, p) for p in range(100)]
    pages[7] = bytearray(PAGE)  # the marker never reached disk
    pages[42][marker_offset(42)] ^= 0x01  # a wrong marker
    pages[63][(marker_offset(63) + 16) % PAGE] = 0xAB  # stray data elsewhere in the page
    data = tmp_path / "f"
    data.write_bytes(b"".join(pages[:99]))  # page 99 missing: short file
    done = _run(repro, "--verify", str(data), "-p", "100", "-r", "9")
    assert done.returncode == 1
    lost = [(int(p), int(o), int(e, 16), int(g, 16)) for p, o, e, g in LOST_RE.findall(done.stdout)]
    assert lost == [
        (7, marker_offset(7), marker_value(9, 7), 0),
        (42, marker_offset(42), marker_value(9, 42), marker_value(9, 42) ^ 0x01),
        (63, (marker_offset(63) + 16) % PAGE // 8 * 8, 0, 0xAB),
        (99, marker_offset(99), marker_value(9, 99), 0),
    ]
    verdict = judge(_evidence(done.stdout))
    assert verdict.outcome is Outcome.DATA_LOSS and len(verdict.lost) == 4
    assert verdict.lost[0] == f"page 7 offset {marker_offset(7)} expected 0x{marker_value(9, 7):016x} got 0x{0:016x}"


def test_self_test_zeroes_pages_on_a_real_file(repro, tmp_path):
    done = _run(repro, "--self-test", str(tmp_path), "-p", "64", "-c", "3,17", "-x", "40")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [int(p) for p, *_ in LOST_RE.findall(done.stdout)] == [3, 17, 40]
    assert "self-test: 3 bad pages of 64 (expected 3)" in done.stdout
    clean = _run(repro, "--self-test", str(tmp_path), "-p", "64")
    assert clean.returncode == 0 and "@@lost" not in clean.stdout
    assert data_rule(_evidence(clean.stdout)) is None


def test_first_loss_time_reaches_the_verdict(repro, tmp_path):
    done = _run(repro, "--self-test", str(tmp_path), "-p", "8", "-c", "1")
    verdict = data_rule(_evidence(done.stdout + "@@first-loss-after 3.250\n"))
    assert verdict.outcome is Outcome.DATA_LOSS and verdict.time_to_hit == 3.25


@pytest.mark.parametrize("method", ["unmapped", "protnone"])
def test_race_runs_and_every_write_fails(repro, tmp_path, method):
    """On the host (no XFS, any kernel): the plumbing works and writes really fail."""
    done = _run(repro, str(tmp_path), "-t", "1", "-p", "64", "-s", method)
    assert done.returncode == 0, done.stdout + done.stderr
    m = re.search(r"writes (\d+): (\d+) failed, 0 completed, 0 other; 0 lost markers", done.stdout)
    assert m and int(m.group(1)) > 0 and m.group(1) == m.group(2), done.stdout
    assert "@@lost" not in done.stdout


def test_inject_without_fault_injection_tests_nothing_and_says_so(repro, tmp_path):
    done = _run(repro, str(tmp_path), "-t", "1", "-p", "64", "-s", "inject")
    assert done.returncode == 3, done.stdout  # the writes completed: no failure, no test
    assert "no write failed" in done.stdout and "@@lost" not in done.stdout


def test_specs_load():
    for folder in (FOLDER, FOLDER / "inject"):
        spec = specs.load(str(folder))
        assert spec.source.resolve() == FOLDER / "repro.c"
        assert spec.expect.data_loss and spec.image.fs == "xfs" and spec.image.size >= 300 << 20
        assert {v.name for v in spec.variants} == {"xfs-unfixed", "stock"}
        assert spec.expect.for_kernel("debian-src:6.1.192/xfs-unfixed") == "reproduce"
        assert spec.expect.for_kernel("debian-src:6.1.192/stock") == "clean"
        unfixed = spec.variant("xfs-unfixed")
        assert [p.name for p, rev in unfixed.patches] == [
            "0001-xfs-restore-pre-6.1.92-delalloc-punch-on-write-failure.patch"] and not unfixed.patches[0][1]
        assert "faults" in unfixed.kconfig and "faults" in spec.variant("stock").kconfig
