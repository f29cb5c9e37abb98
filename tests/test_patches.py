"""Patch stacks on a tiny temp tree with the real GNU patch."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.kernels import patches
from harness.kernels.cache import Layout, find_named
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


# --- load_patches: what --patch P accepts ---------------------------------------------------------


def mail_patch(sep: str, subject: str, diff: str) -> str:
    """One message as git format-patch (or b4, with its own separator) writes it."""
    return (f"{sep}\nFrom: A Developer <dev@example.org>\nDate: Mon, 1 Dec 2026 10:00:00 +0000\n"
            f"Subject: {subject}\n\nWhy this change.\n\nSigned-off-by: A Developer <dev@example.org>\n---\n"
            f" fs/ext4/inline.c | 2 +-\n\n{diff}-- \n2.39.5\n\n")


def three_diffs(tmp_path: Path) -> list[str]:
    texts = [INLINE]
    for old, new in (("line 5\n", "five\n"), ("line 10\n", "ten\n"), ("line 20\n", "twenty\n")):
        texts.append(texts[-1].replace(old, new))
    return [make_patch(tmp_path / f"d{i}", "fs/ext4/inline.c", a, b).read_text()
            for i, (a, b) in enumerate(zip(texts, texts[1:]))]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "patches"


@pytest.mark.parametrize("sep", ["From 8d3c5f0e4b1a2c3d4e5f60718293a4b5c6d7e8f9 Mon Sep 17 00:00:00 2001",
                                 "From git@z Thu Jan  1 00:00:00 1970"])  # git format-patch, b4 am
def test_mbox_with_three_patches_is_split(tree: Path, tmp_path: Path, cache: Path, sep: str) -> None:
    diffs = three_diffs(tmp_path)
    cover = f"{sep}\nSubject: [PATCH 0/3] ext4: three lines\n\nA cover letter has no diff.\n\n"
    mbox = tmp_path / "series.mbx"
    mbox.write_text(cover + "".join(mail_patch(sep, f"[PATCH {i}/3] ext4: change {i}", d)
                                    for i, d in enumerate(diffs, 1)))
    ops = patches.load_patches(str(mbox))
    assert [op.subject for op in ops] == ["ext4: change 1", "ext4: change 2", "ext4: change 3"]
    assert all(op.path.parent == cache and not op.revert for op in ops)
    for op in ops:  # content-addressed: the name starts with the sha256 of the bytes it holds
        assert op.sha256 == hashlib.sha256(op.path.read_bytes()).hexdigest()
        assert op.path.name.startswith(op.sha256[:16])
    assert patches.load_patches(str(mbox)) == ops  # the same pieces again, nothing new written
    assert len(list(cache.iterdir())) == 3
    patches.apply_stack(tree, ops)
    text = (tree / "fs/ext4/inline.c").read_text()
    assert "five\n" in text and "ten\n" in text and "twenty\n" in text


def test_series_file_and_its_folder(tree: Path, tmp_path: Path) -> None:
    folder = tmp_path / "stack"
    folder.mkdir()
    for i, d in enumerate(three_diffs(tmp_path), 1):
        (folder / f"000{i}-change.patch").write_text(mail_patch("From 0 Mon Sep 17 00:00:00 2001",
                                                                 f"[PATCH {i}/3] change {i}", d))
    (folder / "series").write_text("# the stack\n0001-change.patch\n0002-change.patch -p1\n\n0003-change.patch\n")
    ops = patches.load_patches(str(folder / "series"))
    assert [op.path.name for op in ops] == ["0001-change.patch", "0002-change.patch", "0003-change.patch"]
    assert patches.load_patches(str(folder)) == ops
    (folder / "list").write_text((folder / "series").read_text())  # a series file by its content, not its name
    assert patches.load_patches(str(folder / "list")) == ops
    patches.apply_stack(tree, ops)
    reverted = patches.load_patches(f"revert:{folder}")  # a series reverts last first
    assert [op.path.name for op in reverted] == ["0003-change.patch", "0002-change.patch", "0001-change.patch"]
    assert all(op.revert for op in reverted)
    patches.apply_stack(tree, reverted)
    assert (tree / "fs/ext4/inline.c").read_text() == INLINE
    (folder / "series").write_text("0001-change.patch -p0\n")
    with pytest.raises(SpecError, match="only -p1"):
        patches.load_patches(str(folder))


def test_revert_of_one_patch(tree: Path, tmp_path: Path) -> None:
    p = make_patch(tmp_path / "fix.patch", "fs/ext4/inline.c", INLINE, INLINE.replace("line 5\n", "five\n"))
    (op,) = patches.load_patches(f"revert:{p}")
    assert op == PatchOp(p.resolve(), revert=True)
    assert op.subject == "fix.patch"  # a plain diff has no Subject: the file name stands for it
    assert op.describe() == "revert fix.patch"


@pytest.mark.parametrize("bad", ["a/../../etc/passwd", "/etc/passwd"])
def test_paths_leaving_the_tree_are_refused_before_anything_applies(tree: Path, tmp_path: Path, bad: str) -> None:
    good = make_patch(tmp_path / "good.patch", "fs/ext4/inline.c", INLINE, INLINE.replace("line 5\n", "five\n"))
    evil = tmp_path / "evil.patch"
    evil.write_text(f"--- {bad}\n+++ {bad}\n@@ -1 +1 @@\n-root\n+toor\n")
    with pytest.raises(SpecError, match="leaves the kernel tree") as err:
        patches.load_patches(str(evil))
    assert "\n" not in err.value.one_line()
    with pytest.raises(SpecError, match="leaves the kernel tree"):
        patches.apply_stack(tree, [PatchOp(good), PatchOp(evil)])
    assert (tree / "fs/ext4/inline.c").read_text() == INLINE  # the good one was not applied either
    rename = tmp_path / "rename.patch"
    rename.write_text("diff --git a/fs/x.c b/fs/y.c\nsimilarity index 100%\nrename from fs/x.c\nrename to ../y.c\n")
    with pytest.raises(SpecError, match=r"'\.\./y\.c'"):
        patches.load_patches(str(rename))


def test_hunk_lines_that_look_like_headers_are_not_paths(tmp_path: Path) -> None:
    """Removing a line "-- /x" and adding "++ y" makes a "--- /x" / "+++ y" pair inside a hunk."""
    old, new = "a\n-- /etc/x\nb\n", "a\n++ ../y\nb\n"
    p = make_patch(tmp_path / "p.patch", "fs/notes.txt", old, new)
    assert "\n--- /etc/x\n+++ ../y\n" in p.read_text()
    (op,) = patches.load_patches(str(p))
    patches.check_paths(op)


def test_missing_and_empty_patches_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist") as err:
        patches.load_patches(str(tmp_path / "nope.patch"))
    assert err.value.exit_code == 3 and "\n" not in err.value.one_line()
    with pytest.raises(SpecError, match="does not exist"):
        patches.load_patches(f"revert:{tmp_path / 'nope.patch'}")
    (tmp_path / "empty.patch").write_text("just words\n")
    with pytest.raises(SpecError, match="holds no diff"):
        patches.load_patches(str(tmp_path / "empty.patch"))
    (tmp_path / "dir").mkdir()
    with pytest.raises(SpecError, match="without a series file"):
        patches.load_patches(str(tmp_path / "dir"))
    (tmp_path / "dir" / "series").write_text("gone.patch\n")
    with pytest.raises(SpecError, match="gone.patch does not exist"):
        patches.load_patches(str(tmp_path / "dir"))


def test_subject_folding_and_encoded_words() -> None:
    text = "From x Mon Sep 17 00:00:00 2001\nSubject: [PATCH v2 2/7] ext2: a subject\n that folds\n\nbody\n"
    assert patches.subject(text) == "ext2: a subject that folds"
    assert patches.subject("Subject: [RFC PATCH] =?UTF-8?q?ext4:_caf=C3=A9?=\n\n") == "ext4: café"
    assert patches.subject("--- a/x\n+++ b/x\n") == ""


def test_shipped_patches_load_with_their_subjects() -> None:
    root = Path(__file__).resolve().parent.parent / "reproducers"
    (op,) = patches.load_patches(str(root / "ext2_iomap_blkseq/patches/0002-ext2-validate-cached-iomap-with-i_blkseq.patch"))
    assert op.subject == "ext2: validate cached iomap with i_blkseq"
    assert len(op.sha256) == 64


# --- a kernel built with --name, found by that name (harness.kernels.cache.find_named) --------------


def fake_entry(layout: Layout, key: str, name: str, built_at: str, version: str = "6.1.192") -> Path:
    entry = layout.built / key
    entry.mkdir(parents=True)
    source, _, variant = name.partition("/")
    meta = {"key": key, "name": name, "source": source, "variant": variant or "default",
            "release": f"{version}-lean", "version": version, "built_at": built_at}
    (entry / "meta.json").write_text(json.dumps(meta))
    for artifact in ("bzImage", "vmlinux", "System.map"):
        (entry / artifact).write_text("x")
    (entry / "config").write_text("CONFIG_PVH=y\n")
    (entry / ".complete").write_text(key + "\n")
    return entry


def test_find_named_takes_the_newest_build_of_that_name(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "kernels")
    fake_entry(layout, "old", "debian-src:6.1.192/mine", "2026-11-01T10:00:00")
    newest = fake_entry(layout, "new", "debian-src:6.1.192/mine", "2026-12-01T10:00:00")
    fake_entry(layout, "other", "debian-src:6.1.192/theirs", "2026-12-02T10:00:00")
    plain = fake_entry(layout, "plain", "debian-src:6.1.192", "2026-12-02T10:00:00")
    (layout.built / "half").mkdir()  # a build being stored: no .complete, not a candidate
    kernel = find_named("debian-src:6.1.192/mine", layout)
    assert kernel is not None
    assert kernel.name == "debian-src:6.1.192/mine" and kernel.kind == "build"
    assert kernel.image == newest / "bzImage" and kernel.extra["key"] == "new"
    assert (newest / ".last_used").exists()  # a use, for the LRU eviction
    found = find_named("debian-src:6.1.192", layout)
    assert found is not None and found.image == plain / "bzImage"
    assert find_named("debian-src:6.1.192/nobody", layout) is None
