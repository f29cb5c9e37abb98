"""Verdicts: what one run's console, output and steps add up to.

Rules are small functions tried in order; the first that speaks decides.
Kernel outcomes are values here, never exceptions.  The guest's own output is
read through harness.guest.protocol.GuestOutput, the console through the
report parser (harness.report).

A reproducer still running at its time limit with a healthy kernel (the
in-guest timeout ended it and the steps went on to the end) is CLEAN: it ran
its course without a report.  HANG is a guest that stopped making progress
(the host's watchdog or timeout had to act), a reproducer whose processes
SIGKILL at the time limit left in D state (named with their wchan), or one whose spec says
``timeout_is: hang`` (it is meant to stop by itself) ran into its limit.  A
hung-task or stall report is a crash report like any other, named by its
title.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import Protocol

from harness import report
from harness.guest import programs
from harness.guest.protocol import INFRA_STEPS, GuestOutput, StepResult, run_started_at, stamp_at, step_text, tail
from harness.report import crashsite, fserrors

EXIT_REPRODUCED = 1  # ``exit_status: verdict``: the status a reproducer exits with when the bug showed
EXIT_TITLE = "the reproducer's exit status: bug shown"


class Outcome(StrEnum):
    REPRODUCED = "REPRODUCED"  # the expected crash title, or the expected data loss
    OTHER_CRASH = "OTHER_CRASH"  # an oops, but not the expected one
    DATA_LOSS = "DATA_LOSS"  # the reproducer found lost or wrong data
    FS_CORRUPT = "FS_CORRUPT"  # the filesystem checker complained
    TEST_FAILED = "TEST_FAILED"  # a test suite's test failed (fstests: its output differed, or its own checks failed)
    HANG = "HANG"  # no progress past a timeout
    CLEAN = "CLEAN"
    BOOT_FAILURE = "BOOT_FAILURE"
    INFRA_ERROR = "INFRA_ERROR"  # the harness could not do its part (mount, compile...)
    BUILD_ERROR = "BUILD_ERROR"  # the kernel variant did not build / patches did not apply

    @property
    def is_bug(self) -> bool:
        return self in (Outcome.REPRODUCED, Outcome.OTHER_CRASH, Outcome.DATA_LOSS, Outcome.FS_CORRUPT, Outcome.HANG,
                        Outcome.TEST_FAILED)

    @property
    def is_error(self) -> bool:
        """The run never ran the reproducer (the kernel did not build or boot, or the harness failed its part):
        a run that says nothing about the bug, counted neither as a hit nor as a clean run."""
        return self in (Outcome.BOOT_FAILURE, Outcome.INFRA_ERROR, Outcome.BUILD_ERROR)


class SuiteResults(Protocol):
    """A test suite's results for one run, judged by the suite's own rules (``tests_rule``)."""

    def verdict(self, ev: Evidence) -> Verdict | None:
        """TEST_FAILED, an INFRA_ERROR (tests without a result), CLEAN with the counts; None to let later rules
        speak.  A crash, a hang or a harness fault has spoken already."""


@dataclass(frozen=True)
class Evidence:
    console: str
    output: str  # the guest's stdout (guest.log)
    steps: tuple[StepResult, ...] | None = None  # None: parsed from output
    expected_titles: tuple[str, ...] = ()
    # the build's source tree (or trees, looked in order: the patched files first): an expected "WARNING in X"
    # matches when X encloses the WARNING's line there (the build inlined X into the RIP's function:
    # harness.report.crashsite)
    source_dir: crashsite.SourceTree = None
    # the report text symbolized with the debug info at hand (no download): its inlined frames at the RIP
    # name functions the build inlined; asked only when a title does not match plainly
    symbolize: Callable[[str], str] | None = None
    killed: str | None = None  # why the host killed the guest, if it did
    guest_rc: int | None = 0
    any_crash: bool = False  # no title expected: any crash report counts as the hit
    timeout_is: str = "clean"  # what a reproducer stopped at its time limit is: clean | hang
    exit_status: str = "error"  # the run step's status: error (non-zero: a failed run) | verdict (1: the bug)
    # why a reproducer exited non-zero, from what it is (a syzkaller reproducer exits 1 when the guest lacks
    # something its setup needs): (rc, guest output) -> a sentence, or None
    explain: Callable[[int | None, str], str | None] | None = None
    # a test suite's own results, test by test (a kind of run that runs one, e.g. fstests'
    # harness.fstests.results.Results): their verdict speaks after data loss; None for a reproducer
    tests: SuiteResults | None = None

    @cached_property
    def guest(self) -> GuestOutput:
        return GuestOutput.parse(self.output)

    @property
    def all_steps(self) -> tuple[StepResult, ...]:
        return self.steps if self.steps is not None else self.guest.steps


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    title: str | None = None
    detail: str = ""
    crash_type: str | None = None
    time_to_hit: float | None = None  # seconds from the run step's start
    reports: tuple[str, ...] = ()  # titles of every report in the console
    lost: tuple[str, ...] = field(default=())
    report_text: str = field(default="", repr=False)  # the chosen crash report, for report.txt
    matched_by: str = ""  # why the expected title is the report's ("WARNING in X: X inlined into Y at ...")

    def to_dict(self) -> dict:
        return {
            "verdict": self.outcome.value,
            "title": self.title,
            "detail": self.detail,
            "crash_type": self.crash_type,
            "time_to_hit": self.time_to_hit,
            "reports": list(self.reports),
            "lost": list(self.lost),
            **({"matched_by": self.matched_by} if self.matched_by else {}),
        }


def _step(ev: Evidence, name: str) -> StepResult | None:
    return next((s for s in ev.all_steps if s.name == name), None)


def _tail(text: str, n: int = 1) -> str:
    return tail(text, n)


def _title_matches(rep: report.Report, expected: tuple[str, ...], source_dir: crashsite.SourceTree = None,
                   symbolize: Callable[[str], str] | None = None) -> str | None:
    """Why ``rep`` is the expected bug (its title, or the crash site's function by other evidence), or None."""
    why = crashsite.title_evidence(rep, expected, source_tree=source_dir)
    if why is None and symbolize is not None and crashsite.may_be_inlined(rep, expected):
        why = crashsite.title_evidence(replace(rep, text=symbolize(rep.text)), expected, source_tree=source_dir)
    return why


# --- rules ---------------------------------------------------------------------------

Rule = Callable[[Evidence], "Verdict | None"]


def crash_rule(ev: Evidence) -> Verdict | None:
    reports = report.parse(ev.console)
    if not reports:
        return None
    titles = tuple(r.title for r in reports)
    matched = ((r, why) for r in reports if (why := _title_matches(r, ev.expected_titles, ev.source_dir,
                                                                       ev.symbolize)))
    hit, matched_by = (reports[0], "") if ev.any_crash else next(matched, (None, ""))
    chosen = hit or reports[0]
    started = run_started_at(ev.console)
    at = stamp_at(ev.console, chosen.start)
    tth = round(at - started, 3) if started is not None and at is not None and at >= started else None
    outcome = Outcome.REPRODUCED if hit else Outcome.OTHER_CRASH
    others = [t for t in titles if t != chosen.title]
    notes = ["no title was expected: any crash report counts"] if ev.any_crash else []
    if others:
        notes.append(f"also: {'; '.join(dict.fromkeys(others))}")
    if matched_by and not matched_by.endswith(": the title"):
        notes.insert(0, matched_by)
    return Verdict(outcome, chosen.title, "; ".join(notes), chosen.type, tth, titles, report_text=chosen.text,
                   matched_by=matched_by)


def fs_error_rule(ev: Evidence) -> Verdict | None:
    """The kernel's own filesystem error report (EXT4-fs error, XFS corruption or shutdown...) that the spec
    expects: the bug showed that way, no oops needed (harness.report.fserrors).  Reports nobody expects decide
    nothing (a syzkaller image is corrupt on purpose)."""
    errors = fserrors.parse(ev.console)
    hit = fserrors.first_expected(errors, ev.expected_titles)
    if hit is None:
        return None
    started, at = run_started_at(ev.console), stamp_at(ev.console, hit.start)
    tth = round(at - started, 3) if started is not None and at is not None and at >= started else None
    return Verdict(Outcome.REPRODUCED, hit.title, hit.detail, hit.type, tth, fserrors.titles(errors),
                   report_text=hit.text)


def boot_rule(ev: Evidence) -> Verdict | None:
    if ev.guest.up:
        return None
    why = ev.killed or f"the guest command exited {ev.guest_rc} before the guest steps started"
    reports = report.parse(ev.console)
    if reports:  # a panic while booting is a boot failure, named by its title
        first = reports[0]
        titles = tuple(r.title for r in reports)
        return Verdict(Outcome.BOOT_FAILURE, first.title, why, first.type, None, titles, report_text=first.text)
    last = _tail(ev.console) or _tail(ev.output) or "no console output"
    return Verdict(Outcome.BOOT_FAILURE, detail=f"{why}; last console line: {last}")


def infra_rule(ev: Evidence) -> Verdict | None:
    for s in ev.all_steps:
        if s.name in INFRA_STEPS and s.rc not in (0, None):
            if s.name == "compile" and s.rc == 127:
                said = _tail(ev.output) or "the compiler was not found in the guest"
                detail = f"{said} (the guest shares the host's root: install it there; `harness setup` installs gcc)"
            else:
                detail = f"step {s.name} failed (exit {s.rc}): {_tail(ev.output)}"
            return Verdict(Outcome.INFRA_ERROR, detail=detail)
    return None


def exit_status_rule(ev: Evidence) -> Verdict | None:
    """A reproducer whose exit status is its verdict (``exit_status: verdict``): exit 1 says the bug showed
    (REPRODUCED), 0 that it did not (the later rules: CLEAN); any other status is a failed run."""
    run = _step(ev, "run")
    if ev.exit_status != "verdict" or run is None or run.timed_out or run.rc != EXIT_REPRODUCED:
        return None
    said = _tail(step_text(ev.output, "run")) or "(it printed nothing)"
    return Verdict(Outcome.REPRODUCED, EXIT_TITLE, f"the reproducer exited {run.rc}, its way of saying the bug "
                   f"showed; it said: {said}")


def failed_run_rule(ev: Evidence) -> Verdict | None:
    """A reproducer that exits non-zero by itself tested nothing: not CLEAN (said in its own words)."""
    run = _step(ev, "run")
    if run is None or run.rc in (0, None) or run.timed_out:
        return None
    said = _tail(step_text(ev.output, "run")) or "(it printed nothing)"
    why = ev.explain(run.rc, ev.output) if ev.explain else None
    why = why or programs.explain_missing(step_text(ev.output, "run"))  # a program the guest lacks
    why = why or fserrors.hint(ev.console)  # the filesystem's own report: the bug, unexpected?
    if why:
        return Verdict(Outcome.INFRA_ERROR, detail=f"the reproducer stopped by itself, {why}; it said: {said}")
    return Verdict(Outcome.INFRA_ERROR, detail=f"the reproducer exited {run.rc}: {said}")


def hang_rule(ev: Evidence) -> Verdict | None:
    run = _step(ev, "run")
    if run is not None and run.timed_out and ev.timeout_is == "hang":
        return Verdict(Outcome.HANG, detail=f"the reproducer ran past its timeout ({run.seconds:.0f} s)")
    if run is not None and run.timed_out and ev.guest.stuck:  # unkillable: the kernel holds them, not the time limit
        return Verdict(Outcome.HANG, detail=f"the reproducer stopped at its time limit ({run.seconds:.0f} s) and "
                       f"SIGKILL left {len(ev.guest.stuck)} of its processes in D state: {'; '.join(ev.guest.stuck[:3])}")
    open_steps = ev.guest.open_steps if ev.steps is None else tuple(s.name for s in ev.steps if s.rc is None)
    if ev.killed or (open_steps and not ev.guest.done):
        where = f" in step {open_steps[-1]}" if open_steps else ""
        return Verdict(Outcome.HANG, detail=(ev.killed or "the guest stopped") + where)
    return None


def data_rule(ev: Evidence) -> Verdict | None:
    lost = ev.guest.lost
    if not lost:
        return None
    return Verdict(
        Outcome.DATA_LOSS,
        title="data loss",
        detail=f"{len(lost)} lost: {', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}",
        time_to_hit=ev.guest.first_loss_after,
        lost=lost,
    )


def tests_rule(ev: Evidence) -> Verdict | None:
    """A test suite's run: its tests' own verdicts (a crash, a hang or a harness fault spoke already)."""
    return ev.tests.verdict(ev) if ev.tests is not None else None


def fsck_rule(ev: Evidence) -> Verdict | None:
    check = _step(ev, "check")
    if check is None or check.rc in (0, None):
        return None
    return Verdict(Outcome.FS_CORRUPT, title="filesystem corrupt", detail=f"checker exit {check.rc}")


def time_limit_rule(ev: Evidence) -> Verdict | None:
    """A reproducer the in-guest timeout stopped while the kernel stayed healthy: CLEAN, said so."""
    run = _step(ev, "run")
    if run is None or not run.timed_out:
        return None
    return Verdict(Outcome.CLEAN, detail=f"ran {run.seconds or 0:.0f} s, its time limit, with no report; the kernel "
                   "stayed healthy (the steps after it ran)")


RULES: tuple[Rule, ...] = (boot_rule, crash_rule, fs_error_rule, infra_rule, hang_rule, data_rule, tests_rule,
                           exit_status_rule, failed_run_rule, fsck_rule, time_limit_rule)


def judge(ev: Evidence, rules: tuple[Rule, ...] = RULES) -> Verdict:
    for rule in rules:
        verdict = rule(ev)
        if verdict is not None:
            return verdict
    return Verdict(Outcome.CLEAN)
