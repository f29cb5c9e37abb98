"""Patch stacks on a tiny temp tree with the real GNU patch."""

from __future__ import annotations

import difflib
import os
import shutil
import time
from pathlib import Path

import pytest

from harness.kernels import patches
from harness.kernels.patches import PatchFailed, PatchOp

pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="GNU patch not installed")

INLINE = "".join(f"line {i}\n" for i in range(1, 31))


def make_patch(dest: Path, rel: str, old: str, new: str) -> Path:
    diff = difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{rel}", f"b/{rel}")
    dest.write_text("".join(diff))
    return dest


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "fs/ext4").mkdir(parents=True)
    (root / "fs/ext4/inline.c").write_text(INLINE)
    (root / "fs/ext4/super.c").write_text("super\n")
    return root


def test_apply_then_revert_in_order(tree: Path, tmp_path: Path) -> None:
    first = make_patch(tmp_path / "1.patch", "fs/ext4/inline.c", INLINE, INLINE.replace("line 5\n", "five\n"))
    after_first = INLINE.replace("line 5\n", "five\n")
    second = make_patch(
        tmp_path / "2.patch", "fs/ext4/inline.c", after_first, after_first.replace("line 20\n", "twenty\n")
    )
    patches.apply_stack(tree, [PatchOp(first), PatchOp(second)])
    assert "five\n" in (tree / "fs/ext4/inline.c").read_text()
    assert "twenty\n" in (tree / "fs/ext4/inline.c").read_text()
    # reverting the second on top leaves the first only
    patches.apply_stack(tree, [PatchOp(second, revert=True)])
    text = (tree / "fs/ext4/inline.c").read_text()
    assert "five\n" in text and "twenty\n" not in text


def test_order_matters(tree: Path, tmp_path: Path) -> None:
    after_first = INLINE.replace("line 5\n", "five\n")
    first = make_patch(tmp_path / "1.patch", "fs/ext4/inline.c", INLINE, after_first)
    second = make_patch(tmp_path / "2.patch", "fs/ext4/inline.c", after_first, after_first.replace("five\n", "FIVE\n"))
    with pytest.raises(PatchFailed):
        patches.apply_stack(tree, [PatchOp(second), PatchOp(first)])


def test_failing_hunk_surfaces(tree: Path, tmp_path: Path) -> None:
    other = INLINE.replace("line 25\n", "changed upstream\n")
    bad = make_patch(tmp_path / "bad.patch", "fs/ext4/inline.c", other, other.replace("changed upstream\n", "fixed\n"))
    before = (tree / "fs/ext4/inline.c").read_text()
    with pytest.raises(PatchFailed) as err:
        patches.apply_stack(tree, [PatchOp(bad)])
    assert err.value.file == "fs/ext4/inline.c"
    assert "-changed upstream" in err.value.hunk and "+fixed" in err.value.hunk
    assert err.value.exit_code == 6  # a KernelError
    # the dry run left the tree untouched, no .rej/.orig litter
    assert (tree / "fs/ext4/inline.c").read_text() == before
    assert sorted(p.name for p in (tree / "fs/ext4").iterdir()) == ["inline.c", "super.c"]


def test_second_hunk_is_the_one_reported(tree: Path, tmp_path: Path) -> None:
    new = INLINE.replace("line 2\n", "two\n").replace("line 28\n", "twenty-eight\n")
    good = make_patch(tmp_path / "p.patch", "fs/ext4/inline.c", INLINE, new)
    (tree / "fs/ext4/inline.c").write_text(INLINE.replace("line 28\n", "moved\n"))
    with pytest.raises(PatchFailed) as err:
        patches.apply_stack(tree, [PatchOp(good)])
    assert "+twenty-eight" in err.value.hunk and "+two" not in err.value.hunk


def test_reverting_an_unapplied_patch_fails(tree: Path, tmp_path: Path) -> None:
    p = make_patch(tmp_path / "p.patch", "fs/ext4/inline.c", INLINE, INLINE.replace("line 5\n", "five\n"))
    with pytest.raises(PatchFailed):
        patches.apply_stack(tree, [PatchOp(p, revert=True)])


