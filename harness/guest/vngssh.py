"""vng-ssh: one long-lived guest, each run a separate command over SSH.

The guest boots once (vng, same kernel and cmdline as the vng backend) with
an sshd we configure ourselves and a NIC whose port 22 is forwarded to a free
port on 127.0.0.1 only (QEMU user networking, ``restrict=on``: the guest
reaches nothing else).  Before the boot the host makes two throwaway ed25519
keys: the guest's host key (pinned: the client accepts that key and no other)
and the client key (the guest's only authorized key).  Both live in a private
temporary folder the guest reads through the shared root, and are deleted when
the session closes.

The guest shares the host's root read-only and nothing read-write: a run's
files (its steps script, source, the image copy) are read where they are, the
image is first copied into the guest's RAM and attached to a loop device, and
what the run produces (the binary it compiles, the image when it is evidence)
comes home over SSH (harness.guest.remote).  The console keeps streaming to
``guest/boot-NN/console.log``; each run's console.log is its window.

The run driver decides when a guest may not take another run (an oops or any
other report in the run's window, a new taint bit, a hang, a lost
connection) and calls ``replace``: the next run gets a freshly booted guest.
Specs that boot with ``oops=panic`` (ext4_inline) keep it: a BUG powers the
guest off at once, the run keeps the console up to the panic.

Boots are lean: vng runs inside a private mount namespace in which udevd and
systemd-tmpfiles are not executable (``lean_prefix``), so virtme-ng-init skips
them (11 of 18 s of a TCG boot; the SSH guest needs neither), and the boot
script starts four programs.  Once a run of the session has needed a reboot,
``$HARNESS_AHEAD=N`` (the switch every backend honours; ``vng-ssh:N``, the old
spelling, still sets it) keeps N guests (default 2) booting ahead for the runs
still to come; a crash then costs the wait for a guest that is (nearly) up.

Each run's result.json gains a "guest" record (boot number, whether this run
booted it and why the previous guest was dropped, taint before/after, probe)
and every boot and reboot is a line in the results folder's session.log and
at the top of the run's guest.log.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.errors import GuestError, HarnessError
from harness.guest.background import Background
from harness.guest.machine import (
    AHEAD,
    BACKENDS,
    MAX_AHEAD,
    Backend,
    GuestRequest,
    GuestRun,
    deprecated,
    guests_ahead,
    new_taint,
    taint_letters,
)
from harness.guest.protocol import MARK, SSH_FAILED, SSH_READY, LoopImage, render, slice_console
from harness.guest.remote import PROBE_TIMEOUT, Staging, run_over
from harness.guest.ssh import (
    GUEST_DIR,
    GUEST_IP,
    Connection,
    Endpoint,
    HostKeyError,
    Keys,
    free_port,
    known_hosts_line,
    make_keys,
    ssh_command,
    sshd_config,
)
from harness.guest.vng import VngBoot, vng_argv, vng_binary, vng_env

log = logging.getLogger(__name__)

SSHD_LISTENING = "Server listening on"  # sshd -e says so on stderr (the boot's guest.log) once bound
SSHD_GRACE = 90.0  # seconds past the spec's boot_timeout for sshd to answer
DEFAULT_AHEAD = 2  # guests booting ahead once a run needed a reboot ($HARNESS_AHEAD, or vng-ssh:N, sets N)


def boot_script(keys: Keys, preload: tuple[str, ...] = ()) -> str:
    """The guest's vng command: network up, sshd in the foreground (its exit powers the guest off).

    ``preload``: modules (``fs-ext4``) loaded in the background once sshd is
    on its way, so a guest booted ahead has them before its run mounts."""
    config = sshd_config()
    assert "'" not in config  # it goes into the script in single quotes
    return render(
        "ssh-boot.sh", FAILED=SSH_FAILED, MARK=MARK, GUEST_DIR=GUEST_DIR, HOST_KEY=shlex.quote(str(keys.host)),
        CLIENT_PUB=shlex.quote(str(keys.client_pub)), SSHD_CONFIG=config, GUEST_IP=GUEST_IP, READY=SSH_READY,
        PRELOAD=f"(modprobe -q -a {shlex.join(preload)} &)\n" if preload else "",
    )


# virtme-ng-init runs systemd-tmpfiles and udev coldplug before the command
# whenever it finds them: about 11 s of an 18 s TCG boot, and what udev does
# there (find the script's virtio ports, load drivers for QEMU's devices) a
# session guest does not need: its I/O is SSH, and the boot script loads the
# one driver it uses (virtio_net).  virtme-ng has no switch for it, so the
# guest boots inside a private mount namespace in which these binaries are
# not executable (/dev/null bound over them); the 9p root the guest sees is
# that namespace's view, and the host's files are never touched.
SKIPPED_IN_GUEST = ("/usr/lib/systemd/systemd-udevd", "/lib/systemd/systemd-udevd", "udevd", "udevadm",
                    "systemd-tmpfiles")


def lean_prefix(paths: tuple[str, ...]) -> list[str]:
    """argv prefix that runs the rest with ``paths`` hidden (not executable) in a private mount namespace."""
    if not paths:
        return []
    binds = " && ".join(f"mount --bind /dev/null {shlex.quote(p)}" for p in paths)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{binds} && exec "$@"', "sh"]


def skipped_paths() -> tuple[str, ...]:
    """The real files behind SKIPPED_IN_GUEST on this host (symlinks resolved, each once)."""
    out: list[str] = []
    for name in SKIPPED_IN_GUEST:
        found = name if name.startswith("/") else shutil.which(name)
        if found and os.path.exists(found):
            out.append(os.path.realpath(found))
    return tuple(dict.fromkeys(out))


_LEAN: tuple[bool, str] | None = None


def lean_boot_available() -> tuple[bool, str]:
    """Whether session guests can boot without udev/tmpfiles here (needs unshare + mount: root)."""
    global _LEAN
    if _LEAN is None:
        if os.environ.get("HARNESS_SSH_LEAN_BOOT") == "0":
            _LEAN = (False, "HARNESS_SSH_LEAN_BOOT=0")
        elif shutil.which("unshare") is None:
            _LEAN = (False, "unshare(1) is missing")
        else:
            done = proc.run(lean_prefix(("/dev/null",)) + ["true"], capture=True, check=False, timeout=20)
            _LEAN = (True, "udev and systemd-tmpfiles hidden from the guest") if done.ok else (
                False, f"no private mount namespace here ({done.output.strip()[:80] or done.returncode}): "
                       "the guest runs udev and tmpfiles")
    return _LEAN


def net_opts(port: int) -> tuple[str, ...]:
    """QEMU user networking with only the guest's port 22 forwarded, from 127.0.0.1."""
    return ("-netdev", f"user,id=hssh0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-pci,netdev=hssh0")


