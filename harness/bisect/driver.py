"""Bisection drivers: pure search logic around an injected step function.

- ``Evaluator`` turns a candidate (a commit id or a kernel name) into a
  ``StepRecord``: it calls the step function (build + boot + run, or a fake
  in tests), feeds the runs to the judge one by one until it decides, and
  logs the record as one JSON line in ``steps.jsonl``.  A candidate already
  in the log (same setup) is reused, not run again: that is how an
  interrupted bisection resumes.
- ``ListBisection``: binary search over an ordered list (Debian's prebuilt
  kernels): no builds at all.
- ``GitBisection``: drives ``git bisect`` (``--no-checkout``, its own terms)
  in a worktree of the user's repository: their checkout is never touched.

Both first check the ends (the reproducing end with every run, to measure
the hit rate; then the other end) unless told to trust them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

from harness import git
from harness.bisect.judge import NO_REPRO, REPRODUCES, SKIP, Judgement, Policy, Rate, RunObs, Tally, decide
from harness.errors import GitError, HarnessError
from harness.results import write_json
from harness.results.journal import Journal, now

Progress = Callable[[str], None]
STEPS_FILE = "steps.jsonl"
PARAMS_FILE = "bisect.json"


# --- terms -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Terms:
    """git bisect's two terms, and which of them is the reproducing behaviour."""

    old: str = "good"
    new: str = "bad"
    new_reproduces: bool = True

    @classmethod
    def for_mode(cls, fix: bool) -> Terms:
        """Normal: find the first commit that reproduces.  ``fix``: the first that no longer does."""
        return cls("broken", "fixed", False) if fix else cls("good", "bad", True)

    @property
    def repro_term(self) -> str:
        return self.new if self.new_reproduces else self.old

    @property
    def clean_term(self) -> str:
        return self.old if self.new_reproduces else self.new

    def term(self, verdict: str) -> str:
        if verdict == REPRODUCES:
            return self.repro_term
        if verdict == NO_REPRO:
            return self.clean_term
        return "skip"

    def exit_code(self, verdict: str) -> int:
        """``git bisect run``'s convention: 0 old, 1 new, 125 skip."""
        term = self.term(verdict)
        return 125 if term == "skip" else (0 if term == self.old else 1)


# --- step functions ---------------------------------------------------------------------


