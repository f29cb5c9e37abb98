"""Golden files for everything the guest side generates: steps scripts, wrapper, boot scripts, command lines.

HARNESS_GOLDEN=1 rewrites tests/golden/guest/*; otherwise each render must match its file byte for byte,
and each script must be valid bash.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from harness.guest.machine import Disk, GuestRequest
from harness.guest.protocol import GuestPlan, LoopImage, SpareDisk, VirtioDisk, script, wrapper
from harness.guest.snapshot.initramfs import BOOT_MODULES, init_script
from harness.guest.snapshot.machine import qemu_argv
from harness.guest.ssh import Keys
from harness.guest.vng import boot_for, vng_argv
from harness.guest.vngssh import boot_script, session_boot
from harness.kernels import Kernel
from harness.repro import faults

KERNEL = Kernel("debian:6.1.0-57", "6.1.0-57-amd64", "6.1.192", Path("/cache/k/boot/vmlinuz-6.1.0-57-amd64"),
                boot_image=Path("/cache/k/boot/vmlinux-6.1.0-57-amd64"))
RUN = Path("/results/20261203-120000-ext4_inline-debian_6.1.0-57/run-01")
PLAN = GuestPlan(
    title="ext4_inline", fs_type="ext4", mount_options="errors=continue", source=str(RUN / "repro.c"),
    cflags=("-O2", "-Wall", "-pthread"), args=("{mnt}", "-t", "20", "-w", "sendfile"), run_timeout=60,
    check_argv=("e2fsck", "-fn", "{dev}"), sysctls=(("kernel.hung_task_timeout_secs", "20"),),
    prebuilt=str(RUN / "repro.bin"), binary_out=str(RUN / "repro.bin"),
)
FAULTS = faults.parse({"fail_usercopy": {"probability": 100, "interval": 1, "times": -1}, "tasks": ["writer*"]}, "t")
REQ = GuestRequest(kernel=KERNEL, plan=PLAN, run_dir=RUN, accel="tcg", cmdline=("oops=panic",),
                   disks=(Disk(RUN / "disk.img", "harness-img0"),), preload=("fs-ext4",))

SCRIPTS = {
    "steps-virtio.sh": lambda: script(PLAN, VirtioDisk("harness-img0")),
    "steps-loop-staged.sh": lambda: script(PLAN, LoopImage(str(RUN / "disk.img"), stage="/run/harness-ssh/run-01-x/img")),
    "steps-spare-disk.sh": lambda: script(PLAN, SpareDisk("/dev/disk/by-id/ata-SPARE", "/var/tmp/h/runs/t/disk.img")),
    "steps-no-image.sh": lambda: script(replace(PLAN, image=False, check_argv=None, workdir="/tmp/syz-work"), None),
    "steps-compile-only.sh": lambda: script(replace(PLAN, compile_only=True, prebuilt=None), None),
    "steps-faults.sh": lambda: script(replace(PLAN, pre_run=faults.setup_lines(FAULTS),
                                              post_run=faults.teardown_lines(FAULTS)), VirtioDisk("harness-img0")),
    "wrapper.sh": lambda: wrapper("run-01-0123abcd", str(RUN / "guest.sh"), "/run/harness-ssh/run-01-0123abcd/steps.sid",
                                  cwd="/run/harness-ssh/run-01-0123abcd"),
    "wrapper-target.sh": lambda: wrapper("run-01-0123abcd", "/var/tmp/h/runs/t/guest.sh", "/var/tmp/h/runs/t/steps.sid",
                                         cwd="/var/tmp/h/runs/t", console_level=False),
    "ssh-boot.sh": lambda: boot_script(Keys(Path("/tmp/harness-ssh-k"), Path("/tmp/harness-ssh-k/client"),
                                            Path("/tmp/harness-ssh-k/guest_host_key")), ("fs-ext4",)),
    "snapshot-init.sh": lambda: init_script(BOOT_MODULES, ("fs-ext4",)),
}

ARGVS = {
    "vng.argv": lambda: vng_argv(boot_for(REQ, ("bash", str(RUN / "guest.sh"))), "/venv/bin/vng"),
    "vng-ssh-boot.argv": lambda: vng_argv(session_boot(REQ, ("bash", "/results/x/guest/boot-01/boot.sh"), 40123,
                                                       Path("/results/x/guest/boot-01")), "/venv/bin/vng"),
    "snapshot-save.argv": lambda: qemu_argv(REQ, initrd=Path("/results/x/guest/snapshot-01/initramfs.cpio"),
                                            console=Path("/results/x/guest/snapshot-01/console.log"),
                                            qmp=Path("/tmp/harness-snap-k/qmp-1.sock"), port=40124,
                                            disk=Path("/results/x/guest/snapshot-01/disk.img")),
    "snapshot-restore.argv": lambda: qemu_argv(REQ, initrd=Path("/results/x/guest/snapshot-01/initramfs.cpio"),
                                               console=RUN / "console.log", qmp=Path("/tmp/harness-snap-k/qmp-2.sock"),
                                               port=40125, disk=RUN / "disk.img", incoming=True),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts(name, golden):
    text = SCRIPTS[name]()
    golden(f"guest/{name}", text)
    done = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", sorted(ARGVS))
def test_command_lines(name, golden):
    golden(f"guest/{name}", " \\\n  ".join(shlex.quote(a) for a in ARGVS[name]()) + "\n")