def session_boot(req: GuestRequest, command: tuple[str, ...], port: int, cwd: Path) -> VngBoot:
    """A session guest's vng boot: the request's kernel and size, no disk, no writable share, the NIC."""
    return VngBoot(kernel=req.kernel, command=command, accel=req.accel, cpus=req.cpus, memory=req.memory,
                   cmdline=req.cmdline, cwd=cwd, lean=req.lean, qemu_extra=net_opts(port))


def boot_key(req: GuestRequest) -> tuple:
    """What a guest is booted with: a run that needs something else needs another boot."""
    return (str(req.kernel.image), req.kernel.release, req.accel, req.cpus, req.memory, req.cmdline, req.lean)


class BootFailed(HarnessError):
    pass


class SerialConsole:
    """A long-lived guest's serial log, one window per run (harness.guest.remote.Console)."""

    def __init__(self, read):
        self.read = read
        self.pos = 0  # where the next run's window starts

    def mark(self, conn) -> int:
        return self.pos

    def window(self, mark, token: str, conn, run_dir: Path) -> str:
        text, self.pos = slice_console(self.read(), token, mark)
        return text

    def text(self) -> str:
        return self.read()


class Guest(Background):
    """One boot: vng in the background, its console and sshd output in boot_dir."""

    label = "vng"

    def __init__(self, index: int, req: GuestRequest, boot_dir: Path, keys: Keys, port: int,
                 hide: tuple[str, ...] = ()):
        super().__init__()
        self.index, self.req, self.boot_dir, self.keys, self.port = index, req, boot_dir, keys, port
        self.hide = hide  # host binaries the guest must not find (lean_prefix)
        self.console = boot_dir / "console.log"
        self.output = boot_dir / "guest.log"
        self.started = 0.0
        self.ready_seconds: float | None = None

    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, "root", self.keys.client, host_key=self.keys.host_pub,
                        name=f"guest boot {self.index}")

    def start(self) -> None:
        self.boot_dir.mkdir(parents=True, exist_ok=True)
        script = self.boot_dir / "boot.sh"
        script.write_text(boot_script(self.keys, self.req.preload))
        boot = session_boot(self.req, ("bash", str(script)), self.port, self.boot_dir)
        vng = vng_binary()
        self.argv = lean_prefix(self.hide) + vng_argv(boot, vng)
        (self.boot_dir / "vng.cmd").write_text(shlex.join(self.argv) + "\n")
        (self.boot_dir / "ssh.cmd").write_text(
            f"# the guest's pinned host key, as OpenSSH wants it:\n# {known_hosts_line('127.0.0.1', self.port, self.keys.host_pub)}"
            f"{ssh_command(self.endpoint(), self.keys.folder / 'known_hosts')}\n")
        (self.keys.folder / "known_hosts").write_text(known_hosts_line("127.0.0.1", self.port, self.keys.host_pub))
        self.started = time.monotonic()
        self.launch(f"vng-ssh-boot-{self.index}", stdout_path=self.output, stderr_path=self.console,
                    cwd=self.boot_dir, env=vng_env(vng))

    def text(self, which: str = "output") -> str:
        path = self.output if which == "output" else self.console
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> Connection:
        """The guest's sshd answering with the pinned key, or BootFailed."""
        deadline = time.monotonic() + timeout
        last = "sshd never started"
        while time.monotonic() < deadline:
            # without udev (lean_prefix) virtme-ng-init runs the boot script on the console: its lines
            # land in console.log (vng's stderr), and in guest.log only when vng flushes at exit
            out = self.text() + "\n" + self.text("console")
            if SSH_FAILED in out:
                line = next(ln for ln in out.splitlines() if SSH_FAILED in ln)
                raise BootFailed(line.replace(f"{SSH_FAILED}: ", "guest setup failed: "))
            why = self.gone()
            if why:
                raise BootFailed(f"{why} before its sshd answered")
            if SSH_READY in out and SSHD_LISTENING in out:  # before sshd binds, QEMU accepts and resets
                try:
                    conn = Connection(self.endpoint()).connect(timeout=15)
                    self.ready_seconds = time.monotonic() - self.started
                    return conn
                except HostKeyError:
                    raise  # something else answers on our port: never retry that
                except GuestError as exc:
                    last = str(exc)
            time.sleep(0.25)
        raise BootFailed(f"no SSH answer within {timeout:.0f} s of boot ({last})")

    def port_taken(self) -> bool:
        text = self.text("console") + self.text()
        return "hostfwd" in text or "host forwarding rule" in text

    def stop(self, reason: str, conn: Connection | None = None) -> None:
        """Power off (a healthy guest, through sysrq) or kill (anything else)."""
        if self.gone():
            return
        if conn is not None and conn.active:
            conn.run("echo o > /proc/sysrq-trigger", timeout=5)
            if self.wait_gone(15):
                return
        self.kill(reason)  # proc.run's watchdog: kills vng's process group


