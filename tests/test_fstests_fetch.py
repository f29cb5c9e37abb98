"""``harness setup --fstests``: fstests fetched into the cache (git URL@REF, checkout, folder, tarball), found there by
``harness fstests`` when nothing else names a tree.  Never the network: git repositories made here, served as file://."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
from shared_data import SETS, fstests_tarball
from test_fstests_build import _tarball, fake_tree, git

from harness import setup
from harness.cli import main
from harness.errors import GitError, HarnessError, UnknownName
from harness.fstests import build, fetch
from harness.paths import FSTESTS_FETCHED, cache_dir, fetched_fstests

SNAPSHOT = fstests_tarball(SETS["fstests"].path)  # read before _no_env clears $HARNESS_FSTESTS


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(build.ENV, raising=False)


def repo_of(tree: Path, tag: str = "v1") -> str:
    """``tree`` committed into a git repository of its own and tagged; returns the commit."""
    git(tree, "init", "-q", "-b", "master")
    git(tree, "add", "-A", "-f")  # -f: a tarball may hold files its .gitignore names
    git(tree, "commit", "-q", "-m", "fstests")
    git(tree, "tag", tag)
    return git(tree, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize("source, want", [
    ("https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git@v2026.01.05",
     ("https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git", "v2026.01.05")),
    ("https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git", ("https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git", None)),
    ("git@github.com:kdave/xfstests.git", ("git@github.com:kdave/xfstests.git", None)),  # ssh's user@, no ref
    ("git@github.com:kdave/xfstests.git@for-next", ("git@github.com:kdave/xfstests.git", "for-next")),
    ("file:///srv/fstests@63a29724a85f1999e49bf0a9bf0d22643b6116e5",
     ("file:///srv/fstests", "63a29724a85f1999e49bf0a9bf0d22643b6116e5")),
    ("/srv/fstests@", ("/srv/fstests@", None)),
])
def test_split_ref(source, want):
    assert fetch.split_ref(source) == want


def test_split_ref_keeps_an_existing_path_whole(tmp_path):
    odd = tmp_path / "fstests@v1"
    odd.mkdir()
    assert fetch.split_ref(str(odd)) == (str(odd), None)


def test_the_default_is_upstream_at_the_pinned_release():
    assert fetch.DEFAULT == "https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git@v2026.01.05"


def test_fetch_a_git_url_at_a_tag_then_harness_fstests_finds_it(tmp_path):
    upstream = fake_tree(tmp_path / "upstream")
    commit = repo_of(upstream)
    assert fetched_fstests() is None
    got = fetch.fetch(f"{upstream.as_uri()}@v1")
    assert (got.revision, got.ref, got.reused) == (commit, "v1", False)
    assert got.path.name == f"git-{commit[:12]}" and (got.path / "check").is_file()
    assert build.source_path() == got.path  # neither --fstests nor $HARNESS_FSTESTS: the fetched tree
    tree = build.identify(build.source_path())
    assert (tree.kind, tree.revision) == ("git", commit)  # a clean checkout: its commit keys the build
    assert fetch.fetch(f"{upstream.as_uri()}@{commit}").reused  # the same commit named by its id
    assert build.source_path(str(upstream)) == upstream.resolve()  # a named tree still wins


def test_a_new_tag_moves_current(tmp_path):
    upstream = fake_tree(tmp_path / "upstream")
    first = repo_of(upstream)
    (upstream / "common" / "rc").write_text("# rc, next release\n")
    git(upstream, "commit", "-q", "-am", "next")
    git(upstream, "tag", "v2")
    second = fetch.fetch(f"{upstream.as_uri()}@v2")
    assert second.revision != first and build.identify(build.source_path()).revision == second.revision
    assert fetch.fetch(f"{upstream.as_uri()}@v1").revision == first
    assert build.source_path().resolve().name == f"git-{first[:12]}"


def test_fetch_a_local_checkout_takes_its_commit_not_its_edits(tmp_path):
    upstream = fake_tree(tmp_path / "upstream")
    commit = repo_of(upstream)
    (upstream / "check").write_text("# edited, not committed\n")
    said = []
    got = fetch.fetch(str(upstream), progress=said.append)
    assert got.revision == commit and (got.path / "check").read_text() == "# check\n"
    assert any("uncommitted changes" in line for line in said), said


def test_fetch_a_folder_and_a_tarball(tmp_path):
    plain = fetch.fetch(str(fake_tree(tmp_path / "plain")))
    assert plain.path.name.startswith("dir-") and build.identify(plain.path).kind == "dir"
    commit = "63a29724a85f1999e49bf0a9bf0d22643b6116e5"
    packed = fetch.fetch(str(_tarball(tmp_path / "fstests-63a29724.tar.gz", commit)))
    assert packed.revision == commit and packed.path.name == "tarball-63a29724a85f-fstests-63a29724.tar.gz"
    assert build.identify(build.source_path()) == build.Tree(packed.path, "tarball", commit)


@pytest.mark.parametrize("make, error, words", [
    (lambda tmp: f"{(tmp / 'nothing').as_uri()}@v1", GitError, "cannot fetch fstests v1 from file://"),
    (lambda tmp: f"{repo_tree(tmp / 'other')}@v1", UnknownName, "is not an fstests tree"),
    (lambda tmp: f"{fake_tree(tmp / 'plain')}@v1", HarnessError, "is not a git checkout: it has no @v1"),
])
def test_bad_sources_fail_in_one_line_and_leave_nothing(tmp_path, make, error, words):
    tmp_path.joinpath("other").mkdir()
    tmp_path.joinpath("plain").mkdir()
    with pytest.raises(error, match=words) as exc:
        fetch.fetch(make(tmp_path))
    assert "\n" not in exc.value.one_line()
    assert fetched_fstests() is None
    assert [p.name for p in fetched_parent().iterdir()] == [".lock"]  # no partial tree left behind


def repo_tree(tree: Path) -> str:
    (tree / "README").write_text("not fstests\n")
    repo_of(tree)
    return tree.as_uri()


def fetched_parent() -> Path:
    return cache_dir(FSTESTS_FETCHED)


def test_harness_fstests_without_a_tree_says_to_run_setup():
    with pytest.raises(Exception, match="no fstests tree named") as exc:
        build.source_path()
    assert "harness setup --fstests" in exc.value.one_line()


@SETS["fstests"].mark
def test_setup_fetches_the_snapshot_from_a_git_repository_made_of_it(tmp_path, monkeypatch, capsys):
    """The shared snapshot made into a local "upstream" tagged like the pinned release; `harness setup --fstests`
    fetches it by file://URL@TAG as it would fetch git.kernel.org's."""
    if SNAPSHOT is None:
        pytest.skip(f"{SETS['fstests'].path} is a checkout: this test makes its repository from the tarball")
    unpack = tmp_path / "unpack"
    unpack.mkdir()
    with tarfile.open(SNAPSHOT) as tar:
        tar.extractall(unpack, filter="tar")
    (upstream,) = unpack.iterdir()
    commit = repo_of(upstream, fetch.RELEASE)
    asked = []
    monkeypatch.setattr(setup, "ensure", lambda **kw: asked.append(kw) or [])
    assert main(["setup", "--fstests", f"{upstream.as_uri()}@{fetch.RELEASE}"]) == 0
    out = capsys.readouterr().out
    assert f"fstests {commit[:19]} ({fetch.RELEASE} of {upstream.as_uri()})" in out and "host prerequisites present" in out
    assert asked == [{"build": False, "install": True, "test": False, "fstests": True}]  # and its build packages
    tree = build.identify(build.source_path())
    assert (tree.kind, tree.revision) == ("git", commit)
    files = build.git_files(tree.path)
    assert len(files) > 4000 and {"check", "common/rc", "src/holetest.c", "ltp/fsx.c"} <= set(files)
    assert build.tree_digest(tree.path, files) == build.tree_digest(upstream, build.walk_files(upstream))
    status = subprocess.run(["git", "-C", str(tree.path), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == ""
