"""SSH plumbing and the ssh:NAME target config: host keys, commands, the disk allow-list.

Host-key checks and commands run against a small in-process paramiko server
on 127.0.0.1 (no sshd needed); tests/test_vm_ssh.py uses a real sshd.
"""

from __future__ import annotations

import io
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import paramiko
import pytest

from harness.errors import GuestError, SpecError, UnknownName
from harness.guest.backends import select
from harness.guest.protocol import GuestPlan, LoopImage
from harness.guest.remote import Staging, guest_plan
from harness.guest.ssh import (
    Connection,
    Endpoint,
    HostKeyError,
    check_host_key,
    generate_key,
    host_label,
    known_hosts_line,
    load_known_hosts,
    tar_of,
    unpack_command,
)
from harness.guest.target import Target, load_target, parse_targets

# --- a tiny SSH server ------------------------------------------------------------------------


class _Server(paramiko.ServerInterface):
    def __init__(self, commands):
        self.commands = commands

    def check_auth_publickey(self, username, key):
        return paramiko.AUTH_SUCCESSFUL

    def get_allowed_auths(self, username):
        return "publickey"

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        handler = self.commands(command.decode())

        def later(chan):
            # paramiko answers the exec request only after this method returns: a handler that
            # closed the channel first made the client's exec_command fail ("Channel closed")
            # when the machine was busy.  Wait for the answer to be on its way.
            time.sleep(0.2)
            handler(chan)

        threading.Thread(target=later, args=(channel,), daemon=True).start()
        return True


def _reply(text: str, rc: int = 0, delay: float = 0.0):
    def handler(chan):
        time.sleep(delay)
        chan.sendall(text.encode())
        chan.send_exit_status(rc)
        chan.shutdown_write()
        chan.close()

    return handler


def _default_commands(command: str):
    if command == "hang":
        return lambda chan: time.sleep(30)
    if command == "drop":
        return lambda chan: (chan.sendall(b"partial\n"), time.sleep(0.2), chan.get_transport().close())
    if command.startswith("cat /proc/uptime"):
        return _reply("123.45 200.00\n")
    if command.startswith("fail"):
        return _reply("it failed\n", 3)
    return _reply(f"ran: {command}\n")


class FakeSshd:
    """Accepts any client key; answers exec requests through ``commands``."""

    def __init__(self, host_key: paramiko.PKey, commands=_default_commands):
        self.host_key = host_key
        self.commands = commands
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            t = paramiko.Transport(client)
            t.add_server_key(self.host_key)
            self.transports.append(t)
            try:
                t.start_server(server=_Server(self.commands))
            except (paramiko.SSHException, EOFError, OSError):
                continue

    def close(self):
        self.sock.close()
        for t in self.transports:
            t.close()


@pytest.fixture
def keys(tmp_path):
    client = generate_key(tmp_path / "client")
    host = generate_key(tmp_path / "host")
    other = generate_key(tmp_path / "other")
    return {"client": client, "host": host, "other": other}


@pytest.fixture
def sshd(keys):
    server = FakeSshd(paramiko.Ed25519Key.from_private_key_file(str(keys["host"])))
    yield server
    server.close()


def _known(tmp_path: Path, port: int, pub: Path, name: str = "known_hosts") -> Path:
    path = tmp_path / name
    path.write_text(known_hosts_line("127.0.0.1", port, pub))
    return path


def _pub(p: Path) -> Path:
    return p.with_name(p.name + ".pub")


# --- host keys ---------------------------------------------------------------------------------


def test_host_label_follows_openssh():
    assert host_label("example.org", 22) == "example.org"
    assert host_label("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_known_host_connects_and_runs(tmp_path, keys, sshd):
    known = _known(tmp_path, sshd.port, _pub(keys["host"]))
    ep = Endpoint("127.0.0.1", sshd.port, "root", keys["client"], known_hosts=known)
    with Connection(ep) as conn:
        assert conn.check("echo hi") == "ran: echo hi\n"
        ok, said = conn.probe(30)  # returns as soon as it answers; generous for a loaded host
        assert ok and "123.45" in said


def test_pinned_host_key_connects(keys, sshd):
    ep = Endpoint("127.0.0.1", sshd.port, "root", keys["client"], host_key=_pub(keys["host"]))
    with Connection(ep) as conn:
        assert conn.active


def test_unknown_host_key_is_refused(tmp_path, keys, sshd):
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_line("127.0.0.1", sshd.port + 1, _pub(keys["host"])))  # another port's key
    ep = Endpoint("127.0.0.1", sshd.port, "root", keys["client"], known_hosts=known)
    with pytest.raises(HostKeyError, match=r"is not in .*known_hosts: refusing to connect") as exc:
        Connection(ep).connect()
    assert "\n" not in exc.value.one_line()


