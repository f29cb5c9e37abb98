"""The snapshot guest's root: an initramfs built from the host's own programs.

bash, util-linux, kmod, iproute2, e2fsprogs, xfsprogs and OpenSSH's sshd with
their libraries (found by ldd), what reproducers call through ``system()``
(``harness.guest.programs``: mkfs/fsck for ext2/3/4 and XFS, mount, losetup,
coreutils) and the files those read (``/etc/mke2fs.conf``), the kernel's
modules for virtio, loop and the filesystems (with their modules.dep
closure), the guest's pinned host key and the client's public key, and /init
(templates/snapshot-init.sh).  The cpio is written with virtme-ng's own
CpioWriter.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from virtme.cpiowriter import CpioWriter

from harness import proc
from harness.guest.programs import DATA_FILES, REPRODUCER_PROGRAMS
from harness.guest.protocol import SNAPSHOT_FAILED, SNAPSHOT_READY, render
from harness.guest.ssh import GUEST_DIR, GUEST_IP, Keys, sshd_config
from harness.kernels import Kernel

# What the guest steps, the run wrapper and the checks call (protocol.py, faults.py, the
# reproducer environments, the filesystems' check commands), sshd with what it starts, and what
# reproducers call through system() (harness.guest.programs).
_HARNESS_PROGRAMS = (
    "bash", "sh", "mount", "umount", "mountpoint", "losetup", "cp", "cat", "mkdir", "rm", "mv", "sync", "sleep",
    "timeout", "setsid", "stat", "readlink", "grep", "pkill", "kill", "ip", "modprobe", "insmod", "seq", "cut",
    "head", "tail", "ls", "env", "chmod", "dd", "uname", "true", "false", "id", "tee", "tr", "wc", "date", "dmesg",
    "sed", "find", "xargs", "od", "cmp", "truncate", "fallocate", "e2fsck", "fsck.ext2", "fsck.ext3", "fsck.ext4",
    "xfs_repair", "xfs_db", "mknod", "findmnt", "sort", "pgrep", "nproc", "swapoff", "tar", "/usr/sbin/sshd",
)
PROGRAMS = tuple(dict.fromkeys((*_HARNESS_PROGRAMS, *REPRODUCER_PROGRAMS)))
# Modules loaded at boot, before the snapshot (plus the request's preload, e.g. fs-ext4).
BOOT_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "loop")
# Module trees copied whole (small; the kernel asks for crypto-* and crc helpers by alias at mount time).
MODULE_TREES = ("kernel/crypto", "kernel/lib", "kernel/arch/x86/crypto")

_LDD_RE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def parse_ldd(text: str) -> list[str]:
    """Absolute library paths in ldd's output (the loader included)."""
    return [m.group(1) for m in _LDD_RE.finditer(text)]


def program_paths(names=PROGRAMS) -> tuple[list[str], list[str]]:
    """(found paths, missing names) on this host."""
    found, missing = [], []
    for name in names:
        path = name if name.startswith("/") else shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
        (found if path and os.path.exists(path) else missing).append(path or name)
    return found, missing


def data_files(paths: tuple[str, ...] | None = None) -> list[str]:
    """The files the programs read (``DATA_FILES``) that this host has (a host without one: the program's defaults)."""
    return [p for p in (DATA_FILES if paths is None else paths) if os.path.isfile(p)]


