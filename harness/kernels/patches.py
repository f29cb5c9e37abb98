"""Patch stacks: apply (or revert) patches in order on a kernel tree.

``load_patches`` turns a command-line argument into a stack: a patch file, a
quilt-style ``series`` file (what ``git format-patch`` output plus a list
makes), an mbox holding several patches (as ``b4 am`` writes them; each piece
is stored content-addressed under the cache's ``patches/``), or ``revert:P``.
Paths that leave the tree (absolute, or with a ``..`` component) are refused
before anything is applied.

Patches go through GNU ``patch -p1``.  Each one is first checked with
``--dry-run``, so a patch that does not apply leaves the tree as it was and
raises ``PatchFailed`` carrying the failing hunk's text.  ``patch`` writes
every file it changes as a new file (new inode, mtime = now): a hardlink farm
stays intact for the pristine tree, and ``make`` sees patched files as newer
than their objects.
"""

from __future__ import annotations

import contextlib
import email.header
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness import git, proc
from harness.errors import GitError, KernelError, MissingTool, SpecError, UnknownName
from harness.paths import cache_dir


@dataclass(frozen=True)
class PatchOp:
    """One step of a stack: apply ``path``, or reverse-apply it when ``revert``."""

    path: Path
    revert: bool = False

    def describe(self) -> str:
        return f"{'revert' if self.revert else 'apply'} {self.path.name}"

    @property
    def subject(self) -> str:
        """The patch's ``Subject:`` without its ``[PATCH n/m]`` tag, else the file name."""
        return subject(_read(self)) or self.path.name

    @property
    def sha256(self) -> str:
        """sha256 of the patch file's bytes (what a mailing-list reply cites)."""
        return hashlib.sha256(_read_bytes(self)).hexdigest()


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


def _read_bytes(op: PatchOp) -> bytes:
    try:
        return op.path.read_bytes()
    except OSError as e:
        raise SpecError(f"cannot read patch {op.path}: {e.strerror}") from None


def _read(op: PatchOp) -> str:
    return _read_bytes(op).decode(errors="replace")


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
    """Apply ``ops`` in order; the first one that fails raises ``PatchFailed``.

    Every patch is read and its paths checked before the first one is applied.
    """
    for op in ops:
        check_paths(op)
    for op in ops:
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


# --- patches named on the command line ----------------------------------------------------

# an mbox's "From " separator: "From <sha> Mon Sep 17 00:00:00 2001" (git format-patch),
# "From git@z Thu Jan  1 00:00:00 1970" (b4 am)
_FROM_RE = re.compile(
    rb"^From \S+ +(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +[A-Z][a-z]{2} +\d{1,2} +\d\d:\d\d:\d\d +\d{4}[ \t]*\r?$", re.M
)
_TAG_RE = re.compile(r"^(?:\s*\[[^\]]*\])+\s*")  # "[PATCH v2 3/7] " and friends
_DIFF_GIT_RE = re.compile(r"^diff --git (\S+) (\S+)$")
_GIT_PATH_HEADERS = ("rename from ", "rename to ", "copy from ", "copy to ")


def load_patches(arg: str) -> list[PatchOp]:
    """``--patch P``'s stack: a patch file, a ``series`` file (or a folder holding one), an mbox,
    ``git:PATH@A..B``, ``lore:MSGID``, or ``revert:`` any of them.

    An mbox with several patches is split on its ``From <sha> <date>`` lines
    and each piece stored under the cache's ``patches/`` by its content (a
    cover letter, a piece without a diff, is left out).  ``git:PATH@A..B``
    is what ``git format-patch A..B`` writes in the repository at PATH, and
    ``lore:MSGID`` the series ``b4 am`` fetches for that message (both
    stored the same way, so the stack and the kernel's cache key are those of
    the same patches given as files).  ``revert:`` of a series, an mbox, a
    range or a lore series reverts its patches last first.  Every patch's
    paths are checked here, before anything is applied.
    """
    revert = arg.startswith("revert:")
    rest = arg.removeprefix("revert:")
    if rest.startswith(GIT_PREFIX):
        paths = git_range(rest, arg)
    elif rest.startswith(LORE_PREFIX):
        paths = lore_series(rest, arg)
    else:
        paths = _expand(Path(rest).expanduser(), arg)
    ops = [PatchOp(p.resolve(), revert) for p in paths]
    for op in ops:
        check_paths(op)
    return ops[::-1] if revert else ops


