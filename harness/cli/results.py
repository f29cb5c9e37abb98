"""``harness results list|flaky|history|compare``: the matrix history (``history.sqlite3``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.cli.options import positive
from harness.errors import ExitCode, UnknownName
from harness.results.db import History, db_path


def _history(args: argparse.Namespace) -> History:
    path = db_path(args.results)
    if not path.exists():
        raise UnknownName(f"no matrix history at {path} (run `harness matrix run` first, or pass --results ROOT)")
    return History(path)


def _emit(args: argparse.Namespace, rows: list, columns: Callable[[Any], Sequence[Any]]) -> int:
    if args.json:
        print(json.dumps([vars(r) for r in rows], default=str))
    else:
        for r in rows:
            print("\t".join("-" if v is None else str(v) for v in columns(r)))
    return ExitCode.OK


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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    res = sub.add_parser("results", help="matrix history: recent runs, flaky cells, changes, comparisons")
    rsub = res.add_subparsers(dest="results_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--results", type=Path, help="results root holding history.sqlite3")
    common.add_argument("--json", action="store_true")
    lst = rsub.add_parser("list", parents=[common], help="recent matrix runs")
    lst.add_argument("-n", "--limit", type=positive, default=20)
    rsub.add_parser("flaky", parents=[common], help="cells whose verdict differs across runs, or 0 < hits < runs")
    hist = rsub.add_parser("history", parents=[common], help="when a cell's verdict changed")
    hist.add_argument("cell", metavar="KERNEL:REPRO")
    hist.add_argument("--all", action="store_true", help="every run of the cell, not only the changes")
    cmp_ = rsub.add_parser("compare", parents=[common], help="cells whose verdict differs between two matrix runs")
    cmp_.add_argument("a", help="matrix run id (or unique prefix, latest, previous)")
    cmp_.add_argument("b")
    res.set_defaults(func=cmd_results)
