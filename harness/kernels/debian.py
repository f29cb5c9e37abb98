"""Debian's prebuilt kernel images: apt-get download + dpkg-deb -x, no install.

Names: ``debian:6.1.0-47`` (linux-image-6.1.0-47-amd64), ``debian:6.12.117``
(linux-image-6.12.117+deb12-amd64), and names that do not go stale as Debian
publishes: ``debian:6.1`` / ``debian:6.12`` for the newest of a series the
configured apt sources offer, ``debian:6.1-oldest`` / ``debian:6.12-oldest``
for the oldest.

An unpacked kernel records its files when it is fetched (``.sha256``: boot/
by sum, the rest by size, harness.kernels.integrity) and is checked on every
use: a damaged one is fetched again, never booted.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection
from filelock import FileLock

import harness.kernels.integrity as integrity
import harness.kernels.pvh as pvh
from harness import proc
from harness.errors import KernelError, UnknownName
from harness.kernels.kernel import SOURCES, Kernel
from harness.paths import cache_dir

log = logging.getLogger(__name__)
_PKG_RE = re.compile(r"^linux-image-(6\.1\.0-\d+|6\.12\.\d+\+deb12)-amd64$")
_NAME_RE = re.compile(r"^(6\.1\.0-\d+|6\.12\.\d+)$")
SERIES = ("6.1", "6.12")
OLDEST = "-oldest"  # debian:6.1-oldest: the oldest image of the series in the apt sources


def package_for(rest: str) -> str:
    """``6.1.0-47`` -> linux-image-6.1.0-47-amd64; ``6.12.117`` -> ...+deb12-amd64."""
    if not _NAME_RE.match(rest):
        raise UnknownName(
            f"Unknown Debian kernel {rest!r}: use a name like debian:6.1.0-47, debian:6.12.117, "
            "debian:6.1 or debian:6.12 (the newest), debian:6.1-oldest (`harness kernels` lists them)"
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
    done = proc.run(["apt-get", "download", spec], cwd=tmpdir, check=False, capture=True, leash=True)  # dies with us
    debs = list(tmpdir.glob("*.deb"))
    if not done.ok and os.strerror(errno.ENOSPC) in done.output:  # the cache's disk, not the package: exit 12
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmpdir.parent))
    if not done.ok or not debs:
        lines = done.output.strip().splitlines()
        tail = next((ln for ln in lines if ln.startswith("E: ")), lines[-1] if lines else "no output")  # apt's error
        raise KernelError(f"apt-get download {spec} failed: {tail}", hint="check `harness kernels`; run `apt-get update`")
    if progress:
        progress(f"unpacking {debs[0].name}")
    return debs[0]


def version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def is_alias(rest: str) -> bool:
    """``6.1``, ``6.12``, ``6.1-oldest``, ``6.12-oldest``: names that stand for a kernel as Debian publishes."""
    return rest.removesuffix(OLDEST) in SERIES


def pick(rest: str, names: list[str]) -> str | None:
    """The concrete name (``6.1.0-57``) the alias ``rest`` stands for among ``names`` (``debian:...``);
    None when ``rest`` is no alias."""
    if not is_alias(rest):
        return None
    series, oldest = rest.removesuffix(OLDEST), rest.endswith(OLDEST)
    prefix = "debian:6.1.0-" if series == "6.1" else "debian:6.12."
    found = sorted((n for n in names if n.startswith(prefix)), key=version_key)
    if not found:
        raise UnknownName(
            f"No Debian {series} kernel images in the apt sources (run `apt-get update`; `harness kernels` lists them)"
        )
    return found[0 if oldest else -1].removeprefix("debian:")


class DebianImage:
    kind = "debian"
    help = ("Debian's prebuilt linux-image packages (6.1.0-NN, 6.12.NNN; 6.1 and 6.12 name the newest, "
            "6.1-oldest and 6.12-oldest the oldest), fetched with apt")

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

    def alias(self, rest: str, names: list[str] | None = None) -> str | None:
        """The concrete name an alias stands for today (``6.1`` -> ``6.1.0-57``) among ``names``
        (default: what the apt sources offer); None for a concrete name."""
        if not is_alias(rest):
            return None
        return pick(rest, self.available() if names is None else names)

    def resolve(self, rest: str, *, progress=None) -> Kernel:
        rest = self.alias(rest) or rest
        package = package_for(rest)
        dest = cache_dir("kernels", "debian", rest)
        with FileLock(str(dest) + ".lock"):
            damaged = _damaged(dest) if (dest / ".complete").exists() else None
            if damaged:
                say = progress or log.warning
                say(f"the cached {package} is damaged ({damaged}): fetching it again")
                (dest / ".complete").unlink()
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
        for stale in dest.parent.glob(f".{dest.name}.fetch-*"):  # a fetch killed before it could clean up (we hold
            shutil.rmtree(stale, ignore_errors=True)             # this kernel's lock: no live fetch owns it)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.fetch-") as tmp:
            tmpdir = Path(tmp)
            deb = apt_download(package, tmpdir, progress)
            version = proc.run(["dpkg-deb", "-f", deb, "Version"], capture=True).output.strip()
            root = tmpdir / "root"
            proc.run(["dpkg-deb", "-x", deb, root], leash=True)
            release = next((root / "lib" / "modules").iterdir()).name
            proc.run(["depmod", "-a", "-b", root, release], check=False, leash=True)
            (root / "DEBIAN-VERSION").write_text(version + "\n")
            if dest.exists():
                shutil.rmtree(dest)
            root.rename(dest)
        _record_sums(dest)
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


def _record_sums(dest: Path) -> None:
    """The unpack's manifest: boot/ files by sum (what QEMU loads), every other file by size."""
    boot = dest / "boot"
    files = [p for p in dest.rglob("*") if p.is_file() and not p.is_symlink() and p.parent != dest
             and not (p.parent == boot and p.name.startswith("vmlinux"))]  # the PVH unpack has its own sum
    integrity.Manifest(dest).record([p for p in files if p.parent == boot], [p for p in files if p.parent != boot])


