"""vng-ssh: one long-lived guest, each run a separate command over SSH.

The guest boots once (vng, same kernel, cmdline and sharing as the vng
backend) with an sshd we configure ourselves and a NIC whose port 22 is
forwarded to a free port on 127.0.0.1 only (QEMU user networking,
``restrict=on``: the guest reaches nothing else).  Before the boot the host
makes two throwaway ed25519 keys: the guest's host key (pinned: the client
accepts that key and no other) and the client key (the guest's only
authorized key).  Both live in a private temporary folder the guest reads
through the shared root, and are deleted when the session closes.

Per run:

- the run's own image copy (``run-NN/disk.img``, as with the vng backend)
  is attached to a loop device inside the guest: the results folder is
  shared read-write at boot, so every later run folder is visible in the
  guest.  Images up to 256 MiB are first copied into the guest's RAM, so the
  filesystem under test sits on RAM (as a cache=unsafe virtio disk mostly
  does), not on 9p round trips; the copy is brought back into the run folder
  only when it is evidence (data loss, a failed check).  (Attaching N virtio
  disks at boot was the other option; it fixes N in advance and leaves used
  filesystems attached to a guest that runs on.)
- the same guest steps script runs, its output streamed to the run's
  guest.log, under the run's own StepWatchdog;
- the console keeps streaming to ``guest/boot-NN/console.log``; each run's
  console.log is its window, from its ``harness: run TOKEN begin`` kmsg mark;
- /proc/sys/kernel/tainted is read before and after.

The guest is rebooted before the next run after an oops or any other report
in the run's window, a new taint bit, a hang (a host-side timeout, or the
in-guest timeout of the reproducer), or a lost connection.  Specs that boot
with ``oops=panic`` (ext4_inline) keep it: a BUG powers the guest off at
once, the run keeps the console up to the panic, and the next run gets a
fresh kernel, exactly as with one boot per run.  On a host-side timeout the
guest is probed with a trivial command (15 s): an answer means the kernel
still schedules (a slow or stuck reproducer), none means the kernel hung;
the run's detail and result.json say which.

Each run's result.json gains a "guest" record (boot number, whether this run
booted it and why the previous guest was dropped, taint before/after, probe)
and every boot and reboot is a line in the results folder's session.log and
at the top of the run's guest.log.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import shlex
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from harness import proc, report
from harness.errors import GuestError, HarnessError
from harness.guest import BACKENDS, GuestRequest, GuestRun, Persistent
from harness.guest.remote import (
    RunSignals,
    console_has_end,
    parse_taint,
    reboot_reason,
    slice_console,
    taint_letters,
    with_block_device,
    wrapper,
)
from harness.guest.ssh import Connection, Endpoint, HostKeyError, free_port, generate_key, known_hosts_line, ssh_command
from harness.guest.steps import MARK, parse_steps
from harness.guest.vng import vng_argv, vng_binary

log = logging.getLogger(__name__)

GUEST_IP = "10.0.2.15"  # QEMU user networking's first guest address
GUEST_DIR = "/run/harness-ssh"  # guest tmpfs: sshd's config, keys, per-run session ids
READY = f"{MARK} ssh-guest ready"
SSHD_LISTENING = "Server listening on"  # sshd -e says so on stderr (the boot's guest.log) once bound
FAILED = f"{MARK} ssh-guest error"
SSHD_GRACE = 90.0  # seconds past the spec's boot_timeout for sshd to answer
PROBE_TIMEOUT = 15.0
PANIC_EXIT_WAIT = 30.0  # a panic with panic=-1 powers the guest off; give QEMU this long
CONSOLE_SETTLE = 10.0  # for the run's end mark to reach the console (serial is real time)


@dataclass(frozen=True)
class Keys:
    folder: Path
    client: Path  # private; the guest authorizes client.pub
    host: Path  # the guest's private host key; host.pub is pinned

    @property
    def client_pub(self) -> Path:
        return self.client.with_name(self.client.name + ".pub")

    @property
    def host_pub(self) -> Path:
        return self.host.with_name(self.host.name + ".pub")


def make_keys(folder: Path) -> Keys:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = Keys(folder, folder / "client", folder / "guest_host_key")
    generate_key(keys.client, "harness-client")
    generate_key(keys.host, "harness-guest")
    return keys


def sshd_config() -> str:
    return f"""# sshd of a harness guest (generated; the guest's /run is its own tmpfs)
