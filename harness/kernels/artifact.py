"""A kernel carried from one machine to another: a cache entry as one tar file (a CI job's artifact).

``harness kernel export NAME FILE`` writes the entry of a kernel the cache
holds (a source build: ``built/<key>/``; a Debian image: its unpack with the
modules) into ``FILE``: ``artifact.json`` first (what it is, the recipe it
answers, the compiler), then the entry's files under ``entry/``.
``harness kernel import FILE`` unpacks it beside the cache, checks every file
against the entry's own ``.sha256`` manifest (the sums recorded when the
kernel was built or fetched) and only then moves it into place; a damaged or
truncated artifact is refused with one line and nothing is installed.

A built kernel is found again by its **recipe** (``recipe_id``: source name,
patch bytes, the merged kconfig fragments' text), which needs neither the
source tree nor a configure step: a CI cell that imported its kernel looks it
up with ``find_recipe`` and never unpacks the source.  The compiler is not in
the recipe id (a pipeline's YAML must not depend on the exporting machine's
gcc); it is recorded in the entry, and ``find_recipe`` refuses a kernel built
by another compiler.  A Debian image needs no index: its unpack in the cache
is what ``harness.kernels.debian`` looks for before fetching.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, KernelError
from harness.kernels import build, integrity, kconfig
from harness.kernels import cache as kcache
from harness.kernels import patches as patchlib
from harness.kernels.kernel import Kernel
from harness.paths import cache_dir

FORMAT = "kernel-repro-harness kernel artifact 1"
HEADER = "artifact.json"
ENTRY = "entry"
RECIPES = "recipes"  # in the build cache's root: <recipe id> -> the key of the imported entry


def recipe_id(source: str, patch_digest: str, fragments: tuple[str, ...] | list[str]) -> str:
    """What a built kernel is made of, without its tree: the source's name, the patch stack's bytes
    (``patches.digest``), the kconfig fragments' merged text."""
    text = kconfig.render(kconfig.merge(kconfig.fragment_path(f) for f in fragments))
    h = hashlib.sha256()
    for part in ("recipe", build.RECIPE, source, patch_digest, text):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def variant_recipe(variant: build.Variant) -> str:
    return recipe_id(variant.source, patchlib.digest(variant.patches) if variant.patches else "", variant.fragments)


@dataclass(frozen=True)
class Header:
    """``artifact.json``: what the tar holds."""

    kind: str  # "build" or "debian"
    name: str  # the kernel's name (debian:6.1.0-57, debian-src:6.1.192/xfs-unfixed)
    key: str  # the cache entry's folder name (a build's key, a Debian image's NAME)
    recipe: str | None = None  # a build's recipe_id
    compiler: str | None = None

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **vars(self)}, indent=2) + "\n"

    @classmethod
    def parse(cls, text: bytes, where: str) -> Header:
        try:
            data = json.loads(text)
            if data.pop("format") != FORMAT:
                raise ValueError("another format")
            header = cls(**data)
        except (ValueError, TypeError, KeyError) as exc:
            raise HarnessError(f"{where}: not a kernel artifact ({exc}): make it with `harness kernel export`") from None
        if header.kind not in ("build", "debian") or not header.key or "/" in header.key or header.key.startswith("."):
            raise HarnessError(f"{where}: not a kernel artifact (kind {header.kind!r}, entry {header.key!r})")
        return header


def _entry_of(kernel: Kernel) -> tuple[Path, Header]:
    if kernel.kind == "build":
        entry = Path(kernel.extra["entry"])
        meta = json.loads((entry / "meta.json").read_text())
        recipe = recipe_id(meta["source"], meta.get("patch_digest", ""), meta["fragments"])
        return entry, Header("build", kernel.name, entry.name, recipe, meta.get("compiler"))
    if kernel.kind == "debian" and kernel.root is not None:
        return kernel.root, Header("debian", kernel.name, kernel.root.name)
    raise KernelError(f"{kernel.name}: only built kernels and Debian images can be exported")


