"""``harness setup --fstests [SOURCE]``: an fstests tree fetched into the cache, where ``harness fstests`` finds it.

Debian has no fstests package, and a fresh clone of this project has nothing beside it,
so the harness gets the tree itself.  SOURCE is one of:

- a git URL, optionally ``URL@REF`` (a tag, a branch or a commit; the part after the last
  ``@`` when it holds no ``/`` or ``:``).  The default is upstream fstests at the release
  pinned below.  One ``git fetch --depth 1`` of that ref into a new repository: a few MB.
- a local git checkout: its commit (``PATH@REF``, else HEAD) is fetched the same way
  (uncommitted changes are not: name the checkout with ``--fstests`` to run it as it is).
- a plain folder or a tarball (``git archive`` output): copied.

The tree lands in ``<cache>/fstests-src/<kind>-<revision>`` (an existing one of the same
revision is reused) and the link ``current`` names it: ``harness.fstests.build.source_path``
takes it when neither ``--fstests`` nor ``$HARNESS_FSTESTS`` names a tree.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from harness import git
from harness.errors import GitError, HarnessError
from harness.fstests import build
from harness.paths import FSTESTS_FETCHED, cache_dir

UPSTREAM = "https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git"
# The release ../shared/fstests' snapshot is (commit 63a29724, 2026-01-01): the tree CI builds and runs.
RELEASE = "v2026.01.05"
DEFAULT = f"{UPSTREAM}@{RELEASE}"
_REF = re.compile(r"^[^/:@\s]+$")

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class Fetched:
    path: Path  # the tree in the cache
    source: str  # what the user named (without @REF)
    ref: str | None
    revision: str  # the commit, or sha256:... of a copied folder or tarball
    reused: bool  # the cache already held this revision


def split_ref(source: str) -> tuple[str, str | None]:
    """``URL@REF`` -> (URL, REF); a source with no such ``@`` -> (source, None)."""
    if Path(source).expanduser().exists():
        return source, None
    head, at, ref = source.rpartition("@")
    if at and head and _REF.match(ref):
        return head, ref
    return source, None


def fetch(source: str = DEFAULT, progress: Progress = None) -> Fetched:
    """Put the fstests tree ``source`` names into the cache and make it the one ``harness fstests`` uses."""
    where, ref = split_ref(source)
    local = Path(where).expanduser()
    root = cache_dir(FSTESTS_FETCHED)
    with FileLock(str(root / ".lock")):
        work = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
        try:
            if local.exists() and not (local / ".git").exists():
                if ref:
                    raise HarnessError(f"{where} is not a git checkout: it has no @{ref}",
                                       hint="name the folder or tarball without @REF")
                got = _copy(local.resolve(), work, root)
            else:
                url = local.resolve().as_uri() if local.exists() else where
                if local.exists() and git.run(local, "status", "--porcelain", check=False).stdout.strip() and progress:
                    progress(f"{where} has uncommitted changes: they are not fetched (--fstests {where} runs it as it is)")
                got = _git(url, ref, work, root, progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _point_current(root, got.path)
    return Fetched(got.path, where, ref, got.revision, got.reused)


def _git(url: str, ref: str | None, work: Path, root: Path, progress: Progress) -> Fetched:
    if progress:
        progress(f"fetching fstests {ref or 'HEAD'} from {url}")
    repo = work / "tree"
    git.run(work, "init", "-q", str(repo))
    git.run(repo, "remote", "add", "origin", url)
    try:
        git.run(repo, "fetch", "-q", "--depth", "1", "--no-tags", "origin", ref or "HEAD")
    except GitError as exc:
        raise GitError(f"cannot fetch fstests {ref or 'HEAD'} from {url}: {exc}",
                       hint="name a reachable git URL[@TAG], a local checkout or a tarball") from None
    git.run(repo, "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", "FETCH_HEAD")
    commit = git.rev_parse(repo, "HEAD")
    return _settle(repo, root / f"git-{commit[:12]}", url, ref, commit)


def _copy(local: Path, work: Path, root: Path) -> Fetched:
    tree = build.identify(local)  # a tarball or an fstests folder, else a one-line error
    if tree.kind == "tarball":
        staged = work / local.name
        shutil.copy2(local, staged)
    else:
        staged = work / "tree"
        for rel in build.walk_files(local):
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(local / rel, staged / rel)
    short = tree.revision.removeprefix("sha256:")[:12]
    name = f"tarball-{short}-{local.name}" if tree.kind == "tarball" else f"dir-{short}"
    return _settle(staged, root / name, str(local), None, tree.revision)


def _settle(staged: Path, final: Path, source: str, ref: str | None, revision: str) -> Fetched:
    """``staged`` renamed to ``final`` once it is an fstests tree; an existing ``final`` is kept."""
    if final.exists():
        return Fetched(final, source, ref, revision, True)
    build.identify(staged)  # raises when what came is not fstests
    staged.rename(final)
    return Fetched(final, source, ref, revision, False)


def _point_current(root: Path, target: Path) -> None:
    link = root / "current"
    tmp = root / f".current-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    os.replace(tmp, link)
