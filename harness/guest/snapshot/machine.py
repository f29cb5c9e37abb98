"""snapshot: boot once, save the guest, start every run from that saved state.

Under TCG a boot costs 10-20 s, and a reproducer that oopses every run (the
ext4_inline BUG) needs a fresh kernel every run: with a reboot per run, a
long-lived guest saves nothing.  This backend boots the kernel once into a
small root in RAM (harness.guest.snapshot.initramfs), waits for its sshd,
checks the SSH connection (the guest's host key is pinned), and saves the
whole machine with QEMU's migration to a file.  Each run then starts a QEMU
that loads that state (0.2 s, then 0.2-0.3 s to connect), with the run's own image copy attached as
the same virtio disk (``run-NN/disk.img``, serial harness-img0, as with the
vng backend), connects over SSH and runs the same guest steps through the
same per-run protocol as vng-ssh (harness.guest.remote).  The kernel every
run meets is the one that had just booted, whatever the run before did to its
own copy: an oops, a taint, a hang or a lost connection ends that copy,
exactly as a reboot would.

The next run's guest is restored while a run runs (a "spare": QEMU on a
blank disk of the run's size, loaded, running, connected), then handed over:
the run's image is copied into the very file that QEMU has open, which
becomes the run's disk.img, and the spare's console and log move into the run
folder.  Measured on ext2_iomap_blkseq (TCG, 2 host cores), 12 runs each way
alternately: 0.99 s against 1.35 s of a run's wall time beyond its time to
hit.  The spare's restore and handshake share the host's CPUs with the run
it overlaps; ``HARNESS_SNAPSHOT_AHEAD=0`` restores each guest when its run
starts instead.  Each run's result.json says which (``restored_ahead``) and
where its time went (``phases``).

What differs from a vng guest, and why it does not matter to the runs:

- no 9p: QEMU refuses to save a guest with a 9p export mounted, so the root
  is the initramfs, without a compiler: the run driver has the reproducer
  compiled in a vng guest of the same kernel first (once per kernel, source,
  flags and compiler; the binary cache keeps it) and the binary is copied in
  over SSH with the run's scripts;
- every run starts from the same memory: the host writes fresh random bytes
  to /dev/urandom before each run, so runs do not replay one random stream;
- the same machine: q35, ``-cpu max``, the spec's vCPUs and memory, the
  i6300esb watchdog, the kernel booted through PVH when it can.

Runs need a kernel with virtio-net: Debian's have it as a module, the lean
source builds built in (kconfigs/lean.config).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import proc
from harness.errors import GuestError, HarnessError
from harness.guest.background import Background
from harness.guest.machine import BACKENDS, Backend, GuestRequest, GuestRun
from harness.guest.protocol import SNAPSHOT_FAILED, SNAPSHOT_READY, VirtioDisk, slice_console
from harness.guest.remote import Phases, Staging, run_over
from harness.guest.snapshot.initramfs import build_initramfs
from harness.guest.snapshot.qmp import Qmp
from harness.guest.ssh import Connection, Endpoint, Keys, free_port, make_keys
from harness.guest.vng import BOOT_CMDLINE
from harness.guest.vngssh import boot_key
from harness.kernels import Kernel

log = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 240.0
RESTORE_TIMEOUT = 60.0
DISK_SERIAL = "harness-img0"
AHEAD = "HARNESS_SNAPSHOT_AHEAD"  # "0": no guest restored for the next run while a run runs


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
        "-device", f"virtio-blk-pci,drive=hdisk0,serial={DISK_SERIAL}",
    ]
    if incoming:
        argv += ["-incoming", "defer"]
    return argv


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


class RunConsole:
    """A restored guest's console: the whole file is this run's (harness.guest.remote.Console)."""

    def __init__(self, machine: Machine):
        self.machine = machine

    def mark(self, conn) -> int:
        return 0

    def window(self, mark, token: str, conn, run_dir: Path) -> str:
        return slice_console(self.machine.text(), token, mark)[0]

    def text(self) -> str:
        return self.machine.text()


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


@dataclass
class Spare:
    """A guest restored ahead: QEMU on a blank disk of the run's size, loaded, running, connected."""

    machine: Machine
    key: tuple
    slot: Path  # the disk file QEMU opened
    disk_size: int
    thread: threading.Thread | None = None
    conn: Connection | None = None
    error: str | None = None
    phases: Phases = field(default_factory=lambda: Phases({}))  # its restore and connect, done ahead