def test_parse_git_style_patch() -> None:
    text = (
        "From abc Mon Sep 17 00:00:00 2001\nSubject: [PATCH] x\n---\n fs/a.c | 1 +\n\n"
        "diff --git a/fs/a.c b/fs/a.c\nindex 1..2 100644\n--- a/fs/a.c\n+++ b/fs/a.c\n"
        "@@ -1,2 +1,3 @@\n a\n+b\n c\n"
        "diff --git a/fs/new.c b/fs/new.c\nnew file mode 100644\n--- /dev/null\n+++ b/fs/new.c\n"
        "@@ -0,0 +1 @@\n+new\n-- \n2.39.2\n"
    )
    files = patches.parse(text)
    assert [(f.old, f.new) for f in files] == [("fs/a.c", "fs/a.c"), ("/dev/null", "fs/new.c")]
    assert files[0].hunks == ("@@ -1,2 +1,3 @@\n a\n+b\n c\n",)
    assert files[1].hunks == ("@@ -0,0 +1 @@\n+new\n",)  # the "-- " signature is not part of it


def test_digest_tracks_content_order_and_direction(tmp_path: Path) -> None:
    a = tmp_path / "a.patch"
    b = tmp_path / "b.patch"
    a.write_text("a\n")
    b.write_text("b\n")
    base = patches.digest([PatchOp(a), PatchOp(b)])
    assert base == patches.digest([PatchOp(a), PatchOp(b)])
    assert base != patches.digest([PatchOp(b), PatchOp(a)])
    assert base != patches.digest([PatchOp(a, revert=True), PatchOp(b)])
    a.write_text("a changed\n")
    assert base != patches.digest([PatchOp(a), PatchOp(b)])


def test_sync_switches_stacks_with_fresh_mtimes(tree: Path, tmp_path: Path) -> None:
    pristine = tree
    farm = tmp_path / "farm"
    shutil.copytree(pristine, farm, copy_function=os.link)
    state = tmp_path / "state.json"
    patches.StackState("pristine", ()).save(state)
    p = make_patch(tmp_path / "p.patch", "fs/ext4/inline.c", INLINE, INLINE.replace("line 5\n", "five\n"))
    stamp = time.time() - 1000
    os.utime(pristine / "fs/ext4/inline.c", (stamp, stamp))

    assert patches.sync(farm, pristine, (PatchOp(p),), state)
    patched = farm / "fs/ext4/inline.c"
    assert "five" in patched.read_text()
    assert patched.stat().st_ino != (pristine / "fs/ext4/inline.c").stat().st_ino  # link broken
    assert (pristine / "fs/ext4/inline.c").read_text() == INLINE  # pristine untouched
    assert (farm / "fs/ext4/super.c").stat().st_ino == (pristine / "fs/ext4/super.c").stat().st_ino
    assert not patches.sync(farm, pristine, (PatchOp(p),), state)  # same stack: nothing to do

    assert patches.sync(farm, pristine, (), state)  # back to pristine
    assert patched.read_text() == INLINE
    assert patched.stat().st_mtime > stamp + 500  # newer than any object built from the patch
    assert (pristine / "fs/ext4/inline.c").stat().st_mtime == pytest.approx(stamp)


def test_sync_after_failed_apply_restores(tree: Path, tmp_path: Path) -> None:
    farm = tmp_path / "farm"
    shutil.copytree(tree, farm, copy_function=os.link)
    state = tmp_path / "state.json"
    patches.StackState("pristine", ()).save(state)
    good = make_patch(tmp_path / "good.patch", "fs/ext4/inline.c", INLINE, INLINE.replace("line 5\n", "five\n"))
    bad = make_patch(tmp_path / "bad.patch", "fs/ext4/super.c", "nope\n", "yes\n")
    with pytest.raises(PatchFailed):
        patches.sync(farm, tree, (PatchOp(good), PatchOp(bad)), state)
    assert "five" in (farm / "fs/ext4/inline.c").read_text()  # first one went in
    patches.sync(farm, tree, (), state)
    assert (farm / "fs/ext4/inline.c").read_text() == INLINE


def test_new_file_is_removed_on_restore(tree: Path, tmp_path: Path) -> None:
    farm = tmp_path / "farm"
    shutil.copytree(tree, farm, copy_function=os.link)
    state = tmp_path / "state.json"
    patches.StackState("pristine", ()).save(state)
    add = make_patch(tmp_path / "add.patch", "fs/ext4/new.c", "", "new\n")
    add.write_text(add.read_text().replace("--- a/fs/ext4/new.c", "--- /dev/null"))
    patches.sync(farm, tree, (PatchOp(add),), state)
    assert (farm / "fs/ext4/new.c").read_text() == "new\n"
    patches.sync(farm, tree, (), state)
    assert not (farm / "fs/ext4/new.c").exists()
