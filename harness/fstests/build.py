"""fstests built once on the host into the cache.

The tree is the one the user names (``--fstests PATH`` or ``$HARNESS_FSTESTS``; else the one
``harness setup --fstests`` fetched into the cache, ``harness.fstests.fetch``): a git
checkout, a plain directory or a tarball (``git archive`` output, e.g.
``../shared/fstests/fstests-*.tar.gz``).  Its sources are copied (never built in place:
the user's checkout stays untouched) into a temporary folder beside the cache entry,
built there with ``make -jN`` and renamed into place when complete, with a marker that
holds the key.  The key is the tree's revision (a clean checkout's commit, a tarball's
commit from its pax header, otherwise a digest of the content) and the toolchain (gcc's
version and the versions of the libraries fstests' configure looks for).  A file lock
keeps two harness processes from building the same key twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from harness import git, proc, setup
from harness.errors import HarnessError, MissingTool, UnknownName
from harness.fstests.config import parse_groups
from harness.paths import cache_dir, fetched_fstests

ENV = "HARNESS_FSTESTS"
MARKER = ".harness-build.json"
# The built tree as one tar file (objects left out), inside the tree: a guest unpacks it into
# its tmpfs and runs check there.  check lists tests/*/* at start: 110 s over the guest's 9p
# root under TCG, 0.9 s in tmpfs (after a 9 s unpack); one file also travels to any machine.
ARCHIVE = ".harness-tree.tar"
# What a tree must hold to be fstests, and what a build must leave (common/config
# refuses to start without fsstress and fsx; holetest serves generic/344 and 346).
SOURCE_FILES = ("check", "common/rc", "common/config")
BUILT_FILES = ("ltp/fsstress", "ltp/fsx", "src/holetest")
TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tar.zst")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class Tree:
    """An fstests source the user named."""

    path: Path
    kind: str  # "git", "dir" or "tarball"
    revision: str  # a commit (40 hex digits) or "sha256:<digest>" of the content


@dataclass(frozen=True)
class Build:
    """A complete fstests build in the cache: ``root/check`` is what the guest runs."""

    root: Path
    key: str
    revision: str
    toolchain: str
    source: str  # the path the user named
    seconds: float  # how long make took (0 when it was already cached)

    @property
    def archive(self) -> Path:
        """The built tree as a tar (paths relative to the top: ``./check``...)."""
        return self.root / ARCHIVE


def source_path(path: str | os.PathLike | None = None) -> Path:
    """The fstests tree named by ``path`` or ``$HARNESS_FSTESTS``, else the one ``harness setup --fstests`` fetched."""
    named = path or os.environ.get(ENV) or fetched_fstests()
    if not named:
        raise MissingTool(
            "no fstests tree named",
            hint=f"run `harness setup --fstests` (fetches upstream fstests into the cache), pass --fstests PATH "
                 f"(a checkout or a tarball) or set ${ENV}",
        )
    found = Path(named).expanduser().resolve()
    if not found.exists():
        raise UnknownName(f"fstests tree {named} does not exist", hint=f"check --fstests or ${ENV}")
    return found


def is_tarball(path: Path) -> bool:
    return path.is_file() and path.name.endswith(TARBALL_SUFFIXES)


def identify(path: Path) -> Tree:
    """What ``path`` is and which revision it holds."""
    if is_tarball(path):
        return Tree(path, "tarball", tarball_commit(path) or "sha256:" + _file_digest(path))
    if not path.is_dir():
        raise UnknownName(f"{path} is neither a directory nor a tarball ({', '.join(TARBALL_SUFFIXES)})",
                          hint="name an fstests checkout or its tarball")
    missing = [f for f in SOURCE_FILES if not (path / f).is_file()]
    if missing:
        raise UnknownName(f"{path} is not an fstests tree (no {', '.join(missing)})", hint="name the top of the fstests checkout")
    files = git_files(path)
    if files is None:
        return Tree(path, "dir", "sha256:" + tree_digest(path, walk_files(path)))
    commit = git.rev_parse(path, "HEAD")
    dirty = git.run(path, "status", "--porcelain", "--untracked-files=normal").stdout.strip()
    return Tree(path, "git", "sha256:" + tree_digest(path, files) if dirty else commit)


def tarball_commit(path: Path) -> str | None:
    """The commit ``git archive`` recorded in the tarball's pax header, if any."""
    try:
        with tarfile.open(path) as tar:
            comment = tar.pax_headers.get("comment", "")
    except (tarfile.TarError, OSError) as exc:
        raise UnknownName(f"{path}: not a readable tarball ({exc})", hint="name an fstests tarball or checkout") from None
    return comment if _COMMIT.match(comment) else None