def test_changed_host_key_is_refused(tmp_path, keys, sshd):
    known = _known(tmp_path, sshd.port, _pub(keys["other"]))  # same type, another key
    ep = Endpoint("127.0.0.1", sshd.port, "root", keys["client"], known_hosts=known)
    with pytest.raises(HostKeyError, match=r"host key of \[127.0.0.1\]:\d+ changed"):
        Connection(ep).connect()


def test_changed_pinned_key_is_refused(keys, sshd):
    ep = Endpoint("127.0.0.1", sshd.port, "root", keys["client"], host_key=_pub(keys["other"]))
    with pytest.raises(HostKeyError, match="changed"):
        Connection(ep).connect()


def test_no_known_hosts_at_all_is_refused(keys, sshd, tmp_path):
    ep = Endpoint("127.0.0.1", sshd.port, "root", keys["client"], known_hosts=tmp_path / "absent")
    with pytest.raises(HostKeyError, match="does not exist"):
        Connection(ep).connect()
    with pytest.raises(HostKeyError, match="no known_hosts file and no pinned host key"):
        Connection(Endpoint("127.0.0.1", sshd.port, "root", keys["client"])).connect()


def test_check_host_key_other_type_on_record(tmp_path, keys):
    rsa = paramiko.RSAKey.generate(1024)
    known = tmp_path / "kh"
    known.write_text(f"[h]:2200 ssh-rsa {rsa.get_base64()}\n")
    host = paramiko.Ed25519Key.from_private_key_file(str(keys["host"]))
    with pytest.raises(HostKeyError, match="changed: server offers ssh-ed25519"):
        check_host_key(load_known_hosts(known), "h", 2200, host, str(known))
    check_host_key(load_known_hosts(known), "h", 2200, rsa, str(known))  # on record: no error


def test_hashed_known_hosts_entries_count(tmp_path, keys):
    host = paramiko.Ed25519Key.from_private_key_file(str(keys["host"]))
    hashed = paramiko.HostKeys.hash_host("[10.9.9.9]:2022")
    known = tmp_path / "kh"
    known.write_text(f"{hashed} ssh-ed25519 {host.get_base64()}\n")
    check_host_key(load_known_hosts(known), "10.9.9.9", 2022, host, "kh")


# --- commands -------------------------------------------------------------------------------------


@pytest.fixture
def conn(tmp_path, keys, sshd):
    ep = Endpoint("127.0.0.1", sshd.port, "root", keys["client"], host_key=_pub(keys["host"]))
    c = Connection(ep).connect()
    yield c
    c.close()


def test_run_streams_output_and_status(conn, tmp_path):
    out = tmp_path / "guest.log"
    out.write_text("header\n")
    done, text = conn.run("fail now", output=out)
    assert done.returncode == 3 and not done.lost and done.killed is None
    assert text == "it failed\n" and out.read_text() == "header\nit failed\n"
    with pytest.raises(GuestError, match=r"fail on .* failed \(exit 3\): it failed"):
        conn.check("fail again")


def test_run_timeout_and_watchdog(conn):
    done, _ = conn.run("hang", timeout=1.0)
    assert done.returncode is None and done.killed == "no exit within 1 s" and not done.lost
    done, _ = conn.run("hang", watchdog=lambda: "step run made no progress")
    assert done.killed == "step run made no progress"
    done, _ = conn.run("hang", alive=lambda: "the guest stopped (vng exit 0)")
    assert done.lost and done.killed is None and done.returncode is None  # gone, not hung


