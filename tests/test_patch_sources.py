"""``--patch git:PATH@A..B`` and ``--patch lore:MSGID``: the same stack (same bytes, same cache key) as the
patch files they stand for.  A git repository made here, b4 on a local mbox: never the network."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import SpecError, UnknownName
from harness.kernels import patches
from harness.kernels.patches import apply_stack, digest, load_patches

AUTHOR = {"GIT_AUTHOR_NAME": "A U Thor", "GIT_AUTHOR_EMAIL": "author@example.org",
          "GIT_COMMITTER_NAME": "A U Thor", "GIT_COMMITTER_EMAIL": "author@example.org",
          "GIT_AUTHOR_DATE": "2026-12-01T10:00:00Z", "GIT_COMMITTER_DATE": "2026-12-01T10:00:00Z"}
COVER = "0-ext4-fix@harness.test"


def sh(cwd: Path, *argv: str) -> str:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A kernel-like repository: a base commit tagged ``base``, then two fixes (``HEAD~2..HEAD``)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no user git or b4 config
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home" / ".cache"))
    for key, value in AUTHOR.items():
        monkeypatch.setenv(key, value)
    repo = tmp_path / "linux"
    (repo / "fs" / "ext4").mkdir(parents=True)
    sh(tmp_path, "git", "init", "-q", str(repo))
    (repo / "fs" / "ext4" / "inline.c").write_text("int ext4_write_inline_data(void)\n{\n\treturn 0;\n}\n")
    (repo / "fs" / "ext4" / "inode.c").write_text("int ext4_writepages(void)\n{\n\treturn 0;\n}\n")
    sh(repo, "git", "add", ".")
    sh(repo, "git", "commit", "-qm", "base")
    sh(repo, "git", "tag", "base")
    (repo / "fs" / "ext4" / "inline.c").write_text("int ext4_write_inline_data(void)\n{\n\treturn -1;\n}\n")
    sh(repo, "git", "commit", "-qam", "ext4: fail inline writes", "-m", "Signed-off-by: A U Thor <author@example.org>")
    (repo / "fs" / "ext4" / "inode.c").write_text("int ext4_writepages(void)\n{\n\treturn 1;\n}\n")
    sh(repo, "git", "commit", "-qam", "ext4: writepages says 1", "-m", "Signed-off-by: A U Thor <author@example.org>")
    return repo


def format_patch(repo: Path, out: Path, *extra: str) -> list[Path]:
    sh(repo, "git", "format-patch", "-q", "-o", str(out), *extra, "base..HEAD")
    return sorted(out.glob("*.patch"))


def test_a_git_range_is_the_stack_of_its_format_patch_files(tree, tmp_path):
    files = format_patch(tree, tmp_path / "fp")
    from_files = [op for f in files for op in load_patches(str(f))]
    from_git = load_patches(f"git:{tree}@base..HEAD")
    assert [op.subject for op in from_git] == ["ext4: fail inline writes", "ext4: writepages says 1"]
    assert [op.sha256 for op in from_git] == [op.sha256 for op in from_files]
    assert digest(from_git) == digest(from_files)  # the patched kernel's cache key
    assert load_patches(f"git:{tree}@HEAD~2..HEAD") == from_git  # any spelling of the range
    assert digest(load_patches(f"git:{tree}@base..HEAD~1")) != digest(from_git)


def test_revert_of_a_git_range_reverts_last_first(tree):
    ops = load_patches(f"revert:git:{tree}@base..HEAD")
    assert [(op.subject, op.revert) for op in ops] == [("ext4: writepages says 1", True),
                                                       ("ext4: fail inline writes", True)]
    pristine = tree.parent / "pristine"
    shutil.copytree(tree, pristine, ignore=shutil.ignore_patterns(".git"))
    apply_stack(pristine, ops)  # HEAD's tree, reverted: the base
    assert (pristine / "fs" / "ext4" / "inline.c").read_text().count("return 0;") == 1
    assert (pristine / "fs" / "ext4" / "inode.c").read_text().count("return 0;") == 1


def test_a_path_with_an_at_sign_and_a_cover_letter(tree, tmp_path):
    odd = tmp_path / "trees@work" / "linux"
    odd.parent.mkdir()
    tree.rename(odd)
    sh(odd, "git", "config", "format.coverLetter", "true")  # a cover letter has no diff: left out
    ops = load_patches(f"git:{odd}@base..HEAD")
    assert len(ops) == 2


@pytest.mark.parametrize("spec, error, message", [
    ("git:{tree}", SpecError, "no range"),
    ("git:{tree}@HEAD", SpecError, r"'HEAD' is not a range A\.\.B"),
    ("git:{tree}@base...HEAD", SpecError, "is not a range"),
    ("git:{tree}@--output=/tmp/x..HEAD", SpecError, "is not a range"),
    ("git:{tree}@base..nosuch", UnknownName, r"'nosuch' is not a commit of"),
    ("git:{tree}@HEAD..HEAD", SpecError, "holds no commit with a diff"),
    ("git:/nonexistent/linux@a..b", UnknownName, "'/nonexistent/linux' is not a folder"),
    ("git:{tmp}@a..b", UnknownName, "is not a git repository"),
])
def test_bad_ranges_are_one_line(tree, tmp_path, spec, error, message):
    bare = tmp_path / "plain"
    bare.mkdir()
    with pytest.raises(error, match=message):
        load_patches(spec.format(tree=tree, tmp=bare))


# --- lore, through b4 on a local mbox ------------------------------------------------------------


def thread(repo: Path, tmp_path: Path) -> Path:
    """The series as a mailing list holds it: a cover letter, the two patches, a review with a trailer,
    in the order they arrived (patch 2 first)."""
    files = format_patch(repo, tmp_path / "mails", "-n", "--cover-letter")
    msgs = []
    for i, f in enumerate(files):
        head, body = f.read_text().split("\n\n", 1)
        head += f"\nMessage-Id: <{i}-ext4-fix@harness.test>"
        if i:
            head += f"\nIn-Reply-To: <{COVER}>\nReferences: <{COVER}>"
        msgs.append(f"{head}\n\n{body}")
    review = ("From reviewer Mon Sep 17 00:00:00 2001\nFrom: R E Viewer <reviewer@example.org>\n"
              "Date: Tue, 1 Dec 2026 12:00:00 +0000\nSubject: Re: [PATCH 1/2] ext4: fail inline writes\n"
              f"Message-Id: <r1-ext4-fix@harness.test>\nIn-Reply-To: <1-ext4-fix@harness.test>\n"
              f"References: <{COVER}> <1-ext4-fix@harness.test>\n\nLooks right.\n\n"
              "Reviewed-by: R E Viewer <reviewer@example.org>\n")
    mbox = tmp_path / "thread.mbox"
    mbox.write_text("\n".join([msgs[2], review, msgs[0], msgs[1]]))
    return mbox


def b4_am(mbox: Path, out: Path) -> Path:
    subprocess.run([patches._b4(), "--no-interactive", "--no-stdin", "--offline-mode", "am", "-o", str(out),
                    "-m", str(mbox), COVER], check=True, capture_output=True)
    (mbx,) = out.glob("*.mbx")
    return mbx


def test_a_lore_series_is_the_stack_of_the_mbox_b4_writes(tree, tmp_path, monkeypatch):
    mbox = thread(tree, tmp_path)
    monkeypatch.setenv(patches.LORE_MBOX_ENV, str(mbox))
    from_lore = load_patches(f"lore:{COVER}")
    assert [op.subject for op in from_lore] == ["ext4: fail inline writes", "ext4: writepages says 1"]  # b4's order
    first = from_lore[0].path.read_text()
    assert "Reviewed-by: R E Viewer <reviewer@example.org>" in first  # the review's trailer, added by b4
    from_file = load_patches(str(b4_am(mbox, tmp_path / "by-hand")))  # `b4 am` by hand, then --patch FILE.mbx
    assert [op.sha256 for op in from_lore] == [op.sha256 for op in from_file]
    assert digest(from_lore) == digest(from_file)
    assert load_patches(f"lore:<{COVER}>") == from_lore  # as a mail client shows it
    # the same change as the developer's range: the trees they make are the same
    made = {}
    for name, ops in (("lore", from_lore), ("git", load_patches(f"git:{tree}@base..HEAD"))):
        work = tmp_path / f"apply-{name}"
        sh(tree, "git", "worktree", "add", "-q", "--detach", str(work), "base")
        apply_stack(work, ops)
        made[name] = {p.name: p.read_text() for p in (work / "fs" / "ext4").iterdir()}
    assert made["lore"] == made["git"]


def test_revert_of_a_lore_series(tree, tmp_path, monkeypatch):
    monkeypatch.setenv(patches.LORE_MBOX_ENV, str(thread(tree, tmp_path)))
    ops = load_patches(f"revert:lore:{COVER}")
    assert [(op.subject, op.revert) for op in ops] == [("ext4: writepages says 1", True),
                                                       ("ext4: fail inline writes", True)]


def test_bad_lore_arguments_are_one_line(tree, tmp_path, monkeypatch):
    with pytest.raises(SpecError, match="give lore:MESSAGE-ID"):
        load_patches("lore:")
    with pytest.raises(SpecError, match="give lore:MESSAGE-ID"):
        load_patches("lore:--help")
    monkeypatch.setenv(patches.LORE_MBOX_ENV, str(tmp_path / "none.mbox"))
    with pytest.raises(UnknownName, match="HARNESS_LORE_MBOX=.*none.mbox: no such file"):
        load_patches(f"lore:{COVER}")
    monkeypatch.setenv(patches.LORE_MBOX_ENV, str(thread(tree, tmp_path)))
    with pytest.raises(SpecError, match="b4 am found no series"):
        load_patches("lore:nosuch@harness.test")
