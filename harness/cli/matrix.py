"""``harness matrix run|export|merge``: kernels × reproducers, here or on a CI engine."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from harness.cli.options import add_run_options, positive, run_options
from harness.errors import ExitCode, SpecError
from harness.matrix import ci, shards
from harness.matrix.plan import Plan, plan
from harness.matrix.run import exit_code, resolve_kernel, run_cell, run_matrix, summary_line
from harness.matrix.spec import DEFAULT_SPEC, Matrix, load_matrix
from harness.paths import PROJECT_ROOT, results_dir
from harness.results.db import History, db_path


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _shard(args: argparse.Namespace, matrix: Matrix) -> tuple[int, int, tuple[str, ...]] | None:
    """``--shard I/N --tests A,B``: which shard of the one ``--only`` cell this job runs."""
    if args.shard is None:
        if args.tests:
            raise SpecError("--tests names a shard's tests: give --shard I/N with it")
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", args.shard)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise SpecError(f"--shard {args.shard}: expected I/N with 1 <= I <= N (e.g. 1/2)")
    cells = matrix.select(args.only)
    if len(cells) != 1 or matrix.specs[cells[0].repro].fstests is None:
        raise SpecError("--shard runs a share of one fstests cell: give --only KERNEL:REPRO naming one")
    tests = tuple(t for t in (args.tests or "").split(",") if t)
    if not tests:
        raise SpecError("--shard needs --tests A,B,... (the shard's tests, as the exported pipeline gives them)")
    return int(m.group(1)), int(m.group(2)), tests


def cmd_matrix_run(args: argparse.Namespace) -> int:
    options = run_options(args)
    resolver, runner = resolve_kernel, run_cell
    if args.kernels or args.shard or args.tests:
        matrix = load_matrix(args.spec).with_cells_named(args.only)
        shard = _shard(args, matrix)
        if shard:
            cell = matrix.select(args.only)[0]
            results = Path(options.results) if options.results else results_dir()
            ci.write_marker(results, cell, *shard)
            runner = ci.shard_runner(cell.id, shard[2])
            _say(f"{cell.id}: shard {shard[0]}/{shard[1]}, {len(shard[2])} tests")
        if args.kernels:
            resolver = ci.prebuilt_resolver(plan(matrix, _spec_arg(args.spec), cells=matrix.select(args.only)),
                                            Path(args.kernels), _say)
    index = run_matrix(args.spec, options, only=args.only, jobs=args.jobs, resume=args.resume,
                       resolver=resolver, runner=runner)
    print(summary_line(index))
    return exit_code(index)


def _spec_arg(spec: str | None) -> str:
    """The matrix file as a CI job's checkout names it (relative to the project when it is inside)."""
    path = Path(spec or DEFAULT_SPEC).resolve()
    for root in (PROJECT_ROOT, Path.cwd()):  # the checkout, else where the export runs (a job's checkout too)
        if path.is_relative_to(root):
            return os.path.relpath(path, root)
    return str(path)


def export_plan(matrix: Matrix, spec: str, history: History | None) -> Plan:
    """The pipeline of ``matrix``: its sharded cells' tests split by what ``history`` measured."""
    split = {}
    for cell in matrix.cells:
        if cell.shards > 1 and not cell.prove:  # a proof's shards are planned by its base check job
            measured = shards.measured_seconds(history, cell.id) if history else {}
            split[cell.id] = shards.split(shards.cell_tests(matrix.specs[cell.repro]), measured, cell.shards)
    return plan(matrix, spec, shards=split)


def cmd_matrix_export(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.spec)
    spec = _spec_arg(args.spec)
    history_file = Path(args.history) if args.history else db_path()
    if args.history and not history_file.is_file():
        raise SpecError(f"--history {args.history}: no such file (a results root's history.sqlite3)")
    p = export_plan(matrix, spec, History(history_file) if history_file.is_file() else None)
    engine = ci.Engine(runs_on=tuple(args.runs_on or ("ubuntu-latest",)), kvm=not args.no_kvm, tags=tuple(args.tag))
    _say(p.describe().rstrip("\n"))
    text = ci.gitlab(p, engine) if args.gitlab else ci.github_actions(p, engine)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        _say(f"{len(p.kernels) + len(p.cells) + 1} jobs -> {args.output}")
    else:
        sys.stdout.write(text)
    return ExitCode.OK


def cmd_matrix_merge(args: argparse.Namespace) -> int:
    index = ci.merge([Path(d) for d in args.dirs], results_root=args.results, spec=args.spec)
    print(summary_line(index))
    return exit_code(index)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("matrix", help="run kernels × reproducers; export it to a CI engine; merge its cells")
    msub = m.add_subparsers(dest="matrix_command", required=True)

    r = msub.add_parser("run", help="run the matrix (bounded parallel guests); resumable")
    r.add_argument("spec", nargs="?", help=f"matrix file (default {DEFAULT_SPEC.name} in the project)")
    r.add_argument("--only", action="append", default=[], metavar="KERNEL:REPRO",
                   help="only these cells (globs over KERNEL:REPRO, a kernel or a reproducer; an exact "
                        "KERNEL:REPRO the file does not list is run too); repeatable")
    r.add_argument("-j", "--jobs", type=positive,
                   help="guests at a time (default and cap: host CPUs/2 and free memory)")
    add_run_options(r, runs_help="runs per cell (default: matrix.yaml's, else the spec's)")
    r.add_argument("--resume", metavar="FOLDER", help="a matrix folder: run only its unfinished cells")
    r.add_argument("--kernels", metavar="DIR", help="the kernels of the CI pipeline's kernel jobs (DIR/<job>.tar, "
                   "`harness kernel export`): imported and used; one missing is said, then built or fetched")
    r.add_argument("--shard", metavar="I/N", help="run shard I of N of the one --only fstests cell (with --tests)")
    r.add_argument("--tests", metavar="A,B,...", help="the shard's fstests tests (the exported pipeline's split)")
    r.set_defaults(func=cmd_matrix_run)

    e = msub.add_parser("export", help="write the matrix as a CI engine's parallel job definition")
    e.add_argument("spec", nargs="?", help="matrix file (default matrix.yaml)")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--github-actions", action="store_true", help="a GitHub Actions workflow (strategy.matrix)")
    which.add_argument("--gitlab", action="store_true", help="a GitLab CI pipeline (parallel: matrix:)")
    e.add_argument("-o", "--output", help="write here instead of stdout")
    e.add_argument("--history", metavar="FILE", help="results history whose measured seconds split sharded "
                   "cells' tests (default: history.sqlite3 of the results root, when there is one)")
    e.add_argument("--runs-on", action="append", metavar="LABEL",
                   help="GitHub: the runners' labels (default ubuntu-latest; e.g. --runs-on self-hosted --runs-on kvm)")
    e.add_argument("--no-kvm", action="store_true", help="GitHub: do not hand the jobs' container /dev/kvm "
                   "(runners without KVM; the guests then run under TCG, as result.json says)")
    e.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help="GitLab: the runners' tags (e.g. --tag kvm for a runner registered with /dev/kvm)")
    e.set_defaults(func=cmd_matrix_export)

    g = msub.add_parser("merge", help="merge cell folders (CI artifacts) into one matrix folder")
    g.add_argument("dirs", nargs="+", metavar="DIR", help="folders holding cell folders (searched recursively)")
    g.add_argument("--spec", help="matrix file: its cells without a folder show as missing")
    g.add_argument("--results", type=Path, help="results root for the merged folder and the DB")
    g.set_defaults(func=cmd_matrix_merge)