def _damaged(dest: Path) -> str | None:
    """Why an unpacked kernel is not what was fetched (None: it is).  An unpack made before manifests
    were kept is recorded now and checked from then on."""
    manifest = integrity.Manifest(dest)
    if not manifest.exists():
        _record_sums(dest)
        return None
    problems = manifest.problems()
    return "; ".join(problems) if problems else None


SOURCES.add("debian", DebianImage())


# --- debug info: linux-image-*-dbg -------------------------------------------------------------

DEBUG_ROOT = "usr/lib/debug"


@dataclass(frozen=True)
class DebugFiles:
    """What a -dbg package gave for a report: vmlinux and modules with DWARF, or why not."""

    vmlinux: Path | None = None
    modules: dict[str, Path] = field(default_factory=dict)  # module name as the console prints it -> .ko
    note: str = ""  # why some or all are missing (a build ID that differs, no -dbg in apt, not fetched yet)


def module_files(kernel: Kernel, names: list[str]) -> dict[str, Path]:
    """The image package's .ko of each module name (``ext4``, ``nf_tables``: - and _ alike)."""
    tree = Path(kernel.root or "/nonexistent") / "lib" / "modules" / kernel.release
    want = {n.replace("-", "_"): n for n in names}
    found: dict[str, Path] = {}
    if tree.is_dir() and want:
        for path in tree.rglob("*.ko*"):
            stem = _KO_SUFFIX.sub("", path.name)
            if stem != path.name and (name := want.get(stem.replace("-", "_"))) is not None:
                found[name] = path
    return found


_KO_SUFFIX = re.compile(r"\.ko(?:\.(?:xz|zst|gz))?$")  # newer images compress their modules; -dbg's are plain