class StepSkip(Exception):
    """The candidate cannot be tested (build failure, patch failure, no such kernel)."""

    def __init__(self, reason: str, outcome: str = "BUILD_ERROR", info: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.outcome = outcome
        self.info = info or {}


class Target(Protocol):
    """A kernel ready to run: what a step function returns."""

    kernel: str  # kernel name as the harness knows it
    info: dict  # build key, build seconds, cached...

    def run(self, index: int) -> RunObs: ...


StepFn = Callable[[str], Target]


# --- records and the log ---------------------------------------------------------------------


@dataclass
class StepRecord:
    """One finished step: one line of steps.jsonl."""

    index: int
    candidate: str  # full commit id or kernel name
    label: str  # short id + subject, or the kernel name
    role: str  # repro-end | clean-end | step
    verdict: str  # reproduces | clean | skip
    term: str  # the git bisect term it maps to, or skip
    reason: str
    hits: int = 0
    ok: int = 0
    fails: int = 0
    titles: list[str] = field(default_factory=list)
    other_titles: list[str] = field(default_factory=list)
    confidence: float | None = None
    rate: float | None = None
    runs: list[dict] = field(default_factory=list)
    kernel: str | None = None
    build_key: str | None = None
    build_seconds: float | None = None
    build_cached: bool | None = None
    build: dict = field(default_factory=dict)  # everything the step function said about the kernel
    info: dict = field(default_factory=dict)  # subject, author, date of a commit
    seconds: float = 0.0
    started: str = ""
    finished: str = ""
    setup: str = ""  # digest of what the candidate was built and run with
    reused: bool = False  # read back from the log, not run in this invocation

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("reused")
        return d

    @classmethod
    def from_dict(cls, data: dict) -> StepRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def line(self) -> str:
        bits = [f"step {self.index}: {self.label}", f"[bold]{self.verdict}[/bold] ({self.term})",
                f"{self.hits}/{self.ok} hits"]
        if self.fails:
            bits.append(f"{self.fails} failed")
        if self.confidence is not None and self.verdict == NO_REPRO:
            bits.append(f"confidence {self.confidence:.3f}")
        if self.other_titles:
            bits.append(f"unrelated: {'; '.join(self.other_titles)}")
        bits.append(self.reason if self.verdict == SKIP else "")
        bits.append(f"{self.seconds:.0f} s" + (" (reused from the log)" if self.reused else ""))
        return " · ".join(b for b in bits if b)


def setup_digest(setup: dict) -> str:
    return hashlib.sha256(json.dumps(setup, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StepLog:
    """``steps.jsonl`` in a bisection folder: append-only, one finished step a line."""

    def __init__(self, folder: Path, setup: str = "", *, reuse_skips: bool = False):
        self.folder = folder
        self.path = folder / STEPS_FILE
        self.setup = setup
        self.reuse_skips = reuse_skips  # skips are mostly transient (a killed build, boot failures under load)
        self.journal = Journal(self.path)
        self.records: list[StepRecord] = []
        folder.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            for data in self.journal.read():  # a line cut by a crash is skipped: that step runs again
                try:
                    self.records.append(StepRecord.from_dict(data))
                except TypeError:
                    continue

    def find(self, candidate: str) -> StepRecord | None:
        for rec in reversed(self.records):
            if rec.candidate == candidate and rec.setup == self.setup:
                return rec if rec.verdict != SKIP or self.reuse_skips else None
        return None

    def matching(self) -> list[StepRecord]:
        return [r for r in self.records if r.setup == self.setup]

    def append(self, rec: StepRecord) -> None:
        self.records.append(rec)
        self.journal.append(rec.to_dict())

    @property
    def next_index(self) -> int:
        return max((r.index for r in self.records), default=0) + 1


# --- evaluating one candidate -----------------------------------------------------------------


class Evaluator:
    """Candidate -> StepRecord, through the step function, the judge and the log."""

    def __init__(
        self,
        step: StepFn,
        policy: Policy,
        log: StepLog,
        terms: Terms,
        *,
        describe: Callable[[str], dict] | None = None,
        label: Callable[[str], str] | None = None,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.step, self.policy, self.log, self.terms = step, policy, log, terms
        self.describe = describe or (lambda c: {})
        self.label = label or (lambda c: c)
        self.progress = progress or (lambda m: None)
        self.clock = clock
        self.rate = Rate(prior=policy.prior_rate)
        for rec in log.matching():
            if rec.verdict == REPRODUCES:
                self.rate.add(rec.hits, rec.ok)
        self.order: list[StepRecord] = []  # records in the order this bisection used them

    def evaluate(self, candidate: str, role: str = "step") -> StepRecord:
        old = self.log.find(candidate)
        if old is not None:
            old.reused = True
            self.order.append(old)
            self.progress(old.line())
            return old
        label = self.label(candidate)
        info = self.describe(candidate)
        started, t0 = now(), self.clock()
        self.progress(f"testing {label} ({role})")
        judgement, runs, kernel, build = self._test(candidate, label, measure=role == "repro-end")
        rec = StepRecord(
            index=self.log.next_index,
            candidate=candidate,
            label=label,
            role=role,
            verdict=judgement.verdict,
            term=self.terms.term(judgement.verdict),
            reason=judgement.reason,
            hits=judgement.hits,
            ok=judgement.ok,
            fails=judgement.fails,
            titles=list(judgement.titles),
            other_titles=list(judgement.other_titles),
            confidence=judgement.confidence,
            rate=judgement.rate,
            runs=[{**r.to_dict(), "kind": r.kind} for r in runs],
            kernel=kernel,
            build_key=build.get("key"),
            build_seconds=build.get("build_seconds"),
            build_cached=build.get("cached"),
            build=build,
            info=info,
            seconds=round(self.clock() - t0, 1),
            started=started,
            finished=now(),
            setup=self.log.setup,
        )
        if rec.verdict == REPRODUCES:
            self.rate.add(rec.hits, rec.ok)
        self.log.append(rec)
        self.order.append(rec)
        self.progress(rec.line())
        return rec

    def _test(self, candidate: str, label: str, *, measure: bool) -> tuple[Judgement, list[RunObs], str | None, dict]:
        """Get the candidate's kernel and run it until the judge decides: (judgement, runs, kernel, build info)."""
        try:
            target = self.step(candidate)
        except StepSkip as e:
            return Judgement(SKIP, e.reason), [RunObs("fail", e.outcome, None, 0.0, None, e.reason)], None, e.info
        runs: list[RunObs] = []
        with target if hasattr(target, "__enter__") else contextlib.nullcontext():  # one run session a step
            while (judgement := decide(runs, self.policy, self.rate.estimate, measure=measure)) is None:
                obs = target.run(len(runs) + 1)
                runs.append(obs)
                self.progress(f"  {label} run {len(runs)}: {obs.outcome}"
                              + (f" · {obs.title}" if obs.title else "")
                              + (f" · {obs.detail}" if obs.detail and obs.kind != "hit" else "")
                              + f" · {obs.wall_seconds or 0:.0f} s")
        return judgement, runs, target.kernel, dict(target.info)

    def tally(self) -> Tally:
        t = Tally(rate=Rate(self.rate.hits, self.rate.runs, self.rate.prior))
        seen = set()
        for rec in self.order:
            if rec.verdict == NO_REPRO and rec.candidate not in seen:
                t.clean_steps.append(rec.ok - rec.hits)
            seen.add(rec.candidate)
        return t


# --- results ------------------------------------------------------------------------------------


@dataclass
class BisectResult:
    status: str  # found | ambiguous | ends (the ends do not behave as stated)
    message: str
    terms: Terms
    first: str | None = None  # the first candidate with the new behaviour
    last_old: str | None = None
    suspects: list[str] = field(default_factory=list)  # when ambiguous: any of these
    info: dict = field(default_factory=dict)  # the first commit's subject/author, or {}
    steps: list[StepRecord] = field(default_factory=list)
    confidence: float | None = None
    rate: dict = field(default_factory=dict)
    folder: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.status == "found"

    def to_dict(self) -> dict:
        tested = [s for s in self.steps]
        return {
            "status": self.status,
            "message": self.message,
            "terms": asdict(self.terms),
            "first": self.first,
            "first_label": self._label(self.first),
            "last_old": self.last_old,
            "suspects": self.suspects,
            "info": self.info,
            "confidence": self.confidence,
            "rate": self.rate,
            "steps": len(tested),
            "steps_run": sum(not s.reused for s in tested),
            "runs": sum(len(s.runs) for s in tested),
            "hits": sum(s.hits for s in tested),
            "seconds": round(sum(s.seconds for s in tested), 1),
            "unrelated": sorted({t for s in tested for t in s.other_titles}),
            "folder": str(self.folder) if self.folder else None,
            "step_log": str(self.folder / STEPS_FILE) if self.folder else None,
            "records": [s.to_dict() | {"reused": s.reused} for s in tested],
            **self.extra,
        }

    def _label(self, candidate: str | None) -> str | None:
        if candidate is None:
            return None
        return next((s.label for s in self.steps if s.candidate == candidate), candidate)

    def headline(self) -> str:
        if self.status == "found":
            what = self.info.get("subject")
            who = self.info.get("author")
            name = f"{self.first[:12]} {what}" if what else self.first
            conf = f"confidence {self.confidence:.3f}" if self.confidence is not None else "confidence unknown"
            return (f"first {self.terms.new} {'commit' if what else 'kernel'}: {name}"
                    + (f" ({who})" if who else "") + f" · {conf}")
        return f"{self.status.upper()}: {self.message}"

    def report_text(self) -> str:
        d = self.to_dict()
        lines = [self.headline(), ""]
        if self.status == "found" and self.last_old:
            lines.append(f"last {self.terms.old}: {self._label(self.last_old)}")
        if self.suspects:
            lines.append("suspects: " + ", ".join(self._label(s) or s for s in self.suspects))
        rate = self.rate
        lines.append(f"hit rate (Laplace) {rate.get('estimate')} from {rate.get('hits')}/{rate.get('runs')} runs "
                     "on the steps that reproduced")
        lines.append(f"{d['steps']} steps ({d['steps_run']} run now), {d['runs']} runs, {d['hits']} hits, "
                     f"{d['seconds'] / 60:.1f} min")
        if d["unrelated"]:
            lines.append("unrelated outcomes (counted as no reproduction): " + "; ".join(d["unrelated"]))
        lines.append("")
        for s in self.steps:
            lines.append(f"  {s.index:>2} {s.role:<9} {s.term:<7} {s.hits}/{s.ok} hits"
                         f"{f' {s.fails} failed' if s.fails else ''}"
                         f"{f' conf {s.confidence:.3f}' if s.verdict == NO_REPRO and s.confidence is not None else ''}"
                         f" {s.seconds:>6.0f}s  {s.label}"
                         f"{'  (reused)' if s.reused else ''}")
        return "\n".join(lines) + "\n"


def _finish(ev: Evaluator, result: BisectResult) -> BisectResult:
    tally = ev.tally()
    result.steps = list(ev.order)
    result.confidence = tally.confidence() if result.found else None
    result.rate = tally.rate.to_dict()
    # recompute every clean step's confidence with the final rate, for the report
    for rec in result.steps:
        if rec.verdict == NO_REPRO and tally.rate.estimate is not None:
            rec.confidence = round(1.0 - (1.0 - tally.rate.estimate) ** (rec.ok - rec.hits), 4)
    return result


def check_ends(ev: Evaluator, old: str, new: str) -> BisectResult | None:
    """Test the reproducing end (every run: it measures the hit rate), then the other end."""
    terms = ev.terms
    repro_end, clean_end = (new, old) if terms.new_reproduces else (old, new)
    rec = ev.evaluate(repro_end, "repro-end")
    if rec.verdict != REPRODUCES:
        what = "does not reproduce" if rec.verdict == NO_REPRO else "could not be judged"
        return BisectResult("ends", f"the {terms.repro_term} end {rec.label} {what}: {rec.reason}", terms)
    rec = ev.evaluate(clean_end, "clean-end")
    if rec.verdict != NO_REPRO:
        what = "reproduces too" if rec.verdict == REPRODUCES else "could not be judged"
        return BisectResult("ends", f"the {terms.clean_term} end {rec.label} {what}: {rec.reason}", terms)
    return None


# --- ordered list --------------------------------------------------------------------------------


class ListBisection:
    """Binary search over ordered candidates: the first one with the new behaviour."""

    def __init__(self, candidates: list[str], old: str, new: str, evaluator: Evaluator, *, verify_ends: bool = True):
        for end in (old, new):
            if end not in candidates:
                raise ValueError(f"{end} is not among the candidates")
        self.candidates = list(candidates)
        self.lo, self.hi = candidates.index(old), candidates.index(new)
        if self.lo >= self.hi:
            raise ValueError(f"{old} must come before {new}")
        self.ev = evaluator
        self.verify_ends = verify_ends

    @staticmethod
    def pick(lo: int, hi: int, skipped: set[int]) -> int | None:
        """The untested index nearest the middle of (lo, hi), skipping skipped ones."""
        mid = (lo + hi) / 2
        inside = sorted(range(lo + 1, hi), key=lambda i: (abs(i - mid), i))
        return next((i for i in inside if i not in skipped), None)

    def run(self) -> BisectResult:
        ev, c = self.ev, self.candidates
        terms = ev.terms
        if self.verify_ends and (bad := check_ends(ev, c[self.lo], c[self.hi])):
            return _finish(ev, bad)
        lo, hi, skipped = self.lo, self.hi, set()
        while hi - lo > 1:
            i = self.pick(lo, hi, skipped)
            if i is None:
                break
            rec = ev.evaluate(c[i])
            if rec.term == terms.old:
                lo = i
            elif rec.term == terms.new:
                hi = i
            else:
                skipped.add(i)
        if hi - lo == 1:
            first = c[hi]
            return _finish(ev, BisectResult("found", f"{first} is the first {terms.new} candidate", terms,
                                            first=first, last_old=c[lo], info=ev.describe(first)))
        suspects = c[lo + 1 : hi + 1]
        return _finish(ev, BisectResult("ambiguous", f"only skipped candidates left: the first {terms.new} is one "
                                        f"of {', '.join(suspects)}", terms, last_old=c[lo], suspects=suspects))


# --- git bisect -------------------------------------------------------------------------------------

_FIRST_RE = re.compile(r"^([0-9a-f]{40}) is the first (\S+) commit", re.M)
_SHA_RE = re.compile(r"^([0-9a-f]{40})$", re.M)


class GitBisection:
    """``git bisect`` in a worktree of ``repo``, one evaluated commit at a time.

    The worktree is made with ``--no-checkout`` and bisect runs with
    ``--no-checkout`` (it only moves BISECT_HEAD): nothing of the kernel tree
    is written there.  The builds check commits out in the build cache's own
    clone.
    """

    def __init__(self, repo: Path, old: str, new: str, evaluator: Evaluator, folder: Path, *,
                 verify_ends: bool = True, keep_worktree: bool = False):
        self.repo = repo
        self.old, self.new = git.rev_parse(repo, old), git.rev_parse(repo, new)
        self.old_ref, self.new_ref = old, new
        if not git.is_ancestor(repo, self.old, self.new):
            raise GitError(f"{old} is not an ancestor of {new} in {repo}")
        self.ev = evaluator
        self.folder = folder
        self.worktree = folder / "worktree"
        self.gitlog = folder / "git.log"
        self.verify_ends = verify_ends
        self.keep_worktree = keep_worktree

    def _git(self, *args: str, check: bool = True):
        return git.run(self.worktree, *args, check=check, log_path=self.gitlog)

    def _repo_git(self, *args: str, check: bool = True):
        return git.run(self.repo, *args, check=check, log_path=self.gitlog)

    def _make_worktree(self) -> None:
        if self.worktree.exists():
            self._repo_git("worktree", "remove", "--force", str(self.worktree), check=False)
            shutil.rmtree(self.worktree, ignore_errors=True)
        self._repo_git("worktree", "prune")
        self._repo_git("worktree", "add", "--detach", "--no-checkout", str(self.worktree), self.new)

    def _drop_worktree(self) -> None:
        if self.keep_worktree or not self.worktree.exists():
            return
        self._repo_git("worktree", "remove", "--force", str(self.worktree), check=False)
        shutil.rmtree(self.worktree, ignore_errors=True)
        self._repo_git("worktree", "prune", check=False)

    def run(self) -> BisectResult:
        ev, terms = self.ev, self.ev.terms
        if self.verify_ends and (bad := check_ends(ev, self.old, self.new)):
            return _finish(ev, bad)
        self._make_worktree()
        try:
            done = self._git("bisect", "start", "--no-checkout", f"--term-old={terms.old}", f"--term-new={terms.new}",
                             self.new, self.old)
            output = done.stdout
            while True:
                if m := _FIRST_RE.search(output):
                    first = m.group(1)
                    result = BisectResult("found", f"{first} is the first {terms.new} commit", terms, first=first,
                                          info=git.commit_info(self.repo, first))
                    parents = git.run(self.repo, "rev-parse", f"{first}^", check=False).stdout.strip()
                    result.last_old = parents or None
                    break
                if "only 'skip'ped commits left" in output:
                    tail = output.split("could be any of:", 1)[-1]
                    suspects = _SHA_RE.findall(tail)
                    result = BisectResult("ambiguous", f"only skipped commits left: the first {terms.new} commit is "
                                          f"one of {len(suspects)}", terms, suspects=suspects)
                    break
                head = self._git("rev-parse", "BISECT_HEAD").stdout.strip()
                rec = ev.evaluate(head)
                done = self._git("bisect", rec.term, head, check=False)
                output = done.stdout + done.stderr
                if done.returncode != 0 and not _FIRST_RE.search(output) and "only 'skip'ped" not in output:
                    raise GitError(f"git bisect {rec.term} {head} failed: {git.complaint(output)}")
            (self.folder / "git-bisect.log").write_text(self._git("bisect", "log", check=False).stdout)
            self._git("bisect", "reset", check=False)
        finally:
            self._drop_worktree()
        return _finish(ev, result)


# --- the folder ------------------------------------------------------------------------------------


def open_folder(folder: Path, params: dict) -> None:
    """Record the bisection's parameters; refuse a folder that holds another bisection."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PARAMS_FILE
    keys = ("repro", "mode", "old", "new", "source", "setup")
    if path.exists():
        saved = json.loads(path.read_text())
        diff = [k for k in keys if saved.get(k) != params.get(k)]
        if diff:
            raise HarnessError(
                f"{folder} holds another bisection ({', '.join(f'{k}: {saved.get(k)!r}' for k in diff)})",
                hint="use another --folder, or the same arguments to resume",
            )
        params = {**saved, **params, "resumed": saved.get("resumed", 0) + 1}
    write_json(path, params)


def write_report(result: BisectResult) -> None:
    assert result.folder is not None
    write_json(result.folder / "report.json", result.to_dict())
    (result.folder / "report.txt").write_text(result.report_text())
