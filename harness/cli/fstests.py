"""``harness fstests TEST... [-g GROUP]``: fstests tests on the harness's kernels, with its fault injection and verdicts.

An fstests run is a reproducer run whose run step is fstests' ``./check``
(harness.fstests.kind): the same kernels (names, ``--base``, ``--patch``),
the same guests (vng: the guest unpacks the host's fstests build from its
read-only view of the host's root into its tmpfs and runs check there, with
TEST_DEV and SCRATCH_DEV as virtio disks), the same console reports and
verdicts, plus fstests' own result for
every test.  A reproducer spec may say ``fstests: generic/346`` instead of
``source:``; this command makes such a spec on the fly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import add_run_options
from harness.cli.output import console
from harness.cli.repro import _recipes, _run_on
from harness.errors import ExitCode
from harness.fstests import config, subsets
from harness.fstests import guest as fguest
from harness.fstests.results import Status, TestResult, counts_text, summary_table
from harness.repro import faults as faultlib
from harness.repro.run import Summary
from harness.repro.spec import Expectation, GuestOptions, Spec
from harness.yamlio import load_mapping

PER_TEST = 900  # seconds a listed test may take under TCG (loaded host, quick tests: 30-300 s); --timeout overrides


def fstests_spec(args: argparse.Namespace) -> Spec:
    """An fstests spec made from the command line (what a repro.yaml with ``fstests:`` would hold)."""
    listed = tuple(t for name in args.subset or () for t in subsets.load(name).tests)
    selection = config.Selection(fs=args.fs, tests=tuple(dict.fromkeys((*args.tests, *listed))),
                                 groups=tuple(args.group or ()),
                                 exclude_groups=tuple(args.exclude_group or ()),
                                 exclude_tests=tuple(args.exclude or ()),
                                 settings=tuple(s.split("=", 1) for s in args.set or ()))  # type: ignore[misc]
    fault = None
    if args.faults:
        path = Path(args.faults)
        fault = faultlib.parse(load_mapping(path), f"{path}: faults")
    n = len(fguest.prepare(selection, source=args.fstests).tests)  # the build is cached: this is quick after the first
    return Spec(
        name=f"fstests-{args.fs}", folder=Path.cwd(), summary=f"fstests {selection.describe()}",
        source=Path("check"),  # unused: an fstests run compiles nothing
        image=None, args=(), timeout=args.timeout or PER_TEST * n, runs=1, kernel=args.kernel or "debian:6.1",
        guest=GuestOptions(cpus=2, memory="2G"), expect=Expectation(failure=True), faults=fault, mode="fstests",
        fstests=selection,
    )


def _table(summary: Summary) -> str:
    """Test by test, run by run, then the counts."""
    lines = []
    for run in summary.runs:
        record = run.kind_record.get("fstests", {})
        tests = [TestResult(t["name"], Status(t["status"]), t.get("seconds"), t.get("reason", ""))
                 for t in record.get("tests", [])]
        counts = record.get("counts", {})
        lines.append(f"run {run.index}: {run.outcome.value} · {counts_text(counts)}")
        lines.append(summary_table(tests).rstrip("\n"))
    return "\n".join(lines) + "\n"


def cmd_fstests(args: argparse.Namespace) -> int:
    spec = fstests_spec(args)
    args.variant, args.reproducer = None, spec.name
    codes = []
    for label, target in _recipes(args, spec):
        code, summary = _run_on(args, spec, label, target)
        if summary is not None and not args.json:
            console.print(_table(summary), end="")
        codes.append(code)
    return max(codes, key=lambda c: (c != 0, c)) if codes else ExitCode.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("fstests", help="run fstests tests on a kernel (vng guests, TEST_DEV/SCRATCH_DEV disks)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("tests", nargs="*", metavar="TEST", help="tests, e.g. generic/346 xfs/123 (globs: generic/00*)")
    f.add_argument("-g", "--group", action="append", help="a group (quick, auto, xfs/quick...); repeatable")
    f.add_argument("-x", "--exclude-group", action="append", help="leave out a group's tests; repeatable")
    f.add_argument("-e", "--exclude", action="append", help="leave out a test; repeatable")
    f.add_argument("--subset", action="append", metavar="NAME",
                   help="a documented list of tests (harness/fstests/subsets/NAME.txt: tcg20, 22 tests in about "
                        "20 minutes under TCG); repeatable")
    f.add_argument("--fs", default="xfs", choices=config.FILESYSTEMS, help="FSTYP (default xfs)")
    f.add_argument("--set", action="append", metavar="NAME=VALUE", help="a local.config setting (TIME_FACTOR=1...)")
    f.add_argument("--faults", metavar="FILE", help="a YAML file holding a spec's faults: block (fail_usercopy "
                   "knobs and the comm globs of the tasks that must fail, e.g. holetest), armed around check")
    which = f.add_mutually_exclusive_group()
    which.add_argument("-k", "--kernel", help="kernel name (default: debian:6.1)")
    which.add_argument("--base", metavar="SOURCE", help="build this kernel source (with --patch: patched)")
    f.add_argument("-p", "--patch", action="append", default=[], metavar="P", help="apply P on top of --base")
    add_run_options(f, host_compile=False,
                    runs_help="number of runs of the whole selection (default 1)")
    f.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    f.set_defaults(func=cmd_fstests, usage_error=f.error)
