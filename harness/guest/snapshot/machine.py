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
it overlaps; ``HARNESS_AHEAD=0`` (the switch every backend honours; the old
``HARNESS_SNAPSHOT_AHEAD=0`` still works) restores each guest when its run
starts instead.  Each run's result.json says which (``restored_ahead``) and
where its time went (``phases``).

The saved guest outlives the session: it is kept in the cache
(harness.guest.snapshot.store, ``$HARNESS_CACHE/snapshots/<key>/``), keyed by
the kernel file's sha256, the initramfs's inputs, the machine's QEMU command
line, the disk's size and QEMU's version, verified (its state's sha256)
before every session reuses it, so a second repro or proof on the same
kernel starts with a restore ("restored the saved guest <key>/boot-N (made
...)" in session.log), not a boot.  Every run restored from one saved guest
meets the same post-boot memory layout and RNG state: ``snapshot:boots=K``
(or a request's ``boots``, a spec's ``guest: {boots: K}``) keeps K saved
guests of K separate boots and spreads the runs over them round-robin (run
i on boot i mod K + 1, each booted the first time its turn comes); each
run's result.json ``guest`` record names its ``boot`` and ``snapshot_key``.

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
import dataclasses
import logging
import os
import shlex
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import Timeout

from harness import proc
from harness.errors import GuestError, HarnessError
from harness.guest.background import Background
from harness.guest.machine import BACKENDS, Backend, GuestRequest, GuestRun, guests_ahead
from harness.guest.protocol import SNAPSHOT_FAILED, SNAPSHOT_READY, VirtioDisk, slice_console
from harness.guest.remote import Phases, Staging, run_over
from harness.guest.snapshot import dump, store
from harness.guest.snapshot.initramfs import build_initramfs, inputs_digest, libraries
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
OLD_AHEAD = "HARNESS_SNAPSHOT_AHEAD"  # the old spelling of machine.AHEAD=0 (deprecated, still honoured)


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
    if req.vmcore:
        argv += dump.qemu_options()
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
class Entry:
    """The store's entry for one kind of request: its key and fields, the keys and initramfs its boots share."""

    key: str
    fields: dict
    keys: Keys
    initrd: Path
    disk_size: int
    boots: int  # how many separate boots this session's runs are spread over


@dataclass
class Saved:
    """A saved post-boot guest: boot ``boot`` of ``entry``, verified this session."""

    entry: Entry
    boot: int
    state: Path
    meta: dict  # its boot.json (made, boot_seconds, save_seconds)

    @property
    def label(self) -> str:
        return f"{self.entry.key}/boot-{self.boot}"


@dataclass
class Spare:
    """A guest restored ahead: QEMU on a blank disk of the run's size, loaded, running, connected."""

    machine: Machine
    saved: Saved  # the saved guest it restored
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
    usage = "snapshot[:boots=K]"
    help = ("one boot, every run restored from the saved post-boot guest, kept in the cache for the next session "
            "(needs virtio-net; the reproducer is compiled once in a vng guest of the same kernel); boots=K: "
            "runs spread round-robin over K saved guests of K separate boots")
    compiles = False
    persistent = True
    attaches_disks = True
    dumps_memory = True

    def __init__(self, boots: int | None = None) -> None:
        super().__init__()
        self.private: Path | None = None  # the session's short private folder: QMP sockets
        self.boots = boots  # None: the request's (a spec's guest: {boots: K}); else this many, whatever it asks
        self.store: store.Store | None = None
        self.entries: dict[tuple, Entry] = {}  # the store's entry of each kind of request met this session
        self.saved: dict[tuple[str, int], Saved] = {}  # (entry key, boot) -> verified this session
        self.turn = 0  # runs so far: run i restores boot i mod K + 1
        self.snapshots = 0
        self.restored = 0  # runs restored from a saved guest so far
        self.sockets = 0
        self.spare: Spare | None = None  # the next run's guest, restored while the current run runs
        self.spares = 0
        self.ahead = guests_ahead(1, old=OLD_AHEAD) > 0  # one spare at most: the next run's guest

    @classmethod
    def parse(cls, arg: str) -> Snapshot:
        """``snapshot``, or ``snapshot:boots=K`` (``snapshot:K``): every run on one of K saved guests."""
        if not arg:
            return cls()
        text = arg.removeprefix("boots=")
        if not text.isdigit() or int(text) < 1:
            raise GuestError(f"backend snapshot takes boots=K with K a whole number, at least 1 (got snapshot:{arg})")
        return cls(boots=int(text))

    def open(self, folder: Path, *, progress=None) -> None:
        super().open(folder, progress=progress)
        self.private = Path(tempfile.mkdtemp(prefix="harness-snap-"))
        self.store = store.Store()

    def close(self) -> None:
        self._drop_spare("the session is over")
        self.saved.clear()  # the saved guests stay in the store for the next session
        self.entries.clear()
        if self.private is not None:
            shutil.rmtree(self.private, ignore_errors=True)
            self.private = None
        if self.store is not None:
            self.store.memo.save()
        super().close()

    def event(self, text: str, run_log: Path | None = None) -> None:
        super().event(text, run_log)
        log.info("%s", text)

    def replace(self, reason: str) -> None:
        """Every run starts from the snapshot anyway: the reason (``unfit``) is what the next run's log says."""
        super().replace(reason)

    def _drop_spare(self, why: str) -> None:
        spare, self.spare = self.spare, None
        if spare is not None:
            spare.thread.join(RESTORE_TIMEOUT + 40)
            _discard(spare, why)
            if spare.error is None:  # never used and nothing to tell: no trace
                shutil.rmtree(spare.machine.folder, ignore_errors=True)

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

    def _fields(self, req: GuestRequest, disk_size: int) -> dict:
        """What a saved guest for ``req`` is made of (store.key_fields): the kernel file by sha256, the
        initramfs by its inputs, the machine by its QEMU command line without the paths, QEMU's version."""
        assert self.store is not None
        memo = self.store.memo
        image = str(req.kernel.boot_image or req.kernel.image)

        def libs(progs: list[str]) -> list[str]:  # ldd once per program file, not once per session
            return list(dict.fromkeys(lib for p in progs for lib in memo.get("ldd", p, lambda f: libraries([f]))))

        placeholder = Path("@")
        return store.key_fields(
            kernel={"release": req.kernel.release, "image": image,
                    "sha256": memo.get("sha256", image, lambda f: store.sha256_file(Path(f)))},
            initramfs=inputs_digest(req.kernel, req.preload, libs),
            machine=qemu_argv(req, initrd=placeholder, console=placeholder, qmp=placeholder, port=0,
                              disk=placeholder),
            disk_size=disk_size, qemu=store.qemu_version(QEMU), preload=req.preload, lean=req.lean)

    def _entry(self, req: GuestRequest, out: Path) -> Entry:
        """The store's entry for ``req`` (its keys and initramfs made when missing), looked up once a session;
        the entries no harness can restore any more are swept when a new one is met."""
        assert self.store is not None
        disk_size = req.disks[0].path.stat().st_size
        boots = self.boots or req.boots
        seen = (snapshot_key(req), disk_size, boots)
        if seen in self.entries:
            return self.entries[seen]
        fields = self._fields(req, disk_size)
        key = store.entry_key(fields)

        def make(tmp: Path) -> dict:
            what = build_initramfs(tmp / "initramfs.cpio", req.kernel, make_keys(tmp / "keys"), req.preload)
            if what["missing"]:
                self.event(f"initramfs: not on this host, left out: {', '.join(what['missing'])}", None)
            return what

        self.store.entry(key, fields, make)
        folder = self.store.folder(key)
        entry = Entry(key, fields, Keys(folder / "keys", folder / "keys" / "client", folder / "keys" / "guest_host_key"),
                      folder / "initramfs.cpio", disk_size, boots)
        for gone in self.store.sweep(fields["qemu"], keep=(key,)):
            self.event(f"saved guest {gone} removed (no harness can restore it any more, or the store was full)", None)
        self.entries[seen] = entry
        return entry

    def _save(self, req: GuestRequest, out: Path, entry: Entry, boot: int, state: Path) -> dict:
        """Boot a guest for ``req``, check SSH, save it to ``state``; facts for its boot.json (raises GuestError)."""
        assert self.folder is not None
        self.snapshots += 1
        folder = self.folder / "guest" / f"snapshot-{self.snapshots:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        disk = req.disks[0].path
        self.event(f"boot {self.snapshots} of {req.kernel.name} ({req.accel}) to save a post-boot snapshot "
                   f"(saved guest {entry.key}/boot-{boot})", out)
        t0 = time.monotonic()
        self._drop_spare("a new snapshot")
        # the same devices as every run's QEMU: a disk of the same size (each run drops the block
        # cache the boot's partition scan left, so the run reads its own copy from the first block)
        template = folder / "disk.img"
        shutil.copyfile(disk, template)
        machine = None
        try:
            machine = self._boot_machine(req, folder, entry.initrd, template)
            conn = self._first_connect(machine, entry.keys)
            try:
                said = conn.check("cat /proc/sys/kernel/tainted", timeout=30)
            finally:
                conn.close()
            boot_s, t1 = time.monotonic() - t0, time.monotonic()
            self._migrate_out(machine, state)
            save_s = time.monotonic() - t1
        finally:
            if machine is not None:
                machine.stop("snapshot saved")
            template.unlink(missing_ok=True)
        self.event(f"snapshot {self.snapshots}: booted in {boot_s:.1f} s (initramfs "
                   f"{entry.initrd.stat().st_size >> 20} MiB), taint {said.strip()}, saved in {save_s:.1f} s "
                   f"({state.stat().st_size >> 20} MiB) as {entry.key}/boot-{boot}", out)
        return {"boot_seconds": round(boot_s, 2), "save_seconds": round(save_s, 2), "taint": said.strip(),
                "kernel": req.kernel.name, "booted_in": str(folder)}

    def _first_connect(self, machine: Machine, keys: Keys, tries: int = 4) -> Connection:
        """The first SSH connection to a guest that just said READY: a reset or a refusal is tried again for a
        few seconds while QEMU runs (seen once under load: the banner reset 3 s after READY); raises GuestError."""
        for attempt in range(1, tries + 1):
            try:
                return Connection(self._endpoint(machine.port, keys)).connect(timeout=30)
            except GuestError as exc:
                if attempt == tries or machine.gone() or not any(
                        w in str(exc) for w in ("reset by peer", "refused", "protocol banner")):
                    raise
                self.event(f"the booted guest's sshd did not answer ({exc}): trying again", None)
                time.sleep(attempt)
        raise AssertionError("unreachable")

    def _qmp_path(self) -> Path:
        """A QMP socket path in the session's short private folder (a UNIX socket path has 107 bytes at most)."""
        assert self.private is not None
        self.sockets += 1
        return self.private / f"qmp-{self.sockets}.sock"

    @staticmethod
    def _endpoint(port: int, keys: Keys) -> Endpoint:
        return Endpoint("127.0.0.1", port, "root", keys.client, host_key=keys.host_pub, name="snapshot guest")

    # --- one run -----------------------------------------------------------------------------------

    def _machine(self, req: GuestRequest, saved: Saved, folder: Path, disk: Path) -> Machine:
        """A started QEMU waiting for the saved state (``folder``: its console.log, qemu.cmd, qemu.log)."""
        qmp_path, port = self._qmp_path(), free_port()
        argv = qemu_argv(req, initrd=saved.entry.initrd, console=folder / "console.log", qmp=qmp_path, port=port,
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
                return Connection(self._endpoint(machine.port, saved.entry.keys)).connect(timeout=30)
        except GuestError:
            machine.stop("restore failed")
            machine.qmp_path.unlink(missing_ok=True)
            raise

    def _restore(self, req: GuestRequest, saved: Saved, phases: Phases) -> tuple[Machine, Connection]:
        """A QEMU loading the saved state with the run's disk attached; raises GuestError."""
        machine = self._machine(req, saved, req.run_dir, req.disks[0].path)
        return machine, self._wake(machine, saved, phases)

    # --- the spare: the next run's guest, restored while this run runs --------------------------------

    def _prefetch(self, req: GuestRequest, saved: Saved) -> None:
        """Start restoring the next run's guest now from ``saved``, on a blank disk of the same size (a thread
        loads the state and connects; QEMU itself runs on its leash like every guest)."""
        assert self.folder is not None
        self.spares += 1
        folder = self.folder / "guest" / f"spare-{self.spares:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        slot = folder / "disk.img"
        size = saved.entry.disk_size
        with open(slot, "wb") as fh:
            fh.truncate(size)
        try:
            machine = self._machine(req, saved, folder, slot)
        except (GuestError, OSError) as exc:
            self.event(f"restoring the next run's guest ahead failed: {exc}", None)
            return
        spare = Spare(machine, saved, slot, size)
        spare.thread = threading.Thread(target=self._wake_spare, args=(spare, saved), daemon=True,
                                        name="harness-snapshot-spare")
        spare.thread.start()
        self.spare = spare

    def _wake_spare(self, spare: Spare, saved: Saved) -> None:
        try:
            spare.conn = self._wake(spare.machine, saved, spare.phases)
        except Exception as exc:  # noqa: BLE001 (told at take(): that run restores the usual way)
            spare.error = str(exc)

    def _take(self, req: GuestRequest, saved: Saved, phases: Phases) -> tuple[Machine, Connection] | None:
        """The spare for this run (restored from ``saved``), its disk filled with the run's image and moved into
        the run folder; None when there is none or it does not fit (that run restores the usual way)."""
        spare, self.spare = self.spare, None
        if spare is None:
            return None
        spare.thread.join(RESTORE_TIMEOUT + 40)
        disk = req.disks[0].path
        why = (spare.error or ("still restoring" if spare.thread.is_alive() else None)
               or (f"restored from {spare.saved.label}, not {saved.label}" if spare.saved is not saved else None)
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

    def _ensure_saved(self, req: GuestRequest, out: Path, info: dict, turn: int) -> Saved | str:
        """The saved guest for run ``turn`` (boot ``turn mod K + 1`` of the request's entry), verified, or made now
        (a boot and a save, or another harness's, waited for); a one-line failure."""
        assert self.store is not None
        try:
            entry = self._entry(req, out)
            boot = turn % entry.boots + 1
            saved = self.saved.get((entry.key, boot))
            if saved is not None:
                return saved
            made = self.store.boot(entry.key, boot, entry.fields, lambda state: self._save(req, out, entry, boot, state),
                                   on_wait=lambda: self.event(f"another harness is saving {entry.key}/boot-{boot}: "
                                                              "waiting for it", out))
        except GuestError as exc:
            self.event(f"the snapshot guest did not come up: {exc}", out)
            return str(exc)
        except Timeout as exc:  # its lock file names the saved guest
            why = (f"another harness held {Path(exc.lock_file).name.removesuffix('.lock')} for "
                   f"{store.LOCK_WAIT:.0f} s (a lock of the saved guests, {Path(exc.lock_file).parent})")
            self.event(why, out)
            return why
        if made.made_now:
            info.update(booted=True, boot_seconds=made.meta["boot_seconds"], save_seconds=made.meta["save_seconds"])
        return self._adopt(entry, made, out)

    def _adopt(self, entry: Entry, made: store.Boot, out: Path | None) -> Saved:
        saved = self.saved[(entry.key, made.index)] = Saved(entry, made.index, made.state, made.meta)
        if not made.made_now:
            self.event(f"restored the saved guest {saved.label} (made {made.meta['made']})", out)
        return saved

    def _ready(self, req: GuestRequest, turn: int) -> Saved | None:
        """The saved guest run ``turn`` will restore if it exists already (verified now if not yet); None when
        it is still to be booted (that run boots it: nothing is restored ahead for it)."""
        assert self.store is not None
        entry = self._entry(req, req.run_dir / "guest.log")
        boot = turn % entry.boots + 1
        saved = self.saved.get((entry.key, boot))
        if saved is None:
            made = self.store.verified(entry.key, boot, entry.fields)
            saved = self._adopt(entry, made, None) if made else None
        return saved

    def run(self, req: GuestRequest, *, watchdog=None, timeout: float | None = None) -> GuestRun:
        started = time.monotonic()
        out, console = req.run_dir / "guest.log", req.run_dir / "console.log"
        info: dict = {"backend": self.name}
        if not req.disks:
            raise GuestError("the snapshot backend runs the guest steps with their disk: the request has none")
        why = unusable(req.kernel)
        if why:  # bad input, not a boot failure: one line, before any run
            raise GuestError(why)
        if req.vmcore:  # a saved guest of its own: the vmcoreinfo device, and the driver that fills it in
            req = dataclasses.replace(req, preload=tuple(dict.fromkeys((*req.preload, dump.FW_CFG_MODULE))))
        try:
            saved = self._ensure_saved(req, out, info, self.turn)
            self.turn += 1
            if isinstance(saved, str):
                return GuestRun(None, time.monotonic() - started, console, out, (), detail=f"snapshot: {saved}",
                                info={**info, "boot_failure": saved})
            return self._run_restored(req, saved, watchdog, timeout, started, info)
        finally:
            self.ran()

    def _run_restored(self, req: GuestRequest, saved: Saved, watchdog, timeout, started: float,
                      info: dict) -> GuestRun:
        out, console = req.run_dir / "guest.log", req.run_dir / "console.log"
        reset = self.unfit or ("clean (every run starts from the snapshot all the same)" if self.restored
                               else "the first run on this snapshot")
        t0 = time.monotonic()
        try:
            phases = Phases(info)
            taken = self._take(req, saved, phases)
            if taken:
                info["restored_ahead"] = True
            machine, conn = taken or self._restore(req, saved, phases)
        except GuestError as exc:
            self.event(f"{req.run_dir.name}: restoring the snapshot failed: {exc}", out)
            return GuestRun(None, time.monotonic() - started, console, out, (),
                            detail=f"snapshot: restore failed: {exc}", info={**info, "boot_failure": str(exc)})
        restore_s = time.monotonic() - t0
        self.store.touch(saved.entry.key)  # in use: not evicted for room while this session runs
        info.update(snapshot=str(saved.state.parent), snapshot_key=saved.entry.key, boot=saved.boot,
                    boots=saved.entry.boots, saved_made=saved.meta.get("made"), restore_seconds=round(restore_s, 3),
                    reset_after=reset)
        how = "restored ahead, taken" if taken else "restored"
        self.event(f"{req.run_dir.name}: fresh guest from saved guest {saved.label}, {how} in {restore_s:.1f} s "
                   f"(the previous guest: {reset})", out)
        self.unfit, self.restored = None, self.restored + 1
        if self.ahead:  # the next run's guest restores while this one runs (if its boot is saved already)
            ahead = self._ready(req, self.turn)
            if ahead is not None:
                self._prefetch(req, ahead)
        # fresh randomness (every run starts from the same memory); no block cache from the boot's disk
        staging = Staging(guest_run=str(req.run_dir), device=VirtioDisk(DISK_SERIAL), disposable=True,
                          prepare=f"echo {os.urandom(32).hex()} > /dev/urandom && sync && "
                                  "echo 3 > /proc/sys/vm/drop_caches" + (f" && {dump.GUEST_SETUP}" if req.vmcore else ""))
        watch = dump.CoreWatch(machine, req.run_dir, watchdog) if req.vmcore else None
        try:
            run = run_over(req, conn, machine, RunConsole(machine), staging, watchdog=watch or watchdog,
                           timeout=timeout, info=info)
            if watch is not None:
                run.info["vmcore"] = core_record(watch, req.kernel)
        finally:
            with phases("stop"):
                conn.close()
                machine.stop("run done")
                machine.qmp_path.unlink(missing_ok=True)
        return GuestRun(run.returncode, time.monotonic() - started, console, out, tuple(machine.argv),
                        detail=run.detail, info=run.info, signals=run.signals)


def core_record(watch: dump.CoreWatch, kernel: Kernel) -> dict:
    """result.json's ``vmcore``: the dump (or why there is none) and where the kernel's debug info is."""
    record = watch.record or {"error": "no crash report on the console: nothing was dumped"}
    vmlinux = kernel.vmlinux if kernel.vmlinux and kernel.vmlinux.exists() else None
    where = str(vmlinux) if vmlinux else ("the -dbg package (`harness vmcore` fetches it)" if kernel.kind == "debian"
                                          else f"none: {kernel.name} has no vmlinux")
    return {**record, "vmlinux": where}


BACKENDS.add("snapshot", Snapshot)
