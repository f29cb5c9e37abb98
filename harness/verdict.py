"""Verdicts: what one run's console, output and steps add up to.

Rules are small functions tried in order; the first that speaks decides.
Kernel outcomes are values here, never exceptions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from harness import report
from harness.guest.steps import INFRA_STEPS, MARK, StepResult, guest_done


class Outcome(StrEnum):
    REPRODUCED = "REPRODUCED"  # the expected crash title, or the expected data loss
    OTHER_CRASH = "OTHER_CRASH"  # an oops, but not the expected one
    DATA_LOSS = "DATA_LOSS"  # the reproducer found lost or wrong data
    FS_CORRUPT = "FS_CORRUPT"  # the filesystem checker complained
    HANG = "HANG"  # no progress past a timeout
    CLEAN = "CLEAN"
    BOOT_FAILURE = "BOOT_FAILURE"
    INFRA_ERROR = "INFRA_ERROR"  # the harness could not do its part (mount, compile...)
    BUILD_ERROR = "BUILD_ERROR"  # the kernel variant did not build / patches did not apply

    @property
    def is_bug(self) -> bool:
        return self in (Outcome.REPRODUCED, Outcome.OTHER_CRASH, Outcome.DATA_LOSS, Outcome.FS_CORRUPT, Outcome.HANG)


@dataclass(frozen=True)
class Evidence:
    console: str
    output: str
    steps: tuple[StepResult, ...]
    expected_titles: tuple[str, ...] = ()
    killed: str | None = None  # why the host killed the guest, if it did
    guest_rc: int | None = 0


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

    def to_dict(self) -> dict:
        return {
            "verdict": self.outcome.value,
            "title": self.title,
            "detail": self.detail,
            "crash_type": self.crash_type,
            "time_to_hit": self.time_to_hit,
            "reports": list(self.reports),
            "lost": list(self.lost),
        }


_STAMP_RE = re.compile(r"^\[\s*(\d+\.\d+)\]")


def stamp_at(console: str, offset: int) -> float | None:
    """Kernel timestamp of the console line holding ``offset``."""
    start = console.rfind("\n", 0, offset) + 1
    m = _STAMP_RE.match(console[start : start + 40])
    return float(m.group(1)) if m else None


def run_started_at(console: str) -> float | None:
    idx = console.find("harness: step run begin")
    return None if idx < 0 else stamp_at(console, idx)


def _step(ev: Evidence, name: str) -> StepResult | None:
    return next((s for s in ev.steps if s.name == name), None)


def _tail(text: str, n: int = 1) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(MARK)]
    return " | ".join(lines[-n:])


def _title_matches(rep: report.Report, expected: tuple[str, ...]) -> bool:
    return any(t in expected for t in (rep.title, *rep.alt_titles))


# --- rules ---------------------------------------------------------------------------

Rule = Callable[[Evidence], "Verdict | None"]


def crash_rule(ev: Evidence) -> Verdict | None:
    reports = report.parse(ev.console)
    if not reports:
        return None
    titles = tuple(r.title for r in reports)
    hit = next((r for r in reports if _title_matches(r, ev.expected_titles)), None)
    chosen = hit or reports[0]
    started = run_started_at(ev.console)
    at = stamp_at(ev.console, chosen.start)
    tth = round(at - started, 3) if started is not None and at is not None and at >= started else None
    outcome = Outcome.REPRODUCED if hit else Outcome.OTHER_CRASH
    others = [t for t in titles if t != chosen.title]
    detail = f"also: {'; '.join(dict.fromkeys(others))}" if others else ""
    return Verdict(outcome, chosen.title, detail, chosen.type, tth, titles, report_text=chosen.text)


def boot_rule(ev: Evidence) -> Verdict | None:
    if f"{MARK} guest up" in ev.output:
        return None
    why = ev.killed or f"vng exited {ev.guest_rc} before the guest steps started"
    reports = report.parse(ev.console)
    if reports:  # a panic while booting is a boot failure, named by its title
        first = reports[0]
        titles = tuple(r.title for r in reports)
        return Verdict(Outcome.BOOT_FAILURE, first.title, why, first.type, None, titles, report_text=first.text)
    last = _tail(ev.console) or _tail(ev.output) or "no console output"
    return Verdict(Outcome.BOOT_FAILURE, detail=f"{why}; last console line: {last}")


def infra_rule(ev: Evidence) -> Verdict | None:
    for s in ev.steps:
        if s.name in INFRA_STEPS and s.rc not in (0, None):
            if s.name == "compile" and s.rc == 127:
                said = _tail(ev.output) or "the compiler was not found in the guest"
                detail = f"{said} (the guest shares the host's root: install it there; `harness setup` installs gcc)"
            else:
                detail = f"step {s.name} failed (exit {s.rc}): {_tail(ev.output)}"
            return Verdict(Outcome.INFRA_ERROR, detail=detail)
    return None


def failed_run_rule(ev: Evidence) -> Verdict | None:
    """A reproducer that exits non-zero by itself tested nothing: not CLEAN."""
    run = _step(ev, "run")
    if run is None or run.rc in (0, None) or run.timed_out:
        return None
    return Verdict(Outcome.INFRA_ERROR, detail=f"the reproducer exited {run.rc}: {_tail(ev.output)}")


def hang_rule(ev: Evidence) -> Verdict | None:
    run = _step(ev, "run")
    if run is not None and run.timed_out:
        return Verdict(Outcome.HANG, detail=f"the reproducer ran past its timeout ({run.seconds:.0f} s)")
    open_steps = [s.name for s in ev.steps if s.rc is None]
    if ev.killed or (open_steps and not guest_done(ev.output)):
        where = f" in step {open_steps[-1]}" if open_steps else ""
        return Verdict(Outcome.HANG, detail=(ev.killed or "the guest stopped") + where)
    return None


_LOST_RE = re.compile(r"^@@lost (.*)$", re.M)
_ELAPSED_RE = re.compile(r"^@@first-loss-after ([\d.]+)", re.M)


def data_rule(ev: Evidence) -> Verdict | None:
    lost = tuple(m.group(1).strip() for m in _LOST_RE.finditer(ev.output))
    if not lost:
        return None
    m = _ELAPSED_RE.search(ev.output)
    return Verdict(
        Outcome.DATA_LOSS,
        title="data loss",
        detail=f"{len(lost)} lost: {', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}",
        time_to_hit=float(m.group(1)) if m else None,
        lost=lost,
    )


def fsck_rule(ev: Evidence) -> Verdict | None:
    check = _step(ev, "check")
    if check is None or check.rc in (0, None):
        return None
    return Verdict(Outcome.FS_CORRUPT, title="filesystem corrupt", detail=f"checker exit {check.rc}")


RULES: tuple[Rule, ...] = (boot_rule, crash_rule, infra_rule, hang_rule, data_rule, failed_run_rule, fsck_rule)


def judge(ev: Evidence, rules: tuple[Rule, ...] = RULES) -> Verdict:
    for rule in rules:
        verdict = rule(ev)
        if verdict is not None:
            return verdict
    return Verdict(Outcome.CLEAN)
