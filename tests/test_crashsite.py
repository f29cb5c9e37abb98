"""Titles that survive inlining (harness.report.crashsite, the verdict's title match).

The logs are real consoles (tests/data/oops) edited only where a build that
inlines the function syzkaller's title names would print otherwise: the RIP
(and the WARNING line's symbol) name the caller.  The source files are
excerpts of Debian's 6.1.192 tree, where those lines are.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from harness.report import parse
from harness.report.corpus import load_case
from harness.report.crashsite import crash_site, enclosing_function, title_evidence
from harness.verdict import Evidence, Outcome, crash_rule

DATA = Path(__file__).parent / "data" / "crashsite"
SRC = DATA / "src"
WARNING = load_case(DATA / "warning-inlined.log")
BUG = load_case(DATA / "bug-inlined.log")


def test_the_printed_titles_stay_syzkallers():
    assert parse(WARNING.log)[0].title == WARNING.title == "WARNING in __ext4_journal_start_sb"
    assert parse(BUG.log)[0].title == BUG.title == "kernel BUG in ext4_write_inline_data_end"


def test_enclosing_function_reads_kernel_style_c():
    assert enclosing_function(SRC / "fs/ext4/ext4_jbd2.c", 75) == "ext4_journal_check_start"
    assert enclosing_function(SRC / "fs/ext4/inline.c", 235) == "ext4_write_inline_data"
    assert enclosing_function(SRC / "fs/ext4/inline.c", 1) is None  # the licence comment: no function
    assert enclosing_function(SRC / "fs/ext4/no-such.c", 10) is None


def test_site_names_the_line_and_the_enclosing_function():
    site = crash_site(parse(WARNING.log)[0], SRC)
    assert site.rip == "__ext4_journal_start_sb"
    assert site.source == ("fs/ext4/ext4_jbd2.c", 75)
    assert site.enclosing == "ext4_journal_check_start"


def test_warning_matches_through_the_source():
    rep = parse(WARNING.log)[0]
    want = ("WARNING in ext4_journal_check_start",)
    assert title_evidence(rep, want) is None  # without the source tree: the RIP names another function
    assert title_evidence(rep, want, source_tree=SRC) == (
        "WARNING in ext4_journal_check_start: ext4_journal_check_start inlined into __ext4_journal_start_sb "
        "at fs/ext4/ext4_jbd2.c:75 (ext4_journal_check_start encloses that line in the source)")
    assert title_evidence(rep, ("kernel BUG in ext4_journal_check_start",), source_tree=SRC) is None  # kind differs


def test_bug_on_matches_through_inlined_frames_of_a_symbolized_report():
    rep = parse(BUG.log)[0]
    symbolized = rep.text.replace(
        "RIP: 0010:ext4_write_inline_data_end+0xf4/0x570 [ext4]",
        "RIP: 0010:ext4_write_inline_data fs/ext4/inline.c:235 [inline] [ext4]\n"
        "RIP: 0010:ext4_write_inline_data_end+0xf4/0x570 fs/ext4/inline.c:774 [ext4]", 1)
    why = title_evidence(replace(rep, text=symbolized), ("kernel BUG in ext4_write_inline_data",))
    assert why == ("kernel BUG in ext4_write_inline_data: ext4_write_inline_data inlined into "
                   "ext4_write_inline_data_end at fs/ext4/inline.c:235 (debug info)")


def test_verdict_reproduced_with_the_evidence_named():
    expected = ("kernel BUG in ext4_write_inline_data",)
    plain = crash_rule(Evidence(console=BUG.log, output="", expected_titles=expected))
    assert plain.outcome is Outcome.OTHER_CRASH
    seen = crash_rule(Evidence(console=BUG.log, output="", expected_titles=expected, source_dir=SRC))
    assert seen.outcome is Outcome.REPRODUCED
    assert seen.title == "kernel BUG in ext4_write_inline_data_end"  # the printed title is syzkaller's
    assert seen.to_dict()["matched_by"].startswith(
        "kernel BUG in ext4_write_inline_data: ext4_write_inline_data inlined into ext4_write_inline_data_end "
        "at fs/ext4/inline.c:235")
    plain_title = crash_rule(Evidence(console=BUG.log, output="", expected_titles=(
        "kernel BUG in ext4_write_inline_data_end",)))
    assert plain_title.to_dict()["matched_by"] == "kernel BUG in ext4_write_inline_data_end: the title"
    assert plain_title.detail == ""  # nothing to explain when the title is syzkaller's


def test_verdict_asks_for_symbols_only_when_the_title_does_not_match():
    asked = []

    def symbolize(text: str) -> str:  # what run.py passes: the debug info at hand
        asked.append(text)
        return text.replace("RIP: 0010:ext4_write_inline_data_end+0xf4/0x570 [ext4]",
                            "RIP: 0010:ext4_write_inline_data fs/ext4/inline.c:235 [inline] [ext4]\n"
                            "RIP: 0010:ext4_write_inline_data_end+0xf4/0x570 fs/ext4/inline.c:774 [ext4]", 1)

    plain = crash_rule(Evidence(console=BUG.log, output="", symbolize=symbolize,
                                expected_titles=("kernel BUG in ext4_write_inline_data_end",)))
    assert plain.outcome is Outcome.REPRODUCED and not asked
    seen = crash_rule(Evidence(console=BUG.log, output="", symbolize=symbolize,
                               expected_titles=("kernel BUG in ext4_write_inline_data",)))
    assert seen.outcome is Outcome.REPRODUCED and len(asked) == 1
    assert seen.matched_by.endswith("at fs/ext4/inline.c:235 (debug info)")
    other = crash_rule(Evidence(console=BUG.log, output="", symbolize=symbolize,
                                expected_titles=("WARNING in ext4_write_inline_data",)))
    assert other.outcome is Outcome.OTHER_CRASH and len(asked) == 1  # another kind: nothing to ask


def test_a_patched_file_is_read_as_built_before_the_unpatched_tree(tmp_path):
    """A variant's patch shifts the WARNING's line: the function is found in the file as built (the
    cache entry keeps the stack's files), never at that line of the unpatched tree."""
    patched = tmp_path / "source"
    lines = (SRC / "fs/ext4/ext4_jbd2.c").read_text().splitlines(True)
    shifted = lines[:10] + ["/* a patch's comment */\n"] * 40 + lines[10:]  # line 75 is now line 115
    (patched / "fs/ext4").mkdir(parents=True)
    (patched / "fs/ext4/ext4_jbd2.c").write_text("".join(shifted))
    rep = parse(WARNING.log.replace("fs/ext4/ext4_jbd2.c:75", "fs/ext4/ext4_jbd2.c:115"))[0]
    want = ("WARNING in ext4_journal_check_start",)
    assert crash_site(rep, SRC).enclosing != "ext4_journal_check_start"  # the unpatched tree's line 115
    assert title_evidence(rep, want, source_tree=(patched, SRC)).endswith(
        "at fs/ext4/ext4_jbd2.c:115 (ext4_journal_check_start encloses that line in the source)")
    assert crash_site(parse(BUG.log)[0], (patched, SRC)).enclosing == "ext4_write_inline_data"  # not patched