def test_lost_connection_is_told_apart(conn, tmp_path):
    done, text = conn.run("drop", output=tmp_path / "o", timeout=20)
    assert done.lost and done.returncode is None and text.startswith("partial")
    ok, said = conn.probe(2)
    assert not ok and "down" in said


def _local_shell(command: str):
    """A server command run for real by this host's sh, its stdin the channel's data."""

    def handler(chan):
        data = b"".join(iter(lambda: chan.recv(65536), b""))
        done = subprocess.run(["sh", "-c", command], input=data, capture_output=True, check=False)
        chan.sendall(done.stdout + done.stderr)
        chan.send_exit_status(done.returncode)
        chan.shutdown_write()
        chan.close()

    return handler


def test_unpack_command_and_tar_of_make_the_run_folder_in_one_exec(keys, tmp_path):
    """What a run's command starts with (harness.guest.remote._stage), through a real sh and tar: the folder,
    its preparation and the files from the tar on the input, in one exec; names and modes kept."""
    server = FakeSshd(paramiko.Ed25519Key.from_private_key_file(str(keys["host"])), commands=_local_shell)
    seen = []
    inner = server.commands
    server.commands = lambda command: (seen.append(command), inner(command))[1]
    try:
        conn = Connection(Endpoint("127.0.0.1", server.port, "root", keys["client"], host_key=_pub(keys["host"])))
        conn.connect(timeout=10)
        src = tmp_path / "src"
        src.mkdir()
        script, binary = src / "guest.sh", src / "repro.bin"
        script.write_text("echo hi\n")
        binary.write_bytes(bytes(range(256)) * 4096)
        binary.chmod(0o755)
        dest = tmp_path / "guest" / "run-01"
        conn.feed(unpack_command(str(dest), before=f"touch {tmp_path}/prepared"), io.BytesIO(tar_of([script, binary])),
                  what="staging")
        assert len(seen) == 1 and "tar -x" in seen[0]
        assert (tmp_path / "prepared").exists()
        assert script.read_bytes() == (dest / "guest.sh").read_bytes()
        assert binary.read_bytes() == (dest / "repro.bin").read_bytes()
        assert (dest / "repro.bin").stat().st_mode & 0o777 == 0o755
        with pytest.raises(GuestError, match=r"staging on .* failed \(exit \d+\)"):
            conn.feed(unpack_command("/proc/nope/x"), io.BytesIO(tar_of([script])), what="staging")
        conn.close()
    finally:
        server.close()


def test_tar_of_names_modes_and_owner(tmp_path):
    a = tmp_path / "a.sh"
    a.write_text("x")
    a.chmod(0o700)
    with tarfile.open(fileobj=io.BytesIO(tar_of([a]))) as tar:
        (member,) = tar.getmembers()
    assert (member.name, member.mode, member.uid, member.uname, member.size) == ("a.sh", 0o700, 0, "root", 1)


# --- ssh:NAME targets ---------------------------------------------------------------------------------

GOOD = {
    "targets": {
        "lab1": {"host": "192.0.2.10", "key": "~/.ssh/id_ed25519", "loop_dir": "/var/tmp/harness"},
        "lab2": {"host": "lab2.example", "port": 2222, "user": "ci", "key": "/k", "known_hosts": "/kh",
                 "disks": ["/dev/disk/by-id/ata-SPARE", "/dev/vdc"], "sudo": True, "workdir": "/srv/h"},
    }
}


def test_targets_parse():
    t = parse_targets(GOOD, "targets.yaml")
    lab1, lab2 = t["lab1"], t["lab2"]
    assert lab1.port == 22 and lab1.user == "root" and lab1.key == Path("~/.ssh/id_ed25519").expanduser()
    assert lab1.known_hosts == Path("~/.ssh/known_hosts").expanduser() and lab1.workdir == "/var/tmp/harness"
    assert lab1.device(None) is None  # a loop image
    assert lab2.port == 2222 and lab2.user == "ci" and lab2.sudo and lab2.workdir == "/srv/h"
    assert lab2.device(None) == "/dev/disk/by-id/ata-SPARE"
    assert lab2.device("/dev/vdc") == "/dev/vdc"
    ep = lab2.endpoint()
    assert (ep.host, ep.port, ep.user, ep.known_hosts) == ("lab2.example", 2222, "ci", Path("/kh"))