def _expand(path: Path, arg: str, *, in_series: bool = False) -> list[Path]:
    if path.is_dir():
        if (path / "series").is_file() and not in_series:
            return _series(path / "series", arg)
        raise SpecError(f"{_what(path, arg)} is a folder without a series file")
    data = _read_arg(path, arg)
    text = data.decode(errors="replace")
    if not in_series and (path.name == "series" or _looks_like_series(text, path.parent)):
        return _series(path, arg)
    pieces = split_mbox(data)
    if len(pieces) > 1:
        stored = [store_piece(p) for p in pieces if _has_diff(p.decode(errors="replace"))]
        if stored:
            return stored
    if not _has_diff(text):
        raise SpecError(f"{_what(path, arg)} holds no diff (no file headers with hunks, no git rename or mode change)")
    return [path]


def _what(path: Path, arg: str) -> str:
    """How an error names the patch: the argument, and the file when it is another one (a series entry)."""
    return f"patch {arg}" if arg.removeprefix("revert:") == str(path) else f"patch {arg}: {path}"


def _has_diff(text: str) -> bool:
    return bool(parse(text)) or any(line.startswith("diff --git ") for line in text.splitlines())


def _read_arg(path: Path, arg: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{_what(path, arg)} does not exist") from None
    except OSError as e:
        raise SpecError(f"{_what(path, arg)} cannot be read: {e.strerror}") from None


def _series_entries(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, patch name, options) of a quilt ``series`` file; ``#`` starts a comment."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split("#", 1)[0].split()
        if tokens:
            entries.append((number, tokens[0], tokens[1:]))
    return entries


def _looks_like_series(text: str, folder: Path) -> bool:
    """No diff in it, and every entry names a file beside it."""
    if any(line.startswith(("--- ", "+++ ", "diff ", "@@ ")) for line in text.splitlines()):
        return False
    entries = _series_entries(text)
    return bool(entries) and all((folder / name).is_file() for _, name, _ in entries)


def _series(series: Path, arg: str) -> list[Path]:
    text = _read_arg(series, arg).decode(errors="replace")
    out: list[Path] = []
    for number, name, options in _series_entries(text):
        if options and options != ["-p1"]:
            raise SpecError(f"patch {arg}: {series} line {number}: only -p1 patches are supported, not {' '.join(options)}")
        out += _expand(series.parent / name, f"{arg} (series line {number})", in_series=True)
    if not out:
        raise SpecError(f"patch {arg}: the series file {series} lists no patch")
    return out


def split_mbox(data: bytes) -> list[bytes]:
    """An mbox's messages, each from its ``From `` line; text with fewer than two such lines stays whole."""
    starts = [m.start() for m in _FROM_RE.finditer(data)]
    if len(starts) < 2:
        return [data]
    if data[: starts[0]].strip():  # text before the first separator belongs to no message: keep it with the first
        starts[0] = 0
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)])]


def store_piece(data: bytes) -> Path:
    """Write one patch of an mbox under the cache's ``patches/``, named by its sha256 (and subject)."""
    sha = hashlib.sha256(data).hexdigest()
    slug = re.sub(r"[^a-z0-9]+", "-", subject(data.decode(errors="replace")).lower()).strip("-")[:60]
    dest = cache_dir("patches") / f"{sha[:16]}-{slug or 'patch'}.patch"
    if not dest.exists():
        with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=".piece-", delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, dest)
    return dest


