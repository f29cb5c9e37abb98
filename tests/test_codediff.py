"""harness.kernels.codediff on real objects gcc builds here: what counts as a change of code.

A "kernel" here is a linked executable standing for vmlinux and relocatable
objects standing for modules (``lib/modules/<release>/*.ko``), each built
from two versions of one C file: a comment added, a line number moved into a
bug table (as BUG_ON does), a call made to another function (same bytes
until relocated), a real change of code.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import KernelError
from harness.kernels import Kernel, codediff

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (harness setup installs it)")

SOURCE = """\
struct bug_entry { int line; };
#define BUG_LINE() do { static const struct bug_entry e __attribute__((used, section("__bug_table"))) = { __LINE__ }; } while (0)
__attribute__((noinline)) int helper_a(int x) { return x + 1; }
__attribute__((noinline)) int helper_b(int x) { return x + 2; }
int work(int x)
{
    BUG_LINE();
    return helper_a(x) * 3;
}
int main(void) { return work(1); }
"""

VERSIONS = {
    "base": SOURCE,
    "comment": SOURCE.replace("int work(int x)\n", "/* a comment:\n * two lines */\nint work(int x)\n"),
    "bug_line": SOURCE.replace("    BUG_LINE();\n", "\n\n    BUG_LINE();\n"),
    "call": SOURCE.replace("return helper_a(x) * 3;", "return helper_b(x) * 3;"),
    "code": SOURCE.replace("* 3;", "* 5;"),
}


def kernel(tmp: Path, name: str) -> Kernel:
    """A fake build: ``vmlinux`` linked, ``lib/modules/6.1.0-test/fs/m.ko`` relocatable, both from VERSIONS[name]."""
    folder = tmp / name
    modules = folder / "lib/modules/6.1.0-test/fs"
    modules.mkdir(parents=True)
    src = folder / "m.c"
    src.write_text(VERSIONS[name])
    flags = ["-O2", "-fno-asynchronous-unwind-tables", "-fno-pie", "-no-pie"]
    subprocess.run(["gcc", *flags, "-o", str(folder / "vmlinux"), str(src)], check=True)
    subprocess.run(["gcc", "-O2", "-fno-asynchronous-unwind-tables", "-c", "-o", str(modules / "m.ko"), str(src)],
                   check=True)
    return Kernel(name=f"test:{name}", release="6.1.0-test", version="6.1", image=folder / "vmlinux",
                  root=folder, vmlinux=folder / "vmlinux")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("codediff")
    return {name: kernel(tmp, name) for name in VERSIONS}


def test_a_comment_changes_no_code(builds):
    diff = codediff.compare(builds["base"], builds["comment"])
    assert diff.same and diff.compared == 2, diff
    assert "identical" in diff.describe()


def test_a_moved_bug_line_changes_no_code(builds):
    # the line number lives in __bug_table, as a BUG_ON's does; the instructions are the same
    assert codediff.compare(builds["base"], builds["bug_line"]).same


def test_a_call_to_another_function_is_a_change_in_the_module_relocations(builds):
    diff = codediff.compare(builds["base"], builds["call"])
    assert not diff.same
    assert any(c.startswith("fs/m.ko:") and "relocations" in c for c in diff.changed), diff.changed


def test_a_real_change_of_code_is_named(builds):
    diff = codediff.compare(builds["base"], builds["code"])
    assert not diff.same and "vmlinux: .text" in diff.changed and "fs/m.ko: .text" in diff.changed
    assert diff.describe().startswith("code differs in vmlinux: .text")


def test_a_module_one_build_lacks_is_a_change(builds, tmp_path):
    other = kernel(tmp_path, "base")
    (other.root / "lib/modules/6.1.0-test/fs/m.ko").unlink()
    diff = codediff.compare(builds["base"], other)
    assert diff.only_one == ("fs/m.ko",) and not diff.same


def test_no_vmlinux_and_a_broken_file_are_one_line_errors(builds, tmp_path):
    prebuilt = Kernel(name="debian:6.1.0-57", release="6.1.0-57-amd64", version="6.1.192", image=tmp_path / "vmlinuz")
    with pytest.raises(KernelError, match="no vmlinux to compare"):
        codediff.compare(prebuilt, builds["base"])
    bad = tmp_path / "vmlinux"
    bad.write_bytes(b"\x7fELF not really")
    with pytest.raises(KernelError, match="cannot read the code"):
        codediff.code_digests(bad)
