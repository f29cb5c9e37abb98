"""fstests' own results -> one result per test.

Sources, most trusted first:

- ``result.xml`` (``./check -R xunit``): check rewrites it before every test with the
  results so far, and at the end with the section's time; after a crash it still holds
  every test that finished.
- the results folder: ``<test>.notrun`` (the reason), ``.out.bad`` (the output that
  differed), ``.full`` (the test's log), ``.dmesg`` (what ``_check_dmesg`` objected to);
- check's own output: a line per test (``generic/001 12s``, ``[not run] reason``,
  ``- output mismatch (see ...)``) and the summary (``Ran:``, ``Not run:``,
  ``Failures:``, ``Passed all N tests``);
- the kernel console: ``run fstests generic/013 at ...`` marks every test check started.

A test listed but with no result is UNFINISHED when it had started (the guest ended
during it: a crash, a hang, a timeout) and UNREACHED when it never did: never lost.
"""

from __future__ import annotations

import difflib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from harness.errors import HarnessError
from harness.guest.protocol import step_text, tail
from harness.verdict import Evidence, Outcome, Verdict

TEST_NAME = r"[a-z0-9]+/[0-9]{3}(?:-[A-Za-z0-9-]+)?"
_TEST_LINE = re.compile(rf"^({TEST_NAME})(?:\s+(.*))?$")
_PASS_TAIL = re.compile(r"(?:^|\s)(\d+)s\s*$")
_HEADER = re.compile(r"^(FSTYP|PLATFORM|MKFS_OPTIONS|MOUNT_OPTIONS|SECTION)\s+-- (.*)$")
_CONSOLE_START = re.compile(rf"run fstests ({TEST_NAME}) at ")
REPORT = "result.xml"


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NOTRUN = "notrun"  # fstests decided not to run it (its reason says why)
    UNFINISHED = "unfinished"  # started, no result: the guest ended during it
    UNREACHED = "unreached"  # listed, never started: the guest ended before it


@dataclass(frozen=True)
class TestResult:
    name: str  # generic/001
    status: Status
    seconds: int | None = None
    reason: str = ""  # notrun: fstests' reason; fail: check's message; unfinished/unreached: why
    out_bad: Path | None = None
    full: Path | None = None
    dmesg: Path | None = None
    diff: str = ""  # expected output vs .out.bad

    @property
    def ran(self) -> bool:
        return self.status in (Status.PASS, Status.FAIL, Status.UNFINISHED)

    def to_json(self) -> dict:
        body = {"name": self.name, "status": str(self.status), "seconds": self.seconds, "reason": self.reason}
        for key in ("out_bad", "full", "dmesg"):
            if getattr(self, key) is not None:
                body[key] = str(getattr(self, key))
        if self.diff:
            body["diff"] = self.diff
        return body


@dataclass(frozen=True)
class CheckLine:
    """What check printed for one test."""

    status: Status | None  # None: the line never got its outcome (the test did not finish)
    seconds: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class CheckOutput:
    header: dict[str, str] = field(default_factory=dict)
    tests: dict[str, CheckLine] = field(default_factory=dict)  # in the order check printed them
    ran: tuple[str, ...] = ()
    not_run: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    finished: bool = False  # the summary ("Passed all N tests" / "Failed N of M tests") was printed
    interrupted: bool = False


@dataclass(frozen=True)
class Results:
    tests: tuple[TestResult, ...]
    complete: bool  # check printed its summary: every listed test has fstests' own result
    report: Path | None = None  # the result.xml read, if any

    def counts(self) -> dict[str, int]:
        counts = {str(s): 0 for s in Status}
        for t in self.tests:
            counts[str(t.status)] += 1
        return counts

    def by_status(self, status: Status) -> list[TestResult]:
        return [t for t in self.tests if t.status == status]

    def verdict(self, ev: Evidence) -> Verdict | None:
        """The run's verdict from its tests' own (harness.verdict.tests_rule: a crash, a hang or a harness
        fault spoke already): TEST_FAILED, an INFRA_ERROR for tests without a result, else CLEAN."""
        counts = self.counts()
        failed = self.by_status(Status.FAIL)
        if failed:
            first = failed[0]
            reason = (first.reason.splitlines() or ["its output differed"])[0]
            names = ", ".join(t.name for t in failed)
            return Verdict(Outcome.TEST_FAILED, title=f"fstests: {first.name} failed",
                           detail=f"{len(failed)} failed ({names}): {reason}", lost=tuple(t.name for t in failed))
        run = next((s for s in ev.all_steps if s.name == "run"), None)
        cut = [t.name for t in self.tests if t.status in (Status.UNFINISHED, Status.UNREACHED)]
        if cut and run is not None and run.timed_out:  # the harness's budget, not the kernel, ended check
            return Verdict(Outcome.INFRA_ERROR, detail=f"fstests ran past the run's time limit "
                           f"({run.seconds or 0:.0f} s) in {cut[0]}; {len(cut)} test(s) without a result: "
                           "raise --timeout")
        if cut:  # no report, no timeout, yet tests without a result: never CLEAN (a test not seen is not a pass)
            return Verdict(Outcome.INFRA_ERROR, detail=f"fstests: {len(cut)} test(s) without a result "
                           f"({', '.join(cut[:5])}): check's output and result files do not say how they ended")
        if not counts.get("pass") and not counts.get("notrun") and run is not None and run.rc not in (0, None):
            return Verdict(Outcome.INFRA_ERROR, detail=f"fstests' check exited {run.rc} without a result: "
                           f"{tail(step_text(ev.output, 'run'))}")
        return Verdict(Outcome.CLEAN, detail=f"fstests: {counts_text(counts)}")

    def to_json(self) -> dict:
        return {
            "complete": self.complete,
            "report": str(self.report) if self.report else None,
            "counts": self.counts(),
            "tests": [t.to_json() for t in self.tests],
        }


