"""``harness new``: a reproducer folder from a published C file (golden repro.yaml / syzbot.config)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from shared_data import SETS

from harness.errors import SpecError, UnknownName
from harness.repro import adhoc, scaffold, spec
from harness.verdict import Outcome

ROOT = Path(__file__).resolve().parent.parent
SHARED = SETS["syzkaller-repros"].path  # $HARNESS_SYZ_REPROS, default ../shared/syzkaller-repros
GOLDEN = Path(__file__).resolve().parent / "golden" / "scaffold"
needs_shared = SETS["syzkaller-repros"].mark

SYZBOT = """\
# Linux/x86 6.1.45 Kernel Configuration
CONFIG_CMDLINE="earlyprintk=serial panic_on_warn=1 kasan.fault=panic"
CONFIG_DEBUG_KERNEL=y
CONFIG_BLK_DEV_LOOP=y
CONFIG_BLK_DEV_LOOP_MIN_COUNT=16
CONFIG_EXT4_FS=y
CONFIG_EXT4_FS_POSIX_ACL=y
CONFIG_EXT4_KUNIT_TESTS=y
CONFIG_XFS_FS=m
CONFIG_XFS_DEBUG=y
CONFIG_KASAN=y
CONFIG_KASAN_GENERIC=y
CONFIG_PROVE_LOCKING=y
CONFIG_FAULT_INJECTION=y
CONFIG_FAILSLAB=y
"""

DEBIAN = """\
CONFIG_BLK_DEV_LOOP=m
CONFIG_EXT4_FS=m
CONFIG_XFS_FS=m
CONFIG_DEBUG_KERNEL=y
# CONFIG_KASAN is not set
# CONFIG_PROVE_LOCKING is not set
# CONFIG_FAULT_INJECTION is not set
"""


@pytest.fixture
def inputs(tmp_path):
    config = tmp_path / "config-syzbot"
    config.write_text(SYZBOT)
    debian = tmp_path / "config-6.1.0-47-amd64"
    debian.write_text(DEBIAN)
    return config, [("debian:6.1.0-47", debian)]


def _golden(case: str, folder: Path) -> None:
    for name in ("repro.yaml", "syzbot.config"):
        got = folder / name
        want = GOLDEN / case / name
        if os.environ.get("HARNESS_GOLDEN") == "1":
            if got.exists():
                want.parent.mkdir(parents=True, exist_ok=True)
                want.write_text(got.read_text())
            else:
                want.unlink(missing_ok=True)
        assert got.exists() == want.exists(), f"{name}: scaffolded {got.exists()}, golden {want.exists()}"
        if want.exists():
            assert got.read_text() == want.read_text(), f"{want} differs (HARNESS_GOLDEN=1 rewrites it after review)"


@needs_shared
def test_syzkaller_with_title_and_config(tmp_path, inputs):
    config, debian = inputs
    source = SHARED / "02-ext4-fallocate-hung.c"
    folder = scaffold.scaffold("fallocate", source, titles=["INFO: task hung in ext4_fallocate"], config=config,
                               root=tmp_path / "reproducers", debian=debian)
    assert folder == tmp_path / "reproducers" / "fallocate"
    assert (folder / "repro.c").read_bytes() == source.read_bytes()  # verbatim
    _golden("fallocate", folder)
    s = spec.load(str(folder))
    assert s.mode == "syzkaller" and s.image is None and s.args == () and s.timeout == 300
    assert s.timeout_is == "clean" and s.expect.titles == ("INFO: task hung in ext4_fallocate",)
    assert s.guest.cmdline == ("oops=panic", "panic_on_warn=1")
    (variant,) = s.variants
    assert variant.kernel_name == "debian-src:6.1.192/syzbot" and variant.cmdline == ("kasan.fault=panic",)
    assert variant.kconfig == ("lean", str(folder / "syzbot.config"))
    assert s.environment.loop_devices == 8 and s.environment.timeout_is_normal_end
    text = (folder / "repro.yaml").read_text()
    assert "Debian: debian:6.1.0-47 lacks CONFIG_KASAN, CONFIG_PROVE_LOCKING, CONFIG_FAULT_INJECTION." in text


@needs_shared
def test_syzkaller_without_title(tmp_path):
    folder = scaffold.scaffold("writepages", SHARED / "01-ext4-writepages-inline-v6.1.c", root=tmp_path)
    _golden("writepages", folder)
    s = spec.load(str(folder))
    assert s.expect.any_crash and s.expect.titles == () and s.expect.is_hit(Outcome.OTHER_CRASH)
    assert s.links == ("https://syzkaller.appspot.com/bug?id=6dda878e2a4227c99ad925929a0be21278575444",)
    assert s.timeout == 120  # it runs its program once
    assert not (folder / "syzbot.config").exists() and s.variants == ()


def test_plain_file_with_image_and_config(tmp_path, inputs):
    config, debian = inputs
    source = ROOT / "reproducers" / "xfs_mkwrite_delalloc" / "repro.c"
    folder = scaffold.scaffold("mkwrite", source, titles=["kernel BUG in xfs_a", "WARNING in xfs_b"], config=config,
                               fs="xfs", root=tmp_path, debian=debian)
    _golden("mkwrite", folder)
    s = spec.load(str(folder))
    assert s.mode == "plain" and s.image.fs == "xfs" and s.args == ("{mnt}",) and s.environment is None
    assert s.guest.cmdline == ("oops=panic",)
    assert s.variants[0].kconfig == ("lean", "filesystems", str(folder / "syzbot.config"))
    assert "CONFIG_XFS_FS=y\n" in (folder / "syzbot.config").read_text()  # =m became =y
    assert "CONFIG_BLK_DEV_LOOP" not in (folder / "syzbot.config").read_text()  # no loop devices used


def test_debian_configs_default_to_the_cache(tmp_path, inputs):
    config, _ = inputs  # unit tests run with a private, empty HARNESS_CACHE
    folder = scaffold.scaffold("c", ROOT / "reproducers" / "ext4_inline" / "repro.c", config=config, root=tmp_path)
    assert "Debian: no Debian kernel in the cache to compare with." in (folder / "repro.yaml").read_text()


def test_kernel_follows_the_config_series(tmp_path):
    config = tmp_path / "c"
    config.write_text("# Linux/x86 6.12.30 Kernel Configuration\nCONFIG_EXT4_FS=y\n")
    folder = scaffold.scaffold("k", ROOT / "reproducers" / "ext4_inline" / "repro.c", config=config, root=tmp_path,
                               debian=[])
    s = spec.load(str(folder))
    assert s.kernel == "debian:6.12" and s.variants[0].source == "debian-src:6.12.117"
    assert spec.load(str(scaffold.scaffold("k2", s.source, root=tmp_path, kernel="debian:6.1.0-47"))).kernel == \
        "debian:6.1.0-47"


def test_refusals(tmp_path, inputs):
    config, debian = inputs
    source = ROOT / "reproducers" / "ext4_inline" / "repro.c"
    scaffold.scaffold("once", source, root=tmp_path)
    with pytest.raises(SpecError, match="already holds a reproducer: pick another name or remove it"):
        scaffold.scaffold("once", source, root=tmp_path)
    for bad in ("", "../x", "a/b/c", "-x", "a b"):
        with pytest.raises(SpecError, match="letters, digits"):
            scaffold.scaffold(bad, source, root=tmp_path)
    with pytest.raises(UnknownName, match="--from .*nope.c: no such file"):
        scaffold.scaffold("n", tmp_path / "nope.c", root=tmp_path)
    with pytest.raises(UnknownName, match="--config .*: no such file: give a syzbot kernel .config"):
        scaffold.scaffold("n", source, config=tmp_path / "none", root=tmp_path)
    with pytest.raises(SpecError, match="--fs btrfs: use one of ext4, ext2, xfs, none"):
        scaffold.scaffold("n", source, fs="btrfs", root=tmp_path)
    assert not (tmp_path / "n").exists()
    sub = scaffold.scaffold("once/sub", source, root=tmp_path, fs="ext2")
    assert spec.load(str(sub)).image.fs == "ext2"


def test_adhoc_spec_for_a_bare_file(tmp_path):
    source = ROOT / "reproducers" / "ext4_inline" / "repro.c"
    s = adhoc.spec_for_file(source)
    assert s.name == "repro" and s.mode == "plain" and s.image.fs == "ext4" and s.args == ("{mnt}",)
    assert s.expect.any_crash and s.expect.reproduce == () and s.timeout == 120 and s.kernel == "debian:6.1"
    assert "no title expected" in s.summary and s.source_text == source.read_bytes()
    t = adhoc.spec_for_file(str(source), expect_titles=["kernel BUG in x"], fs="none", timeout=30, kernel="debian:6.12")
    assert t.image is None and t.args == () and t.timeout == 30 and t.kernel == "debian:6.12"
    assert t.expect.titles == ("kernel BUG in x",) and not t.expect.any_crash
    assert t.expect.for_kernel("debian:6.12.117") == "reproduce"
    with pytest.raises(UnknownName, match="no such C file"):
        adhoc.spec_for_file(tmp_path / "x.c")
    with pytest.raises(SpecError, match="--timeout -1: must be a positive number"):
        adhoc.spec_for_file(source, timeout=-1)


@needs_shared
def test_adhoc_spec_for_a_syzkaller_file():
    s = adhoc.spec_for_file(SHARED / "09-reiserfs-fill-super-uaf.c")
    assert s.mode == "syzkaller" and s.image is None and s.args == () and s.timeout == 300
    assert s.guest.cmdline == ("oops=panic", "panic_on_warn=1") and s.syzkaller.filesystems == ("reiserfs",)
    env = s.environment
    assert env.timeout_is_normal_end and env.workdir == "/tmp/harness-syz" and env.cmdline == s.guest.cmdline[::-1]
    assert env.setup_lines()[-1] == "step environment 0 harness_syz_setup || exit 0"
    x = adhoc.spec_for_file(SHARED / "06-xfs-xlog-cksum-oob.c", fs="ext4")
    assert x.image.fs == "ext4" and x.timeout == 120 and x.mode == "syzkaller"
