"""Command line: thin subcommands over library functions.

Exit codes:
  0  done; the runs met the spec's expectation for this kernel (or it has none)
  1  the runs contradict the expectation (a must-reproduce kernel stayed clean,
     or a must-stay-clean kernel crashed / lost data)
  2  usage error
  3  bad spec, recipe or YAML
  4  unknown name (reproducer, kernel, recipe, backend)
  5  a host tool or package is missing
  6  a kernel could not be fetched or built
  7  the guest could not be started, or a harness step failed in the guest
     (INFRA_ERROR, e.g. no gcc in the guest)
  8  the kernel did not boot (BOOT_FAILURE)
  130 interrupted (Ctrl-C); what was recorded so far stays in the run folder
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from harness import kernels
from harness.errors import HarnessError, KernelError, UnknownName
from harness.matrix import ci as export
from harness.matrix.run import exit_code, run_matrix, summary_line
from harness.matrix.spec import DEFAULT_SPEC, load_matrix
from harness.options import Accel, RunOptions
from harness.results.db import History, db_path

console = Console(stderr=True, highlight=False, soft_wrap=True)  # one line stays one line in logs

EXIT_OK, EXIT_UNMET, EXIT_USAGE, EXIT_INFRA, EXIT_BOOT, EXIT_INTERRUPTED = 0, 1, 2, 7, 8, 130


def _progress(msg: str) -> None:
    console.print(f"[dim]… {msg}[/dim]")


# --- repro ------------------------------------------------------------------------------


def _targets(args: argparse.Namespace, spec) -> list[tuple[str, object]]:
    """(label, variant or None) for each kernel this invocation runs on."""
    if args.kernel:
        return [(args.kernel, None)]
    if args.variant:
        return [(spec.variant(v).kernel_name, spec.variant(v)) for v in args.variant]
    if spec.variants:
        return [(v.kernel_name, v) for v in spec.variants]
    return [(spec.kernel, None)]


def _print_run(r) -> None:
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


def _exit_code(summary) -> int:
    from harness.verdict import Outcome

    if summary.hits == 0 and summary.verdict is Outcome.BOOT_FAILURE:
        return EXIT_BOOT
    if summary.hits == 0 and summary.verdict is Outcome.INFRA_ERROR:
        return EXIT_INFRA
    if summary.verdict is Outcome.BUILD_ERROR:
        return KernelError.exit_code
    return EXIT_UNMET if summary.met is False else EXIT_OK


def cmd_repro(args: argparse.Namespace) -> int:
    from harness.guest.vng import choose_accel
    from harness.repro import spec as specs
    from harness.repro.run import build_error, build_variant, run_repro

    spec = specs.load(args.reproducer)
    targets = _targets(args, spec)
    codes = []
    for label, variant in targets:
        if variant is not None:
            console.print(f"[bold]{spec.name}[/bold] variant {variant.name}: {variant.source} · "
                          f"{' · '.join(variant.describe())} · kconfig {'+'.join(variant.kconfig)}")
            try:
                kernel = build_variant(variant, progress=_progress)
            except KernelError as exc:  # a patch that does not apply, a failed build: a result
                summary = build_error(spec, label, exc, Path(args.results) if args.results else None)
                _report(args, summary, label, "-")
                codes.append(_exit_code(summary))
                continue
        else:
            kernel = kernels.resolve(label, progress=_progress)
        if args.backend.partition(":")[0] == "ssh":
            accel, why = "-", f"not used: {args.backend} runs on the target's own kernel"
        else:
            accel, why = choose_accel(args.accel, kernel)
        console.print(f"[bold]{spec.name}[/bold] on {kernel.name} ({kernel.release}, {kernel.version}), accel {accel}: {why}")
        options = RunOptions(accel=args.accel, backend=args.backend, runs=args.runs,
                             results=Path(args.results) if args.results else None, fresh_compile=args.fresh_compile,
                             cmdline=variant.cmdline if variant is not None else ())
        summary = run_repro(spec, kernel, options, accel=Accel(accel, why), progress=_progress, on_run=_print_run)
        _report(args, summary, kernel.name, accel)
        codes.append(_exit_code(summary))
    return max(codes, key=lambda c: (c != 0, c)) if codes else EXIT_OK


def _report(args: argparse.Namespace, summary, kernel_name: str, accel: str) -> None:
    data = {**summary.to_dict(), "folder": str(summary.folder)}
    line = (
        f"{summary.verdict.value}: {summary.title or '-'} · {summary.hits}/{len(summary.runs)} hits"
        f" · {kernel_name} · {accel} · {summary.folder}"
    )
    if args.json:
        print(json.dumps(data))
        console.print(line)
    else:
        print(line)


def cmd_patches(args: argparse.Namespace) -> int:
    """Print each variant's patch stack, and the diff between two variants' stacks."""
    from harness.repro import spec as specs

    spec = specs.load(args.reproducer)
    names = args.variant or [v.name for v in spec.variants]
    for name in names:
        v = spec.variant(name)
        print(f"{v.kernel_name}  kconfig={'+'.join(v.kconfig)}")
        for line in v.describe():
            print(f"  {line}")
    return EXIT_OK


# --- other commands -------------------------------------------------------------------------


def cmd_kernels(args: argparse.Namespace) -> int:
    for kind in kernels.SOURCES.names():
        source = kernels.SOURCES.select(kind)
        names = source.available()
        if args.json:
            continue
        print(f"# {kind}: {source.help}")
        for name in names:
            print(name)
    if args.json:
        print(json.dumps({k: kernels.SOURCES.select(k).available() for k in kernels.SOURCES.names()}))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from harness import report

    path = Path(args.file)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read: {exc.strerror}") from None
    reports = report.parse(text)
    if args.json:
        print(json.dumps(report.summary(reports)))
    elif not reports:
        print("no crash")
    else:
        first = reports[0]
        print(f"{first.title}\t{first.type}{'  (corrupted)' if first.corrupted else ''}")
    return EXIT_OK


def cmd_setup(args: argparse.Namespace) -> int:
    from harness import setup

    installed = setup.ensure(build=args.build, install=not args.check, test=args.test)
    print(f"installed: {' '.join(installed)}" if installed else "host prerequisites present")
    return EXIT_OK


def cmd_image(args: argparse.Namespace) -> int:
    from harness import images

    recipe = images.load_recipe(args.recipe)
    print(images.build(recipe, progress=_progress))
    return EXIT_OK


def cmd_accel(args: argparse.Namespace) -> int:
    from harness.guest.vng import choose_accel

    kernel = kernels.resolve(args.kernel, progress=_progress)
    accel, why = choose_accel(args.accel, kernel)
    print(f"{accel}\t{why}")
    return EXIT_OK


# --- matrix and results ----------------------------------------------------------------------------------------


def cmd_matrix_run(args: argparse.Namespace) -> int:
    options = RunOptions(accel=args.accel, backend=args.backend, runs=args.runs,
                         results=Path(args.results) if args.results else None, fresh_compile=args.fresh_compile)
    index = run_matrix(args.spec, options, only=args.only, jobs=args.jobs, resume=args.resume)
    print(summary_line(index))
    return exit_code(index)


def cmd_matrix_export(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.spec)
    spec = args.spec or "matrix.yaml"
    text = export.gitlab(matrix.cells, spec) if args.gitlab else export.github_actions(matrix.cells, spec)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"{len(matrix.cells)} cells -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_matrix_merge(args: argparse.Namespace) -> int:
    index = export.merge([Path(d) for d in args.dirs], results_root=Path(args.results) if args.results else None,
                         spec=args.spec)
    print(summary_line(index))
    return exit_code(index)


def _history(args: argparse.Namespace) -> History:
    path = db_path(Path(args.results) if args.results else None)
    if not path.exists():
        raise UnknownName(f"no matrix history at {path} (run `harness matrix run` first, or pass --results ROOT)")
    return History(path)


def _emit(args: argparse.Namespace, rows: list, columns: Callable[[Any], Sequence[Any]]) -> int:
    if args.json:
        print(json.dumps([vars(r) for r in rows], default=str))
    for r in rows if not args.json else ():
        print("\t".join("-" if v is None else str(v) for v in columns(r)))
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    h = _history(args)
    if args.results_command == "list":
        return _emit(args, h.recent(args.limit),
                     lambda r: (r.id, r.time, r.status, f"{r.cells} cells", f"{r.met} met", f"{r.unmet} not met",
                                f"{r.errors} errors", r.folder))
    if args.results_command == "flaky":
        return _emit(args, h.flaky(),
                     lambda r: (r.cell, " / ".join(r.verdicts), f"{r.rows} runs", f"{r.partial} partial"))
    if args.results_command == "history":
        rows = h.cells(args.cell) if args.all else h.changes(args.cell)
        if args.all and not rows:
            h.changes(args.cell)  # raises the "Unknown cell" error
        return _emit(args, rows, lambda r: (r.time, r.matrix, r.verdict, f"{r.hits}/{r.runs}", r.title, r.folder))
    return _emit(args, h.compare(args.a, args.b), lambda r: (r.cell, f"{r.before or '(absent)'} -> {r.after or '(absent)'}"))


def matrix_parsers(sub: argparse._SubParsersAction) -> None:
    """``harness matrix run|export|merge`` and ``harness results list|flaky|history|compare``."""
    m = sub.add_parser("matrix", help="run kernels × reproducers; export it to a CI engine; merge its cells")
    msub = m.add_subparsers(dest="matrix_command", required=True)

    r = msub.add_parser("run", help="run the matrix (bounded parallel guests); resumable")
    r.add_argument("spec", nargs="?", help=f"matrix file (default {DEFAULT_SPEC.name} in the project)")
    r.add_argument("--only", action="append", default=[], metavar="KERNEL:REPRO",
                   help="only these cells (globs over KERNEL:REPRO, a kernel or a reproducer); repeatable")
    r.add_argument("-j", "--jobs", type=int, help="guests at a time (default and cap: host CPUs/2 and free memory)")
    r.add_argument("-n", "--runs", type=int, help="runs per cell (default: matrix.yaml's, else the spec's)")
    r.add_argument("--results", help="results root (default ./results or $HARNESS_RESULTS)")
    r.add_argument("--resume", metavar="FOLDER", help="a matrix folder: run only its unfinished cells")
    r.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    r.add_argument("--backend", default="vng")
    r.add_argument("--fresh-compile", action="store_true", help="compile the reproducer in every guest")
    r.set_defaults(func=cmd_matrix_run)

    e = msub.add_parser("export", help="write the matrix as a CI engine's parallel job definition")
    e.add_argument("spec", nargs="?", help="matrix file (default matrix.yaml)")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--github-actions", action="store_true", help="a GitHub Actions workflow (strategy.matrix)")
    which.add_argument("--gitlab", action="store_true", help="a GitLab CI pipeline (parallel: matrix:)")
    e.add_argument("-o", "--output", help="write here instead of stdout")
    e.set_defaults(func=cmd_matrix_export)

    g = msub.add_parser("merge", help="merge cell folders (CI artifacts) into one matrix folder")
    g.add_argument("dirs", nargs="+", metavar="DIR", help="folders holding cell folders (searched recursively)")
    g.add_argument("--spec", help="matrix file: its cells without a folder show as missing")
    g.add_argument("--results", help="results root for the merged folder and the DB")
    g.set_defaults(func=cmd_matrix_merge)

    res = sub.add_parser("results", help="matrix history: recent runs, flaky cells, changes, comparisons")
    rsub = res.add_subparsers(dest="results_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--results", help="results root holding history.sqlite3")
    common.add_argument("--json", action="store_true")
    lst = rsub.add_parser("list", parents=[common], help="recent matrix runs")
    lst.add_argument("-n", "--limit", type=int, default=20)
    rsub.add_parser("flaky", parents=[common], help="cells whose verdict differs across runs, or 0 < hits < runs")
    hist = rsub.add_parser("history", parents=[common], help="when a cell's verdict changed")
    hist.add_argument("cell", metavar="KERNEL:REPRO")
    hist.add_argument("--all", action="store_true", help="every run of the cell, not only the changes")
    cmp_ = rsub.add_parser("compare", parents=[common], help="cells whose verdict differs between two matrix runs")
    cmp_.add_argument("a", help="matrix run id (or unique prefix, latest, previous)")
    cmp_.add_argument("b")
    res.set_defaults(func=cmd_results)


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description="Reproduce filesystem races on real kernels.")
    p.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("repro", help="run a reproducer on a kernel")
    r.add_argument("reproducer", help="name in reproducers/ (or a folder)")
    r.add_argument("-k", "--kernel", help="kernel name, e.g. debian:6.1.0-47 (default: the spec's variants or kernel)")
    r.add_argument("--variant", action="append", help="a variant of the spec (repeatable; default: all of them)")
    r.add_argument("-n", "--runs", type=int, help="number of runs (default: the spec's)")
    r.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"), help="auto probes KVM once")
    r.add_argument("--backend", default="vng", help="vng: one boot per run; vng-ssh[:N]: one long-lived guest, runs over SSH, "
                   "rebooted after an oops/new taint/hang/lost connection, with N guests (default 2) booting ahead "
                   "once a run has needed a reboot; snapshot: one boot, every run restored from the saved post-boot guest "
                   "(needs virtio-net: Debian kernels); ssh:NAME[:DISK]: a machine in targets.yaml")
    r.add_argument("--results", help="results root (default ./results or $HARNESS_RESULTS)")
    r.add_argument("--fresh-compile", action="store_true",
                   help="compile in every guest (default: reuse a binary compiled in an earlier guest)")
    r.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    r.set_defaults(func=cmd_repro)

    pa = sub.add_parser("patches", help="print the patch stack of a reproducer's variants")
    pa.add_argument("reproducer")
    pa.add_argument("--variant", action="append")
    pa.set_defaults(func=cmd_patches)

    k = sub.add_parser("kernels", help="list the kernels the configured sources offer")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_kernels)

    rep = sub.add_parser("report", help="parse a console log: first crash title and type")
    rep.add_argument("file")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=cmd_report)

    s = sub.add_parser("setup", help="install missing host packages (apt, as root)")
    s.add_argument("--build", action="store_true", help="also what kernel builds need")
    s.add_argument("--check", action="store_true", help="only check; fail with the command to run")
    s.add_argument("--test", action="store_true", help="also what the test suite needs (chromium)")
    s.set_defaults(func=cmd_setup)

    i = sub.add_parser("image", help="build (or find cached) an image from a recipe; print its path")
    i.add_argument("recipe")
    i.set_defaults(func=cmd_image)

    a = sub.add_parser("accel", help="say which accelerator a kernel would run with")
    a.add_argument("kernel")
    a.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    a.set_defaults(func=cmd_accel)

    from harness.bisect import add_parsers as bisect_parsers
    from harness.kernels.cli import add_parsers as kernel_parsers

    kernel_parsers(sub)

    matrix_parsers(sub)
    bisect_parsers(sub)
    return p


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # same path as Ctrl-C: kill the guest, record, exit 130


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        return _dispatch(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"harness: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        where = getattr(args, "interrupted_hint", "results so far are in the run folder")
        print(f"harness: interrupted; {where}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
