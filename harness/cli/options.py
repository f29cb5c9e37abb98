"""The run options every driver shares (repro, matrix, bisect; prove and fstests next), declared once.

``add_run_options(parser)`` declares --accel, --backend, -n/--runs,
--results, --fresh-compile, --host-compile and --timeout; ``run_options(args)``
turns them into one ``harness.options.RunOptions``; ``accel_for`` answers
the accelerator for one kernel.  Numbers are checked here, at the command
line (``positive``, ``at_least``, ``fraction``): ``-n 0`` is a usage error
(exit 2), not a run.  ``Parser`` makes every usage error one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from harness.errors import ExitCode
from harness.guest.accel import accel_for  # noqa: F401 (the commands' one way to it)
from harness.guest.backends import usages as backend_usages
from harness.options import RunOptions

ACCELS = ("auto", "kvm", "tcg")
DEFAULTS = RunOptions()


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (what was wrong and where the help is), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, not {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive = at_least(1)


def fraction(*, closed: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a number in (0, 1), or in (0, 1] when ``closed``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, not {text!r}") from None
        if not (0 < value <= 1 if closed else 0 < value < 1):
            raise argparse.ArgumentTypeError(f"must be above 0 and {'at most' if closed else 'below'} 1, not {value}")
        return value

    parse.__name__ = "fraction"
    return parse


def backend_help() -> str:
    return "where the runs happen; " + "; ".join(backend_usages())


def add_run_options(
    parser: argparse.ArgumentParser,
    *,
    runs: bool = True,
    results: bool = True,
    timeout: bool = True,
    host_compile: bool = True,
    runs_help: str = "number of runs (default: the spec's)",
) -> None:
    """Declare the shared run options on ``parser`` (a command leaves out what it has no use for)."""
    parser.add_argument("--accel", default="auto", choices=ACCELS,
                        help="auto probes KVM once per host boot and kernel, and falls back to TCG")
    parser.add_argument("--backend", default="auto", help=backend_help())
    if runs:
        parser.add_argument("-n", "--runs", type=positive, help=runs_help)
    if results:
        parser.add_argument("--results", type=Path, help="results root (default ./results or $HARNESS_RESULTS)")
    parser.add_argument("--fresh-compile", action="store_true",
                        help="compile in every guest (default: reuse a binary compiled in an earlier guest)")
    if host_compile:
        parser.add_argument("--host-compile", action="store_true",
                            help="compile the reproducer on the host, with the gcc and headers a vng guest uses")
    if timeout:
        parser.add_argument("--timeout", type=positive, metavar="SECONDS",
                            help="the reproducer's own limit in the guest (default: the spec's timeout:)")
    parser.add_argument("--fstests", metavar="PATH", help="the fstests tree for fstests runs (a checkout or a "
                        "tarball; default $HARNESS_FSTESTS)")
    parser.add_argument("--vmcore", action="store_true",
                        help="at a run's first crash report, write the guest's memory into its run folder (vmcore, "
                             "opened by `harness vmcore RUN` or drgn; snapshot backend; off by default: it costs "
                             "seconds and tens of MiB a crashed run)")
    left_out = {"runs": runs, "results": results, "host_compile": host_compile, "timeout": timeout}
    parser.set_defaults(**{dest: getattr(DEFAULTS, dest) for dest, declared in left_out.items() if not declared})


def run_options(args: argparse.Namespace, **changes) -> RunOptions:
    """The RunOptions the command line asked for (an option the command left out: its default), with ``changes``."""
    options = RunOptions(accel=args.accel, backend=args.backend, runs=args.runs, results=args.results,
                         fresh_compile=args.fresh_compile, host_compile=args.host_compile, timeout=args.timeout,
                         suite=args.fstests, vmcore=args.vmcore)
    return options.with_(**changes) if changes else options


def abort_on_usage_error(parser: argparse.ArgumentParser, code: int) -> None:
    """Make ``parser`` exit ``code`` on a usage error, unknown options included (for `git bisect run`,
    whose exit-code conventions take argparse's 2 for "bad")."""

    def error(message: str) -> NoReturn:
        print(f"{parser.prog}: error: {message} (see `{parser.prog} --help`)", file=sys.stderr)
        sys.exit(code)

    parser.error = error  # type: ignore[method-assign]
    parse_known = parser.parse_known_args

    def strict(args=None, namespace=None):  # unknown options would reach the main parser, which exits 2
        ns, extras = parse_known(args, namespace)
        if extras:
            error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras

    parser.parse_known_args = strict  # type: ignore[method-assign]
