"""``harness bisect`` and ``harness bisect-step`` (for ``git bisect run``).

harness bisect REPRO --good REF --bad REF [--kernel-source git:PATH] [--runs N] [--fix]

- with ``--kernel-source git:PATH``: REFs are revisions of PATH; each step
  builds the commit through the build cache (the reproducer's kconfig
  fragments) and ``git bisect`` runs in a worktree of PATH;
- without: REFs are prebuilt kernel names (``debian:6.1.0-47``) and the
  search runs over the sorted list the source offers, with no build at all.

``--fix`` finds the first commit (or kernel) where the bug no longer
reproduces: git bisect's terms become "broken" (old) and "fixed" (new).

harness bisect-step REPRO [--kernel-source git:PATH] [--rev REV] [--fix]

judges one commit (default: BISECT_HEAD, else HEAD, of the repository in
the current directory) and exits 0 (old: "good"/"broken"), 1 (new: "bad" /
"fixed") or 125 (skip: build failure, boot failure, infra error,
inconclusive), so it can be used as ``git bisect run harness bisect-step
REPRO``.  Errors that mean the bisection cannot go on (unknown reproducer,
missing tool, bad usage) exit 128, which makes ``git bisect run`` stop
instead of taking them for "bad".

Exit codes of ``bisect``: 0 the change was found; 1 it was not (the ends do
not behave as stated, or only skipped candidates are left); the harness's
usual codes for errors.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from harness import git, kernels
from harness.bisect import driver, steps
from harness.bisect.judge import Policy
from harness.cli.options import abort_on_usage_error, add_run_options, at_least, fraction, positive, run_options
from harness.errors import ExitCode, GitError, HarnessError, SpecError, UnknownName
from harness.kernels.build import DEFAULT_FRAGMENTS
from harness.kernels.debian import version_key
from harness.kernels.patches import PatchOp
from harness.kernels.sources import GitSource
from harness.options import RunOptions
from harness.paths import results_dir
from harness.repro import spec as specs

GIT_ABORT = ExitCode.GIT_ABORT  # git bisect run: > 127 aborts the bisection
RESUME_HINT = "finished steps are in the folder's steps.jsonl (run again to resume)"


def _progress_printer(console: Console) -> driver.Progress:
    def progress(msg: str) -> None:
        if msg.startswith("step ") or msg.startswith("  "):
            console.print(msg)
        else:
            console.print(f"[dim]… {msg}[/dim]")

    return progress


def _console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)  # one line stays one line in logs


# --- shared setup ----------------------------------------------------------------------------------


def _policy(args: argparse.Namespace, spec: specs.Spec) -> Policy:
    return Policy(
        runs=args.runs or spec.runs,
        min_hits=args.min_hits or spec.expect.min_hits,
        min_ok=args.min_ok,
        target=args.confidence,
        max_fail=args.max_fail,
        prior_rate=args.rate,
    )


@dataclass(frozen=True)
class Inputs:
    """What every candidate is built and run with: commits of ``repo`` built with these fragments and
    patches, or (``repo`` None) prebuilt kernels."""

    repo: Path | None = None
    fragments: tuple[str, ...] = ()
    patches: tuple[PatchOp, ...] = ()
    cmdline: tuple[str, ...] = ()  # extra boot options (a variant's)

    @classmethod
    def from_args(cls, args: argparse.Namespace, spec: specs.Spec, repo: Path | None) -> Inputs:
        if repo is None:
            return cls()
        fragments, patches, cmdline = DEFAULT_FRAGMENTS, (), ()
        if args.variant:
            v = spec.variant(args.variant)
            fragments, cmdline = v.kconfig, v.cmdline
            patches = tuple(PatchOp(p, rev) for p, rev in v.patches)
        elif spec.variants:
            fragments, cmdline = spec.variants[0].kconfig, spec.variants[0].cmdline
        if args.kconfig:
            fragments = tuple(f for item in args.kconfig for f in item.split(",") if f)
        return cls(repo, fragments, patches, cmdline)

    def setup(self, spec: specs.Spec, options: RunOptions) -> dict:
        """What a candidate's result depends on besides the candidate (the step log's reuse key)."""
        if self.repo is None:
            return steps.setup_for(spec, kind="prebuilt", timeout=options.timeout)
        return steps.setup_for(spec, kind="git", fragments=self.fragments, patches=self.patches, cmdline=self.cmdline,
                               timeout=options.timeout)

    def step(self, spec: specs.Spec, options: RunOptions, progress) -> driver.StepFn:
        if self.repo is None:
            return steps.PrebuiltStep(spec, options, progress=progress)
        return steps.GitBuildStep(spec, self.repo, options, fragments=self.fragments, patches=self.patches,
                                  progress=progress)

    def options(self, args: argparse.Namespace, folder: Path) -> RunOptions:
        """The run options of every step: the command line's, the variant's boot options, runs under the folder
        (``runs`` is the policy's to count: a step runs one at a time)."""
        return run_options(args, cmdline=self.cmdline, results=folder / "runs")


def _git_source(value: str) -> Path:
    if not value.startswith("git:"):
        raise SpecError(f"--kernel-source {value!r}: bisecting needs a git: source (git:/path/to/linux)")
    repo, _ = GitSource.split(value.removeprefix("git:"))
    if not (repo / ".git").exists() and not git.is_repo(repo):
        raise UnknownName(f"--kernel-source {value}: {repo} is not a git repository")
    return git.main_worktree(repo)


def _rev_parse(repo: Path, rev: str) -> str:
    try:
        return git.rev_parse(repo, rev)
    except GitError as e:
        raise UnknownName(str(e), hint=f"give a revision of {repo}: a commit id, tag or branch") from None


def _prebuilt_list(good: str, bad: str) -> list[str]:
    kind = kernels.split_name(good)[0]
    if kernels.split_name(bad)[0] != kind:
        raise SpecError(f"--good {good} and --bad {bad} are kernels of different kinds")
    source = kernels.SOURCES.select(kind)
    if hasattr(source, "checkout"):
        raise SpecError(f"{kind}: kernels are built from source: bisect them with --kernel-source git:PATH and revisions")
    names = sorted(source.available(), key=version_key)
    missing = [n for n in (good, bad) if n not in names]
    if missing:
        raise UnknownName(f"{', '.join(missing)} not in the {kind} kernels on offer: {', '.join(names) or '(none)'}",
                          hint="`harness kernels` lists them")
    return names


def _evaluator(step: driver.StepFn, policy: Policy, log: driver.StepLog, terms: driver.Terms, repo: Path | None,
               progress) -> driver.Evaluator:
    if repo is None:
        return driver.Evaluator(step, policy, log, terms, progress=progress)
    info = functools.cache(lambda sha: git.commit_info(repo, sha))
    return driver.Evaluator(step, policy, log, terms, describe=info, progress=progress,
                            label=lambda sha: f"{sha[:12]} {info(sha).get('subject', '')}".strip())


# --- bisect ------------------------------------------------------------------------------------------


def bisect(args: argparse.Namespace, *, step: driver.StepFn | None = None, progress=None) -> driver.BisectResult:
    """The library entry point behind ``harness bisect`` (``step`` replaces the real one in tests)."""
    spec = specs.load(args.reproducer)
    policy, terms = _policy(args, spec), driver.Terms.for_mode(args.fix)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(args.folder) if args.folder else results_dir() / f"bisect-{stamp}-{spec.name}{'-fix' if args.fix else ''}"
    progress = progress or (lambda m: None)
    repo = _git_source(args.kernel_source) if args.kernel_source else None
    inputs = Inputs.from_args(args, spec, repo)
    if repo is not None:
        names, old, new, source = [], _rev_parse(repo, args.good), _rev_parse(repo, args.bad), f"git:{repo}"
    else:
        names, old, new, source = _prebuilt_list(args.good, args.bad), args.good, args.bad, args.good.split(":")[0]
    options = inputs.options(args, folder)
    setup = inputs.setup(spec, options)
    digest = driver.setup_digest(setup)
    driver.open_folder(folder, {
        "repro": spec.name, "mode": "fix" if args.fix else "regression", "old": old, "new": new, "source": source,
        "setup": digest, "setup_inputs": setup, "policy": policy.__dict__, "terms": terms.__dict__,
        "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    log = driver.StepLog(folder, digest, reuse_skips=args.reuse_skips)
    if log.matching():
        progress(f"resuming: {len(log.matching())} finished steps in {log.path}")
    ev = _evaluator(step or inputs.step(spec, options, progress), policy, log, terms, repo, progress)
    if repo is not None:  # git's refusals (old not an ancestor of new, a failed bisect command) are GitErrors
        run = driver.GitBisection(repo, old, new, ev, folder, verify_ends=not args.trust_ends,
                                  keep_worktree=args.keep_worktree)
    else:
        run = driver.ListBisection(names, old, new, ev, verify_ends=not args.trust_ends)
    result = run.run()
    result.folder = folder
    result.extra = {"repro": spec.name, "mode": "fix" if args.fix else "regression", "source": source,
                    "good": args.good, "bad": args.bad, "policy": policy.__dict__}
    driver.write_report(result)
    return result


def cmd_bisect(args: argparse.Namespace) -> int:
    console = _console()
    try:
        result = bisect(args, progress=_progress_printer(console))
    except ValueError as e:
        raise SpecError(str(e)) from None
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.report_text(), end="")
    console.print(f"{result.headline()} · {result.folder}")
    return ExitCode.OK if result.found else ExitCode.UNMET


# --- bisect-step ----------------------------------------------------------------------------------------


def _step_candidate(args: argparse.Namespace) -> tuple[str, Path | None]:
    """(candidate, repo or None): a prebuilt kernel name, or a commit id."""
    if args.kernel:
        return args.kernel, None
    here = Path.cwd()
    repo = _git_source(args.kernel_source) if args.kernel_source else git.main_worktree(here)
    if args.rev:
        return git.rev_parse(repo, args.rev), repo
    for where in (here, repo):  # git bisect run: BISECT_HEAD (--no-checkout) or HEAD, in the bisecting tree
        with contextlib.suppress(GitError):
            return git.rev_parse(where, "BISECT_HEAD"), repo
    return git.rev_parse(here if git.is_repo(here) else repo, "HEAD"), repo


def _step_folder(args: argparse.Namespace, spec_name: str) -> Path:
    return Path(args.folder) if args.folder else results_dir() / f"bisect-steps-{spec_name}"


def bisect_step(args: argparse.Namespace, *, step: driver.StepFn | None = None, progress=None) -> driver.StepRecord:
    spec = specs.load(args.reproducer)
    candidate, repo = _step_candidate(args)
    folder = _step_folder(args, spec.name)
    inputs = Inputs.from_args(args, spec, repo)
    options = inputs.options(args, folder)
    log = driver.StepLog(folder, driver.setup_digest(inputs.setup(spec, options)), reuse_skips=args.reuse_skips)
    step = step or inputs.step(spec, options, progress)
    ev = _evaluator(step, _policy(args, spec), log, driver.Terms.for_mode(args.fix), repo, progress)
    return ev.evaluate(candidate)


def cmd_bisect_step(args: argparse.Namespace) -> int:
    """Every error exits GIT_ABORT: `git bisect run` would take the harness's usual codes for "bad"."""
    console = _console()
    try:
        rec = bisect_step(args, progress=_progress_printer(console))
    except HarnessError as exc:  # GitError included
        print(f"harness: error: {exc.one_line()}", file=sys.stderr)
        return GIT_ABORT
    except KeyboardInterrupt:
        return GIT_ABORT
    code = driver.Terms.for_mode(args.fix).exit_code(rec.verdict)
    if args.json:
        print(json.dumps(rec.to_dict()))
    console.print(f"{rec.label}: {rec.verdict} -> {rec.term} (exit {code}) · {rec.hits}/{rec.ok} hits · "
                  f"{rec.reason} · {_step_folder(args, args.reproducer) / driver.STEPS_FILE}")
    return code


# --- parsers -----------------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("reproducer", help="name in reproducers/ (or a folder)")
    p.add_argument("--kernel-source", metavar="git:PATH", help="bisect commits of this repository (built per step)")
    p.add_argument("--fix", action="store_true",
                   help="find the first commit/kernel that no longer reproduces (terms broken/fixed)")
    add_run_options(p, results=False, runs_help="runs per step (default: the spec's)")
    p.add_argument("--min-hits", type=positive, help="hits that make a step reproduce (default: the spec's min_hits)")
    p.add_argument("--min-ok", type=at_least(0),
                   help="successful runs a clean verdict needs when runs fail (default: half of --runs)")
    p.add_argument("--confidence", type=fraction(), default=0.95,
                   help="a clean step stops early once P(seen | bug there) reaches this (default 0.95)")
    p.add_argument("--rate", type=fraction(closed=True),
                   help="hit rate to assume before any step reproduced (e.g. with --trust-ends)")
    p.add_argument("--max-fail", type=positive, default=2,
                   help="failed runs (boot/infra) before a step is judged (default 2)")
    p.add_argument("--variant", help="a variant of the spec: its kconfig fragments, patches and boot options")
    p.add_argument("--kconfig", action="append", help="kconfig fragments (comma-separated; default lean,filesystems)")
    p.add_argument("--folder", help="bisection folder: its steps.jsonl is reused to resume")
    p.add_argument("--reuse-skips", action="store_true",
                   help="on resume, reuse skipped steps too (default: test them again: skips are often transient)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``bisect`` and ``bisect-step``."""
    b = sub.add_parser("bisect", help="find the commit or kernel where a reproducer starts (or, --fix, stops) reproducing",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(b)
    b.add_argument("--good", required=True, help="old end: a revision (with --kernel-source) or a kernel name")
    b.add_argument("--bad", required=True, help="new end: a revision (with --kernel-source) or a kernel name")
    b.add_argument("--trust-ends", action="store_true", help="do not test the two ends first")
    b.add_argument("--keep-worktree", action="store_true", help="keep the bisection's git worktree afterwards")
    b.set_defaults(func=cmd_bisect, interrupted_hint=RESUME_HINT)

    s = sub.add_parser("bisect-step", help="judge one commit for `git bisect run` (exit 0 old, 1 new, 125 skip)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(s)
    s.add_argument("--rev", help="commit to judge (default: BISECT_HEAD, else HEAD, of the current directory)")
    s.add_argument("-k", "--kernel", help="judge this prebuilt kernel instead of a commit")
    s.set_defaults(func=cmd_bisect_step, interrupted_hint=RESUME_HINT)
    abort_on_usage_error(s, GIT_ABORT)
