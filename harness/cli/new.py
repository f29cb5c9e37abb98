"""``harness new NAME --from FILE.c`` (or ``--from-syzbot ID``): scaffold a reproducer folder from a C file as
it was published, or from a syzbot bug (its C reproducer, ``.config`` and title, from ``$HARNESS_SYZBOT_URL``,
default https://syzkaller.appspot.com)."""

from __future__ import annotations

import argparse

from harness.cli.options import positive
from harness.errors import ExitCode
from harness.repro import scaffold

FILESYSTEMS = ("ext4", "ext2", "xfs", "none")


def cmd_new(args: argparse.Namespace) -> int:
    if args.syzbot:
        if args.config:
            args.usage_error("--config: --from-syzbot takes the bug's own .config")  # exit 2
        folder, lines = scaffold.from_syzbot(args.name, args.syzbot, titles=args.title or (), fs=args.fs,
                                             kernel=args.kernel, timeout=args.timeout)
    else:
        folder = scaffold.scaffold(args.name, args.source, titles=args.title or (), config=args.config, fs=args.fs,
                                   kernel=args.kernel, timeout=args.timeout)
        lines = []
    print(folder)
    for line in lines:
        print(line)
    print(f"next: harness repro {args.name}   (then fill in links: in {folder / 'repro.yaml'})")
    return ExitCode.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    n = sub.add_parser("new", help="scaffold reproducers/NAME/ from a C file (a syzkaller reproducer is recognised) "
                       "or a syzbot bug", description=__doc__)
    n.add_argument("name", help="the reproducer's name (a folder in reproducers/)")
    src = n.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="source", metavar="FILE.c", help="the C reproducer, copied verbatim")
    src.add_argument("--from-syzbot", dest="syzbot", metavar="EXTID|URL", help="a syzbot bug: its extid (from "
                     "Reported-by: syzbot+EXTID@...), id=ID, or its dashboard URL; fetches the C reproducer, "
                     ".config and title")
    n.add_argument("--title", action="append", metavar="T", help="an expected crash title (repeatable; none: any "
                   "crash report counts; --from-syzbot: the bug's title)")
    n.add_argument("--config", metavar="FILE", help="a syzbot kernel .config: the options the reproducer needs become "
                   "a kconfig fragment and a source-built variant")
    n.add_argument("--fs", choices=FILESYSTEMS, help="the harness image's filesystem (default: none for a syzkaller "
                   "reproducer, which brings its own; ext4 otherwise)")
    n.add_argument("--kernel", help="the default kernel (default: debian:6.1)")
    n.add_argument("--timeout", type=positive, metavar="S", help="the reproducer's time limit in seconds")
    n.set_defaults(func=cmd_new, usage_error=n.error)