def git_files(path: Path) -> list[str] | None:
    """Files of the checkout at ``path`` (tracked, plus untracked not ignored), or None if not git."""
    if not (path / ".git").exists():
        return None
    listing = git.run(path, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    return sorted(f for f in listing.split("\0") if f and (path / f).is_file())


def walk_files(path: Path) -> list[str]:
    """Every regular file under ``path`` (relative), .git excluded."""
    found = []
    for top, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        found += [os.path.relpath(os.path.join(top, f), path) for f in files]
    return sorted(f for f in found if (path / f).is_file() and not (path / f).is_symlink())


def tree_digest(path: Path, files: list[str]) -> str:
    """sha256 over every file's relative path, mode and content."""
    digest = hashlib.sha256()
    for rel in files:
        full = path / rel
        digest.update(f"{rel}\0{full.stat().st_mode & 0o111:o}\0".encode())
        digest.update(_file_digest(full).encode())
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def toolchain() -> str:
    """gcc's version and the versions of the -dev packages fstests' configure probes."""
    gcc = proc.run(["gcc", "--version"], capture=True, what="gcc --version").output.strip().splitlines()[0]
    versions = setup.package_versions(setup.FSTESTS_BUILD_PACKAGES)
    return "; ".join([gcc, *(f"{name} {versions[name]}" for name in sorted(versions))])


def build_key(revision: str, tools: str) -> str:
    return hashlib.sha256(json.dumps({"revision": revision, "toolchain": tools}).encode()).hexdigest()[:16]


def entry_dir(revision: str, key: str) -> Path:
    """Where a build of ``revision`` with ``key`` lives in the cache."""
    short = revision.removeprefix("sha256:")[:12]
    return cache_dir("fstests") / f"fstests-{short}-{key}"


def read_marker(root: Path, key: str) -> Build | None:
    """The build at ``root`` if its marker says it is complete for ``key``."""
    try:
        data = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != key or any(not (root / f).exists() for f in (*BUILT_FILES, ARCHIVE)):
        return None
    return Build(root, key, data["revision"], data["toolchain"], data["source"], 0.0)


def ensure_built(path: str | os.PathLike | None = None, *, jobs: int = 2, progress: Progress = None) -> Build:
    """The cached build of the fstests tree named by ``path`` (or ``$HARNESS_FSTESTS``), built if absent."""
    tree = identify(source_path(path))
    tools = toolchain()
    key = build_key(tree.revision, tools)
    final = entry_dir(tree.revision, key)
    with FileLock(str(final) + ".lock"):
        done = read_marker(final, key)
        if done is not None:
            return done
        _require_packages()
        if final.exists():  # a marker that does not match: never taken for whole
            shutil.rmtree(final)
        if progress:
            progress(f"building fstests {tree.revision[:19]} from {tree.path} (make -j{jobs})")
        return _build(tree, tools, key, final, jobs)


def _require_packages() -> None:
    versions = setup.package_versions(setup.FSTESTS_BUILD_PACKAGES)
    absent = [p for p in setup.FSTESTS_BUILD_PACKAGES if p not in versions]
    if absent:
        raise MissingTool(
            f"fstests needs these packages to build: {', '.join(absent)}",
            hint=f"run `harness setup --test` as root, or apt-get install {' '.join(absent)}",
        )


def _build(tree: Tree, tools: str, key: str, final: Path, jobs: int) -> Build:
    log = final.with_suffix(".log")
    log.unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".partial-{final.name}-", dir=final.parent))
    try:
        src = stage(tree, work)
        start = time.monotonic()
        try:
            proc.run(["make", f"-j{jobs}"], cwd=src, log_path=log, what="fstests make")
        except proc.CommandFailed as exc:
            raise HarnessError(f"building fstests from {tree.path} failed: {exc}", hint=f"see {log}") from None
        seconds = time.monotonic() - start
        absent = [f for f in BUILT_FILES if not (src / f).exists()]
        if absent:
            raise HarnessError(f"the fstests build from {tree.path} has no {', '.join(absent)}", hint=f"see {log}")
        built = Build(final, key, tree.revision, tools, str(tree.path), round(seconds, 1))
        archive(src, work / ARCHIVE).rename(src / ARCHIVE)
        (src / MARKER).write_text(json.dumps({**asdict(built), "root": str(final)}, indent=1) + "\n")
        src.rename(final)
        return built
    finally:
        shutil.rmtree(work, ignore_errors=True)


def archive(src: Path, dest: Path) -> Path:
    """``src`` (a built tree) as one uncompressed tar at ``dest``, without object files."""
    proc.run(["tar", "-cf", str(dest), "--exclude=*.o", "--exclude=*.lo", "--exclude=.git", "-C", str(src), "."],
             what="archiving the fstests build")
    return dest


def stage(tree: Tree, work: Path) -> Path:
    """A private copy of the tree's sources under ``work``; returns its top."""
    dest = work / "fstests"
    if tree.kind == "tarball":
        unpack = work / "unpack"
        unpack.mkdir()
        proc.run(["tar", "-xf", str(tree.path), "-C", str(unpack)], what=f"unpacking {tree.path.name}")
        _tree_top(unpack).rename(dest)
        return dest
    files = git_files(tree.path) if tree.kind == "git" else walk_files(tree.path)
    for rel in files or ():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree.path / rel, target)
    return dest


def _tree_top(unpack: Path) -> Path:
    """The fstests top in an unpacked tarball: the folder itself or its one subfolder."""
    if all((unpack / f).is_file() for f in SOURCE_FILES):
        return unpack
    subdirs = [d for d in unpack.iterdir() if d.is_dir()]
    if len(subdirs) == 1 and all((subdirs[0] / f).is_file() for f in SOURCE_FILES):
        return subdirs[0]
    raise UnknownName("the tarball holds no fstests tree (check, common/rc) at its top or one level down",
                      hint="name a tarball made by `git archive` of fstests")


def group_index(root: Path) -> dict[str, frozenset[str]]:
    """Every test of the built tree and its groups, from ``tests/*/group.list`` (made by make)."""
    index: dict[str, frozenset[str]] = {}
    for listing in sorted((root / "tests").glob("*/group.list")):
        index.update(parse_groups(listing.read_text(errors="replace"), listing.parent.name))
    if not index:
        raise HarnessError(f"{root} has no tests/*/group.list", hint="the fstests build is incomplete: remove it and rebuild")
    return index
