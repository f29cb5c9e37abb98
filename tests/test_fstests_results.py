"""fstests results from real result folders (tests/data/fstests/*/, see its README.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.fstests import results
from harness.fstests.results import Status

DATA = Path(__file__).resolve().parent / "data" / "fstests"


def fixture_parse(name: str, *, base: Path | None = None, console: bool = True, output: bool = True, **kwargs):
    folder = DATA / name
    return results.parse(
        base or folder / "results",
        expected=(folder / "expected.txt").read_text().split(),
        output=(folder / "check.out").read_text() if output else None,
        console=(folder / "console.log").read_text() if console else None,
        **kwargs,
    )


def copy_results(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(DATA / name / "results", dest)
    return dest


def one(res: results.Results, name: str) -> results.TestResult:
    (found,) = [t for t in res.tests if t.name == name]
    return found


# --- a whole run on xfs with the xunit report: pass, fail, notrun ------------------------------


def test_xfs_xunit_counts_and_order():
    res = fixture_parse("xfs-xunit")
    assert res.complete and res.report == DATA / "xfs-xunit" / "results" / "result.xml"
    assert res.counts() == {"pass": 36, "fail": 1, "notrun": 2, "unfinished": 0, "unreached": 0}
    assert [t.name for t in res.tests] == (DATA / "xfs-xunit" / "expected.txt").read_text().split()
    assert one(res, "generic/002").seconds == 59


def test_xfs_xunit_failure_has_its_diff_and_files():
    fail = one(fixture_parse("xfs-xunit"), "generic/263")
    assert fail.status == Status.FAIL and fail.reason.startswith("- output mismatch")
    assert fail.out_bad == DATA / "xfs-xunit" / "results" / "generic" / "263.out.bad"
    assert fail.full and fail.full.name == "263.full"
    assert "+READ BAD DATA: offset = 0x0, size = 0xb000" in fail.diff
    assert fail.diff.startswith("--- tests/generic/263.out")


def test_xfs_xunit_notrun_reasons():
    res = fixture_parse("xfs-xunit")
    assert one(res, "generic/548").reason == "No encryption support for xfs"
    assert one(res, "generic/689").reason == "fsgqa user not defined."
    assert one(res, "generic/689").out_bad is None and not one(res, "generic/689").ran


def test_same_results_without_the_xunit_report(tmp_path):
    """check's output and the folder's files tell the same story as result.xml."""
    base = copy_results("xfs-xunit", tmp_path)
    (base / "result.xml").unlink()
    with_xml, without = fixture_parse("xfs-xunit"), fixture_parse("xfs-xunit", base=base)
    assert without.report is None and without.complete
    assert [(t.name, t.status) for t in without.tests] == [(t.name, t.status) for t in with_xml.tests]
    assert [t.reason for t in without.by_status(Status.NOTRUN)] == [t.reason for t in with_xml.by_status(Status.NOTRUN)]
    # check's line says more than the report's message: the test's exit status too
    assert one(without, "generic/263").reason == "[failed, exit status 1]" + one(with_xml, "generic/263").reason
    assert one(without, "generic/002").seconds == 59 and one(without, "generic/548").seconds is None


def test_the_folder_alone_still_knows_fail_and_notrun(tmp_path):
    base = copy_results("xfs-xunit", tmp_path)
    (base / "result.xml").unlink()
    res = fixture_parse("xfs-xunit", base=base, output=False, console=False)
    assert one(res, "generic/263").status == Status.FAIL
    assert one(res, "generic/548").status == Status.NOTRUN
    # the passes left no trace but a .full: without check's output they are not known to have run
    assert one(res, "generic/002").status == Status.UNREACHED and not res.complete


def test_diff_computed_from_the_build_when_the_report_has_none(tmp_path):
    base = copy_results("xfs-xunit", tmp_path)
    (base / "result.xml").unlink()
    root = tmp_path / "fstests"
    (root / "tests" / "generic").mkdir(parents=True)
    (root / "tests" / "generic" / "263.out").write_text("QA output created by 263\n")
    fail = one(fixture_parse("xfs-xunit", base=base, tests_root=root), "generic/263")
    assert fail.diff.startswith(f"--- {root}/tests/generic/263.out") and "+READ BAD DATA" in fail.diff


def test_to_json_and_table():
    res = fixture_parse("xfs-xunit")
    body = res.to_json()
    assert body["counts"]["fail"] == 1 and body["tests"][0] == {
        "name": "generic/002", "status": "pass", "seconds": 59, "reason": "",
        "full": str(DATA / "xfs-xunit" / "results" / "generic" / "002.full"),
    }
    table = results.summary_table(res.tests)
    assert "generic/548  notrun   42s  No encryption support for xfs" in table


# --- a whole run on ext4 without the xunit report (the default under TCG) --------------------


def test_ext4_plain_from_check_output_and_files():
    res = fixture_parse("ext4-plain")
    assert res.report is None and res.complete
    assert res.counts() == {"pass": 28, "fail": 0, "notrun": 3, "unfinished": 0, "unreached": 0}
    assert one(res, "generic/263").seconds == 89 and one(res, "generic/005").seconds == 14
    assert {t.name: t.reason for t in res.by_status(Status.NOTRUN)} == {
        "generic/514": "Reflink not supported by scratch filesystem type: ext4",
        "generic/548": "keyctl utility required, skipped this test",
        "generic/689": "fsgqa user not defined.",
    }
    assert one(res, "generic/514").full and one(res, "generic/514").out_bad is None


def test_fault_marker_output_inside_a_test_line():
    """generic/346 with fail_page_alloc on holetest (real output): the harness's fault marker printed into
    check's line for the test, which ended on the next line; it passed, and the run is not CLEAN by omission."""
    out = results.parse_check_output((DATA / "faults-marker" / "check.out").read_text())
    assert out.tests["generic/346"].status is Status.PASS and out.tests["generic/346"].seconds == 13
    assert out.finished and out.ran == ("generic/346",)