def debug_files(kernel: Kernel, modules: list[str], *, fetch: bool, progress=None) -> DebugFiles:
    """vmlinux and the ``modules`` with debug info from the kernel's -dbg package, cached in its
    folder (``dbg/``: the .deb and only the members reports needed).  ``fetch``: download the
    package if it is not cached yet (else say so).  Each file's build ID is checked against the
    booted image's; one that differs is left out, said in ``note``."""
    if kernel.kind != "debian" or kernel.root is None:
        return DebugFiles(note=f"{kernel.name} is no Debian image")
    package = package_for(kernel.name.removeprefix("debian:")) + "-dbg"
    dest = Path(kernel.root) / "dbg"
    shipped = module_files(kernel, modules)
    members = {"vmlinux": f"{DEBUG_ROOT}/boot/vmlinux-{kernel.release}"}
    members |= {name: f"{DEBUG_ROOT}/{_KO_SUFFIX.sub('.ko', str(path.relative_to(kernel.root)))}"
                for name, path in shipped.items()}
    dest.mkdir(exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        missing = [m for m in members.values() if not (dest / m).is_file()]
        if missing and not fetch:
            return DebugFiles(note=f"no debug info cached for {kernel.name}: `harness report RUN-FOLDER` fetches {package}")
        if missing:
            try:
                _extract(_debug_deb(package, dest, progress), missing, dest, progress)
            except KernelError as exc:
                return DebugFiles(note=f"no debug info: {exc}")
    return _checked(kernel, {n: dest / m for n, m in members.items() if (dest / m).is_file()}, shipped)


def _debug_deb(package: str, dest: Path, progress) -> Path:
    """The -dbg .deb, downloaded into ``dest`` once (kept: a later report may need other modules)."""
    if debs := sorted(dest.glob(f"{package}_*.deb")):
        return debs[-1]
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        deb = apt_download(package, Path(tmp), progress)
        return deb.rename(dest / deb.name)


def _extract(deb: Path, members: list[str], dest: Path, progress) -> None:
    """Only ``members`` of the .deb's data, with dpkg-deb --fsys-tarfile | tar -x; tar stops
    reading once it has them all (--occurrence), so the rest of the archive is not unpacked."""
    if progress:
        progress(f"extracting {', '.join(Path(m).name for m in members)} from {deb.name}")
    feed = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        done = proc.run(["tar", "-x", "--occurrence=1", "-C", dest, *(f"./{m}" for m in members)],
                        stdin=feed.stdout, check=False, capture=True)
    finally:
        feed.stdout.close()  # dpkg-deb gets SIGPIPE once tar has what it wants
        feed.kill()
        feed.wait()
    if not done.ok and not all((dest / m).is_file() for m in members):
        lines = done.output.strip().splitlines()
        raise KernelError(f"{deb.name} lacks {lines[-1] if lines else 'some files'}")


def build_id(path: Path) -> str | None:
    """The NT_GNU_BUILD_ID of an ELF file (what `readelf -n` shows), hex; None if it has none."""
    try:
        with open(path, "rb") as f:
            for section in ELFFile(f).iter_sections():
                if isinstance(section, NoteSection):
                    for note in section.iter_notes():
                        if note["n_type"] == "NT_GNU_BUILD_ID":
                            return note["n_desc"]
    except (OSError, ELFError):
        return None
    return None


def _checked(kernel: Kernel, debug: dict[str, Path], shipped: dict[str, Path]) -> DebugFiles:
    """Keep the debug files whose build ID is the booted one's; say which differ."""
    booted = dict(shipped)
    image_elf = kernel.boot_image or pvh_path_of(kernel)
    if image_elf is not None and image_elf.is_file():
        booted["vmlinux"] = image_elf
    kept: dict[str, Path] = {}
    differ = []
    for name, path in debug.items():
        mine, theirs = build_id(path), build_id(booted[name]) if name in booted else None
        if theirs is not None and mine != theirs:
            differ.append(f"{name} ({theirs[:12]} booted, {(mine or 'none')[:12]} in -dbg)")
        else:
            kept[name] = path
    note = f"build IDs differ: {', '.join(differ)}: those frames left bare" if differ else ""
    return DebugFiles(vmlinux=kept.pop("vmlinux", None), modules=kept, note=note)


def pvh_path_of(kernel: Kernel) -> Path | None:
    return pvh.pvh_path(kernel.image) if kernel.image else None
