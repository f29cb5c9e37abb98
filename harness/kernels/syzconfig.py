"""A syzbot kernel ``.config`` -> the kconfig fragment that matters for one reproducer.

syzbot attaches the ``.config`` of the kernel a report came from.  Building
that whole config takes hours; what changes a reproducer's outcome is small:
the filesystems it mounts, the loop driver its images go through, and the
detectors that turn a silent bug into a report (KASAN, KCSAN, lockdep,
UBSAN) or that the reproducer drives itself (fault injection).
``extract`` picks those options out of the syzbot config, as a fragment to
apply on top of the ``lean`` base (``kconfigs/README.md``):

- every option of each filesystem's family (``EXT4_*``, ``XFS_*``...) that
  the syzbot config sets, tests (``*KUNIT*``, ``*_TEST*``) left out;
- ``BLK_DEV_LOOP``;
- the KASAN / KCSAN / lockdep / UBSAN / fault-injection families it sets
  (with ``DEBUG_KERNEL`` when one of them needs it).

``=m`` becomes ``=y``: the lean base has no modules.  The head option of
each group (``EXT4_FS``, ``KASAN``...) is required; the rest are marked
``# optional`` (a sub-option the source tree lacks is not a warning).
``lacking`` says which of the head options a given kernel config (a
Debian image's) does not have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.kernels import kconfig
from harness.paths import cache_dir


@dataclass(frozen=True)
class FsOptions:
    """How one filesystem type shows in a kernel config."""

    head: str  # the option that registers the type ("EXT4_FS")
    prefixes: tuple[str, ...]  # option families that belong to it
    alternatives: tuple[str, ...] = ()  # other options that also register the type


def _fs(head: str, *prefixes: str, alt: tuple[str, ...] = ()) -> FsOptions:
    return FsOptions(head, prefixes, alt)


# mount(2) type -> its options.  Types not listed fall back to <TYPE>_FS.
FILESYSTEMS: dict[str, FsOptions] = {
    "ext2": _fs("EXT2_FS", "EXT2_", "EXT4_USE_FOR_EXT2", "EXT4_FS", alt=("EXT4_USE_FOR_EXT2",)),
    "ext3": _fs("EXT4_FS", "EXT4_", "EXT3_", alt=("EXT3_FS",)),
    "ext4": _fs("EXT4_FS", "EXT4_"),
    "xfs": _fs("XFS_FS", "XFS_"),
    "btrfs": _fs("BTRFS_FS", "BTRFS_"),
    "reiserfs": _fs("REISERFS_FS", "REISERFS_"),
    "ocfs2": _fs("OCFS2_FS", "OCFS2_"),
    "ntfs3": _fs("NTFS3_FS", "NTFS3_"),
    "ntfs": _fs("NTFS_FS", "NTFS_", "NTFS3_", alt=("NTFS3_FS",)),
    "jfs": _fs("JFS_FS", "JFS_"),
    "f2fs": _fs("F2FS_FS", "F2FS_"),
    "gfs2": _fs("GFS2_FS", "GFS2_"),
    "gfs2meta": _fs("GFS2_FS", "GFS2_"),
    "nilfs2": _fs("NILFS2_FS", "NILFS2_"),
    "hfs": _fs("HFS_FS", "HFS_"),
    "hfsplus": _fs("HFSPLUS_FS", "HFSPLUS_"),
    "vfat": _fs("VFAT_FS", "VFAT_", "FAT_"),
    "msdos": _fs("MSDOS_FS", "MSDOS_", "FAT_"),
    "exfat": _fs("EXFAT_FS", "EXFAT_"),
    "udf": _fs("UDF_FS", "UDF_"),
    "iso9660": _fs("ISO9660_FS", "ISO9660_", "JOLIET", "ZISOFS"),
    "squashfs": _fs("SQUASHFS", "SQUASHFS"),
    "erofs": _fs("EROFS_FS", "EROFS_"),
    "cramfs": _fs("CRAMFS", "CRAMFS"),
    "romfs": _fs("ROMFS_FS", "ROMFS_"),
    "minix": _fs("MINIX_FS", "MINIX_FS"),
    "qnx4": _fs("QNX4FS_FS", "QNX4FS_"),
    "qnx6": _fs("QNX6FS_FS", "QNX6FS_"),
    "sysv": _fs("SYSV_FS", "SYSV_"),
    "ufs": _fs("UFS_FS", "UFS_"),
    "jffs2": _fs("JFFS2_FS", "JFFS2_"),
    "bcachefs": _fs("BCACHEFS_FS", "BCACHEFS_"),
    "zonefs": _fs("ZONEFS_FS", "ZONEFS_"),
    "fuse": _fs("FUSE_FS", "FUSE_"),
    "fuseblk": _fs("FUSE_FS", "FUSE_"),
}

# Detector and fault-injection groups: (name, head options (one is enough), families).
DETECTORS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("KASAN", ("KASAN",), ("KASAN",)),
    ("KCSAN", ("KCSAN",), ("KCSAN",)),
    ("lockdep", ("PROVE_LOCKING", "DEBUG_LOCK_ALLOC"), ("PROVE_LOCKING", "PROVE_RCU", "LOCKDEP", "DEBUG_LOCKDEP",
                                                        "DEBUG_LOCK_ALLOC")),
    ("UBSAN", ("UBSAN",), ("UBSAN",)),
    ("fault injection", ("FAULT_INJECTION",), ("FAULT_INJECTION", "FAILSLAB", "FAIL_PAGE_ALLOC", "FAIL_MAKE_REQUEST",
                                               "FAIL_FUTEX", "FAIL_IO_TIMEOUT")),
)
NEED_DEBUG_KERNEL = ("KCSAN", "lockdep", "fault injection")
# Boot options of syzbot's CONFIG_CMDLINE that change what a run reports.
CMDLINE_KEYS = ("panic_on_warn", "oops", "panic_on_oops", "kasan", "kasan_multi_shot", "kasan.fault", "kfence.sample_interval")

_SKIP_RE = re.compile(r"KUNIT|_TESTS?$|_TEST_|SELFTEST|SANITY_TESTS|_SUPPORT$|_HAS_|^CONFIG_(HAVE|ARCH|CC|AS|LD)_|"
                      r"KASAN_SHADOW_OFFSET")
_VERSION_RE = re.compile(r"^#\s*Linux/\S+\s+(\d+\.\d+(?:\.\d+)?)\S*\s+Kernel Configuration", re.M)


def fs_options(fs: str) -> FsOptions:
    return FILESYSTEMS.get(fs) or FsOptions(f"{fs.upper()}_FS", (f"{fs.upper()}_",))


@dataclass(frozen=True)
class Group:
    """Options of one concern, as they go into the fragment."""

    name: str  # "ext4", "loop", "KASAN"...
    heads: tuple[str, ...]  # required options (CONFIG_ names)
    options: tuple[tuple[str, str], ...]  # (CONFIG_X, value) in the syzbot config's order


@dataclass(frozen=True)
class SyzConfig:
    """What ``extract`` found."""

    groups: tuple[Group, ...]
    version: str | None = None  # the kernel version the config was made for ("6.1.45")
    cmdline: tuple[str, ...] = ()  # boot options of its CONFIG_CMDLINE that matter
    absent: tuple[str, ...] = ()  # filesystems the reproducer mounts that the config does not enable
    notes: tuple[str, ...] = ()

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(h for g in self.groups for h in g.heads)

    @property
    def options(self) -> dict[str, str]:
        return {k: v for g in self.groups for k, v in g.options}

    def group(self, name: str) -> Group | None:
        return next((g for g in self.groups if g.name == name), None)

    def render(self, origin: str = "") -> str:
        """The fragment file: a header, then each group's options (sub-options ``# optional``)."""
        lines = [
            f"# syzbot: the options that matter for this reproducer, taken from {origin or 'a syzbot .config'}",
            f"# (kernel {self.version or 'version unknown'}; harness/kernels/syzconfig.py).  Applied on top of",
            "# `lean`; =m became =y (the lean base has no modules).",
        ]
        lines += [f"# note: {n}" for n in self.notes]
        for g in self.groups:
            lines.append(f"# --- {g.name}")
            for key, value in g.options:
                text = f"# {key} is not set" if value == "n" else f"{key}={value}"
                lines.append(text if key in g.heads else f"{text}  # optional: from syzbot's config")
        return "\n".join(lines) + "\n"


