"""Build kernel variants out of tree, with ccache and a content-addressed cache.

A ``Variant`` is a source (``debian-src:6.1.192``, ``git:/repo@REV``,
``dir:/path``), a patch stack and kconfig fragments.  ``build`` returns a
bootable ``Kernel``; a second request for the same inputs builds nothing
(the entries, their names and eviction: ``harness.kernels.cache``).

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
import logging
import os
import re
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

import harness.kernels.cache as cache
import harness.kernels.kconfig as kconfig
import harness.kernels.patches as patchlib
from harness import proc
from harness.errors import KernelError, SpecError
from harness.kernels.cache import Layout
from harness.kernels.kernel import SOURCES, Kernel, split_name
from harness.kernels.patches import PatchFailed, PatchOp

log = logging.getLogger("harness.kernels.build")

# the lean base every reproducer shares (one cold build, then incremental variants);
# fault injection costs nothing until a spec turns it on
DEFAULT_FRAGMENTS = ("lean", "filesystems", "faults")
ARCH = "x86_64"
TARGET = "bzImage"
RECIPE = "2"  # bump when the way kernels are built changes (invalidates keys); 2: a fixed build banner

Progress = Callable[[str], None] | None

__all__ = [
    "BuildFailed",
    "Layout",
    "PatchFailed",
    "PatchOp",
    "Variant",
    "build",
    "cache_key",
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
    # a fixed banner (no build count, no date): two builds of one tree differ only where their code does
    # (harness.kernels.codediff), and the same request twice gives the same vmlinux
    return ["make", f"ARCH={ARCH}", "CC=ccache gcc", "KBUILD_BUILD_USER=harness", "KBUILD_BUILD_HOST=harness",
            "KBUILD_BUILD_VERSION=1", "KBUILD_BUILD_TIMESTAMP=1970-01-01"]


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
    if memo.exists() and (entry := cache.lookup(layout, memo.read_text().strip())):
        return cache.record(variant.kernel_name, entry, progress, cached=True)
    work = layout.work / tree.slot
    work.mkdir(parents=True, exist_ok=True)
    with _slot_lock(work, progress):
        wanted = (requested, optional, fragments_text)
        entry, built = _build_locked(variant, tree, source, wanted, patch_digest, compiler, work, layout, progress)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(entry.name + "\n")
    return cache.record(variant.kernel_name, entry, progress, cached=not built)


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
    if entry := cache.lookup(layout, key):  # same final config built by another request
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
        # the unpatched source, where a report's file:line finds its function (title matching, harness.verdict;
        # the files the patches changed are kept in the entry: cache.source_roots)
        # (a git source's pristine tree is the user's checkout, not this commit: none)
        "source_tree": str(tree.pristine) if tree.kind != "git" else None,
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
    return cache.store(layout, key, builddir, log_path, meta, (srctree, patchlib.touched(variant.patches))), True


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
