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
from functools import cache, lru_cache
from itertools import accumulate, compress, count, repeat
from operator import contains, not_

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
#: ``_CONSOLE_RE`` for lines without " login: " and not starting with "** " (nearly all).
_PLAIN_CONSOLE_RE = re.compile(r"(?:<[0-9]+>)?\[ *[0-9]+\.[0-9]+\](\[ *(?:C|T)[0-9]+\])? ")
#: Every line at once: (its context, the text after the timestamp); the text is
#: what ``_strip_prefix`` leaves of a plain line (the first "] " ends the prefix).
#: A timestamped line's context is "]" and its caller id ("][ T12]"), if any; an
#: untimestamped line's is "".  Only equality and the caller id matter.
_LINE_RE = re.compile(r"^(?:(?:<[0-9]+>)?\[ *[0-9]+\.[0-9]+(\](?:\[ *(?:C|T)[0-9]+\])?) )?(.*)$", re.MULTILINE)
_TASK_CONTEXT = re.compile(r"\[ *T[0-9]+\]")
_CPU_CONTEXT = re.compile(r"\[ *C[0-9]+\]")
_CONSOLE = "]"  # context of timestamped lines without a caller id
_UNRELIABLE = "?"  # what ``_Console.kept`` holds for "? " frames: no context equals it
_GCE_HANGUP = "serialport: VM disconnected."
_HEADERS = tuple(dict.fromkeys(o.header for o in oopses.LINUX_OOPSES))
#: Fewer, shorter strings than ``_HEADERS``, each header holding one: lines are
#: found with one ``str.find`` scan per needle, then checked for real headers.
_HEADER_NEEDLES = ("BUG", "WARNING:", "INFO:", "panic", "fault", "error:", "Unable to handle kernel",
                   "stack segment: ", "invalid opcode:", "UBSAN:", "Booting the kernel.",
                   "unregister_netdevice: waiting for", "VFS: ", "Alignment trap:", "SYZFA")
if missing := [h for h in _HEADERS if not any(n in h for n in _HEADER_NEEDLES)]:
    raise RuntimeError(f"oops headers without a needle in _HEADER_NEEDLES: {missing}")
#: Lines that change how a report is gathered (rare: found with str.find, not per line).
_NO_LOCKDEP = "Disabling lock debugging due to kernel taint"
_CONTINUATION = oopses.alternation(oopses.REPORT_START_IGNORES)
_NMI = "Sending NMI from CPU"
_TAIL = ("Kernel panic - not syncing", "WARNING: possible circular locking dependency detected")
if missing := [t for t in _TAIL if not any(n in t for n in _HEADER_NEEDLES)]:
    raise RuntimeError(f"tails without a needle in _HEADER_NEEDLES: {missing}")


def _context(raw: str) -> str:
    """The line's console context: "" (no timestamp), ``_CONSOLE``, or its caller id."""
    if " login: " in raw or raw.startswith("** "):
        m = _CONSOLE_RE.match(raw)
    elif raw.startswith(("[", "<")):
        m = _PLAIN_CONSOLE_RE.match(raw)
    else:
        return ""
    return "" if m is None else _CONSOLE + (m.group(1) or "")


