"""``harness repro`` (run a reproducer on its kernels or one) and ``harness patches`` (its variants' stacks)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import kernels, report
from harness.cli.options import accel_for, add_run_options, run_options
from harness.cli.output import console, progress
from harness.errors import ExitCode, HarnessError, KernelError, UnknownName
from harness.kernels.recipe import Recipe, load_ops
from harness.repro import adhoc
from harness.repro import spec as specs
from harness.repro.run import RunResult, Summary, build_error, run_repro
from harness.verdict import Outcome


def _recipes(args: argparse.Namespace, spec: specs.Spec) -> list[tuple[str, Recipe | None]]:
    """(label, build recipe or None: a kernel by name) for each kernel this invocation runs on.

    ``--patch`` stacks go on top of each kernel the run would otherwise
    build: ``--base SOURCE`` (default fragments), the ``--variant``s, every
    variant of the spec, or the spec's kernel when that is a source.
    """
    ops = load_ops(args.patch)
    if args.kernel:
        if ops:
            args.usage_error("--patch needs a kernel to build: give --variant V or --base SOURCE, not --kernel")
        return [(args.kernel, None)]
    if args.base:
        bases = [spec.recipe(base=args.base)]
    elif args.variant:
        bases = [spec.variant(v).recipe() for v in args.variant]
    elif spec.variants:
        bases = [v.recipe() for v in spec.variants]
    elif ops:
        bases = [spec.recipe()]  # the spec's kernel, when it is a source (a prebuilt one: said so)
    else:
        return [(spec.kernel, None)]
    return [(r.name, r) for r in (b.patched(ops) for b in bases)]


def _print_run(r: RunResult) -> None:
    v = r.verdict
    bits = [f"run {r.index}: [bold]{v.outcome.value}[/bold]"]
    if v.title:
        bits.append(v.title)
    if v.time_to_hit is not None:
        bits.append(f"hit after {v.time_to_hit:.2f} s")
    if v.detail:
        bits.append(v.detail)
    bits.append(f"{r.wall_seconds:.0f} s wall")
    console.print(" · ".join(bits))


def exit_code(summary: Summary) -> ExitCode:
    """A reproducer run's exit code: the expectation met or not, or why it could not be judged."""
    if summary.hits == 0 and summary.verdict is Outcome.BOOT_FAILURE:
        return ExitCode.BOOT
    if summary.hits == 0 and summary.verdict is Outcome.INFRA_ERROR:
        return ExitCode.INFRA
    if summary.verdict is Outcome.BUILD_ERROR:
        return ExitCode.KERNEL
    return ExitCode.UNMET if summary.met is False else ExitCode.OK


def _report(args: argparse.Namespace, summary: Summary, kernel_name: str, accel: str) -> None:
    line = (
        f"{summary.verdict.value}: {summary.title or '-'} · {summary.hits}/{len(summary.runs)} hits"
        f" · {kernel_name} · {accel} · {summary.folder}"
    )
    if args.json:
        print(json.dumps({**summary.to_dict(), "folder": str(summary.folder)}))
        console.print(line)
    else:
        print(line)


def _run_on(args: argparse.Namespace, spec: specs.Spec, label: str, target: Recipe | None
            ) -> tuple[ExitCode, Summary | None]:
    """One kernel: build it (a variant, a base, patched or not) or fetch it by name, pick the accelerator,
    run, report; the exit code and the summary (None: the kernel did not build)."""
    options = run_options(args, cmdline=target.cmdline if target is not None else ())
    if target is not None:
        console.print(f"[bold]{spec.name}[/bold] on {target.name}: {target.describe()}")
        try:
            kernel = target.build(progress=progress)
        except KernelError as exc:  # a patch that does not apply, a failed build: a result
            summary = build_error(spec, label, exc, options.results)
            _report(args, summary, label, "-")
            return exit_code(summary), None
    else:
        kernel = kernels.resolve(label, progress=progress)
    accel = accel_for(options, kernel)
    console.print(f"[bold]{spec.name}[/bold] on {kernel.name} ({kernel.release}, {kernel.version}), "
                  f"accel {accel.name}: {accel.reason}")
    summary = run_repro(spec, kernel, options, accel=accel, progress=progress, on_run=_print_run)
    _symbolize(args, summary, kernel)  # after every run's own verdict line, before the summary line (the last)
    _report(args, summary, kernel.name, accel.name)
    return exit_code(summary), summary


