"""Kernel source kinds: trees the harness builds (``harness.kernels.build``).

- ``debian-src:6.1.192`` / ``debian-src:6.12.117``: Debian's linux-source
  package at that exact version, unpacked ONCE into the cache (read-only).
- ``git:/path/to/linux@REV``: a commit of a local repository.  The cache holds
  a ``git clone --shared`` of it (objects read through alternates), so the
  user's checkout and its .git are never written to.
- ``dir:/path``: a local tree, built in place (out of tree, ``O=`` in the cache).

Each kind hands ``build`` a ``Tree``: a content identity (for cache keys), a
slot name (variants of one source share a work tree and its build dirs) and
``checkout``, which brings the slot's work tree to "source + patch stack".
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

import harness.kernels.build as build
import harness.kernels.cache as kcache
import harness.kernels.patches as patchlib
from harness import git, proc
from harness.errors import GitError, KernelError, SpecError, UnknownName
from harness.kernels.debian import apt_download
from harness.kernels.kernel import SOURCES, Kernel
from harness.kernels.patches import PatchOp
from harness.paths import cache_dir


@dataclass(frozen=True)
class Tree:
    """A buildable source, before any patch."""

    spec: str  # "debian-src:6.1.192"
    identity: str  # content identity: same identity, same files
    slot: str  # work-tree name in the cache ("debian-src-6.1.192-2")
    pristine: Path  # the unpatched tree (read-only; the user's tree for dir:)
    kind: str


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class _Buildable:
    """Common part of the source kinds: ``resolve`` builds the default variant."""

    kind = ""

    def resolve(self, rest: str, *, progress=None) -> Kernel:
        """``SOURCE`` builds the default variant; ``SOURCE/NAME`` is a cached build of that name
        (``harness kernel build SOURCE --name NAME``, or a reproducer's variant), as ``harness kernel list`` shows it."""
        named = kcache.find_named(f"{self.kind}:{rest}") if "/" in rest else None
        if named is not None:
            return named
        source, sep, name = rest.rpartition("/")
        if sep and name and (isinstance(self, DebianSource)
                             or any(r.get("source") == f"{self.kind}:{source}" for r in kcache.list_cached())):
            raise UnknownName(f"{self.kind}:{rest}: no cached build of that name (build it with `harness kernel build "
                              f"{self.kind}:{source} --name {name}`, or a reproducer's variant with "
                              f"`harness kernel build REPRO --variant {name}`)")
        return build.build(build.Variant(source=f"{self.kind}:{rest}"), progress=progress)

    def tree(self, rest: str, *, progress=None) -> Tree:
        raise NotImplementedError

    def checkout(self, tree: Tree, work: Path, ops: tuple[PatchOp, ...], *, log_path: Path | None = None) -> Path:
        """The source directory to build: a hardlink farm of the pristine tree with ``ops`` applied."""
        src, state = work / "src", work / "src.state.json"
        if not state.exists() and src.exists():
            shutil.rmtree(src)  # unknown content (interrupted): start again
        if not src.exists():
            _hardlink_farm(tree.pristine, src, log_path)
            patchlib.StackState("pristine", ()).save(state)
        patchlib.sync(src, tree.pristine, ops, state, log_path=log_path)
        return src


def _hardlink_farm(pristine: Path, dest: Path, log_path: Path | None) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    proc.run(["cp", "-al", pristine, tmp], log_path=log_path, what="cp -al (work tree)")
    tmp.rename(dest)


# --- debian-src ---------------------------------------------------------------

_DEB_RE = re.compile(r"^(6\.1|6\.12)\.(\d+)(-[0-9A-Za-z.+~]+)?$")


class DebianSource(_Buildable):
    kind = "debian-src"
    help = "Debian's linux-source package (6.1.NNN, 6.12.NNN), unpacked once and built (lean configs)"

    def available(self) -> list[str]:
        names = []
        for series in ("6.1", "6.12"):
            for version in self._versions(series):
                names.append(f"{self.kind}:{version.split('-')[0]}")
        return sorted(set(names), key=lambda n: tuple(int(x) for x in re.findall(r"\d+", n)))

    @staticmethod
    def _versions(series: str) -> list[str]:
        """Debian versions of linux-source-SERIES, newest first (apt-cache madison)."""
        done = proc.run(["apt-cache", "madison", f"linux-source-{series}"], capture=True, check=False)
        return [line.split("|")[1].strip() for line in done.output.splitlines() if line.count("|") >= 2]

    def debian_version(self, rest: str) -> tuple[str, str]:
        """``6.1.192`` -> (linux-source-6.1, 6.1.192-2): the newest Debian revision."""
        m = _DEB_RE.match(rest)
        if not m:
            raise UnknownName(f"Unknown Debian source {rest!r}: use debian-src:6.1.NNN or debian-src:6.12.NNN")
        package = f"linux-source-{m.group(1)}"
        versions = self._versions(m.group(1))
        upstream = f"{m.group(1)}.{m.group(2)}"
        match = [v for v in versions if v == rest or (not m.group(3) and v.split("-")[0] == upstream)]
        if not match:
            raise UnknownName(
                f"{package} {rest} is not in the apt sources. Available: {', '.join(versions) or '(none)'}",
                hint="run `apt-get update`",
            )
        return package, match[0]

    def _unpacked(self, rest: str) -> tuple[str, str] | None:
        """(package, version) of an already unpacked tree for ``rest``: no apt round trip."""
        m = _DEB_RE.match(rest)
        if not m:
            return None
        pattern = rest if m.group(3) else f"{rest}-*"
        done = [p.parent.name for p in cache_dir("kernels", "src", self.kind).glob(f"{pattern}/.complete")]
        done.sort(key=lambda v: [int(x) for x in re.findall(r"\d+", v)], reverse=True)
        return (f"linux-source-{m.group(1)}", done[0]) if done else None

    def tree(self, rest: str, *, progress=None) -> Tree:
        """The unpacked tree; the newest Debian revision already unpacked wins (``6.1.192-3`` to pin)."""
        package, version = self._unpacked(rest) or self.debian_version(rest)
        dest = cache_dir("kernels", "src", self.kind) / version
        with FileLock(str(dest) + ".lock"):
            if not (dest / ".complete").exists():
                self._unpack(package, version, dest, progress)
        return Tree(
            spec=f"{self.kind}:{rest}",
            identity=f"{package}={version}",
            slot=f"{self.kind}-{version}",
            pristine=dest / "tree",
            kind=self.kind,
        )

    def _unpack(self, package: str, version: str, dest: Path, progress) -> None:
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            tmpdir = Path(tmp)
            deb = apt_download(f"{package}={version}", tmpdir, progress)
            series = package.removeprefix("linux-source-")
            member = f"./usr/src/linux-source-{series}.tar.xz"
            proc.run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" "$3"', "sh", deb, tmpdir, member])
            deb.unlink()
            staging = tmpdir / "staging"
            staging.mkdir()
            proc.run(["tar", "-xf", tmpdir / member, "-C", staging], what="tar -x linux-source")
            top = next(staging.iterdir())
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir()
            top.rename(dest / "tree")
        (dest / ".complete").write_text(f"{package}={version}\n")


# --- git ------------------------------------------------------------------------


class GitSource(_Buildable):
    kind = "git"
    help = "a commit of a local git repository: git:/path/to/linux@REV (REV defaults to HEAD)"

    def available(self) -> list[str]:
        return []

    @staticmethod
    def split(rest: str) -> tuple[Path, str]:
        path, sep, rev = rest.rpartition("@")
        if not sep or "/" in rev:
            path, rev = rest, "HEAD"
        return Path(path).expanduser().resolve(), rev or "HEAD"

    def tree(self, rest: str, *, progress=None) -> Tree:
        repo, rev = self.split(rest)
        try:
            sha = git.rev_parse(repo, rev)
        except GitError:
            raise UnknownName(f"git:{rest}: {rev!r} is not a commit of {repo}") from None
        return Tree(
            spec=f"{self.kind}:{repo}@{rev}",
            identity=f"git:{sha}",
            slot=f"git-{_short(str(repo))}",
            pristine=repo,
            kind=self.kind,
        )

    def checkout(self, tree: Tree, work: Path, ops: tuple[PatchOp, ...], *, log_path: Path | None = None) -> Path:
        """A shared clone in the slot, checked out at the commit, then the stack.

        ``git checkout -f`` rewrites only the files that differ (fresh mtimes),
        so moving between commits or stacks rebuilds just what changed.
        """
        src, state_path = work / "src", work / "src.state.json"
        sha = tree.identity.removeprefix("git:")
        want = f"{sha}+{patchlib.digest(ops) if ops else 'pristine'}"
        if patchlib.StackState.load(state_path).digest == want and src.exists():
            return src
        if not (src / ".git").exists():
            if src.exists():
                shutil.rmtree(src)
            git.run(tree.pristine, "clone", "-q", "--shared", "--no-checkout", str(tree.pristine), str(src),
                    log_path=log_path)
        patchlib.StackState("", ()).save(state_path)
        git.run(src, "checkout", "-q", "-f", "--detach", sha, log_path=log_path)
        git.run(src, "clean", "-q", "-fd", log_path=log_path)
        patchlib.apply_stack(src, ops, log_path=log_path)
        patchlib.StackState(want, tuple(patchlib.touched(ops))).save(state_path)
        return src


# --- dir --------------------------------------------------------------------------


def tree_digest(root: Path) -> str:
    """Identity of a local tree: paths, sizes and mtimes of its files (no .git)."""
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            h.update(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class DirSource(_Buildable):
    kind = "dir"
    help = "a local kernel tree, built as is (out of tree, O= in the cache): dir:/path/to/linux"

    def available(self) -> list[str]:
        return []

    def tree(self, rest: str, *, progress=None) -> Tree:
        root = Path(rest).expanduser().resolve()
        if not (root / "Makefile").is_file() or not (root / "Kconfig").is_file():
            raise UnknownName(f"dir:{rest}: {root} is not a kernel source tree (no Makefile/Kconfig)")
        if (root / ".config").exists():
            raise KernelError(
                f"{root} has a .config: out-of-tree builds need a clean tree", hint="run `make mrproper` there"
            )
        if progress:
            progress(f"hashing {root}")
        return Tree(
            spec=f"{self.kind}:{root}",
            identity=f"dir:{root}:{tree_digest(root)}",
            slot=f"dir-{_short(str(root))}",
            pristine=root,
            kind=self.kind,
        )

    def checkout(self, tree: Tree, work: Path, ops: tuple[PatchOp, ...], *, log_path: Path | None = None) -> Path:
        if ops:
            raise SpecError("dir: sources build as is; patch the tree yourself, or use a git: source for patch stacks")
        return tree.pristine


SOURCES.add(DebianSource.kind, DebianSource())
SOURCES.add(GitSource.kind, GitSource())
SOURCES.add(DirSource.kind, DirSource())