@dataclass
class Current:
    """The guest runs go to, its connection and what it has seen."""

    guest: Guest
    conn: Connection
    key: tuple
    console: SerialConsole
    runs: int = 0
    last_taint: int | None = None


class VngSsh(Backend):
    """The vng-ssh backend (see the module doc)."""

    name = "vng-ssh"
    usage = "vng-ssh"
    help = ("one long-lived guest, runs over SSH, replaced after an oops/new taint/hang/lost connection, with "
            f"$HARNESS_AHEAD guests (default {DEFAULT_AHEAD}) booting ahead once a run has needed one")
    persistent = True
    shares_root = True

    def __init__(self, ahead: int | None = None):
        super().__init__()
        self.ahead = guests_ahead(DEFAULT_AHEAD) if ahead is None else ahead
        self.spares: list[Guest] = []  # booting (or ready, idle) for the runs to come, oldest first
        self.spare_key: tuple | None = None
        self.crashy = False  # a run of this session needed a new guest: from then on, boot ahead
        self.hide: tuple[str, ...] | None = None  # lean_prefix paths, decided at the first boot
        self.keys: Keys | None = None
        self.current: Current | None = None
        self.booting: Guest | None = None  # a guest booting in the foreground (stopped by close on Ctrl-C)
        self.last_req: GuestRequest | None = None
        self.boots = 0

    @classmethod
    def parse(cls, arg: str) -> VngSsh:
        if not arg:
            return cls()
        if not (arg.isdigit() and int(arg) <= MAX_AHEAD):
            raise GuestError(f"backend vng-ssh:{arg}: the argument is how many guests boot ahead once a run has "
                             f"needed a reboot, 0 to {MAX_AHEAD} (better: {AHEAD}=N, which every backend honours)")
        deprecated(f"--backend vng-ssh:N is the old spelling of {AHEAD}=N (the switch every backend honours)")
        return cls(int(arg))

    # --- session ------------------------------------------------------------------------

    def open(self, folder: Path, *, progress=None) -> None:
        super().open(folder, progress=progress)
        self.keys = make_keys(Path(tempfile.mkdtemp(prefix="harness-ssh-")))

    def close(self) -> None:
        self._drop_spares("session closed")
        self._stop_guest("session closed", graceful=True)
        if self.booting is not None:
            self.booting.stop("session closed")
            self.booting = None
        if self.keys is not None:
            shutil.rmtree(self.keys.folder, ignore_errors=True)
            self.keys = None
        super().close()

    def event(self, text: str, run_log: Path | None = None) -> None:
        super().event(text, run_log)
        log.info("%s", text)

    def replace(self, reason: str) -> None:
        """The driver's decision: the next run gets another guest; from now on guests boot ahead."""
        super().replace(reason)
        self.crashy = True
        self.event(f"the guest will be rebooted: {reason}")
        if self.last_req is not None and self.remaining is not None:
            self._top_up(self.last_req, self.remaining)

    # --- the guest -----------------------------------------------------------------------

    def _unfit(self, req: GuestRequest) -> str | None:
        cur = self.current
        if cur is None:
            return None
        if self.unfit:
            return self.unfit
        if boot_key(req) != cur.key:
            return "this run needs another kernel, cmdline or guest size"
        why = cur.guest.gone()
        if why:
            return why
        if not cur.conn.active:
            return "the SSH connection is down"
        done, text = cur.conn.run("cat /proc/sys/kernel/tainted", timeout=PROBE_TIMEOUT)
        if not done.ok:
            return f"the guest does not answer ({done.killed or 'connection lost'})"
        try:
            now = int(text.strip())
        except ValueError:
            return f"unreadable taint {text.strip()[:40]!r}"
        if new_taint(cur.last_taint, now):
            return f"kernel taint changed between runs {taint_letters(cur.last_taint)} -> {taint_letters(now)}"
        return None

    def _stop_guest(self, reason: str, graceful: bool = False) -> None:
        cur, self.current, self.unfit = self.current, None, None
        if cur is not None:
            cur.guest.stop(reason, cur.conn if graceful else None)
            cur.conn.close()

    def _new_guest(self, req: GuestRequest) -> Guest:
        """Start booting a guest for ``req`` (returns at once)."""
        assert self.folder is not None and self.keys is not None
        if self.hide is None:
            lean, why = lean_boot_available()
            self.hide = skipped_paths() if lean else ()
            self.event(f"session guests: {why}")
        self.boots += 1
        boot_dir = self.folder / "guest" / f"boot-{self.boots:02d}"
        guest = Guest(self.boots, req, boot_dir, self.keys, free_port(), hide=self.hide)
        guest.start()
        return guest

    def _adopt(self, guest: Guest, conn: Connection, req: GuestRequest) -> None:
        self.current = Current(guest, conn, boot_key(req), SerialConsole(lambda: guest.text("console")))

    def _boot(self, req: GuestRequest, boot_timeout: float) -> str | None:
        """Boot a guest for ``req`` in the foreground; None when ready, else why it failed."""
        failure = "not booted"
        for _attempt in range(3):
            guest = self.booting = self._new_guest(req)  # close() stops it, even mid-boot (Ctrl-C)
            try:
                conn = guest.wait_ready(boot_timeout)
            except BootFailed as exc:
                failure = str(exc)
                guest.stop(failure)
                if guest.port_taken():
                    continue  # another process took the port between our probe and QEMU's bind
                return failure  # the stopped guest stays for its logs
            finally:
                self.booting = None
            self._adopt(guest, conn, req)
            return None
        return failure

    def _take_spare(self, req: GuestRequest, boot_timeout: float, run_log: Path) -> bool:
        """Adopt the oldest guest booted ahead (waiting for its sshd if need be); False if none is usable."""
        if self.spares and self.spare_key != boot_key(req):
            self._drop_spares("the run needs another kernel, cmdline or guest size")
        while self.spares:
            guest = self.booting = self.spares.pop(0)
            try:
                conn = guest.wait_ready(boot_timeout)
            except BootFailed as exc:
                self.event(f"boot {guest.index} (booted ahead) failed: {exc}", run_log)
                guest.stop(str(exc))
                continue
            finally:
                self.booting = None
            self._adopt(guest, conn, req)
            return True
        return False

    def _top_up(self, req: GuestRequest, later: int | None) -> None:
        """Keep ``ahead`` guests booting for the runs after this one, once the session has needed a reboot.

        Under TCG a boot keeps about one host CPU busy; booting the next runs'
        guests while this one runs uses the other, so a crash costs the wait
        for a guest that is already (nearly) up instead of a whole boot."""
        if not self.crashy or later is None:
            return
        want = min(self.ahead, later)  # guests for the runs still to come after the current one
        self.spare_key = boot_key(req)  # _take_spare dropped any spares booted for another key
        while len(self.spares) < want:
            guest = self._new_guest(req)
            self.spares.append(guest)
            self.event(f"boot {guest.index} started ahead, for a run after {req.run_dir.name}")

    def _drop_spares(self, reason: str) -> None:
        spares, self.spares = self.spares, []
        for guest in spares:
            guest.stop(reason)

    # --- one run -------------------------------------------------------------------------

    def _ensure_guest(self, req: GuestRequest, watchdog, out: Path, info: dict) -> str | None:
        """A guest fit for ``req`` (rebooting when the last run made it unfit); None, or why none came up."""
        why = self._unfit(req)
        if why:
            self.event(f"reboot before {req.run_dir.name}: {why}", out)
            info["reboot_before"] = why
            self._stop_guest(why)
        if self.current is not None:
            info.update(boot=self.current.guest.index, booted=False)
            self.event(f"{req.run_dir.name} on boot {self.current.guest.index} (run {self.current.runs + 1} on it)",
                       out)
            return None
        boot_timeout = float(getattr(watchdog, "boot_timeout", 240)) + SSHD_GRACE
        t0 = time.monotonic()
        if self._take_spare(req, boot_timeout, out):
            guest, waited = self.current.guest, time.monotonic() - t0
            info.update(boot=guest.index, booted=True, booted_ahead=True, boot_wait_seconds=round(waited, 2),
                        boot_seconds=round(guest.ready_seconds or 0, 2))
            self.event(f"boot {guest.index} (booted ahead) takes {req.run_dir.name}: up in "
                       f"{guest.ready_seconds or 0:.1f} s, waited {waited:.1f} s for it, ssh port {guest.port}", out)
        else:
            self.event(f"boot {self.boots + 1} for {req.run_dir.name} ({req.kernel.name}, {req.accel})", out)
            failure = self._boot(req, boot_timeout)
            info.update(boot=self.boots, booted=True, boot_seconds=round(time.monotonic() - t0, 2))
            if failure:
                self.event(f"boot {self.boots} failed: {failure}", out)
                self.unfit = f"boot {self.boots} failed"
                return failure
            self.event(f"boot {self.boots} ready in {info['boot_seconds']:.1f} s, ssh port "
                       f"{self.current.guest.port}", out)
        self._top_up(req, None if self.remaining is None else self.remaining - 1)  # this run is still counted
        return None

    def run(self, req: GuestRequest, *, watchdog=None, timeout: float | None = None) -> GuestRun:
        started = time.monotonic()
        out = req.run_dir / "guest.log"
        info: dict = {"backend": self.name}
        self.last_req = req
        try:
            failure = self._ensure_guest(req, watchdog, out, info)
            if failure:
                return self._boot_failure(failure, req, started, info)
            cur = self.current
            cur.runs += 1
            info.update(run_on_boot=cur.runs, boot_folder=str(cur.guest.boot_dir))
            where = f"{GUEST_DIR}/{req.run_dir.name}-{uuid.uuid4().hex[:8]}"
            image = str(req.disks[0].path) if req.disks else None
            staging = Staging(guest_run=where, device=LoopImage(image, stage=f"{where}/img") if image else None,
                              shared=True, stage=f"{where}/img" if image else None)
            run = run_over(req, cur.conn, cur.guest, cur.console, staging, watchdog=watchdog, timeout=timeout,
                           info=info)
            cur.last_taint = run.signals.taint_after if run.signals else None
            return GuestRun(run.returncode, time.monotonic() - started, run.console_log, run.output_log,
                            tuple(cur.guest.argv), detail=run.detail, info=run.info, signals=run.signals)
        finally:
            self.ran()

    def _boot_failure(self, failure: str, req: GuestRequest, started: float, info: dict) -> GuestRun:
        """A guest that never came up: its console and output become the run's (a BOOT_FAILURE)."""
        console, out = req.run_dir / "console.log", req.run_dir / "guest.log"
        boot_dir = self.folder / "guest" / f"boot-{self.boots:02d}" if self.folder else None
        if boot_dir is not None and (boot_dir / "console.log").exists():
            console.write_text((boot_dir / "console.log").read_text(errors="replace"))
            with open(out, "a") as fh:
                fh.write((boot_dir / "guest.log").read_text(errors="replace") if (boot_dir / "guest.log").exists()
                         else "")
        info["boot_failure"] = failure
        return GuestRun(None, time.monotonic() - started, console, out, detail=f"vng-ssh: {failure}", info=info)


BACKENDS.add("vng-ssh", VngSsh)
