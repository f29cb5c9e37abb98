"""Kernel console log -> crash reports with syzkaller-compatible titles.

The algorithm follows syzkaller's ``pkg/report`` (``linux.go``/``report.go``):
find the first line carrying an oops header, gather the report lines of the
same console context (timestamps stripped, ``? `` frames dropped), match the
oops' title formats against that text, pull the guilty frame out of the stack
with the skip lists, normalise the title, and derive type and corruption.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass, replace

import harness.report.oopses as oopses
from harness.report.crashtype import title_to_type
from harness.report.demangle import demangle
from harness.report.oopses import TRACE, Oops, OopsFormat, StackFmt
from harness.report.symbolize import symbolize

__all__ = ["Report", "parse", "symbolize"]


@dataclass(frozen=True)
class Report:
    """One crash found in a console log."""

    title: str  # syzkaller-style, e.g. "kernel BUG in ext4_write_inline_data"
    alt_titles: tuple[str, ...]  # other titles of the same bug, for deduplication
    type: str  # syzkaller crash type: BUG, WARNING, LOCKDEP, HANG, KASAN-READ... or UNKNOWN
    frame: str | None  # the guilty function named by the title
    corrupted: bool  # truncated or interleaved: the title may be wrong
    start: int  # offset of the oops line in the input text
    end: int  # offset of the end of the report's last line
    text: str  # the report: a few lines of context, then the oops, timestamps stripped
    corrupted_reason: str = ""


def parse(text: str | bytes) -> list[Report]:
    """All crash reports in ``text``, in order; ``[]`` when there is none.

    The first report is the one syzkaller's ``Parse`` returns.  Later ones
    must be recognised by a title format, and lines that only continue a
    report (``invalid opcode``, ``Kernel panic``...) never start one.
    Offsets index ``text`` (bytes are decoded as UTF-8 first).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = _Console(text)
    hung_up = _GCE_HANGUP in text
    reports: list[Report] = []
    floor = 0
    while (start := _find_oops(lines, floor, continuation_ok=not reports)) is not None:
        report, recognised = _build(text, lines, start, floor)
        if hung_up and not report.corrupted:
            report = replace(report, corrupted=True, corrupted_reason="console hung up")
        if recognised or not reports:
            reports.append(report)
        floor = start + 1
    return reports


# --- console lines ------------------------------------------------------------

_CONSOLE_RE = re.compile(
    r"(?:\*\* [0-9]+ printk messages dropped \*\* )?(?:.* login: )?(?:<[0-9]+>)?"
    r"\[ *[0-9]+\.[0-9]+\](\[ *(?:C|T)[0-9]+\])? ")
_TASK_CONTEXT = re.compile(r"\[ *T[0-9]+\]")
_CPU_CONTEXT = re.compile(r"\[ *C[0-9]+\]")
_CONSOLE = "console"  # context of timestamped lines without a caller id
_GCE_HANGUP = "serialport: VM disconnected."
_HEADERS_RE = re.compile("|".join(re.escape(o.header) for o in oopses.LINUX_OOPSES))
_INFO_STACK_RE = re.compile("|".join(re.escape(p) for p in oopses.INFO_WITH_STACK))


class _Line:
    """A console line, digested: context, text without prefix, oops match."""

    __slots__ = ("start", "end", "raw", "context", "stripped", "questionable", "oops",
                 "continuation", "info_stack")

    def __init__(self, start: int, end: int, raw: str, oops: Oops | None, info_stack: bool):
        self.start, self.end, self.raw = start, end, raw
        m = _CONSOLE_RE.match(raw)
        self.context = "" if m is None else (m.group(1) or _CONSOLE)
        self.stripped, self.questionable = _strip_prefix(raw, self.context)
        self.oops = oops
        self.continuation = oops is not None and any(r.search(raw) for r in oopses.REPORT_START_IGNORES)
        self.info_stack = info_stack


