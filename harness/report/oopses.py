"""The table of Linux oops formats, after syzkaller's ``pkg/report/linux.go``.

Each :class:`Oops` is keyed by a literal header that marks a console line as
the start of a crash; its :class:`OopsFormat` list turns the report text into a
title.  A title template is ``str.format`` syntax over the regexp groups of the
matched title (or ``report``) regexp, followed by the guilty frame(s) that the
:class:`StackFmt` extracts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

Extractor = Callable[[list[str]], tuple[str, int]]
_MEMO_MAX = 1 << 16  # frame names remembered per table (a bound for long-lived processes)


class _StackTrace:
    """Marker part: parse stack frames from here on."""

    def __repr__(self) -> str:
        return "TRACE"


TRACE = _StackTrace()
Part = re.Pattern | _StackTrace

_MACROS = {
    "{{ADDR}}": r"0x[0-9a-f]+",
    "{{PC}}": r"\[<?(?:0x)?[0-9a-f]+>?\]",
    "{{FUNC}}": r"([a-zA-Z0-9_]+)(?:\.|\+)",
    "{{SRC}}": r"([a-zA-Z0-9_/.\-]+\.[a-z]+:[0-9]+)",
}


def rx(pattern: str) -> re.Pattern:
    """Compile a pattern after expanding the ``{{PC}}``-style macros."""
    for macro, expansion in _MACROS.items():
        pattern = pattern.replace(macro, expansion)
    return re.compile(pattern, re.ASCII)


@dataclass(frozen=True)
class StackFmt:
    """How to find the guilty frame: ``parts`` are matched in order.

    A part is a regexp (matched against successive lines; its groups, if any,
    yield frames) or :data:`TRACE` (parse frames until the next stack start).
    ``parts2`` is a fallback when ``parts`` finds nothing.
    """

    parts: tuple[Part, ...]
    parts2: tuple[Part, ...] = ()
    skip: tuple[str, ...] = ()
    extractor: Extractor | None = None

    @cached_property
    def _own_skip_re(self) -> re.Pattern | None:
        return any_pattern_re(self.skip) if self.skip else None

    @cached_property
    def _skip_memo(self) -> dict[str, bool]:
        return {}

    def skips(self, frame: str) -> bool:
        """Whether ``frame`` is never the culprit (common or format-specific rule).

        Remembered per frame name: the skip regexp has hundreds of branches and
        the same frames recur in every report.
        """
        memo = self._skip_memo
        if (hit := memo.get(frame)) is None:
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            hit = memo[frame] = bool(SKIP_RE.search(frame) or self._own_skip_re and self._own_skip_re.search(frame))
        return hit


@dataclass(frozen=True)
class OopsFormat:
    """One title rule: ``title`` selects it, ``fmt`` renders the title."""

    title: re.Pattern
    fmt: str
    report: re.Pattern | None = None
    alt: tuple[str, ...] = ()
    stack: StackFmt | None = None
    no_stack_trace: bool = False
    corrupted: bool = False


@dataclass(frozen=True)
class Oops:
    """A crash kind, recognised on a console line by its literal ``header``."""

    header: str
    formats: tuple[OopsFormat, ...]
    suppressions: tuple[re.Pattern, ...] = ()

    def matches(self, line: str) -> bool:
        return self.header in line and not (self.suppressions and self._suppressed_re.search(line))

    @cached_property
    def _suppressed_re(self) -> re.Pattern:
        """The suppressions as one alternation: one search of a line, not one per suppression."""
        return alternation(self.suppressions)

    @cached_property
    def titles_re(self) -> re.Pattern:
        """Every format's title regexp in one alternation, the i-th as group ``t{i}``: one search
        finds where the earliest title starts and the first format (in table order) matching there."""
        return alternation(tuple(f.title for f in self.formats), group="t")


#: What a pattern cannot keep inside a bigger alternation: backreferences, group names, inline flags.
_NOT_ALTERNABLE = re.compile(r"\\[1-9]|\(\?P[<=]|\(\?[aiLmsux]")


def alternation(patterns: tuple[re.Pattern, ...], group: str = "") -> re.Pattern:
    """``patterns`` as one regexp matching where the first of them (in order) matches; with
    ``group``, the i-th is named ``{group}{i}`` (a match's ``lastgroup`` tells which matched)."""
    if bad := [p.pattern for p in patterns if _NOT_ALTERNABLE.search(_LEADING_FLAGS.sub("", p.pattern, count=1))]:
        raise ValueError(f"cannot join regexps using a backreference, a group name or inline flags: {bad}")
    if len({p.flags & ~_inline_flags(p.pattern) for p in patterns}) > 1:
        raise ValueError(f"cannot join regexps with different flags: {[p.pattern for p in patterns]}")
    name = (lambda i: f"?P<{group}{i}>") if group else (lambda i: "?:")
    return re.compile("|".join(f"({name(i)}{_scoped(p.pattern)})" for i, p in enumerate(patterns)),
                      patterns[0].flags & ~_inline_flags(patterns[0].pattern) if patterns else 0)


_LEADING_FLAGS = re.compile(r"\(\?([imsx]+)\)")


def _inline_flags(pattern: str) -> int:
    """The flags a leading ``(?i)`` sets."""
    m = _LEADING_FLAGS.match(pattern)
    return sum({"i": re.I, "m": re.M, "s": re.S, "x": re.X}[c] for c in set(m.group(1))) if m else 0


def _scoped(pattern: str) -> str:
    """``(?i)rest`` as ``(?i:rest)``: flags that may stand inside an alternation."""
    m = _LEADING_FLAGS.match(pattern)
    return f"(?{m.group(1)}:{pattern[m.end():]})" if m else pattern


# --- stack parsing parameters -------------------------------------------------

CALL_TRACE = rx(r"(?:Call (?:T|t)race:)|(?:Backtrace:)")
RIP_FRAME = rx(
    r"(?:IP|NIP|pc |PC is at):? (?:(?:[0-9]+:)?(?:{{PC}} +){0,2}{{FUNC}}|(?:[0-9]+:)?0x[0-9a-f]+"
    r"|(?:[0-9]+:)?{{PC}} +\[< *\(null\)>\] +\(null\)|[0-9]+: +\(null\))"
)
RISCV_STACK_START = rx(r"status: [0-9a-f]{16} badaddr: [0-9a-f]{16} cause: [0-9a-f]{16}")

#: Lines that start a stack trace (or a new one inside a report).
STACK_START = (
    rx(r"Call (?:T|t)race"),
    rx(r"Allocated:"),
    rx(r"Allocated by task [0-9]+:"),
    rx(r"Freed:"),
    rx(r"Freed by task [0-9]+:"),
    rx(r"[^k] backtrace(?: \(crc [0-9a-fA-F]*\))?:"),  # not "stack backtrace:"
    rx(r"Backtrace:"),
    rx(r"Uninit was stored to memory at"),
    RISCV_STACK_START,
)

#: Whether a line starts a stack: any of ``STACK_START`` found in it.  The "[^k] backtrace"
#: one is written as a lookbehind, which finds it on the same lines, so that no branch
#: starts with a class nearly every character is in: the regexp tries few positions.
STACK_START_RE = re.compile("|".join(f"(?:{r.pattern})" for r in STACK_START).replace(
    "[^k] backtrace", "(?<=[^k] )backtrace"), re.ASCII)

#: A literal every ``STACK_START`` line holds (one per pattern, in order): the
#: parser finds candidate lines with ``str.find`` and confirms them with the regexp.
STACK_START_HINTS = ("Call ", "Allocated:", "Allocated by task ", "Freed:", "Freed by task ", " backtrace",
                     "Backtrace:", "Uninit was stored to memory at", "badaddr: ")

#: Stack frame lines; the groups capture function names.  Anchored at ``^`` and
#: never crossing a newline: the parser runs them over whole reports (MULTILINE).
FRAME_RES = (
    rx(r"^ *(?:{{PC}} ){0,2}{{FUNC}}"),
    rx(r"^ *{{PC}} \(([a-zA-Z0-9_.]+)\) from {{PC}} \({{FUNC}}"),  # arm
)

#: Frames touched on the way to a crash, never the culprit (regexps, searched).
SKIP_PATTERNS: tuple[str, ...] = (
    # sanitizers and reporting machinery
    "__sanitizer", "__asan", "kasan", "hwasan", "__msan", "kmsan", "kcsan_setup_watchpoint",
    "check_memory_region", "check_heap_object", "check_object", "read_word_at_a_time",
    "(read|write)_once_.*nocheck", "print_address_description", "panic", "invalid_op",
    "report_bug", "fixup_bug", "print_report", "print_usage_bug", "do_error",
    r"_trap$|do_trap", "show_stack", "dump_stack", "walk_stack", "dump_backtrace",
    "warn_slowpath", "warn_alloc", "warn_bogus", "__warn", "print_tainted", "^get_taint$",
    "hex_dump_to_buffer", "print_hex_dump", "__fortify_report", "assertfail",
    "stack_trace_consume_entry", "arch_stack_walk", "stack_trace_save",
    # allocators
    "alloc_page", "k?v?(?:m|z|c)alloc", "krealloc", "kmem_cache", "allocate_slab",
    "__alloc_frozen_pages_noprof", "slab_", "^kv?free$", "kfree_skb",
    # page cache helpers
    "folio_(?:alloc|unlock)", "filemap_alloc_folio", "__filemap_get_folio",
    "find_or_create_page", "do_read_cache_folio", "read_cache_page", "pagecache_get_page",
    "grab_cache_page_write_begin", "^(un)?lock_page", "xas_(?:start|load|find)",
    "find_lock_entries", "truncate_inode_pages_range",
    # debug objects, lockdep, locking primitives, atomics
    "debug_object", "timer_is_static_object", "work_is_static_object", "__might_fault",
    "print_unlock", "imbalance_bug", "lockdep", "bh_enable", "bh_disable", "perf_trace",
    "lock_acquire", "lock_release", "lock_class", "mark_lock", "(reacquire|mark)_held_locks",
    "raw_spin_rq", "spin_lock", "spin_trylock", "spin_unlock", "read_lock", "read_trylock",
    "write_lock", "write_trylock", "read_unlock", "write_unlock", "^down$", "down_read",
    "down_write", "down_read_trylock", "down_write_trylock", "down_trylock", "up_read",
    "up_write", "^mutex_", "^__mutex_", "^rt_mutex_", "owner_on_cpu", "osq_lock", "osq_unlock",
    "atomic(64)?_(dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)",
    "(set|clear|change|test)_bit", "__wake_up", "^refcount_", "^kref_", "ref_tracker",
    "seqprop_assert", "(trace|lockdep)_(hard|soft)irq", "__might_resched", "might_fault",
    "might_sleep",
    # string and memory helpers, user copies
    "memcpy", "memcmp", "memset", "memchr", "memmove", "memdup", "strcmp", "strncmp", "strcpy",
    "strlcpy", "strncpy", "strscpy", "strlen", "strstr", "strnstr", "strnlen", "strchr",
    "strdup", "strndup", "copy_to_user", "copy_from_user", "copy_to_iter", "copy_from_iter",
    "copy_page_to_iter", "copy_page_from_iter", "copy_folio_to_iter", "^copyin$", "^copyout$",
    "put_user", "get_user", "extract_(user|iter)_to_sg", "^crc\\d+", "crc_itu_t",
    "readb$", "readw$", "readl$", "readq$", "writeb$", "writew$", "writel$", "writeq$",
    "logic_in", "logic_out", "__phys_addr",
    # lists, trees, printing
    "list_add", "list_del", "list_replace", "list_move", "list_splice", "^rb_", "^__rb_",
    "^klist_", "_indirect_thunk_", "string", "pointer", "snprintf", "scnprintf", "kasprintf",
    "kvasprintf", "printk", "va_format", "dev_info", "dev_notice", "dev_warn", "dev_err",
    "dev_alert", "dev_crit", "dev_emerg", "program_check_exception", "program_check_common",
    # timers, work, completion, device teardown
    "del_timer", "lock_timer_base", "__timer_delete_sync", "sk_stop_timer_sync", "__mod_timer",
    "flush_work", "__cancel_work_timer", "cancel_work_sync", "try_to_grab_pending",
    "flush_workqueue", "drain_workqueue", "destroy_workqueue", "queue_work", "insert_work",
    "__queue_delayed_work", "queue_delayed_work_on", "finish_wait", "kthread_stop",
    "^complete$", "wait_for_completion", "kobject_", "add_uevent_var", "get_device_parent",
    "device_add", "device_del", "device_unregister", "device_destroy", "device_release",
    "devres_release_all", "^put_device$", "hwrng_unregister", "i2c_del_adapter",
    "__unregister_client", "device_for_each_child", "rollback_registered", "unregister_netdev",
    "sysfs_remove", "device_remove_file", "tty_unregister_device", "dummy_urb_enqueue",
    "usb_kill_urb", "usb_kill_anchored_urbs", "usb_control_msg", "usb_hcd_submit_urb",
    "usb_submit_urb", "ida_free", "cleanup_srcu_struct", "rhashtable_lookup",
    # inode and dentry references
    "^iput$", "^iput_final$", "^ihold$", "drop_nlink", "fast_dput", "dput", "mark_buffer_dirty",
    # arm64 fault entry
    "do_(kernel|translation)_fault", "do_mem_abort", "el1_abort", "el1h_64_sync(?:_handler)?",
)

_META = frozenset(".^$*+?{}[]\\|()")


def literal_trie(words: list[str]) -> str:
    """A regexp finding any of ``words`` (literals), as a trie: at each position
    only the branches of the character there are tried, not every word."""
    root: dict = {}
    for word in words:
        node = root
        for ch in word:
            if "" in node:
                break  # a shorter word already matches here: the longer adds nothing
            node = node.setdefault(ch, {})
        else:
            node.clear()  # this word matches: what extends it adds nothing
            node[""] = {}

    def emit(node: dict) -> str:
        if "" in node:
            return ""
        alts = [re.escape(ch) + emit(child) for ch, child in sorted(node.items())]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(root)


def _top_level_bar(pattern: str) -> bool:
    depth, escaped = 0, False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            return True
    return False


def any_pattern_re(patterns: tuple[str, ...]) -> re.Pattern:
    """One regexp that finds something where any of ``patterns`` does (searching):
    the plain words as a trie, the ``^``-anchored ones behind one ``^`` (tried at
    the start only), the other regexps as an alternation."""
    words = [p for p in patterns if not _META & set(p)]
    anchored = [p[1:] for p in patterns if _META & set(p) and p.startswith("^") and not _top_level_bar(p)]
    others = [p for p in patterns if _META & set(p) and not (p.startswith("^") and not _top_level_bar(p))]
    parts = ([literal_trie(words)] if words else []) + others
    if anchored:
        parts.insert(0, "^(?:" + "|".join(f"(?:{p})" for p in anchored) + ")")
    return re.compile("|".join(f"(?:{p})" for p in parts), re.ASCII)


#: Searched, equivalent to ``re.compile("|".join(SKIP_PATTERNS))`` and several times faster.
SKIP_RE = any_pattern_re(SKIP_PATTERNS)

#: Fault-injection stacks are often interleaved with a report: mark it corrupted.
CORRUPTED_LINES = (rx(r"^( \[<?(?:0x)?[0-9a-f]+>?\])? should_fail(slab)?(\.[a-z0-9.]+)?\+0x"),)
CORRUPTED_HINTS = ("should_fail",)  # a literal each of those lines holds (as STACK_START_HINTS)

#: Syscall wrapper prefixes stripped from frames (the shortest result wins).
STRIP_FRAME_PREFIXES = (
    "SYSC_", "SyS_", "sys_", "__x64_", "__ia32_", "__arm64_", "____sys_", "___sys_", "__sys_",
    "__se_", "__se_sys_", "__do_sys_", "compat_SYSC_", "compat_SyS_", "ksys_",
)


# --- frame extractors ---------------------------------------------------------

_STALL_ANCHORS = tuple(rx(p) for p in (
    "process_one_work", "do_syscall_", "do_fast_syscall_", "sysenter_dispatch",
    "tracesys_phase2", "el0_svc_handler", "invoke_syscall", "ret_fast_syscall",
    "netif_receive_skb", "do_softirq", "call_timer_fn", "_run_timers", "run_timer_softirq",
    "hrtimer_run", "run_ksoftirqd", "smpboot_thread_fn", "^kthread$", "start_secondary",
    "cpu_startup_entry", "ret_from_fork",
    "vfs_write", "vfs_read", "vfs_iter_read", "vfs_iter_write", "do_iter_read", "do_iter_write",
    "call_read_iter", "call_write_iter", "new_sync_read", "new_sync_write", "vfs_ioctl",
    "ksys_ioctl", "compat_ioctl", "compat_sys_ioctl", "blkdev_driver_ioctl", "blkdev_ioctl",
    "do_iter_readv_writev", "^call_mmap", "mmap_region", "do_mmap", "do_dentry_open", "vfs_open",
    "^sock_sendmsg", "^sock_recvmsg", "^sock_release", "^__sock_release", "^setsockopt$",
    "kernel_setsockopt", "sock_common_setsockopt", "^listen$", "kernel_listen",
    "sk_common_release", "^sock_mmap", "^accept$", "kernel_accept", "^sock_do_ioctl",
    "^sock_ioctl", "^compat_sock_ioctl", "^nfnetlink_rcv_msg", "^rtnetlink_rcv_msg",
    "^netlink_dump", "^(sys_)?(socketpair|connect|ioctl)",
    "__do_fault", "do_page_fault", "^page_fault$",
    "__fput", "task_work_run", "exit_to_usermode", "smp_call_function", "tasklet_action",
    "tasklet_hi_action",
))


_STALL_ANCHOR_RE = re.compile("|".join(f"(?:{a.pattern})" for a in _STALL_ANCHORS), re.ASCII)


def stall_frame(frames: list[str]) -> tuple[str, int]:
    """Stalls loop somewhere random: name them after the frame above an entry point."""
    prev, prev_idx = frames[0], 0
    for i, frame in enumerate(frames):
        if _STALL_ANCHOR_RE.search(frame):
            if "smp_call_function" in frame:
                return "smp_call_function", i
            return prev, prev_idx
        prev, prev_idx = frame, i
    return "", -1


_HANG_ANCHORS = {
    "rtnl_lock": "",
    "synchronize_rcu": "synchronize_rcu",
    "synchronize_srcu": "synchronize_rcu",
    "synchronize_net": "synchronize_rcu",
    "synchronize_sched": "synchronize_rcu",
}
_HANG_SKIP = ("sched", "_lock", "_slowlock", "down", "rwsem", "completion", "kthread", "wait",
              "synchronize", "context_switch", "__switch_to", "cancel_delayed_work", "rcu_barrier")


def hung_task_frame(frames: list[str]) -> tuple[str, int]:
    """Hung tasks: bucket rtnl/RCU waits, else the first frame that is not waiting."""
    for i, frame in enumerate(frames):
        for anchor, replacement in _HANG_ANCHORS.items():
            if anchor in frame:
                return replacement or frame, i
    for i, frame in enumerate(frames):
        if not any(s in frame for s in _HANG_SKIP):
            return frame, i
    return "", -1


# --- the table ----------------------------------------------------------------

def trace(*skip: str, extractor: Extractor | None = None) -> StackFmt:
    """Frames from the "Call Trace:" on."""
    return StackFmt((CALL_TRACE, TRACE), skip=skip, extractor=extractor)


def rip_trace(*skip: str, extractor: Extractor | None = None) -> StackFmt:
    """The faulting RIP frame, then the call trace."""
    return StackFmt((RIP_FRAME, CALL_TRACE, TRACE), skip=skip, extractor=extractor)


def rip_only() -> StackFmt:
    return StackFmt((RIP_FRAME,))


def warning_stack(*skip: str) -> StackFmt:
    """WARNINGs trap: the stack starts at the RIP (x86) / interrupt (ppc) line."""
    start = rx("(?:" + RIP_FRAME.pattern + "|--- interrupt: [0-9]+ at {{FUNC}})")
    return StackFmt((start, TRACE), parts2=(CALL_TRACE, TRACE), skip=skip)


F = OopsFormat
_KFENCE = rx(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}")
_KASAN_FREE = r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in {{FUNC}}"
_KMSAN_ORIGIN = rx("(Local variable .* created at:|Uninit was created at:)")
_LOCK_AT = "(?:.*\\n)+?.*at: (?:{{PC}} +)?{{FUNC}}"

BUG = Oops("BUG:", (
    F(rx("BUG: KASAN:"), "KASAN: {0} {2} in {3}",
      report=rx(r"BUG: KASAN: ([a-z\-]+) in {{FUNC}}(?:.*\n)+?.*(Read|Write) (?:of size|at addr) (?:[0-9a-f]+)"),
      alt=("bad-access in {3}",),
      stack=StackFmt((rx(r"BUG: KASAN: (?:[a-z\-]+) in {{FUNC}}"), CALL_TRACE, TRACE),
                     skip=("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_"))),
    F(rx("BUG: KASAN:"), "KASAN: invalid-free in {1}", report=rx(_KASAN_FREE),
      alt=("invalid-free in {1}",),
      stack=StackFmt((rx(_KASAN_FREE), CALL_TRACE, TRACE), skip=("slab_", "kfree", "vunmap", "vfree"))),
    F(rx(r"BUG: KASAN: ([a-z\-]+) on address(?:.*\n)+?.*(Read|Write) of size ([0-9]+)"), "KASAN: {0} {1}"),
    F(rx("BUG: KASAN: (.*)"), "KASAN: {0}", corrupted=True),
    F(rx("BUG: KMSAN: kernel-usb-infoleak"), "KMSAN: kernel-usb-infoleak in {1}",
      report=rx("BUG: KMSAN: kernel-usb-infoleak in {{FUNC}}"), alt=("KMSAN origin in {2}",),
      stack=StackFmt((TRACE, _KMSAN_ORIGIN, TRACE),
                     skip=("alloc_skb", "usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg",
                           "usb_interrupt_msg", "usb_control_msg")),
      no_stack_trace=True),
    F(rx("BUG: KMSAN:"), "KMSAN: {0} in {2}", report=rx(r"BUG: KMSAN: ([a-z\-]+) in {{FUNC}}"),
      alt=("bad-access in {2}",),
      stack=StackFmt((TRACE, _KMSAN_ORIGIN, TRACE),
                     skip=("alloc_skb", "netlink_ack", "netlink_rcv_skb", "_encrypt$",
                           "^(?:crypto|cipher|drbg|rng)_")),
      no_stack_trace=True),
    F(rx("BUG: KCSAN: data-race"), "KCSAN: {0}", report=rx("BUG: KCSAN: (.*)"), no_stack_trace=True),
    F(rx("BUG: KCSAN:"), "KCSAN: {0}", report=rx("BUG: KCSAN: (.*)"), no_stack_trace=True),
    F(rx("BUG: KFENCE: (use-after-free|out-of-bounds) (read|write) in {{FUNC}}"),
      "KFENCE: {0} {1} in {3}", alt=("bad-access in {3}",), stack=StackFmt((_KFENCE, TRACE))),
    F(rx("BUG: KFENCE: invalid free in {{FUNC}}"), "KFENCE: invalid free in {1}",
      alt=("invalid-free in {1}",), no_stack_trace=True, stack=StackFmt((_KFENCE, TRACE))),
    F(rx("BUG: KFENCE: invalid (read|write) in {{FUNC}}"), "KFENCE: invalid {0} in {2}",
      alt=("bad-access in {2}",), stack=StackFmt((_KFENCE, TRACE))),
    F(rx("BUG: KFENCE: memory corruption in {{FUNC}}"), "KFENCE: memory corruption in {1}",
      no_stack_trace=True, stack=StackFmt((_KFENCE, TRACE))),
    F(rx("BUG: (?:unable to handle kernel paging request|unable to handle page fault for address"
         "|Unable to handle kernel data access)"),
      "BUG: unable to handle kernel paging request in {0}", alt=("bad-access in {0}",),
      stack=rip_trace()),
    F(rx("BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer dereference"
         "|Kernel NULL pointer dereference)"),
      "BUG: unable to handle kernel NULL pointer dereference in {0}", alt=("bad-access in {0}",),
      stack=rip_trace()),
    # The second half of the header is a separate printk and may be lost.
    F(rx("BUG: (?:unable to handle kernel|Unable to handle kernel)"), "BUG: unable to handle kernel",
      corrupted=True),
    F(rx("BUG: (spinlock|rwlock) (lockup suspected|already unlocked|recursion|cpu recursion"
         "|bad magic|wrong owner|wrong CPU|trylock failure on UP)"),
      "BUG: {0} {1} in {2}", stack=trace("spin_", "_lock", "_unlock")),
    F(rx("BUG: soft lockup"), "BUG: soft lockup in {0}", alt=("stall in {0}",),
      stack=rip_trace(extractor=stall_frame)),
    F(rx("BUG: .*still has locks held!"), "BUG: still has locks held in {0}",
      report=rx("BUG: .*still has locks held!(?:.*\\n)+?.*{{PC}} +{{FUNC}}")),
    F(rx("BUG: scheduling while atomic"), "BUG: scheduling while atomic in {0}",
      stack=trace("schedule")),
    F(rx("BUG: lock held when returning to user space"),
      "BUG: lock held when returning to user space in {0}",
      report=rx("BUG: lock held when returning to user space(?:.*\\n)+?"
                ".*leaving the kernel with locks still held" + _LOCK_AT),
      no_stack_trace=True),
    F(rx("BUG: bad unlock balance detected!"), "BUG: bad unlock balance in {0}",
      stack=StackFmt((rx("{{PC}} +{{FUNC}}"), CALL_TRACE, TRACE))),
    F(rx("BUG: held lock freed!"), "BUG: held lock freed in {0}",
      report=rx("BUG: held lock freed!(?:.*\\n)+?.*{{PC}} +{{FUNC}}")),
    F(rx("BUG: Bad rss-counter state"), "BUG: Bad rss-counter state", no_stack_trace=True),
    F(rx("BUG: non-zero nr_ptes on freeing mm"), "BUG: non-zero nr_ptes on freeing mm",
      no_stack_trace=True),
    F(rx("BUG: non-zero nr_pmds on freeing mm"), "BUG: non-zero nr_pmds on freeing mm",
      no_stack_trace=True),
    F(rx("BUG: Dentry .* still in use"), "BUG: Dentry still in use in {0}",
      report=rx(r"BUG: Dentry .* still in use \([0-9]+\) \[(unmount) of ([^\]]+)\]"),
      alt=("BUG: Dentry still in use [{0} of {1}]",)),
    F(rx("BUG: Bad page (state|cache)"), "BUG: Bad page {0} in {1}",
      stack=StackFmt((rx("page last allocated"), TRACE),
                     skip=("(free|put|get|update|release)_page", "free_unref", "^_*folio",
                           "truncate_inode_pages", "page_frag_free", "alloc", "vmap", "page_owner"))),
    F(rx("BUG: Bad page map"), "BUG: Bad page map"),
    F(rx("BUG: workqueue lockup"), "BUG: workqueue lockup", no_stack_trace=True),
    F(rx("BUG: sleeping function called from invalid context at (.*)"),
      "BUG: sleeping function called from invalid context in {1}", stack=trace()),
    F(rx(r"BUG: using ([a-z_]+)\(\) in preemptible"), "BUG: using {0}() in preemptible code in {1}",
      stack=trace("dump_stack", "preemption", "preempt", "debug_", "processor_id", "this_cpu")),
    F(rx("BUG: workqueue leaked lock or atomic"), "BUG: workqueue leaked lock or atomic in {0}",
      report=rx("BUG: workqueue leaked lock or atomic(?:.*\\n)+?.*last function: ([a-zA-Z0-9_]+)\\n"),
      no_stack_trace=True),
    F(rx("BUG: memory leak"), "memory leak in {0}",
      stack=StackFmt((rx(r"backtrace(?: \(crc [0-9a-fA-F]*\))?:"), TRACE),
                     skip=("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object", "idr_get",
                           "list_lru_init", "kasprintf", "kvasprintf", "pcpu_create", "strdup",
                           "strndup", "memdup"))),
    F(rx("BUG: .*stack guard page was hit at"), "BUG: stack guard page was hit in {0}",
      alt=("stack-overflow in {0}",), stack=rip_trace(extractor=stall_frame)),
    # arm's spelling of the amd64 "WARNING: locking bug" report.
    F(rx("BUG: Invalid wait context"), "WARNING: locking bug in {0}",
      stack=trace("lock_sock", "release_sock")),
    F(rx(r"BUG:\s*(?:\n|$)"), "BUG: corrupted", corrupted=True),
), (rx("ODEBUG:"), rx("Boot_DEBUG:"), rx("xlog_status:"), rx("DEBUG:"),
    rx("BUG: no syscalls can create resource")))

WARNING = Oops("WARNING:", (
    F(rx(r"WARNING: .*lib/debugobjects\.c.* (?:debug_print|debug_check|at)"), "WARNING: ODEBUG bug in {0}",
      stack=warning_stack("debug_", "rcu", "hrtimer_", "timer_", "work_", "percpu_", "vunmap",
                          "vfree", "__free_", "debug_check", "kobject_")),
    F(rx(r"WARNING: .*mm/usercopy\.c.* (?:usercopy_warn|at)"), "WARNING: bad usercopy in {0}",
      stack=warning_stack("usercopy", "__check")),
    F(rx(r"WARNING: .*lib/kobject\.c.* (?:kobject_|at)"), "WARNING: kobject bug in {0}",
      stack=warning_stack("kobject_")),
    F(rx(r"WARNING: .*fs/proc/generic\.c.* (?:proc_register|at)"), "WARNING: proc registration bug in {0}",
      stack=warning_stack("proc_")),
    F(rx(r"WARNING: .*lib/refcount\.c.* (?:refcount_|at)"), "WARNING: refcount bug in {0}",
      stack=warning_stack("refcount", "kobject_")),
    F(rx(r"WARNING: .*kernel/locking/lockdep\.c.*lock_"), "WARNING: locking bug in {0}",
      stack=warning_stack("lock_sock", "release_sock")),
    F(rx("WARNING: .*still has locks held!"), "WARNING: still has locks held in {0}",
      report=rx("WARNING: .*still has locks held!(?:.*\\n)+?.*at: {{FUNC}}")),
    F(rx("WARNING: Nested lock was not taken"), "WARNING: nested lock was not taken in {0}",
      stack=warning_stack()),
    F(rx("WARNING: lock held when returning to user space"),
      "WARNING: lock held when returning to user space in {0}",
      report=rx("WARNING: lock held when returning to user space(?:.*\\n)+?"
                ".*leaving the kernel with locks still held" + _LOCK_AT),
      no_stack_trace=True),
    F(rx(r"WARNING: .*mm/.*\.c.* k?.?malloc"), "WARNING: kmalloc bug in {0}",
      stack=warning_stack("kmalloc", "krealloc", "slab", "kmem")),
    F(rx(r"WARNING: .*mm/vmalloc.c.*__vmalloc_node"), "WARNING: zero-size vmalloc in {0}",
      stack=warning_stack()),
    F(rx("WARNING: .* usb_submit_urb"), "WARNING in {0}/usb_submit_urb",
      stack=warning_stack("usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg",
                          "usb_interrupt_msg", "usb_control_msg")),
    # "WARNING: file.c:123 at 0x0, CPU#1: comm/123" (kernels from 6.19).
    F(rx(r"WARNING: {{SRC}} at 0x\d+, CPU#\d+"), "WARNING in {1}", stack=warning_stack()),
    # "WARNING: CPU: 1 PID: 2 at file.c:123 func+0x1/0x2" and the old "WARNING: at file.c:123 func()".
    F(rx("WARNING: (?:.* )?at {{SRC}} {{FUNC}}"), "WARNING in {2}", stack=warning_stack()),
    F(rx("WARNING: {{SRC}} at {{FUNC}}"), "WARNING in {2}", stack=warning_stack()),
    F(rx(r"WARNING: \[.*\] {{SRC}} at {{FUNC}}.*"), "WARNING in {2}", stack=warning_stack()),
    F(rx("WARNING: possible circular locking dependency detected"), "possible deadlock in {0}",
      report=rx("WARNING: possible circular locking dependency detected(?:.*\\n)+?.*is trying to acquire lock"),
      stack=StackFmt((rx("at: (?:{{PC}} +)?{{FUNC}}"), rx("at: (?:{{PC}} +)?{{FUNC}}"), TRACE),
                     # Work items take locks in these: the deadlock is in the work item.
                     skip=("process_one_work", "flush_workqueue", "drain_workqueue",
                           "destroy_workqueue"))),
    F(rx("WARNING: possible irq lock inversion dependency detected"), "possible deadlock in {0}",
      report=rx("WARNING: possible irq lock inversion dependency detected(?:.*\\n)+?"
                ".*just changed the state of lock" + _LOCK_AT)),
    F(rx("WARNING: .*-safe -> .*-unsafe lock order detected"), "possible deadlock in {0}",
      stack=StackFmt((rx("which became (?:.*) at:"), TRACE))),
    F(rx("WARNING: possible recursive locking detected"), "possible deadlock in {0}",
      report=rx("WARNING: possible recursive locking detected(?:.*\\n)+?.*is trying to acquire lock" + _LOCK_AT)),
    F(rx("WARNING: inconsistent lock state"), "inconsistent lock state in {1}",
      report=rx("WARNING: inconsistent lock state(?:.*\\n)+?.*takes" + _LOCK_AT), stack=trace()),
    F(rx("WARNING: suspicious RCU usage"), "WARNING: suspicious RCU usage in {1}",
      report=rx("WARNING: suspicious RCU usage(?:.*\\n)+?.*?{{SRC}}"), stack=trace("rcu", "kmem", "slab")),
    F(rx("WARNING: kernel stack regs at [0-9a-f]+ in [^ ]* has bad '([^']+)' value"),
      "WARNING: kernel stack regs has bad '{0}' value", no_stack_trace=True),
    F(rx("WARNING: kernel stack frame pointer at [0-9a-f]+ in [^ ]* has bad value"),
      "WARNING: kernel stack frame pointer has bad value", no_stack_trace=True),
    F(rx("WARNING: bad unlock balance detected!"), "WARNING: bad unlock balance in {0}",
      stack=StackFmt((rx("{{PC}} +{{FUNC}}"), CALL_TRACE, TRACE))),
    F(rx("WARNING: held lock freed!"), "WARNING: held lock freed in {0}",
      report=rx("WARNING: held lock freed!(?:.*\\n)+?.*at:(?: {{PC}})? +{{FUNC}}")),
    F(rx("WARNING: kernel stack regs .* has bad 'bp' value"), "WARNING: kernel stack regs has bad value",
      no_stack_trace=True),
    F(rx("WARNING: kernel stack frame pointer .* has bad value"), "WARNING: kernel stack regs has bad value",
      no_stack_trace=True),
    F(rx(r"WARNING:\s*(?:\n|$)"), "WARNING: corrupted", corrupted=True),
), tuple(rx(p) for p in (
    "WARNING: /etc/ssh/moduli does not exist, using fixed modulus",  # sshd
    "WARNING: workqueue cpumask: online intersect > possible intersect",
    "WARNING: [Tt]he mand mount option",
    r"WARNING: Unsupported flag value\(s\) of 0x%x in DT_FLAGS_1",  # glibc
    "WARNING: Unprivileged eBPF is enabled with eIBRS",
    r"WARNING: fbcon: Driver '(.*)' missed to adjust virtual screen size",
    "WARNING: See https.* for mitigation options.",
    "WARNING: kernel not compiled with CPU_SRSO",
    r"EXT4-[Ff][Ss](?: \(.*\))?:",  # __ext4_msg
    "(?i)warning: .* uses (deprecated v2 capabilities|wireless extensions)",
    r"XFS \(\w+\): WARNING",
)))

INFO = Oops("INFO:", (
    F(rx("INFO: possible circular locking dependency detected"), "possible deadlock in {0}",
      report=rx(r"INFO: possible circular locking dependency detected \](?:.*\n)+?"
                r".*is trying to acquire lock(?:.*\n)+?.*at: {{PC}} +{{FUNC}}")),
    F(rx("INFO: possible irq lock inversion dependency detected"), "possible deadlock in {0}",
      report=rx(r"INFO: possible irq lock inversion dependency detected \](?:.*\n)+?"
                r".*just changed the state of lock(?:.*\n)+?.*at: {{PC}} +{{FUNC}}")),
    F(rx("INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected"), "possible deadlock in {0}",
      report=rx(r"INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected \](?:.*\n)+?"
                r".*is trying to acquire(?:.*\n)+?.*at: {{PC}} +{{FUNC}}")),
    F(rx("INFO: possible recursive locking detected"), "possible deadlock in {0}",
      report=rx(r"INFO: possible recursive locking detected \](?:.*\n)+?"
                r".*is trying to acquire lock(?:.*\n)+?.*at: {{PC}} +{{FUNC}}")),
    F(rx("INFO: inconsistent lock state"), "inconsistent lock state in {0}",
      report=rx(r"INFO: inconsistent lock state \](?:.*\n)+?.*takes(?:.*\n)+?.*at: {{PC}} +{{FUNC}}")),
    F(rx("INFO: rcu_(?:preempt|sched|bh) (?:self-)?detected(?: expedited)? stall"),
      "INFO: rcu detected stall in {0}", alt=("stall in {0}",),
      stack=StackFmt((rx("apic_timer_interrupt"), RIP_FRAME, TRACE),
                     parts2=(rx("(?:apic_timer_interrupt|Exception stack|el1h_64_irq)"), TRACE),
                     skip=("apic_timer_interrupt", "rcu"), extractor=stall_frame)),
    F(rx("INFO: trying to register non-static key"), "INFO: trying to register non-static key in {0}",
      stack=trace("stack", "lock", "IRQ")),
    F(rx("INFO: suspicious RCU usage"), "INFO: suspicious RCU usage in {1}",
      report=rx("INFO: suspicious RCU usage(?:.*\\n)+?.*?{{SRC}}"), stack=trace("rcu", "kmem", "slab")),
    # The task name may hold a newline; newer kernels say "blocked in I/O wait for".
    F(rx(r"INFO: task .*(?:\n.*)?blocked (?:in I/O wait )?for more than [0-9]+ seconds"), "INFO: task hung in {0}",
      alt=("hang in {0}",), stack=trace(extractor=hung_task_frame)),
    F(rx("INFO: task .* can't die for more than .* seconds"), "INFO: task can't die in {0}",
      alt=("hang in {0}",), stack=trace("schedule")),
    # Corrupted old-style KASAN reports.
    F(rx("INFO: (Freed|Allocated) in (.*)"), "INFO: {0} in {1}", corrupted=True),
    F(rx(r"INFO:\s*(?:\n|$)"), "INFO: corrupted", corrupted=True),
), tuple(rx(p) for p in (
    "INFO: lockdep is turned off", "INFO: Stall ended before state dump start", "INFO: NMI handler",
    "INFO: recovery required on readonly filesystem", "(handler|interrupt).*took too long",
    "INFO: sys_.* is not present in /proc/kallsyms", "INFO: no syscalls can create resource",
    "rmt_storage:INFO:", "_INFO:",
)))


def _rip_oops(header: str, title: str, fmt: str, alt: tuple[str, ...] = ("bad-access in {0}",),
              suppressions: tuple[re.Pattern, ...] = ()) -> Oops:
    """An exception oops titled after its faulting instruction pointer."""
    return Oops(header, (F(rx(title), fmt, alt=alt, stack=rip_trace()),), suppressions)


def _panic(title: str, fmt: str, **kw) -> OopsFormat:
    return F(rx("Kernel panic - not syncing: " + title), fmt, **kw)


PANIC = Oops("Kernel panic", (
    # The kernel may fail to print the symbol or to unwind a corrupted stack.
    _panic("stack-protector:", "kernel panic: stack is corrupted in {0}",
           report=rx("Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: {{FUNC}}"),
           no_stack_trace=True),
    _panic("stack-protector:", "kernel panic: stack is corrupted in {0}",
           report=rx("Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: [a-f0-9]+"),
           stack=trace("stack_chk")),
    _panic("corrupted stack end", "kernel panic: corrupted stack end in {0}",
           report=rx("Kernel panic - not syncing: corrupted stack end detected inside scheduler"),
           alt=("stack-overflow in {0}",),
           stack=trace("schedule", "retint_kernel", extractor=stall_frame)),
    _panic("kernel stack overflow", "kernel stack overflow in {0}", alt=("stack-overflow in {0}",),
           stack=trace("bad_stack", extractor=stall_frame)),
    _panic("Attempted to kill init!", "kernel panic: Attempted to kill init!"),
    _panic("Couldn't open N_TTY ldisc for [^ ]+ --- error -[0-9]+", "kernel panic: Couldn't open N_TTY ldisc"),
    # These follow another report: seeing them as the title means its header was lost.
    _panic("Fatal exception", "kernel panic: Fatal exception", corrupted=True),
    _panic("panic_on_warn set", "kernel panic: panic_on_warn set", corrupted=True),
    _panic("hung_task: blocked tasks", "kernel panic: hung_task: blocked tasks", corrupted=True),
    _panic("(.*)", "kernel panic: {0}"),
))

KERNEL_BUG = Oops("kernel BUG", (
    F(rx("kernel BUG at mm/usercopy.c"), "BUG: bad usercopy in {0}", stack=trace("usercopy", "__check")),
    F(rx("kernel BUG at lib/list_debug.c"), "BUG: corrupted list in {0}", alt=("bad-access in {0}",),
      stack=trace()),
    # Many skb helpers BUG_ON() their arguments: blame the caller.
    F(rx("kernel BUG at (.*)"), "kernel BUG in {1}", stack=rip_trace("^skb_")),
))


LINUX_OOPSES: tuple[Oops, ...] = (
    BUG,
    WARNING,
    INFO,
    _rip_oops("Unable to handle kernel", "Unable to handle kernel (paging request|NULL pointer dereference"
              "|access to user memory)", "BUG: unable to handle kernel {0} in {1}", alt=("bad-access in {1}",)),
    _rip_oops("general protection fault", "general protection fault.*:", "general protection fault in {0}",
              suppressions=(rx(r"general protection fault .* error:\d+ in "),)),  # user space
    _rip_oops("stack segment: ", "stack segment: ", "stack segment fault in {0}", alt=()),
    PANIC,
    Oops("PANIC: double fault", (F(rx("PANIC: double fault"), "PANIC: double fault in {0}", stack=rip_only()),)),
    Oops("rust_kernel: panicked", (
        F(rx("rust_kernel: panicked"), "{0} in {1}", report=rx("rust_kernel: panicked at [^\n]*?\n(.+?)\n"),
          stack=trace(re.escape("__rustc::rust_begin_unwind"))),)),
    KERNEL_BUG,
    Oops("Kernel BUG", (F(rx("Kernel BUG (.*)"), "kernel BUG {0}"),)),
    Oops("BUG kmalloc-", (F(rx("BUG kmalloc-.*: Object already free"), "BUG: Object already free"),)),
    Oops("divide error:", (F(rx("divide error: "), "divide error in {0}", stack=rip_only()),)),
    # Misspelt by 9d06c4027f21 ("x86/entry: Convert Divide Error to IDTENTRY").
    Oops("divide_error:", (F(rx("divide_error: "), "divide error in {0}", stack=rip_only()),)),
    Oops("invalid opcode:", (F(rx("invalid opcode: "), "invalid opcode in {0}", stack=rip_only()),)),
    Oops("UBSAN:", (
        F(rx("UBSAN:"), "UBSAN: undefined-behaviour in {0}", report=rx("UBSAN: Undefined behaviour in"),
          stack=trace("ubsan", "overflow")),
        F(rx("UBSAN: array-index-out-of-bounds in"), "UBSAN: array-index-out-of-bounds in {0}",
          alt=("bad-access in {0}",), stack=trace("ubsan", "overflow")),
        F(rx("UBSAN:"), "UBSAN: {0} in {1}", report=rx("UBSAN: (.*?) in"), stack=trace("ubsan", "overflow")),
    )),
    Oops("Booting the kernel.", (F(rx("^Booting the kernel"), "unexpected kernel reboot", no_stack_trace=True),),
         # A boot message echoed back as an invalid mount option is no reboot.
         (rx("Parsing ELF|Decompressing Linux|Unknown parameter '"),)),
    Oops("unregister_netdevice: waiting for", (
        F(rx("unregister_netdevice: waiting for (?:.*) to become free"),
          "unregister_netdevice: waiting for DEV to become free", no_stack_trace=True),)),
    Oops("VFS: Close: file count is 0", (
        F(rx("VFS: Close: file count is 0"), "VFS: Close: file count is zero (use-after-free)",
          no_stack_trace=True),)),
    Oops("VFS: Busy inodes after unmount", (
        F(rx("VFS: Busy inodes after unmount"), "VFS: Busy inodes after unmount (use-after-free)",
          no_stack_trace=True),)),
    # arm64 "synchronous external abort" is arm's "Unable to handle kernel paging request".
    _rip_oops("Internal error:", "Internal error:", "Internal error in {0}"),
    _rip_oops("Unhandled fault:", "Unhandled fault:", "Unhandled fault in {0}"),
    _rip_oops("Alignment trap:", "Alignment trap:", "Alignment trap in {0}", alt=()),
    Oops("trusty: panic", (
        F(rx("trusty: panic.* ASSERT FAILED"), "trusty: ASSERT FAILED: {0}",
          report=rx(r"trusty: panic \(.*?\):(?: DEBUG)? ASSERT FAILED at \(.*?\): (.+)"), no_stack_trace=True),
        F(rx("trusty: panic.* ASSERT FAILED.*: *(.*)"), "trusty: ASSERT FAILED: {0}", corrupted=True),
        F(rx("trusty: panic"), "trusty: panic: {0}", report=rx(r"trusty: panic \(.*?\): (.+)"),
          no_stack_trace=True),
    )),
    Oops("fatal error:", (F(rx("fatal error:"), "go runtime error", no_stack_trace=True),),
         (rx("ALSA"), rx("fatal error: cannot create timer"))),
    # Produced by syzkaller's executor and tools; harmless for other consoles.
    Oops("SYZFAIL:", (F(rx("SYZFAIL:(.*)"), "SYZFAIL:{0}", no_stack_trace=True),)),
    Oops("SYZFATAL:", (F(rx("SYZFATAL:(.*)()"), "SYZFATAL:{0}", alt=("SYZFATAL{1}",), no_stack_trace=True),)),
    Oops("panic:", (
        F(rx("panic: Sentry detected .* stuck task"), "panic: Sentry detected stuck tasks", no_stack_trace=True),
        F(rx("panic:(.*)"), "panic:{0}", no_stack_trace=True),
    ), (rx("_panic:"), rx("xlog_status:"), rx(r"ddb\.onpanic:"), rx("evtlog_status:"))),
)

for _oops in LINUX_OOPSES:  # compile the formats' own skip lists now, not in the first report
    for _fmt in _oops.formats:
        if _fmt.stack is not None:
            _fmt.stack.skips("")

#: Oops lines that continue the current report rather than start a new one.
REPORT_START_IGNORES = tuple(rx(p) for p in (  # searched as one alternation
    "invalid opcode: 0000", "Kernel panic - not syncing", "unregister_netdevice: waiting for",
    "PANIC: double fault", "Internal error:",
))

#: Non-crash messages with a stack: inside a report they mean interleaving.
INFO_WITH_STACK = ("vmalloc: allocation failure:", "FAULT_INJECTION: forcing a failure",
                   "FAULT_FLAG_ALLOW_RETRY missing")
