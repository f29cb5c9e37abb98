"""Debian's prebuilt kernel images: apt-get download + dpkg-deb -x, no install.

Names: ``debian:6.1.0-47`` (linux-image-6.1.0-47-amd64), ``debian:6.12.117``
(linux-image-6.12.117+deb12-amd64), and ``debian:6.1`` / ``debian:6.12`` for
the newest of a series the configured apt sources offer.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from filelock import FileLock

from harness import proc
from harness.errors import KernelError, UnknownName
from harness.kernels import pvh
from harness.kernels.kernel import SOURCES, Kernel
from harness.paths import cache_dir

log = logging.getLogger(__name__)
_PKG_RE = re.compile(r"^linux-image-(6\.1\.0-\d+|6\.12\.\d+\+deb12)-amd64$")
_NAME_RE = re.compile(r"^(6\.1\.0-\d+|6\.12\.\d+)$")


def package_for(rest: str) -> str:
    """``6.1.0-47`` -> linux-image-6.1.0-47-amd64; ``6.12.117`` -> ...+deb12-amd64."""
    if not _NAME_RE.match(rest):
        raise UnknownName(
            f"Unknown Debian kernel {rest!r}: use a name like debian:6.1.0-47, debian:6.12.117, "
            "debian:6.1 or debian:6.12 (`harness kernels` lists them)"
        )
    if rest.startswith("6.1.0-"):
        return f"linux-image-{rest}-amd64"
    return f"linux-image-{rest}+deb12-amd64"


def name_for(package: str) -> str:
    m = _PKG_RE.match(package)
    assert m, package
    return "debian:" + m.group(1).removesuffix("+deb12")


def apt_download(spec: str, tmpdir: Path, progress=None) -> Path:
    """``apt-get download SPEC`` (a package, or package=version) into tmpdir; the .deb."""
    if shutil.which("apt-get") is None:
        raise KernelError(f"apt-get is not available: {spec} needs a Debian host")
    if progress:
        progress(f"downloading {spec}")
    tmpdir.chmod(0o755)  # let apt's _apt user write the download
    done = proc.run(["apt-get", "download", spec], cwd=tmpdir, check=False, capture=True)
    debs = list(tmpdir.glob("*.deb"))
    if not done.ok or not debs:
        tail = done.output.strip().splitlines()[-1] if done.output.strip() else "no output"
        raise KernelError(f"apt-get download {spec} failed: {tail}", hint="check `harness kernels`; run `apt-get update`")
    if progress:
        progress(f"unpacking {debs[0].name}")
    return debs[0]


def version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


class DebianImage:
    kind = "debian"
    help = "Debian's prebuilt linux-image packages (6.1.0-NN, 6.12.NNN), fetched with apt"

    def available(self) -> list[str]:
        names = self._listed()
        if not names and os.geteuid() == 0:  # a fresh machine: no package lists yet
            proc.run(["apt-get", "update"], check=False, env={"DEBIAN_FRONTEND": "noninteractive"})
            names = self._listed()
        return sorted(names, key=version_key)

    @staticmethod
    def _listed() -> set[str]:
        done = proc.run(["apt-cache", "pkgnames", "linux-image-6."], capture=True, check=False)
        return {name_for(p) for p in done.output.split() if _PKG_RE.match(p)}

    def _latest(self, series: str) -> str:
        prefix = "debian:6.1.0-" if series == "6.1" else "debian:6.12."
        names = [n for n in self.available() if n.startswith(prefix)]
        if not names:
            raise UnknownName(
                f"No Debian {series} kernel images in the apt sources (run `apt-get update`; `harness kernels` lists them)"
            )
        return names[-1].removeprefix("debian:")

    def resolve(self, rest: str, *, progress=None) -> Kernel:
        if rest in ("6.1", "6.12"):
            rest = self._latest(rest)
        package = package_for(rest)
        dest = cache_dir("kernels", "debian", rest)
        with FileLock(str(dest) + ".lock"):
            if not (dest / ".complete").exists():
                self._fetch(package, dest, progress)
            kernel = self._record(rest, dest)
            if pvh.enabled():
                if progress and not pvh.pvh_path(kernel.image).exists():
                    progress(f"unpacking {kernel.image.name} for direct PVH boot")
                try:
                    kernel = replace(kernel, boot_image=pvh.ensure_pvh(kernel.image))
                except KernelError as exc:  # the bzImage still boots, only slower
                    log.warning("%s: no direct PVH boot (%s)", kernel.name, exc)
        return kernel

    def _fetch(self, package: str, dest: Path, progress) -> None:
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            tmpdir = Path(tmp)
            deb = apt_download(package, tmpdir, progress)
            version = proc.run(["dpkg-deb", "-f", deb, "Version"], capture=True).output.strip()
            root = tmpdir / "root"
            proc.run(["dpkg-deb", "-x", deb, root])
            release = next((root / "lib" / "modules").iterdir()).name
            proc.run(["depmod", "-a", "-b", root, release], check=False)
            (root / "DEBIAN-VERSION").write_text(version + "\n")
            if dest.exists():
                shutil.rmtree(dest)
            root.rename(dest)
        (dest / ".complete").write_text(package + "\n")

    def _record(self, rest: str, dest: Path) -> Kernel:
        boot = dest / "boot"
        image = next(boot.glob("vmlinuz-*"), None)
        if image is None:
            raise KernelError(f"{dest} has no boot/vmlinuz-*: remove it and fetch again")
        release = image.name.removeprefix("vmlinuz-")
        deb_version = (dest / "DEBIAN-VERSION").read_text().strip()
        upstream = re.sub(r"-[^-]*$", "", deb_version)  # 6.1.170-3 -> 6.1.170
        return Kernel(
            name=f"debian:{rest}",
            release=release,
            version=upstream,
            image=image,
            root=dest,
            system_map=boot / f"System.map-{release}",
            config=boot / f"config-{release}",
            kind=self.kind,
            extra={"debian_version": deb_version},
        )


SOURCES.add("debian", DebianImage())
