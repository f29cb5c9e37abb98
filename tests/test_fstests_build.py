"""fstests build: naming the tree, its revision, the cached build (once, locked, never partial)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
from shared_data import SETS, fstests_tarball

from harness import setup
from harness.errors import HarnessError, MissingTool, UnknownName
from harness.fstests import build, config

FSTESTS = SETS["fstests"]  # $HARNESS_FSTESTS, default ../shared/fstests
SHARED_TARBALL = fstests_tarball(FSTESTS.path)
needs_tarball = pytest.mark.skipif(SHARED_TARBALL is None and FSTESTS.here(), reason=(
    f"{FSTESTS.path} is an fstests checkout; this test reads the commit `git archive` wrote into a tarball"))

# A stand-in for fstests' Makefile: makes what a build must leave, counts builds in
# $COUNTER, fails when $FAIL is set; make's -j is ignored.
FAKE_MAKEFILE = """\
default:
\t@test -z "$(FAIL)" || { echo "src/holetest.c:1: error: boom"; exit 2; }
\tmkdir -p ltp src tests/generic
\ttouch ltp/fsstress ltp/fsx src/holetest
\tprintf '001 rw auto quick\\n346 auto quick rw mmap\\n' > tests/generic/group.list
\techo built >> "$(COUNTER)"
"""


def fake_tree(root: Path, extra: str = "") -> Path:
    for rel in build.SOURCE_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}{extra}\n")
    (root / "check").chmod(0o755)
    (root / "Makefile").write_text(FAKE_MAKEFILE)
    return root


def git(root: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(root), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True, env=env).stdout


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """Packages reported installed; $COUNTER counts builds."""
    counter = tmp_path / "builds.count"
    monkeypatch.setenv("COUNTER", str(counter))
    monkeypatch.setattr(setup, "package_versions", lambda pkgs: {p: "1.0" for p in pkgs})
    return counter


def builds(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_source_path_needs_a_name(monkeypatch):
    monkeypatch.delenv(build.ENV, raising=False)
    with pytest.raises(MissingTool, match="no fstests tree named") as exc:
        build.source_path(None)
    assert "--fstests PATH" in exc.value.one_line() and "HARNESS_FSTESTS" in exc.value.one_line()


def test_source_path_from_env_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(build.ENV, str(tmp_path))
    assert build.source_path() == tmp_path
    with pytest.raises(UnknownName, match="does not exist"):
        build.source_path(tmp_path / "nope")


def test_identify_plain_dir_by_content(tmp_path):
    tree = fake_tree(tmp_path / "a")
    first = build.identify(tree)
    assert first.kind == "dir" and first.revision.startswith("sha256:")
    assert build.identify(tree) == first
    (tree / "common" / "rc").write_text("# changed\n")
    assert build.identify(tree).revision != first.revision


def test_identify_not_fstests(tmp_path):
    with pytest.raises(UnknownName, match="not an fstests tree"):
        build.identify(tmp_path)
    odd = tmp_path / "x.txt"
    odd.write_text("")
    with pytest.raises(UnknownName, match="neither a directory nor a tarball"):
        build.identify(odd)


def test_identify_git_checkout_clean_and_dirty(tmp_path):
    tree = fake_tree(tmp_path / "repo")
    git(tree, "init", "-q")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "x")
    head = git(tree, "rev-parse", "HEAD").strip()
    assert build.identify(tree) == build.Tree(tree, "git", head)
    (tree / "results").mkdir()  # ignored files (builds, results) do not make it dirty
    (tree / ".gitignore").write_text("/results\n")
    git(tree, "add", ".gitignore")
    git(tree, "commit", "-q", "-m", "ignore")
    (tree / "results" / "x").write_text("")
    assert build.identify(tree).revision == git(tree, "rev-parse", "HEAD").strip()
    (tree / "common" / "rc").write_text("# edited\n")
    assert build.identify(tree).revision.startswith("sha256:")


def _tarball(path: Path, commit: str | None, top: str = "fstests") -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": commit} if commit else None) as tar:
        for rel in build.SOURCE_FILES + ("Makefile",):
            data = FAKE_MAKEFILE.encode() if rel == "Makefile" else f"# {rel}\n".encode()
            info = tarfile.TarInfo(f"{top}/{rel}" if top else rel)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return path


def test_identify_tarball_commit_or_digest(tmp_path):
    commit = "63a29724a85f1999e49bf0a9bf0d22643b6116e5"
    assert build.identify(_tarball(tmp_path / "a.tar.gz", commit)).revision == commit
    plain = build.identify(_tarball(tmp_path / "b.tar.gz", None))
    assert plain.kind == "tarball" and plain.revision.startswith("sha256:")


@FSTESTS.mark
@needs_tarball
def test_identify_shared_tarball():
    tree = build.identify(SHARED_TARBALL)
    assert tree.kind == "tarball" and len(tree.revision) == 40
    assert SHARED_TARBALL.name.startswith(f"fstests-{tree.revision[:8]}")


def test_toolchain_names_gcc_and_the_libraries(fake_env):
    tools = build.toolchain()
    assert tools.startswith("gcc") and "xfslibs-dev 1.0" in tools


def test_build_key_changes_with_revision_and_toolchain():
    key = build.build_key("abc", "gcc 12")
    assert key == build.build_key("abc", "gcc 12")
    assert len({key, build.build_key("abd", "gcc 12"), build.build_key("abc", "gcc 13")}) == 3


def test_ensure_built_once_from_a_tarball(tmp_path, fake_env):
    tarball = _tarball(tmp_path / "fstests-x.tar.gz", "0" * 40)
    lines = []
    first = build.ensure_built(tarball, progress=lines.append)
    assert builds(fake_env) == 1 and lines and "make -j2" in lines[0]
    assert first.root.parent == build.cache_dir("fstests") and (first.root / "src" / "holetest").exists()
    with tarfile.open(first.archive) as tar:
        assert {"./check", "./src/holetest", "./ltp/fsx"} <= set(tar.getnames()) and build.MARKER not in str(tar.getnames())
    marker = json.loads((first.root / build.MARKER).read_text())
    assert marker["key"] == first.key and marker["revision"] == "0" * 40
    again = build.ensure_built(tarball)
    assert builds(fake_env) == 1 and again.root == first.root and again.seconds == 0.0
    assert not list(first.root.parent.glob(".partial-*"))


def test_ensure_built_leaves_the_checkout_untouched(tmp_path, fake_env):
    tree = fake_tree(tmp_path / "src")
    done = build.ensure_built(tree)
    assert not (tree / "ltp").exists() and (done.root / "ltp" / "fsx").exists()
    assert build.group_index(done.root) == config.parse_groups("001 rw auto quick\n346 auto quick rw mmap\n", "generic")


def test_two_processes_build_once(tmp_path, fake_env):
    tree = fake_tree(tmp_path / "src")
    roots, errors = [], []

    def one():
        try:
            roots.append(build.ensure_built(tree).root)
        except Exception as exc:  # noqa: BLE001 (reported by the assert below)
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(roots)) == 1 and builds(fake_env) == 1


def test_failed_build_leaves_nothing_taken_for_whole(tmp_path, fake_env, monkeypatch):
    tree = fake_tree(tmp_path / "src")
    monkeypatch.setenv("FAIL", "1")
    with pytest.raises(HarnessError, match="building fstests from .* failed") as exc:
        build.ensure_built(tree)
    assert "see " in exc.value.one_line()
    cache = build.cache_dir("fstests")
    assert not [p for p in cache.iterdir() if p.is_dir()]
    monkeypatch.delenv("FAIL")
    assert build.ensure_built(tree).root.exists() and builds(fake_env) == 1


def test_a_build_without_its_marker_is_rebuilt(tmp_path, fake_env):
    tree = fake_tree(tmp_path / "src")
    done = build.ensure_built(tree)
    (done.root / build.MARKER).unlink()
    assert build.ensure_built(tree).root == done.root and builds(fake_env) == 2


def test_missing_build_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(setup, "package_versions", lambda pkgs: {})
    with pytest.raises(MissingTool, match="xfslibs-dev") as exc:
        build.ensure_built(fake_tree(tmp_path / "src"))
    assert "harness setup --test" in exc.value.one_line()


def test_group_index_needs_group_lists(tmp_path):
    with pytest.raises(HarnessError, match="group.list"):
        build.group_index(tmp_path)


@pytest.mark.vm  # shares the real cache like the VM tests (one ~40 s make per tree and toolchain)
@FSTESTS.mark
@needs_tarball
def test_real_build_of_the_shared_tarball():
    done = build.ensure_built(SHARED_TARBALL)
    for rel in ("check", "ltp/fsstress", "ltp/fsx", "src/holetest"):
        assert (done.root / rel).exists()
    with tarfile.open(done.archive) as tar:
        names = set(tar.getnames())
    assert {"./check", "./src/holetest", "./tests/generic/group.list"} <= names and not any(n.endswith(".o") for n in names)
    index = build.group_index(done.root)
    assert {"generic/001", "generic/344", "generic/346", "xfs/001"} <= set(index)
    assert "quick" in index["generic/346"]
