"""Build kernel variants out of tree, with ccache and a content-addressed cache.

A ``Variant`` is a source (``debian-src:6.1.192``, ``git:/repo@REV``,
``dir:/path``), a patch stack and kconfig fragments.  ``build`` returns a
bootable ``Kernel``; a second request for the same inputs builds nothing.

Design (see kconfigs/README.md for the rationale):

- Every source has ONE work tree per cache ("slot": a hardlink farm of the
  pristine tree, or a shared git clone).  Switching variants restores the
  files the previous stack touched and applies the new stack; every file
  that changes is written as a new file with mtime = now.
- Build dirs (``make O=``) live under the slot, one per final ``.config``.  The
  source path a build dir sees never changes, so kbuild's recorded commands
  stay identical and a one-file patch recompiles one file (a separate tree
  per variant would change every command line and rebuild everything).
- The config is made in a scratch ``O=`` (tinyconfig + fragments +
  olddefconfig), so the final ``.config`` is known, and hashed into the key,
  before the build dir is touched.  Key = source identity + patch bytes +
  final .config + ``gcc --version``; an index maps the cheaper input digest
  (source + patches + fragments + compiler) to the key for instant hits.
- ccache is shared by all slots (``CCACHE_BASEDIR`` makes paths relative).

tuxmake was evaluated and not used: it would run its own config step per
build (we need the final .config before building to key the cache), and its
value (containers, cross toolchains, many targets) is not needed here; the
kbuild wrapper below is ~3 make calls.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from harness import proc
from harness.errors import KernelError, SpecError
from harness.kernels import integrity, kconfig, pvh
from harness.kernels import patches as patchlib
from harness.kernels.kernel import SOURCES, Kernel, split_name
from harness.kernels.patches import PatchFailed, PatchOp
from harness.paths import cache_dir
from harness.sizes import parse_size

log = logging.getLogger("harness.kernels.build")

# the lean base every reproducer shares (one cold build, then incremental variants);
# fault injection costs nothing until a spec turns it on
DEFAULT_FRAGMENTS = ("lean", "filesystems", "faults")
ARCH = "x86_64"
TARGET = "bzImage"
RECIPE = "1"  # bump when the way kernels are built changes (invalidates keys)
ARTIFACTS = {"bzImage": "arch/x86/boot/bzImage", "vmlinux": "vmlinux", "System.map": "System.map", "config": ".config"}

Progress = Callable[[str], None] | None

__all__ = [
    "BuildFailed",
    "Layout",
    "PatchFailed",
    "PatchOp",
    "Variant",
    "build",
    "source_variant",
    "cache_key",
    "cache_size",
    "evict",
    "list_cached",
]


@dataclass(frozen=True)
class Variant:
    """What to build: a source, a patch stack, kconfig fragments."""

    source: str  # "debian-src:6.1.192"
    name: str = "default"
    patches: tuple[PatchOp, ...] = ()
    fragments: tuple[str, ...] = DEFAULT_FRAGMENTS

    @property
    def kernel_name(self) -> str:
        return self.source if self.name == "default" else f"{self.source}/{self.name}"


class BuildFailed(KernelError):
    """``make`` failed; ``errors`` holds its ``error:`` lines, ``log_path`` the full log."""

    def __init__(self, what: str, errors: Sequence[str], log_path: Path):
        first = errors[0].strip() if errors else "see the log"
        super().__init__(f"{what} failed: {first}", hint=f"full log: {log_path}")
        self.errors = tuple(errors)
        self.log_path = log_path


@dataclass(frozen=True)
class Layout:
    """Where the build machinery keeps things (one root; benches use their own)."""

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


# --- keys ------------------------------------------------------------------------


def _sha(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def cache_key(identity: str, patch_digest: str, config_text: str, compiler: str) -> str:
    """Key of a built kernel: source identity, patch bytes, final .config, compiler."""
    return _sha("kernel", RECIPE, ARCH, identity, patch_digest, config_text, compiler)[:24]


def inputs_key(identity: str, patch_digest: str, fragments_text: str, compiler: str) -> str:
    """Digest of the request (before configuring): index entry pointing at the key."""
    return _sha("inputs", RECIPE, ARCH, identity, patch_digest, fragments_text, compiler)[:24]


@functools.cache
def compiler_version(cc: str = "gcc") -> str:
    """First line of ``gcc --version``."""
    return proc.run([cc, "--version"], capture=True).output.splitlines()[0].strip()


# --- progress -------------------------------------------------------------------

_OBJ_RE = re.compile(r"^\s+(CC|LD|AR|AS)\b")
_ERR_RE = re.compile(r"error:|\*\*\* .*Error \d|undefined reference|No rule to make target", re.IGNORECASE)


class _Watcher:
    """Counts objects (CC/LD/AR/AS lines), keeps error lines, reports every few seconds."""

    def __init__(self, progress: Progress, label: str, every: float = 5.0):
        self.progress, self.label, self.every = progress, label, every
        self.start = self.last = time.monotonic()
        self.objects = 0
        self.errors: list[str] = []

    def __call__(self, line: str) -> None:
        if _OBJ_RE.match(line):
            self.objects += 1
        elif _ERR_RE.search(line) and len(self.errors) < 50:
            self.errors.append(line.strip())
        now = time.monotonic()
        if self.progress and now - self.last >= self.every:
            self.last = now
            self.progress(f"{self.label}: {self.objects} objects, {now - self.start:.0f}s")


# --- build ----------------------------------------------------------------------


def _make() -> list[str]:
    return ["make", f"ARCH={ARCH}", "CC=ccache gcc", "KBUILD_BUILD_USER=harness", "KBUILD_BUILD_HOST=harness"]


def _env(layout: Layout) -> dict[str, str]:
    layout.ccache.mkdir(parents=True, exist_ok=True)
    return {
        "CCACHE_DIR": str(layout.ccache),
        "CCACHE_BASEDIR": str(layout.work),  # slot paths become relative: hits across slots
        "CCACHE_NOHASHDIR": "1",
        "CCACHE_DEPEND": "1",  # no extra preprocessor run on a miss (kbuild passes -MMD)
    }


def _source(kind: str):
    source = SOURCES.select(kind)
    if not hasattr(source, "checkout"):
        raise SpecError(f"kernel kind {kind!r} is prebuilt: it has no source to build (use debian-src:, git: or dir:)")
    return source


def build(variant: Variant, *, progress: Progress = None, layout: Layout | None = None) -> Kernel:
    """Build (or find in the cache) ``variant``; raises PatchFailed / BuildFailed."""
    layout = layout or Layout.default()
    kind, rest = split_name(variant.source)
    source = _source(kind)
    tree = source.tree(rest, progress=progress)
    fragments = [kconfig.fragment_path(f) for f in variant.fragments]
    requested = kconfig.merge(fragments)  # read once: the memo, the config and the O= name agree
    optional = kconfig.optional(fragments)
    fragments_text = kconfig.render(requested)
    patch_digest = patchlib.digest(variant.patches) if variant.patches else ""
    compiler = compiler_version()
    memo = layout.index / inputs_key(tree.identity, patch_digest, fragments_text, compiler)
    if memo.exists() and (entry := _entry(layout, memo.read_text().strip())):
        return _record(variant, entry, progress, cached=True)
    work = layout.work / tree.slot
    work.mkdir(parents=True, exist_ok=True)
    with _slot_lock(work, progress):
        wanted = (requested, optional, fragments_text)
        entry, built = _build_locked(variant, tree, source, wanted, patch_digest, compiler, work, layout, progress)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(entry.name + "\n")
    return _record(variant, entry, progress, cached=not built)


@contextlib.contextmanager
def _slot_lock(work: Path, progress: Progress):
    """The work tree's lock; says so when another build holds it."""
    lock = FileLock(str(work) + ".lock")
    try:
        lock.acquire(timeout=1)
    except Timeout:
        if progress:
            progress(f"waiting for {work.name}: another build is using this work tree")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _build_locked(variant, tree, source, wanted, patch_digest, compiler, work, layout, progress) -> tuple[Path, bool]:
    """(cache entry, whether make ran): another request may have built the same final config."""
    requested, optional, fragments_text = wanted
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = layout.logs / f"{tree.slot}-{_sha(fragments_text)[:12]}-{stamp}-{os.getpid()}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"preparing {variant.kernel_name} ({len(variant.patches)} patches)")
    srctree = source.checkout(tree, work, variant.patches, log_path=log_path)
    make, env = _make(), _env(layout)
    config, mismatches = _configure(srctree, work / "kconfig", requested, optional, make, env, log_path)
    key = cache_key(tree.identity, patch_digest, config.read_text(), compiler)
    if entry := _entry(layout, key):  # same final config built by another request
        log_path.unlink(missing_ok=True)
        return entry, False
    builddir = work / "build" / _sha(config.read_text())[:12]  # one O= per final .config
    _install_config(config, builddir)
    watcher = _Watcher(progress, variant.kernel_name)
    cpu = _children_cpu()
    done = proc.run(
        [*make, f"O={builddir}", f"-j{os.cpu_count() or 1}", TARGET],
        cwd=srctree,
        env=env,
        log_path=log_path,
        on_line=watcher,
        check=False,
        what="make",
    )
    if not done.ok:
        raise BuildFailed(f"building {variant.kernel_name}", watcher.errors, log_path)
    meta = {
        "key": key,
        "name": variant.kernel_name,
        "source": variant.source,
        "identity": tree.identity,
        "variant": variant.name,
        "fragments": list(variant.fragments),
        "patches": [op.describe() for op in variant.patches],
        "patch_digest": patch_digest,
        "compiler": compiler,
        "version": _kernelversion(srctree, builddir, make, env),
        "release": (builddir / "include/config/kernel.release").read_text().strip(),
        "build_seconds": round(done.seconds, 1),
        "build_cpu_seconds": round(_children_cpu() - cpu, 1),
        "objects": watcher.objects,
        "config_mismatches": [str(m) for m in mismatches],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return _store(layout, key, builddir, log_path, meta), True


def _configure(srctree, scratch, requested, optional, make, env, log_path):
    scratch.mkdir(parents=True, exist_ok=True)
    config, mismatches = kconfig.configure(
        srctree, scratch, requested, make=make, optional_options=optional, log_path=log_path, env=env
    )
    for m in mismatches:
        log.log(logging.INFO if m.optional else logging.WARNING, "kconfig: %s", m)
    return config, mismatches


def _install_config(config: Path, builddir: Path) -> None:
    """Copy the final .config into the build dir, only when it changed (keeps mtimes)."""
    builddir.mkdir(parents=True, exist_ok=True)
    target = builddir / ".config"
    if not target.exists() or target.read_bytes() != config.read_bytes():
        shutil.copyfile(config, target)


def _children_cpu() -> float:
    """User + system CPU seconds of waited-for children (make and everything it ran)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _kernelversion(srctree: Path, builddir: Path, make, env) -> str:
    done = proc.run([*make, "-s", f"O={builddir}", "kernelversion"], cwd=srctree, env=env, capture=True)
    return done.output.strip().splitlines()[-1]


# --- the kernel cache ---------------------------------------------------------------


def _entry(layout: Layout, key: str) -> Path | None:
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


def _store(layout: Layout, key: str, builddir: Path, log_path: Path, meta: dict) -> Path:
    layout.built.mkdir(parents=True, exist_ok=True)
    entry = layout.built / key
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=layout.built))
    for name, rel in ARTIFACTS.items():
        shutil.copyfile(builddir / rel, staging / name)
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


def _record(variant: Variant, entry: Path, progress: Progress, *, cached: bool) -> Kernel:
    _touch(entry)
    meta = json.loads((entry / "meta.json").read_text())
    _remember_name(entry, meta, variant.kernel_name)
    if progress:
        progress(f"{variant.kernel_name}: {'cached' if cached else 'built'} {entry.name}")
    config = entry / "config"
    options = config.read_text().splitlines() if config.exists() else []
    # 6.1's PVH entry runs C code before KASAN's early shadow is set up: a KASAN kernel booted through it
    # triple-faults before its first console line (QEMU exits 0, silent); it boots as a bzImage
    pvh_ok = pvh.enabled() and "CONFIG_PVH=y" in options and "CONFIG_KASAN=y" not in options
    return Kernel(
        name=variant.kernel_name,
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
    removed = []
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
    return removed


# --- CLI entry points ---------------------------------------------------------------


def patch_op(arg: str) -> PatchOp:
    """``fix.patch`` applies it, ``revert:bad.patch`` reverts it."""
    revert = arg.startswith("revert:")
    path = Path(arg.removeprefix("revert:")).expanduser()
    if not path.is_file():
        raise SpecError(f"patch {path} does not exist")
    return PatchOp(path.resolve(), revert)


def source_variant(
    spec: str,
    *,
    fragments: Sequence[str] = (),
    patches: Sequence[str] = (),
    name: str | None = None,
) -> Variant:
    """``harness kernel build SPEC [--fragment F]... [--patch [revert:]P]... [--name N]``'s recipe."""
    ops = tuple(patch_op(p) for p in patches)
    return Variant(
        source=spec,
        name=name or ("patched-" + patchlib.digest(ops)[:8] if ops else "default"),
        patches=ops,
        fragments=tuple(fragments) or DEFAULT_FRAGMENTS,
    )


# --- kernels by the name given at build time --------------------------------------------


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
        if _entry(layout, entry.name) is None:  # damaged (and removed): the next newest, if any
            continue
        source, _, given = name.partition("/")
        variant = Variant(source=meta["source"], name=given or meta.get("variant") or "default")
        return _record(variant, entry, None, cached=True)
    return None
