"""SSH plumbing for the long-lived guest (vng-ssh) and user-named targets (ssh:NAME).

paramiko over TCP, with host keys always verified:

- a guest's host key is generated on the host before the guest boots and
  pinned (``Endpoint.host_key``): nothing is learnt from the network;
- a user-named machine's key must already be in the known_hosts file its
  config names; an unknown or changed key is refused with a one-line error.

``Connection.run`` streams a remote command's output into a file as it comes,
with its own timeout and the run's watchdog, and tells a normal exit from a
timeout from a lost connection.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import shlex
import socket
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from harness import proc
from harness.errors import GuestError, MissingTool

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0


class HostKeyError(GuestError):
    """The server's host key is unknown or differs from the one on record."""


def _paramiko():
    try:
        import paramiko  # start-up cost: ~0.3 s of imports that only the SSH backends need
    except ImportError:  # pragma: no cover - a listed dependency
        raise MissingTool("paramiko is not installed", hint="pip install paramiko") from None
    quiet = logging.getLogger("paramiko")
    if quiet.level == logging.NOTSET:  # its transport thread logs tracebacks we report as one line anyway
        quiet.setLevel(logging.CRITICAL)
    return paramiko


# --- keys ------------------------------------------------------------------------------------


def generate_key(path: Path, comment: str = "kernel-repro-harness") -> Path:
    """An ed25519 key pair at ``path`` / ``path.pub`` (ssh-keygen; paramiko cannot make ed25519)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], what="ssh-keygen")
    os.chmod(path, 0o600)
    return path


def load_private_key(path: Path):
    """A private key of any type paramiko knows (ed25519, ecdsa, rsa)."""
    paramiko = _paramiko()
    path = Path(path).expanduser()
    if not path.exists():
        raise GuestError(f"SSH key {path} does not exist")
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(str(path))
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(f"{cls.__name__}: {exc}")
    raise GuestError(f"SSH key {path}: cannot load it ({'; '.join(errors)[:200]})")


def fingerprint(key) -> str:
    return key.fingerprint  # "SHA256:..."


def host_label(host: str, port: int) -> str:
    """How known_hosts names a server: ``host`` on port 22, ``[host]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


# --- host key verification -------------------------------------------------------------------