class _Console:
    """The log's lines, digested on first use; oops lines found in one pass."""

    def __init__(self, text: str):
        self.text = text
        self.starts: list[int] = []
        pos = 0
        for piece in text.split("\n"):
            self.starts.append(pos)
            pos += len(piece) + 1
        if text.endswith("\n") or not text:
            self.starts.pop()  # no line after the final newline
        self.oops_at = self._lines_with(_HEADERS_RE, self._oops)
        self.info_at = self._lines_with(_INFO_STACK_RE, lambda raw: True)
        self.oops_lines = sorted(self.oops_at)
        self._digested: dict[int, _Line] = {}

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> _Line:
        if (line := self._digested.get(i)) is None:
            line = self._digested[i] = _Line(self.starts[i], self._end(i), self._raw(i),
                                             self.oops_at.get(i), i in self.info_at)
        return line

    def _end(self, i: int) -> int:
        return self.starts[i + 1] - 1 if i + 1 < len(self.starts) else len(self.text)

    def _raw(self, i: int) -> str:
        return self.text[self.starts[i]:self._end(i)].rstrip("\r")

    def _lines_with(self, pattern: re.Pattern, check) -> dict:
        found: dict = {}
        seen: set[int] = set()
        for m in pattern.finditer(self.text):
            i = bisect_right(self.starts, m.start()) - 1
            if i not in seen:
                seen.add(i)
                if (value := check(self._raw(i))) is not None:
                    found[i] = value
        return found

    @staticmethod
    def _oops(raw: str) -> Oops | None:
        """The first oops (in table order) whose header is on the line, unsuppressed."""
        return next((o for o in oopses.LINUX_OOPSES if o.header in raw and o.matches(raw)), None)


def _strip_prefix(line: str, context: str) -> tuple[str, bool]:
    """Drop the timestamp; flag (and unmark) unreliable ``? func`` frames."""
    if not context:
        return line, False
    line = line[line.find("] ") + 2:]
    if "<EOI>" not in line:
        if (pos := line.find(" ? ")) >= 0:  # x86: " [<pc>] ? func+0x1/0x2"
            return line[pos + 2:], True
        if line.endswith(" (unreliable)"):  # powerpc
            return line[:-13], True
    return line, False


def _find_oops(lines: _Console, floor: int, continuation_ok: bool) -> int | None:
    for i in lines.oops_lines[bisect_left(lines.oops_lines, floor):]:
        if continuation_ok or not lines[i].continuation:
            return i
    return None


# --- report extraction --------------------------------------------------------

def _build(text: str, lines: _Console, start: int, floor: int) -> tuple[Report, bool]:
    """The report starting at line ``start``; and whether a title format matched."""
    head = lines[start]
    oops, context = head.oops, head.context
    assert oops is not None
    prefix = _prefix(lines, start, floor, context)
    body, report_end, end_pos = _collect(lines, start, context)
    full = "".join(ln.stripped + "\n" for ln in body)
    desc = _describe("".join(ln.stripped + "\n" for ln in body[:report_end]), oops)
    report_lines = prefix + [ln.stripped for ln in body[:report_end]]
    if not desc.title:  # the header got mangled by stripping: use raw text
        full = text[head.start:end_pos]
        desc = _describe(full, oops)
        report_lines = full.splitlines()
    raw_title = desc.title or head.raw[head.raw.find(oops.header):]
    reason = desc.corrupted or _corruption(raw_title, full, desc.format)
    title = _normalize(raw_title)
    alts = tuple(dict.fromkeys(a for a in map(_normalize, desc.alt_titles) if a != title))
    frame = _FRAME_IN_TITLE.match(title)
    report = Report(
        title=title,
        alt_titles=alts,
        type=title_to_type(title),
        frame=frame.group(1) if frame else None,
        corrupted=bool(reason),
        start=head.start,
        end=body[report_end - 1].end,
        text="\n".join(report_lines) + "\n",
        corrupted_reason=reason,
    )
    return report, desc.format is not None


def _prefix(lines: _Console, start: int, floor: int, context: str) -> list[str]:
    """Up to 5 (50 with caller ids) same-context lines before the oops line."""
    limit = 50 if _TASK_CONTEXT.search(context) else 5
    found: deque[str] = deque()
    for i in range(start - 1, floor - 1, -1):
        if len(found) == limit:
            break
        ln = lines[i]
        if ln.context == context and ln.stripped and not ln.questionable:
            found.appendleft(ln.stripped)
    return list(found)


