"""``python -m tools.chaos [--only GLOB]... [--group G]... [--list] [--root DIR] [--keep]``: run the suite.

Needs root (tmpfs mounts, /proc of every process) and a user cache holding a
Debian 6.1 kernel and an unpacked Debian kernel source (``harness repro
ext4_inline`` and ``harness kernel build debian-src:6.1.192`` once): the
suite copies them into its own caches and never writes the user's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import platformdirs

from tools.chaos import inputs, kills, resumes, saved, storage, vmcore  # noqa: F401 (each registers its faults)
from tools.chaos.fixtures import write_reproducers
from tools.chaos.sandbox import ChaosError, Sandbox, venv_harness
from tools.chaos.suite import Context, run_faults, select, table, write_report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", default=[], metavar="GLOB",
                   help="faults whose name matches (repeatable; with --group: either)")
    p.add_argument("--group", action="append", default=[],
                   help="kill, space, concurrency, corrupt, hang, input, venv (repeatable)")
    p.add_argument("--list", action="store_true", help="list the faults and exit")
    p.add_argument("--root", type=Path, help="where the suite works (default: a fresh folder beside the user cache)")
    p.add_argument("--keep", action="store_true", help="keep the suite's folder (its logs, caches and results)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for f in select():
            print(f"{f.group:<12} {f.name}{'  (CI)' if f.ci else ''}")
        return 0
    if os.geteuid() != 0:
        print("chaos: needs root (tmpfs mounts, every process's /proc)", file=sys.stderr)
        return 2
    shared = Path(os.environ.get("HARNESS_CACHE") or platformdirs.user_cache_dir("kernel-repro-harness"))
    # not under /tmp or /var/tmp: vng guests mount a fresh tmpfs there and would not see the kernels' modules
    root = args.root or shared.parent / f"kernel-repro-harness-chaos-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        faults = select(args.only, args.group)
        box = Sandbox(root, shared, venv_harness())
        write_reproducers(box.fixtures)
        ctx = Context(box, box.debian_release(), box.source()[0])
    except ChaosError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    print(f"chaos: {len(faults)} faults · {root}", file=sys.stderr, flush=True)
    rows = run_faults(ctx, faults, lambda msg: print(f"chaos: {msg}", file=sys.stderr, flush=True))
    write_report(rows, root / "table.md")
    print(table(rows), end="")
    if not args.keep:
        for name in os.listdir(root):
            if name not in ("logs", "table.md"):
                shutil.rmtree(root / name, ignore_errors=True)
    return 0 if rows and all(r.held for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
