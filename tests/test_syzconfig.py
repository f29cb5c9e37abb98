"""A syzbot .config -> the kconfig fragment that matters for a reproducer."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from harness.kernels import kconfig, syzconfig

SYZBOT = """\
#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.45 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT="gcc (Debian 12.2.0-14) 12.2.0"
CONFIG_CC_IS_GCC=y
CONFIG_CMDLINE_BOOL=y
CONFIG_CMDLINE="earlyprintk=serial net.ifnames=0 dummy_hcd.num=8 max_loop=16 panic_on_warn=1 kasan.fault=panic"
CONFIG_LOCKDEP_SUPPORT=y
CONFIG_DEBUG_KERNEL=y
CONFIG_BLK_DEV_LOOP=y
CONFIG_BLK_DEV_LOOP_MIN_COUNT=16
CONFIG_EXT4_FS=y
CONFIG_EXT4_USE_FOR_EXT2=y
CONFIG_EXT4_FS_POSIX_ACL=y
# CONFIG_EXT4_DEBUG is not set
CONFIG_EXT4_KUNIT_TESTS=y
# CONFIG_XFS_FS is not set
CONFIG_REISERFS_FS=m
CONFIG_REISERFS_FS_XATTR=y
CONFIG_OCFS2_FS=y
CONFIG_OCFS2_FS_O2CB=y
CONFIG_KASAN_SHADOW_OFFSET=0xdffffc0000000000
CONFIG_KASAN=y
CONFIG_KASAN_GENERIC=y
CONFIG_KASAN_INLINE=y
CONFIG_KASAN_KUNIT_TEST=m
CONFIG_PROVE_LOCKING=y
CONFIG_LOCKDEP=y
CONFIG_LOCKDEP_BITS=20
# CONFIG_KCSAN is not set
CONFIG_UBSAN=y
CONFIG_UBSAN_BOUNDS=y
CONFIG_FAULT_INJECTION=y
CONFIG_FAILSLAB=y
CONFIG_FAIL_PAGE_ALLOC=y
CONFIG_FAULT_INJECTION_DEBUG_FS=y
CONFIG_FAULT_INJECTION_USERCOPY=y
CONFIG_KMSAN=y
"""

DEBIAN = """\
# Linux/x86 6.1.192 Kernel Configuration
CONFIG_BLK_DEV_LOOP=m
CONFIG_EXT4_FS=m
CONFIG_EXT4_USE_FOR_EXT2=y
CONFIG_REISERFS_FS=m
CONFIG_OCFS2_FS=m
CONFIG_DEBUG_KERNEL=y
# CONFIG_KASAN is not set
# CONFIG_PROVE_LOCKING is not set
# CONFIG_UBSAN is not set
# CONFIG_FAULT_INJECTION is not set
"""


def test_extract_groups():
    syz = syzconfig.extract(SYZBOT, ("ext4", "reiserfs", "ext3", "xfs"))
    assert syz.version == "6.1.45"
    assert [g.name for g in syz.groups] == ["ext4", "reiserfs", "loop", "debug base", "KASAN", "lockdep", "UBSAN",
                                            "fault injection"]  # ext3 shares ext4's EXT4_FS
    assert syz.heads == ("CONFIG_EXT4_FS", "CONFIG_REISERFS_FS", "CONFIG_BLK_DEV_LOOP", "CONFIG_DEBUG_KERNEL",
                         "CONFIG_KASAN", "CONFIG_PROVE_LOCKING", "CONFIG_UBSAN", "CONFIG_FAULT_INJECTION")
    options = syz.options
    assert options["CONFIG_REISERFS_FS"] == "y"  # =m: the lean base has no modules
    assert options["CONFIG_EXT4_DEBUG"] == "n" and options["CONFIG_BLK_DEV_LOOP_MIN_COUNT"] == "16"
    for gone in ("CONFIG_EXT4_KUNIT_TESTS", "CONFIG_KASAN_KUNIT_TEST", "CONFIG_KASAN_SHADOW_OFFSET",
                 "CONFIG_LOCKDEP_SUPPORT", "CONFIG_OCFS2_FS", "CONFIG_CC_IS_GCC", "CONFIG_KCSAN", "CONFIG_KMSAN"):
        assert gone not in options, gone
    assert syz.absent == ("xfs",)
    assert syz.cmdline == ("panic_on_warn=1", "kasan.fault=panic")
    assert "the config has KMSAN (clang only): not carried over" in syz.notes
    assert syz.group("fault injection").options == (
        ("CONFIG_FAULT_INJECTION", "y"), ("CONFIG_FAILSLAB", "y"), ("CONFIG_FAIL_PAGE_ALLOC", "y"),
        ("CONFIG_FAULT_INJECTION_DEBUG_FS", "y"), ("CONFIG_FAULT_INJECTION_USERCOPY", "y"))


def test_render_is_a_fragment_with_optional_sub_options(tmp_path):
    syz = syzconfig.extract(SYZBOT, ("ocfs2",))
    text = syz.render("config-syzbot")
    assert text.startswith("# syzbot: the options that matter for this reproducer, taken from config-syzbot\n")
    assert "CONFIG_OCFS2_FS=y\n" in text and "CONFIG_OCFS2_FS_O2CB=y  # optional: from syzbot's config\n" in text
    path = tmp_path / "syzbot.config"
    path.write_text(text)
    merged = kconfig.merge([path])  # strict parse: every line a kconfig line or a comment
    assert merged == syz.options
    optional = kconfig.optional([path])
    assert "CONFIG_OCFS2_FS_O2CB" in optional and "CONFIG_OCFS2_FS" not in optional
    assert "CONFIG_KASAN" not in optional and "CONFIG_KASAN_INLINE" in optional


def test_nothing_set_nothing_extracted():
    syz = syzconfig.extract("CONFIG_EXT4_FS=y\n", ("ext4",), loop=False)
    assert [g.name for g in syz.groups] == ["ext4"] and syz.version is None and syz.cmdline == ()
    bare = syzconfig.extract("", ("btrfs",))
    assert bare.groups == () and bare.absent == ("btrfs",)


def test_ext2_through_ext4():
    syz = syzconfig.extract(SYZBOT, ("ext2",))
    group = syz.group("ext2")
    assert group.heads == ("CONFIG_EXT4_USE_FOR_EXT2",)  # no EXT2_FS: ext4 registers ext2
    assert ("CONFIG_EXT4_FS", "y") in group.options


def test_unknown_fs_falls_back_to_its_name():
    assert syzconfig.fs_options("hfsplus").head == "HFSPLUS_FS"
    assert syzconfig.fs_options("newfs") == syzconfig.FsOptions("NEWFS_FS", ("NEWFS_",))


def test_lacking_and_debian_summary(tmp_path):
    root = tmp_path / "debian"
    for name in ("6.12.117", "6.1.0-47"):
        boot = root / name / "boot"
        boot.mkdir(parents=True)
        (boot / f"config-{name}-amd64").write_text(DEBIAN if name.startswith("6.1.0") else DEBIAN.replace(
            "# CONFIG_KASAN is not set", "CONFIG_KASAN=y").replace("CONFIG_REISERFS_FS=m", "# CONFIG_REISERFS_FS is not set"))
    configs = syzconfig.debian_configs(root)
    assert [n for n, _ in configs] == ["debian:6.1.0-47", "debian:6.12.117"]
    syz = syzconfig.extract(SYZBOT, ("ext4", "reiserfs"))
    assert syzconfig.lacking(syz, configs[0][1]) == ("CONFIG_KASAN", "CONFIG_PROVE_LOCKING", "CONFIG_UBSAN",
                                                    "CONFIG_FAULT_INJECTION")
    assert syzconfig.debian_summary(syz, configs) == [
        "debian:6.1.0-47 lacks CONFIG_KASAN, CONFIG_PROVE_LOCKING, CONFIG_UBSAN, CONFIG_FAULT_INJECTION",
        "debian:6.12.117 lacks CONFIG_REISERFS_FS, CONFIG_PROVE_LOCKING, CONFIG_UBSAN, CONFIG_FAULT_INJECTION",
    ]
    ext2 = syzconfig.extract(SYZBOT, ("ext2",), loop=False)
    assert "CONFIG_EXT4_USE_FOR_EXT2" not in syzconfig.lacking(ext2, configs[0][1])  # Debian's ext2 is ext4's
    no_ext2 = configs[0][1].read_text().replace("CONFIG_EXT4_USE_FOR_EXT2=y", "")
    configs[0][1].write_text(no_ext2)
    assert "CONFIG_EXT4_USE_FOR_EXT2" in syzconfig.lacking(ext2, configs[0][1])


def test_source_for():
    assert syzconfig.source_for("6.1.45") == "debian-src:6.1.192"
    assert syzconfig.source_for("5.15.100") == "debian-src:6.1.192"
    assert syzconfig.source_for("6.12.3") == "debian-src:6.12.117"
    assert syzconfig.source_for("6.16.0-rc1") == "debian-src:6.12.117"
    assert syzconfig.source_for(None) == "debian-src:6.1.192"


REAL_DEBIAN = sorted(Path(platformdirs.user_cache_dir("kernel-repro-harness"), "kernels", "debian").glob(
    "6.1.0-*/boot/config-*"))


@pytest.mark.skipif(not REAL_DEBIAN, reason="no Debian 6.1 kernel in the cache (harness kernels / a debian: run fetches one)")
def test_real_debian_config():
    """Debian 6.1's own config: the filesystems are modules (present), the detectors are off."""
    path = REAL_DEBIAN[-1]
    syz = syzconfig.extract(SYZBOT, ("ext4", "reiserfs", "ocfs2"))
    missing = syzconfig.lacking(syz, path)
    assert "CONFIG_EXT4_FS" not in missing and "CONFIG_REISERFS_FS" not in missing and "CONFIG_OCFS2_FS" not in missing
    assert "CONFIG_BLK_DEV_LOOP" not in missing
    assert {"CONFIG_KASAN", "CONFIG_PROVE_LOCKING", "CONFIG_FAULT_INJECTION"} <= set(missing)
    # Debian's own config read as if it were syzbot's: its modules become built-ins, no detector group
    own = syzconfig.extract(path.read_text(), ("ext4", "xfs"))
    assert own.options["CONFIG_EXT4_FS"] == "y" and own.options["CONFIG_XFS_FS"] == "y"
    assert own.group("KASAN") is None and own.version and own.version.startswith("6.1.")
