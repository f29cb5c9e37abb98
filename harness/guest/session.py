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

Boots are lean: vng runs inside a private mount namespace in which udevd
and systemd-tmpfiles are not executable (``lean_prefix``), so virtme-ng-init
skips them (11 of 18 s of a TCG boot; the SSH guest needs neither), and the
boot script starts four programs.  Once a run of the session has needed a
reboot, ``vng-ssh:N`` keeps N guests (default 2) booting ahead for the runs
still to come; a crash then costs the wait for a guest that is (nearly) up.
For a reproducer that crashes every run, the ``snapshot`` backend
(harness.guest.snapshot) is the faster choice: it restores a saved
post-boot guest instead of booting.

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
from dataclasses import dataclass, replace
from pathlib import Path

from harness import proc, report
from harness.errors import GuestError, HarnessError
from harness.guest import BACKENDS, OPTIONAL_ARG, GuestRequest, GuestRun, Persistent
from harness.guest.background import Background
from harness.guest.remote import (
    RunSignals,
    parse_taint,
    reboot_reason,
    settle_run,
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
DEFAULT_AHEAD = 2  # guests booting ahead once a run needed a reboot (vng-ssh:N sets N)
MAX_AHEAD = 4
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
    return f"""# sshd of a harness guest (generated; /run is a tmpfs of the guest)
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
# Under TCG every program started costs ~0.4 s (loaded over 9p, dynamically
# linked, emulated), so this script runs four: mkdir, modprobe, ip, sshd.  The
# rest is bash builtins.
exec 2>&1 </dev/null
fail() { echo "@FAILED@: $*"; exit 1; }
read -r UP _ < /proc/uptime
echo "@MARK@ ssh-guest boot $UP kernel $(</proc/sys/kernel/osrelease)"
echo 8 > /proc/sys/kernel/printk
S=@GUEST_DIR@
umask 077
mkdir -p $S /run/sshd || fail "cannot make $S"
printf '%s\n' "$(<@HOST_KEY@)" > $S/ssh_host_ed25519_key || fail "cannot read the host key"
printf '%s\n' "$(<@CLIENT_PUB@)" > $S/authorized_keys || fail "cannot read the client key"
printf '%s' '@SSHD_CONFIG@' > $S/sshd_config
fstype_of() {  # FSTYPE of the mount holding $1 (what findmnt --target says)
  local dev mnt type rest len=-1
  FSTYPE=none
  while read -r dev mnt type rest; do
    if [[ $mnt == / || $1 == "$mnt" || $1 == "$mnt"/* ]] && (( ${#mnt} > len )); then
      FSTYPE=$type len=${#mnt}
    fi
  done < /proc/self/mounts
}
edit_root() {  # edit_root FILE EXPR: root's line ($line) of FILE replaced by EXPR, in place
  local line out=
  while IFS= read -r line || [[ -n $line ]]; do
    [[ $line == root:* ]] && eval "line=$2"
    out+=$line$'\n'
  done < "$1"
  printf '%s' "$out" > "$1"
}
# Without PAM, sshd refuses a root whose password field is locked ('*', '!').  The
# guest's /etc/shadow is its own (virtme-ng-init bind-mounts a tmpfs copy; else the
# /etc overlay): unlock root there, in place.  The host's file is never written.
fstype_of /etc/shadow
case $FSTYPE in
  tmpfs|overlay) edit_root /etc/shadow '"root:harness-pubkey-only:${line#root:*:}"' || fail "cannot unlock root in the guest's /etc/shadow" ;;
  *) fail "/etc/shadow is not the guest's own copy ($FSTYPE): not touching it" ;;
esac
# Commands run through root's login shell: make it sh, so no ~/.bashrc of the host's
# root (pyenv, conda...) runs before each command.  Same rule: the guest's own copy only.
fstype_of /etc/passwd
case $FSTYPE in tmpfs|overlay) edit_root /etc/passwd '"${line%:*}:/bin/sh"' ;; esac
umask 022
# virtio_net is udev's job when the guest has udev (see lean_prefix)
modprobe -q -a loop virtio_net
nic=
for ((i = 0; i < 300; i++)); do
  for n in /sys/class/net/*; do
    n=${n##*/}; [[ $n != lo && $n != "*" ]] && { nic=$n; break 2; }
  done
  sleep 0.1
done
[ -n "$nic" ] || fail "no network interface (virtio_net missing?)"
printf '%s\n' "link set lo up" "addr add @GUEST_IP@/24 dev $nic" "link set $nic up" | ip -batch - \
  || fail "cannot configure $nic"
read -r UP _ < /proc/uptime
echo "@READY@ $UP nic $nic"
@PRELOAD@exec /usr/sbin/sshd -D -e -f $S/sshd_config
"""


def boot_script(keys: Keys, preload: tuple[str, ...] = ()) -> str:
    """The guest's vng command: network up, sshd in the foreground (its exit powers the guest off).

    ``preload``: modules (``fs-ext4``) loaded in the background once sshd is
    on its way, so a guest booted ahead has them before its run mounts."""
    load = f"(modprobe -q -a {shlex.join(preload)} &)\n" if preload else ""
    assert "'" not in sshd_config()  # it goes into the script in single quotes
    values = {
        "@FAILED@": FAILED, "@MARK@": MARK, "@GUEST_DIR@": GUEST_DIR, "@HOST_KEY@": shlex.quote(str(keys.host)),
        "@CLIENT_PUB@": shlex.quote(str(keys.client_pub)), "@SSHD_CONFIG@": sshd_config(), "@GUEST_IP@": GUEST_IP,
        "@READY@": READY, "@PRELOAD@": load,
    }
    text = _BOOT_SCRIPT
    for key, value in values.items():
        text = text.replace(key, value)
    return text


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


class Guest(Background):
    """One boot: vng in the background, its console and sshd output in boot_dir."""

    label = "vng"

    def __init__(self, index: int, req: GuestRequest, boot_dir: Path, keys: Keys, port: int,
                 hide: tuple[str, ...] = ()):
        super().__init__()
        self.index = index
        self.hide = hide  # host binaries the guest must not find (lean_prefix)
        self.req = req
        self.boot_dir = boot_dir
        self.keys = keys
        self.port = port
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
        req = replace(self.req, command=("bash", str(script)))
        self.argv = lean_prefix(self.hide) + session_argv(req, self.port, vng_binary())
        (self.boot_dir / "vng.cmd").write_text(shlex.join(self.argv) + "\n")
        (self.boot_dir / "ssh.cmd").write_text(
            f"# the guest's pinned host key, as OpenSSH wants it:\n# {known_hosts_line('127.0.0.1', self.port, self.keys.host_pub)}"
            f"{ssh_command(self.endpoint(), self.keys.folder / 'known_hosts')}\n")
        (self.keys.folder / "known_hosts").write_text(known_hosts_line("127.0.0.1", self.port, self.keys.host_pub))
        self.started = time.monotonic()
        self.launch(f"vng-ssh-boot-{self.index}", stdout_path=self.output, stderr_path=self.console,
                    cwd=self.boot_dir, env={"PYTHONUNBUFFERED": "1"})

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
        self.kill(reason)  # proc.run's watchdog: kills vng's process group


class VngSsh(Persistent):
    """The vng-ssh backend (see the module doc)."""

    name = "vng-ssh"

    def __init__(self, arg: str = ""):
        if arg and not (arg.isdigit() and int(arg) <= MAX_AHEAD):
            raise GuestError(f"backend vng-ssh:{arg}: the argument is how many guests boot ahead once a run has "
                             f"needed a reboot, 0 to {MAX_AHEAD} (vng-ssh alone: {DEFAULT_AHEAD})")
        self.ahead = int(arg) if arg else DEFAULT_AHEAD
        self.spares: list[Guest] = []  # booting (or ready, idle) for the runs to come, oldest first
        self.spare_key: tuple | None = None
        self.crashy = False  # a run of this session needed a reboot: from then on, boot ahead
        self.hide: tuple[str, ...] | None = None  # lean_prefix paths, decided at the first boot
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
        self._drop_spares("session closed")
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

    def _new_guest(self, req: GuestRequest, run_dir: Path, index: int | None = None) -> Guest:
        """Start booting a guest for ``req`` (returns at once)."""
        assert self.folder is not None and self.keys is not None
        if self.hide is None:
            lean, why = lean_boot_available()
            self.hide = skipped_paths() if lean else ()
            self._event(f"session guests: {why}")
        if index is None:
            self.boots += 1
            index = self.boots
        boot_dir = self.folder / "guest" / f"boot-{index:02d}"
        boot_req = replace(req, disks=(), rwdirs=shared_dirs(req, run_dir), cwd=boot_dir)
        guest = Guest(index, boot_req, boot_dir, self.keys, free_port(), hide=self.hide)
        guest.start()
        return guest

    def _adopt(self, guest: Guest, conn: Connection, req: GuestRequest) -> None:
        self.guest, self.conn = guest, conn
        self.key, self.console_pos, self.runs_on_guest, self.last_taint = boot_key(req), 0, 0, None

    def _boot(self, req: GuestRequest, run_dir: Path, boot_timeout: float, run_log: Path) -> str | None:
        """Boot a guest for ``req`` in the foreground; None when ready, else why it failed."""
        failure = "not booted"
        index = None
        for _attempt in range(3):
            guest = self._new_guest(req, run_dir, index)
            index = guest.index
            self.guest = guest  # from now on close() stops it, even mid-boot (Ctrl-C)
            try:
                conn = guest.wait_ready(boot_timeout)
            except BootFailed as exc:
                failure = str(exc)
                guest.stop(failure)
                if guest.port_taken():
                    continue  # another process took the port between our probe and QEMU's bind
                return failure  # the stopped guest stays for its logs
            self._adopt(guest, conn, req)
            return None
        return failure

    def _take_spare(self, req: GuestRequest, boot_timeout: float, run_log: Path) -> bool:
        """Adopt the oldest guest booted ahead (waiting for its sshd if need be); False if none is usable."""
        if self.spares and self.spare_key != boot_key(req):
            self._drop_spares("the run needs another kernel, cmdline or guest size")
        while self.spares:
            guest = self.spares.pop(0)
            self.guest = guest
            try:
                conn = guest.wait_ready(boot_timeout)
            except BootFailed as exc:
                self._event(f"boot {guest.index} (booted ahead) failed: {exc}", run_log)
                guest.stop(str(exc))
                self.guest = None
                continue
            self._adopt(guest, conn, req)
            return True
        return False

    def _top_up(self, req: GuestRequest, run_dir: Path) -> None:
        """Keep ``ahead`` guests booting for the runs after this one, once the session has needed a reboot.

        Under TCG a boot keeps about one host CPU busy; booting the next runs'
        guests while this one runs uses the other, so a crash costs the wait
        for a guest that is already (nearly) up instead of a whole boot."""
        if not self.crashy or self.remaining is None:
            return
        later = self.remaining - 1  # runs after the current one (self.remaining counts it)
        want = min(self.ahead, later)
        self.spare_key = boot_key(req)  # _take_spare dropped any spares booted for another key
        while len(self.spares) < want:
            guest = self._new_guest(req, run_dir)
            self.spares.append(guest)
            self._event(f"boot {guest.index} started ahead, for a run after {run_dir.name}")

    def _drop_spares(self, reason: str) -> None:
        spares, self.spares = self.spares, []
        for guest in spares:
            guest.stop(reason)

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
            t0 = time.monotonic()
            if self._take_spare(req, boot_timeout, out):
                guest = self.guest
                waited = time.monotonic() - t0
                info.update(boot=guest.index, booted=True, booted_ahead=True, boot_wait_seconds=round(waited, 2),
                            boot_seconds=round(guest.ready_seconds or 0, 2))
                self._event(f"boot {guest.index} (booted ahead) takes {run_dir.name}: up in "
                            f"{guest.ready_seconds or 0:.1f} s, waited {waited:.1f} s for it, ssh port {guest.port}", out)
            else:
                self._event(f"boot {self.boots + 1} for {run_dir.name} ({req.kernel.name}, {req.accel})", out)
                failure = self._boot(req, run_dir, boot_timeout, out)
                index = self.guest.index if self.guest is not None else self.boots
                info.update(boot=index, booted=True, boot_seconds=round(time.monotonic() - t0, 2))
                if failure:
                    return self._boot_failure(failure, run_dir, started, info)
                self._event(f"boot {index} ready in {info['boot_seconds']:.1f} s, ssh port {self.guest.port}", out)
            self._top_up(req, run_dir)
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
        detail = settle_run(done, conn, guest, info, lambda: guest.text("console"), token, self.console_pos,
                            probe_timeout=PROBE_TIMEOUT, panic_wait=PANIC_EXIT_WAIT, settle=CONSOLE_SETTLE)
        if done.killed:
            self._event(f"{run_dir.name}: {detail}", None)
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
            self.crashy = True
            self._top_up(req, run_dir)
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
        index = guest.index if guest is not None else self.boots
        self._event(f"boot {index} failed: {failure}", out)
        self.pending = f"boot {index} failed"
        info["boot_failure"] = failure
        rc = guest.done.returncode if guest is not None and guest.done else None
        return GuestRun(rc, time.monotonic() - started, console, out, tuple(guest.argv) if guest else (),
                        detail=f"vng-ssh: {failure}", info=info)


BACKENDS.add("vng-ssh", VngSsh)
OPTIONAL_ARG.add("vng-ssh")


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
    from harness.options import Accel, RunOptions

    summary = run_repro(spec, kernel, RunOptions(backend=backend, runs=runs, results=root), accel=Accel(accel))
    seconds = time.monotonic() - start
    if backend == "vng":
        boots = runs
    elif backend == "snapshot":  # one boot per saved snapshot; every run restores it
        boots = len(list((summary.folder / "guest").glob("snapshot-*")))
    else:
        boots = len(list((summary.folder / "guest").glob("boot-*")))
    return seconds, summary.hits, boots, summary


def _outcomes(summary) -> str:
    counts: dict[str, int] = {}
    for r in summary.runs:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    return ", ".join(f"{n} {o}" for o, n in counts.items())


def bench(kernel_name: str = "debian:6.1", runs: int = 10, *, crash_repro: str | None = "ext4_inline",
          clean_kernel: str | None = None, trivial: bool = True, results_root: Path | None = None,
          progress=None, backends: tuple[str, ...] = ("vng-ssh", "snapshot")) -> list[tuple[str, float, str]]:
    """Wall time of ``runs`` runs: one boot per run (vng) vs the long-lived backends
    (vng-ssh: one guest, rebooted after an oops; snapshot: one boot, every run from its saved state).

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
            # the long-lived backends first: any one-off cost (a first compile, a cold image cache) lands on
            # them, not on vng
            for backend in (*backends, "vng"):
                if progress:
                    progress(f"bench: {runs} x {spec.name} on {kernel.name}, backend {backend}")
                figures[backend] = _measure(spec, kernel, accel, runs, backend, root / backend.replace(":", "-"))
            base_s = figures["vng"][0]
            for backend in ("vng", *backends):
                s, hits, boots, summary = figures[backend]
                restores = f" + {runs} restores" if backend == "snapshot" else ""
                label = (f"{runs} x {spec.name} on {kernel.name}, {backend}: {hits}/{runs} hits ({_outcomes(summary)}),"
                         f" {boots} boots{restores}")
                ratio = "1.00 (reference)" if backend == "vng" else f"{s / base_s:.2f} x vng"
                rows.append((label, s, ratio))
    return rows