def _family(config: dict[str, str], prefixes: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for key, value in config.items():
        name = key.removeprefix("CONFIG_")
        if any(name.startswith(p) for p in prefixes) and not _SKIP_RE.search(key):
            out.append((key, "y" if value == "m" else value))
    return out


def _enabled(config: dict[str, str], option: str) -> bool:
    return config.get(f"CONFIG_{option}", "n") in ("y", "m")


def _fs_group(config: dict[str, str], fs: str) -> Group | None:
    spec = fs_options(fs)
    heads = [o for o in (spec.head, *spec.alternatives) if _enabled(config, o)]
    if not heads:
        return None
    return Group(fs, (f"CONFIG_{heads[0]}",), tuple(_family(config, spec.prefixes)))


def _detector_groups(config: dict[str, str]) -> list[Group]:
    groups = []
    for name, heads, prefixes in DETECTORS:
        on = [h for h in heads if _enabled(config, h)]
        if on:
            groups.append(Group(name, (f"CONFIG_{on[0]}",), tuple(_family(config, prefixes))))
    if any(g.name in NEED_DEBUG_KERNEL for g in groups) and _enabled(config, "DEBUG_KERNEL"):
        groups.insert(0, Group("debug base", ("CONFIG_DEBUG_KERNEL",), (("CONFIG_DEBUG_KERNEL", "y"),)))
    return groups


def cmdline_options(config: dict[str, str]) -> tuple[str, ...]:
    """The boot options of CONFIG_CMDLINE that change a run's report (panic_on_warn=1...)."""
    text = config.get("CONFIG_CMDLINE", "").strip('"')
    return tuple(t for t in text.split() if t.split("=", 1)[0] in CMDLINE_KEYS)


def extract(text: str, filesystems: tuple[str, ...] | list[str] = (), *, loop: bool = True) -> SyzConfig:
    """The groups of options in a syzbot ``.config`` (its text) that matter for a reproducer."""
    config = kconfig.parse(text, strict=False)
    groups: list[Group] = []
    absent = []
    for fs in dict.fromkeys(filesystems):
        group = _fs_group(config, fs)
        if group is None:
            absent.append(fs)
        elif not any(g.heads == group.heads for g in groups):  # ext3 and ext4 share EXT4_FS
            groups.append(group)
    if loop and _enabled(config, "BLK_DEV_LOOP"):
        groups.append(Group("loop", ("CONFIG_BLK_DEV_LOOP",), tuple(_family(config, ("BLK_DEV_LOOP",)))))
    groups += _detector_groups(config)
    notes = []
    if _enabled(config, "KMSAN"):
        notes.append("the config has KMSAN (clang only): not carried over")
    if absent:
        notes.append(f"the config does not enable {', '.join(absent)}, which the reproducer mounts")
    m = _VERSION_RE.search(text)
    return SyzConfig(tuple(groups), m.group(1) if m else None, cmdline_options(config), tuple(absent), tuple(notes))


# --- the kernels that lack them ------------------------------------------------------------


def lacking(syz: SyzConfig, config_path: Path) -> tuple[str, ...]:
    """The head options of ``syz`` (CONFIG_ names) that the kernel config at ``config_path`` lacks."""
    config = kconfig.read_config(config_path)
    missing = []
    for group in syz.groups:
        fs = FILESYSTEMS.get(group.name)
        alternatives = [f"CONFIG_{a}" for a in fs.alternatives] if fs else []
        if not any(config.get(h, "n") in ("y", "m") for h in (*group.heads, *alternatives)):
            missing += group.heads
    return tuple(missing)


def debian_configs(root: Path | None = None) -> list[tuple[str, Path]]:
    """(kernel name, config path) of every Debian image in the kernel cache, oldest first."""
    root = root or cache_dir("kernels", "debian")
    found = []
    for path in root.glob("*/boot/config-*"):
        name = path.parent.parent.name
        found.append((f"debian:{name}", path))
    return sorted(found, key=lambda item: tuple(int(x) for x in re.findall(r"\d+", item[0])))


def debian_summary(syz: SyzConfig, configs: list[tuple[str, Path]]) -> list[str]:
    """One line per Debian kernel: which of the needed options it lacks."""
    out = []
    for name, path in configs:
        missing = lacking(syz, path)
        what = f"lacks {', '.join(missing)}" if missing else "has them all (some as modules)"
        out.append(f"{name} {what}")
    return out


def source_for(version: str | None) -> str:
    """The Debian source (``debian-src:...``) nearest to a syzbot config's kernel version."""
    numbers = tuple(int(x) for x in re.findall(r"\d+", version or "")[:2])
    return "debian-src:6.12.117" if numbers >= (6, 7) else "debian-src:6.1.192"
