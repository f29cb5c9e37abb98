"""Filesystem images: a YAML recipe -> a cached image -> a fresh copy per run.

Images are built on the host without mounting anything: mkfs populates files
from a staging directory (mke2fs -d, mkfs.xfs -p protofile) and tweaks run
through the filesystem's own offline tools (debugfs).  The cache key is a hash
of the recipe's content and the mkfs tool's version.  A cached image's sum is
recorded beside it (``NAME.img.sha256``) and checked before each use: a
damaged image is built again, never attached.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock

from harness import proc
from harness.errors import SpecError, UnknownName
from harness.kernels import integrity
from harness.paths import cache_dir, data_file, data_files
from harness.registry import Registry
from harness.sizes import parse_size
from harness.yamlio import Fields, load_mapping


@dataclass(frozen=True)
class FileEntry:
    path: str
    content: str = ""
    mode: int = 0o644


@dataclass(frozen=True)
class Recipe:
    name: str
    fs: str
    size: int
    mkfs_options: tuple[str, ...] = ()
    files: tuple[FileEntry, ...] = ()
    tweaks: tuple[str, ...] = ()
    mount_options: str = ""
    check: bool = True
    check_note: str = ""
    source: Path | None = field(default=None, compare=False)

    def key(self) -> str:
        """Content hash of everything that shapes the image."""
        body = asdict(self)
        body.pop("source", None)
        body["tool"] = FILESYSTEMS.select(self.fs).tool_version()
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


# --- filesystems --------------------------------------------------------------


class Filesystem:
    """How to make, check and mount one filesystem type."""

    name: str
    mkfs: str
    mount_type: str

    def tool_version(self) -> str:
        done = proc.run(self.version_argv(), capture=True, check=False)
        return done.output.strip().splitlines()[0] if done.output.strip() else "unknown"

    def version_argv(self) -> list[str]:
        raise NotImplementedError

    def mkfs_argv(self, recipe: Recipe, image: Path, staging: Path | None) -> list[str]:
        raise NotImplementedError

    def check_argv(self, device: str) -> list[str]:
        """Read-only checker run in the guest after unmount."""
        raise NotImplementedError


class Ext(Filesystem):
    def __init__(self, name: str):
        self.name = name
        self.mkfs = f"mkfs.{name}"
        self.mount_type = name

    def version_argv(self) -> list[str]:
        return ["mke2fs", "-V"]

    def mkfs_argv(self, recipe: Recipe, image: Path, staging: Path | None) -> list[str]:
        argv = ["mke2fs", "-q", "-F", "-t", self.name, *recipe.mkfs_options]
        if staging is not None:
            argv += ["-d", str(staging)]
        return [*argv, str(image), f"{recipe.size // 1024}k"]

    def check_argv(self, device: str) -> list[str]:
        return ["e2fsck", "-fn", device]


class Xfs(Filesystem):
    name = "xfs"
    mkfs = "mkfs.xfs"
    mount_type = "xfs"

    def version_argv(self) -> list[str]:
        return ["mkfs.xfs", "-V"]

    def mkfs_argv(self, recipe: Recipe, image: Path, staging: Path | None) -> list[str]:
        argv = ["mkfs.xfs", "-q", "-f", *recipe.mkfs_options]
        if staging is not None:
            argv += ["-p", str(staging / ".protofile")]
        return [*argv, str(image)]

    def check_argv(self, device: str) -> list[str]:
        return ["xfs_repair", "-n", device]


FILESYSTEMS: Registry[Filesystem] = Registry("filesystem")
for _fs in (Ext("ext2"), Ext("ext3"), Ext("ext4"), Xfs()):
    FILESYSTEMS.add(_fs.name, _fs)


def xfs_protofile(staging: Path, files: tuple[FileEntry, ...]) -> str:
    """An mkfs.xfs protofile placing ``files`` (one directory level deep at most)."""
    lines = ["/dev/null", "0 0", "d--755 0 0"]
    tree: dict[str, list[FileEntry]] = {}
    for entry in files:
        parent, _, base = entry.path.rpartition("/")
        tree.setdefault(parent, []).append(entry)
    for parent in sorted(tree):
        if parent:
            if "/" in parent:
                raise SpecError(f"xfs recipe file {parent}/...: only one directory level is supported")
            lines.append(f"{parent} d--755 0 0")
        for entry in tree[parent]:
            base = entry.path.rpartition("/")[2]
            lines.append(f"{base} ---{entry.mode:o} 0 0 {staging / entry.path}")
        if parent:
            lines.append("$")
    lines.append("$")
    return "\n".join(lines) + "\n"


# --- tweaks (post-mkfs, offline) ------------------------------------------------


class Tweak:
    name: str
    help: str
    filesystems: tuple[str, ...]

    def apply(self, image: Path, log: Path) -> None:
        raise NotImplementedError


def free_ranges(dumpe2fs_output: str) -> list[tuple[int, int]]:
    """(first, count) of every free block range listed by dumpe2fs."""
    ranges = []
    for m in re.finditer(r"^\s+Free blocks: (.*)$", dumpe2fs_output, re.M):
        for part in m.group(1).split(","):
            part = part.strip()
            if not part:
                continue
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
            ranges.append((first, last - first + 1))
    return ranges


class MarkFreeBlocksUsed(Tweak):
    """Block bitmaps full while the group descriptors still count free blocks.

    Delalloc reservations trust the free-cluster counters, mballoc trusts the
    bitmaps: every real allocation then fails while reservations succeed.
    """

    name = "mark_free_blocks_used"
    help = "debugfs setb over every free range; counters left alone"
    filesystems = ("ext2", "ext3", "ext4")

    def apply(self, image: Path, log: Path) -> None:
        listing = proc.run(["dumpe2fs", str(image)], capture=True, log_path=None).output
        cmds = [f"setb {first} {count}" for first, count in free_ranges(listing)]
        if not cmds:
            raise SpecError(f"{self.name}: dumpe2fs listed no free blocks in {image}")
        with tempfile.NamedTemporaryFile("w", suffix=".debugfs", delete=False) as fh:
            fh.write("\n".join(cmds) + "\n")
        try:
            proc.run(["debugfs", "-w", "-f", fh.name, str(image)], log_path=log)
        finally:
            Path(fh.name).unlink()


TWEAKS: Registry[Tweak] = Registry("image tweak")
TWEAKS.add(MarkFreeBlocksUsed.name, MarkFreeBlocksUsed())


# --- recipes --------------------------------------------------------------------


def parse_recipe(data: dict, where: str, source: Path | None = None) -> Recipe:
    f = Fields(
        data,
        where,
        {"name", "fs", "size", "mkfs_options", "files", "tweaks", "mount_options", "check", "check_note", "description"},
    )
    fs = f.get("fs", str, required=True)
    FILESYSTEMS.select(fs)
    files = []
    for i, item in enumerate(f.get("files", list, [])):
        ff = Fields(item if isinstance(item, dict) else {}, f"{where}: files[{i}]", {"path", "content", "mode"})
        path = ff.get("path", str, required=True)
        if path.startswith("/") or ".." in path.split("/"):
            raise SpecError(f"{where}: files[{i}]: path {path!r} must be relative, without '..'")
        files.append(FileEntry(path, ff.get("content", str, ""), ff.get("mode", int, 0o644)))
    tweaks = f.strings("tweaks")
    for t in tweaks:
        tweak = TWEAKS.select(t)
        if fs not in tweak.filesystems:
            raise SpecError(f"{where}: tweak {t} does not apply to {fs} (only {', '.join(tweak.filesystems)})")
    return Recipe(
        name=f.get("name", str, source.stem if source else "inline"),
        fs=fs,
        size=parse_size(f.get("size", (str, int), required=True), bare="B", what=f"{where}: size"),
        mkfs_options=f.strings("mkfs_options"),
        files=tuple(files),
        tweaks=tweaks,
        mount_options=f.get("mount_options", str, ""),
        check=f.get("check", bool, True),
        check_note=f.get("check_note", str, ""),
        source=source,
    )


def load_recipe(name: str) -> Recipe:
    """A recipe by name (``images/NAME.yaml``) or by path."""
    path: Path | None = Path(name)
    if not path.suffix:
        path = data_file("images", f"{name}.yaml")  # the search path: harness.paths
    if path is None or not path.exists():
        known = [p.stem for p in data_files("images", "*.yaml")]
        raise UnknownName(f"Unknown image recipe {name!r}. Available: {', '.join(known) or '(none)'}")
    return parse_recipe(load_mapping(path), str(path), path)


def build(recipe: Recipe, *, progress=None) -> Path:
    """The cached image for ``recipe``, built once per content hash."""
    fs = FILESYSTEMS.select(recipe.fs)
    root = cache_dir("images")
    image = root / f"{recipe.name}-{recipe.key()}.img"
    with FileLock(str(image) + ".lock"):
        if image.exists():
            damaged = integrity.file_problem(image)
            if damaged is None:
                return image
            if progress:
                progress(f"the cached image {image.name} is damaged ({damaged}): building it again")
            image.unlink()
        if progress:
            progress(f"building image {recipe.name} ({recipe.fs}, {recipe.size >> 20} MiB)")
        log = root / f"{image.stem}.log"
        log.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            tmpdir = Path(tmp)
            staging = None
            if recipe.files:
                staging = tmpdir / "files"
                for entry in recipe.files:
                    target = staging / entry.path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(entry.content)
                    target.chmod(entry.mode)
                if recipe.fs == "xfs":
                    (staging / ".protofile").write_text(xfs_protofile(staging, recipe.files))
            partial = tmpdir / "image.img"
            with open(partial, "wb") as fh:
                fh.truncate(recipe.size)
            proc.run(fs.mkfs_argv(recipe, partial, staging), log_path=log, what=f"mkfs for image {recipe.name}")
            for t in recipe.tweaks:
                TWEAKS.select(t).apply(partial, log)
            partial.rename(image)
        integrity.record_file(image)
    return image


def fresh_copy(image: Path, dest: Path) -> Path:
    """A private, sparse copy of a cached image for one run."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    proc.run(["cp", "--sparse=always", "--reflink=auto", str(image), str(dest)])
    return dest
