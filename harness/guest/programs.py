"""What a reproducer may call through ``system()``, and what to say when a guest has no such program.

Published reproducers make and check their own filesystems (``system("mkfs.ext4
-F /dev/loop0")``), attach loop devices, mount, and use the usual coreutils.  The
vng and vng-ssh guests run the host's own root, so they have whatever the host
has; the snapshot guest's root is an initramfs holding only what
``harness.guest.snapshot.initramfs`` copies in: ``REPRODUCER_PROGRAMS`` (and
``DATA_FILES``, what those programs read) are part of it.  A program a guest
lacks shows in the run's output as the shell's ``not found``; ``explain_missing``
turns that into a sentence naming the program and the backends that have it,
which the verdict gives as the reason the reproducer stopped by itself.
"""

from __future__ import annotations

import re
import shutil

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# mkfs and fsck for ext2/3/4 and XFS, and the tools that tune, inspect and repair them
FS_TOOLS = (
    "mkfs", "mke2fs", "mkfs.ext2", "mkfs.ext3", "mkfs.ext4", "mkfs.xfs", "fsck", "e2fsck", "fsck.ext2", "fsck.ext3",
    "fsck.ext4", "fsck.xfs", "xfs_repair", "xfs_db", "xfs_io", "xfs_admin", "xfs_growfs", "xfs_info", "tune2fs",
    "dumpe2fs", "debugfs", "resize2fs", "e2label", "blkid", "blockdev", "wipefs", "filefrag", "chattr", "lsattr",
    "fstrim",
)
MOUNT_TOOLS = ("mount", "umount", "losetup", "mountpoint", "findmnt", "mkswap", "swapon", "swapoff")
COREUTILS = (
    "sh", "bash", "cat", "cp", "mv", "rm", "rmdir", "ln", "mkdir", "mknod", "touch", "chmod", "chown", "chgrp", "ls",
    "stat", "readlink", "realpath", "basename", "dirname", "mktemp", "dd", "truncate", "fallocate", "sync", "sleep",
    "timeout", "nohup", "nice", "env", "echo", "printf", "test", "true", "false", "yes", "seq", "expr", "head", "tail",
    "cut", "tr", "wc", "sort", "tee", "grep", "sed", "awk", "find", "xargs", "od", "hexdump", "cmp", "diff", "md5sum",
    "sha256sum", "df", "du", "id", "uname", "date", "kill", "pkill", "pgrep", "ps", "sysctl", "dmesg", "unshare",
    "nsenter", "flock", "chroot",
)
REPRODUCER_PROGRAMS = tuple(dict.fromkeys((*FS_TOOLS, *MOUNT_TOOLS, *COREUTILS)))
# mke2fs's profile: without it mke2fs falls back to its built-in defaults, not the features the host's
# mkfs.ext4 makes (what a reproducer written on that host expects)
DATA_FILES = ("/etc/mke2fs.conf",)

# dash "sh: 1: mkfs.ext4: not found", bash "sh: line 1: mkfs.ext4: command not found", busybox "sh: x: not found"
_NOT_FOUND = re.compile(
    r"^(?:\S*/)?(?:sh|bash|dash|ash|busybox)(?:: line \d+|: \d+)?: ([\w.+-]+): (?:command )?not found$", re.MULTILINE)


def not_found(text: str) -> list[str]:
    """The programs a shell in ``text`` (a run's output) said it could not find, each once, in order."""
    return list(dict.fromkeys(m.group(1) for m in _NOT_FOUND.finditer(text)))


def explain_missing(text: str, which=shutil.which) -> str | None:
    """Why a run failed when its shell could not find a program: which one, and which backends have it."""
    names = not_found(text)
    if not names:
        return None
    parts = []
    for name in names:
        host = which(name, path=HOST_PATH)
        if host and name in REPRODUCER_PROGRAMS:  # every guest built from this host has it: an ssh target's does not
            parts.append(f"the guest has no {name} on its PATH; the host has it ({host}) and the vng, vng-ssh and "
                         "snapshot guests take it from there: run with --backend vng or snapshot")
        elif host:
            parts.append(f"the guest has no {name} on its PATH; the host has it ({host}), so the vng and vng-ssh "
                         "guests (the host's root) have it: run with --backend vng; the snapshot guest carries only "
                         "what harness/guest/programs.py lists: add it to REPRODUCER_PROGRAMS there")
        else:
            parts.append(f"neither the guest nor the host has {name}: install it on the host (every backend's "
                         "guest takes its programs from the host)")
    return "; ".join(parts)
