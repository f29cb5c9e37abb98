"""The shortcuts the console parser takes for speed hold (harness.report.parser/oopses):
each finds every line the exact rule would, so titles cannot change."""

from __future__ import annotations

import re

from harness.report import oopses, parser

EXAMPLES = {  # one line each STACK_START pattern must find, as kernels print them
    0: "Call Trace:", 1: "Allocated:", 2: "Allocated by task 123:", 3: "Freed:", 4: "Freed by task 7:",
    5: "unreferenced object 0x1 (size 32): backtrace (crc 1a2b):", 6: "Backtrace:",
    7: "Uninit was stored to memory at:",
    8: "status: 0000000000000120 badaddr: 0000000000000000 cause: 000000000000000d",
}


def test_every_stack_start_holds_its_hint():
    assert len(oopses.STACK_START_HINTS) == len(oopses.STACK_START) == len(EXAMPLES)
    for i, (pattern, hint) in enumerate(zip(oopses.STACK_START, oopses.STACK_START_HINTS)):
        m = pattern.search(EXAMPLES[i])
        assert m, (pattern.pattern, EXAMPLES[i])
        assert hint in m.group(0), (hint, m.group(0))


def test_every_oops_header_holds_a_needle():
    assert all(any(n in o.header for n in parser._HEADER_NEEDLES) for o in oopses.LINUX_OOPSES)


def test_skip_regexp_finds_what_the_plain_alternation_finds():
    plain = re.compile("|".join(oopses.SKIP_PATTERNS), re.ASCII)
    names = ["down", "down_read", "get_taint", "xget_taint", "iput", "iput_final", "kfree", "kvfree", "x_kfree",
             "unlock_page", "lock_page", "xlock_page", "crc32c", "readb", "readbx", "mutex_lock", "x_mutex_lock",
             "rb_next", "x_rb_next", "do_trap", "bad_trap", "kmalloc_node", "kvzalloc", "ext4_write_inline_data",
             "atomic64_add", "test_bit", "el1h_64_sync_handler", "lockdep_hardirqs_on", "__sanitizer_cov", "spin_lock",
             "write_once_size_nocheck", "folio_unlock", "xfs_bmapi_write", "copyin", "copyinx", "complete",
             "completely_fine"]
    for name in names:
        assert bool(plain.search(name)) == bool(oopses.SKIP_RE.search(name)), name


def test_literal_trie_keeps_every_word():
    words = ["lock", "lockdep", "lock_acquire", "mutex_", "memcpy", "memset", "m"]
    trie = re.compile(oopses.literal_trie(words))
    for w in words:
        assert trie.search("x" + w + "y")
    assert not trie.search("zzz") and trie.search("am")  # "m" alone covers every word starting with m


def test_part_search_knows_what_may_cross_lines():
    assert parser._line_local(oopses.CALL_TRACE) and parser._line_local(oopses.RIP_FRAME)
    for risky in (r"^x", r"x$", r"a\sb", r"[^k] b", r"(?<=a)b", r"(?s)a.b", r"a\nb"):
        assert not parser._line_local(re.compile(risky)), risky


def test_a_report_text_ends_with_one_newline():
    text = "[    1.0] kernel BUG at fs/x.c:1!\n[    1.0] invalid opcode: 0000 [#1] SMP\n[    1.0] RIP: 0010:f+0x1/0x2\n"
    rep = parser.parse(text)[0]
    assert rep.text.endswith("RIP: 0010:f+0x1/0x2\n") and rep.end == len(text)
