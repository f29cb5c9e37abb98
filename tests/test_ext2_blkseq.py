"""ext2_iomap_blkseq without a VM: the spec, the patch stack, the verifier.

- the spec: variants, their stacks and boot options (the debug knob on both
  patched sides, patch 0002 their only difference);
- the patches: headers, what they touch (fs/ext2 only), the review's
  requests in patch 0002, and that every variant's stack applies in order
  with GNU patch to a copy of fs/ext2 of the pristine 6.1.192 tree (skipped
  when that tree is not unpacked on this host);
- repro.c: compiled on the host with -Werror, its verifier self-test on a
  tmpfs directory (clean files verify clean, planted wrong blocks are
  reported with whose data they hold) and its output judged by the harness
  (DATA_LOSS, a hit for this spec).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import platformdirs
import pytest

from harness.guest.protocol import StepResult
from harness.kernels import patches as patchlib
from harness.kernels.patches import PatchFailed, PatchOp
from harness.repro import spec as specs
from harness.verdict import Evidence, Outcome, judge

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "reproducers" / "ext2_iomap_blkseq"
P1 = FOLDER / "patches" / "0001-ext2-buffered-io-through-iomap.patch"
P2 = FOLDER / "patches" / "0002-ext2-validate-cached-iomap-with-i_blkseq.patch"
P3 = FOLDER / "patches" / "0003-ext2-DEBUG-map_blocks-delay-knob.patch"


# --- spec ----------------------------------------------------------------------------------


def test_spec_variants_and_stacks():
    s = specs.load("ext2_iomap_blkseq")
    assert [v.name for v in s.variants] == ["stock", "ext2-iomap", "ext2-iomap-blkseq"]
    stock, unfixed, fixed = (s.variant(n) for n in ("stock", "ext2-iomap", "ext2-iomap-blkseq"))
    assert {v.source for v in s.variants} == {"debian-src:6.1.192"}
    assert all(v.kconfig == ("lean", "filesystems", "faults") for v in s.variants)  # xfs_mkwrite_delalloc's base build
    assert stock.patches == () and stock.cmdline == ()
    assert [p.name for p, rev in unfixed.patches if not rev] == [P1.name, P3.name]
    assert [p.name for p, rev in fixed.patches if not rev] == [P1.name, P2.name, P3.name]
    # the only difference between the patched sides is patch 0002
    assert unfixed.cmdline == fixed.cmdline and any(c.startswith("ext2.map_delay_us=") for c in fixed.cmdline)
    assert [p for p, _ in fixed.patches if p not in dict(unfixed.patches)] == [P2]
    assert s.expect.data_loss
    assert s.expect.for_kernel(unfixed.kernel_name) == "reproduce"
    assert s.expect.for_kernel(fixed.kernel_name) == "clean"
    assert s.expect.for_kernel(stock.kernel_name) == "clean"
    assert s.expect.is_hit(Outcome.DATA_LOSS) and s.expect.is_hit(Outcome.FS_CORRUPT)
    assert s.image.fs == "ext2" and s.image.check  # e2fsck -fn after every run
    assert "{dev}" in s.args and s.args[s.args.index("-m") + 1] == "race"
    seconds = float(s.trial_args()[s.args.index("-t") + 1])  # the race's length as run: {seconds} at race:
    assert s.args[s.args.index("-t") + 1] == "{seconds}" and seconds == s.race == 30
    assert s.timeout > seconds + 60  # room for the final checks


# --- patches -------------------------------------------------------------------------------


def _subject(path: Path) -> str:
    m = re.search(r"^Subject: \[PATCH \d+/\d+\] (.*)$", path.read_text(), re.M)
    assert m, f"{path.name}: no format-patch Subject"
    return m.group(1)


def test_patch_headers_and_scope():
    assert _subject(P1) == "ext2: buffered I/O through iomap"
    assert _subject(P2) == "ext2: validate cached iomap with i_blkseq"
    assert "DEBUG" in _subject(P3)
    for p in (P1, P2, P3):
        text = p.read_text()
        assert text.startswith("From ") and re.search(r"^From: .+$", text, re.M)
        assert re.search(r"^ \d+ files? changed", text, re.M), f"{p.name}: no diffstat"
        files = {f.target for f in patchlib.parse(text)}
        assert files and all(f.startswith("fs/ext2/") for f in files), files  # ext2 only, no iomap


def _added(path: Path) -> str:
    return "".join(line[1:] + "\n" for line in path.read_text().splitlines() if line.startswith("+") and not line.startswith("+++"))


def test_fix_follows_the_review():
    added = _added(P2)
    inc = re.search(r"static inline void ext2_inc_i_blkseq\(.*?\n}\n", added, re.S)
    assert inc, "ext2_inc_i_blkseq() missing"
    body = inc.group(0)
    assert "lockdep_assert_held(&ei->truncate_mutex);" in body
    assert "WRITE_ONCE(ei->i_blkseq, ei->i_blkseq + 1);" in body
    assert "READ_ONCE" not in body  # no READ_ONCE under the lock
    assert "truncate_mutex" in added.split("static inline void ext2_inc_i_blkseq")[0]  # the comment
    assert "ei->i_blkseq = 0;" in added and "WRITE_ONCE(ei->i_blkseq, 0)" not in added
    assert "validity_cookie == READ_ONCE(EXT2_I(inode)->i_blkseq)" in added
    assert added.count("ext2_inc_i_blkseq(inode);") >= 5  # alloc, its failure paths, frees
    # the unfixed conversion reuses the cached mapping on the range check alone
    assert "validity_cookie" not in _added(P1)
    # the debug knob is off by default and only sleeps after a fresh multi-block mapping
    dbg = _added(P3)
    assert "static unsigned int ext2_map_delay_us;" in dbg
    assert "module_param_named(map_delay_us" in dbg and "fsleep(delay)" in dbg


def pristine_tree() -> Path | None:
    """fs/ext2 of the unpacked Debian 6.1.192 source in the real cache (unit tests get a private one)."""
    env = os.environ.get("EXT2_BLKSEQ_PRISTINE")
    if env:
        return Path(env)
    root = Path(platformdirs.user_cache_dir("kernel-repro-harness")) / "kernels" / "src" / "debian-src"
    for tree in sorted(root.glob("6.1.192-*/tree")):
        if (tree / "fs/ext2/inode.c").exists():
            return tree
    return None


@pytest.fixture
def ext2_copy(tmp_path: Path) -> Path:
    if shutil.which("patch") is None:
        pytest.skip("GNU patch not installed")
    tree = pristine_tree()
    if tree is None:
        pytest.skip("debian-src:6.1.192 is not unpacked here (any build of it unpacks it)")
    dest = tmp_path / "tree"
    shutil.copytree(tree / "fs/ext2", dest / "fs/ext2")
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


@pytest.mark.parametrize("variant", ["stock", "ext2-iomap", "ext2-iomap-blkseq"])
def test_stack_applies_in_order_to_pristine_ext2(ext2_copy: Path, variant: str):
    v = specs.load("ext2_iomap_blkseq").variant(variant)
    touched = patchlib.touched([PatchOp(p, r) for p, r in v.patches])
    assert all(t.startswith("fs/ext2/") for t in touched)
    patchlib.apply_stack(ext2_copy, [PatchOp(p, r) for p, r in v.patches])
    inode = (ext2_copy / "fs/ext2/inode.c").read_text()
    if variant == "stock":
        assert "iomap_writepages" not in inode
        return
    assert "return iomap_writepages(mapping, wbc, &wpc, &ext2_writeback_ops);" in inode
    assert ".map_blocks\t\t= ext2_write_map_blocks_debug," in inode
    assert "iomap_truncate_page(inode, newsize" in inode
    assert ("ext2_inc_i_blkseq" in inode) == (variant == "ext2-iomap-blkseq")
    assert ("i_blkseq" in (ext2_copy / "fs/ext2/ext2.h").read_text()) == (variant == "ext2-iomap-blkseq")


def test_patch_order_matters(ext2_copy: Path):
    with pytest.raises(PatchFailed):
        patchlib.apply_stack(ext2_copy, [PatchOp(P2)])  # the fix needs the conversion first


def test_conversion_alone_and_fix_without_debug_apply(ext2_copy: Path):
    patchlib.apply_stack(ext2_copy, [PatchOp(P1), PatchOp(P2)])
    inode = (ext2_copy / "fs/ext2/inode.c").read_text()
    assert ".map_blocks\t\t= ext2_write_map_blocks," in inode and "map_delay" not in inode


# --- the reproducer's verifier ---------------------------------------------------------------


@pytest.fixture(scope="module")
def repro_bin(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    out = tmp_path_factory.mktemp("bin") / "repro"
    done = subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", str(out), str(FOLDER / "repro.c")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def scratch(tmp_path: Path):
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="ext2-blkseq-", dir=shm))  # tmpfs, as the brief asks
        yield d
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


def test_selftest_reports_exactly_the_planted_blocks(repro_bin: Path, scratch: Path):
    done = subprocess.run([str(repro_bin), str(scratch), "-m", "selftest"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "@@selftest ok" in out and "FAIL" not in out
    lost = re.findall(r"^@@lost (.*)$", out, re.M)
    assert "F blk 5: holds V.7.0 round 7 blk 2, expected its own data (selftest planted)" in lost
    assert "F blk 9: holds zeros, expected its own data (selftest planted)" in lost
    assert "F blk 10: holds F round 6 blk 10, expected zeros (hole) (selftest planted)" in lost
    assert "V.7.0 blk 1: holds F round 7 blk 12, expected its own data (selftest planted)" in lost
    assert not [line for line in lost if "selftest clean" in line]  # clean files: nothing reported
    assert any(line.startswith("m blk 1: differs from byte 8000 on") for line in lost)
    assert any(line.startswith("m: size 19000, expected 20005") for line in lost)


def test_repro_output_is_judged_data_loss(repro_bin: Path, scratch: Path):
    """The harness's judge turns the verifier's lines into DATA_LOSS with the details."""
    out = subprocess.run([str(repro_bin), str(scratch), "-m", "selftest"], capture_output=True, text=True).stdout
    steps = (StepResult("setup", 0, 1.0, 1.1), StepResult("run", 1, 2.0, 5.0), StepResult("check", 0, 6.0, 7.0))
    up = "@@harness guest up 1.0 kernel 6.1.192\n"
    v = judge(Evidence(console="", output=up + out + "\n@@harness done\n", steps=steps))
    assert v.outcome is Outcome.DATA_LOSS
    assert v.time_to_hit is not None and v.time_to_hit >= 0
    assert "F blk 5: holds V.7.0 round 7 blk 2" in v.lost[0]
    assert specs.load("ext2_iomap_blkseq").expect.is_hit(v.outcome)
    # a run that found nothing exits 0: CLEAN (exiting 1 without a @@lost line is a reproducer error)
    ok = tuple(s if s.name != "run" else StepResult("run", 0, 2.0, 5.0) for s in steps)
    clean = judge(Evidence(console="", output=up + "@@stats rounds=3\n@@harness done\n", steps=ok))
    assert clean.outcome is Outcome.CLEAN
    broken = judge(Evidence(console="", output=up + "@@stats rounds=3\n@@harness done\n", steps=steps))
    assert broken.outcome is Outcome.INFRA_ERROR


def test_usage_errors(repro_bin: Path):
    assert subprocess.run([str(repro_bin)], capture_output=True).returncode == 2
    assert subprocess.run([str(repro_bin), "/tmp", "-m", "nope"], capture_output=True).returncode == 2
