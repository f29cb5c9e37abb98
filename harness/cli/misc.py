"""``harness kernels``, ``report``, ``vmcore``, ``setup``, ``image`` and ``accel``: one-shot commands over the library."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import images, kernels, report, setup
from harness.cli.options import ACCELS, accel_for
from harness.cli.output import progress
from harness.errors import ExitCode
from harness.fstests import fetch
from harness.options import RunOptions


def cmd_kernels(args: argparse.Namespace) -> int:
    offered = {kind: kernels.SOURCES.select(kind).available() for kind in kernels.SOURCES.names()}
    if args.json:
        print(json.dumps(offered))
        return ExitCode.OK
    for kind, names in offered.items():
        print(f"# {kind}: {kernels.SOURCES.select(kind).help}")
        for name in names:
            print(name)
    return ExitCode.OK


def cmd_report(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.is_dir():
        return _report_run_folder(args, path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        args.usage_error(f"{path}: cannot read: {exc.strerror} (give the path of a console log)")  # exit 2
    reports = report.parse(text)
    symbolized = None
    if reports and args.kernel:
        symbolized = _symbolized(reports[0].text, text.decode("utf-8", "replace"), args)
    if args.json:
        data = report.summary(reports)
        if symbolized is not None:
            data |= {"symbolized": symbolized.text, "symbols_note": symbolized.note}
        print(json.dumps(data))
    elif not reports:
        print("no crash")
    else:
        first = reports[0]
        print(f"{first.title}\t{first.type}{'  (corrupted)' if first.corrupted else ''}")
        if symbolized is not None:
            print(symbolized.for_file(), end="")
    return ExitCode.OK


def _symbolized(report_text: str, console: str, args: argparse.Namespace) -> report.Symbolized:
    """The report with file:line from ``--kernel``'s debug info (fetched now if need be), or bare and why."""
    if args.no_symbols:
        return report.Symbolized(report_text, "--no-symbols")
    kernel = kernels.resolve(args.kernel, progress=progress)
    if why := report.kernel_mismatch(console, kernel):
        return report.Symbolized(report_text, why)
    return report.symbolize_kernel(report_text, kernel, fetch=True, progress=progress)


def _report_run_folder(args: argparse.Namespace, folder: Path) -> int:
    """``harness report RUN-FOLDER``: every run's report.txt symbolized (debug info fetched now)."""
    result = folder / "result.json"
    if not result.is_file() or not any(folder.glob("run-*/report.txt")):
        args.usage_error(f"{folder}: no result.json and run-*/report.txt (give a run folder of `harness repro`)")
    kernel = kernels.resolve(args.kernel or json.loads(result.read_text())["kernel"]["name"], progress=progress)
    for path, note in report.symbolize_run(folder, kernel, no_symbols=args.no_symbols, progress=progress):
        print(f"{path}{': ' + note if note else ''}")
    return ExitCode.OK


def cmd_vmcore(args: argparse.Namespace) -> int:
    """``harness vmcore RUN``: the core a --vmcore run left, opened with drgn: the crashed task and its stack."""
    from harness.report import vmcore  # drgn is loaded only by this command

    core = vmcore.find_core(args.folder)
    kernel = kernels.resolve(args.kernel or vmcore.kernel_name(core), progress=progress)
    console_log = core.with_name("console.log")
    console = console_log.read_text(errors="replace") if console_log.exists() else ""
    files, note = vmcore.debug_files(kernel, console, progress=progress)
    print(f"vmcore: {core} ({core.stat().st_size / 2**20:.1f} MiB) of {kernel.name}")
    print(f"debug info: {', '.join(p.name for p in files)}{f' ({note})' if note else ''}")
    prog = vmcore.open_core(core, files)
    task = vmcore.crashed(prog, vmcore.console_frames(console))
    print(f"crashed task: {task.comm} (pid {task.pid}{f', CPU {task.cpu}' if task.cpu is not None else ''}): "
          f"{task.how}")
    print(task.trace)
    for expression in args.eval or ():
        print(f">>> {expression}")
        print(vmcore.evaluate(prog, expression, task.task))
    return ExitCode.OK


def cmd_setup(args: argparse.Namespace) -> int:
    if args.fstests is not None:  # first: the tree needs no root, the packages may
        got = fetch.fetch(args.fstests, progress=progress)
        print(f"fstests {got.revision[:19]} ({got.ref or 'HEAD'} of {got.source}){' (cached)' if got.reused else ''}: "
              f"{got.path}; `harness fstests` uses it unless --fstests or $HARNESS_FSTESTS names another")
    installed = setup.ensure(build=args.build, install=not args.check, test=args.test, fstests=args.fstests is not None)
    print(f"installed: {' '.join(installed)}" if installed else "host prerequisites present")
    return ExitCode.OK


def cmd_image(args: argparse.Namespace) -> int:
    print(images.build(images.load_recipe(args.recipe), progress=progress))
    return ExitCode.OK


def cmd_accel(args: argparse.Namespace) -> int:
    kernel = kernels.resolve(args.kernel, progress=progress)
    accel = accel_for(RunOptions(accel=args.accel), kernel)
    print(f"{accel.name}\t{accel.reason}")
    return ExitCode.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("kernels", help="list the kernels the configured sources offer")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_kernels)

    rep = sub.add_parser("report", help="parse a console log: first crash title and type (with --kernel, the "
                         "report symbolized); a run folder: its report.txt files symbolized")
    rep.add_argument("file", help="a console log, or a run folder of `harness repro`")
    rep.add_argument("--json", action="store_true")
    rep.add_argument("--kernel", metavar="NAME", help="the kernel that printed the log (debian:6.1.0-57, a build): "
                     "its debug info (a Debian image's -dbg package, fetched once) gives frames file:line")
    rep.add_argument("--no-symbols", action="store_true", help="print the report bare")
    rep.set_defaults(func=cmd_report, usage_error=rep.error)

    vc = sub.add_parser("vmcore", help="open the guest memory a --vmcore run wrote (drgn): the task that hit the "
                        "report, its stack with file:line, and --eval expressions")
    vc.add_argument("folder", type=Path, help="a run folder (run-NN) or its results folder (the first core in it)")
    vc.add_argument("--kernel", metavar="NAME", help="the kernel that ran (default: the one result.json names)")
    vc.add_argument("--eval", action="append", metavar="EXPR",
                    help="a Python expression over prog, task and drgn's Linux helpers, printed (repeatable), e.g. "
                         "'task.mm.exe_file.f_path.dentry.d_name.name'")
    vc.set_defaults(func=cmd_vmcore)

    s = sub.add_parser("setup", help="install missing host packages (apt, as root)")
    s.add_argument("--build", action="store_true", help="also what kernel builds need")
    s.add_argument("--check", action="store_true", help="only check; fail with the command to run")
    s.add_argument("--test", action="store_true", help="also what the test suite needs (chromium)")
    s.add_argument("--fstests", nargs="?", const=fetch.DEFAULT, metavar="URL[@REF]|PATH",
                   help="also fetch fstests into the cache for `harness fstests` (a git URL at a tag, branch or commit, "
                        f"a checkout, a folder or a tarball; default {fetch.DEFAULT}) and its build packages")
    s.set_defaults(func=cmd_setup)

    i = sub.add_parser("image", help="build (or find cached) an image from a recipe; print its path")
    i.add_argument("recipe")
    i.set_defaults(func=cmd_image)

    a = sub.add_parser("accel", help="say which accelerator a kernel would run with")
    a.add_argument("kernel")
    a.add_argument("--accel", default="auto", choices=ACCELS)
    a.set_defaults(func=cmd_accel)
