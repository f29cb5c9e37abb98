"""Symbolized reports: module frames through the .ko's own symbols, Debian paths,
which kernel printed a log (harness.report.symbolize).

A tiny relocatable object stands for a module: gcc -O2 -g inlines a function
into ``outer`` and moves its trap into ``outer.cold`` (.text.unlikely), as a
kernel build does; addr2line must name both, by section, with no load address.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.kernels.debian import module_files
from harness.kernels.kernel import Kernel
from harness.report import kernel_mismatch, parse, symbolize, symbolize_run
from harness.report.symbolize import _clean_path, has_dwarf, module_symbols

MODULE_C = """\
static inline __attribute__((always_inline)) int inner(int *p, int n)
{
\tif (n > 3)
\t\t__builtin_trap();
\treturn p[n] + 1;
}

int outer(int *p, int n)
{
\tint r = inner(p, n);
\treturn r * 2;
}
"""


@pytest.fixture(scope="module")
def module(tmp_path_factory) -> Path:
    if not (shutil.which("gcc") and shutil.which("addr2line")):
        pytest.skip("needs gcc and binutils (harness setup installs them)")
    folder = tmp_path_factory.mktemp("mod")
    (folder / "m.c").write_text(MODULE_C)
    subprocess.run(["gcc", "-O2", "-g", "-c", "m.c", "-o", "m.ko"], cwd=folder, check=True)
    return folder / "m.ko"


def test_module_symbols_name_their_section(module):
    symbols = module_symbols(module)
    assert [(s.section, s.value) for s in symbols["outer"]] == [(".text", 0)]
    assert symbols["outer.cold"][0].section == ".text.unlikely"


def test_module_frames_get_lines_and_inlined_frames(module):
    outer_size = hex(module_symbols(module)["outer"][0].size)
    text = (f"RIP: 0010:outer.cold+0x0/0x2 [m]\n"
            f"Call Trace:\n"
            f" outer+0xd/{outer_size} [m]\n"
            f" other_function+0x10/0x20 [other]\n")
    out = symbolize(text, None, None, modules={"m": module})
    lines = out.splitlines()
    # the RIP is the trap itself (no -1), inside inner inlined into outer's cold part; the
    # module's name stays after the location, as syzkaller's symbolizeLine inserts it
    assert lines[0].startswith("RIP: 0010:inner ") and lines[0].endswith("m.c:4 [inline] [m]"), lines
    assert lines[1].startswith("RIP: 0010:outer.cold+0x0/0x2 ") and lines[1].endswith(" [m]"), lines
    # a call trace entry is a return address: looked up one byte back, still in the inlined load
    assert "m.c:5 [inline] [m]\n" in out and f"outer+0xd/{outer_size} " in out and "m.c:10 [m]" in out, out
    assert " other_function+0x10/0x20 [other]" in out  # no .ko given: left as it was


def test_symbolizing_twice_adds_nothing(module):
    text = "RIP: 0010:outer.cold+0x0/0x2 [m]\n"
    once = symbolize(text, None, None, modules={"m": module})
    assert symbolize(once, None, None, modules={"m": module}) == once


def test_dwarf_is_told(module, tmp_path):
    stripped = tmp_path / "s.ko"
    subprocess.run(["strip", "-g", "-o", stripped, module], check=True)
    assert has_dwarf(module) and not has_dwarf(stripped)
    assert symbolize("RIP: 0010:outer+0x9/0x14 [m]\n", None, None, modules={"m": stripped}) == \
        "RIP: 0010:outer+0x9/0x14 [m]\n"


def test_paths_start_at_the_tree():
    assert _clean_path("debian/build/build_amd64_none_amd64/fs/ext4/inline.c", None) == "fs/ext4/inline.c"
    assert _clean_path("/build/linux-6.1/mm/filemap.c", None) == "mm/filemap.c"
    assert _clean_path("./include/linux/fs.h", None) == "include/linux/fs.h"
    assert _clean_path("/src/linux/fs/xfs/xfs_iomap.c", "/src/linux/") == "fs/xfs/xfs_iomap.c"


OWN = Path(__file__).parent / "data" / "oops"


def _kernel(release: str, version: str) -> Kernel:
    return Kernel(name="debian:" + release.removesuffix("-amd64"), release=release, version="6.1",
                  image=Path("/nonexistent"), kind="debian", extra={"debian_version": version})


def test_the_log_names_its_kernel():
    console = (OWN / "ext4-inline-bug-debian61.log").read_text()  # CPU: 1 ... Not tainted 6.1.0-47-amd64 #1  Debian 6.1.170-1
    release, version = "6.1.0-47-amd64", "6.1.170-1"
    assert kernel_mismatch(console, _kernel(release, version)) == ""
    assert "Debian 6.1.170-3" in kernel_mismatch(console, _kernel(release, "6.1.170-3"))  # same ABI, other build
    why = kernel_mismatch(console, _kernel("6.1.0-1-amd64", "6.1.1-1"))
    assert why.startswith(f"the log's kernel is {release}") and "build IDs differ" in why
    assert parse(console)  # a real report, not a made-up line


DEBIAN_LOG = Path(__file__).parent / "data" / "symbolize" / "ext4-inline-debian-6.1.0-57.log"  # a real run's console


@pytest.mark.vm  # no guest, but the real kernel cache (VM tests share it): the image and its -dbg files
def test_debian_dbg_symbolizes_vmlinux_and_ext4_frames():
    """With debian:6.1.0-57's -dbg package in the kernel cache (`harness report` fetches it)."""
    from harness import kernels  # import here: resolving needs the cache, only this test uses it
    from harness.report import symbolize_kernel

    try:
        kernel = kernels.resolve("debian:6.1.0-57")
    except Exception as exc:  # noqa: BLE001 - no apt, no network: nothing to test here
        pytest.skip(f"debian:6.1.0-57 not at hand: {exc}")
    dbg = Path(kernel.root) / "dbg" / "usr" / "lib" / "debug" / "boot" / f"vmlinux-{kernel.release}"
    if not dbg.is_file():
        pytest.skip(f"no {dbg} (run `harness report {DEBIAN_LOG} --kernel debian:6.1.0-57` once)")
    console = DEBIAN_LOG.read_text()
    done = symbolize_kernel(parse(console)[0].text, kernel, fetch=False)
    assert done.note == ""
    assert "RIP: 0010:ext4_write_inline_data+0xed/0x100 fs/ext4/inline.c:236 [ext4]" in done.text
    assert " ext4_write_inline_data_end+0x124/0x570 fs/ext4/inline.c:803 [ext4]" in done.text
    assert " call_write_iter include/linux/fs.h:2271 [inline]" in done.text
    assert parse(console)[0].title == "kernel BUG in ext4_write_inline_data"  # titles never change


