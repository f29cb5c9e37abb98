"""``harness matrix run|export|merge``: kernels × reproducers, here or on a CI engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.options import add_run_options, positive, run_options
from harness.errors import ExitCode
from harness.matrix import ci
from harness.matrix.run import exit_code, run_matrix, summary_line
from harness.matrix.spec import DEFAULT_SPEC, load_matrix


def cmd_matrix_run(args: argparse.Namespace) -> int:
    index = run_matrix(args.spec, run_options(args), only=args.only, jobs=args.jobs, resume=args.resume)
    print(summary_line(index))
    return exit_code(index)


def cmd_matrix_export(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.spec)
    spec = args.spec or "matrix.yaml"
    text = ci.gitlab(matrix.cells, spec) if args.gitlab else ci.github_actions(matrix.cells, spec)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"{len(matrix.cells)} cells -> {args.output}", file=sys.stderr)
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
    g.add_argument("--results", type=Path, help="results root for the merged folder and the DB")
    g.set_defaults(func=cmd_matrix_merge)
