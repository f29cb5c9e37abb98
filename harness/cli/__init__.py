"""Command line: ``harness COMMAND ...``.  Every argparse declaration of the harness lives in this package.

Exit codes are ``harness.errors.ExitCode`` (README "Verdicts and exit
codes"): 0 the runs met the expectation (or there is none), 1 they contradict
it, 2 usage, 3 bad spec/recipe/YAML, 4 unknown name, 5 missing host tool,
6 kernel fetch/build failed, 7 INFRA_ERROR, 8 BOOT_FAILURE, 12 no space left,
130 interrupted (Ctrl-C or SIGTERM; what was recorded stays in the run folder).

A command group is one module of this package with ``add_parsers(sub)``: it
adds its subcommands to ``sub`` and gives each a ``func`` (args -> exit
code), and optionally an ``interrupted_hint``; list the module in
``COMMANDS``.  A ``func`` raises ``HarnessError`` for a fault and lets
KeyboardInterrupt through: ``dispatch`` turns both into one line on stderr
and an exit code.  Run options shared by several commands come from
``options.add_run_options`` / ``options.run_options``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from harness.cli import bisect, fstests, kernel, matrix, mcp, misc, new, prove, repro, results
from harness.cli.options import Parser
from harness.errors import ExitCode, HarnessError
from harness.matrix.pool import sigterm_as_interrupt

COMMANDS: tuple[ModuleType, ...] = (repro, prove, new, fstests, misc, kernel, matrix, results, bisect, mcp)


def build_parser(prog: str = "harness", commands: Sequence[ModuleType] = COMMANDS) -> argparse.ArgumentParser:
    p = Parser(prog=prog, description="Reproduce filesystem races on real kernels.")
    p.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    sub = p.add_subparsers(dest="command", required=True)
    for module in commands:
        module.add_parsers(sub)
    return p


def main(argv: list[str] | None = None, *, prog: str = "harness", commands: Sequence[ModuleType] = COMMANDS) -> int:
    """``harness`` (and, with ``commands=(bisect,)``, ``python -m harness.bisect``)."""
    return dispatch(build_parser(prog, commands).parse_args(argv))


def dispatch(args: argparse.Namespace) -> int:
    """Run ``args.func``: a HarnessError is one line and its exit code; Ctrl-C or SIGTERM is 130."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        with sigterm_as_interrupt():  # same path as Ctrl-C: the guest is killed, the run recorded
            return int(args.func(args))
    except HarnessError as exc:
        print(f"harness: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        where = getattr(args, "interrupted_hint", "results so far are in the run folder")
        print(f"harness: interrupted; {where}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print(f"harness: error: {exc.filename or 'a disk'}: no space left on device "
              "(free some: `harness kernel evict --max-size SIZE`, old results folders)", file=sys.stderr)
        return ExitCode.NO_SPACE
