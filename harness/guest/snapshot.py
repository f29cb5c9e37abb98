"""snapshot: boot once, save the guest, start every run from that saved state.

Under TCG a boot costs 10-20 s, and a reproducer that oopses every run (the
ext4_inline BUG) needs a fresh kernel every run: with a reboot per run, a
long-lived guest saves nothing.  This backend boots the kernel once into a
small root in RAM (an initramfs built from the host's own programs: bash,
util-linux, kmod, iproute2, e2fsprogs, xfsprogs, OpenSSH's sshd, and the
kernel's modules for virtio, loop and the filesystems), waits for its sshd,
checks the SSH connection (the guest's host key is pinned), and saves the
whole machine with QEMU's migration to a file.  Each run then starts a QEMU
that loads that state (about 1.5 s), with the run's own image copy attached
as the same virtio disk (``run-NN/disk.img``, serial harness-img0, as with
the vng backend), connects over SSH and runs the same guest steps through
the same wrapper as vng-ssh.  The kernel every run meets is the one that had
just booted, whatever the run before did to its own copy: an oops, a taint,
a hang or a lost connection ends that copy, exactly as a reboot would.

What differs from a vng guest, and why it does not matter to the runs:

- no 9p: QEMU refuses to save a guest with a 9p export mounted, so the root
  is the initramfs; the run's scripts and the compiled reproducer are copied
  in over SSH to the same paths.  The reproducer is compiled on the host with
  the same gcc and headers a vng guest uses (vng shares the host's root), into
  the same binary cache.
- every run starts from the same memory: the host writes fresh random bytes
  to /dev/urandom before each run, so runs do not replay one random stream.
- the same machine: q35, ``-cpu max``, the spec's vCPUs and memory, the
  i6300esb watchdog, the kernel booted through PVH when it can.

Runs need a kernel with virtio-net (Debian's have it as a module; the lean
source builds do not: use vng there).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness import proc, report
from harness.errors import GuestError
from harness.guest import BACKENDS, OPTIONAL_ARG, GuestRequest, GuestRun, Persistent
from harness.guest.background import Background
from harness.guest.remote import (
    RunSignals,
    parse_taint,
    reboot_reason,
    settle_run,
    slice_console,
    taint_letters,
    wrapper,
)
from harness.guest.session import GUEST_DIR, GUEST_IP, Keys, boot_key, make_keys, sshd_config
from harness.guest.ssh import Connection, Endpoint, free_port
from harness.guest.steps import MARK, parse_steps
from harness.guest.vng import BOOT_CMDLINE
from harness.kernels import Kernel

log = logging.getLogger(__name__)

READY = f"{MARK} snapshot-guest ready"
FAILED = f"{MARK} snapshot-guest error"
QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 240.0
RESTORE_TIMEOUT = 60.0
PANIC_EXIT_WAIT = 30.0
CONSOLE_SETTLE = 5.0
PROBE_TIMEOUT = 15.0

# What the guest steps, the run wrapper and the checks call (steps.py, remote.py,
# faults.py, the filesystems' check commands), and sshd with what it starts.
PROGRAMS = (
    "bash", "sh", "mount", "umount", "mountpoint", "losetup", "cp", "cat", "mkdir", "rm", "mv", "sync", "sleep",
    "timeout", "setsid", "stat", "readlink", "grep", "pkill", "kill", "ip", "modprobe", "insmod", "seq", "cut",
    "head", "tail", "ls", "env", "chmod", "dd", "uname", "true", "false", "id", "tee", "tr", "wc", "date", "dmesg",
    "sed", "find", "xargs", "od", "cmp", "truncate", "fallocate", "e2fsck", "fsck.ext2", "fsck.ext3", "fsck.ext4",
    "xfs_repair", "xfs_db", "/usr/sbin/sshd",
)
# Modules loaded at boot, before the snapshot (plus the request's preload, e.g. fs-ext4).
BOOT_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "loop")
# Module trees copied whole (small; the kernel asks for crypto-* and crc helpers by alias at mount time).
MODULE_TREES = ("kernel/crypto", "kernel/lib", "kernel/arch/x86/crypto")


# --- the initramfs -------------------------------------------------------------------------------

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
    return f"""#!/bin/bash