def test_ext4_plain_header():
    out = results.parse_check_output((DATA / "ext4-plain" / "check.out").read_text())
    assert out.header["MOUNT_OPTIONS"] == "-o acl,user_xattr /dev/vdb /tmp/fstests/scratch"
    assert out.finished and out.failures == ()


# --- check's output, line by line ------------------------------------------------------------


def test_parse_check_output_of_the_xfs_run():
    out = results.parse_check_output((DATA / "xfs-xunit" / "check.out").read_text())
    assert out.header["FSTYP"] == "xfs (non-debug)" and out.header["MKFS_OPTIONS"] == "-f /dev/vdb"
    assert out.finished and not out.interrupted
    assert out.failures == ("generic/263",) and out.not_run == ("generic/548", "generic/689")
    assert len(out.ran) == 39 and len(out.tests) == 39
    assert out.tests["generic/263"].status == Status.FAIL
    assert out.tests["generic/263"].reason.startswith("[failed, exit status 1]- output mismatch")


@pytest.mark.parametrize(
    ("line", "status", "seconds", "reason"),
    [
        ("generic/001         355s", Status.PASS, 355, ""),
        ("generic/001 12s ...  13s", Status.PASS, 13, ""),
        ("generic/001 12s ... ", None, None, ""),
        ("generic/001        ", None, None, ""),
        ("generic/548        [not run] No encryption support for xfs", Status.NOTRUN, None, "No encryption support for xfs"),
        ("generic/003 3s ... - output mismatch (see /r/generic/003.out.bad)", Status.FAIL, None,
         "- output mismatch (see /r/generic/003.out.bad)"),
        ("generic/004        _check_dmesg: something found (see /r/generic/004.dmesg)", Status.FAIL, None,
         "_check_dmesg: something found (see /r/generic/004.dmesg)"),
        ("generic/013        [expunged]", Status.NOTRUN, None, "expunged"),
    ],
)
def test_check_lines(line, status, seconds, reason):
    got = results.parse_check_output(line + "\n").tests[line.split()[0]]
    assert (got.status, got.seconds, got.reason) == (status, seconds, reason)


def test_console_started_in_order():
    started = results.console_started((DATA / "xfs-xunit" / "console.log").read_text())
    assert started[:3] == ["generic/002", "generic/004", "generic/005"] and len(started) == 39


# --- folders ---------------------------------------------------------------------------------


def test_report_dir_finds_a_section_folder(tmp_path):
    shutil.copytree(DATA / "xfs-xunit" / "results", tmp_path / "xfs")
    assert results.report_dir(tmp_path) == tmp_path / "xfs"
    shutil.copytree(DATA / "xfs-xunit" / "results", tmp_path / "ext4")
    with pytest.raises(HarnessError, match="2 fstests sections"):
        results.report_dir(tmp_path)


def test_unreadable_report(tmp_path):
    (tmp_path / "result.xml").write_text("<testsuite")
    with pytest.raises(HarnessError, match="not a readable xunit report"):
        results.parse(tmp_path)


def test_nothing_ran(tmp_path):
    res = results.parse(tmp_path, expected=["generic/001", "generic/002"])
    assert [t.status for t in res.tests] == [Status.UNREACHED, Status.UNREACHED] and not res.complete
    assert res.tests[0].reason == "not reached: check ended before it"