def _move_into(machine: Machine, run_dir: Path) -> None:
    """The files of a running QEMU, live, into the run's folder: its console and log (hard links to the files
    it writes), its folder gone."""
    for name in ("console.log", "qemu.log"):
        (run_dir / name).unlink(missing_ok=True)
        os.link(machine.folder / name, run_dir / name)
    old = machine.folder
    machine.folder, machine.console = run_dir, run_dir / "console.log"
    shutil.rmtree(old)


def _discard(spare: Spare, why: str) -> None:
    if spare.conn is not None:
        spare.conn.close()
    spare.machine.stop(why)
    spare.machine.qmp_path.unlink(missing_ok=True)
    spare.slot.unlink(missing_ok=True)


def snapshot_key(req: GuestRequest) -> tuple:
    """What a saved guest was booted with: vng-ssh's boot key, and the modules loaded before the save."""
    return (*boot_key(req), req.preload)


def unusable(kernel: Kernel) -> str | None:
    """Why this backend cannot drive ``kernel`` (one line), or None."""
    net = kernel.config_value("VIRTIO_NET")
    if net not in ("y", "m"):
        return (f"kernel {kernel.name} has no virtio-net (CONFIG_VIRTIO_NET={net or 'unset'}): the snapshot "
                "backend reaches its guest over SSH; use --backend vng")
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (run `harness setup`)"
    return None