def load_known_hosts(path: Path):
    """A paramiko HostKeys from an OpenSSH known_hosts file (hashed entries included)."""
    paramiko = _paramiko()
    path = Path(path).expanduser()
    if not path.exists():
        raise HostKeyError(f"known_hosts file {path} does not exist")
    keys = paramiko.HostKeys()
    try:
        keys.load(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise HostKeyError(f"known_hosts file {path}: cannot read it: {exc}") from None
    return keys


def check_host_key(known, host: str, port: int, key, source: str) -> None:
    """Raise HostKeyError unless ``key`` is on record for host:port in ``known``.

    ``known`` is a paramiko HostKeys; ``source`` names it in the error.
    """
    label = host_label(host, port)
    entries = known.lookup(label)
    if entries is None and port != 22:
        entries = None  # OpenSSH does not fall back to the bare host for a non-default port
    if not entries:
        raise HostKeyError(
            f"host key of {label} ({key.get_name()} {fingerprint(key)}) is not in {source}: refusing to connect",
            hint="check the fingerprint out of band, then add the key (ssh-keyscan) to that file",
        )
    on_record = entries.get(key.get_name())
    if on_record is None:
        have = ", ".join(f"{k} {fingerprint(v)}" for k, v in entries.items())
        raise HostKeyError(
            f"host key of {label} changed: server offers {key.get_name()} {fingerprint(key)}, {source} has {have}"
        )
    if on_record != key:
        raise HostKeyError(
            f"host key of {label} changed: server offers {fingerprint(key)}, {source} has {fingerprint(on_record)}"
            " (possible man-in-the-middle, or the machine was reinstalled)"
        )


def _verifying_policy(known, source: str):
    paramiko = _paramiko()

    class Refuse(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):  # noqa: ARG002
            # paramiko only calls this when the key is absent; say so in one line.
            host, port = _split_label(hostname)
            check_host_key(known, host, port, key, source)

    return Refuse()


def _split_label(label: str) -> tuple[str, int]:
    if label.startswith("["):
        host, _, port = label[1:].partition("]:")
        return host, int(port)
    return label, 22


# --- connections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path | None = None  # an OpenSSH known_hosts file, or
    host_key: Path | None = None  # the server's pinned public key (.pub file)
    name: str = ""  # how errors name it


@dataclass(frozen=True)
class Exec:
    """What came back from one remote command."""

    returncode: int | None  # None: no exit status (timeout, watchdog, lost connection)
    seconds: float
    lost: bool = False  # the connection dropped before the command ended
    killed: str | None = None  # why we stopped waiting, if we did

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Connection:
    """One verified SSH connection; commands run as separate channels on it."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self.client = None

    def __enter__(self) -> Connection:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _known(self):
        paramiko = _paramiko()
        ep = self.endpoint
        if ep.host_key is not None:
            keys = paramiko.HostKeys()
            keys.add(host_label(ep.host, ep.port), *_pub_entry(ep.host_key))
            return keys, f"the pinned key {ep.host_key}"
        if ep.known_hosts is not None:
            return load_known_hosts(ep.known_hosts), str(ep.known_hosts)
        raise HostKeyError(f"{ep.name or ep.host}: no known_hosts file and no pinned host key: refusing to connect")

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> Connection:
        paramiko = _paramiko()
        ep = self.endpoint
        known, source = self._known()
        client = paramiko.SSHClient()
        # Only our own HostKeys: never the user's ~/.ssh/known_hosts behind our back.
        for label in known:
            for kind, key in known.lookup(label).items():
                client.get_host_keys().add(label, kind, key)
        client.set_missing_host_key_policy(_verifying_policy(known, source))
        try:
            client.connect(
                ep.host, ep.port, username=ep.user, pkey=load_private_key(ep.key_file),
                allow_agent=False, look_for_keys=False, timeout=timeout, banner_timeout=timeout,
                auth_timeout=timeout,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            # offered a key of a type on record, but a different key
            check_host_key(known, ep.host, ep.port, exc.key, source)
            raise HostKeyError(f"host key of {host_label(ep.host, ep.port)} rejected: {exc}") from None
        except HostKeyError:
            client.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise GuestError(f"ssh {ep.user}@{host_label(ep.host, ep.port)}: {type(exc).__name__}: {exc}") from None
        transport = client.get_transport()
        transport.set_keepalive(5)
        self.client = client
        return self

    @property
    def active(self) -> bool:
        t = self.client.get_transport() if self.client else None
        return bool(t and t.is_active())

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None

    def run(
        self,
        command: str,
        *,
        output: Path | None = None,
        timeout: float | None = None,
        watchdog: Callable[[], str | None] | None = None,
        alive: Callable[[], str | None] | None = None,
        stdin: bytes | None = None,
    ) -> tuple[Exec, str]:
        """Run ``command`` (stderr merged); stream its output to ``output``.

        ``stdin``, when given, is sent whole before the output is read, then
        the command's input is closed (e.g. a tar the command unpacks first).

        Returns (Exec, the output text).  ``watchdog`` and ``alive`` are polled
        twice a second; a non-empty answer stops the wait: the watchdog's is
        ``killed``, ``alive``'s (the server went away, e.g. the guest's QEMU
        exited) counts as a lost connection.
        """
        paramiko = _paramiko()
        start = time.monotonic()
        kept: list[bytes] = []
        sink = open(output, "ab", buffering=0) if output else None  # noqa: SIM115
        try:
            try:
                chan = self.client.get_transport().open_session(timeout=CONNECT_TIMEOUT)
                chan.set_combine_stderr(True)
                chan.settimeout(CONNECT_TIMEOUT)
                chan.exec_command(command)
                if stdin is not None:
                    chan.sendall(stdin)
                    chan.shutdown_write()
                chan.settimeout(0.5)
            except (paramiko.SSHException, OSError, EOFError, AttributeError) as exc:
                return Exec(None, time.monotonic() - start, lost=True, killed=f"could not start: {exc}"), ""
            deadline = None if timeout is None else start + timeout
            lost, killed = self._stream(chan, kept, sink, deadline, timeout, watchdog, alive)
            rc, lost, killed = self._status(chan, lost, killed)
            with contextlib.suppress(Exception):
                chan.close()
            return Exec(rc, time.monotonic() - start, lost=lost, killed=killed), b"".join(kept).decode(errors="replace")
        finally:
            if sink:
                sink.close()

    def _stream(self, chan, kept: list[bytes], sink, deadline, timeout, watchdog, alive) -> tuple[bool, str | None]:
        """Read the command's output until it ends, the connection drops or a poll says stop: (lost, killed)."""
        paramiko = _paramiko()
        last_poll = 0.0
        while True:
            try:
                data = chan.recv(65536)
            except TimeoutError:
                data = None
            except (paramiko.SSHException, OSError, EOFError):
                return True, None
            if data:
                kept.append(data)
                if sink:
                    sink.write(data)
                continue
            if data == b"":  # EOF: the command closed its output
                if chan.exit_status_ready() or chan.closed:
                    return False, None
                time.sleep(0.05)
            now = time.monotonic()
            if now - last_poll < 0.5:
                continue
            last_poll = now
            if chan.exit_status_ready() and not chan.recv_ready():
                return False, None
            if not self.active or (alive is not None and alive()):  # the other side is gone: a dropped connection
                return True, None
            why = watchdog() if watchdog else None
            if why:
                return False, why
            if deadline is not None and now > deadline:
                return False, f"no exit within {timeout:.0f} s"

    def _status(self, chan, lost: bool, killed: str | None) -> tuple[int | None, bool, str | None]:
        """(exit status, lost, killed) once the output ended: the status can trail the EOF a little, and a
        dead transport never sends it."""
        rc: int | None = None
        if killed or lost:
            return rc, lost, killed
        for _ in range(40):
            if chan.exit_status_ready():
                rc = chan.recv_exit_status()
                break
            if not self.active:
                return None, True, killed
            time.sleep(0.05)
        if rc is None:
            lost = not self.active
            killed = None if lost else "the command closed its output but sent no exit status"
        if rc == -1:  # paramiko's "no status" (the server closed the channel)
            rc, lost = None, not self.active
        return rc, lost, killed

    def check(self, command: str, *, timeout: float = 60.0, what: str | None = None) -> str:
        """Run a short command; its output, or GuestError naming it."""
        done, text = self.run(command, timeout=timeout)
        if not done.ok:
            why = done.killed or ("connection lost" if done.lost else f"exit {done.returncode}")
            tail = text.strip().splitlines()[-1] if text.strip() else ""
            raise GuestError(f"{what or command.split()[0]} on {self.endpoint.name or self.endpoint.host} failed "
                             f"({why}){': ' + tail[:200] if tail else ''}")
        return text

    def probe(self, timeout: float = 15.0) -> tuple[bool, str]:
        """Is the other side's kernel still scheduling?  (a trivial command, short timeout)"""
        if not self.active:
            return False, "SSH connection is down"
        done, text = self.run("cat /proc/uptime", timeout=timeout)
        if done.ok:
            return True, f"answered in {done.seconds:.1f} s (uptime {text.split()[0] if text.split() else '?'})"
        return False, done.killed or ("connection lost" if done.lost else f"exit {done.returncode}")

    def feed(self, command: str, source: BinaryIO, *, what: str) -> None:
        """Run ``command`` with ``source`` as its standard input; GuestError naming ``what`` unless it exits 0."""
        paramiko = _paramiko()
        where = self.endpoint.name or self.endpoint.host
        try:
            chan = self.client.get_transport().open_session(timeout=CONNECT_TIMEOUT)
            chan.set_combine_stderr(True)
            chan.exec_command(command)
            while block := source.read(1 << 16):
                chan.sendall(block)
            chan.shutdown_write()
            said = b"".join(iter(lambda: chan.recv(4096), b"")).decode(errors="replace").strip()
            rc = chan.recv_exit_status()
            chan.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise GuestError(f"{what} on {where}: {exc}") from None
        if rc != 0:
            raise GuestError(f"{what} on {where} failed (exit {rc}){': ' + said.splitlines()[-1][:200] if said else ''}")

    def put(self, local: Path, remote: str, *, prefix: str = "") -> None:
        """Copy a file to the other side through `cat` (no sftp subsystem needed), keeping its mode."""
        mode = f"{local.stat().st_mode & 0o777:o}"  # an executable stays one (a prebuilt reproducer)
        inner = f"cat > {shlex.quote(remote)} && chmod {mode} {shlex.quote(remote)}"
        with open(local, "rb") as fh:
            self.feed(f"{prefix}sh -c {shlex.quote(inner)}", fh, what=f"copying {local.name} to {remote}")


    def get(self, remote: str, local: Path, *, prefix: str = "") -> None:
        """Copy a file from the other side through `cat`."""
        paramiko = _paramiko()
        tmp = local.with_name(local.name + ".part")
        try:
            chan = self.client.get_transport().open_session(timeout=CONNECT_TIMEOUT)
            chan.exec_command(f"{prefix}cat {shlex.quote(remote)}")
            with open(tmp, "wb") as fh:
                for block in iter(lambda: chan.recv(1 << 16), b""):
                    fh.write(block)
            rc = chan.recv_exit_status()
            chan.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            tmp.unlink(missing_ok=True)
            raise GuestError(f"copying {remote} from {self.endpoint.name or self.endpoint.host}: {exc}") from None
        if rc != 0:
            tmp.unlink(missing_ok=True)
            raise GuestError(f"copying {remote} from {self.endpoint.name or self.endpoint.host} failed (exit {rc})")
        tmp.replace(local)