class _Console:
    """The log's lines, digested at once: contexts, stripped texts, oops lines.

    One regexp over the whole text splits every line into its context and
    text; the few lines that need more (a ``login:`` prefix, ``? `` frames,
    oops headers) are found with ``str.find`` and digested one by one.
    ``kept[i]`` is line ``i``'s context, or ``_UNRELIABLE`` for a ``? `` frame:
    a report keeps the lines whose ``kept`` is its context.
    """

    # What a log without an oops line leaves as it is (nothing looks at them then).
    info_at: set[int] = set()
    continuation: set[int] = set()
    second_starts: list[int] = []
    special: list[int] = []

    def __init__(self, text: str):
        self.text = text
        raw = text.split("\n")
        if text.endswith("\n") or not text:
            raw.pop()  # no line after the final newline
        self.starts = list(accumulate(map((1).__add__, map(len, raw[:-1])), initial=0)) if raw else []
        if "\r" in text:
            raw = [r.rstrip("\r") for r in raw]
            self.context = [_context(r) for r in raw]
            self.stripped, questionable = map(list, zip(*map(_strip_prefix, raw, self.context))) \
                if raw else ([], [])
            self.kept = [_UNRELIABLE if q else c for c, q in zip(self.context, questionable)]
            unstripped = set()
        else:
            unstripped = self._digest(raw)
        self.raw = raw
        candidates = sorted(self._lines_with(_HEADER_NEEDLES))
        self.oops_at = {i: oops for i in candidates if (oops := self._oops(raw[i]))}
        self.oops_lines = sorted(self.oops_at)
        if not self.oops_at:
            return  # nothing else is looked at
        for i in unstripped & self.oops_at.keys():
            line = self.stripped[i]
            self.stripped[i] = line[line.find(" ? ") + 2:]
        self.info_at = self._lines_with(oopses.INFO_WITH_STACK)
        self.continuation = {i for i in self.oops_lines if _CONTINUATION.search(raw[i])}
        self.second_starts = sorted({i for i in self.oops_lines if i not in self.continuation} | self.info_at)
        #: The lines that change how a report is gathered (lock debugging off, NMI, tails: a tail
        #: holds a header needle, so its line is a candidate).
        self.special = sorted(self._lines_with((_NO_LOCKDEP, _NMI))
                              | {i for i in candidates if any(t in raw[i] for t in _TAIL)})

    def _digest(self, raw: list[str]) -> set[int]:
        """Contexts, stripped texts and kept contexts of ``raw``; the "? " lines left unstripped."""
        rows = _LINE_RE.findall(self.text)[:len(raw)]
        self.context, self.stripped = map(list, zip(*rows)) if rows else ([], [])
        context, stripped = self.context, self.stripped
        kept = self.kept = context.copy()
        odd = self._lines_with((" login: ",))
        if raw and raw[0].startswith("** "):
            odd.add(0)
        odd.update(self.line_of(pos + 1) for pos in _find_all(self.text, "\n** "))
        for i in odd:
            context[i] = kept[i] = _context(raw[i])
            stripped[i], questionable = _strip_prefix(raw[i], context[i])
            if questionable:
                kept[i] = _UNRELIABLE
        # _strip_prefix's rules on the other timestamped lines, whose stripped text is the rest
        # already.  "? " frames (a quarter of a log's lines) are found by C loops and only marked:
        # no report holds one but as its oops line, whose "? " __init__ drops.
        marked = set(compress(count(), map(contains, stripped, repeat(" ? "))))
        marked -= odd | set(compress(count(), map(not_, context))) | self._lines_with(("<EOI>",))
        for i in marked:
            kept[i] = _UNRELIABLE
        for i in self._lines_with((" (unreliable)",)) - odd - marked:  # powerpc
            line = stripped[i]
            if context[i] and "<EOI>" not in line and line.endswith(" (unreliable)"):
                stripped[i], kept[i] = line[:-13], _UNRELIABLE
        return marked

    def __len__(self) -> int:
        return len(self.raw)

    def end(self, i: int) -> int:
        """Offset of the end of line ``i`` (its newline)."""
        return self.starts[i + 1] - 1 if i + 1 < len(self.starts) else len(self.text)

    def line_of(self, pos: int) -> int:
        return bisect_right(self.starts, pos) - 1

    def _lines_with(self, needles: tuple[str, ...], lo: int = 0) -> set[int]:
        """Indices of the lines (from offset ``lo``) holding any of ``needles``."""
        found: set[int] = set()
        find = self.text.find
        for needle in needles:
            pos = find(needle, lo)
            while pos >= 0:
                i = self.line_of(pos)
                found.add(i)
                pos = find(needle, self.end(i) + 1)  # one hit per line is enough
        return found

    @staticmethod
    def _oops(raw: str) -> Oops | None:
        """The first oops (in table order) whose header is on the line, unsuppressed."""
        for oops in oopses.LINUX_OOPSES:
            if oops.header in raw and oops.matches(raw):
                return oops
        return None


def _find_all(text: str, needle: str):
    pos = text.find(needle)
    while pos >= 0:
        yield pos
        pos = text.find(needle, pos + 1)


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
        if continuation_ok or i not in lines.continuation:
            return i
    return None


# --- report extraction --------------------------------------------------------

