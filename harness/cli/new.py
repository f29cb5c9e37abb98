"""``harness new NAME --from FILE.c``: scaffold a reproducer folder from a C file as it was published."""

from __future__ import annotations

import argparse

from harness.cli.options import positive
from harness.errors import ExitCode
from harness.repro import scaffold

FILESYSTEMS = ("ext4", "ext2", "xfs", "none")


def cmd_new(args: argparse.Namespace) -> int:
    folder = scaffold.scaffold(args.name, args.source, titles=args.title or (), config=args.config, fs=args.fs,
                               kernel=args.kernel, timeout=args.timeout)
    print(folder)
    print(f"next: harness repro {args.name}   (then fill in links: in {folder / 'repro.yaml'})")
    return ExitCode.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    n = sub.add_parser("new", help="scaffold reproducers/NAME/ from a C file (a syzkaller reproducer is recognised)",
                       description=__doc__)
    n.add_argument("name", help="the reproducer's name (a folder in reproducers/)")
    n.add_argument("--from", dest="source", required=True, metavar="FILE.c", help="the C reproducer, copied verbatim")
    n.add_argument("--title", action="append", metavar="T", help="an expected crash title (repeatable; none: any "
                   "crash report counts)")
    n.add_argument("--config", metavar="FILE", help="a syzbot kernel .config: the options the reproducer needs become "
                   "a kconfig fragment and a source-built variant")
    n.add_argument("--fs", choices=FILESYSTEMS, help="the harness image's filesystem (default: none for a syzkaller "
                   "reproducer, which brings its own; ext4 otherwise)")
    n.add_argument("--kernel", help="the default kernel (default: debian:6.1)")
    n.add_argument("--timeout", type=positive, metavar="S", help="the reproducer's time limit in seconds")
    n.set_defaults(func=cmd_new)