def _collect(lines: _Console, start: int, context: str) -> tuple[list[_Line], int, int]:
    """The report's lines from ``start``, how many precede a second report, and EndPos."""
    min_lines = 16 if "BUG: KMSAN:" in lines[start].raw else 22
    keep_interleaved = context not in ("", _CONSOLE)  # caller ids tell reports apart
    body: list[_Line] = []
    report_end = end_pos = 0
    second = skip_rest = cpu_traceback = False
    text_lines = 0
    for i in range(start, len(lines)):
        ln = lines[i]
        first = i == start
        if ln.oops is not None:
            end_pos = ln.end
        if not first and not second and (ln.oops is not None and not ln.continuation or ln.info_stack):
            second = True
        if not first and (ln.questionable or ln.context != context and not (
                cpu_traceback and _CPU_CONTEXT.search(ln.context))):
            continue
        text_lines += 1
        skip = skip_rest
        if "Disabling lock debugging due to kernel taint" in ln.raw:
            skip = True
        elif "Sending NMI from CPU" in ln.raw:
            cpu_traceback = True  # other CPUs' backtraces belong to this report
        elif text_lines > min_lines and ("Kernel panic - not syncing" in ln.raw or
                                         "WARNING: possible circular locking dependency detected" in ln.raw):
            # panic_on_warn's panic stack and oops-induced lockdep splats add nothing.
            skip_rest = skip = True
        if skip and not first:
            continue
        body.append(ln)
        if not second or keep_interleaved:
            report_end = len(body)
    return body, report_end, end_pos


@dataclass(frozen=True)
class _Description:
    title: str = ""
    corrupted: str = ""
    alt_titles: tuple[str, ...] = ()
    format: OopsFormat | None = None


_NO_FRAMES = "extracted no frames"


def _describe(report: str, oops: Oops) -> _Description:
    """Title the report with the oops format matching earliest in it."""
    best = _Description()
    best_pos = len(report)
    matched_title = False
    for fmt in oops.formats:
        m = fmt.title.search(report)
        if m is None or m.start() > best_pos or m.start() == best_pos and best.title:
            continue
        if m.start() < best_pos:
            best, best_pos = _Description(), m.start()
        matched_title = True
        if fmt.report is not None and (m := fmt.report.search(report)) is None:
            continue
        groups = [g or "" for g in m.groups()]
        frames: list[tuple[str, str]] = []
        corrupted = ""
        if fmt.stack is not None:
            frames, ok = _extract_frames(fmt.stack, report[m.start():])
            corrupted = "" if ok else _NO_FRAMES
        args = groups + [canonical for canonical, _ in frames]
        title = fmt.fmt.format(*args)
        alts = [a.format(*args) for a in fmt.alt]
        for variant in _stripped_variants(frames):
            alt_title = fmt.fmt.format(*groups, *variant)
            if alt_title != title:
                alts.append(alt_title)
            alts.extend(a.format(*groups, *variant) for a in fmt.alt)
        best = _Description(title, corrupted, tuple(dict.fromkeys(alts)), fmt)
    if not best.title:
        pos = report.find(oops.header)
        if pos < 0:
            return _Description()
        eol = report.find("\n", pos)
        best = _Description(report[pos:eol if eol >= 0 else len(report)],
                            "matched title but not report regexp" if matched_title else "")
    if not best.corrupted and best.format is not None and best.format.corrupted:
        best = replace(best, corrupted="report format is marked as corrupted")
    return best


# --- stack frames -------------------------------------------------------------

def _extract_frames(stack: StackFmt, report: str) -> tuple[list[tuple[str, str]], bool]:
    """Guilty (canonical, raw) frames, one per stack trace part; ok flag."""
    frames, ok = _walk_parts(stack, stack.parts, report)
    if ok or not stack.parts2:
        return frames, ok
    return _walk_parts(stack, stack.parts2, report)


def _walk_parts(stack: StackFmt, parts: tuple, report: str) -> tuple[list[tuple[str, str]], bool]:
    lines = report.split("\n")
    pos, raw, results, ok, traces = 0, [], [], True, 0
    i = 0
    while True:
        if i == len(parts) or parts[i] is TRACE and traces:
            key = _key_frame(stack, raw)
            if key is None:
                key, ok = ("corrupted", "corrupted"), False
            results.append(key)
            raw = []
        if i == len(parts):
            break
        part = parts[i]
        if part is TRACE:
            traces += 1
            while pos < len(lines):
                ln = lines[pos]
                pos += 1
                if _any(oopses.CORRUPTED_LINES, ln):
                    ok = False
                    break
                if oopses.STACK_START_RE.search(ln):
                    break
                if i + 1 < len(parts) and (m := parts[i + 1].search(ln)):
                    _append_frames(raw, m, stack)
                    i += 1
                    break
                for frame_re in oopses.FRAME_RES:
                    if m := frame_re.search(ln):
                        _append_frames(raw, m, stack)
                        break
        else:
            while pos < len(lines):
                ln = lines[pos]
                pos += 1
                if _any(oopses.CORRUPTED_LINES, ln):
                    ok = False
                    break
                if m := part.search(ln):
                    _append_frames(raw, m, stack)
                    break
        i += 1
    return results, ok


