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


# --- syzkaller mode, image: none, timeout_is, any_crash, fragment paths (issue 19) -----------------

SYZ_SOURCE = """// autogenerated by syzkaller (https://github.com/google/syzkaller)
static unsigned long long procid;
static void loop(void)
{
  int iter = 0;
  for (;; iter++) {
  }
}
int main(void)
{
  memcpy((void*)0x20000040, "ext4\\000", 5);
  syz_mount_image(0x20000040, 0x20000100, 0, 0, 1, 0, 0);
  for (procid = 0; procid < 4; procid++) {
    if (fork() == 0) {
      use_temporary_dir();
      loop();
    }
  }
  sleep(1000000);
  return 0;
}
"""


def _syz_folder(tmp_path, body: str):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "repro.c").write_text(SYZ_SOURCE)
    (folder / "repro.yaml").write_text(body)
    return folder


def test_shipped_specs_are_plain_with_their_image_or_published_syzkaller():
    for name in specs.available():
        s = specs.load(name)
        if s.mode == "syzkaller":  # a published reproducer: it brings its own image, its report is linked
            assert s.image is None and s.environment is not None and s.links, name
        else:
            assert s.mode == "plain" and s.syzkaller is None and s.environment is None, name
            assert s.image is not None, name
        assert s.timeout_is == "clean" and not s.expect.any_crash, name


def test_syzkaller_mode_detected(tmp_path):
    s = specs.load(str(_syz_folder(tmp_path, "image: none\nlinks: [\"https://syzkaller.appspot.com/bug?extid=x\"]\n")))
    assert s.mode == "syzkaller" and s.syzkaller.procs == 4 and s.syzkaller.filesystems == ("ext4",)
    assert s.image is None and s.args == ()  # no harness image: nothing to point at
    assert s.guest.cmdline == ("oops=panic", "panic_on_warn=1")  # syzbot's boot options
    assert s.links == ("https://syzkaller.appspot.com/bug?extid=x",)
    env = s.environment
    assert env.loop_devices == 8 and env.timeout_is_normal_end and env.modules == ("loop",)


def test_mode_written_wins(tmp_path):
    folder = _syz_folder(tmp_path, "image: none\nmode: plain\n")
    assert specs.load(str(folder)).mode == "plain" and specs.load(str(folder)).environment is None
    (folder / "repro.yaml").write_text("image: none\nmode: syzkaller\nguest: {cmdline: [quiet]}\n")
    (folder / "repro.c").write_text("int main(void) { return 0; }\n")  # not recognisable: read anyway
    s = specs.load(str(folder))
    assert s.mode == "syzkaller" and not s.syzkaller.generated and s.environment.loop_devices == 0
    assert s.guest.cmdline == ("quiet",)  # a cmdline written is kept as written
    (folder / "repro.yaml").write_text("image: none\nmode: syzbot\n")
    with pytest.raises(SpecError, match="mode: 'syzbot': use syzkaller or plain"):
        specs.load(str(folder))


def test_image_none_and_args(tmp_path):
    folder = _write(tmp_path, "image: none\nargs: [-t, '5']\n")
    s = specs.load(str(folder))
    assert s.image is None and s.args == ("-t", "5") and s.mode == "plain"
    (folder / "repro.yaml").write_text("image: none\nargs: ['{mnt}']\n")
    with pytest.raises(SpecError, match=r"args: \{mnt\} and \{dev\} need a harness image, and image is none"):
        specs.load(str(folder))


def test_timeout_is(tmp_path):
    folder = _write(tmp_path, "image: {fs: ext4, size: 8M}\ntimeout_is: hang\n")
    assert specs.load(str(folder)).timeout_is == "hang"
    (folder / "repro.yaml").write_text("image: {fs: ext4, size: 8M}\ntimeout_is: fail\n")
    with pytest.raises(SpecError, match="timeout_is: 'fail': use clean"):
        specs.load(str(folder))


def test_any_crash(tmp_path):
    folder = _write(tmp_path, "image: {fs: ext4, size: 8M}\nexpect: {any_crash: true, reproduce: ['debian:*']}\n")
    exp = specs.load(str(folder)).expect
    assert exp.any_crash and exp.for_kernel("debian:6.1.0-47") == "reproduce"
    assert exp.is_hit(Outcome.REPRODUCED) and exp.is_hit(Outcome.OTHER_CRASH) and not exp.is_hit(Outcome.CLEAN)
    assert not specs.Expectation(titles=("x",)).is_hit(Outcome.OTHER_CRASH)
    (folder / "repro.yaml").write_text("image: {fs: ext4, size: 8M}\nexpect: {any_crash: true, titles: [x]}\n")
    with pytest.raises(SpecError, match="any_crash: true counts every crash report: drop the titles or any_crash"):
        specs.load(str(folder))


def test_variant_fragment_paths(tmp_path):
    folder = _write(tmp_path, "image: none\nvariants: {v: {source: debian-src:6.1.192, kconfig: [lean, ./syz.config]}}\n")
    (folder / "syz.config").write_text("CONFIG_KASAN=y\n")
    (variant,) = specs.load(str(folder)).variants
    assert variant.kconfig == ("lean", str((folder / "syz.config").resolve()))  # kconfig.fragment_path takes it
    (folder / "repro.yaml").write_text("image: none\nvariants: {v: {source: debian-src:6.1.192, kconfig: [gone.config]}}\n")
    with pytest.raises(SpecError, match="variants: v: kconfig: fragment gone.config does not exist in"):
        specs.load(str(folder))


def test_guest_boots(tmp_path):
    from harness.errors import SpecError
    from harness.repro import spec as specs

    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "repro.c").write_text("int main(void) { return 0; }\n")
    (folder / "repro.yaml").write_text("image: ext4-inline-fullbitmap\nguest: {boots: 3}\n")
    assert specs.load(str(folder)).guest.boots == 3
    (folder / "repro.yaml").write_text("image: ext4-inline-fullbitmap\nguest: {boots: 0}\n")
    with pytest.raises(SpecError, match="boots: 0"):
        specs.load(str(folder))
