"""Integration: titles that survive inlining, on the lean base (issue 24's case, built here for itself).

tests/data/inlined_title's debug patch puts a WARN_ON and a BUG_ON in two
static functions of fs/ext4/ioctl.c, each called from one place, so the lean
6.1.192 build inlines them into the ioctl handler: the console's RIP (and the
WARNING line) name the caller, syzkaller's title names the caller, and the
lean base has no DWARF to say otherwise.  The specs expect titles naming the
static functions; the run must be REPRODUCED through the function that
encloses the printed file:line in the build's own (patched) source, say so in
result.json's matched_by, and still print syzkaller's title.  The kernel is
one fs/ext4/ioctl.c change on the lean base (incremental); one run each.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.repro import spec as specs

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "inlined_title"
PATCH = DATA / "0001-ext4-DEBUG-inlined-WARN_ON-and-BUG_ON.patch"
FILE = "fs/ext4/ioctl.c"
CASES = {  # spec folder: (kind, static function, the patched line's text)
    "warn": ("WARNING", "ext4_debug_inlined_warn", "WARN_ON(arg == EXT4_DEBUG_INLINED_MAGIC);"),
    "bug": ("kernel BUG", "ext4_debug_inlined_bug", "BUG_ON(arg == EXT4_DEBUG_INLINED_MAGIC);"),
}


def patched_line(text: str) -> int:
    """The line number of ``text`` in the patched file, read from the patch's hunks."""
    line = 0
    for row in PATCH.read_text().splitlines():
        if m := re.match(r"@@ -\d+(?:,\d+)? \+(\d+)", row):
            line = int(m.group(1))
        elif line and row[:1] in ("+", " "):
            if row[1:].strip() == text:
                return line
            line += 1
    raise AssertionError(f"{text!r} is not in {PATCH.name}")


def test_patched_lines_are_read_from_the_patch():
    assert patched_line(CASES["warn"][2]) == 1239 and patched_line(CASES["bug"][2]) == 1245  # the patch's own note


@pytest.fixture(scope="module")
def kernel():
    """The lean base with the debug patch (built through the cache; one file changed)."""
    built = specs.load(str(DATA / "warn")).variant("inlined").recipe().build()
    print(f"\n{built.name}: build_seconds={built.extra.get('build_seconds')} objects={built.extra.get('objects')} "
          f"cached={built.extra.get('cached')}")
    return built


@pytest.mark.build
@pytest.mark.ci
def test_the_build_inlined_both_functions(kernel):
    symbols = subprocess.run(["nm", str(kernel.vmlinux)], capture_output=True, text=True, check=True).stdout
    assert re.search(r" [tT] __ext4_ioctl$| [tT] ext4_ioctl$", symbols, re.M)
    for _, func, _ in CASES.values():
        assert not re.search(rf" {func}$", symbols, re.M), f"{func} is a symbol of its own: not inlined"


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.ci
@pytest.mark.parametrize("case", list(CASES))
def test_title_matches_through_the_source_line(vm, kernel, tmp_path, case):
    kind, func, text = CASES[case]
    done = subprocess.run(
        [sys.executable, "-m", "harness", "repro", str(DATA / case), "--variant", "inlined", "--json",
         "--results", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    (run,) = result["results"]
    assert result["verdict"] == "REPRODUCED", (run, done.stderr[-3000:])
    folder = Path(run["folder"])
    console = (folder / "console.log").read_text(errors="replace")
    rip = re.search(r"RIP: 0010:(\w+)\+0x", console)
    assert rip, console[-3000:]
    caller = rip.group(1)
    assert caller != func  # inlined: the RIP names the caller
    line = patched_line(text)
    if kind == "WARNING":
        assert re.search(rf"WARNING: CPU: \d+ PID: \d+ at {FILE}:{line} {caller}\+0x", console), console[-3000:]
    else:
        assert f"kernel BUG at {FILE}:{line}!" in console, console[-3000:]
    printed = f"{kind} in {caller}"  # syzkaller's title, as printed: naming the caller
    assert run["title"] == printed
    assert done.stderr.strip().splitlines()[-1].startswith(f"REPRODUCED: {printed}"), done.stderr[-2000:]
    recorded = json.loads((folder / "result.json").read_text())
    assert recorded["verdict"] == "REPRODUCED" and recorded["title"] == printed
    assert recorded["matched_by"] == (f"{kind} in {func}: {func} inlined into {caller} at {FILE}:{line} "
                                      f"({func} encloses that line in the source)")
    print(f"\n{case}: {printed} <- {recorded['matched_by']}; run {run['wall_seconds']} s, "
          f"time_to_hit {run.get('time_to_hit')} s")
