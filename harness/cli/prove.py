"""``harness prove``: a fix proven (or refuted) on a base kernel and the same kernel patched.

    harness prove REPRO --patch FIX [--patch FIX]... [--variant V | --base SOURCE]
                  [--confidence 0.95] [--fraction 0.1] [--max-runs N] [--budget MIN] [--json]
    harness prove --resume FOLDER [--max-runs N] [--budget MIN]
    harness prove REPRO --patch FIX ... --plan --shards N      # the base check and a plan of N shards
    harness prove --shard I/N --from-check FOLDER              # one shard's fixed trials (any machine)
    harness prove --merge FOLDER...                            # the plan and its shards: one proof

Builds the base (the spec's variant, or SOURCE with the default fragments)
and the base with the fixes applied after its stack (incremental), opens a
run session on each, and lets ``harness.prove`` run them: the base check
first, then patched runs interleaved with base runs until the stopping rule
settles it.  Prints one line per run, then the table, the statement, a block
for a mailing-list reply and the folders (``--json``: one object).  Exit
codes: 0 FIXED, 1 NOT_FIXED or TRADED, 9 BASE_CLEAN, 11 INCONCLUSIVE.

Every run is in the proof folder's ``proof.jsonl`` before the next starts:
after Ctrl-C or a kill, ``--resume FOLDER`` rebuilds both kernels from the
recipe logged there (cache hits) and goes on.

A proof over N machines (``harness.prove.shards``): ``--plan --shards N``
runs the base check and writes ``plan.json`` (fixed trial counts, split in N);
each ``--shard I/N --from-check FOLDER`` runs its share into its own proof
folder (exit 0 when its trials are done); ``--merge`` applies the rule once
to the union and prints the one proof, a missing or failed shard named.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

from harness import prove
from harness.cli.options import add_run_options, at_least, fraction, run_options
from harness.cli.output import console, progress
from harness.errors import ExitCode, KernelError, SpecError
from harness.kernels.recipe import Recipe, absolute, load_ops
from harness.options import RunOptions
from harness.paths import results_dir
from harness.prove import BASE, PATCHED, Policy, ProofResult, shards, trials
from harness.prove.record import (
    ProofKernel,
    default_jobs,
    patch_label,
    plan_proof,
    plan_text,
    proof_info,
    proof_record,
    resumed_kernels,
    run_proof,
    write_record,
)
from harness.repro import spec as specs
from harness.results import new_run_folder

OPTION_KEYS = ("accel", "backend", "timeout", "fresh_compile", "host_compile")


def _positive(text: str, unit: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of {unit}, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {value:g}")
    return value


def minutes(text: str) -> float:
    """An argparse ``type``: a positive number of minutes."""
    return _positive(text, "minutes")


minutes.__name__ = "minutes"


def trial_length(text: str) -> str | float:
    """An argparse ``type``: ``auto``, ``full`` or a positive number of seconds."""
    return text if text in prove.driver.TRIAL_MODES else _positive(text, "seconds (or auto, full)")


trial_length.__name__ = "trial length"


# --- kernels ----------------------------------------------------------------------------------------


def _built(side: str, target: Recipe) -> ProofKernel:
    """One side built (cache hits print nothing more); its accelerator is probed after the NO_CHANGE check."""
    console.print(f"[bold]{side}[/bold]: {target.name} · {target.describe()}")
    try:
        kernel = target.build(progress=progress)
    except KernelError as exc:  # the failing hunk or the compiler's errors, then the one-line error
        for attr in ("hunk", "errors"):
            value = getattr(exc, attr, None)
            if value:
                console.print(value if isinstance(value, str) else "\n".join(value), markup=False)
        raise
    return ProofKernel(target, kernel)


# --- output -----------------------------------------------------------------------------------------


def _session_folders(result: ProofResult) -> dict[str, list[str]]:
    """Each side's run-session folders (their parents' of the run folders), in order."""
    out = {}
    for side in (BASE, PATCHED):
        folders = [str(Path(f).parent) for f in result.proof.tallies[side].folders]
        out[side] = list(dict.fromkeys(folders))
    return out


def _print(result: ProofResult, seconds: float) -> None:
    block = prove.mail_block(result)
    rule = "-" * 72
    print(prove.table(result), end="\n\n")
    print(prove.statement(result), end="\n\n")
    print(f"{rule}\n{block}\n{rule}\n")
    print(f"proof:   {result.folder}  (proof.jsonl, result.json)")
    for side, folders in _session_folders(result).items():
        for folder in folders or ["-"]:
            print(f"{side + ':':<8} {folder}")
    print(f"{result.verdict.value}: {result.reason} · {seconds / 60:.1f} min · exit {int(result.exit_code)}")


def _finish(args: argparse.Namespace, result: ProofResult, label: str, seconds: float,
            extra: dict | None = None) -> int:
    record = proof_record(result, label=label, wall_seconds=seconds)
    shard = shards.shard_of(result.info)
    code = result.exit_code
    if shard is not None:
        extra = {**(extra or {}), "shard": shards.shard_status(result, shard)}
        code = ExitCode.OK if extra["shard"]["complete"] and result.verdict is prove.ProofVerdict.INCONCLUSIVE else code
    write_record(result.folder, {**record, "argv": result.info.context.get("argv"), **(extra or {})})
    if args.json:
        print(json.dumps({**prove.to_json(result), "wall_seconds": round(seconds, 1),
                          "folders": _session_folders(result)}))
        console.print(f"{result.verdict.value}: {result.reason} · {result.folder}")
    elif shard is not None and result.verdict is prove.ProofVerdict.INCONCLUSIVE:  # a shard alone settles nothing
        print(prove.table(result), end="\n\n")
        print(f"shard:   {result.folder}  (proof.jsonl, result.json)")
        print(f"{result.reason} · {seconds / 60:.1f} min · exit {int(code)}")
        print(f"merge:   harness prove --merge {shard['check']} SHARD_FOLDER...")
    else:
        _print(result, seconds)
    return code


def _on_run(msg: str) -> None:
    console.print(msg, markup=False)


def _run(args: argparse.Namespace, spec: specs.Spec, pair: tuple[ProofKernel, ProofKernel], options: RunOptions,
         folder: Path, info: prove.ProofInfo | None) -> int:
    args.interrupted_hint = (f"every finished run is in {folder}/{prove.LOG_FILE}; "
                             f"continue with `harness prove --resume {folder}`")
    console.print(f"[bold]proof[/bold] {folder}")
    label = f"{pair[0].kernel.name} + {patch_label((info or prove.read_info(folder)).patches)}"
    started = time.monotonic()
    shard = shards.shard_of(info or prove.read_info(folder))
    fresh = info is not None and shard is None and not args.shards  # a shard's and a sharded plan's check: their own
    planned = plan_text(spec, pair[0].kernel, info, options.results) if fresh else None
    if planned:
        console.print(planned, markup=False)
        if args.plan:  # the recorded base check answers it: nothing to run
            print(planned.split("\n", 1)[1], end="\n\n")
            print("planned from the recorded history; the proof itself: the same command without --plan")
            with contextlib.suppress(OSError):
                folder.rmdir()  # nothing was run in it
            return int(ExitCode.OK)
    if args.plan and info is not None:
        result, rows, sharded = plan_proof(spec, *pair, options, folder, info, progress=progress, on_run=_on_run,
                                           shard_count=args.shards)
        if result is None:
            return _print_plan(args, rows, folder, time.monotonic() - started, sharded)
    else:
        jobs = 1 if shard is not None else (args.jobs or default_jobs(spec))
        if jobs > 1:
            console.print(f"{jobs} guests at once (--jobs)")
        result = run_proof(spec, *pair, options, folder, info=info, max_runs=args.max_runs, budget=args.budget,
                           progress=progress, on_run=_on_run, jobs=jobs)
    return _finish(args, result, label, time.monotonic() - started)


def _print_plan(args: argparse.Namespace, rows: list[dict], folder: Path, seconds: float,
                sharded: shards.ShardPlan | None = None) -> int:
    """The plan (``--plan``): expected runs and minutes per setting; the proof goes on with ``--resume``
    (``--shards N``: the shards' fixed counts, and the commands that run and merge them)."""
    if args.json:
        print(json.dumps({"plan": rows, "folder": str(folder), "wall_seconds": round(seconds, 1),
                          **({"shards": sharded.to_dict()} if sharded else {})}))
    elif sharded is not None:
        print(sharded.describe(), end="\n\n")
        for i in range(1, sharded.of + 1):
            print(f"harness prove --shard {i}/{sharded.of} --from-check {folder}")
        print(f"harness prove --merge {folder} SHARD_FOLDER...   (or the folder that holds them all)")
    else:
        print(trials.plan_text(rows), end="\n\n")
        print(f"planned from the base check in {seconds / 60:.1f} min; the proof goes on with "
              f"`harness prove --resume {folder}`")
    return int(ExitCode.OK)


# --- a new proof, a resumed one ---------------------------------------------------------------------------


def _policy(args: argparse.Namespace) -> Policy:
    given = {k: v for k, v in (("confidence", args.confidence), ("fraction", args.fraction),
                               ("max_runs", args.max_runs), ("budget", args.budget), ("trial", args.trial))
             if v is not None}
    if args.shards and not args.plan:
        args.usage_error("--shards N splits a plan: give it with --plan (then run each --shard I/N --from-check)")
    try:
        return Policy(**given)
    except ValueError as exc:
        args.usage_error(str(exc))
        raise  # usage_error exits


def _options(args: argparse.Namespace, logged: dict | None = None) -> RunOptions:
    """The run options: the command line's, else (a resume) the logged ones, else the defaults."""
    logged = logged or {}
    options = run_options(args)
    chosen = {k: getattr(options, k) if getattr(options, k) not in (None, False) else logged.get(k)
              for k in OPTION_KEYS}
    chosen["backend"] = chosen["backend"] or "auto"  # snapshot where the kernel and the spec allow it
    chosen["accel"] = chosen["accel"] or "auto"
    return options.with_(**{k: v for k, v in chosen.items() if v is not None})


def _new(args: argparse.Namespace) -> int:
    if not args.reproducer or not args.patch:
        args.usage_error("give the reproducer and the fix: harness prove REPRO --patch FIX (or --resume FOLDER)")
    policy = _policy(args)
    spec = specs.load(args.reproducer)
    ops = load_ops(args.patch)
    base = spec.recipe(variant=args.variant, base=args.base)
    patched = base.patched(ops)
    options = _options(args)
    pair = _built(BASE, base), _built(PATCHED, patched)
    context = {
        "argv": ["harness", *sys.argv[1:]],
        "reproducer": args.reproducer,
        "spec_folder": str(spec.folder),
        "variant": args.variant,
        "base": args.base,
        "patches": [absolute(p) for p in args.patch],
        "options": {k: getattr(options, k) for k in OPTION_KEYS},
    }
    info = proof_info(spec, *pair, ops, policy, context)
    folder = new_run_folder(f"prove-{spec.name}", patched.name, options.results)
    return _run(args, spec, pair, options, folder, info)


def _resume(args: argparse.Namespace) -> int:
    extra = [flag for flag, value in (("REPRO", args.reproducer), ("--patch", args.patch), ("--variant", args.variant),
                                      ("--base", args.base), ("--confidence", args.confidence),
                                      ("--fraction", args.fraction), ("--trial", args.trial), ("--plan", args.plan))
             if value]
    if extra:
        args.usage_error(f"--resume continues the logged proof with its own reproducer, patches, kernel and rule: "
                         f"drop {', '.join(extra)}")
    folder = args.resume.resolve()
    info = prove.read_info(folder)
    if info.context.get(shards.MERGED_KEY):
        raise SpecError(f"{folder} is a merged proof: resume the shard that did not finish (--resume SHARD_FOLDER, "
                        "or run it again with --shard I/N --from-check), then merge again")
    ctx = info.context
    spec = specs.load(ctx.get("spec_folder") or info.reproducer)
    if spec.name != info.reproducer:
        raise SpecError(f"{folder}: the proof is of {info.reproducer}, but {ctx.get('spec_folder')} holds {spec.name}")
    options = _options(args, ctx.get("options")).with_(results=folder)
    pair = resumed_kernels(info, spec, _built)
    return _run(args, spec, pair, options, folder, None)


def _check_only(args: argparse.Namespace, what: str, allowed: tuple[str, ...] = ()) -> None:
    """A usage error for the options ``what`` (--shard, --merge) takes from the plan."""
    flags = (("REPRO", args.reproducer), ("--patch", args.patch), ("--variant", args.variant), ("--base", args.base),
             ("--confidence", args.confidence), ("--fraction", args.fraction), ("--trial", args.trial),
             ("--plan", args.plan), ("--shards", args.shards), ("--resume", args.resume), ("--jobs", args.jobs),
             ("--max-runs", args.max_runs), ("--budget", args.budget), ("--shard", args.shard),
             ("--from-check", args.from_check))
    extra = [flag for flag, value in flags if value and flag not in allowed]
    if extra:
        args.usage_error(f"{what} takes the reproducer, patches, kernels and rule from the plan: drop {', '.join(extra)}")


def _shard(args: argparse.Namespace) -> int:
    """``--shard I/N --from-check FOLDER``: one shard's fixed trials, in a new proof folder."""
    _check_only(args, "--shard", ("--shard", "--from-check", "--budget"))
    if not args.from_check:
        args.usage_error("--shard I/N needs --from-check FOLDER (the folder `--plan --shards N` wrote plan.json in)")
    m = re.fullmatch(r"(\d+)/(\d+)", args.shard)
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        args.usage_error(f"--shard {args.shard}: expected I/N with 1 <= I <= N (e.g. 1/2)")
    check = args.from_check.resolve()
    if (check / shards.PLAN).exists():
        plan = shards.read_plan(check)
    else:  # a folder holding the check's (a CI job's artifact: out/JOB/)
        plan, check = shards.find_plan([check])
    index, of = int(m[1]), int(m[2])
    if of != plan.of:
        raise SpecError(f"the plan in {check} has {plan.of} shards, not {of}: give --shard I/{plan.of}")
    info = prove.read_info(check)
    spec = specs.load(info.context.get("spec_folder") or info.reproducer)
    pair = resumed_kernels(info, spec, _built)
    options = _options(args, info.context.get("options"))
    root = options.results or results_dir()
    folder = new_run_folder(f"prove-{spec.name}", f"{pair[1].kernel.name}-shard{index}of{of}", root)
    info = shards.shard_info(replace(info, policy=replace(info.policy, budget=args.budget)), plan, index, check)
    info = replace(info, context={**info.context, "argv": ["harness", *sys.argv[1:]]})
    console.print(f"shard {index}/{of} of plan {plan.id}: {plan.quota(index)[0]} base + "
                  f"{plan.quota(index)[1]} patched trials")
    return _run(args, spec, pair, options.with_(results=folder), folder, info)


def _merge(args: argparse.Namespace) -> int:
    """``--merge FOLDER...``: the plan and its shards into one proof (the rule once, on the union)."""
    _check_only(args, "--merge")
    started = time.monotonic()
    result, plan, parts = shards.merge(args.merge, args.results)
    console.print(f"[bold]merged[/bold] plan {plan.id}: " + "; ".join(
        f"shard {p.label}: {p.failure or 'its trials counted'}" for p in parts))
    label = f"{result.info.base.name} + {patch_label(result.info.patches)}"
    return _finish(args, result, label, time.monotonic() - started, shards.merged_fields(plan, parts))


def cmd_prove(args: argparse.Namespace) -> int:
    if args.merge:
        return _merge(args)
    if args.shard:
        return _shard(args)
    if args.from_check:
        args.usage_error("--from-check FOLDER goes with --shard I/N")
    return _resume(args) if args.resume else _new(args)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prove", help="prove (or refute) a fix: the base kernel against the base patched, with a "
                                     "statistical statement")
    p.add_argument("reproducer", nargs="?", help="name in reproducers/ (or a folder)")
    p.add_argument("-p", "--patch", action="append", default=[], metavar="FIX",
                   help="the fix: a patch file, a series file, an mbox (b4 am), or revert:P; repeatable, in order")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--variant", help="patch this variant of the spec (its stack, kconfig and boot options)")
    which.add_argument("--base", metavar="SOURCE",
                       help="patch this kernel source with the default fragments: debian-src:6.1.192, git:PATH@REV, dir:PATH")
    p.add_argument("--confidence", type=fraction(), help="how sure FIXED must be (default 0.95)")
    p.add_argument("--fraction", type=fraction(closed=True),
                   help="FIXED rules out a patched rate >= this fraction of the base's (default 0.1)")
    p.add_argument("--max-runs", type=at_least(2), metavar="N", help="runs in all, both kernels (default 200)")
    p.add_argument("--budget", type=minutes, metavar="MIN", help="wall-clock minutes for this invocation")
    p.add_argument("--trial", type=trial_length, metavar="auto|full|SECONDS",
                   help="how long each run races after the base check: auto (the default) picks the length with the "
                        "least expected time to FIXED from the base check's times to hit; full races the spec's whole "
                        "race (race:) every run; SECONDS fixes it")
    p.add_argument("--jobs", type=at_least(1), metavar="N",
                   help="guests at once, across both kernels (default: what the host's cores and memory allow, at "
                        "least 1); the verdict is the one the runs would give one at a time")
    p.add_argument("--plan", action="store_true",
                   help="build both kernels, run the base check, print the expected runs and minutes at this and "
                        "looser settings, and stop (--resume FOLDER goes on with the proof)")
    p.add_argument("--resume", type=Path, metavar="FOLDER", help="continue the proof logged in FOLDER")
    p.add_argument("--shards", type=at_least(1), metavar="N",
                   help="with --plan: also plan a proof split over N machines (fixed trial counts per shard, "
                        "written to plan.json in the check's folder)")
    p.add_argument("--shard", metavar="I/N", help="run shard I of the plan's N (with --from-check FOLDER)")
    p.add_argument("--from-check", type=Path, metavar="FOLDER",
                   help="the check's folder holding plan.json (or a folder holding that one, e.g. a CI artifact)")
    p.add_argument("--merge", type=Path, nargs="+", metavar="FOLDER",
                   help="merge the plan and its shards found under these folders into one proof")
    add_run_options(p, runs=False)
    p.set_defaults(backend=None, accel=None)  # a resume keeps the logged ones unless given; a new proof: auto
    p.add_argument("--json", action="store_true", help="print the proof as one JSON object on stdout")
    p.set_defaults(func=cmd_prove, usage_error=p.error,
                   interrupted_hint="every finished run is in the proof folder; continue with `harness prove --resume FOLDER`")