def _append_frames(frames: list[str], m: re.Match, stack: StackFmt) -> None:
    for group in m.groups():
        if group and not stack.skips(frame := demangle(group)):
            frames.append(frame)


def _key_frame(stack: StackFmt, raw: list[str]) -> tuple[str, str] | None:
    if not raw:
        return None
    stripped = [_strip_syscall_prefix(f) for f in raw]
    if stack.extractor is None:
        return stripped[0], raw[0]
    frame, idx = stack.extractor(stripped)
    return (frame, raw[idx]) if frame else None


def _strip_syscall_prefix(frame: str) -> str:
    return min((frame.removeprefix(p) for p in oopses.STRIP_FRAME_PREFIXES), key=len, default=frame)


def _stripped_variants(frames: list[tuple[str, str]]) -> list[list[str]]:
    """Raw frames, and raw frames minus each syscall prefix, for alt titles."""
    raw = [r for _, r in frames]
    variants = [raw]
    for p in oopses.STRIP_FRAME_PREFIXES:
        trimmed = [r.removeprefix(p) for r in raw]
        if trimmed != raw:
            variants.append(trimmed)
    return variants


def _any(patterns: tuple[re.Pattern, ...], line: str) -> bool:
    return any(p.search(line) for p in patterns)


# --- corruption ---------------------------------------------------------------

_TIMESTAMP = re.compile(r"\[ *[0-9]+\.[0-9]+\]")


def _corruption(title: str, report: str, fmt: OopsFormat | None) -> str:
    """Why a report looks truncated or interleaved ("" if it does not)."""
    if _TIMESTAMP.search(title):
        return "title contains a timestamp"
    if fmt is None or fmt.no_stack_trace:
        return ""
    has_trace = False
    for key in oopses.STACK_START:
        m = key.search(report)
        if m is None:
            continue
        following = report[m.start():].split("\n")
        if len(following) < 4:
            return "call trace is missed"
        found = False
        for ln in following[1:16]:
            if oopses.STACK_START_RE.search(ln):
                break
            if "(stack is not available)" in ln or _any(oopses.FRAME_RES, ln):
                found = has_trace = True
                break
        if not found and key is not oopses.RISCV_STACK_START:
            return "no frames in a stack trace"
    return "" if has_trace else "no stack trace in report"


# --- titles -------------------------------------------------------------------

_TITLE_REPLACEMENTS = tuple((re.compile(p, re.ASCII), r) for p, r in (
    (r"syz-executor\.?[0-9]+((/|:)[0-9]+)?", "syz-executor"),
    (r"syzkaller[0-9]+((/|:)[0-9]+)?", "syzkaller"),
    (r"([^a-zA-Z0-9])(?:0x)?[0-9a-f]{6,}", r"\g<1>ADDR"),  # addresses
    (r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})", "IP"),
    (r"(\.\w+)(:[0-9]+)+", r"\g<1>:LINE"),
    (r"([a-zA-Z][a-zA-Z0-9_.]+)\+0x[0-9a-z]+/0x[0-9a-z]+", r"\g<1>"),  # func+off/size
    (r"CPU#[0-9]+", "CPU"),
    (r"(\W)(\d+)(\W|$)", r"\g<1>NUM\g<3>"),
    (r"\d{7,}", "NUM"),  # digits inside names (cfg80211) stay, long runs go
))
_FRAME_IN_TITLE = re.compile(r".* in ((?:<[a-zA-Z0-9_: ]+>)?[a-zA-Z0-9_:]+)")
_MAX_TITLE = 120


def _normalize(title: str) -> str:
    """Replace volatile bits (addresses, numbers, lines), then sanitize."""
    for pattern, repl in _TITLE_REPLACEMENTS:
        while (new := pattern.sub(repl, title)) != title:
            title = new
    out: list[str] = []
    prev = " "
    for ch in title[:_MAX_TITLE].replace("\t", " "):
        if ch < " " or ch >= "\x7f" or ch == " " == prev:
            continue
        out.append(ch)
        prev = ch
    return "".join(out).strip()
