import pytest

from harness.errors import SpecError, UnknownName
from harness.repro import spec as specs
from harness.verdict import Outcome


def test_ext4_inline_loads():
    s = specs.load("ext4_inline")
    assert s.name == "ext4_inline" and s.source.name == "repro.c" and s.source.exists()
    assert s.image.fs == "ext4" and "mark_free_blocks_used" in s.image.tweaks
    assert "kernel BUG in ext4_write_inline_data" in s.expect.titles
    assert s.expect.for_kernel("debian:6.1.0-47") == "reproduce"
    assert s.expect.for_kernel("debian:6.12.117") == "reproduce"  # measured: the 6.12 fix does not close it
    assert s.expect.for_kernel("debian-src:6.1.192/unfixed") is None
    assert "oops=panic" in s.guest.cmdline


def test_every_shipped_spec_loads():
    for name in specs.available():
        specs.load(name)


def test_unknown_reproducer_lists_available():
    with pytest.raises(UnknownName, match="Unknown reproducer 'ext5'. Available: .*ext4_inline"):
        specs.load("ext5")


def _write(tmp_path, body: str, source: bool = True):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "repro.yaml").write_text(body)
    if source:
        (folder / "repro.c").write_text("int main(void){return 0;}\n")
    return folder


def test_broken_yaml_names_line(tmp_path):
    folder = _write(tmp_path, "name: x\nimage: [unclosed\n")
    with pytest.raises(SpecError, match=r"repro.yaml: line \d+ column \d+ broken YAML"):
        specs.load(str(folder))


def test_missing_source(tmp_path):
    folder = _write(tmp_path, "image: {fs: ext4, size: 8M}\n", source=False)
    with pytest.raises(SpecError, match="source: repro.c does not exist"):
        specs.load(str(folder))


def test_wrong_types_and_keys(tmp_path):
    folder = _write(tmp_path, "image: {fs: ext4, size: 8M}\nruns: many\n")
    with pytest.raises(SpecError, match="runs: expected int, got str 'many'"):
        specs.load(str(folder))
    (folder / "repro.yaml").write_text("image: {fs: ext4, size: 8M}\nrun: 3\n")
    with pytest.raises(SpecError, match=r"unknown key\(s\) run;"):
        specs.load(str(folder))


def test_expectation_needs_a_signature(tmp_path):
    folder = _write(tmp_path, "image: {fs: ext4, size: 8M}\nexpect: {reproduce: ['debian:*']}\n")
    with pytest.raises(SpecError, match="no titles"):
        specs.load(str(folder))


def test_inline_image_and_defaults(tmp_path):
    folder = _write(tmp_path, "image: {fs: xfs, size: 300M}\nexpect: {data_loss: true, clean: ['debian:6.12.*']}\n")
    s = specs.load(str(folder / "repro.yaml"))
    assert s.image.fs == "xfs" and s.runs == 1 and s.args == ("{mnt}",)
    assert s.expect.for_kernel("debian:6.12.117") == "clean"
    assert s.expect.is_hit(Outcome.DATA_LOSS) and not s.expect.is_hit(Outcome.CLEAN)


def test_variants_parse(tmp_path):
    folder = _write(
        tmp_path,
        "image: {fs: xfs, size: 300M}\n"
        "variants:\n"
        "  unfixed: {source: debian-src:6.1.192, patches: [p/0001-a.patch, 'revert:p/0002-b.patch'], kconfig: [lean, filesystems, faults]}\n"
        "  fixed: {source: debian-src:6.1.192, cmdline: [xfs.debug=1]}\n"
        "expect: {data_loss: true, reproduce: ['*/unfixed'], clean: ['*/fixed']}\n",
    )
    (folder / "p").mkdir()
    (folder / "p" / "0001-a.patch").write_text("")
    (folder / "p" / "0002-b.patch").write_text("")
    s = specs.load(str(folder))
    unfixed, fixed = s.variants
    assert unfixed.kernel_name == "debian-src:6.1.192/unfixed"
    assert [(p.name, rev) for p, rev in unfixed.patches] == [("0001-a.patch", False), ("0002-b.patch", True)]
    assert unfixed.describe() == ["apply  0001-a.patch", "revert 0002-b.patch"]
    assert unfixed.kconfig == ("lean", "filesystems", "faults")
    assert fixed.patches == () and fixed.describe() == ["(no patches)"] and fixed.cmdline == ("xfs.debug=1",)
    assert s.expect.for_kernel(unfixed.kernel_name) == "reproduce"
    assert s.expect.for_kernel(fixed.kernel_name) == "clean"
    with pytest.raises(UnknownName, match="Unknown variant 'stock' of r. Available: unfixed, fixed"):
        s.variant("stock")


def test_variant_patch_must_exist(tmp_path):
    folder = _write(tmp_path, "image: {fs: ext4, size: 8M}\nvariants: {v: {source: debian-src:6.1.192, patches: [nope.patch]}}\n")
    with pytest.raises(SpecError, match="patches\\[0\\]: patch nope.patch does not exist"):
        specs.load(str(folder))


def test_source_is_snapshotted_at_load(tmp_path):
    folder = _write(tmp_path, "image: {fs: ext4, size: 8M}\n")
    s = specs.load(str(folder))
    (folder / "repro.c").write_text("changed")
    assert s.source_text == b"int main(void){return 0;}\n"


def test_other_crash_expectation(tmp_path):
    """A fix that trades the BUG for another report: met only with no hit and another crash."""
    from pathlib import Path

    from harness.kernels import Kernel
    from harness.repro.run import RunResult, Summary
    from harness.verdict import Verdict

    s = specs.load("ext4_inline/debug")
    assert s.expect.for_kernel("debian-src:6.1.192/debug-mmap-convert") == "other_crash"
    assert s.expect.for_kernel("debian-src:6.1.192/debug") == "reproduce"
    k = Kernel(name="k", release="r", version="v", image=Path("bz"))

    def summary(*outcomes):
        runs = tuple(RunResult(i, tmp_path, Verdict(o), (), 1.0, None) for i, o in enumerate(outcomes, 1))
        hits = sum(s.expect.is_hit(o) for o in outcomes)
        return Summary("r", k, "tcg", "", tmp_path, runs, "other_crash", hits=hits)

    assert summary(Outcome.OTHER_CRASH, Outcome.CLEAN).met is True
    assert summary(Outcome.CLEAN, Outcome.CLEAN).met is False  # nothing to show for it
    assert summary(Outcome.OTHER_CRASH, Outcome.REPRODUCED).met is False  # the BUG is still there