Port 22
ListenAddress 0.0.0.0
HostKey {GUEST_DIR}/ssh_host_ed25519_key
AuthorizedKeysFile {GUEST_DIR}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
PidFile {GUEST_DIR}/sshd.pid
MaxSessions 64
MaxStartups 64
Subsystem sftp internal-sftp
"""


_BOOT_SCRIPT = r"""#!/bin/bash
# harness vng-ssh guest (generated; do not edit)
exec 2>&1 </dev/null
up() { cut -d' ' -f1 /proc/uptime; }
fail() { echo "@FAILED@: $*"; exit 1; }
echo "@MARK@ ssh-guest boot $(up) kernel $(uname -r)"
echo 8 > /proc/sys/kernel/printk
S=@GUEST_DIR@
mkdir -p $S /run/sshd && chmod 700 $S && chmod 755 /run/sshd || fail "cannot make $S"
install -m 600 @HOST_KEY@ $S/ssh_host_ed25519_key || fail "cannot read the host key"
install -m 644 @CLIENT_PUB@ $S/authorized_keys || fail "cannot read the client key"
cat > $S/sshd_config <<'HARNESS_EOF'
@SSHD_CONFIG@HARNESS_EOF
# Without PAM, sshd refuses a root whose password field is locked ('*', '!').  The
# guest's /etc/shadow is its own (virtme-ng-init bind-mounts a tmpfs copy; else the
# /etc overlay): unlock root there, in place.  The host's file is never written.
case "$(findmnt -n -o FSTYPE --target /etc/shadow)" in
  tmpfs|overlay) ;;
  *) fail "/etc/shadow is not the guest's own copy: not touching it" ;;
esac
shadow=$(sed -E 's/^root:[^:]*:/root:harness-pubkey-only:/' /etc/shadow) && printf '%s\n' "$shadow" > /etc/shadow \
  || fail "cannot unlock root in the guest's /etc/shadow"
# Commands run through root's login shell: make it sh, so no ~/.bashrc of the host's
# root (pyenv, conda...) runs before each command.  Same rule: the guest's own copy only.
case "$(findmnt -n -o FSTYPE --target /etc/passwd)" in
  tmpfs|overlay)
    passwd=$(sed -E 's#^(root:[^:]*:[^:]*:[^:]*:[^:]*:[^:]*:).*#\1/bin/sh#' /etc/passwd) \
      && printf '%s\n' "$passwd" > /etc/passwd ;;
esac
modprobe loop 2>/dev/null
ip link set lo up
nic=
for i in $(seq 300); do
  nic=$(ls /sys/class/net | grep -v '^lo$' | head -1); [ -n "$nic" ] && break; sleep 0.1
done
[ -n "$nic" ] || fail "no network interface (virtio_net missing?)"
ip addr add @GUEST_IP@/24 dev "$nic" && ip link set "$nic" up || fail "cannot configure $nic"
echo "@READY@ $(up) nic $nic"
exec /usr/sbin/sshd -D -e -f $S/sshd_config
"""


def boot_script(keys: Keys) -> str:
    """The guest's vng command: network up, sshd in the foreground (its exit powers the guest off)."""
    values = {
        "@FAILED@": FAILED, "@MARK@": MARK, "@GUEST_DIR@": GUEST_DIR, "@HOST_KEY@": shlex.quote(str(keys.host)),
        "@CLIENT_PUB@": shlex.quote(str(keys.client_pub)), "@SSHD_CONFIG@": sshd_config(), "@GUEST_IP@": GUEST_IP,
        "@READY@": READY,
    }
    text = _BOOT_SCRIPT
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def net_opts(port: int) -> str:
    """QEMU user networking with only the guest's port 22 forwarded, from 127.0.0.1."""
    return (f"-netdev user,id=hssh0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22 "
            "-device virtio-net-pci,netdev=hssh0")