def _build(text: str, lines: _Console, start: int, floor: int) -> tuple[Report, bool]:
    """The report starting at line ``start``; and whether a title format matched."""
    oops, context = lines.oops_at[start], lines.context[start]
    prefix = _prefix(lines, start, floor, context)
    body, report_end, end_pos = _collect(lines, start, context)
    own = list(map(lines.stripped.__getitem__, body))
    report_lines = prefix + own[:report_end]
    full = "\n".join(own) + "\n"
    desc = _describe(full if report_end == len(body) else "\n".join(own[:report_end]) + "\n", oops)
    head_start = lines.starts[start]
    if not desc.title:  # the header got mangled by stripping: use raw text
        full = text[head_start:end_pos]
        desc = _describe(full, oops)
        report_lines = full.splitlines()
    head = lines.raw[start]
    raw_title = desc.title or head[head.find(oops.header):]
    reason = desc.corrupted or _corruption(raw_title, full, desc.format)
    title = _normalize(raw_title)
    alts = tuple(dict.fromkeys(a for a in map(_normalize, desc.alt_titles) if a != title))
    frame = _frame_in_title(title)
    report = Report(
        title=title,
        alt_titles=alts,
        type=title_to_type(title),
        frame=frame,
        corrupted=bool(reason),
        start=head_start,
        end=lines.end(body[report_end - 1]),
        text="\n".join(report_lines) + "\n",
        corrupted_reason=reason,
    )
    return report, desc.format is not None


def _prefix(lines: _Console, start: int, floor: int, context: str) -> list[str]:
    """Up to 5 (50 with caller ids) same-context lines before the oops line."""
    limit = 50 if _TASK_CONTEXT.search(context) else 5
    found: deque[str] = deque()
    kept, stripped = lines.kept, lines.stripped
    for i in range(start - 1, floor - 1, -1):
        if len(found) == limit:
            break
        if kept[i] == context and stripped[i]:
            found.appendleft(stripped[i])
    return list(found)


def _collect(lines: _Console, start: int, context: str) -> tuple[list[int], int, int]:
    """The report's line indices from ``start``, how many precede a second report, and EndPos.

    Lines of the oops' context (and, after "Sending NMI from CPU", of CPU
    contexts) up to the end of the log.  The rare lines that change what is
    kept are found with ``str.find``; between them, one filter per stretch.
    """
    n = len(lines)
    min_lines = 16 if "BUG: KMSAN:" in lines.raw[start] else 22
    keep_interleaved = context not in ("", _CONSOLE)  # caller ids tell reports apart
    end_pos = lines.end(lines.oops_lines[-1])  # the last oops line's end (at or after start)
    nxt = bisect_right(lines.second_starts, start)
    second_at = lines.second_starts[nxt] if nxt < len(lines.second_starts) else n
    kept, raw = lines.kept, lines.raw
    body = [start]
    skipped = 0  # kept lines dropped as lock debugging noise (they count toward min_lines)
    # Other CPUs' backtraces belong to this report.
    cpu_traceback = _NMI in raw[start] and _NO_LOCKDEP not in raw[start]
    special = lines.special[bisect_right(lines.special, start):]
    prev = start
    for stop in [*special, n]:
        if cpu_traceback:
            body += [i for i in range(prev + 1, stop) if kept[i] == context or _CPU_CONTEXT.search(kept[i])]
        else:  # the common case, without a Python step per line
            body += compress(range(prev + 1, stop), map(context.__eq__, kept[prev + 1:stop]))
        if stop == n:
            break
        prev = stop
        if kept[stop] != context and not (cpu_traceback and _CPU_CONTEXT.search(kept[stop])):
            continue
        line = raw[stop]
        if _NO_LOCKDEP in line:
            skipped += 1
            continue
        if _NMI in line:
            cpu_traceback = True
        elif len(body) + skipped + 1 > min_lines and any(t in line for t in _TAIL):
            break  # panic_on_warn's panic stack and oops-induced lockdep splats add nothing
        body.append(stop)
    report_end = len(body) if keep_interleaved else bisect_left(body, second_at)
    return body, report_end, end_pos


@dataclass(frozen=True)
class _Description:
    title: str = ""
    corrupted: str = ""
    alt_titles: tuple[str, ...] = ()
    format: OopsFormat | None = None


_NO_FRAMES = "extracted no frames"


def _describe(report: str, oops: Oops) -> _Description:
    """Title the report with the oops format matching earliest in it.

    Of the formats whose title regexp starts there, the first (in table
    order) whose ``report`` regexp, if any, also matches.
    """
    first = oops.titles_re.search(report)
    best = _Description()
    if first is not None:
        at = first.start()
        for fmt in oops.formats[int(first.lastgroup[1:]):]:
            if (m := fmt.title.match(report, at)) is None:
                continue
            if fmt.report is not None and (m := fmt.report.search(report)) is None:
                continue
            best = _titled(fmt, m, report)
            if best.title:
                break
    if not best.title:
        pos = report.find(oops.header)
        if pos < 0:
            return _Description()
        eol = report.find("\n", pos)
        best = _Description(report[pos:eol if eol >= 0 else len(report)],
                            "matched title but not report regexp" if first is not None else "")
    if not best.corrupted and best.format is not None and best.format.corrupted:
        best = replace(best, corrupted="report format is marked as corrupted")
    return best