def unpack_command(folder: str, *, before: str = "", prefix: str = "") -> str:
    """The shell command that makes ``folder``, runs ``before`` and unpacks a tar from its input there (pure)."""
    q = shlex.quote
    return (f"{prefix}mkdir -p {q(folder)}" + (f" && {before}" if before else "")
            + f" && {prefix}tar -x -f - -C {q(folder)}")


def tar_of(files: Sequence[Path]) -> bytes:
    """An uncompressed tar of ``files`` under their own names, owned by root, modes kept (pure but for reads)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for f in files:
            info = tar.gettarinfo(str(f), arcname=f.name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(f, "rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


def _pub_entry(pub: Path) -> tuple[str, object]:
    paramiko = _paramiko()
    fields = Path(pub).read_text().split()
    if len(fields) < 2:
        raise HostKeyError(f"{pub}: not an OpenSSH public key")
    return fields[0], paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1]))


def known_hosts_line(host: str, port: int, pub: Path) -> str:
    """A known_hosts line for a pinned .pub key (written for `ssh -o UserKnownHostsFile=`)."""
    kind, b64 = Path(pub).read_text().split()[:2]
    return f"{host_label(host, port)} {kind} {b64}\n"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the caller retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ssh_command(ep: Endpoint, known_hosts: Path) -> str:
    """An OpenSSH command line a person can paste to reach the same endpoint (strict checking)."""
    return shlex.join([
        "ssh", "-i", str(ep.key_file), "-p", str(ep.port), "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", f"{ep.user}@{ep.host}",
    ])


# --- a harness guest's sshd (vng-ssh, snapshot) -------------------------------------------------------

GUEST_IP = "10.0.2.15"  # QEMU user networking's first guest address
GUEST_DIR = "/run/harness-ssh"  # guest tmpfs: sshd's config, keys, the runs' folders


@dataclass(frozen=True)
class Keys:
    """Throwaway keys of one session: the guest's host key (pinned by the client) and the client's."""

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


def sshd_config(sftp: bool = True) -> str:
    """The guest's sshd_config: the pinned host key, the client key only, no passwords, no PAM."""
    text = f"""# sshd of a harness guest (generated; /run is a tmpfs of the guest)
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
"""
    return text + ("Subsystem sftp internal-sftp\n" if sftp else "")
