"""The kernel's own filesystem error reports: console log -> ``FsError`` records with titles.

A filesystem that finds its metadata inconsistent says so in its own words
and goes on (or remounts read-only, or shuts down) without an oops:

- ext4: ``EXT4-fs error (device loop0): ext4_lookup:1808: inode #2: comm sh:
  deleted inode referenced: 12`` (``__ext4_error*``), ``EXT4-fs error (device
  loop0) in ext4_reserve_inode_write:5744: Corrupt filesystem``
  (``__ext4_std_error``), ``EXT4-fs warning (device ...): FUNC:LINE: ...``,
  ``EXT4-fs (loop0): Remounting filesystem read-only``;
- ext2: ``EXT2-fs (loop0): error: ext2_check_page: bad entry in directory``
  and its ``error: remounting filesystem read-only``;
- jbd2: ``Aborting journal on device loop0-8.``;
- XFS: ``XFS (loop0): Metadata corruption detected at xfs_dinode_verify+0x../0x..``
  (or ``Metadata CRC error detected at ...``), ``Internal error ... at line N of
  file F.  Caller FUNC+0x..``, ``Corruption detected. Unmount and run
  xfs_repair``, ``Corruption of in-memory data (0x8) detected at FUNC+0x..
  (file:line).  Shutting down filesystem.``, ``xfs_do_force_shutdown(0x2)
  called from line N of file F. Return address = FUNC+0x..``, ``Filesystem
  has been shut down due to log error (0x2).``

Each becomes an ``FsError`` whose ``title`` names the filesystem, the kind of
report and the function that reported it (``EXT4-fs error in ext4_lookup``,
``XFS: metadata corruption in xfs_dinode_verify``, ``XFS: shutdown in
xfs_trans_cancel``); ``alt_titles`` add the kind alone (``EXT4-fs error``,
``XFS: shutdown``) and, where the report has one, the function with its
message, digits as ``NUM`` (``EXT4-fs error in ext4_lookup: deleted inode
referenced: NUM``).  A spec (``expect: titles:``) or ``--expect`` names any of
them; the verdict's ``fs_error_rule`` calls a run whose console holds an
expected one REPRODUCED.  Reports nobody expected change no verdict: a
syzkaller image is corrupt on purpose and ext4 says so on every mount.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TYPE = "FS-ERROR"  # the crash type of every filesystem error report
_TEXT_LINES = 20  # lines of a report kept for report.txt (XFS follows a corruption report with a hex dump)

_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s*)*")  # console timestamps and caller ids: "[   12.3][  T123] "
_SYMBOL = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\+0x[0-9a-f]+(?:/0x[0-9a-f]+)?(?: \[\w+\])?")


@dataclass(frozen=True)
class FsError:
    fs: str  # ext4, ext2, jbd2, xfs
    kind: str  # error, warning, remount-ro, journal-abort, metadata corruption, internal error, shutdown, ...
    device: str
    function: str | None
    message: str  # the report's own words after its prefix
    title: str
    alt_titles: tuple[str, ...]
    start: int  # offset of the report's line in the console
    end: int
    text: str  # the line and the ones of the same report after it (hex dump, "Please unmount ...")
    type: str = TYPE

    @property
    def detail(self) -> str:
        where = f" in {self.function}" if self.function else ""
        return f"{self.fs} on {self.device} reported {self.kind}{where}: {self.message}"


def _normalize(message: str) -> str:
    """Digits and hex numbers as NUM, so that one report of the same error has the same title each run."""
    message = re.sub(r"0x[0-9a-fA-F]+", "NUM", message)
    return re.sub(r"\d+", "NUM", message).strip()


def _symbol(text: str) -> str | None:
    m = _SYMBOL.search(text)
    return m.group(1) if m else None


# --- one matcher per report format: (pattern on the line without its console prefix, builder) -------------------

_EXT4_ERROR = re.compile(r"^(EXT4-fs) (error|warning) \(device ([^)]*)\)(?:: | in )([A-Za-z0-9_]+):(\d+): ?(.*)$")
_EXT4_MSG_PREFIX = re.compile(r"^(?:inode #\d+: )?(?:block \d+: )?(?:comm [^:]*: )?(?:path [^:]*: )?")
_EXT_RO = re.compile(r"^(EXT[234]-fs) \(([^)]*)\): (?:error: )?[Rr]emounting filesystem read-only")
_EXT2_ERROR = re.compile(r"^(EXT2-fs) \(([^)]*)\): error: ([A-Za-z0-9_]+): (.*)$")
_JBD2_ABORT = re.compile(r"^Aborting journal on device ([^ ]+?)\.?$")
_XFS = re.compile(r"^XFS \(([^)]*)\): (.*)$")
_XFS_KINDS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^Metadata (corruption|CRC error) detected at (.*)$"), "metadata {0}"),
    (re.compile(r"^Internal error .* Caller (.*)$"), "internal error"),
    (re.compile(r"^Corruption of (in-memory data|on-disk metadata) \(0x[0-9a-f]+\) detected at (.*)$"), "shutdown"),
    (re.compile(r"^(Metadata I/O Error|Log I/O Error|Block device removal) \(0x[0-9a-f]+\) detected at (.*)$"),
     "shutdown"),
    (re.compile(r"^xfs_do_force_shutdown\(0x[0-9a-f]+\) called from .* Return address = (.*)$"), "shutdown"),
    (re.compile(r"^Filesystem has been shut down due to (.*)$"), "shutdown"),
    (re.compile(r"^(Corruption detected)\. Unmount and run xfs_repair"), "corruption detected"),
)


def _ext4(line: str) -> tuple | None:
    m = _EXT4_ERROR.match(line)
    if not m:
        return None
    fs, kind, device, func, _line, rest = m.groups()
    message = _EXT4_MSG_PREFIX.sub("", rest, count=1)
    name = f"{fs} {kind}"
    return fs.split("-")[0].lower(), kind, device, func, rest, f"{name} in {func}", (name, f"{name} in {func}: "
                                                                                        f"{_normalize(message)}")


def _ext_read_only(line: str) -> tuple | None:
    m = _EXT_RO.match(line)
    if not m:
        return None
    fs, device = m.groups()
    return (fs.split("-")[0].lower(), "remount-ro", device, None, "remounting filesystem read-only",
            f"{fs}: remounting filesystem read-only", ())


def _ext2(line: str) -> tuple | None:
    m = _EXT2_ERROR.match(line)
    if not m or m.group(3) == "remounting":
        return None
    _fs, device, func, message = m.groups()
    return "ext2", "error", device, func, message, f"EXT2-fs error in {func}", (
        "EXT2-fs error", f"EXT2-fs error in {func}: {_normalize(message)}")


def _jbd2(line: str) -> tuple | None:
    m = _JBD2_ABORT.match(line)
    return ("jbd2", "journal-abort", m.group(1), None, line, "JBD2: journal aborted", ()) if m else None


def _xfs(line: str) -> tuple | None:
    m = _XFS.match(line)
    if not m:
        return None
    device, said = m.groups()
    for pattern, kind in _XFS_KINDS:
        k = pattern.match(said)
        if not k:
            continue
        kind = kind.format(k.group(1).lower()) if "{0}" in kind else kind
        func = _symbol(k.group(k.lastindex)) if k.lastindex else None
        base = f"XFS: {kind}"
        if kind == "shutdown" and func is None and "log error" in said:
            return "xfs", kind, device, None, said, "XFS: shutdown due to log error", (base,)
        title = f"{base} in {func}" if func else base
        return "xfs", kind, device, func, said, title, (base,) if func else ()
    return None


_MATCHERS = (_ext4, _ext_read_only, _ext2, _jbd2, _xfs)


def _report_text(lines: list[tuple[int, str, str]], i: int, stop: int) -> tuple[str, int]:
    """The report's line and the ones after it that belong to it (same prefix, or a hex dump) up to line
    ``stop`` (the next report), and where it ends."""
    head = lines[i][2].split(":", 1)[0]
    out, end = [lines[i][1]], lines[i][0] + len(lines[i][1])
    for pos, raw, bare in lines[i + 1 : min(stop, i + _TEXT_LINES)]:
        if not (bare.startswith(head) or re.match(r"^[0-9a-f]{8}: ", bare)):
            break
        out.append(raw)
        end = pos + len(raw)
    return "\n".join(out) + "\n", end


def _match(bare: str) -> tuple | None:
    if not bare.startswith(("EXT", "XFS", "Aborting journal")):
        return None
    return next((got for matcher in _MATCHERS if (got := matcher(bare)) is not None), None)


def parse(text: str | bytes) -> list[FsError]:
    """Every filesystem error report in a console log, in order (``[]`` when there is none)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    lines, pos = [], 0
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        lines.append((pos, line, _PREFIX.sub("", line, count=1)))
        pos += len(raw) + 1
    hits = [(i, got) for i, (_pos, _raw, bare) in enumerate(lines) if (got := _match(bare)) is not None]
    found = []
    for n, (i, (fs, kind, device, func, message, title, alt)) in enumerate(hits):
        stop = hits[n + 1][0] if n + 1 < len(hits) else len(lines)
        body, end = _report_text(lines, i, stop)
        found.append(FsError(fs, kind, device, func, message.strip(), title, tuple(alt), lines[i][0], end, body))
    return found


def titles(errors: list[FsError]) -> tuple[str, ...]:
    """Each distinct title once, in the order first seen."""
    return tuple(dict.fromkeys(e.title for e in errors))


def first_expected(errors: list[FsError], expected: tuple[str, ...]) -> FsError | None:
    """The first report whose title (or one of its alternatives) is expected."""
    return next((e for e in errors if e.title in expected or any(a in expected for a in e.alt_titles)), None)


def is_fs_error_title(title: str) -> bool:
    """Whether an expected title names a filesystem error report rather than an oops."""
    return title.startswith(("EXT4-fs ", "EXT3-fs ", "EXT2-fs ", "XFS: ", "JBD2: "))


def hint(console: str) -> str | None:
    """For a run that failed without an expected report: the filesystem's own reports it printed, and how to
    expect the first (the bug may be showing that way)."""
    errors = parse(console)
    if not errors:
        return None
    seen = titles(errors)
    more = f" (and {len(seen) - 1} more: {'; '.join(seen[1:3])})" if len(seen) > 1 else ""
    return (f"after the kernel's own report '{seen[0]}'{more}: if that is the bug, expect it (--expect "
            f"'{seen[0]}', or expect: titles: in the spec)")
