"""Patch stacks: apply (or revert) patches in order on a kernel tree.

Patches go through GNU ``patch -p1``.  Each one is first checked with
``--dry-run``, so a patch that does not apply leaves the tree as it was and
raises ``PatchFailed`` carrying the failing hunk's text.  ``patch`` writes
every file it changes as a new file (new inode, mtime = now): a hardlink farm
stays intact for the pristine tree, and ``make`` sees patched files as newer
than their objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.errors import KernelError, SpecError


@dataclass(frozen=True)
class PatchOp:
    """One step of a stack: apply ``path``, or reverse-apply it when ``revert``."""

    path: Path
    revert: bool = False

    def describe(self) -> str:
        return f"{'revert' if self.revert else 'apply'} {self.path.name}"


@dataclass(frozen=True)
class FilePatch:
    """The part of a patch that touches one file."""

    old: str  # path after -p1 ("/dev/null" for a new file)
    new: str
    hunks: tuple[str, ...]

    @property
    def target(self) -> str:
        return self.old if self.new == "/dev/null" else self.new


class PatchFailed(KernelError):
    """A patch of the stack does not apply; ``hunk`` holds the failing hunk(s)."""

    def __init__(self, op: PatchOp, file: str, hunk: str, output: str):
        super().__init__(f"patch {op.path.name} ({'revert' if op.revert else 'apply'}) fails on {file or '?'}")
        self.op = op
        self.file = file
        self.hunk = hunk
        self.output = output


_HUNK_RE = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def _strip(path: str) -> str:
    """``a/fs/x.c`` -> ``fs/x.c`` (``-p1``); drop a trailing timestamp."""
    path = path.split("\t", 1)[0].strip()
    if path == "/dev/null":
        return path
    return path.split("/", 1)[1] if "/" in path else path


def _hunk_end(lines: list[str], start: int) -> int:
    """Index past the hunk starting at ``lines[start]`` (counted from its header)."""
    m = _HUNK_RE.match(lines[start])
    assert m
    old = int(m.group(1) or 1)
    new = int(m.group(2) or 1)
    i = start + 1
    while i < len(lines) and (old > 0 or new > 0):
        tag = lines[i][:1]
        if tag in (" ", "\n", "\r"):  # context (an empty line is context too)
            old, new = old - 1, new - 1
        elif tag == "-":
            old -= 1
        elif tag == "+":
            new -= 1
        elif tag != "\\":
            break
        i += 1
    while i < len(lines) and lines[i].startswith("\\"):  # "\ No newline at end of file"
        i += 1
    return i


def parse(text: str) -> list[FilePatch]:
    """Split a unified diff into per-file hunks (git and plain ``diff -u``)."""
    files: list[FilePatch] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            old, new = _strip(lines[i][4:]), _strip(lines[i + 1][4:])
            i += 2
            hunks: list[str] = []
            while i < len(lines) and _HUNK_RE.match(lines[i]):
                end = _hunk_end(lines, i)
                hunks.append("".join(lines[i:end]))
                i = end
            files.append(FilePatch(old, new, tuple(hunks)))
        else:
            i += 1
    return files


def touched(ops: tuple[PatchOp, ...] | list[PatchOp]) -> list[str]:
    """Every tree-relative path the stack may create, change or delete."""
    paths: set[str] = set()
    for op in ops:
        for fp in parse(_read(op)):
            paths.update(p for p in (fp.old, fp.new) if p != "/dev/null")
    return sorted(paths)


def digest(ops: tuple[PatchOp, ...] | list[PatchOp]) -> str:
    """Content identity of a stack: order, direction and bytes of each patch."""
    h = hashlib.sha256()
    for op in ops:
        h.update(b"R" if op.revert else b"A")
        h.update(hashlib.sha256(op.path.read_bytes()).digest())
    return h.hexdigest()


def _read(op: PatchOp) -> str:
    try:
        return op.path.read_text(errors="replace")
    except OSError as e:
        raise SpecError(f"cannot read patch {op.path}: {e.strerror}") from None


def _argv(op: PatchOp, tree: Path, dry_run: bool) -> list[str]:
    argv = ["patch", "-p1", "-f", "--no-backup-if-mismatch", "-r", "-", "-d", str(tree), "-i", str(op.path.resolve())]
    if op.revert:
        argv.append("-R")
    if dry_run:
        argv.append("--dry-run")
    return argv


def failing_hunk(op: PatchOp, output: str) -> tuple[str, str]:
    """(file, hunk text) for the first failure ``patch`` reported in ``output``."""
    current = ""
    for line in output.splitlines():
        m = re.match(r"^(?:patching|checking) file '?(.+?)'?$", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"^Hunk #(\d+) FAILED", line)
        if m:
            return current, _hunk(op, current, int(m.group(1)))
        if "can't find file to patch" in line or "No file to patch" in line:
            return current, ""
        if "Reversed (or previously applied)" in line or "Unreversed patch detected" in line:
            fp = _file_patch(op, current)
            return current, "".join(fp.hunks) if fp else ""
    return current, ""


def _file_patch(op: PatchOp, file: str) -> FilePatch | None:
    return next((fp for fp in parse(_read(op)) if file in (fp.old, fp.new)), None)


def _hunk(op: PatchOp, file: str, number: int) -> str:
    fp = _file_patch(op, file)
    if fp is None or not 0 < number <= len(fp.hunks):
        return ""
    return f"--- a/{fp.old}\n+++ b/{fp.new}\n" + fp.hunks[number - 1]


def apply_stack(tree: Path, ops: tuple[PatchOp, ...] | list[PatchOp], *, log_path: Path | None = None) -> None:
    """Apply ``ops`` in order; the first one that fails raises ``PatchFailed``."""
    for op in ops:
        _read(op)
        check = proc.run(_argv(op, tree, True), log_path=log_path, check=False, capture=True, what="patch")
        if not check.ok:
            file, hunk = failing_hunk(op, check.output)
            raise PatchFailed(op, file, hunk, check.output)
        proc.run(_argv(op, tree, False), log_path=log_path, what=f"patch {op.path.name}")


def restore(tree: Path, pristine: Path, files: list[str]) -> None:
    """Put ``files`` back to their pristine content as NEW files (mtime = now).

    A copy, never a hardlink: the old mtime of a pristine link would be older
    than the objects built from the patched file, and make would skip them.
    """
    for rel in files:
        dst, src = tree / rel, pristine / rel
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        if src.is_symlink():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dst)
        elif src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            shutil.copymode(src, dst)


@dataclass(frozen=True)
class StackState:
    """What a work tree currently carries: the stack digest and its files."""

    digest: str
    files: tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> StackState:
        try:
            data = json.loads(path.read_text())
            return cls(data["digest"], tuple(data["files"]))
        except (OSError, ValueError, KeyError):
            return cls("", ())

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"digest": self.digest, "files": list(self.files)}) + "\n")


def sync(
    tree: Path, pristine: Path, ops: tuple[PatchOp, ...], state_path: Path, *, log_path: Path | None = None
) -> bool:
    """Make the farm ``tree`` = ``pristine`` + ``ops``; False when already so.

    Files of the previous stack are restored first, then the new stack is
    applied.  The state file lists the new stack's files BEFORE applying, so a
    failed or interrupted apply is undone by the next sync.
    """
    want = digest(ops) if ops else "pristine"
    state = StackState.load(state_path)
    if state.digest == want:
        return False
    restore(tree, pristine, list(state.files))
    files = tuple(touched(ops))
    StackState("", files).save(state_path)
    apply_stack(tree, ops, log_path=log_path)
    StackState(want, files).save(state_path)
    return True