def session_argv(req: GuestRequest, port: int, vng: str = "vng") -> list[str]:
    """vng's command line for a session guest (pure): ``vng_argv`` plus the NIC."""
    argv = vng_argv(req, vng)
    for i, arg in enumerate(argv):
        if arg.startswith("--qemu-opts="):
            argv[i] = f"{arg} {net_opts(port)}"
            return argv
    argv.insert(argv.index("--"), f"--qemu-opts={net_opts(port)}")
    return argv


def boot_key(req: GuestRequest) -> tuple:
    """What a guest is booted with: a run that needs something else needs another boot."""
    return (str(req.kernel.image), req.kernel.release, req.accel, req.cpus, req.memory, req.cmdline, req.lean)


def shared_dirs(req: GuestRequest, run_dir: Path) -> tuple[Path, ...]:
    """Read-write shares for a session guest: the run's parent (the results folder, so
    later run folders appear in the guest) instead of the run folder itself."""
    out: list[Path] = [run_dir.parent]
    for d in req.rwdirs:
        if d != run_dir and not _under(d, run_dir.parent):
            out.append(d)
    return tuple(dict.fromkeys(out))


def _under(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


class BootFailed(HarnessError):
    pass


class Guest:
    """One boot: vng in a thread (through proc.run), its console and sshd output in boot_dir."""

    def __init__(self, index: int, req: GuestRequest, boot_dir: Path, keys: Keys, port: int):
        self.index = index
        self.req = req
        self.boot_dir = boot_dir
        self.keys = keys
        self.port = port
        self.console = boot_dir / "console.log"
        self.output = boot_dir / "guest.log"
        self.argv: list[str] = []
        self.done: proc.Completed | None = None
        self.error: BaseException | None = None
        self._stop: str | None = None
        self._thread: threading.Thread | None = None
        self.started = 0.0
        self.ready_seconds: float | None = None

    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, "root", self.keys.client, host_key=self.keys.host_pub,
                        name=f"guest boot {self.index}")

    def start(self) -> None:
        self.boot_dir.mkdir(parents=True, exist_ok=True)
        script = self.boot_dir / "boot.sh"
        script.write_text(boot_script(self.keys))
        req = replace(self.req, command=("bash", str(script)))
        self.argv = session_argv(req, self.port, vng_binary())
        (self.boot_dir / "vng.cmd").write_text(shlex.join(self.argv) + "\n")
        (self.boot_dir / "ssh.cmd").write_text(
            f"# the guest's pinned host key, as OpenSSH wants it:\n# {known_hosts_line('127.0.0.1', self.port, self.keys.host_pub)}"
            f"{ssh_command(self.endpoint(), self.keys.folder / 'known_hosts')}\n")
        (self.keys.folder / "known_hosts").write_text(known_hosts_line("127.0.0.1", self.port, self.keys.host_pub))
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"vng-ssh-boot-{self.index}", daemon=True)
        _LIVE.add(self)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.done = proc.run(self.argv, stdout_path=self.output, stderr_path=self.console, cwd=self.boot_dir,
                                 env={"PYTHONUNBUFFERED": "1"}, check=False, watchdog=lambda: self._stop)
        except BaseException as exc:  # noqa: BLE001 (reported by gone())
            self.error = exc
        finally:
            _LIVE.discard(self)

    def gone(self) -> str | None:
        """Why the guest is no longer running, or None while it runs."""
        if self._thread is None:
            return "not started"
        if self._thread.is_alive():
            return None
        if self.error is not None:
            return f"vng failed: {self.error}"
        rc = self.done.returncode if self.done else None
        return f"the guest stopped (vng exit {rc})" if rc is not None else "the guest was stopped"

    def wait_gone(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.gone() is not None

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
            out = self.text()
            if FAILED in out:
                line = next(ln for ln in out.splitlines() if FAILED in ln)
                raise BootFailed(line.replace(f"{FAILED}: ", "guest setup failed: "))
            why = self.gone()
            if why:
                raise BootFailed(f"{why} before its sshd answered")
            if READY in out and SSHD_LISTENING in out:  # before sshd binds, QEMU accepts and resets
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
        self._stop = reason  # proc.run's watchdog: kills vng's process group
        self.wait_gone(30)
        _LIVE.discard(self)


_LIVE: set[Guest] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Never leave a QEMU behind: vng runs in its own process group, beyond a dying interpreter."""
    for guest in list(_LIVE):
        guest._stop = "the harness is exiting"
    for guest in list(_LIVE):
        guest.wait_gone(10)


class VngSsh(Persistent):
    """The vng-ssh backend (see the module doc)."""

    name = "vng-ssh"

    def __init__(self, arg: str = ""):
        if arg:
            raise GuestError(f"backend vng-ssh takes no argument (got vng-ssh:{arg})")
        self.folder: Path | None = None
        self.progress = None
        self.keys: Keys | None = None
        self.guest: Guest | None = None
        self.conn: Connection | None = None
        self.key: tuple | None = None
        self.pending: str | None = None  # why the guest must be rebooted before the next run
        self.boots = 0
        self.runs_on_guest = 0
        self.console_pos = 0
        self.last_taint: int | None = None

    # --- session ------------------------------------------------------------------------

    def open(self, folder: Path, progress=None) -> None:
        self.folder = folder
        self.progress = progress
        self.keys = make_keys(Path(tempfile.mkdtemp(prefix="harness-ssh-")))

    def close(self) -> None:
        if self.guest is not None:
            self._stop_guest("session closed", graceful=True)
        if self.keys is not None:
            shutil.rmtree(self.keys.folder, ignore_errors=True)
            self.keys = None
        self.folder = None

    def __enter__(self) -> VngSsh:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _event(self, text: str, run_log: Path | None = None) -> None:
        super()._event(text, run_log)
        log.info("%s", text)

    # --- the guest -----------------------------------------------------------------------

    def _unfit(self, req: GuestRequest) -> str | None:
        if self.guest is None:
            return None
        if self.pending:
            return self.pending
        if boot_key(req) != self.key:
            return "this run needs another kernel, cmdline or guest size"
        why = self.guest.gone()
        if why:
            return why
        if self.conn is None or not self.conn.active:
            return "the SSH connection is down"
        done, text = self.conn.run("cat /proc/sys/kernel/tainted", timeout=PROBE_TIMEOUT)
        if not done.ok:
            return f"the guest does not answer ({done.killed or 'connection lost'})"
        try:
            now = int(text.strip())
        except ValueError:
            return f"unreadable taint {text.strip()[:40]!r}"
        from harness.guest.remote import new_taint

        if new_taint(self.last_taint, now):
            return f"kernel taint changed between runs {taint_letters(self.last_taint)} -> {taint_letters(now)}"
        return None

    def _stop_guest(self, reason: str, graceful: bool = False) -> None:
        guest, conn = self.guest, self.conn
        self.guest, self.conn, self.pending, self.key = None, None, None, None
        if guest is not None:
            guest.stop(reason, conn if graceful else None)
        if conn is not None:
            conn.close()

    def _boot(self, req: GuestRequest, run_dir: Path, boot_timeout: float, run_log: Path) -> str | None:
        """Boot a guest for ``req``; None when ready, else why it failed."""
        assert self.folder is not None and self.keys is not None
        self.boots += 1
        boot_dir = self.folder / "guest" / f"boot-{self.boots:02d}"
        boot_req = replace(req, disks=(), rwdirs=shared_dirs(req, run_dir), cwd=boot_dir)
        failure = "not booted"
        for _attempt in range(3):
            guest = Guest(self.boots, boot_req, boot_dir, self.keys, free_port())
            self.guest = guest  # from now on close() stops it, even mid-boot (Ctrl-C)
            guest.start()
            try:
                self.conn = guest.wait_ready(boot_timeout)
            except BootFailed as exc:
                failure = str(exc)
                guest.stop(failure)
                if guest.port_taken():
                    continue  # another process took the port between our probe and QEMU's bind
                return failure  # the stopped guest stays for its logs
            self.key, self.console_pos, self.runs_on_guest, self.last_taint = boot_key(req), 0, 0, None
            return None
        return failure

    # --- one run -------------------------------------------------------------------------

    def _run(self, req: GuestRequest, run_dir: Path, *, timeout: float | None, watchdog) -> GuestRun:
        started = time.monotonic()
        out, console = run_dir / "guest.log", run_dir / "console.log"
        info: dict = {"backend": self.name}
        why = self._unfit(req)
        if why:
            self._event(f"reboot before {run_dir.name}: {why}", out)
            info["reboot_before"] = why
            self._stop_guest(why)
        if self.guest is None:
            boot_timeout = float(getattr(watchdog, "boot_timeout", 240)) + SSHD_GRACE
            self._event(f"boot {self.boots + 1} for {run_dir.name} ({req.kernel.name}, {req.accel})", out)
            t0 = time.monotonic()
            failure = self._boot(req, run_dir, boot_timeout, out)
            info.update(boot=self.boots, booted=True, boot_seconds=round(time.monotonic() - t0, 2))
            if failure:
                return self._boot_failure(failure, run_dir, started, info)
            self._event(f"boot {self.boots} ready in {info['boot_seconds']:.1f} s, ssh port {self.guest.port}", out)
        else:
            info.update(boot=self.boots, booted=False)
            self._event(f"{run_dir.name} on boot {self.boots} (run {self.runs_on_guest + 1} on it)", out)
        guest, conn = self.guest, self.conn
        assert guest is not None and conn is not None
        self.runs_on_guest += 1
        info["run_on_boot"] = self.runs_on_guest
        info["boot_folder"] = str(guest.boot_dir)

        token = f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
        command = self._command(req, run_dir, token)
        done, text = conn.run(command, output=out, timeout=timeout, watchdog=watchdog, alive=guest.gone)
        detail = None
        if done.killed:
            if guest.gone() is None and conn.active:
                ok, said = conn.probe(PROBE_TIMEOUT)
            else:
                ok, said = False, guest.gone() or "connection down"
            info["probe"] = {"responsive": ok, "said": said}
            verdict = ("guest responsive: the reproducer is slow or stuck, the kernel still schedules" if ok
                       else "guest unresponsive: the kernel hung")
            detail = f"{done.killed}; probe: {verdict} ({said})"
            self._event(f"{run_dir.name}: {detail}", None)
        if done.lost or guest.gone():
            guest.wait_gone(PANIC_EXIT_WAIT)
            detail = detail or f"the guest went down during the run ({guest.gone() or 'SSH connection lost'})"
        else:
            deadline = time.monotonic() + CONSOLE_SETTLE
            while time.monotonic() < deadline and not console_has_end(guest.text("console"), token, self.console_pos):
                time.sleep(0.2)
        if not (done.lost or done.killed):
            self._unstage(req, token, text)
        window, self.console_pos = slice_console(guest.text("console"), token, self.console_pos)
        console.write_text(window)

        before, after = parse_taint(text)
        run_step = next((s for s in parse_steps(text) if s.name == "run"), None)
        titles = tuple(r.title for r in report.parse(window))
        signals = RunSignals(before, after, lost=bool(done.lost or guest.gone()), killed=done.killed,
                             reports=titles, run_rc=run_step.rc if run_step else 0)
        self.pending = reboot_reason(signals)
        self.last_taint = after
        info.update(taint_before=taint_letters(before), taint_after=taint_letters(after), returncode=done.returncode,
                    reboot_after=self.pending, ssh_seconds=round(done.seconds, 2))
        if self.pending:
            self._event(f"{run_dir.name}: the guest will be rebooted: {self.pending}", out)
        return GuestRun(done.returncode, time.monotonic() - started, console, out,
                        tuple(guest.argv), detail=detail, info=info)

    def _command(self, req: GuestRequest, run_dir: Path, token: str) -> str:
        """Write the run's scripts into run_dir (visible in the guest); the command that runs them."""
        cmd = list(req.command)
        if req.disks and len(cmd) == 2 and cmd[0] == "bash":
            steps = Path(cmd[1])
            loop = steps.with_name(steps.stem + "-loop.sh")
            loop.write_text(with_block_device(steps.read_text(), image=str(req.disks[0].path),
                                              stage=self._stage(token)))
            cmd = ["bash", str(loop)]
        elif req.disks:
            raise GuestError("vng-ssh attaches a run's disk through the guest steps script only")
        inner = run_dir / "ssh-steps.sh"
        inner.write_text("#!/bin/bash\nexec " + shlex.join(cmd) + "\n")
        outer = run_dir / "ssh-run.sh"
        outer.write_text(wrapper(token, str(inner), f"{GUEST_DIR}/{token}.sid", cwd=str(req.cwd or run_dir)))
        return f"bash {shlex.quote(str(outer))}"

    @staticmethod
    def _stage(token: str) -> str:
        return f"{GUEST_DIR}/{token}"

    def _unstage(self, req: GuestRequest, token: str, output: str) -> None:
        """Bring the run's image home when it is the evidence; free the guest's RAM copy."""
        if not req.disks or self.conn is None or not self.conn.active:
            return
        stage = shlex.quote(self._stage(token))
        evidence = "@@lost " in output or any(s.name == "check" and s.rc not in (0, None) for s in parse_steps(output))
        keep = (f"[ -f {stage}/disk.img ] && cp --sparse=always {stage}/disk.img {shlex.quote(str(req.disks[0].path))}; "
                if evidence else "")
        self.conn.run(f"{keep}rm -rf {stage}", timeout=120)

    def _boot_failure(self, failure: str, run_dir: Path, started: float, info: dict) -> GuestRun:
        guest = self.guest
        console, out = run_dir / "console.log", run_dir / "guest.log"
        if guest is not None:
            console.write_text(guest.text("console"))
            with open(out, "a") as fh:
                fh.write(guest.text())
        self._event(f"boot {self.boots} failed: {failure}", out)
        self.pending = f"boot {self.boots} failed"
        info["boot_failure"] = failure
        rc = guest.done.returncode if guest is not None and guest.done else None
        return GuestRun(rc, time.monotonic() - started, console, out, tuple(guest.argv) if guest else (),
                        detail=f"vng-ssh: {failure}", info=info)


BACKENDS.add("vng-ssh", VngSsh)


# --- bench ------------------------------------------------------------------------------------

TRIVIAL_C = r"""// harness bench: a run that never crashes (writes, fsyncs and reads back a file)
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	char path[4096], buf[64] = {0};
	snprintf(path, sizeof(path), "%s/bench-file", argc > 1 ? argv[1] : ".");
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "harness bench\n", 14) != 14 || fsync(fd) || pread(fd, buf, 14, 0) != 14)
		return perror(path), 1;
	printf("read back: %s", buf);
	return strcmp(buf, "harness bench\n") != 0;
}
"""


def trivial_spec(folder: Path, image: str = "ext4-inline-fullbitmap") -> Path:
    """A reproducer folder whose runs never crash (for the no-reboot figures)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "repro.c").write_text(TRIVIAL_C)
    (folder / "repro.yaml").write_text(
        "name: bench_trivial\nsummary: writes a file and reads it back (never crashes)\nsource: repro.c\n"
        f'args: ["{{mnt}}"]\ntimeout: 60\nruns: 1\nimage: {image}\nkernel: debian:6.1\n'
        "guest:\n  cpus: 2\n  memory: 1G\n  cmdline: [\"oops=panic\"]\nexpect:\n  titles: []\n")
    return folder


def _measure(spec, kernel, accel: str, runs: int, backend: str, root: Path):
    from harness.repro.run import run_repro

    start = time.monotonic()
    summary = run_repro(spec, kernel, runs=runs, accel=accel, backend=backend, results_root=root)
    seconds = time.monotonic() - start
    boots = runs if backend == "vng" else len(list((summary.folder / "guest").glob("boot-*")))
    return seconds, summary.hits, boots, summary


def _outcomes(summary) -> str:
    counts: dict[str, int] = {}
    for r in summary.runs:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    return ", ".join(f"{n} {o}" for o, n in counts.items())


def bench(kernel_name: str = "debian:6.1", runs: int = 10, *, crash_repro: str | None = "ext4_inline",
          clean_kernel: str | None = None, trivial: bool = True, results_root: Path | None = None,
          progress=None) -> list[tuple[str, float, str]]:
    """Wall time of ``runs`` runs: one boot per run (vng) vs one long-lived guest (vng-ssh).

    Rows (label, seconds, ratio) measured side by side in this call:
    ``crash_repro`` on ``kernel_name`` (ext4_inline: an oops every run, so
    both backends boot every run), then, when ``trivial``, a reproducer that
    never crashes (one boot in all for vng-ssh), and when ``clean_kernel``,
    ``crash_repro`` on that kernel (where it stays CLEAN).
    """
    from harness import kernels
    from harness.guest.vng import choose_accel
    from harness.repro import spec as specs

    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="harness-bench-ssh-") as tmp:
        root = results_root or Path(tmp)
        cases = [(crash_repro, kernel_name)] if crash_repro else []
        if clean_kernel:
            cases.append((crash_repro or "ext4_inline", clean_kernel))
        if trivial:
            cases.append((str(trivial_spec(Path(tmp) / "bench_trivial")), kernel_name))
        for repro, kname in cases:
            spec = specs.load(repro)
            kernel = kernels.resolve(kname)
            accel, _ = choose_accel("auto", kernel)
            figures = {}
            # vng-ssh first: any one-off cost (a first compile, a cold image cache) lands on it, not on vng
            for backend in ("vng-ssh", "vng"):
                if progress:
                    progress(f"bench: {runs} x {spec.name} on {kernel.name}, backend {backend}")
                figures[backend] = _measure(spec, kernel, accel, runs, backend, root / backend)
            base_s, base_hits, base_boots, _ = figures["vng"]
            for backend in ("vng", "vng-ssh"):
                s, hits, boots, summary = figures[backend]
                label = (f"{runs} x {spec.name} on {kernel.name}, {backend}: {hits}/{runs} hits ({_outcomes(summary)}),"
                         f" {boots} boots")
                ratio = "1.00 (reference)" if backend == "vng" else f"{s / base_s:.2f} x vng"
                rows.append((label, s, ratio))
    return rows


def main(argv: list[str] | None = None) -> int:
    """python -m harness.guest.session [--kernel K] [--runs N] [--clean-kernel K] [--no-trivial]"""
    import argparse

    ap = argparse.ArgumentParser(prog="harness.guest.session", description="vng vs vng-ssh wall times")
    ap.add_argument("--kernel", default="debian:6.1")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--repro", default="ext4_inline")
    ap.add_argument("--clean-kernel")
    ap.add_argument("--no-trivial", action="store_true")
    ap.add_argument("--no-crash", action="store_true", help="skip the crashing reproducer")
    ap.add_argument("--results", help="keep the run folders here")
    args = ap.parse_args(argv)
    rows = bench(args.kernel, args.runs, crash_repro=None if args.no_crash else args.repro,
                 clean_kernel=args.clean_kernel,
                 trivial=not args.no_trivial, results_root=Path(args.results) if args.results else None,
                 progress=lambda m: print(f"… {m}", flush=True))
    width = max(len(r[0]) for r in rows)
    for label, seconds, ratio in rows:
        print(f"{label:<{width}}  {seconds:8.1f}  {ratio}", flush=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
