"""The verdict of an fstests run: fstests' own results under the harness's evidence (issue 17)."""

from __future__ import annotations

from harness.fstests.results import Results, Status
from harness.fstests.results import TestResult as Result
from harness.verdict import Evidence, Outcome, judge

UP = "@@harness guest up 3.9 kernel 6.1.192\n@@harness step setup begin 4.0\n@@harness step setup end 0 4.1\n"


def _run(rc: int | None, end: str = "29.7") -> str:
    ended = f"@@harness step run end {rc} {end}\n" if rc is not None else "@@harness step run timeout 600 608.0\n"
    return UP + "@@harness step run begin 4.5\n" + ended + "@@harness done\n"


def _judge(tests: list[Result], output: str, console: str = "") -> object:
    return judge(Evidence(console=console, output=output, tests=Results(tuple(tests), complete=False)))


def test_all_passed_is_clean_with_the_counts():
    v = _judge([Result("generic/346", Status.PASS, 13), Result("generic/548", Status.NOTRUN, None, "no enc")],
               _run(0))
    assert v.outcome is Outcome.CLEAN and v.detail == "fstests: 1 pass, 1 notrun"


def test_a_failed_test_is_test_failed_named():
    v = _judge([Result("generic/346", Status.FAIL, 30, "- output mismatch (see 346.out.bad)")], _run(1))
    assert v.outcome is Outcome.TEST_FAILED and v.title == "fstests: generic/346 failed"


def test_a_test_without_a_result_is_never_clean():
    """check said nothing the parser could read of a test, no timeout, no report: INFRA_ERROR, not CLEAN."""
    v = _judge([Result("generic/346", Status.UNFINISHED, reason="started, never finished")], _run(0))
    assert v.outcome is Outcome.INFRA_ERROR and "1 test(s) without a result (generic/346)" in v.detail


def test_a_crash_during_a_test_is_its_report():
    console = ("[   20.0] run fstests generic/346 at 2026-12-04\n[   21.0] ------------[ cut here ]------------\n"
               "[   21.0] kernel BUG at fs/xfs/xfs_iomap.c:1234!\n[   21.0] invalid opcode: 0000 [#1] PREEMPT SMP\n"
               "[   21.0] RIP: 0010:xfs_buffered_write_iomap_end+0x1/0x2\n[   21.0] Call Trace:\n[   21.0]  <TASK>\n")
    v = _judge([Result("generic/346", Status.UNFINISHED)], UP + "@@harness step run begin 4.5\n", console)
    assert v.outcome in (Outcome.OTHER_CRASH, Outcome.REPRODUCED) and "xfs_buffered_write_iomap_end" in v.title
