"""The source-built kernel cache: where builds are kept, their entries, their names, eviction.

``Layout`` is the cache's one root (``work/`` the source slots and build
dirs, ``built/<key>/`` the entries, ``index/`` the request memo, ``logs/``
failed builds, ``ccache/``).  An entry is a kernel's artifacts (bzImage,
vmlinux, System.map, config), its build log, ``meta.json`` and the sums
recorded when it was stored (``integrity.Manifest``); ``.complete`` marks it
whole.  ``lookup`` hands out only entries whose sums still hold (a damaged
one is removed, so it is built again); ``store`` moves a finished build in
atomically and evicts the least recently used entries beyond the size limit
(``$HARNESS_KERNEL_CACHE_MAX``, 30G); ``record`` turns an entry into the
``Kernel`` it holds; ``find_named`` finds one by the name given at build
time.  ``harness.kernels.build`` makes what goes in; this module knows no
recipe, source tree or make.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

import harness.kernels.integrity as integrity
import harness.kernels.pvh as pvh
from harness.kernels.kernel import Kernel
from harness.paths import cache_dir
from harness.sizes import parse_size

log = logging.getLogger("harness.kernels.cache")

# what an entry holds: its name there -> its path in the build dir
ARTIFACTS = {"bzImage": "arch/x86/boot/bzImage", "vmlinux": "vmlinux", "System.map": "System.map", "config": ".config"}
# In an entry: the files its patch stack changed, as they were built.  A report's file:line in one of them
# finds its function here, not in the unpatched tree (title matching: harness.report.crashsite).
PATCHED_SOURCE = "source"

Progress = Callable[[str], None] | None
# Called with the folders of the entries ``evict`` removed: what was made from them goes too (the snapshot
# backend's saved guests of those kernels register here: harness.guest.snapshot.store).
ON_EVICT: list[Callable[[list[str]], None]] = []


@dataclass(frozen=True)
class Layout:
    """Where the build machinery and its cache keep things (one root; the bench uses its own)."""

    root: Path

    @classmethod
    def default(cls) -> Layout:
        return cls(cache_dir("kernels"))

    @property
    def work(self) -> Path:  # <slot>/: src/, build/<config digest>/, kconfig/
        return self.root / "work"

    @property
    def built(self) -> Path:  # <key>/: artifacts + meta.json
        return self.root / "built"

    @property
    def index(self) -> Path:  # <request digest> -> key
        return self.root / "index"

    @property
    def logs(self) -> Path:  # logs of failed builds
        return self.root / "logs"

    @property
    def ccache(self) -> Path:
        return self.root / "ccache"


def lookup(layout: Layout, key: str) -> Path | None:
    """The cached kernel ``key``, checked against the sums recorded when it was stored (a damaged one is
    removed, so it is built again, never booted); None when there is none."""
    entry = layout.built / key
    if not (entry / ".complete").exists():
        return None
    manifest = integrity.Manifest(entry)
    if not manifest.exists():  # stored before sums were recorded: trusted so far, checked from now on
        manifest.record([entry / name for name in ARTIFACTS if (entry / name).exists()])
        return entry
    problems = manifest.problems()
    if not problems:
        return entry
    log.warning("cached kernel %s is damaged (%s): building it again", key, "; ".join(problems))
    with FileLock(str(layout.built / ".lock")):
        if entry.exists():
            gone = entry.with_name(f".damaged-{key}-{os.getpid()}")
            entry.rename(gone)
            shutil.rmtree(gone, ignore_errors=True)
    return None


def store(layout: Layout, key: str, builddir: Path, log_path: Path, meta: dict,
          patched: tuple[Path, list[str]] | None = None) -> Path:
    """``builddir``'s artifacts as entry ``key`` (staged, then renamed in whole; the first of two racing
    builds wins), then least recently used entries evicted down to ``cache_limit()``.  ``patched``: the
    source tree built and the files its patches changed, kept under ``PATCHED_SOURCE``."""
    layout.built.mkdir(parents=True, exist_ok=True)
    entry = layout.built / key
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=layout.built))
    for name, rel in ARTIFACTS.items():
        shutil.copyfile(builddir / rel, staging / name)
    for rel in patched[1] if patched else ():
        if (patched[0] / rel).is_file():  # a file the stack deletes has no line to read
            (staging / PATCHED_SOURCE / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(patched[0] / rel, staging / PATCHED_SOURCE / rel)
    shutil.copyfile(log_path, staging / "build.log")
    (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    integrity.Manifest(staging).record([staging / name for name in ARTIFACTS])
    (staging / ".complete").write_text(key + "\n")
    staging.chmod(0o755)
    with FileLock(str(layout.built / ".lock")):
        if entry.exists():
            shutil.rmtree(staging)
        else:
            staging.rename(entry)
    log_path.unlink(missing_ok=True)  # kept in the entry; logs/ keeps failures only
    limit = cache_limit()
    for gone in evict(limit, layout, keep=(key,)):
        log.warning("kernel cache over %s: evicted %s (least recently used)", human_size(limit), gone)
    return entry


def source_roots(extra: dict) -> tuple[Path, ...]:
    """Where a built kernel's report finds the function of a ``file:line`` (its ``Kernel.extra``): the
    files its patches changed as built (``PATCHED_SOURCE``, when the entry has it), then the unpatched tree."""
    roots = [Path(extra["entry"]) / PATCHED_SOURCE] if extra.get("entry") else []
    roots += [Path(extra["source_tree"])] if extra.get("source_tree") else []
    return tuple(r for r in roots if r.is_dir())


def _touch(entry: Path) -> None:
    (entry / ".last_used").write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")


NAMES = "names"  # in a cache entry: the other names it was asked for under (`--name`), one a line


def _names(entry: Path) -> list[str]:
    try:
        return (entry / NAMES).read_text().split()
    except OSError:
        return []


def _remember_name(entry: Path, meta: dict, name: str) -> None:
    """A named request the entry answered (the same final config built before under another name): the
    name finds this entry from now on (`--kernel SRC/NAME`, `kernel list`)."""
    if name == meta.get("name") or name in _names(entry) or "/" not in name:
        return
    tmp = entry / f".{NAMES}.{os.getpid()}"
    tmp.write_text("".join(f"{n}\n" for n in (*_names(entry), name)))
    os.replace(tmp, entry / NAMES)


def record(name: str, entry: Path, progress: Progress, *, cached: bool) -> Kernel:
    """The ``Kernel`` a cache entry holds, asked for as ``name`` (``SOURCE`` or ``SOURCE/NAME``); marks it used."""
    _touch(entry)
    meta = json.loads((entry / "meta.json").read_text())
    _remember_name(entry, meta, name)
    if progress:
        progress(f"{name}: {'cached' if cached else 'built'} {entry.name}")
    config = entry / "config"
    options = config.read_text().splitlines() if config.exists() else []
    # 6.1's PVH entry runs C code before KASAN's early shadow is set up: a KASAN kernel booted through it
    # triple-faults before its first console line (QEMU exits 0, silent); it boots as a bzImage
    pvh_ok = pvh.enabled() and "CONFIG_PVH=y" in options and "CONFIG_KASAN=y" not in options
    return Kernel(
        name=name,
        release=meta["release"],
        version=meta["version"],
        image=entry / "bzImage",
        boot_image=entry / "vmlinux" if pvh_ok and (entry / "vmlinux").exists() else None,
        root=None,
        system_map=entry / "System.map",
        vmlinux=entry / "vmlinux",
        config=config,
        kind="build",
        extra={**meta, "entry": str(entry), "cached": cached, "log": str(entry / "build.log")},
    )


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _last_used(entry: Path) -> float:
    marker = entry / ".last_used"
    return (marker if marker.exists() else entry / ".complete").stat().st_mtime


def list_cached(layout: Layout | None = None) -> list[dict]:
    """Cached kernels, most recently used first (``harness kernel list``)."""
    layout = layout or Layout.default()
    rows = []
    for entry in layout.built.glob("*/.complete"):
        entry = entry.parent
        meta = json.loads((entry / "meta.json").read_text())
        rows.append({**meta, "also_named": _names(entry), "path": str(entry), "bytes": _size(entry),
                     "last_used": _last_used(entry)})
    return sorted(rows, key=lambda r: r["last_used"], reverse=True)


def cache_size(layout: Layout | None = None) -> int:
    """Bytes held by cached kernels (``built/``)."""
    layout = layout or Layout.default()
    return sum(_size(e.parent) for e in layout.built.glob("*/.complete"))


DEFAULT_CACHE_LIMIT = "30G"


def human_size(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


def cache_limit(text: str | None = None) -> int:
    """The kernel cache's size limit in bytes: ``text`` (``--max-size``), else ``$HARNESS_KERNEL_CACHE_MAX``
    (default 30G).  A bare number is bytes."""
    if text is not None:
        return parse_size(text, bare="B", what="cache size")
    return parse_size(os.environ.get("HARNESS_KERNEL_CACHE_MAX", DEFAULT_CACHE_LIMIT), bare="B",
                      what="$HARNESS_KERNEL_CACHE_MAX")


def evict(max_bytes: int, layout: Layout | None = None, *, keep: Sequence[str] = ()) -> list[str]:
    """Remove least recently used kernels (never those in ``keep``) until the cache holds ``max_bytes``."""
    layout = layout or Layout.default()
    rows = sorted(list_cached(layout), key=lambda r: r["last_used"])
    total = sum(r["bytes"] for r in rows)
    removed, paths = [], []
    layout.built.mkdir(parents=True, exist_ok=True)
    with FileLock(str(layout.built / ".lock")):
        for row in rows:
            if total <= max_bytes:
                break
            if row["key"] in keep:
                continue
            shutil.rmtree(row["path"], ignore_errors=True)
            total -= row["bytes"]
            removed.append(row["key"])
            paths.append(row["path"])
    for hook in ON_EVICT if paths else ():
        hook(paths)
    return removed


def find_named(name: str, layout: Layout | None = None) -> Kernel | None:
    """The cached build ``harness kernel list`` shows as ``name`` (``debian-src:6.1.192/mine``), or None.

    ``name`` is the ``meta.json`` "name" of a cache entry: ``SOURCE`` or
    ``SOURCE/NAME`` for a build made with ``--name NAME`` (or a spec's
    variant).  When several entries carry it (the same name rebuilt with
    other patches), the newest build wins.
    """
    layout = layout or Layout.default()
    found: list[tuple[tuple[str, float], Path, dict]] = []
    for marker in layout.built.glob("*/.complete"):
        entry = marker.parent
        try:
            meta = json.loads((entry / "meta.json").read_text())
            stamp = (str(meta.get("built_at", "")), marker.stat().st_mtime)
        except (OSError, ValueError):
            continue  # an entry being evicted, or a damaged one: not a candidate
        if meta.get("name") == name or name in _names(entry):
            found.append((stamp, entry, meta))
    for _, entry, meta in sorted(found, key=lambda f: f[0], reverse=True):
        if lookup(layout, entry.name) is None:  # damaged (and removed): the next newest, if any
            continue
        given = name.partition("/")[2] or meta.get("variant") or "default"
        return record(meta["source"] if given == "default" else f"{meta['source']}/{given}", entry, None, cached=True)
    return None
