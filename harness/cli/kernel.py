"""``harness kernel build|list|evict``: the source-built kernel cache from the command line.

    harness kernel build debian-src:6.1.192 [-f lean -f filesystems -f debug] [-p fix.patch] [-p revert:bad.patch]
                         [-p series] [-p b4-am.mbx] [--name NAME]     # then: harness repro R --kernel SOURCE/NAME
    harness kernel build xfs_mkwrite_delalloc [--variant xfs-unfixed]     # a reproducer's variants
    harness kernel list [--json]
    harness kernel evict [--max-size 10G]
    harness kernel export NAME FILE       # a cache entry as one tar (a CI build job's artifact)
    harness kernel import FILE...         # ... checked against its sums, into this machine's cache
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from harness import kernels
from harness.errors import ExitCode, SpecError
from harness.kernels import artifact
from harness.kernels import build as kbuild
from harness.kernels import cache as kcache
from harness.kernels import patches as patchlib
from harness.kernels.recipe import patched_name
from harness.repro import spec as specs

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _progress(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def _variants(args: argparse.Namespace) -> list[kbuild.Variant]:
    """The builds SPEC asks for: a kernel source name (with -f/-p) or a reproducer (its variants)."""
    if ":" in args.spec:
        return [_source_variant(args)]
    if args.fragment or args.patch or args.name:
        raise SpecError(f"{args.spec} is a reproducer: its variants name their own patches and fragments "
                        "(drop -f/-p/--name, or give a kernel source such as debian-src:6.1.192)")
    spec = specs.load(args.spec)
    if not spec.variants:
        raise SpecError(f"reproducer {spec.name} has no source-built variants (it runs on {spec.kernel})")
    chosen = [spec.variant(v) for v in args.variant] if args.variant else list(spec.variants)
    return [v.build for v in chosen]


def _source_variant(args: argparse.Namespace) -> kbuild.Variant:
    """SOURCE [-f F]... [-p P]... [--name N]: each -p is a patch file, a series, an mbox or revert:P."""
    if args.name is not None and not NAME_RE.match(args.name):
        raise SpecError(f"--name {args.name!r}: use letters, digits and . _ + - (it becomes {args.spec}/NAME)")
    ops = tuple(op for arg in args.patch for op in patchlib.load_patches(arg))
    name = args.name or (patched_name("default", ops) if ops else "default")
    return kbuild.Variant(args.spec, name, ops, tuple(args.fragment) or kbuild.DEFAULT_FRAGMENTS)


def _built(variant: kbuild.Variant) -> dict:
    start = time.monotonic()
    kernel = kbuild.build(variant, progress=_progress)
    meta = kernel.extra
    return {
        "name": kernel.name,
        "key": meta["key"],
        "cached": meta["cached"],
        "seconds": round(time.monotonic() - start, 1),
        "release": kernel.release,
        "bzImage": str(kernel.image),
        "build_seconds": meta.get("build_seconds"),
        "objects": meta.get("objects"),
        "config_mismatches": meta.get("config_mismatches", []),
    }


def cmd_build(args: argparse.Namespace) -> int:
    rows = []
    for variant in _variants(args):
        row = _built(variant)
        rows.append(row)
        if not args.json:
            how = "cache hit" if row["cached"] else f"built, {row['objects']} objects"
            print(f"{row['name']}\t{row['key']}\t{how} in {row['seconds']:.1f} s\t{row['bzImage']}")
            for m in row["config_mismatches"]:
                print(f"  kconfig: {m}")
    if args.json:
        print(json.dumps(rows if len(rows) > 1 else rows[0]))
    return ExitCode.OK


def cmd_list(args: argparse.Namespace) -> int:
    rows = kcache.list_cached()
    if args.json:
        print(json.dumps(rows))
        return ExitCode.OK
    total = sum(r["bytes"] for r in rows)
    print(f"{len(rows)} kernels, {kcache.human_size(total)} of {kcache.human_size(kcache.cache_limit())} "
          "($HARNESS_KERNEL_CACHE_MAX); most recently used first")
    for r in rows:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"]))
        frags = "+".join(r.get("fragments", []))
        print(f"{r['key']}  {r['name']:<40} {r.get('release', '?'):<12} {frags:<28} "
              f"{kcache.human_size(r['bytes']):>7}  built in {r.get('build_seconds', 0):.0f} s  used {used}"
              + (f"  also: {' '.join(r['also_named'])}" if r.get("also_named") else ""))
    return ExitCode.OK


def cmd_evict(args: argparse.Namespace) -> int:
    limit = kcache.cache_limit(args.max_size)
    gone = kcache.evict(limit)
    print(f"evicted {len(gone)} kernels" + (f": {' '.join(gone)}" if gone else "")
          + f"; cache now {kcache.human_size(kcache.cache_size())}")
    return ExitCode.OK


KEY_RE = re.compile(r"^[0-9a-f]{24}$")


def _kernel(name: str):
    """A kernel name as `--kernel` takes it (fetched, built or found), or a cache key `kernel list` shows."""
    if KEY_RE.match(name):
        row = next((r for r in kcache.list_cached() if r["key"] == name), None)
        if row is None:
            raise SpecError(f"no cached kernel with key {name} (`harness kernel list` shows the keys)")
        name = row["name"]
    return kernels.resolve(name, progress=_progress)


def cmd_export(args: argparse.Namespace) -> int:
    kernel = _kernel(args.name)
    header = artifact.export(kernel, Path(args.file))
    size = kcache.human_size(Path(args.file).stat().st_size)
    print(f"{header.name}\t{header.key}\t{args.file} ({size})" + (f"\trecipe {header.recipe}" if header.recipe else ""))
    return ExitCode.OK


def cmd_import(args: argparse.Namespace) -> int:
    for file in args.files:
        done = artifact.import_(Path(file))
        how = "imported" if done.installed else "already in the cache"
        print(f"{done.header.name}\t{done.header.key}\t{how}, sums checked\t{done.path}")
    return ExitCode.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("kernel", help="build source kernels into the cache, list and evict them")
    ks = k.add_subparsers(dest="kernel_command", required=True)
    b = ks.add_parser("build", help="build (or find cached) a kernel: a source name or a reproducer's variants")
    b.add_argument("spec", help="debian-src:6.1.192, git:/path/to/linux@REV, dir:/path, or a reproducer name")
    b.add_argument("-f", "--fragment", action="append", default=[],
                   help="kconfig fragment in kconfigs/ or a path, in order (default: lean filesystems)")
    b.add_argument("-p", "--patch", action="append", default=[],
                   help="patch to apply: a file, a series file, an mbox, or revert:P; repeatable, in order")
    b.add_argument("--name", help="variant name: `harness repro R --kernel SOURCE/NAME` runs it "
                                  "(default: derived from the patches)")
    b.add_argument("--variant", action="append", help="with a reproducer: only this variant (repeatable)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_build)
    li = ks.add_parser("list", help="cached kernels, most recently used first")
    li.add_argument("--json", action="store_true")
    li.set_defaults(func=cmd_list)
    e = ks.add_parser("evict", help="remove least recently used kernels down to a size")
    e.add_argument("--max-size", help="e.g. 10G (default: $HARNESS_KERNEL_CACHE_MAX or 30G)")
    e.set_defaults(func=cmd_evict)
    x = ks.add_parser("export", help="write a cached kernel (a build or a Debian image) into one tar file")
    x.add_argument("name", help="a kernel name (debian:6.1, debian-src:6.1.192, debian-src:6.1.192/NAME) or a "
                                "cache key; fetched or built first when the cache lacks it")
    x.add_argument("file", help="the tar to write")
    x.set_defaults(func=cmd_export)
    im = ks.add_parser("import", help="put exported kernels into this machine's cache (their sums checked first)")
    im.add_argument("files", nargs="+", metavar="FILE")
    im.set_defaults(func=cmd_import)
