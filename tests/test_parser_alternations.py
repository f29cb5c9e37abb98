"""The joined regexps the console parser searches once instead of one by one
(harness.report.oopses.alternation) find what the separate regexps find, so
titles cannot change; and the bench reports CPU time beside wall time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from shared_data import SETS

from harness.report import oopses
from harness.report.corpus import case_files, load_case
from tools.bench.parser import corpus_throughput

DATA = Path(__file__).parent / "data" / "oops"
CORPUS = SETS["oops-corpus"]


def _logs() -> list[str]:
    files = case_files(DATA) + (case_files(CORPUS.path) if CORPUS.here() else [])
    return [load_case(p).log for p in files]


def _earliest_format(oops: oopses.Oops, text: str) -> tuple[int, int] | None:
    """(start, index) of the format whose title regexp matches first; the first in table order on a tie."""
    hits = [(m.start(), i) for i, f in enumerate(oops.formats) if (m := f.title.search(text))]
    return min(hits) if hits else None


def test_titles_alternation_finds_the_earliest_first_format():
    checked = 0
    for log in _logs():
        for oops in oopses.LINUX_OOPSES:
            if oops.header not in log:
                continue
            text = log[log.find(oops.header) - 200:] if log.find(oops.header) > 200 else log
            m = oops.titles_re.search(text)
            want = _earliest_format(oops, text)
            assert (m and (m.start(), int(m.lastgroup[1:]))) == (want or None), (oops.header, text[:300])
            checked += m is not None
    assert checked >= 5


def test_suppressions_alternation_agrees_with_each_suppression():
    lines = [line for log in _logs() for line in log.splitlines() if any(o.header in line for o in oopses.LINUX_OOPSES)]
    lines += ["WARNING: /etc/ssh/moduli does not exist, using fixed modulus", "Warning: foo uses wireless extensions",
              "EXT4-fs (sda): WARNING: mount", "INFO: lockdep is turned off.", "BUG: KASAN: use-after-free in x"]
    for oops in oopses.LINUX_OOPSES:
        for line in lines:
            if oops.header in line:
                want = oops.header in line and not any(s.search(line) for s in oops.suppressions)
                assert oops.matches(line) == want, (oops.header, line)


def test_alternation_scopes_leading_flags_and_refuses_what_it_cannot_join():
    joined = oopses.alternation((re.compile("(?i)warning: x"), re.compile("BUG: y")))
    assert joined.search("WARNING: x") and joined.search("BUG: y") and not joined.search("bug: y")
    named = oopses.alternation((re.compile("a(b)"), re.compile("c")), group="t")
    assert named.search("zc").lastgroup == "t1" and named.search("ab").lastgroup == "t0"
    for bad in (r"(a)\1", r"(?P<x>a)", "a(?i:b)"):
        with pytest.raises(ValueError, match="cannot join"):
            oopses.alternation((re.compile(bad),))
    with pytest.raises(ValueError, match="different flags"):
        oopses.alternation((re.compile("a"), re.compile("b", re.ASCII)))


def test_stack_start_regexp_finds_the_lines_the_plain_union_finds():
    plain = re.compile("|".join(f"(?:{r.pattern})" for r in oopses.STACK_START), re.ASCII)
    lines = ["unreferenced object 0x1 (size 32): backtrace:", "  backtrace:", "stack backtrace:", "backtrace:",
             " backtrace (crc 1a2b):", "xbacktrace:", "Call Trace:", "Freed by task 7:", "k backtrace:"]
    lines += [line for log in _logs() for line in log.splitlines() if "acktrace" in line or "Call" in line]
    for line in lines:
        assert bool(plain.search(line)) == bool(oopses.STACK_START_RE.search(line)), line


def test_corpus_throughput_gives_cpu_time_beside_wall_time():
    stats = corpus_throughput(DATA, passes=1)
    assert stats["files"] == len(case_files(DATA)) and stats["reports"] > 0
    assert stats["cpu_seconds"] >= 0 and stats["cpu_mb_per_s"] > 0 and stats["mb_per_s"] > 0