def export(kernel: Kernel, dest: Path) -> Header:
    """Write ``kernel``'s cache entry into ``dest`` (a tar; the engine compresses artifacts itself)."""
    entry, header = _entry_of(kernel)
    problems = integrity.Manifest(entry).problems()
    if problems:
        raise KernelError(f"{kernel.name}: its cache entry is damaged ({'; '.join(problems)}): build or fetch it again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    with tarfile.open(tmp, "w") as tar:
        info = tarfile.TarInfo(HEADER)
        body = header.to_json().encode()
        info.size, info.mode = len(body), 0o644
        tar.addfile(info, io.BytesIO(body))
        for path in sorted(entry.rglob("*")):
            if path.name.startswith(".") and path.name not in (integrity.MANIFEST, ".complete"):
                continue  # .last_used, locks, temporaries: this machine's state
            if path.is_file() or path.is_symlink() or path.is_dir():
                tar.add(path, f"{ENTRY}/{path.relative_to(entry)}", recursive=False)
    os.replace(tmp, dest)
    return header


def read_header(src: Path) -> Header:
    try:
        with tarfile.open(src) as tar:
            member = tar.extractfile(HEADER)
            if member is None:
                raise KeyError(HEADER)
            return Header.parse(member.read(), str(src))
    except (tarfile.TarError, KeyError, OSError) as exc:
        raise HarnessError(f"{src}: not a readable kernel artifact ({exc}): make it with `harness kernel export`") from None


@dataclass(frozen=True)
class Imported:
    header: Header
    path: Path  # the entry in the cache
    installed: bool  # False: the cache held it already


def _destination(header: Header, layout: kcache.Layout) -> Path:
    return layout.built / header.key if header.kind == "build" else cache_dir("kernels", "debian") / header.key


def import_(src: Path, layout: kcache.Layout | None = None) -> Imported:
    """Unpack ``src`` into the cache after checking every file against the entry's manifest."""
    layout = layout or kcache.Layout.default()
    header = read_header(src)
    dest = _destination(header, layout)
    if not (dest / ".complete").exists() or integrity.Manifest(dest).problems():
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{header.key}.import-", dir=dest.parent))
        try:
            _unpack(src, staging)
            entry = staging / ENTRY
            problems = integrity.Manifest(entry).problems() if (entry / ".complete").exists() else ["no .complete"]
            if problems:
                raise HarnessError(f"{src}: damaged kernel artifact ({'; '.join(problems)}): export it again")
            if dest.exists():
                shutil.rmtree(dest)
            entry.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        installed = True
    else:
        installed = False
    if header.recipe:
        index = layout.root / RECIPES
        index.mkdir(parents=True, exist_ok=True)
        (index / header.recipe).write_text(header.key + "\n")
    return Imported(header, dest, installed)


def _unpack(src: Path, dest: Path) -> None:
    try:
        with tarfile.open(src) as tar:
            members = [m for m in tar.getmembers() if m.name == ENTRY or m.name.startswith(ENTRY + "/")]
            tar.extractall(dest, members=members, filter="data")  # no absolute paths, no .., no devices
    except (tarfile.TarError, OSError) as exc:
        raise HarnessError(f"{src}: damaged kernel artifact ({exc}): export it again") from None


def find_recipe(variant: build.Variant, layout: kcache.Layout | None = None) -> tuple[Kernel | None, str]:
    """The imported kernel that answers ``variant``'s recipe, or None and why not."""
    layout = layout or kcache.Layout.default()
    marker = layout.root / RECIPES / variant_recipe(variant)
    if not marker.exists():
        return None, "no imported kernel of that recipe"
    key = marker.read_text().strip()
    entry = kcache.lookup(layout, key)  # checks the sums again
    if entry is None:
        return None, f"the imported entry {key} is gone or damaged"
    meta = json.loads((entry / "meta.json").read_text())
    here = build.compiler_version()
    if meta.get("compiler") != here:
        return None, f"it was built by {meta.get('compiler')!r}, this machine has {here!r}"
    return kcache.record(variant.kernel_name, entry, None, cached=True), f"imported {key}"