def _titled(fmt: OopsFormat, m: re.Match, report: str) -> _Description:
    """The title (and alt titles) ``fmt`` gives the report its regexp matched as ``m``."""
    groups = [g or "" for g in m.groups()]
    frames: list[tuple[str, str]] = []
    corrupted = ""
    if fmt.stack is not None:
        frames, ok = _extract_frames(fmt.stack, _Lines(report[m.start():]))
        corrupted = "" if ok else _NO_FRAMES
    args = groups + [canonical for canonical, _ in frames]
    title = fmt.fmt.format(*args)
    alts = [a.format(*args) for a in fmt.alt]
    for variant in _stripped_variants(frames):
        alt_title = fmt.fmt.format(*groups, *variant)
        if alt_title != title:
            alts.append(alt_title)
        alts.extend(a.format(*groups, *variant) for a in fmt.alt)
    return _Description(title, corrupted, tuple(dict.fromkeys(alts)), fmt)


# --- stack frames -------------------------------------------------------------

def _multiline(patterns: tuple[re.Pattern, ...]) -> tuple[re.Pattern, ...]:
    """``^``-anchored line patterns, to run over a whole report in MULTILINE mode."""
    assert all(p.pattern.startswith("^") for p in patterns), "line patterns must start with ^"
    return tuple(re.compile(p.pattern, p.flags | re.MULTILINE) for p in patterns)


_FRAMES_M = _multiline(oopses.FRAME_RES)
_CORRUPTED_LINE = re.compile("|".join(f"(?:{p.pattern})" for p in oopses.CORRUPTED_LINES), re.ASCII)


def _extract_frames(stack: StackFmt, lines: _Lines) -> tuple[list[tuple[str, str]], bool]:
    """Guilty (canonical, raw) frames, one per stack trace part; ok flag."""
    frames, ok = _walk_parts(stack, stack.parts, lines)
    if ok or not stack.parts2:
        return frames, ok
    return _walk_parts(stack, stack.parts2, lines)


def _walk_parts(stack: StackFmt, parts: tuple, lines: _Lines) -> tuple[list[tuple[str, str]], bool]:
    """Match ``parts`` in order over the lines of a report: a guilty frame per trace."""
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
            if i + 1 < len(parts):  # the next part may end the trace: line by line
                pos, trace_ok, ended_by_next = _walk_trace_lines(lines, pos, parts[i + 1], raw, stack)
                i += ended_by_next
            else:
                trace_ok = _walk_trace(lines, pos, raw, stack)
            ok = ok and trace_ok
        else:
            pos, m, part_ok = _find_part(lines, pos, part)
            if m is not None:
                _append_frames(raw, m, stack)
            ok = ok and part_ok
        i += 1
    return results, ok


#: Regexp syntax that may match across a newline or depends on line ends.
_NOT_LINE_LOCAL = re.compile(r"\^|\$|\\[sSWDBbAZn]|\[\^|\(\?<|\(\?[a-z]*s")


@cache
def _line_local(pattern: re.Pattern) -> bool:
    """Whether every match of ``pattern`` lies inside one line and does not depend on line ends."""
    return not _NOT_LINE_LOCAL.search(pattern.pattern)


def _find_part(lines: _Lines, pos: int, part: re.Pattern) -> tuple[int, re.Match | None, bool]:
    """The first line from ``pos`` on that ``part`` finds something on, unless a
    fault-injection line comes first: (the offset after it, the match, ok)."""
    if _line_local(part):  # one search over the rest of the text, not one per line
        m = part.search(lines.text, pos)
        end = lines.line_start(m.start()) if m is not None else lines.size + 1
        bad = [c for c in lines.corrupt if pos <= c <= end]
        if bad:
            return lines.after(min(bad)), None, False
        return (lines.after(end), m, True) if m is not None else (end, None, True)
    while pos <= lines.size:
        line, at = lines.line(pos), pos
        pos = lines.after(pos)
        if at in lines.corrupt:
            return pos, None, False
        if m := part.search(line):
            return pos, m, True
    return pos, None, True


