"""Host prerequisites: which programs the harness needs, and their Debian packages."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
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
TEST_PACKAGES = ("chromium", "rsync")  # rsync: gitlab-ci-local copies the checkout into each job with it
# The exported GitLab pipeline's end-to-end test runs it with gitlab-ci-local (shell executor):
# (program, npm package), installed with `npm install -g` after the apt packages.  4.65.1: the last release
# whose package says which Node it needs (>= 18, bookworm's); later ones use Node 22's Set methods.
TEST_NPM = (("gitlab-ci-local", "gitlab-ci-local@4.65.1"),)
# Kernel builds from source need these too.
BUILD_PACKAGES = ("make", "flex", "bison", "bc", "libelf-dev", "libssl-dev", "ccache", "cpio", "xz-utils", "patch", "git")
# fstests: its README's "Ubuntu or Debian" list (bookworm names) plus xfslibs-dev, minus
# linux-headers-$(uname -r) (the guests run other kernels; the build does not use them) and
# the tools of filesystems the harness does not test (exfat, f2fs, ocfs2, udf).
# Building it (`make` runs autoconf/libtool over the tree):
FSTESTS_BUILD_PACKAGES = (
    "automake", "libtool", "libtool-bin", "make", "gcc", "gawk", "git", "libacl1-dev", "libaio-dev",
    "libcap-dev", "libgdbm-dev", "libgdbm-compat-dev", "liburing-dev", "uuid-dev", "xfslibs-dev",
)
# What ./check and the tests call, in a vng guest that runs the host's own programs
# (common/config: perl, awk, sed, bc, xfs_io are fatal when absent; the rest make tests notrun).
FSTESTS_RUN_PACKAGES = (
    "acl", "attr", "bc", "dbench", "dump", "e2fsprogs", "fio", "indent", "lvm2", "psmisc", "python3",
    "quota", "sed", "sqlite3", "uuid-runtime", "xfsprogs", "xfsdump", "perl",
)


def missing(build: bool = False, test: bool = False, fstests: bool = False) -> list[str]:
    """Debian packages to install for what is absent (``test`` implies ``fstests``: CI runs fstests)."""
    pkgs = [n.package for n in NEEDS if shutil.which(n.program) is None]
    if not os.path.exists(HEADERS[0]):
        pkgs.append(HEADERS[1])
    wanted: list[str] = []
    if build:
        wanted += BUILD_PACKAGES
    if test:
        wanted += TEST_PACKAGES
        if shutil.which("npm") is None:  # node may come from elsewhere (nodesource): the program decides
            pkgs.append("npm")
    if fstests or test:
        wanted += [*FSTESTS_BUILD_PACKAGES, *FSTESTS_RUN_PACKAGES]
    versions = package_versions(wanted)
    pkgs += [p for p in wanted if p not in versions]
    return list(dict.fromkeys(pkgs))


def package_versions(packages: Sequence[str]) -> dict[str, str]:
    """The installed version of each of ``packages`` that is installed (one dpkg-query call)."""
    if not packages:
        return {}
    argv = ["dpkg-query", "-W", "-f=${Package}\t${Status}\t${Version}\n", *dict.fromkeys(packages)]
    try:
        done = proc.run(argv, capture=True, check=False)
    except MissingTool:  # not a Debian host: nothing is known installed
        return {}
    versions = {}
    for line in done.output.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[1] == "install ok installed":
            versions[fields[0]] = fields[2]
    return versions


def missing_npm(test: bool = False) -> list[str]:
    """npm packages to install for what is absent (the test suite's only)."""
    return [pkg for program, pkg in TEST_NPM if not _runs(program)] if test else []


def _runs(program: str) -> bool:
    """``program --version`` works (an npm tool built for a newer Node is there but does not run)."""
    if shutil.which(program) is None:
        return False
    return proc.run([program, "--version"], capture=True, check=False).ok


def ensure(build: bool = False, install: bool = True, test: bool = False, fstests: bool = False) -> list[str]:
    """Install what is missing (as root, with apt, then npm); return what was installed."""
    pkgs = missing(build, test, fstests)
    npm = missing_npm(test)
    if not pkgs and not npm:
        return []
    if not pkgs:
        return _npm_install(npm, install)
    command = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
    if not install or os.geteuid() != 0:
        raise MissingTool(
            f"missing host packages: {', '.join(pkgs)}", hint=f"run as root: apt-get update && {' '.join(command)}"
        )
    proc.run(["apt-get", "update"], env={"DEBIAN_FRONTEND": "noninteractive"}, what="apt-get update")
    proc.run(command, env={"DEBIAN_FRONTEND": "noninteractive"}, what="apt-get install")
    return pkgs + (_npm_install(npm, install) if npm else [])


def _npm_install(pkgs: list[str], install: bool) -> list[str]:
    command = ["npm", "install", "-g", "--no-fund", "--no-audit", *pkgs]
    if not install or os.geteuid() != 0:
        raise MissingTool(f"missing npm packages: {', '.join(pkgs)}", hint=f"run as root: {' '.join(command)}")
    proc.run(command, what="npm install")
    return pkgs
