"""Host prerequisites: which programs the harness needs, and their Debian packages."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from harness import proc
from harness.errors import MissingTool


@dataclass(frozen=True)
class Need:
    program: str
    package: str
    why: str


NEEDS: tuple[Need, ...] = (
    Need("qemu-system-x86_64", "qemu-system-x86", "runs the guests"),
    Need("udevadm", "udev", "virtme-ng's guest init finds its output ports through udev"),
    Need("busybox", "busybox-static", "virtme-ng's initramfs for modular kernels"),
    Need("mke2fs", "e2fsprogs", "ext2/ext4 images and e2fsck in the guest"),
    Need("debugfs", "e2fsprogs", "offline image tweaks"),
    Need("mkfs.xfs", "xfsprogs", "XFS images and xfs_repair in the guest"),
    Need("gcc", "gcc", "compiles reproducers inside the guest"),
    Need("depmod", "kmod", "module indexes for Debian kernel images"),
    Need("dpkg-deb", "dpkg", "unpacks Debian kernel packages"),
    Need("/usr/sbin/sshd", "openssh-server", "sshd for vng-ssh guests"),
    Need("ssh-keygen", "openssh-client", "throwaway SSH keys"),
    Need("zstd", "zstd", "unpacks zstd-compressed kernels (Debian 6.12) for direct PVH boot"),
)
HEADERS = ("/usr/include/stdio.h", "libc6-dev", "C headers for the reproducers")
# The matrix page's screenshot test renders it in a real browser.
TEST_PACKAGES = ("chromium",)
# Kernel builds from source need these too.
BUILD_PACKAGES = ("make", "flex", "bison", "bc", "libelf-dev", "libssl-dev", "ccache", "cpio", "xz-utils", "patch", "git")


def missing(build: bool = False, test: bool = False) -> list[str]:
    """Debian packages to install for what is absent."""
    pkgs = [n.package for n in NEEDS if shutil.which(n.program) is None]
    if not os.path.exists(HEADERS[0]):
        pkgs.append(HEADERS[1])
    if build:
        pkgs += [p for p in BUILD_PACKAGES if not _installed(p)]
    if test:
        pkgs += [p for p in TEST_PACKAGES if not _installed(p)]
    return list(dict.fromkeys(pkgs))


def _installed(package: str) -> bool:
    done = proc.run(["dpkg-query", "-W", "-f=${Status}", package], capture=True, check=False)
    return done.ok and "install ok installed" in done.output


def ensure(build: bool = False, install: bool = True, test: bool = False) -> list[str]:
    """Install what is missing (as root, with apt); return what was installed."""
    pkgs = missing(build, test)
    if not pkgs:
        return []
    command = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
    if not install or os.geteuid() != 0:
        raise MissingTool(
            f"missing host packages: {', '.join(pkgs)}", hint=f"run as root: apt-get update && {' '.join(command)}"
        )
    proc.run(["apt-get", "update"], env={"DEBIAN_FRONTEND": "noninteractive"}, what="apt-get update")
    proc.run(command, env={"DEBIAN_FRONTEND": "noninteractive"}, what="apt-get install")
    return pkgs