class _Lines:
    """A report's lines by offset.  Stack starts and fault-injection frames are
    found with ``str.find`` of their literal hints and confirmed per line; frame
    lines by one MULTILINE scan of the trace: C loops, not a Python loop per line."""

    def __init__(self, text: str):
        self.text, self.size = text, len(text)
        self.corrupt = self._confirmed(oopses.CORRUPTED_HINTS, _CORRUPTED_LINE, 0, self.size + 1, first=False)

    def line(self, pos: int) -> str:
        eol = self.text.find("\n", pos)
        return self.text[pos:eol if eol >= 0 else self.size]

    def after(self, pos: int) -> int:
        """Offset of the line after the one at ``pos`` (``size + 1`` past the last)."""
        eol = self.text.find("\n", pos)
        return eol + 1 if eol >= 0 else self.size + 1

    def line_start(self, pos: int) -> int:
        return self.text.rfind("\n", 0, pos) + 1

    def next_stack_start(self, pos: int) -> int:
        """Offset of the first line from ``pos`` on that starts a stack (``size + 1``: none)."""
        found = self._confirmed(oopses.STACK_START_HINTS, oopses.STACK_START_RE, pos, self.size + 1, first=True)
        return min(found, default=self.size + 1)

    def frames(self, pos: int, stop: int) -> list[re.Match]:
        """The frame lines' matches in [pos, stop), per line the first of ``FRAME_RES`` matching."""
        by_line: dict[int, re.Match] = {}
        for frame_re in _FRAMES_M:
            for m in frame_re.finditer(self.text, pos, stop):
                by_line.setdefault(m.start(), m)
        return [by_line[o] for o in sorted(by_line)]

    def _confirmed(self, hints: tuple[str, ...], pattern: re.Pattern, pos: int, stop: int,
                   first: bool) -> set[int]:
        """Offsets of the lines in [pos, stop) holding a hint that ``pattern`` finds something on
        (with ``first``, only each hint's first such line)."""
        found: set[int] = set()
        text = self.text
        for hint in hints:
            at = text.find(hint, pos, stop)
            while at >= 0:
                start = self.line_start(at)
                if pattern.search(self.line(start)):
                    found.add(start)
                    if first:
                        break
                at = text.find(hint, self.after(start), stop)
        return found


def _walk_trace(lines: _Lines, pos: int, raw: list[str], stack: StackFmt) -> bool:
    """Frames from ``pos`` up to a stack start or a fault-injection frame, for the last part
    of a stack format (nothing after the trace is looked at); whether no such frame came first."""
    if stack.extractor is None and not lines.corrupt:
        # The first frame kept is the guilty one: look no further once there is one (and no
        # further than the next stack start, found line by line on the way).
        _first_frame(lines, pos, lines.size + 1, raw, stack, stack_starts=True)
        return True
    stop = lines.next_stack_start(pos)
    bad = [c for c in lines.corrupt if pos <= c <= stop]
    stop = min(bad, default=stop)
    if stack.extractor is not None:  # it looks at every frame
        for m in lines.frames(pos, stop):
            _append_frames(raw, m, stack)
    else:
        _first_frame(lines, pos, stop, raw, stack, stack_starts=False)
    return not bad


def _first_frame(lines: _Lines, at: int, stop: int, raw: list[str], stack: StackFmt, stack_starts: bool) -> None:
    """Frame lines from ``at`` until one yields a kept frame, up to ``stop`` (with ``stack_starts``,
    also up to the first line starting a stack)."""
    while not raw and at < stop and at <= lines.size:
        line = lines.line(at)
        if stack_starts and oopses.STACK_START_RE.search(line):
            return
        for frame_re in oopses.FRAME_RES:
            if m := frame_re.search(line):
                _append_frames(raw, m, stack)
                break
        at = lines.after(at)


def _walk_trace_lines(lines: _Lines, pos: int, next_part: re.Pattern, raw: list[str],
                      stack: StackFmt) -> tuple[int, bool, bool]:
    """``_walk_trace`` when ``next_part`` may end the trace: (pos, ok, whether it did)."""
    while pos <= lines.size:
        line, at = lines.line(pos), pos
        pos = lines.after(pos)
        if at in lines.corrupt:
            return pos, False, False
        if oopses.STACK_START_RE.search(line):
            break
        if m := next_part.search(line):
            _append_frames(raw, m, stack)
            return pos, True, True
        for frame_re in oopses.FRAME_RES:
            if m := frame_re.search(line):
                _append_frames(raw, m, stack)
                break
    return pos, True, False


