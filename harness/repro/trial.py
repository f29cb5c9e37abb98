"""A run as evidence (``Observation``) and an open run session on one kernel (``Trial``).

Every statistical driver (prove, bisect) and the matrix's proof cells count
runs the same way, so they share one record of a run:

- ``Observation``: hit / clean / another report / did not run, with the title,
  the reproducer's seconds, the time to the hit, every report's title, the run
  folder, which saved boot it came from and how long a trial it raced;
- ``Trial``: ``with Trial(spec, kernel, options) as t: obs = t.run()`` keeps a
  ``ReproSession`` open (one boot per backend, every run a restore on the
  snapshot backend), resolves the accelerator the way the session resolves the
  backend (``--accel auto`` probed once per kernel), and turns each run's
  ``RunResult`` into an ``Observation``.  ``run(seconds=D)`` races a trial of
  D seconds instead of the spec's full race.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

from harness.guest.accel import accel_for
from harness.kernels import Kernel
from harness.options import Accel, RunOptions
from harness.repro.run import ReproSession, RunResult
from harness.repro.spec import Spec
from harness.verdict import Outcome

HIT, CLEAN, OTHER, FAIL = "hit", "clean", "other", "fail"
FAIL_OUTCOMES = frozenset(o.value for o in Outcome if o.is_error)  # the reproducer never ran (Outcome.is_error)


@dataclass(frozen=True)
class Observation:
    """What one run of one kernel showed, as far as counting runs is concerned."""

    hit: bool  # the spec's expected outcome (title, or data loss where the spec says so)
    outcome: str  # the run's Outcome value (REPRODUCED, CLEAN, OTHER_CRASH, ...)
    exposure: bool = True  # the reproducer ran: the run counts (boot/infra/build failures do not)
    title: str | None = None  # the verdict's title (the expected one for a hit)
    other: str | None = None  # another report's title (or the outcome, e.g. HANG) when the run was not a hit
    seconds: float | None = None  # reproducer seconds (the run step; up to the hit when it never ended)
    time_to_hit: float | None = None
    reports: tuple[str, ...] = ()  # every report title in the console
    folder: str | None = None
    wall_seconds: float | None = None
    detail: str = ""
    trial: float | None = None  # the trial's length in seconds (None: the spec's full race)
    boot: int | None = None  # which saved boot of the kernel the run was restored from (snapshot backend)
    overhead: float | None = None  # the run's seconds beyond its racing, a boot it waited for not included

    @property
    def kind(self) -> str:
        """``hit`` / ``clean`` / ``other`` (another report, a hang) / ``fail`` (the reproducer never ran)."""
        if self.hit:
            return HIT
        if not self.exposure:
            return FAIL
        return CLEAN if self.outcome == Outcome.CLEAN.value else OTHER

    @property
    def other_titles(self) -> tuple[str, ...]:
        """Titles of this run that are not the expected outcome."""
        found = [self.other] if self.other else []
        found += [t for t in self.reports if not (self.hit and t == self.title)]
        return tuple(dict.fromkeys(found))

    @property
    def raced(self) -> float | None:
        """Seconds of racing this run gave the bug: up to the hit, else the whole run step."""
        if not self.exposure:
            return None
        if self.hit and self.time_to_hit is not None:
            return self.time_to_hit
        return self.seconds if self.seconds is not None else self.trial

    def to_dict(self) -> dict:
        return {**asdict(self), "reports": list(self.reports)}

    @classmethod
    def from_dict(cls, data: dict) -> Observation:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["reports"] = tuple(values.get("reports") or ())
        return cls(**values)

    @classmethod
    def failed(cls, outcome: str, detail: str) -> Observation:
        """A run that never ran the reproducer (a guest that could not start, a build that failed)."""
        return cls(hit=False, outcome=outcome, exposure=False, detail=detail)


def observation(
    *,
    outcome,
    title: str | None,
    time_to_hit: float | None,
    reports: Sequence[str],
    steps: Sequence,
    wall_seconds: float | None,
    folder,
    is_hit: Callable[[object], bool],
    detail: str = "",
    trial: float | None = None,
    boot: int | None = None,
    spent: float | None = None,
) -> Observation:
    """A run driver's RunResult fields -> Observation.

    ``outcome`` is a ``harness.verdict.Outcome`` (or its value), ``steps``
    the run's StepResults (``.name``, ``.seconds``), ``is_hit`` the spec's
    ``expect.is_hit``.  The run counts as exposure when it hit, was CLEAN,
    or reached the ``run`` step without a harness failure.  ``spent`` is the
    run's own seconds where the backend timed its phases (a boot it waited
    for left out), else its wall time counts.
    """
    value = getattr(outcome, "value", str(outcome))
    hit = bool(is_hit(outcome))
    run_step = next((s for s in steps if getattr(s, "name", None) == "run"), None)
    failed = value in FAIL_OUTCOMES
    exposure = hit or (not failed and (value == Outcome.CLEAN.value or run_step is not None))
    seconds = getattr(run_step, "seconds", None)
    if seconds is None and exposure:
        seconds = time_to_hit
    return Observation(
        hit=hit,
        outcome=value,
        exposure=exposure,
        title=title,
        other=None if hit or failed or value == Outcome.CLEAN.value else (title or value),
        seconds=seconds,
        time_to_hit=time_to_hit,
        reports=tuple(reports),
        folder=None if folder is None else str(folder),
        wall_seconds=None if wall_seconds is None else round(wall_seconds, 2),
        detail=detail,
        trial=trial,
        boot=boot,
        overhead=_overhead(spent if spent is not None else wall_seconds, seconds if exposure else None),
    )


def _overhead(spent: float | None, raced: float | None) -> float | None:
    if spent is None or raced is None:
        return None
    return round(max(0.0, spent - raced), 3)


def _spent(guest: dict) -> float | None:
    """A run's own seconds from its backend's phases (the next guest restored ahead in parallel left out)."""
    phases = guest.get("phases") if isinstance(guest, dict) else None
    if not isinstance(phases, dict) or "run" not in phases:
        return None
    return sum(v for k, v in phases.items() if isinstance(v, int | float) and not k.startswith("ahead_"))


def from_run_result(result: RunResult, is_hit: Callable[[object], bool], trial: float | None = None) -> Observation:
    """``harness.repro.run.RunResult`` -> Observation."""
    v = result.verdict
    guest = getattr(result, "guest", None) or {}
    boot = guest.get("boot")  # the snapshot backend names the saved boot
    return observation(
        outcome=v.outcome,
        title=v.title,
        time_to_hit=v.time_to_hit,
        reports=tuple(v.reports),
        steps=tuple(result.steps),
        wall_seconds=result.wall_seconds,
        folder=result.folder,
        is_hit=is_hit,
        detail=v.detail,
        trial=trial,
        boot=boot if isinstance(boot, int) else None,
        spent=_spent(guest),
    )


class Trial:
    """An open run session on one kernel; each ``run()`` is one more run, as an Observation."""

    def __init__(self, spec: Spec, kernel: Kernel, options: RunOptions, *, accel: Accel | None = None,
                 progress: Callable[[str], None] | None = None):
        self.spec, self.kernel, self.options = spec, kernel, options
        self.accel = accel
        self.progress = progress
        self.session: ReproSession | None = None

    def __enter__(self) -> Trial:
        if self.accel is None:
            self.accel = accel_for(self.options, self.kernel)
        self.session = ReproSession(self.spec, self.kernel, self.options, accel=self.accel, progress=self.progress)
        self.session.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.session is not None:
            self.session.__exit__(exc_type, exc, tb)

    def run(self, seconds: float | None = None) -> Observation:
        """One more run; ``seconds`` races a trial of that length instead of the spec's full race."""
        assert self.session is not None, "a Trial runs inside its with block"
        return from_run_result(self.session.run(seconds), self.spec.expect.is_hit, seconds)

    @property
    def folder(self):
        return self.session.folder if self.session is not None else None
