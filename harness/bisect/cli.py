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
import json
import sys
import time
from pathlib import Path

from harness.bisect import driver
from harness.bisect.judge import Policy
from harness.errors import HarnessError, SpecError, UnknownName

GIT_ABORT = 128  # git bisect run: > 127 aborts the bisection
EXIT_NOT_FOUND = 1
RESUME_HINT = "finished steps are in the folder's steps.jsonl (run again to resume)"


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)  # one line stays one line in logs


def _progress_printer(console):
    def progress(msg: str) -> None:
        if msg.startswith("step ") or msg.startswith("  "):
            console.print(msg)
        else:
            console.print(f"[dim]… {msg}[/dim]")

    return progress


# --- shared setup ----------------------------------------------------------------------------------


def _policy(args, spec) -> Policy:
    return Policy(
        runs=args.runs or spec.runs,
        min_hits=args.min_hits or spec.expect.min_hits,
        min_ok=args.min_ok,
        target=args.confidence,
        max_fail=args.max_fail,
        prior_rate=args.rate,
    )


def _build_inputs(args, spec) -> tuple[tuple[str, ...], tuple, tuple[str, ...]]:
    """(kconfig fragments, patch ops, extra boot options) for source builds."""
    from harness.kernels.build import DEFAULT_FRAGMENTS

    patches: tuple = ()
    cmdline: tuple[str, ...] = ()
    fragments: tuple[str, ...] = DEFAULT_FRAGMENTS
    if args.variant:
        from harness.kernels.patches import PatchOp

        v = spec.variant(args.variant)
        fragments, cmdline = v.kconfig, v.cmdline
        patches = tuple(PatchOp(p, rev) for p, rev in v.patches)
    elif spec.variants:
        fragments, cmdline = spec.variants[0].kconfig, spec.variants[0].cmdline
    if args.kconfig:
        fragments = tuple(f for item in args.kconfig for f in item.split(",") if f)
    return fragments, patches, cmdline