def subject(text: str) -> str:
    """The ``Subject:`` of a mail-formatted patch, without ``[PATCH ...]`` tags ("" when there is none)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip() and i:  # the headers end at the first blank line
            break
        if line.lower().startswith("subject:"):
            raw = line.split(":", 1)[1]
            for more in lines[i + 1 :]:
                if not more[:1].isspace() or not more.strip():
                    break
                raw += " " + more.strip()
            with contextlib.suppress(ValueError, LookupError):  # a malformed encoded word stays as written
                raw = str(email.header.make_header(email.header.decode_header(raw)))
            return _TAG_RE.sub("", " ".join(raw.split()))
    return ""


def _header_paths(text: str) -> list[str]:
    """Every path a patch's file headers name (---/+++, git's diff/rename/copy lines), hunks skipped."""
    lines = text.splitlines(keepends=True)
    found: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r\n")
        if _HUNK_RE.match(line):
            i = _hunk_end(lines, i)
            continue
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            found += [line[4:], lines[i + 1].rstrip("\r\n")[4:]]
            i += 1
        elif m := _DIFF_GIT_RE.match(line):
            found += [m.group(1), m.group(2)]
        elif line.startswith(_GIT_PATH_HEADERS):
            found.append(line.split(" ", 2)[2])
        i += 1
    return [p.split("\t", 1)[0].strip().strip('"') for p in found]


def check_paths(op: PatchOp) -> None:
    """Refuse (SpecError) a patch naming an absolute path or one with a ``..`` component."""
    for path in _header_paths(_read(op)):
        if path == "/dev/null" or not path:
            continue
        if path.startswith("/") or ".." in PurePosixPath(path).parts:
            raise SpecError(f"patch {op.path}: {path!r} leaves the kernel tree (absolute, or with a '..' component)")


# --- patches where they live: a range of the developer's tree, a lore series ------------------

GIT_PREFIX = "git:"
LORE_PREFIX = "lore:"
LORE_MBOX_ENV = "HARNESS_LORE_MBOX"  # b4 reads the thread from this mbox instead of lore (b4 am -m)
B4_TIMEOUT = 300  # seconds: a slow lore answer, not a hung b4


def _split_repo(spec: str, arg: str) -> tuple[Path, str]:
    """``PATH@A..B`` -> (PATH, A..B): the longest PATH before an ``@`` that is a folder (a path or a
    revision may hold an ``@`` too)."""
    at = [i for i, ch in enumerate(spec) if ch == "@"]
    for i in reversed(at):
        path = Path(spec[:i]).expanduser()
        if path.is_dir():
            return path.resolve(), spec[i + 1:]
    if at:
        raise UnknownName(f"patch {arg}: {spec[:at[-1]]!r} is not a folder (give git:PATH@A..B, PATH a git tree)")
    raise SpecError(f"patch {arg}: no range (give git:PATH@A..B, the range as `git format-patch A..B` takes it)")


def git_range(rest: str, arg: str) -> list[Path]:
    """``git:PATH@A..B``: the patches ``git format-patch A..B`` writes in PATH, stored by content, in order."""
    repo, revs = _split_repo(rest.removeprefix(GIT_PREFIX), arg)
    ends = revs.split("..")
    if len(ends) != 2 or revs.startswith("-") or "..." in revs or not all(ends):
        raise SpecError(f"patch {arg}: {revs!r} is not a range A..B (the commits after A up to B)")
    if not git.is_repo(repo):
        raise UnknownName(f"patch {arg}: {repo} is not a git repository")
    for end in ends:
        try:
            git.rev_parse(repo, end)
        except GitError:
            raise UnknownName(f"patch {arg}: {end!r} is not a commit of {repo}") from None
    with tempfile.TemporaryDirectory(prefix="harness-format-patch-") as out:
        git.run(repo, "format-patch", "-q", "-o", out, f"{ends[0]}..{ends[1]}", "--")
        files = sorted(Path(out).glob("*.patch"))
        stored = [store_piece(data) for f in files if _has_diff((data := f.read_bytes()).decode(errors="replace"))]
    if not stored:
        raise SpecError(f"patch {arg}: {revs} holds no commit with a diff (merges are left out by format-patch)")
    return stored


def _b4() -> str:
    here = str(Path(sys.executable).parent)  # the venv's own b4 first
    found = shutil.which("b4", path=os.pathsep.join([here, os.environ.get("PATH", "")]))
    if not found:
        raise MissingTool("b4 not found: it fetches lore series (pip install b4)")
    return found


_LORE_CACHE: dict[tuple[str, str], list[Path]] = {}  # one b4 run per series and process


def lore_series(rest: str, arg: str) -> list[Path]:
    """``lore:MSGID``: the series ``b4 am`` makes of that message's thread (its latest revision, in
    order, with the trailers of the replies), stored by content.  ``$HARNESS_LORE_MBOX`` names a
    local mbox b4 reads the thread from (``b4 am -m``) instead of lore."""
    msgid = rest.removeprefix(LORE_PREFIX).strip().strip("<>")
    if not msgid or msgid.startswith("-") or any(c.isspace() for c in msgid):
        raise SpecError(f"patch {arg}: give lore:MESSAGE-ID (a series' message id, or its lore URL)")
    mbox = os.environ.get(LORE_MBOX_ENV, "")
    if mbox and not Path(mbox).is_file():
        raise UnknownName(f"patch {arg}: ${LORE_MBOX_ENV}={mbox}: no such file")
    key = (msgid, mbox)
    if key not in _LORE_CACHE:
        _LORE_CACHE[key] = _run_b4(msgid, mbox, arg)
    return _LORE_CACHE[key]


def _run_b4(msgid: str, mbox: str, arg: str) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="harness-b4-") as out:
        local = ["--offline-mode"] if mbox else []  # the thread is here: no network query at all
        argv = [_b4(), "--no-interactive", "--no-stdin", *local, "am", "-o", out, "-n", "series",
                *(["-m", mbox] if mbox else []), msgid]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=B4_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise KernelError(f"patch {arg}: b4 am gave no answer in {B4_TIMEOUT} s") from None
        series = Path(out) / "series.mbx"
        if done.returncode != 0 or not series.is_file():
            raise SpecError(f"patch {arg}: b4 am found no series: {git.complaint(done.stderr or done.stdout)}")
        pieces = [p for p in split_mbox(series.read_bytes()) if _has_diff(p.decode(errors="replace"))]
    if not pieces:
        raise SpecError(f"patch {arg}: the series b4 am made holds no diff")
    return [store_piece(p) for p in pieces]