@pytest.mark.parametrize("disk", ["/dev/sda", "/dev/vdc1", "/dev/disk/by-id/../../sda"])
def test_disk_not_in_the_config_is_refused(disk):
    lab2 = parse_targets(GOOD, "t")["lab2"]
    with pytest.raises(GuestError) as exc:
        lab2.device(disk)
    line = exc.value.one_line()
    assert line == (f"target lab2: disk {disk} is not among its config's disks "
                     "(/dev/disk/by-id/ata-SPARE, /dev/vdc): refusing to touch it")


def test_loop_target_refuses_any_disk():
    lab1 = parse_targets(GOOD, "t")["lab1"]
    with pytest.raises(GuestError, match="disks \\(none\\): refusing"):
        lab1.device("/dev/sdb")


@pytest.mark.parametrize("entry, message", [
    ({"key": "/k", "loop_dir": "/x"}, "lab: host: is required"),
    ({"host": "h", "loop_dir": "/x"}, "lab: key: is required"),
    ({"host": "h", "key": "/k"}, "name a loop_dir or spare disks"),
    ({"host": "h", "key": "/k", "loop_dir": "rel"}, "loop_dir: 'rel' is not an absolute path"),
    ({"host": "h", "key": "/k", "disks": ["sdb"]}, "disks: 'sdb' is not a /dev path"),
    ({"host": "h", "key": "/k", "loop_dir": "/x", "port": 70000}, "port: 70000 is not a TCP port"),
    ({"host": "h", "key": "/k", "loop_dir": "/x", "password": "no"}, "unknown key(s) password"),
    ({"host": "h", "key": "/k", "loop_dir": "/x", "sudo": "yes"}, "sudo: expected bool"),
])
def test_bad_targets_one_line_errors(entry, message):
    with pytest.raises(SpecError) as exc:
        parse_targets({"targets": {"lab": entry}}, "targets.yaml")
    assert message in str(exc.value) and str(exc.value).startswith("targets.yaml: targets: lab")


def test_targets_file_from_env(tmp_path, monkeypatch):
    path = tmp_path / "targets.yaml"
    path.write_text("targets:\n  lab1:\n    host: 192.0.2.10\n    key: /k\n    loop_dir: /var/tmp/h\n")
    monkeypatch.setenv("HARNESS_TARGETS", str(path))
    assert load_target("lab1").host == "192.0.2.10"
    with pytest.raises(UnknownName, match="Unknown target 'lab9' in .*Available: lab1"):
        load_target("lab9")
    with pytest.raises(GuestError, match="refusing to touch it"):
        select("ssh:lab1:/dev/sda")  # before any connection
    monkeypatch.setenv("HARNESS_TARGETS", str(tmp_path / "none.yaml"))
    with pytest.raises(UnknownName, match="no targets file"):
        select("ssh:lab1")


def test_unknown_backend_names_the_ssh_form():
    with pytest.raises(UnknownName) as exc:
        select("qemu")
    assert "ssh:NAME" in exc.value.one_line()


def test_staging_maps_the_run_folders_files_to_the_remote_run():
    plan = GuestPlan("t", "ext4", "", "/r/f/run-01/repro.c", (), ("{mnt}",), 60, None,
                     prebuilt="/r/f/run-01/repro.bin", binary_out="/r/f/run-01/repro.bin")
    copied = guest_plan(plan, Staging(guest_run="/w/runs/t", device=LoopImage("/w/t.img")))
    assert (copied.source, copied.prebuilt, copied.binary_out) == (
        "/w/runs/t/repro.c", "/w/runs/t/repro.bin", "/w/runs/t/repro.bin")
    shared = guest_plan(plan, Staging(guest_run="/run/harness-ssh/x", device=None, shared=True))
    assert shared.source == "/r/f/run-01/repro.c" and shared.binary_out == "/run/harness-ssh/x/repro.bin"


def test_target_dataclass_defaults():
    t = Target("n", "h", Path("/k"), Path("/kh"), loop_dir="/l")
    assert t.workdir == "/var/tmp/kernel-repro-harness" and t.device(None) is None
