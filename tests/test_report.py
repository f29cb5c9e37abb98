"""Tests of the console-log crash parser (``harness.report``).

The syzkaller corpus (``$HARNESS_OOPS_CORPUS``, default
../shared/oops-corpus/syzkaller beside the project; skipped with where to get it when absent) gives three figures, printed at the end of
the session (and by ``-s``): exact titles, crash/no-crash, and crash types.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from shared_data import SETS, require

from harness.report import Report, parse, summary, symbolize
from harness.report.corpus import Case, case_files, load_case
from harness.report.demangle import demangle
from harness.report.symbolize import SymbolTable, frame_pc, load_system_map
from tools.bench.parser import corpus_throughput

DATA = Path(__file__).parent / "data" / "oops"
CORPUS = SETS["oops-corpus"]
CORPUS_FILES = case_files(CORPUS.path) if CORPUS.here() else []
OWN_FILES = case_files(DATA)

TITLE_FLOOR = 0.95
TYPE_FLOOR = 0.95


def _first(reports: list[Report]) -> Report | None:
    return reports[0] if reports else None


# --- the syzkaller corpus -----------------------------------------------------

@pytest.fixture(scope="module")
def corpus(request) -> dict[str, tuple[Case, list[Report]]]:
    require(CORPUS.name)
    results = {p.name: (case := load_case(p), parse(case.log)) for p in CORPUS_FILES}
    figures = _figures(results)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:  # a session-end line, with or without -s
        request.config.add_cleanup(lambda: reporter.write_line("\nreport corpus: " + _format(figures)))
    return results


def _figures(results: dict[str, tuple[Case, list[Report]]]) -> dict:
    titles = crash = types = typed = 0
    mismatches = []
    for name, (case, reports) in results.items():
        got = _first(reports)
        title = got.title if got else None
        titles += title == case.title
        crash += (got is None) == (case.title is None)
        if case.type:
            typed += 1
            types += got is not None and got.type == case.type
        if title != case.title:
            mismatches.append(f"{name}: want {case.title!r} got {title!r}")
    n = len(results)
    return {"files": n, "title": titles / n, "crash": crash / n, "type": types / max(typed, 1),
            "titles_ok": titles, "crash_ok": crash, "types_ok": types, "typed": typed,
            "mismatches": mismatches}


def _format(f: dict) -> str:
    return (f"titles {f['titles_ok']}/{f['files']} ({f['title']:.1%}), "
            f"crash/no-crash {f['crash_ok']}/{f['files']} ({f['crash']:.1%}), "
            f"types {f['types_ok']}/{f['typed']} ({f['type']:.1%})")


def test_corpus_figures(corpus):
    figures = _figures(corpus)
    print("\nreport corpus:", _format(figures))
    for line in figures["mismatches"]:
        print("  title mismatch", line)
    message = _format(figures) + "\n" + "\n".join(figures["mismatches"][:40])
    assert figures["title"] >= TITLE_FLOOR, message
    assert figures["type"] >= TYPE_FLOOR, message
    assert figures["crash"] == 1.0, message


@pytest.mark.parametrize("name", CORPUS.params([p.name for p in CORPUS_FILES]))
def test_corpus_crash_or_not(corpus, name):
    case, reports = corpus[name]
    assert bool(reports) == (case.title is not None), (
        f"{name}: want {case.title!r}, got {[r.title for r in reports]}")


# The families the parser must cover, each checked on corpus files that have it.
FAMILIES = {
    "kernel BUG": "kernel BUG in ",
    "general protection fault": "general protection fault in ",
    "NULL pointer dereference": "BUG: unable to handle kernel NULL pointer dereference in ",
    "page fault": "BUG: unable to handle kernel paging request in ",
    "KASAN": "KASAN: ",
    "KFENCE": "KFENCE: ",
    "UBSAN": "UBSAN: ",
    "WARNING": "WARNING in ",
    "possible deadlock": "possible deadlock in ",
    "inconsistent lock state": "inconsistent lock state in ",
    "suspicious RCU usage": "WARNING: suspicious RCU usage in ",
    "lock held returning to user space": "WARNING: lock held when returning to user space in ",
    "hung task": "INFO: task hung in ",
    "soft lockup": "BUG: soft lockup in ",
    "RCU stall": "INFO: rcu detected stall in ",
    "kernel panic": "kernel panic: ",
    "memory leak": "memory leak in ",
    "refcount": "WARNING: refcount bug in ",
}


@pytest.mark.parametrize("family", FAMILIES)
def test_corpus_covers_family(corpus, family):
    prefix = FAMILIES[family]
    cases = [(c, _first(r)) for c, r in corpus.values() if c.title and c.title.startswith(prefix)]
    if not cases:
        pytest.skip(f"no {family} case in the corpus")
    right = sum(got is not None and got.title == c.title for c, got in cases)
    assert right / len(cases) >= TITLE_FLOOR, f"{family}: {right}/{len(cases)}"


# --- our own logs -------------------------------------------------------------

@pytest.mark.parametrize("path", OWN_FILES, ids=[p.name for p in OWN_FILES])
def test_own_logs(path):
    case = load_case(path)
    got = _first(parse(case.log))
    if case.title is None:
        assert got is None, got.title
        return
    assert got is not None
    assert (got.title, got.type, got.corrupted) == (case.title, case.type or "UNKNOWN", case.corrupted)
    if case.frame:
        assert got.frame == case.frame
    assert set(got.alt_titles) == set(case.alt_titles)


def _own(name: str) -> str:
    return load_case(DATA / name).log


def test_seed_bug_is_one_report_with_offsets():
    log = _own("ext4-inline-bug-debian61.log")
    reports = parse(log)
    assert [r.title for r in reports] == ["kernel BUG in ext4_write_inline_data"]
    report = reports[0]
    assert log[report.start:].startswith("[   25.123789] kernel BUG at fs/ext4/inline.c:235!")
    assert report.start < report.end <= len(log)
    assert "RIP: 0010:ext4_write_inline_data+0xf4/0x100 [ext4]" in report.text
    assert " ext4_write_inline_data_end+0xa7/0x2f0 [ext4]" in report.text
    assert "[   25." not in report.text  # timestamps are stripped
    assert "------------[ cut here ]------------" in report.text  # context before the oops line


def test_bytes_and_crlf_input():
    log = _own("ext4-writepages-bug-debian61.log")
    reports = parse(log.replace("\n", "\r\n").encode())
    assert [r.title for r in reports] == ["kernel BUG in ext4_writepages"]
    assert not reports[0].corrupted


def test_reports_in_order():
    log = _own("ext4-warning-debian61.log") + _own("ext4-inline-data-end-bug-debian61.log")
    assert [r.title for r in parse(log)] == [
        "WARNING in ext4_journal_check_start", "kernel BUG in ext4_write_inline_data_end"]


def test_truncated_report_is_corrupted():
    log = _own("ext4-inline-bug-debian61.log")
    cut = log[:log.index("invalid opcode")]
    got = parse(cut)[0]
    assert got.title == "kernel BUG in corrupted"
    assert got.corrupted


def test_report_without_call_trace_is_corrupted():
    log = _own("ext4-inline-bug-debian61.log")
    cut = log[:log.index("Call Trace:")]
    got = parse(cut)[0]
    assert got.title == "kernel BUG in ext4_write_inline_data"
    assert got.corrupted and got.corrupted_reason


def test_interleaved_fault_injection_is_corrupted():
    log = _own("ext4-inline-bug-debian61.log").replace(
        "[   25.124601]  ext4_da_write_end", "[   25.124590]  should_failslab+0x5/0x10\n[   25.124601]  ext4_da_write_end")
    got = parse(log)[0]
    assert got.title == "kernel BUG in ext4_write_inline_data"
    assert got.corrupted


NOT_CRASHES = [
    "[    0.412113] WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks possible via Spectre v2 BHB attacks!",
    "[   25.101944] traps: repro[246] general protection fault ip:401149 sp:7ffd1a2b5bb0 error:0 in repro[401000+1000]",
    "[   25.001002] repro[245]: segfault at 0 ip 0000000000401136 sp 00007ffd1a2b5bb0 error 4 in repro[401000+1000]",
    "[   26.300000] sshd[310]: WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
    "[    2.915403] EXT4-fs (vda): warning: mounting fs with errors, running e2fsck is recommended",
    "[  100.000000] INFO: lockdep is turned off.",
    "[  101.000000] INFO: NMI handler (perf_event_nmi_handler) took too long to run: 1.234 msecs",
    "[  102.000000] ODEBUG: object is on stack, but not annotated",
    "[  103.000000] hrtimer: interrupt took 1287432 ns",
    "BUG UNIX (Not tainted): kasan: bad access detected",
    "",
]


@pytest.mark.parametrize("line", NOT_CRASHES)
def test_not_crashes(line):
    assert parse(line + "\n") == []


@pytest.mark.parametrize("log, title, crash_type", [
    ("[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n",
     "kernel panic: VFS: Unable to mount root fs on unknown-block(NUM,NUM)", "DoS"),
    ("[    9.9] unregister_netdevice: waiting for lo to become free. Usage count = 2\n",
     "unregister_netdevice: waiting for DEV to become free", "DoS"),
    ("Booting the kernel.\n", "unexpected kernel reboot", "REBOOT"),
])
def test_titles_without_stacks(log, title, crash_type):
    got = parse(log)[0]
    assert (got.title, got.type) == (title, crash_type)


def test_summary_shapes():
    empty = summary(parse("nothing to see\n"))
    assert empty == {"title": None, "alt_titles": [], "type": None, "frame": None,
                     "corrupted": False, "reports": []}
    full = summary(parse(_own("ext4-lockdep-circular-debian61.log")))
    assert full["title"] == "possible deadlock in ext4_write_inline_data_end"
    assert full["type"] == "LOCKDEP" and full["frame"] == "ext4_write_inline_data_end"
    assert full["reports"][0]["title"] == full["title"]
    assert {"start", "end", "text", "corrupted"} <= set(full["reports"][0])
    json.dumps(full)


# --- symbolization ------------------------------------------------------------

REPORT = textwrap.dedent("""\
    RIP: 0010:ext4_write_inline_data+0xf4/0x100
    Call Trace:
     <TASK>
     ext4_write_inline_data_end+0xa7/0x2f0
     ext4_da_write_end+0x1c5/0x2c0 [ext4]
     not_in_the_map+0x10/0x20
     </TASK>
    """)

SYSTEM_MAP = textwrap.dedent("""\
    ffffffff81000000 T _stext
    ffffffff81234500 T ext4_write_inline_data
    ffffffff81234600 T ext4_write_inline_data_end
    ffffffff81234900 t dup
    ffffffff81234920 T after_small_dup
    ffffffff81234a00 t dup
    ffffffff81234a40 T after_big_dup
    ffffffff82000000 D some_data
    ffffffff82000100 b some_bss
    """)


def test_symbolize_without_artifacts_is_identity(tmp_path):
    assert symbolize(REPORT, None, None) == REPORT
    assert symbolize(REPORT, tmp_path / "vmlinux", tmp_path / "System.map", tmp_path) == REPORT
    assert symbolize("no frames here\n", None, None, None) == "no frames here\n"


def test_frame_pc_arithmetic(tmp_path):
    (tmp_path / "System.map").write_text(SYSTEM_MAP)
    table = load_system_map(tmp_path / "System.map")
    # The RIP line holds the faulting pc; call trace entries are return addresses.
    assert frame_pc("RIP: 0010:ext4_write_inline_data+0xf4/0x100 [ext4]", table) == 0xffffffff812345f4
    assert frame_pc(" ext4_write_inline_data+0xf4/0x100", table) == 0xffffffff812345f3
    assert frame_pc(" [<ffffffff81234610>] ext4_write_inline_data_end+0x10/0x2f0", table) == 0xffffffff8123460f
    # Same-named static functions: the size picks the right one.
    assert frame_pc(" dup+0x8/0x20", table) == 0xffffffff81234907
    assert frame_pc(" dup+0x8/0x40", table) == 0xffffffff81234a07
    assert frame_pc(" not_in_the_map+0x1/0x2", table) is None
    assert frame_pc(" some_data+0x1/0x2", table) is None  # data symbols are ignored
    assert isinstance(table, SymbolTable)


def _fake_tool(path: Path, script: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def test_symbolize_with_addr2line(tmp_path, monkeypatch):
    src = tmp_path / "linux"
    (tmp_path / "System.map").write_text(SYSTEM_MAP)
    (tmp_path / "vmlinux").write_bytes(b"\x7fELF")
    # A stand-in addr2line: "-a -f -i -e vmlinux ADDR..." -> address, then func/location pairs.
    _fake_tool(tmp_path / "bin" / "addr2line", textwrap.dedent(f"""\
        for arg in "$@"; do
          case "$arg" in
            0xffffffff812345f4) echo "$arg"; echo inline_check; echo "{src}/fs/ext4/inline.c:230";
                                echo ext4_write_inline_data; echo "{src}/fs/ext4/inline.c:235";;
            0x*) echo "$arg"; echo caller; echo "./fs/ext4/inline.c:777 (discriminator 2)";;
          esac
        done
        """))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    out = symbolize(REPORT, tmp_path / "vmlinux", tmp_path / "System.map", src)
    assert out.splitlines() == [
        "RIP: 0010:inline_check fs/ext4/inline.c:230 [inline]",
        "RIP: 0010:ext4_write_inline_data+0xf4/0x100 fs/ext4/inline.c:235",
        "Call Trace:",
        " <TASK>",
        " ext4_write_inline_data_end+0xa7/0x2f0 fs/ext4/inline.c:777",
        " ext4_da_write_end+0x1c5/0x2c0 [ext4]",  # module frames: no module object
        " not_in_the_map+0x10/0x20",
        " </TASK>",
    ]


def test_symbolize_with_faddr2line(tmp_path):
    src = tmp_path / "linux"
    (tmp_path / "vmlinux").write_bytes(b"\x7fELF")
    _fake_tool(src / "scripts" / "faddr2line", textwrap.dedent("""\
        shift
        for spec in "$@"; do
          echo "$spec:"
          echo "${spec%%+*} at fs/ext4/inline.c:235"
        done
        """))
    out = symbolize(REPORT, tmp_path / "vmlinux", None, src)
    assert "RIP: 0010:ext4_write_inline_data+0xf4/0x100 fs/ext4/inline.c:235\n" in out
    assert " ext4_write_inline_data_end+0xa7/0x2f0 fs/ext4/inline.c:235\n" in out
    assert " ext4_da_write_end+0x1c5/0x2c0 [ext4]\n" in out


def test_symbolize_tool_failure_is_identity(tmp_path, monkeypatch):
    (tmp_path / "System.map").write_text(SYSTEM_MAP)
    (tmp_path / "vmlinux").write_bytes(b"\x7fELF")
    _fake_tool(tmp_path / "bin" / "addr2line", "echo broken >&2; exit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert symbolize(REPORT, tmp_path / "vmlinux", tmp_path / "System.map") == REPORT


@pytest.mark.skipif(not all(map(shutil.which, ("gcc", "nm", "addr2line"))), reason="needs gcc and binutils")
def test_symbolize_real_binary(tmp_path):
    (tmp_path / "k.c").write_text(textwrap.dedent("""\
        int sink;
        __attribute__((noinline)) int leaf(int x) {
            sink = x;
            return x + 1;
        }
        int main(int argc, char **argv) {
            return leaf(argc);
        }
        """))
    vmlinux = tmp_path / "vmlinux"
    subprocess.run(["gcc", "-g", "-O1", "-o", vmlinux, tmp_path / "k.c"], check=True, cwd=tmp_path)
    system_map = tmp_path / "System.map"
    system_map.write_text(subprocess.run(["nm", "-n", vmlinux], capture_output=True, text=True).stdout)
    table = load_system_map(system_map)
    start = table.by_name["leaf"][0]
    size = next(a for a in table.starts if a > start) - start
    out = symbolize(f" leaf+0x1/{size:#x}\n", vmlinux, system_map, tmp_path)
    assert out.startswith(f" leaf+0x1/{size:#x} k.c:")


# --- helpers ------------------------------------------------------------------

@pytest.mark.parametrize("mangled, plain", [
    ("_RNvCscSpY9Juk0HT_7___rustc17rust_begin_unwind", "__rustc::rust_begin_unwind"),
    ("_RNvMs3_NtCshgDM7dBCdno_11rust_binder7processNtB5_7Process10update_ref",
     "<rust_binder::process::Process>::update_ref"),
    ("_RNvXs1_CscPPBqWtAqum_11ashmem_rustNtB5_6AshmemNtNtCs43vyB533jt3_6kernel10miscdevice10MiscDevice4mmap",
     "<ashmem_rust::Ashmem as kernel::miscdevice::MiscDevice>::mmap"),
    ("_RNCNvCsgStHSCytQ6I_7mycrate4main0B3_", "mycrate::main::{closure#0}"),
    ("ext4_write_inline_data", "ext4_write_inline_data"),
    ("_Rgarbage", "_Rgarbage"),
])
def test_demangle(mangled, plain):
    assert demangle(mangled) == plain


def test_corpus_throughput():
    stats = corpus_throughput(DATA)
    assert stats["files"] == len(OWN_FILES)
    assert stats["reports"] == len(OWN_FILES) - 1  # one log is crash-free
    assert stats["mb"] > 0 and stats["seconds"] >= 0 and stats["mb_per_s"] > 0