def _symbolize(args: argparse.Namespace, summary: Summary, kernel) -> None:
    """After the runs' verdict lines (which never wait for debug info): their report.txt files with file:line,
    fetching a Debian kernel's -dbg package on first need; a failure leaves them bare and says why."""
    if getattr(args, "no_symbols", False) or not any(summary.folder.glob("run-*/report.txt")):
        return
    try:
        for path, note in report.symbolize_run(summary.folder, kernel, progress=progress):
            console.print(f"symbolized {path.relative_to(summary.folder)}" + (f" ({note})" if note else ""))
    except HarnessError as exc:  # the verdict stands; the reports stay as the run wrote them
        console.print(f"report.txt left without file:line: {exc.one_line()}")


def _spec(args: argparse.Namespace) -> specs.Spec:
    """The reproducer: a spec by name or folder, or a C file as it was published (no spec: harness.repro.adhoc)."""
    path = Path(args.reproducer)
    if path.suffix == ".c":
        if not path.is_file():
            raise UnknownName(f"{path}: no such C file (give the path of the reproducer, or a name in reproducers/)")
        return adhoc.spec_for_file(path, expect_titles=tuple(args.expect or ()), fs=args.fs, timeout=args.timeout,
                                   kernel=args.kernel)
    if args.expect or args.fs:
        args.usage_error("--expect and --fs are for a bare C file; a spec says its titles and image itself")
    return specs.load(args.reproducer)


def cmd_repro(args: argparse.Namespace) -> int:
    spec = _spec(args)
    codes = [_run_on(args, spec, label, target)[0] for label, target in _recipes(args, spec)]
    return max(codes, key=lambda c: (c != 0, c)) if codes else ExitCode.OK


def cmd_patches(args: argparse.Namespace) -> int:
    """Print each variant's patch stack."""
    spec = specs.load(args.reproducer)
    for name in args.variant or [v.name for v in spec.variants]:
        v = spec.variant(name)
        print(f"{v.kernel_name}  kconfig={'+'.join(v.kconfig)}")
        for line in v.describe():
            print(f"  {line}")
    return ExitCode.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("repro", help="run a reproducer on a kernel")
    r.add_argument("reproducer", help="name in reproducers/, a folder, or a C file as it was published (a syzkaller "
                                      "reproducer is recognised and given syzkaller's environment)")
    which = r.add_mutually_exclusive_group()
    which.add_argument("-k", "--kernel", help="kernel name, e.g. debian:6.1.0-47, or any name `harness kernel list` "
                                              "shows (default: the spec's variants or kernel)")
    which.add_argument("--variant", action="append", help="a variant of the spec (repeatable; default: all of them)")
    which.add_argument("--base", metavar="SOURCE", help="build this kernel source with the default fragments "
                                                        "(debian-src:6.1.192, git:PATH@REV, dir:PATH)")
    r.add_argument("-p", "--patch", action="append", default=[], metavar="P",
                   help="apply P on top of the kernel's stack: a patch file, a series file, an mbox, or revert:P; "
                        "repeatable, in order")
    r.add_argument("--expect", action="append", metavar="TITLE", help="with a C file: a crash title that counts as "
                   "the hit (repeatable; none: any crash report counts, and the verdict says so)")
    r.add_argument("--fs", choices=("ext4", "ext2", "xfs", "none"), help="with a C file: the harness image's "
                   "filesystem (default: none for a syzkaller reproducer, which brings its own; ext4 otherwise)")
    add_run_options(r)
    r.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    r.add_argument("--no-symbols", action="store_true",
                   help="leave report.txt as the run wrote it (no debug info fetched after the verdict)")
    r.set_defaults(func=cmd_repro, usage_error=r.error)

    pa = sub.add_parser("patches", help="print the patch stack of a reproducer's variants")
    pa.add_argument("reproducer")
    pa.add_argument("--variant", action="append")
    pa.set_defaults(func=cmd_patches)
