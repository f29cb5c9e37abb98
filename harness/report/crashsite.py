"""Where a report crashed, by every name the build gives it, so titles survive inlining.

syzkaller titles a WARNING or a kernel BUG after the function of the RIP.  When
another build inlines that function into its caller, the RIP names the caller
and the same bug gets another title.  The crash site is known by more than the
RIP symbol:

- the source line the kernel prints (``WARNING: ... at fs/x.c:12``,
  ``kernel BUG at fs/x.c:12!``, ``WARNING: fs/x.c:12 at ...``);
- the inlined frames at the RIP of a symbolized report
  (``RIP: 0010:inner fs/x.c:12 [inline]``);
- the function that encloses that source line in the build's source tree
  (``enclosing_function``: kernel style puts a function's braces in column 0).

``title_evidence`` says why an expected title is this report's, or None.  The
printed title stays syzkaller's; only matching is wiser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.report.oopses import RIP_FRAME
from harness.report.parser import Report

_SOURCE_LINE = (
    re.compile(r"kernel BUG at ([\w/.\-]+\.[chS]):(\d+)"),
    re.compile(r"WARNING: .*?at ([\w/.\-]+\.[chS]):(\d+)"),
    re.compile(r"WARNING: ([\w/.\-]+\.[chS]):(\d+) at "),
)
_INLINED_RIP = re.compile(r"RIP: \w+:([A-Za-z0-9_.]+) (\S+:\d+) \[inline\]")
#: Titles named after the crash site's function (the RIP's).
_SITE_TITLE = re.compile(r"^(WARNING|kernel BUG) in ([A-Za-z0-9_.]+)$")


@dataclass(frozen=True)
class CrashSite:
    """The crashing function's names: the RIP's symbol and what the build says about it."""

    rip: str | None  # the RIP symbol (after inlining)
    source: tuple[str, int] | None = None  # (file, line) the kernel printed
    inlined: tuple[tuple[str, str], ...] = ()  # (function, file:line) inlined at the RIP, innermost first
    enclosing: str | None = None  # the function around ``source`` in the build's source tree


#: The build's source: one tree, or several looked in order (the files a patch stack changed, as built,
#: before the unpatched tree: harness.kernels.cache.source_roots).
SourceTree = Path | tuple[Path, ...] | None


def crash_site(rep: Report, source_tree: SourceTree = None) -> CrashSite:
    """The crash site of ``rep`` (its text, symbolized or not; ``source_tree``: the build's source)."""
    text = rep.text
    rip = None
    for line in text.splitlines():
        if line.startswith("RIP: ") and (m := RIP_FRAME.search(line)) and m.group(1):
            rip = m.group(1)
            break
    source = next(((m.group(1), int(m.group(2))) for pattern in _SOURCE_LINE if (m := pattern.search(text))), None)
    inlined = tuple(dict.fromkeys((m.group(1), m.group(2)) for m in _INLINED_RIP.finditer(text)))
    enclosing = None
    roots = (source_tree,) if isinstance(source_tree, Path) else source_tree or ()
    path = next((root / source[0] for root in roots if (root / source[0]).is_file()), None) if source else None
    if path is not None:
        enclosing = enclosing_function(path, source[1])
    return CrashSite(rip, source, inlined, enclosing)


def title_evidence(rep: Report, expected: tuple[str, ...], site: CrashSite | None = None,
                   source_tree: SourceTree = None) -> str | None:
    """Why one of ``expected`` is ``rep``'s title: "T: the title" (syzkaller's title or an alt
    title), or "WARNING in X: X inlined into Y at fs/...:N (...)".  None: it is not."""
    if any(t in expected for t in (rep.title, *rep.alt_titles)):
        return f"{rep.title}: the title"
    got = _SITE_TITLE.match(rep.title)
    if got is None:
        return None
    site = site or crash_site(rep, source_tree)
    where = f"{site.source[0]}:{site.source[1]}" if site.source else "the RIP"
    for title in expected:
        want = _SITE_TITLE.match(title)
        if want is None or want.group(1) != got.group(1):
            continue
        name, caller = want.group(2), site.rip or got.group(2)
        for func, loc in site.inlined:
            if func == name:
                return f"{title}: {name} inlined into {caller} at {loc} (debug info)"
        if site.enclosing == name:
            return f"{title}: {name} inlined into {caller} at {where} ({name} encloses that line in the source)"
    return None


def may_be_inlined(rep: Report, expected: tuple[str, ...]) -> bool:
    """Whether some expected title is of the report's kind ("WARNING in", "kernel BUG in") but names
    another function: only then can more evidence (a symbolized report) help."""
    got = _SITE_TITLE.match(rep.title)
    return got is not None and any((m := _SITE_TITLE.match(t)) and m.group(1) == got.group(1) for t in expected)


_FUNC_NAME = re.compile(r"([A-Za-z_]\w*)\s*\((?:[^()]|\([^()]*\))*\)[^()]*$")
_SCAN_LIMIT = 2000  # lines looked back for a function's opening brace


def enclosing_function(path: Path, line: int) -> str | None:
    """The function whose body holds ``line`` of a kernel C file, or None (outside any, or no file).

    Kernel style: a function's ``{`` and ``}`` stand alone in column 0, its
    declaration just above the ``{``.  Walking up from the line, a column-0
    ``}`` first means the line is between functions.
    """
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    if not 0 < line <= len(lines):
        return None
    for i in range(line - 1, max(-1, line - 1 - _SCAN_LIMIT), -1):
        text = lines[i]
        if text.startswith("}") and i != line - 1:
            return None
        if text.startswith("{"):
            return _declared_name(lines, i)
    return None


def _declared_name(lines: list[str], brace: int) -> str | None:
    """The function name in the declaration lines just above the ``{`` at ``brace``."""
    decl: list[str] = []
    for i in range(brace - 1, max(-1, brace - 12), -1):
        text = lines[i].strip()
        if not text or text.endswith((";", "}", "*/")) or text.startswith("#"):
            break
        decl.insert(0, text)
    m = _FUNC_NAME.search(" ".join(decl))
    return m.group(1) if m else None