def test_run_folder_of_another_kernel_stays_bare_and_says_why(tmp_path):
    run = tmp_path / "run-01"
    run.mkdir()
    console = DEBIAN_LOG.read_text()
    (run / "console.log").write_text(console)
    bare = parse(console)[0].text
    (run / "report.txt").write_text(bare)
    [(path, note)] = symbolize_run(tmp_path, _kernel("6.1.0-56-amd64", "6.1.192-2"), fetch=False)
    assert path == run / "report.txt" and "their build IDs differ" in note
    written = path.read_text()
    assert written.startswith(bare) and written.endswith(f"(symbols: {note})\n")
    if shutil.which("objdump"):
        assert "<-- trapping instruction" in written
    symbolize_run(tmp_path, _kernel("6.1.0-56-amd64", "6.1.192-2"), fetch=False)
    assert path.read_text() == written  # run again: the same file, not the sections twice


def test_module_files_find_plain_and_compressed_modules(tmp_path):
    tree = tmp_path / "lib" / "modules" / "6.12.1+deb12-amd64" / "kernel" / "fs"
    (tree / "ext4").mkdir(parents=True)
    (tree / "xfs").mkdir()
    (tree / "ext4" / "ext4.ko.xz").write_bytes(b"")
    (tree / "xfs" / "xfs.ko").write_bytes(b"")
    (tree / "ext4" / "ext4.ko.notes").write_bytes(b"")
    kernel = Kernel(name="debian:6.12.1", release="6.12.1+deb12-amd64", version="6.12.1", image=Path("/x"),
                    root=tmp_path, kind="debian")
    assert module_files(kernel, ["ext4", "xfs", "jbd2"]) == {"ext4": tree / "ext4" / "ext4.ko.xz",
                                                            "xfs": tree / "xfs" / "xfs.ko"}