def libraries(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        done = subprocess.run(["ldd", p], capture_output=True, text=True, check=False)
        if done.returncode == 0:  # "not a dynamic executable" (scripts, static binaries): nothing to add
            out += parse_ldd(done.stdout)
    return list(dict.fromkeys(out))


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """modules.dep: relative path -> the relative paths it depends on."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" in line:
            mod, _, rest = line.partition(":")
            deps[mod.strip()] = rest.split()
    return deps


def module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    base = re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base)
    return base.replace("-", "_")


def module_closure(deps: dict[str, list[str]], aliases: dict[str, str], wanted: list[str],
                   trees: tuple[str, ...] = ()) -> list[str]:
    """Relative module paths for ``wanted`` (names or aliases like fs-ext4), with their
    dependencies, plus every module under ``trees``."""
    by_name = {module_name(m): m for m in deps}
    todo = [m for m in deps if any(m.startswith(t + "/") for t in trees)]
    for w in wanted:
        name = aliases.get(w, w).replace("-", "_")
        if name in by_name:
            todo.append(by_name[name])
    out: list[str] = []
    seen: set[str] = set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        out.append(m)
        todo += deps.get(m, [])
    return sorted(out)


def parse_aliases(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "alias" and "*" not in parts[1]:
            out.setdefault(parts[1], parts[2])
    return out


def init_script(modules: tuple[str, ...], preload: tuple[str, ...]) -> str:
    """/init of the snapshot guest: mounts, modules, network, sshd; then it says READY on the console."""
    mods = shlex.join((*modules, *preload)) if modules or preload else ""
    load = f"modprobe -q -a {mods} || echo 'some modules did not load: {mods}'" if mods else ": no modules"
    return render("snapshot-init.sh", FAILED=SNAPSHOT_FAILED, MODULES=load, GUEST_IP=GUEST_IP, GUEST_DIR=GUEST_DIR,
                  READY=SNAPSHOT_READY)


PASSWD = "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
SHADOW = "root:harness-pubkey-only:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n"


def build_initramfs(out: Path, kernel: Kernel, keys: Keys, preload: tuple[str, ...] = ()) -> dict:
    """Write the snapshot guest's initramfs (newc cpio) to ``out``; what went in."""
    stage = Path(tempfile.mkdtemp(prefix="harness-initramfs-"))
    try:
        progs, missing = program_paths()
        files = [*progs, *libraries(progs)]
        for f in (*files, *data_files()):
            _stage(stage, f)
        for d in ("proc", "sys", "dev", "tmp", "run/sshd", "root", "etc", GUEST_DIR.lstrip("/")):
            (stage / d).mkdir(parents=True, exist_ok=True)
        (stage / "etc/passwd").write_text(PASSWD)
        (stage / "etc/group").write_text(GROUP)
        (stage / "etc/shadow").write_text(SHADOW)
        (stage / "etc/nsswitch.conf").write_text("passwd: files\ngroup: files\nshadow: files\n")
        guest = stage / GUEST_DIR.lstrip("/")
        shutil.copy(keys.host, guest / "ssh_host_ed25519_key")
        shutil.copy(keys.client_pub, guest / "authorized_keys")
        (guest / "sshd_config").write_text(sshd_config(sftp=False))
        modules = _stage_modules(stage, kernel, preload)
        (stage / "init").write_text(init_script(BOOT_MODULES if modules else (), preload if modules else ()))
        with open(out, "wb") as fh:
            w = CpioWriter(fh)
            w.mkchardev(b"dev/console", (5, 1), 0o600)
            for path in sorted(stage.rglob("*")):
                rel = str(path.relative_to(stage)).encode()
                if path.is_symlink():
                    w.symlink(os.readlink(path).encode(), rel)
                elif path.is_dir():
                    w.mkdir(rel, 0o700 if path.name in ("root", "harness-ssh") else 0o755)
                else:
                    mode = path.stat().st_mode & 0o777
                    if path.name == "init":
                        mode = 0o755
                    if "ssh_host" in path.name:
                        mode = 0o600
                    w.write_file(rel, path.read_bytes(), mode)
            w.write_trailer()
        return {"programs": len(progs), "missing": missing, "libraries": len(files) - len(progs),
                "modules": modules, "bytes": out.stat().st_size}
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _stage(stage: Path, host_path: str) -> None:
    """Copy ``host_path`` into ``stage`` at the same path, reproducing each symlink on the way."""
    parts = Path(host_path).parts[1:]
    cur_host, cur_stage = Path("/"), stage
    for i, part in enumerate(parts):
        cur_host, cur_stage = cur_host / part, cur_stage / part
        if cur_host.is_symlink():
            if not cur_stage.is_symlink() and not cur_stage.exists():
                cur_stage.parent.mkdir(parents=True, exist_ok=True)
                cur_stage.symlink_to(os.readlink(cur_host))
            target = os.path.join(os.path.dirname(str(cur_host)), os.readlink(cur_host))
            _stage(stage, os.path.normpath(target) + ("/" + "/".join(parts[i + 1:]) if i + 1 < len(parts) else ""))
            return
        if i == len(parts) - 1:
            if not cur_stage.exists():
                cur_stage.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(cur_host, cur_stage)
        else:
            cur_stage.mkdir(exist_ok=True)


def _wanted_modules(kernel: Kernel, preload: tuple[str, ...]) -> tuple[Path, list[str]] | None:
    """The kernel's module folder and the modules the guest gets (relative paths), or None (no modules)."""
    if kernel.root is None:
        return None
    moddir = kernel.root / "lib" / "modules" / kernel.release
    dep = moddir / "modules.dep"
    if not dep.exists():
        return None
    deps = parse_modules_dep(dep.read_text())
    alias_file = moddir / "modules.alias"
    aliases = parse_aliases(alias_file.read_text()) if alias_file.exists() else {}
    return moddir, module_closure(deps, aliases, [*BOOT_MODULES, *preload], MODULE_TREES)


def inputs_digest(kernel: Kernel, preload: tuple[str, ...] = (), libraries_of=libraries) -> str:
    """A digest of what ``build_initramfs`` would put in (the keys aside): every host file by path, size and
    mtime, every module by path and size, /init and the fixed files by text.  A saved guest booted from
    an initramfs is reused while this stays the same (harness.guest.snapshot.store)."""
    progs, missing = program_paths()
    files = [*progs, *libraries_of(progs)]
    found = _wanted_modules(kernel, preload)
    mods = []
    if found:
        moddir, wanted = found
        mods = [(rel, (moddir / rel).stat().st_size) for rel in wanted]
    modules = (BOOT_MODULES, preload) if found else ((), ())
    h = hashlib.sha256()
    for f in (*files, *data_files()):
        st = os.stat(f)
        h.update(f"{f} {os.path.realpath(f)} {st.st_size} {st.st_mtime_ns}\n".encode())
    for part in (missing, mods, MODULE_TREES, init_script(*modules), sshd_config(sftp=False), PASSWD, GROUP, SHADOW):
        h.update(repr(part).encode() + b"\0")
    return h.hexdigest()


def _stage_modules(stage: Path, kernel: Kernel, preload: tuple[str, ...]) -> int:
    found = _wanted_modules(kernel, preload)
    if found is None:
        return 0
    moddir, wanted = found
    dest = stage / "usr/lib/modules" / kernel.release
    for rel in wanted:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(moddir / rel, dest / rel)
    for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (moddir / f).exists():
            shutil.copy2(moddir / f, dest / f)
    if not (stage / "lib").exists():
        (stage / "lib").symlink_to("usr/lib")
    proc.run(["depmod", "-a", "-b", str(stage), kernel.release], check=False, capture=True)
    return len(wanted)


