"""``--jobs N``: the proof's runs side by side decide exactly as one at a time (harness.prove.parallel).

Fake kernels draw each run's outcome from a stream fixed in advance per side
and keyed by the run's place in the order started (``parallel.RUNNING``), and
sleep a random few milliseconds so that runs finish in a shuffled order.  The
sequential ``Prover`` over the same streams is the reference: the verdict,
every count, the chosen trial length and the log's runs must be the same.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from harness.prove import BASE, PATCHED, KernelInfo, Observation, Policy, ProofInfo, ProofLog, Prover, driver, parallel

FULL = 30.0


class Stream:
    """The k-th run of a side: hit when its drawn time to hit is within the trial (None: never hits)."""

    def __init__(self, times: list[float | None], delay: random.Random | None = None):
        self.times, self.delay, self.calls = times, delay, 0
        self.lock = threading.Lock()

    def observe(self, index: int, seconds: float | None) -> Observation:
        length = FULL if seconds is None else seconds
        t = self.times[index]
        hit = t is not None and t <= length
        return Observation(hit=hit, outcome="DATA_LOSS" if hit else "CLEAN", time_to_hit=t if hit else None,
                           seconds=t if hit else length, wall_seconds=1.0 + (t if hit else length), trial=seconds)


class SequentialSide:
    def __init__(self, stream: Stream):
        self.stream, self.n = stream, 0

    def run(self, seconds: float | None = None) -> Observation:
        self.n += 1
        return self.stream.observe(self.n - 1, seconds)


class SlotSide:
    """One slot's guest of a side: the outcome of the run it is racing, by its place in the order started."""

    def __init__(self, stream: Stream, fail_after: int | None = None):
        self.stream, self.fail_after = stream, fail_after

    def run(self, seconds: float | None = None) -> Observation:
        index = parallel.RUNNING.index
        if self.stream.delay is not None:
            with self.stream.lock:
                pause = self.stream.delay.uniform(0, 0.004)
            time.sleep(pause)
        if self.fail_after is not None and index >= self.fail_after:
            raise KeyboardInterrupt  # the harness killed mid-proof
        return self.stream.observe(index, seconds)


def streams(seed: int, truth: str) -> dict[str, Stream]:
    rng = random.Random(seed)
    base = [round(0.575 * (1 + (rng.random() > 0.6)) + rng.uniform(-0.03, 0.03), 3) for _ in range(400)]
    patched = {
        "fixed": [None] * 400,
        "same": [round(0.575 * (1 + (rng.random() > 0.6)), 3) for _ in range(400)],
        "rare": [0.3 if rng.random() < 0.02 else None for _ in range(400)],
    }[truth]
    return {BASE: Stream(base, random.Random(seed + 1)), PATCHED: Stream(patched, random.Random(seed + 2))}


def sequential(seed: int, truth: str, policy: Policy):
    s = streams(seed, truth)
    prover = Prover(SequentialSide(s[BASE]), SequentialSide(s[PATCHED]), policy, full=FULL)
    return prover.run(), prover.proof


def side_by_side(seed: int, truth: str, policy: Policy, jobs: int, log: ProofLog | None = None, fail_after=None):
    s = streams(seed, truth)
    factory = lambda side, slot: SlotSide(s[side], fail_after if side == PATCHED else None)  # noqa: E731
    prover = parallel.ParallelProver(factory, policy, jobs=jobs, full=FULL, log=log)
    return prover.run(), prover.proof


def counts(proof) -> tuple:
    return tuple((t.runs, t.hits, t.failed) for t in (proof.check, proof.base, proof.patched)) + (proof.trial,)


@pytest.mark.parametrize("jobs", [2, 3])
@pytest.mark.parametrize("truth", ["fixed", "same", "rare"])
def test_side_by_side_decides_as_one_at_a_time(truth, jobs):
    policy = Policy(confidence=0.95, fraction=0.1, max_runs=200)
    for seed in range(4):
        want, want_proof = sequential(seed, truth, policy)
        got, got_proof = side_by_side(seed, truth, policy, jobs)
        assert (got.verdict, got.reason) == (want.verdict, want.reason), (seed, truth, jobs)
        assert counts(got_proof) == counts(want_proof), (seed, truth, jobs)
        assert [o.to_dict() for o in got_proof.patched.observations] == \
               [o.to_dict() for o in want_proof.patched.observations]


def _info() -> ProofInfo:
    k = KernelInfo("debian-src:6.1.192/ext2-iomap", "6.1.192")
    return ProofInfo("ext2_iomap_blkseq", k, KernelInfo(k.name + "+1a2b3c4d", "6.1.192"), policy=Policy(), race=FULL)


def test_surplus_runs_are_logged_never_counted(tmp_path: Path):
    policy = Policy()
    log = ProofLog.create(tmp_path, _info())
    decision, proof = side_by_side(1, "fixed", policy, 3, log=log)
    _, records = log.read()
    runs = [r for r in records if r["type"] == "run"]
    assert len(runs) == proof.total
    assert {r["type"] for r in records} >= {"run", "done", "trial", "verdict"}
    surplus = [r for r in records if r["type"] == "surplus"]
    assert surplus, "3 guests racing: the base check ends with check runs still racing, the answer with more"
    assert all(isinstance(r["index"], int) for r in (*runs, *surplus))
    # replaying the log gives the same state the proof ended in
    (end,) = [i for i, r in enumerate(records) if r["type"] == "verdict"]
    replayed = driver.replay(policy, records[:end], FULL)
    assert counts(replayed) == counts(proof) and decision.verdict.value == records[end]["verdict"]
    assert all(r["type"] in ("surplus", "done") for r in records[end + 1:])  # the runs racing past the answer


def test_a_kill_keeps_every_finished_run_and_the_resume_decides_the_same(tmp_path: Path):
    policy = Policy()
    want, want_proof = sequential(2, "fixed", policy)
    log = ProofLog.create(tmp_path, _info())
    with pytest.raises(KeyboardInterrupt):
        side_by_side(2, "fixed", policy, 2, log=log, fail_after=20)
    _, records = log.read()
    left = parallel.unfinished(records)
    done = [r for r in records if r["type"] == "done"]
    taken = [r for r in records if r["type"] == "run"]
    assert len(done) >= len(taken) and sum(len(v) for v in left.values()) == len(done) - len(taken) - sum(
        1 for r in records if r["type"] == "surplus")
    s = streams(2, "fixed")
    factory = lambda side, slot: SlotSide(s[side])  # noqa: E731
    result = driver.resume(tmp_path, None, None, make=parallel.side_by_side(factory, 2))
    assert (result.verdict, counts(result.proof)) == (want.verdict, counts(want_proof))
