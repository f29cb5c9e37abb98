"""What reproducers call through system() is in every guest (harness.guest.programs, the snapshot initramfs),
and a program a guest lacks is named, with the backends that have it, as the reason the run failed."""

import os

from harness.guest import programs
from harness.guest.protocol import GuestOutput
from harness.guest.snapshot import initramfs
from harness.verdict import Evidence, Outcome, judge

# what issue 28 lists: mkfs/fsck for the three filesystems, mount/umount, losetup, the usual coreutils
ASKED = ("mkfs.ext2", "mkfs.ext3", "mkfs.ext4", "mke2fs", "mkfs.xfs", "fsck", "fsck.ext2", "fsck.ext3", "fsck.ext4",
         "e2fsck", "fsck.xfs", "xfs_repair", "mount", "umount", "losetup", "cp", "mv", "rm", "ln", "mkdir", "touch",
         "dd", "cat", "sh", "sync", "truncate", "chmod", "mktemp", "sha256sum")


def test_the_snapshot_guest_carries_what_reproducers_call():
    for name in ASKED:
        assert name in programs.REPRODUCER_PROGRAMS, name
        assert name in initramfs.PROGRAMS, name
    assert len(initramfs.PROGRAMS) == len(set(initramfs.PROGRAMS))  # each once
    assert "/usr/sbin/sshd" in initramfs.PROGRAMS and "modprobe" in initramfs.PROGRAMS  # the harness's own stay


def test_this_host_has_them_so_the_initramfs_gets_them():
    """The initramfs copies the host's programs: every one asked for is found on a host set up by harness setup."""
    found, missing = initramfs.program_paths([n for n in ASKED if n not in ("sh",)])
    assert not missing, missing
    assert all(os.path.isabs(p) for p in found)


def test_data_files_only_those_the_host_has(tmp_path):
    present = tmp_path / "mke2fs.conf"
    present.write_text("[defaults]\n")
    assert initramfs.data_files((str(present), str(tmp_path / "absent.conf"))) == [str(present)]
    assert "/etc/mke2fs.conf" in programs.DATA_FILES


def test_initramfs_digest_follows_the_data_files(tmp_path, monkeypatch):
    conf = tmp_path / "mke2fs.conf"
    conf.write_text("[defaults]\n")
    monkeypatch.setattr(initramfs, "DATA_FILES", (str(conf),))
    k = initramfs.Kernel(name="k", release="6.1.0", version="6.1.0", image=tmp_path / "vmlinuz", root=None)
    before = initramfs.inputs_digest(k, (), lambda progs: [])
    conf.write_text("[defaults]\n\tinode_size = 128\n")
    os.utime(conf, ns=(1, 1))
    assert initramfs.inputs_digest(k, (), lambda progs: []) != before


def test_not_found_reads_dash_bash_and_busybox():
    out = ("formatting\nsh: 1: mkfs.ext4: not found\nsh: line 1: xfs_io: command not found\n"
           "/bin/sh: 2: mkfs.ext4: not found\nbusybox: losetup: not found\nmount: /mnt: special device not found\n"
           "modprobe: FATAL: Module xfs not found in directory /lib/modules/6.1.0\n")
    assert programs.not_found(out) == ["mkfs.ext4", "xfs_io", "losetup"]
    assert programs.not_found("all fine\n") == []


def test_explain_missing_names_the_program_and_the_backends():
    host = {"mkfs.ext4": "/usr/sbin/mkfs.ext4", "mkfs.btrfs": "/usr/sbin/mkfs.btrfs"}

    def which(name, path=None):
        return host.get(name)

    listed = programs.explain_missing("sh: 1: mkfs.ext4: not found\n", which)
    assert "no mkfs.ext4" in listed and "/usr/sbin/mkfs.ext4" in listed and "--backend vng" in listed
    unlisted = programs.explain_missing("sh: 1: mkfs.btrfs: not found\n", which)
    assert "add it to REPRODUCER_PROGRAMS" in unlisted and "vng" in unlisted
    nowhere = programs.explain_missing("sh: 1: mkfs.zfs: not found\n", which)
    assert "neither the guest nor the host has mkfs.zfs: install it on the host" in nowhere
    assert programs.explain_missing("exit 1\n", which) is None


def test_a_run_that_lacked_a_program_says_which():
    out = ("@@harness guest up 20.1 kernel 6.1.192\n"
           + "".join(f"@@harness step {s} begin 1.0\n@@harness step {s} end 0 2.0\n"
                     for s in ("setup", "device", "mount", "compile"))
           + "@@harness step run begin 3.0\nsh: 1: mkfs.ext4: not found\nmkfs failed\n@@harness step run end 1 4.0\n"
           + "@@harness done\n")
    v = judge(Evidence(console="", output=out, steps=GuestOutput.parse(out).steps))
    assert v.outcome is Outcome.INFRA_ERROR
    assert "the reproducer stopped by itself, the guest has no mkfs.ext4 on its PATH" in v.detail
    assert "mkfs failed" in v.detail