class Snapshot(Backend):
    """The snapshot backend (see the module doc)."""

    name = "snapshot"
    usage = "snapshot"
    help = ("one boot, every run restored from the saved post-boot guest (needs virtio-net; the reproducer is "
            "compiled once in a vng guest of the same kernel)")
    compiles = False
    persistent = True
    attaches_disks = True

    def __init__(self) -> None:
        super().__init__()
        self.keys: Keys | None = None
        self.saved: Saved | None = None
        self.snapshots = 0
        self.previous: str | None = None  # what ended the previous run's guest
        self.sockets = 0
        self.spare: Spare | None = None  # the next run's guest, restored while the current run runs
        self.spares = 0
        self.ahead = os.environ.get(AHEAD, "1") != "0"

    def open(self, folder: Path, *, progress=None) -> None:
        super().open(folder, progress=progress)
        self.keys = make_keys(Path(tempfile.mkdtemp(prefix="harness-snap-")))

    def close(self) -> None:
        self._drop_spare("the session is over")
        self._forget_saved()
        if self.keys is not None:
            shutil.rmtree(self.keys.folder, ignore_errors=True)
            self.keys = None
        super().close()

    def event(self, text: str, run_log: Path | None = None) -> None:
        super().event(text, run_log)
        log.info("%s", text)

    def replace(self, reason: str) -> None:
        """Every run starts from the snapshot anyway: the reason is what the next run's log says."""
        self.previous = reason

    def _drop_spare(self, why: str) -> None:
        spare, self.spare = self.spare, None
        if spare is not None:
            spare.thread.join(RESTORE_TIMEOUT + 40)
            _discard(spare, why)
            if spare.error is None:  # never used and nothing to tell: no trace
                shutil.rmtree(spare.machine.folder, ignore_errors=True)

    def _forget_saved(self) -> None:
        """Delete the saved guest: ~150 MB of memory, and an initramfs holding the guest's private
        host key (the boot's console, qemu.cmd and qemu.log stay)."""
        if self.saved is not None:
            self.saved.state.unlink(missing_ok=True)
            self.saved.initrd.unlink(missing_ok=True)
            self.saved = None

    # --- boot and save ---------------------------------------------------------------------------

    def _boot_machine(self, req: GuestRequest, folder: Path, initrd: Path, template: Path) -> Machine:
        port, qmp = free_port(), self._qmp_path()
        machine = Machine(qemu_argv(req, initrd=initrd, console=folder / "console.log", qmp=qmp, port=port,
                                    disk=template), folder, qmp, folder / "console.log", port)
        (folder / "qemu.cmd").write_text(shlex.join(machine.argv) + "\n")
        machine.start()
        deadline = time.monotonic() + BOOT_TIMEOUT
        while SNAPSHOT_READY not in machine.text():
            text = machine.text()
            if SNAPSHOT_FAILED in text:
                raise GuestError(next(ln for ln in text.splitlines() if SNAPSHOT_FAILED in ln)
                                 .replace(SNAPSHOT_FAILED + ": ", ""))
            if machine.gone():
                raise GuestError(f"the guest stopped before it was ready ({machine.gone()}); see {folder}/console.log")
            if time.monotonic() > deadline:
                raise GuestError(f"the guest was not ready in {BOOT_TIMEOUT:.0f} s; see {folder}/console.log")
            time.sleep(0.1)
        return machine

    @staticmethod
    def _migrate_out(machine: Machine, state: Path) -> None:
        q = machine.qmp()
        q.command("stop")
        q.command("migrate", uri=f"exec:cat > {shlex.quote(str(state))}")
        q.wait("query-migrate", lambda s: s.get("status") in ("completed", "failed", "cancelled"), 120)
        status = q.command("query-migrate").get("status")
        if status != "completed":
            raise GuestError(f"saving the guest failed (migration {status})")
        with contextlib.suppress(GuestError, OSError):
            q.command("quit")
        q.close()
        machine.wait_gone(10)

    def _save(self, req: GuestRequest, out: Path) -> Saved:
        """Boot a guest for ``req``, check SSH, save it; the Saved record (raises GuestError)."""
        assert self.folder is not None and self.keys is not None
        if not req.disks:
            raise GuestError("the snapshot backend attaches the run's image: the request has none")
        self.snapshots += 1
        folder = self.folder / "guest" / f"snapshot-{self.snapshots:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        disk = req.disks[0].path
        self.event(f"boot {self.snapshots} of {req.kernel.name} ({req.accel}) to save a post-boot snapshot", out)
        t0 = time.monotonic()
        initrd = folder / "initramfs.cpio"
        self._drop_spare("a new snapshot")
        self._forget_saved()  # another kernel or cmdline: the old snapshot is of no more use
        what = build_initramfs(initrd, req.kernel, self.keys, req.preload)
        if what["missing"]:
            self.event(f"initramfs: not on this host, left out: {', '.join(what['missing'])}", None)
        # the same devices as every run's QEMU: a disk of the same size (each run drops the block
        # cache the boot's partition scan left, so the run reads its own copy from the first block)
        template = folder / "disk.img"
        shutil.copyfile(disk, template)
        machine = None
        try:
            machine = self._boot_machine(req, folder, initrd, template)
            conn = Connection(self._endpoint(machine.port)).connect(timeout=30)
            try:
                said = conn.check("cat /proc/sys/kernel/tainted", timeout=30)
            finally:
                conn.close()
            boot_s, t1 = time.monotonic() - t0, time.monotonic()
            state = folder / "state"
            self._migrate_out(machine, state)
            save_s = time.monotonic() - t1
        finally:
            if machine is not None:
                machine.stop("snapshot saved")
            template.unlink(missing_ok=True)
        self.event(f"snapshot {self.snapshots}: booted in {boot_s:.1f} s ({what['programs']} programs, "
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

    def _machine(self, req: GuestRequest, saved: Saved, folder: Path, disk: Path) -> Machine:
        """A started QEMU waiting for the saved state (``folder``: its console.log, qemu.cmd, qemu.log)."""
        qmp_path, port = self._qmp_path(), free_port()
        argv = qemu_argv(req, initrd=saved.initrd, console=folder / "console.log", qmp=qmp_path, port=port,
                         disk=disk, incoming=True)
        (folder / "qemu.cmd").write_text(shlex.join(argv) + "\n")
        machine = Machine(argv, folder, qmp_path, folder / "console.log", port)
        machine.start()
        return machine

    def _wake(self, machine: Machine, saved: Saved, phases: Phases) -> Connection:
        """Load the saved state into ``machine``, let it run, connect; raises GuestError (the machine stopped)."""
        try:
            with phases("restore"):
                q = machine.qmp()
                q.command("migrate-incoming", uri=f"exec:cat {shlex.quote(str(saved.state))}")
                q.wait("query-status", lambda s: s.get("status") != "inmigrate", RESTORE_TIMEOUT)
                q.command("cont")
                q.close()
            with phases("connect"):
                return Connection(self._endpoint(machine.port)).connect(timeout=30)
        except GuestError:
            machine.stop("restore failed")
            machine.qmp_path.unlink(missing_ok=True)
            raise

    def _restore(self, req: GuestRequest, saved: Saved, phases: Phases) -> tuple[Machine, Connection]:
        """A QEMU loading the saved state with the run's disk attached; raises GuestError."""
        machine = self._machine(req, saved, req.run_dir, req.disks[0].path)
        return machine, self._wake(machine, saved, phases)

    # --- the spare: the next run's guest, restored while this run runs --------------------------------

    def _prefetch(self, req: GuestRequest) -> None:
        """Start restoring the next run's guest now, on a blank disk of the same size (a thread loads the
        state and connects; QEMU itself runs on its leash like every guest)."""
        assert self.folder is not None and self.saved is not None
        self.spares += 1
        folder = self.folder / "guest" / f"spare-{self.spares:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        slot = folder / "disk.img"
        with open(slot, "wb") as fh:
            fh.truncate(self.saved.disk_size)
        try:
            machine = self._machine(req, self.saved, folder, slot)
        except (GuestError, OSError) as exc:
            self.event(f"restoring the next run's guest ahead failed: {exc}", None)
            return
        spare = Spare(machine, snapshot_key(req), slot, self.saved.disk_size)
        spare.thread = threading.Thread(target=self._wake_spare, args=(spare, self.saved), daemon=True,
                                        name="harness-snapshot-spare")
        spare.thread.start()
        self.spare = spare

    def _wake_spare(self, spare: Spare, saved: Saved) -> None:
        try:
            spare.conn = self._wake(spare.machine, saved, spare.phases)
        except Exception as exc:  # noqa: BLE001 (told at take(): that run restores the usual way)
            spare.error = str(exc)

    def _take(self, req: GuestRequest, phases: Phases) -> tuple[Machine, Connection] | None:
        """The spare for this run, its disk filled with the run's image and moved into the run folder; None
        when there is none or it does not fit (that run restores the usual way)."""
        spare, self.spare = self.spare, None
        if spare is None:
            return None
        spare.thread.join(RESTORE_TIMEOUT + 40)
        disk = req.disks[0].path
        why = (spare.error or ("still restoring" if spare.thread.is_alive() else None)
               or ("booted for another request" if spare.key != snapshot_key(req) else None)
               or ("another disk size" if disk.stat().st_size != spare.disk_size else None)
               or spare.machine.gone() or (None if spare.conn and spare.conn.active else "SSH connection down"))
        if why:
            self.event(f"{req.run_dir.name}: the guest restored ahead is of no use ({why}): restoring now", None)
            _discard(spare, why)
            return None
        # QEMU has the slot open: the run's image goes into that very file, which then becomes the run's disk.img
        # (a failure on the way leaves disk.img a fresh copy of the image: the usual restore takes it)
        restored_as = spare.machine.folder.name
        try:
            proc.run(["cp", "--sparse=always", "--reflink=auto", str(disk), str(spare.slot)])
            os.replace(spare.slot, disk)
            _move_into(spare.machine, req.run_dir)
        except (HarnessError, OSError) as exc:
            self.event(f"{req.run_dir.name}: handing over the guest restored ahead failed ({exc}): restoring now", None)
            _discard(spare, "hand-over failed")
            return None
        (req.run_dir / "qemu.cmd").write_text(
            shlex.join(spare.machine.argv) + f"\n# restored while the previous run ran (as {restored_as}); "
            "its disk then received this run's image and became this folder's disk.img\n")
        phases.seconds.update({f"ahead_{k}": v for k, v in spare.phases.seconds.items()})
        return spare.machine, spare.conn

    def _ensure_saved(self, req: GuestRequest, out: Path, info: dict) -> str | None:
        disk = req.disks[0].path
        if self.saved is None or self.saved.key != snapshot_key(req) or self.saved.disk_size != disk.stat().st_size:
            try:
                self.saved = self._save(req, out)
            except GuestError as exc:
                self.event(f"the snapshot guest did not come up: {exc}", out)
                return str(exc)
            info.update(booted=True, boot_seconds=round(self.saved.boot_seconds, 2),
                        save_seconds=round(self.saved.save_seconds, 2))
        return None

    def run(self, req: GuestRequest, *, watchdog=None, timeout: float | None = None) -> GuestRun:
        started = time.monotonic()
        out, console = req.run_dir / "guest.log", req.run_dir / "console.log"
        info: dict = {"backend": self.name}
        if not req.disks:
            raise GuestError("the snapshot backend runs the guest steps with their disk: the request has none")
        why = unusable(req.kernel)
        if why:  # bad input, not a boot failure: one line, before any run
            raise GuestError(why)
        try:
            failure = self._ensure_saved(req, out, info)
            if failure:
                return GuestRun(None, time.monotonic() - started, console, out, (), detail=f"snapshot: {failure}",
                                info={**info, "boot_failure": failure})
            return self._run_restored(req, watchdog, timeout, started, info)
        finally:
            self.ran()

    def _run_restored(self, req: GuestRequest, watchdog, timeout, started: float, info: dict) -> GuestRun:
        out, console = req.run_dir / "guest.log", req.run_dir / "console.log"
        reset = self.previous or "the first run on this snapshot"
        t0 = time.monotonic()
        try:
            phases = Phases(info)
            taken = self._take(req, phases)
            if taken:
                info["restored_ahead"] = True
            machine, conn = taken or self._restore(req, self.saved, phases)
        except GuestError as exc:
            self.event(f"{req.run_dir.name}: restoring the snapshot failed: {exc}", out)
            return GuestRun(None, time.monotonic() - started, console, out, (),
                            detail=f"snapshot: restore failed: {exc}", info={**info, "boot_failure": str(exc)})
        restore_s = time.monotonic() - t0
        info.update(snapshot=str(self.saved.folder), restore_seconds=round(restore_s, 3), reset_after=reset)
        how = "restored ahead, taken" if taken else "restored"
        self.event(f"{req.run_dir.name}: fresh guest from snapshot {self.snapshots}, {how} in {restore_s:.1f} s "
                   f"(the previous guest: {reset})", out)
        self.previous = "clean (every run starts from the snapshot all the same)"
        if self.ahead:
            self._prefetch(req)  # the next run's guest restores while this one runs
        # fresh randomness (every run starts from the same memory); no block cache from the boot's disk
        staging = Staging(guest_run=str(req.run_dir), device=VirtioDisk(DISK_SERIAL), disposable=True,
                          prepare=f"echo {os.urandom(32).hex()} > /dev/urandom && sync && "
                                  "echo 3 > /proc/sys/vm/drop_caches")
        try:
            run = run_over(req, conn, machine, RunConsole(machine), staging, watchdog=watchdog, timeout=timeout,
                           info=info)
        finally:
            with phases("stop"):
                conn.close()
                machine.stop("run done")
                machine.qmp_path.unlink(missing_ok=True)
        return GuestRun(run.returncode, time.monotonic() - started, console, out, tuple(machine.argv),
                        detail=run.detail, info=run.info, signals=run.signals)


BACKENDS.add("snapshot", Snapshot)