# harness snapshot guest init (generated; do not edit)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
fail() {{ echo "{FAILED}: $*" > /dev/console; exec sleep infinity; }}
mount -t proc proc /proc && mount -t sysfs sys /sys && mount -t devtmpfs dev /dev || fail "cannot mount /proc /sys /dev"
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
exec < /dev/console > /dev/console 2>&1
{"modprobe -q -a " + mods + " || echo 'some modules did not load: " + mods + "'" if mods else ": no modules"}
nic=
for n in /sys/class/net/*; do n=${{n##*/}}; [[ $n != lo ]] && {{ nic=$n; break; }}; done
[ -n "$nic" ] || fail "no network interface (the kernel needs virtio-net)"
printf '%s\\n' "link set lo up" "addr add {GUEST_IP}/24 dev $nic" "link set $nic up" | ip -batch - || fail "cannot configure $nic"
/usr/sbin/sshd -e -f {GUEST_DIR}/sshd_config -E /run/sshd.log || fail "sshd did not start: $(cat /run/sshd.log)"
read -r UP _ < /proc/uptime
echo "{READY} $UP kernel $(</proc/sys/kernel/osrelease) nic $nic"
while :; do wait; sleep 3600; done
"""


PASSWD = "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
SHADOW = "root:harness-pubkey-only:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n"


def build_initramfs(out: Path, kernel: Kernel, keys: Keys, preload: tuple[str, ...] = ()) -> dict:
    """Write the snapshot guest's initramfs (newc cpio) to ``out``; what went in."""
    from virtme.cpiowriter import CpioWriter

    stage = Path(tempfile.mkdtemp(prefix="harness-initramfs-"))
    try:
        progs, missing = program_paths()
        files = [*progs, *libraries(progs)]
        for f in files:
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
        (guest / "sshd_config").write_text(sshd_config().replace("Subsystem sftp internal-sftp\n", ""))
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


def _stage_modules(stage: Path, kernel: Kernel, preload: tuple[str, ...]) -> int:
    if kernel.root is None:
        return 0
    moddir = kernel.root / "lib" / "modules" / kernel.release
    dep = moddir / "modules.dep"
    if not dep.exists():
        return 0
    deps = parse_modules_dep(dep.read_text())
    alias_file = moddir / "modules.alias"
    aliases = parse_aliases(alias_file.read_text()) if alias_file.exists() else {}
    wanted = module_closure(deps, aliases, [*BOOT_MODULES, *preload], MODULE_TREES)
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


# --- QEMU and its QMP socket ---------------------------------------------------------------------


def qemu_argv(req: GuestRequest, *, initrd: Path, console: Path, qmp: Path, port: int, disk: Path,
              incoming: bool = False) -> list[str]:
    """The snapshot guest's QEMU command line (pure).  Saving and loading need the same devices."""
    kernel = req.kernel
    for path in (console, qmp, disk):
        if "," in str(path):
            raise GuestError(f"path {str(path)!r} contains ',': QEMU cannot take it in an option")
    cmdline = ["console=ttyS0", "panic=-1", "rdinit=/init", *BOOT_CMDLINE, *req.cmdline]
    accel = "kvm" if req.accel == "kvm" else "tcg"
    argv = [
        QEMU, "-name", "harness-snapshot", "-machine", "q35", "-cpu", "max" if accel == "tcg" else "host",
        "-accel", accel, "-smp", str(req.cpus), "-m", req.memory,
        "-display", "none", "-vga", "none", "-parallel", "none", "-monitor", "none", "-no-reboot",
        "-device", "i6300esb,id=watchdog0",
        "-kernel", str(kernel.boot_image or kernel.image), "-initrd", str(initrd), "-append", " ".join(cmdline),
        "-chardev", f"file,id=console,path={console}", "-serial", "chardev:console",
        "-qmp", f"unix:{qmp},server=on,wait=off",
        "-netdev", f"user,id=hssh0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=hssh0",
        "-drive", f"if=none,id=hdisk0,file={disk},format=raw,cache=unsafe",
        "-device", "virtio-blk-pci,drive=hdisk0,serial=harness-img0",
    ]
    if incoming:
        argv += ["-incoming", "defer"]
    return argv