def _git_source(value: str) -> Path:
    if not value.startswith("git:"):
        raise SpecError(f"--kernel-source {value!r}: bisecting needs a git: source (git:/path/to/linux)")
    from harness.kernels.sources import GitSource

    repo, _ = GitSource.split(value.removeprefix("git:"))
    if not (repo / ".git").exists() and driver.git(repo, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise UnknownName(f"--kernel-source {value}: {repo} is not a git repository")
    return driver.main_worktree(repo)


def _prebuilt_list(good: str, bad: str) -> list[str]:
    from harness import kernels

    kind = kernels.split_name(good)[0]
    if kernels.split_name(bad)[0] != kind:
        raise SpecError(f"--good {good} and --bad {bad} are kernels of different kinds")
    source = kernels.SOURCES.select(kind)
    if hasattr(source, "checkout"):
        raise SpecError(f"{kind}: kernels are built from source: bisect them with --kernel-source git:PATH and revisions")
    names = source.available()
    from harness.kernels.debian import version_key

    names = sorted(names, key=version_key)
    missing = [n for n in (good, bad) if n not in names]
    if missing:
        raise UnknownName(f"{', '.join(missing)} not in the {kind} kernels on offer: {', '.join(names) or '(none)'}",
                          hint="`harness kernels` lists them")
    return names


def _default_folder(spec_name: str, fix: bool) -> Path:
    from harness.paths import results_dir

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return results_dir() / f"bisect-{stamp}-{spec_name}{'-fix' if fix else ''}"


def _options(args, folder: Path, cmdline: tuple[str, ...], progress):
    from harness.bisect.steps import RunOptions

    return RunOptions(accel=args.accel, backend=args.backend, compile_cache=not args.fresh_compile, cmdline=cmdline,
                      results_root=folder / "runs", progress=progress)


# --- bisect ------------------------------------------------------------------------------------------


def bisect(args: argparse.Namespace, *, step: driver.StepFn | None = None, progress=None) -> driver.BisectResult:
    """The library entry point behind ``harness bisect`` (``step`` replaces the real one in tests)."""
    from harness.bisect import steps as real
    from harness.repro import spec as specs

    spec = specs.load(args.reproducer)
    policy = _policy(args, spec)
    terms = driver.Terms.for_mode(args.fix)
    folder = Path(args.folder) if args.folder else _default_folder(spec.name, args.fix)
    progress = progress or (lambda m: None)
    if args.kernel_source:
        repo = _git_source(args.kernel_source)
        fragments, patches, cmdline = _build_inputs(args, spec)
        setup = real.setup_for(spec, kind="git", fragments=fragments, patches=patches, cmdline=cmdline)
        old, new = driver.rev_parse(repo, args.good), driver.rev_parse(repo, args.bad)
        source = f"git:{repo}"
    else:
        names = _prebuilt_list(args.good, args.bad)
        fragments, patches, cmdline = (), (), ()
        setup = real.setup_for(spec, kind="prebuilt")
        old, new, source = args.good, args.bad, args.good.split(":")[0]
    digest = driver.setup_digest(setup)
    driver.open_folder(folder, {
        "repro": spec.name, "mode": "fix" if args.fix else "regression", "old": old, "new": new, "source": source,
        "setup": digest, "setup_inputs": setup, "policy": policy.__dict__, "terms": terms.__dict__,
        "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    log = driver.StepLog(folder, digest, reuse_skips=args.reuse_skips)
    if log.matching():
        progress(f"resuming: {len(log.matching())} finished steps in {log.path}")
    options = _options(args, folder, cmdline, progress)
    if args.kernel_source:
        step = step or real.GitBuildStep(spec, repo, options, fragments=fragments, patches=patches)

        def describe(sha: str) -> dict:
            return driver.commit_info(repo, sha)

        def label(sha: str) -> str:
            info = driver.commit_info(repo, sha)
            return f"{sha[:12]} {info.get('subject', '')}".strip()

        ev = driver.Evaluator(step, policy, log, terms, describe=describe, label=label, progress=progress)
        run = driver.GitBisection(repo, old, new, ev, folder, verify_ends=not args.trust_ends,
                                  keep_worktree=args.keep_worktree)
    else:
        step = step or real.PrebuiltStep(spec, options)
        ev = driver.Evaluator(step, policy, log, terms, progress=progress)
        run = driver.ListBisection(names, old, new, ev, verify_ends=not args.trust_ends)
    try:
        result = run.run()
    except driver.GitError as e:
        raise HarnessError(str(e)) from None
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
    return 0 if result.found else EXIT_NOT_FOUND


# --- bisect-step ----------------------------------------------------------------------------------------


def _step_candidate(args) -> tuple[str, Path | None]:
    """(candidate, repo or None): a prebuilt kernel name, or a commit id."""
    if args.kernel:
        return args.kernel, None
    here = Path.cwd()
    if args.kernel_source:
        repo = _git_source(args.kernel_source)
    else:
        repo = driver.main_worktree(here)
    if args.rev:
        return driver.rev_parse(repo, args.rev), repo
    for where in (here, repo):  # git bisect run: BISECT_HEAD (--no-checkout) or HEAD, in the bisecting tree
        done = driver.git(where, "rev-parse", "--verify", "--quiet", "BISECT_HEAD^{commit}", check=False)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip(), repo
    inside = driver.git(here, "rev-parse", "--git-dir", check=False).returncode == 0
    return driver.rev_parse(here if inside else repo, "HEAD"), repo


def _step_folder(args, spec_name: str) -> Path:
    from harness.paths import results_dir

    return Path(args.folder) if args.folder else results_dir() / f"bisect-steps-{spec_name}"


def bisect_step(args: argparse.Namespace, *, step: driver.StepFn | None = None, progress=None) -> driver.StepRecord:
    from harness.bisect import steps as real
    from harness.repro import spec as specs

    spec = specs.load(args.reproducer)
    policy = _policy(args, spec)
    terms = driver.Terms.for_mode(args.fix)
    candidate, repo = _step_candidate(args)
    folder = _step_folder(args, spec.name)
    if repo is not None:
        fragments, patches, cmdline = _build_inputs(args, spec)
        setup = real.setup_for(spec, kind="git", fragments=fragments, patches=patches, cmdline=cmdline)
    else:
        fragments, patches, cmdline = (), (), ()
        setup = real.setup_for(spec, kind="prebuilt")
    log = driver.StepLog(folder, driver.setup_digest(setup), reuse_skips=args.reuse_skips)
    options = _options(args, folder, cmdline, progress)
    if repo is not None:
        step = step or real.GitBuildStep(spec, repo, options, fragments=fragments, patches=patches)
        info = driver.commit_info(repo, candidate)
        ev = driver.Evaluator(step, policy, log, terms, describe=lambda c: info,
                              label=lambda c: f"{c[:12]} {info.get('subject', '')}".strip(), progress=progress)
    else:
        step = step or real.PrebuiltStep(spec, options)
        ev = driver.Evaluator(step, policy, log, terms, progress=progress)
    return ev.evaluate(candidate)


def cmd_bisect_step(args: argparse.Namespace) -> int:
    console = _console()
    try:
        rec = bisect_step(args, progress=_progress_printer(console))
    except HarnessError as exc:
        print(f"harness: error: {exc.one_line()}", file=sys.stderr)
        return GIT_ABORT
    except driver.GitError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
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
    p.add_argument("-n", "--runs", type=int, help="runs per step (default: the spec's)")
    p.add_argument("--min-hits", type=int, help="hits that make a step reproduce (default: the spec's min_hits)")
    p.add_argument("--min-ok", type=int,
                   help="successful runs a clean verdict needs when runs fail (default: half of --runs)")
    p.add_argument("--confidence", type=float, default=0.95,
                   help="a clean step stops early once P(seen | bug there) reaches this (default 0.95)")
    p.add_argument("--rate", type=float, help="hit rate to assume before any step reproduced (e.g. with --trust-ends)")
    p.add_argument("--max-fail", type=int, default=2, help="failed runs (boot/infra) before a step is judged (default 2)")
    p.add_argument("--variant", help="a variant of the spec: its kconfig fragments, patches and boot options")
    p.add_argument("--kconfig", action="append", help="kconfig fragments (comma-separated; default lean,filesystems)")
    p.add_argument("--folder", help="bisection folder: its steps.jsonl is reused to resume")
    p.add_argument("--reuse-skips", action="store_true",
                   help="on resume, reuse skipped steps too (default: test them again: skips are often transient)")
    p.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    p.add_argument("--backend", default="vng")
    p.add_argument("--fresh-compile", action="store_true", help="compile the reproducer in every guest")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def _abort_on_usage_error(parser: argparse.ArgumentParser) -> None:
    """argparse exits 2 on a usage error: git bisect run would take that for "bad"."""

    def error(message: str):
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        sys.exit(GIT_ABORT)

    parser.error = error  # type: ignore[method-assign]
    parse_known = parser.parse_known_args

    def strict(args=None, namespace=None):  # unknown options would reach the main parser: exit 2 too
        ns, extras = parse_known(args, namespace)
        if extras:
            error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras

    parser.parse_known_args = strict  # type: ignore[method-assign]


def add_parsers(sub) -> None:
    """Add ``bisect`` and ``bisect-step`` to the CLI's subparsers."""
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
    _abort_on_usage_error(s)


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.bisect bisect|bisect-step ...``: the same commands without the main CLI."""
    parser = argparse.ArgumentParser(prog="python -m harness.bisect")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    from harness.cli import _dispatch

    return _dispatch(parser.parse_args(argv))  # the same error, interrupt and logging handling as `harness`