def _append_frames(frames: list[str], m: re.Match, stack: StackFmt) -> None:
    for group in m.groups():
        if group and not stack.skips(frame := demangle(group)):
            frames.append(frame)


def _key_frame(stack: StackFmt, raw: list[str]) -> tuple[str, str] | None:
    if not raw:
        return None
    if stack.extractor is None:
        return _strip_syscall_prefix(raw[0]), raw[0]
    frame, idx = stack.extractor([_strip_syscall_prefix(f) for f in raw])
    return (frame, raw[idx]) if frame else None


@lru_cache(maxsize=1 << 16)
def _strip_syscall_prefix(frame: str) -> str:
    return min((frame.removeprefix(p) for p in oopses.STRIP_FRAME_PREFIXES), key=len, default=frame)


def _stripped_variants(frames: list[tuple[str, str]]) -> list[list[str]]:
    """Raw frames, and raw frames minus each syscall prefix, for alt titles."""
    raw = [r for _, r in frames]
    variants = [raw]
    if not any(r.startswith(oopses.STRIP_FRAME_PREFIXES) for r in raw):
        return variants
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
    for key, hint in zip(oopses.STACK_START, oopses.STACK_START_HINTS):
        if (at := report.find(hint)) < 0:
            continue
        # The first match holds a hint at or after ``at``, on one line (the "[^k] backtrace"
        # one may start with the newline before it): start the search there.
        m = key.search(report, max(report.rfind("\n", 0, at), 0))
        if m is None:
            continue
        following = report[m.start():].split("\n", 16)
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

_DIGIT = "[0-9]"
#: (pattern, replacement, a regexp every match holds: the pattern is not run without it).
_TITLE_REPLACEMENTS = tuple((re.compile(p, re.ASCII), r, re.compile(need)) for p, r, need in (
    (r"syz-executor\.?[0-9]+((/|:)[0-9]+)?", "syz-executor", "syz-executor"),
    (r"syzkaller[0-9]+((/|:)[0-9]+)?", "syzkaller", "syzkaller"),
    (r"([^a-zA-Z0-9])(?:0x)?[0-9a-f]{6,}", r"\g<1>ADDR", "[0-9a-f]{6}"),  # addresses
    (r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})", "IP", r"[0-9]\."),
    (r"(\.\w+)(:[0-9]+)+", r"\g<1>:LINE", ":[0-9]"),
    (r"([a-zA-Z][a-zA-Z0-9_.]+)\+0x[0-9a-z]+/0x[0-9a-z]+", r"\g<1>", r"\+0x"),  # func+off/size
    (r"CPU#[0-9]+", "CPU", "CPU#"),
    (r"(\W)(\d+)(\W|$)", r"\g<1>NUM\g<3>", _DIGIT),
    (r"\d{7,}", "NUM", _DIGIT),  # digits inside names (cfg80211) stay, long runs go
))
#: The function after " in " (the last such) names a title's guilty frame.
_FRAME_AFTER_IN = re.compile(r"(?:<[a-zA-Z0-9_: ]+>)?[a-zA-Z0-9_:]+")
_MAX_TITLE = 120


def _frame_in_title(title: str) -> str | None:
    """What ``.* in ((?:<[a-zA-Z0-9_: ]+>)?[a-zA-Z0-9_:]+)`` matches as group 1, by ``rfind``:
    the greedy ``.*`` takes the last " in " that a name follows."""
    end = len(title)
    while (at := title.rfind(" in ", 0, end)) >= 0:
        if m := _FRAME_AFTER_IN.match(title, at + 4):
            return m.group()
        end = at + 3  # an earlier " in ", overlapping this one's start too
    return None


def _normalize(title: str) -> str:
    """Replace volatile bits (addresses, numbers, lines), then sanitize."""
    for pattern, repl, need in _TITLE_REPLACEMENTS:
        while need.search(title) and (new := pattern.sub(repl, title)) != title:
            title = new
    title = title[:_MAX_TITLE].replace("\t", " ")
    if title.isascii() and title.isprintable() and "  " not in title:
        return title.strip()  # what the loop below gives such a title
    out: list[str] = []
    prev = " "
    for ch in title:
        if ch < " " or ch >= "\x7f" or ch == " " == prev:
            continue
        out.append(ch)
        prev = ch
    return "".join(out).strip()