class Qmp:
    """A QMP client: one command at a time, events skipped."""

    def __init__(self, path: Path, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        self.sock = socket.socket(socket.AF_UNIX)
        while True:
            try:
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise GuestError(f"QEMU's QMP socket {path} did not answer in {timeout:.0f} s") from None
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())  # greeting
        self.command("qmp_capabilities")

    def command(self, name: str, **arguments) -> dict:
        msg = {"execute": name, **({"arguments": arguments} if arguments else {})}
        self.file.write(json.dumps(msg) + "\n")
        self.file.flush()
        while True:
            line = self.file.readline()
            if not line:
                raise GuestError(f"QEMU closed QMP during {name}")
            reply = json.loads(line)
            if "event" in reply:
                continue
            if "error" in reply:
                raise GuestError(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return", {})

    def wait(self, what: str, done, timeout: float, poll: float = 0.05) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.command(what)
            if done(state):
                return state
            if time.monotonic() > deadline:
                raise GuestError(f"QMP {what}: still {state} after {timeout:.0f} s")
            time.sleep(poll)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()  # the makefile() holds the socket open too
            self.sock.close()


class Machine(Background):
    """One QEMU process in the background, its console file and QMP socket."""

    def __init__(self, argv: list[str], folder: Path, qmp: Path, console: Path, port: int):
        super().__init__()
        self.argv, self.folder, self.qmp_path, self.console, self.port = argv, folder, qmp, console, port

    def start(self) -> None:
        self.console.touch()
        self.launch("harness-snapshot-qemu", log_path=self.folder / "qemu.log", cwd=self.folder)

    def text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except OSError:
            return ""

    def qmp(self, timeout: float = 20.0) -> Qmp:
        return Qmp(self.qmp_path, timeout)

    def stop(self, reason: str) -> None:
        """``quit`` through QMP; a kill when QEMU does not answer."""
        if self.gone():
            return
        with contextlib.suppress(Exception):
            q = self.qmp(5)
            q.command("quit")
            q.close()
        if not self.wait_gone(5):
            self.kill(reason)


# --- the backend ---------------------------------------------------------------------------------


@dataclass
class Saved:
    """A saved post-boot guest."""

    key: tuple
    folder: Path
    state: Path
    initrd: Path
    disk_size: int
    boot_seconds: float
    save_seconds: float


def snapshot_key(req: GuestRequest) -> tuple:
    """What a saved guest was booted with: vng-ssh's boot key, and the modules loaded before the save."""
    return (*boot_key(req), req.preload)


class Snapshot(Persistent):
    """The snapshot backend (see the module doc)."""

    name = "snapshot"

    def __init__(self, arg: str = ""):
        if arg:
            raise GuestError(f"backend snapshot takes no argument (got snapshot:{arg})")
        self.keys: Keys | None = None
        self.saved: Saved | None = None
        self.snapshots = 0
        self.previous: str | None = None  # what ended the previous run's guest
        self.sockets = 0

    def open(self, folder: Path, progress=None) -> None:
        self.folder = folder
        self.progress = progress
        self.keys = make_keys(Path(tempfile.mkdtemp(prefix="harness-snap-")))

    def close(self) -> None:
        self._forget_saved()
        if self.keys is not None:
            shutil.rmtree(self.keys.folder, ignore_errors=True)
            self.keys = None
        self.folder = None

    def _event(self, text: str, run_log: Path | None = None) -> None:
        super()._event(text, run_log)
        log.info("%s", text)

    def _forget_saved(self) -> None:
        """Delete the saved guest: ~150 MB of memory, and an initramfs holding the guest's private
        host key (the boot's console, qemu.cmd and qemu.log stay)."""
        if self.saved is not None:
            self.saved.state.unlink(missing_ok=True)
            self.saved.initrd.unlink(missing_ok=True)
            self.saved = None

    # --- boot and save ---------------------------------------------------------------------------

    def _unusable(self, kernel: Kernel) -> str | None:
        net = kernel.config_value("VIRTIO_NET")
        if net not in ("y", "m"):
            return (f"kernel {kernel.name} has no virtio-net (CONFIG_VIRTIO_NET={net or 'unset'}): the snapshot "
                    "backend reaches its guest over SSH; use --backend vng")
        if shutil.which(QEMU) is None:
            return f"{QEMU} is not installed (run `harness setup`)"
        return None

    def _save(self, req: GuestRequest, out: Path) -> Saved:
        """Boot a guest for ``req``, check SSH, save it; the Saved record (raises GuestError)."""
        assert self.folder is not None and self.keys is not None
        why = self._unusable(req.kernel)
        if why:
            raise GuestError(why)
        self.snapshots += 1
        folder = self.folder / "guest" / f"snapshot-{self.snapshots:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        disk = req.disks[0].path if req.disks else None
        if disk is None:
            raise GuestError("the snapshot backend attaches the run's image: the request has none")
        self._event(f"boot {self.snapshots} of {req.kernel.name} ({req.accel}) to save a post-boot snapshot", out)
        t0 = time.monotonic()
        initrd = folder / "initramfs.cpio"
        self._forget_saved()  # another kernel or cmdline: the old snapshot is of no more use
        what = build_initramfs(initrd, req.kernel, self.keys, req.preload)
        if what["missing"]:
            self._event(f"initramfs: not on this host, left out: {', '.join(what['missing'])}", None)
        # the same devices as every run's QEMU: a disk of the same size (each run drops the block
        # cache the boot's partition scan left, so the run reads its own copy from the first block)
        template = folder / "disk.img"
        shutil.copyfile(disk, template)
        port = free_port()
        qmp = self._qmp_path()
        machine = Machine(qemu_argv(req, initrd=initrd, console=folder / "console.log", qmp=qmp, port=port,
                                    disk=template), folder, qmp, folder / "console.log", port)
        (folder / "qemu.cmd").write_text(shlex.join(machine.argv) + "\n")
        machine.start()
        try:
            deadline = time.monotonic() + BOOT_TIMEOUT
            while READY not in machine.text():
                text = machine.text()
                if FAILED in text:
                    raise GuestError(next(ln for ln in text.splitlines() if FAILED in ln).replace(FAILED + ": ", ""))
                if machine.gone():
                    raise GuestError(f"the guest stopped before it was ready ({machine.gone()}); see {folder}/console.log")
                if time.monotonic() > deadline:
                    raise GuestError(f"the guest was not ready in {BOOT_TIMEOUT:.0f} s; see {folder}/console.log")
                time.sleep(0.1)
            conn = Connection(self._endpoint(port)).connect(timeout=30)
            try:
                said = conn.check("cat /proc/sys/kernel/tainted", timeout=30)
            finally:
                conn.close()
            boot_s = time.monotonic() - t0
            t1 = time.monotonic()
            state = folder / "state"
            q = machine.qmp()
            q.command("stop")
            q.command("migrate", uri=f"exec:cat > {shlex.quote(str(state))}")
            q.wait("query-migrate", lambda s: s.get("status") in ("completed", "failed", "cancelled"), 120)
            status = q.command("query-migrate").get("status")
            if status != "completed":
                raise GuestError(f"saving the guest failed (migration {status})")
            save_s = time.monotonic() - t1
            with contextlib.suppress(GuestError, OSError):
                q.command("quit")
            q.close()
            machine.wait_gone(10)
        finally:
            machine.stop("snapshot saved")
            template.unlink(missing_ok=True)
        self._event(f"snapshot {self.snapshots}: booted in {boot_s:.1f} s ({what['programs']} programs, "
                    f"{what['modules']} modules, initramfs {what['bytes'] >> 20} MiB), taint {said.strip()}, "
                    f"saved in {save_s:.1f} s ({state.stat().st_size >> 20} MiB)", out)
        return Saved(snapshot_key(req), folder, state, initrd, disk.stat().st_size, boot_s, save_s)

    def _qmp_path(self) -> Path:
        """A QMP socket path in the session's short private folder (a UNIX socket path has 107 bytes at most)."""
        assert self.keys is not None
        self.sockets += 1
        return self.keys.folder / f"qmp-{self.sockets}.sock"

    def _endpoint(self, port: int) -> Endpoint:
        assert self.keys is not None
        return Endpoint("127.0.0.1", port, "root", self.keys.client, host_key=self.keys.host_pub,
                        name="snapshot guest")

    # --- one run -----------------------------------------------------------------------------------

    def _run(self, req: GuestRequest, run_dir: Path, *, timeout: float | None, watchdog) -> GuestRun:
        started = time.monotonic()
        out, console = run_dir / "guest.log", run_dir / "console.log"
        info: dict = {"backend": self.name}
        if not req.disks:
            raise GuestError("the snapshot backend runs the guest steps with their disk: the request has none")
        why = self._unusable(req.kernel)
        if why:  # bad input, not a boot failure: one line, before any run
            raise GuestError(why)
        disk = req.disks[0].path
        if self.saved is None or self.saved.key != snapshot_key(req) or self.saved.disk_size != disk.stat().st_size:
            try:
                self.saved = self._save(req, out)
            except GuestError as exc:
                self._event(f"the snapshot guest did not come up: {exc}", out)
                return GuestRun(None, time.monotonic() - started, console, out, (), detail=f"snapshot: {exc}",
                                info={**info, "boot_failure": str(exc)})
            info.update(booted=True, boot_seconds=round(self.saved.boot_seconds, 2),
                        save_seconds=round(self.saved.save_seconds, 2))
        saved = self.saved
        if req.binary is not None and not req.binary.exists() and req.compile_argv:
            self._compile(req, out)
        port = free_port()
        qmp_path = self._qmp_path()
        argv = qemu_argv(req, initrd=saved.initrd, console=console, qmp=qmp_path, port=port, disk=disk,
                         incoming=True)
        (run_dir / "qemu.cmd").write_text(shlex.join(argv) + "\n")
        machine = Machine(argv, run_dir, qmp_path, console, port)
        reset = self.previous or "the first run on this snapshot"
        t0 = time.monotonic()
        machine.start()
        try:
            q = machine.qmp()
            q.command("migrate-incoming", uri=f"exec:cat {shlex.quote(str(saved.state))}")
            q.wait("query-status", lambda s: s.get("status") != "inmigrate", RESTORE_TIMEOUT)
            q.command("cont")
            q.close()
            conn = Connection(self._endpoint(port)).connect(timeout=30)
        except GuestError as exc:
            machine.stop(str(exc))
            self._event(f"{run_dir.name}: restoring the snapshot failed: {exc}", out)
            return GuestRun(None, time.monotonic() - started, console, out, tuple(argv),
                            detail=f"snapshot: restore failed: {exc}", info={**info, "boot_failure": str(exc)})
        restore_s = time.monotonic() - t0
        info.update(snapshot=str(saved.folder), restore_seconds=round(restore_s, 2), reset_after=reset)
        self._event(f"{run_dir.name}: fresh guest from snapshot {self.snapshots} in {restore_s:.1f} s "
                    f"(the previous guest: {reset})", out)
        try:
            return self._run_on(req, run_dir, machine, conn, timeout, watchdog, started, info)
        finally:
            conn.close()
            machine.stop("run done")
            qmp_path.unlink(missing_ok=True)

    def _compile(self, req: GuestRequest, out: Path) -> None:
        """Compile the reproducer on the host (the snapshot guest has no compiler): the gcc and
        headers a vng guest would use, since vng shares the host's root."""
        assert req.binary is not None
        tmp = req.binary.with_name(req.binary.name + f".host{os.getpid()}")  # the cache gets whole files only
        argv = [str(tmp) if arg == str(req.binary) else arg for arg in req.compile_argv]
        done = proc.run(argv, check=False, capture=True)
        with open(out, "a") as fh:
            fh.write(f"{MARK} session compiled on the host: {shlex.join(argv)}\n{done.output}")
        if done.ok:
            tmp.replace(req.binary)

    def _run_on(self, req, run_dir: Path, machine: Machine, conn: Connection, timeout, watchdog, started,
                info: dict) -> GuestRun:
        out, console = run_dir / "guest.log", run_dir / "console.log"
        token = f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
        steps = Path(req.command[1]) if len(req.command) == 2 and req.command[0] == "bash" else None
        if steps is None:
            raise GuestError("the snapshot backend runs a guest steps script (bash SCRIPT)")
        outer = run_dir / "ssh-run.sh"
        outer.write_text(wrapper(token, str(steps), f"{GUEST_DIR}/{token}.sid", cwd=str(req.cwd or run_dir)))
        # fresh randomness (every run starts from the same memory); no block cache from the boot's disk
        binary = req.binary if req.binary is not None and req.binary.exists() else None
        dirs = shlex.join(str(d) for d in (run_dir, *((binary.parent,) if binary else ())))
        conn.check(f"mkdir -p {dirs} && echo {os.urandom(32).hex()} > /dev/urandom && "
                   "sync && echo 3 > /proc/sys/vm/drop_caches", timeout=30)
        for f in (steps, outer, *((binary,) if binary else ())):
            conn.put(f, str(f))
        if binary:
            conn.check(f"chmod 755 {shlex.quote(str(binary))}", timeout=30)
        done, text = conn.run(f"bash {shlex.quote(str(outer))}", output=out, timeout=timeout, watchdog=watchdog,
                              alive=machine.gone)
        detail = settle_run(done, conn, machine, info, machine.text, token, probe_timeout=PROBE_TIMEOUT,
                            panic_wait=PANIC_EXIT_WAIT, settle=CONSOLE_SETTLE)
        if done.killed:
            self._event(f"{run_dir.name}: {detail}", None)
        window, _ = slice_console(machine.text(), token)
        before, after = parse_taint(text)
        run_step = next((s for s in parse_steps(text) if s.name == "run"), None)
        titles = tuple(r.title for r in report.parse(window))
        why = reboot_reason(RunSignals(before, after, lost=bool(done.lost or machine.gone()), killed=done.killed,
                                       reports=titles, run_rc=run_step.rc if run_step else 0))
        self.previous = why or "clean (every run starts from the snapshot all the same)"
        info.update(taint_before=taint_letters(before), taint_after=taint_letters(after), returncode=done.returncode,
                    reset_reason=why, ssh_seconds=round(done.seconds, 2))
        if why:
            self._event(f"{run_dir.name}: this guest is done: {why}; the next run starts from the snapshot", out)
        return GuestRun(done.returncode, time.monotonic() - started, console, out, tuple(machine.argv),
                        detail=detail, info=info)


BACKENDS.add("snapshot", Snapshot)
OPTIONAL_ARG.add("snapshot")  # so snapshot:X says it takes none
