"""ext4_journalled_inline_end without a VM: the spec, the fix's hunk, the program, a captured console.

- the spec: one expectation per Debian 6.1 image -47..-57, the boundary at
  -55 (6.1.192-1, the first image whose changelog lists the fix);
- the patch: one hunk in ext4_journalled_write_end(), which reverts cleanly
  on Debian's 6.1.192 tree (skipped where the harness has not unpacked it)
  and which that tree carries (the test the hunk adds is there);
- repro.c: compiles on the host with -Werror and refuses bad usage;
- the console of a REPRODUCED run on debian:6.1.0-54 (tests/data): the
  report parser titles it with one of the spec's titles and the judge calls
  it REPRODUCED, a hit for this spec.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import platformdirs
import pytest

from harness.guest.protocol import StepResult
from harness.report import parse as parse_report
from harness.repro import spec as specs
from harness.verdict import Evidence, Outcome, judge

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "reproducers" / "ext4_journalled_inline_end"
FIX = FOLDER / "patches" / "0001-ext4-fix-kernel-BUG-in-ext4_write_inline_data_end.patch"
CONSOLE = ROOT / "tests" / "data" / "ext4_journalled_inline_end-6.1.0-54.console.log"
TREE = Path(platformdirs.user_cache_dir("kernel-repro-harness")) / "kernels/src/debian-src/6.1.192-3/tree"
# Debian's 6.1 images and the stable release each carries (apt-cache show linux-image-6.1.0-N-amd64)
IMAGES = {47: "6.1.170-3", 48: "6.1.172-1", 49: "6.1.174-1", 50: "6.1.176-1", 51: "6.1.177-1", 52: "6.1.180-1",
          53: "6.1.187-1", 54: "6.1.190-1", 55: "6.1.192-1", 56: "6.1.192-2", 57: "6.1.192-3"}
FIRST_FIXED = 55


def test_spec_expects_the_bug_up_to_54_and_not_from_55():
    spec = specs.load("ext4_journalled_inline_end")
    assert spec.kernel == "debian:6.1.0-54"
    for n in IMAGES:
        want = specs.ExpectKind.CLEAN if n >= FIRST_FIXED else specs.ExpectKind.REPRODUCE
        assert spec.expect.for_kernel(f"debian:6.1.0-{n}") is want, n
    assert spec.expect.for_kernel("debian:6.12.117") is None  # not measured there: no expectation
    assert "kernel BUG in ext4_write_inline_data" in spec.expect.titles


def test_image_is_delalloc_inline_data():
    """The reproducer needs a delalloc mount (it remounts nodelalloc itself) and room for inline data."""
    image = specs.load("ext4_journalled_inline_end").image
    assert image.fs == "ext4" and image.check
    assert "inline_data" in image.mkfs_options and image.mkfs_options[image.mkfs_options.index("-I") + 1] == "256"
    assert "nodelalloc" not in image.mount_options and "data=journal" not in image.mount_options


def test_fix_is_one_hunk_in_the_journalled_write_end():
    text = FIX.read_text()
    assert "Subject: [PATCH] ext4: fix kernel BUG in ext4_write_inline_data_end" in text
    added = [line for line in text.splitlines() if line.startswith("+") and not line.startswith("+++")]
    removed = [line for line in text.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert removed == ["-\tif (ext4_has_inline_data(inode))"]
    assert added[-1][1:].strip() == "ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA))"
    assert text.count("@@ -") == 1 and "+++ b/fs/ext4/inode.c" in text


@pytest.mark.skipif(not (TREE / "fs/ext4/inode.c").exists(), reason=f"Debian's 6.1.192 tree not unpacked at {TREE}")
def test_fix_is_in_6_1_192_and_reverts_cleanly():
    source = (TREE / "fs/ext4/inode.c").read_text()
    start = source.index("static int ext4_journalled_write_end(")
    body = source[start:source.index("\n}\n", start)]
    assert "ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA))\n\t\treturn ext4_write_inline_data_end" in body
    done = subprocess.run(["patch", "-R", "-p1", "--dry-run", "-F0", "-i", str(FIX)], cwd=TREE,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "fuzz" not in done.stdout and "offset" not in done.stdout, done.stdout


@pytest.fixture(scope="module")
def repro_bin(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("no gcc on this host")
    out = tmp_path_factory.mktemp("bin") / "repro"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(out), str(FOLDER / "repro.c")], check=True)
    return out


def test_usage_errors(repro_bin: Path, tmp_path: Path):
    assert subprocess.run([str(repro_bin)], capture_output=True).returncode == 2
    # a directory that is no ext4 with inline data: step 1 says so, exit 2 (an error, not a verdict)
    done = subprocess.run([str(repro_bin), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "repro: " in done.stderr


@pytest.mark.skipif(not CONSOLE.exists(), reason="no captured console yet")
def test_captured_console_is_judged_reproduced():
    spec = specs.load("ext4_journalled_inline_end")
    console = CONSOLE.read_text()
    reports = parse_report(console)
    assert reports and reports[0].title in spec.expect.titles, reports
    steps = (StepResult("setup", 0, 1.0, 1.1), StepResult("run", None, 2.0, 3.0))
    up = "@@harness guest up 1.0 kernel 6.1.0-54-amd64\n"
    v = judge(Evidence(console=console, output=up + "repro: 5: chattr +j\n", steps=steps,
                       expected_titles=spec.expect.titles))
    assert v.outcome is Outcome.REPRODUCED, v
    assert spec.expect.is_hit(v.outcome)
    assert "ext4_journalled_write_end" in console


def test_matrix_is_one_row_over_every_debian_61_image():
    from harness.matrix.spec import load_matrix  # the matrix layer: only this test needs it

    available = {"debian": [f"debian:6.1.0-{n}" for n in IMAGES] + ["debian:6.12.117"]}
    matrix = load_matrix(FOLDER / "debian-6.1.matrix.yaml", available=lambda kind: available.get(kind, []))
    cells = {c.kernel: c.expectation for c in matrix.cells}
    assert {c.repro for c in matrix.cells} == {"ext4_journalled_inline_end"}
    assert list(cells) == [f"debian:6.1.0-{n}" for n in IMAGES]  # the 6.12 images are not in the row
    assert [n for n in IMAGES if cells[f"debian:6.1.0-{n}"] is specs.ExpectKind.CLEAN] == [55, 56, 57]
