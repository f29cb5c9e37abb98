"""Runs side by side (``--jobs N``): up to N guests at once, the proof decided exactly as one run at a time.

Each kernel's runs are one stream of independent trials, numbered in the
order they are started.  The proof (``driver.Proof``, unchanged) takes each
side's results in that order, whatever order they finish in: the fifth
patched run started is the fifth patched run counted, even when the sixth
finished first.  The proof therefore decides on the sequence of outcomes it
would have seen one run at a time, and the order in which guests happen to
finish cannot bias it: a quick hit cannot overtake a slow clean run into the
count (which would favour hits, a fast-crashing kernel's runs finishing
first), nor the other way round.  ``tests/test_parallel.py`` checks the
verdict and every count against the sequential proof over the same outcome
streams, with the finishing order shuffled.

While the proof waits for the run it needs next, the free guests start the
runs it will need after that, predicted from the counts alone (the schedule
of sides after the base check depends on how many runs counted, never on
what they showed).  A run started past the answer, or of a trial length the
proof no longer runs (base check runs still racing when the check ended and
the trial length was chosen), is **surplus**: logged as such, never counted.

Every finished run is in the log at once (``done``), before the proof has
taken it; a resumed proof takes the finished runs it had not counted yet
first, in their order, so a kill loses only the runs that were racing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from harness.prove.driver import BASE, PATCHED, SIDES, Decision, Policy, Proof, ProofLog, Prover, Side
from harness.repro.trial import Observation
from harness.results.journal import now

SideFactory = Callable[[str, int], Side]  # (side, slot) -> a Side that slot runs on (each slot its own guests)
RUNNING = threading.local()  # in a worker: .side and .index of the run it is racing (what a fake kernel keys on)


class LockedLog:
    """The proof's log, appended to from the proof's thread and the workers."""

    def __init__(self, log: ProofLog, lock: threading.Lock):
        self.log, self.lock, self.folder = log, lock, log.folder

    def append(self, record: dict) -> None:
        with self.lock:
            self.log.append(record)


@dataclass
class Started:
    """One run of one side, in the order started."""

    index: int
    seconds: float | None
    future: Future = field(default_factory=Future)


class Streams:
    """Each side's runs in the order started; a run is taken once, in that order.  ``seq`` numbers them across
    resumes (a log's ``done``, ``run`` and ``surplus`` records name the run by it)."""

    def __init__(self, records: list[dict]):
        self.started = {side: [] for side in SIDES}
        self.taken = dict.fromkeys(SIDES, 0)
        self.seq = {side: 1 + max((r.get("index", -1) for r in records if r.get("side") == side
                                   and isinstance(r.get("index"), int)), default=-1) for side in SIDES}

    def next_seq(self, side: str) -> int:
        self.seq[side] += 1
        return self.seq[side] - 1

    def pending(self, side: str) -> list[Started]:
        return self.started[side][self.taken[side]:]


class ParallelProver(Prover):
    """A Prover over ``jobs`` slots; ``sides(side, slot)`` opens the Side a slot runs that kernel on."""

    def __init__(self, sides: SideFactory, policy: Policy, *, jobs: int, proof: Proof | None = None,
                 log: ProofLog | None = None, clock: Callable[[], float] = time.monotonic,
                 progress=None, full: float | None = None, records: list[dict] | None = None):
        self.lock = threading.Lock()  # the log and the opened sides, from the workers
        super().__init__(None, None, policy, proof=proof, log=LockedLog(log, self.lock) if log else None,
                         clock=clock, progress=progress, full=full)
        self.factory = sides
        self.jobs = jobs
        self.streams = Streams(records or [])
        self.taken_index: int | None = None
        self.slots: queue.Queue[int] = queue.Queue()
        for slot in range(jobs):
            self.slots.put(slot)
        self.opened: dict[tuple[str, int], Side] = {}
        self.opening = threading.Lock()
        self.pool = ThreadPoolExecutor(jobs, thread_name_prefix="prove-run")
        for side, runs in unfinished(records or []).items():  # a resumed proof's finished runs not yet taken
            for index, obs in runs:
                self._finished(side, index, obs)

    # --- the sequential proof's one change: where a run comes from ---------------------------------------

    def run(self, *, plan_only: bool = False) -> Decision | None:
        try:
            decision = super().run(plan_only=plan_only)
        except BaseException:  # a kill, Ctrl-C, a kernel that would not run: finished runs stay for a resume
            self.pool.shutdown(wait=False, cancel_futures=True)
            raise
        self.pool.shutdown(wait=True, cancel_futures=True)  # the runs still racing end within a trial
        if decision is not None:
            self._surplus()
        return decision

    def _next(self, side: str, seconds: float | None) -> Observation:
        """The side's next run in the order started, of the trial length asked (others are surplus)."""
        while True:
            self._fill(side, seconds)
            started = self.streams.pending(side)[0]
            self.streams.taken[side] += 1
            obs = started.future.result()
            if started.seconds == seconds:
                self.taken_index = started.index
                return obs
            self._log({"type": "surplus", "side": side, "index": started.index,
                       "why": "a run of another trial length (the base check ended while it raced)"})

    # --- starting the runs the proof will need ------------------------------------------------------------

    def _fill(self, side: str, seconds: float | None) -> None:
        """Start the run asked for if it is not running, then keep every slot busy with predicted ones."""
        for want_side, want_seconds in self._demand(side, seconds):
            if self._running() >= self.jobs and self.streams.pending(side):
                return
            self._start(want_side, want_seconds)

    def _demand(self, side: str, seconds: float | None) -> list[tuple[str, float | None]]:
        """The runs not yet started that the proof will take next, the one it waits for first."""
        out, covered = [], {s: len(self.streams.pending(s)) for s in SIDES}
        for s, length in self._schedule(side, seconds):
            if covered[s]:
                covered[s] -= 1
                continue
            out.append((s, length))
            if len(out) >= self.jobs:
                break
        return out

    def _schedule(self, side: str, seconds: float | None):
        """The sides the proof will ask for from now on, every run counting (a failed run only adds one)."""
        yield side, seconds
        proof = self.proof
        if not proof.base_checked or proof.needs_choice:  # the check: base runs; the length after it is unknown
            for _ in range(2 * self.jobs):
                yield BASE, None
            return
        patched, base_after = proof.patched.runs + (side == PATCHED), proof.base_after_check + (side == BASE)
        for _ in range(4 * self.jobs):
            nxt = BASE if patched >= proof.policy.interleave * (base_after + 1) else PATCHED
            patched, base_after = patched + (nxt == PATCHED), base_after + (nxt == BASE)
            yield nxt, seconds

    def _running(self) -> int:
        return sum(not s.future.done() for side in SIDES for s in self.streams.pending(side))

    def _record(self, obs: Observation) -> dict:
        return {**obs.to_dict(), "index": self.taken_index}

    def _start(self, side: str, seconds: float | None) -> None:
        started = Started(self.streams.next_seq(side), seconds)
        self.streams.started[side].append(started)
        self.pool.submit(self._work, side, started)

    def _work(self, side: str, started: Started) -> None:
        slot = self.slots.get()
        try:
            with self.opening:
                if (side, slot) not in self.opened:
                    self.opened[side, slot] = self.factory(side, slot)
                run_on = self.opened[side, slot]
            RUNNING.side, RUNNING.index = side, started.index
            obs = run_on.run() if started.seconds is None else run_on.run(started.seconds)
            self._log({"type": "done", "side": side, "index": started.index, "at": now(), **obs.to_dict()})
            started.future.set_result(obs)
        except BaseException as exc:  # the proof's thread raises it when it takes this run
            started.future.set_exception(exc)
        finally:
            self.slots.put(slot)

    def _finished(self, side: str, index: int, obs: Observation) -> None:
        started = Started(index, obs.trial)
        started.future.set_result(obs)
        self.streams.started[side].append(started)

    def _surplus(self) -> None:
        for side in SIDES:
            for started in self.streams.pending(side):
                started.future.cancel()
                if started.future.done() and not started.future.cancelled() and started.future.exception() is None:
                    self._log({"type": "surplus", "side": side, "index": started.index,
                               "why": "started past the answer"})

    def _log(self, record: dict) -> None:
        if self.log:
            self.log.append(record)


def side_by_side(sides: SideFactory, jobs: int):
    """A ``driver.MakeProver``: up to ``jobs`` runs at once, each slot on its own sides."""
    return lambda policy, **kw: ParallelProver(sides, policy, jobs=jobs, **kw)


def unfinished(records: list[dict]) -> dict[str, list[tuple[int, Observation]]]:
    """A log's finished runs (``done``) that the proof had neither taken (``run``) nor set aside (``surplus``)
    when it stopped, per side, in the order they were started: ``(seq, Observation)``."""
    out = {}
    for side in SIDES:
        mine = [r for r in records if r.get("side") == side and isinstance(r.get("index"), int)]
        used = {r["index"] for r in mine if r.get("type") in ("run", "surplus")}
        done = {r["index"]: r for r in mine if r.get("type") == "done" and r["index"] not in used}
        out[side] = [(i, Observation.from_dict(done[i])) for i in sorted(done)]
    return out