_OWN = re.compile(r"harness-faults: .*$")  # repro/faults.py's marker lines


def parse_check_output(text: str) -> CheckOutput:
    """check's stdout (other lines, e.g. the harness's own, are skipped)."""
    header: dict[str, str] = {}
    tests: dict[str, CheckLine] = {}
    summary: dict[str, tuple[str, ...]] = {}
    finished = interrupted = False
    current: str | None = None
    for raw in text.splitlines():
        # the harness's fault marker prints from the background, also into a test's line ("generic/346  harness-...")
        line = _OWN.sub("", raw).rstrip()
        if m := _HEADER.match(line):
            header[m.group(1)] = m.group(2).strip()
        elif m := re.match(r"^(Ran|Not run|Failures): (.*)$", line):
            summary[m.group(1)] = tuple(m.group(2).split())
        elif re.match(r"^(Passed all \d+ tests|Failed \d+ of \d+ tests)$", line):
            finished = True
        elif line == "Interrupted!":
            interrupted = True
        elif m := _TEST_LINE.match(line):
            current = m.group(1)
            tests[current] = _check_line(m.group(2) or "")
        elif current and tests[current].status is None and line.strip():
            tests[current] = _continued(tests[current], line.strip())
    return CheckOutput(header, tests, summary.get("Ran", ()), summary.get("Not run", ()),
                       summary.get("Failures", ()), finished, interrupted)


def _check_line(tail: str) -> CheckLine:
    """The rest of a test's line: `12s`, `3s ...  4s`, `[not run] why`, `- output mismatch ...`."""
    tail = tail.strip()
    if "[not run]" in tail:
        return CheckLine(Status.NOTRUN, reason=tail.split("[not run]", 1)[1].strip())
    if "[expunged]" in tail:
        return CheckLine(Status.NOTRUN, reason="expunged")
    if re.search(r"(^|\s)(- output mismatch|\[failed|_check_|\[dumped core\])", tail):
        return CheckLine(Status.FAIL, reason=_failure_text(tail))
    if (m := _PASS_TAIL.search(tail)) and not tail.endswith("..."):
        return CheckLine(Status.PASS, seconds=int(m.group(1)))
    return CheckLine(None)  # started (maybe "12s ..." from an earlier run), no outcome yet


def _failure_text(tail: str) -> str:
    return re.sub(r"^(\d+s \.\.\.\s*)", "", tail).strip()


def _continued(line: CheckLine, text: str) -> CheckLine:
    """What check printed on the line after the test's name (after a core dump, or after another
    program's output broke its line): a failure, or the seconds of a pass."""
    if text.startswith(("- output mismatch", "[failed", "_check_", "[dumped core]")):
        return CheckLine(Status.FAIL, reason=text)
    if re.fullmatch(r"(\d+s \.\.\.\s+)?\d+s", text):
        return _check_line(text)
    return line


def console_started(console: str) -> list[str]:
    """Tests check started, in order, from the kernel console's ``run fstests X at`` lines."""
    return list(dict.fromkeys(m.group(1) for m in _CONSOLE_START.finditer(console)))


def report_dir(result_base: Path) -> Path:
    """Where check wrote its per-test files: RESULT_BASE, or its one section folder."""
    if (result_base / REPORT).exists():
        return result_base
    sections = [p.parent for p in sorted(result_base.glob(f"*/{REPORT}"))]
    if len(sections) > 1:
        raise HarnessError(f"{result_base} holds {len(sections)} fstests sections", hint="parse each section folder on its own")
    return sections[0] if sections else result_base


def parse_xunit(path: Path) -> dict[str, TestResult]:
    """result.xml's test cases, by name."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise HarnessError(f"{path}: not a readable xunit report ({exc})", hint="parse the folder without it") from None
    results = {}
    for case in root.iter("testcase"):
        name = case.get("name", "")
        seconds = int(case.get("time")) if (case.get("time") or "").isdigit() else None
        skipped, failure = case.find("skipped"), case.find("failure")
        if failure is not None:
            err = case.find("system-err")
            diff = (err.text or "").strip("\n") if err is not None else ""
            results[name] = TestResult(name, Status.FAIL, seconds, failure.get("message", ""), diff=diff)
        elif skipped is not None:
            results[name] = TestResult(name, Status.NOTRUN, seconds, (skipped.get("message") or "").strip())
        else:
            results[name] = TestResult(name, Status.PASS, seconds)
    return results


def _from_files(folder: Path, name: str) -> TestResult | None:
    """A result from the folder's files alone (no xunit entry, no check line)."""
    notrun = folder / f"{name}.notrun"
    if notrun.exists():
        return TestResult(name, Status.NOTRUN, reason=notrun.read_text(errors="replace").strip())
    if (folder / f"{name}.out.bad").exists():
        return TestResult(name, Status.FAIL, reason="output mismatch")
    return None


def _with_files(result: TestResult, folder: Path, tests_root: Path | None) -> TestResult:
    """Attach the evidence files that exist (and the diff, if the report did not carry it)."""
    paths = {key: folder / f"{result.name}{suffix}" for key, suffix in
             (("out_bad", ".out.bad"), ("full", ".full"), ("dmesg", ".dmesg"))}
    found = {key: p for key, p in paths.items() if p.exists()}
    if result.status == Status.NOTRUN:
        found.pop("out_bad", None)
    result = replace(result, **found)
    if result.status == Status.FAIL and not result.diff and result.out_bad and tests_root:
        expected = tests_root / "tests" / f"{result.name}.out"
        if expected.exists():
            result = replace(result, diff=unified_diff(expected, result.out_bad))
    return result


def unified_diff(expected: Path, got: Path) -> str:
    a = expected.read_text(errors="replace").splitlines(keepends=True)
    b = got.read_text(errors="replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, str(expected), str(got)))


def parse(
    result_base: Path,
    *,
    expected: Sequence[str] = (),
    output: str | None = None,
    console: str | None = None,
    tests_root: Path | None = None,
) -> Results:
    """Every test's result: ``expected`` is the list check was given (in order), ``output``
    what check printed, ``console`` the kernel console, ``tests_root`` the fstests build
    (for diffs the report did not carry)."""
    folder = report_dir(result_base)
    report = folder / REPORT
    xunit = parse_xunit(report) if report.exists() else {}
    printed = parse_check_output(output or "")
    started = set(console_started(console or "")) | {n for n, line in printed.tests.items() if line.status is None}
    order = _order(expected, printed, xunit)
    results, ended_in = [], None
    for name in order:
        result = _known(name, xunit, printed, folder)
        if result is None:
            unfinished = name in started and ended_in is None
            ended_in = ended_in or (name if unfinished else None)
            result = _missing(name, unfinished, ended_in)
        results.append(_with_files(result, folder, tests_root))
    return Results(tuple(results), printed.finished and ended_in is None, report if xunit else None)


def _order(expected: Sequence[str], printed: CheckOutput, xunit: dict[str, TestResult]) -> list[str]:
    names = list(expected) or list(printed.ran) or [*printed.tests, *printed.not_run]
    return list(dict.fromkeys([*names, *printed.tests, *xunit]))


def _known(name: str, xunit: dict[str, TestResult], printed: CheckOutput, folder: Path) -> TestResult | None:
    if name in xunit:
        return xunit[name]
    line = printed.tests.get(name)
    if line is not None and line.status is not None:
        if line.status == Status.PASS and name in printed.failures:  # a later check (dmesg, fsck) failed it
            return TestResult(name, Status.FAIL, line.seconds, "failed after its output matched")
        return TestResult(name, line.status, line.seconds, line.reason)
    return _from_files(folder, name)


def _missing(name: str, unfinished: bool, ended_in: str | None) -> TestResult:
    if unfinished:
        return TestResult(name, Status.UNFINISHED, reason="started, never finished: the guest ended during it")
    why = f"the guest ended during {ended_in}" if ended_in else "check ended before it"
    return TestResult(name, Status.UNREACHED, reason=f"not reached: {why}")


def counts_text(counts: dict[str, int]) -> str:
    """``Results.counts()`` (or its JSON) as one phrase: "21 pass, 1 fail" (statuses with none left out)."""
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n)


def summary_table(results: Iterable[TestResult]) -> str:
    """A plain table: test, status, seconds, reason (first line)."""
    rows = [(t.name, str(t.status), "" if t.seconds is None else f"{t.seconds}s", t.reason.splitlines()[0] if t.reason else "")
            for t in results]
    if not rows:
        return "(no tests)\n"
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip() + "\n" for r in rows)
