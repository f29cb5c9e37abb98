"""Integration: the vng-ssh long-lived guest, and ssh:NAME against a real local sshd.

The ssh:NAME test starts its own sshd on 127.0.0.1 (config, host key and
authorized key in tmp_path, a free port) and uses this machine as the target:
a loop-device image, the steps' compile and run, dmesg before/after.  It runs
a reproducer that never crashes: the target's kernel is this host's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.guest.ssh import free_port, generate_key, known_hosts_line
from tools.bench.figures import trivial_spec

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parent.parent


def harness(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=1500, env={**os.environ, **(env or {})})


def _need(*progs: str) -> None:
    for prog in progs:
        if shutil.which(prog) is None and not Path(prog).exists():
            msg = f"{prog} missing (apt-get install openssh-server openssh-client)"
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)


def _results(done: subprocess.CompletedProcess) -> dict:
    assert done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout)


def test_vng_ssh_reboots_after_each_oops(vm, tmp_path):
    """ext4_inline on 6.1 (oops=panic): every hit powers the guest off; the next run gets a new boot."""
    _need("/usr/sbin/sshd", "ssh-keygen")
    done = harness("repro", "ext4_inline", "-k", "debian:6.1.0-47", "--backend", "vng-ssh", "--accel", "tcg", "--runs", "2",
                   "--json", "--results", str(tmp_path))
    result = _results(done)
    assert done.returncode == 0, done.stderr[-3000:]
    assert result["hits"] == 2 and result["verdict"] == "REPRODUCED", result
    folder = Path(result["results"][0]["folder"]).parent
    runs = [json.loads((folder / f"run-0{i}" / "result.json").read_text()) for i in (1, 2)]
    assert [r["guest"]["boot"] for r in runs] == [1, 2] and all(r["guest"]["booted"] for r in runs)
    assert "the guest went down" in runs[0]["guest"]["replace"]
    assert "reboot before run-02" in (folder / "session.log").read_text()
    assert "@@harness session reboot before run-02" in (folder / "run-02" / "guest.log").read_text()
    for i, r in enumerate(runs, 1):
        console = (folder / f"run-0{i}" / "console.log").read_text()
        assert console.startswith("[") and f"harness: run run-0{i}-" in console.splitlines()[0]
        assert "kernel BUG at fs/ext4/inline.c" in console
        assert r["time_to_hit"] is not None and r["steps"][0]["name"] == "setup"
    assert len(list((folder / "guest").glob("boot-*"))) == 2


def test_vng_ssh_one_boot_for_runs_that_do_not_crash(vm, tmp_path):
    _need("/usr/sbin/sshd", "ssh-keygen")
    repro = trivial_spec(tmp_path / "bench_trivial")
    done = harness("repro", str(repro), "-k", "debian:6.1.0-47", "--backend", "vng-ssh", "--accel", "tcg", "--runs", "3",
                   "--json", "--results", str(tmp_path / "results"))
    result = _results(done)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["verdict"] for r in result["results"]] == ["CLEAN"] * 3, result
    folder = Path(result["results"][0]["folder"]).parent
    runs = [json.loads((folder / f"run-0{i}" / "result.json").read_text()) for i in (1, 2, 3)]
    assert [r["guest"]["boot"] for r in runs] == [1, 1, 1]
    assert [r["guest"]["booted"] for r in runs] == [True, False, False]
    assert [r["guest"]["run_on_boot"] for r in runs] == [1, 2, 3]
    assert all(r["guest"]["replace"] is None for r in runs)
    for i in (1, 2, 3):
        console = (folder / f"run-0{i}" / "console.log").read_text()
        tokens = {ln.split("harness: run ")[1].split()[0] for ln in console.splitlines() if "harness: run run-" in ln}
        assert len(tokens) == 1 and tokens.pop().startswith(f"run-0{i}-")  # its own window only
        assert "read back: harness bench" in (folder / f"run-0{i}" / "guest.log").read_text()
    assert not (folder / "run-01" / "disk.img").exists()  # CLEAN: the image copy goes, as with vng


# --- ssh:NAME against a real sshd -------------------------------------------------------------------


@pytest.fixture
def local_sshd(tmp_path):
    """sshd on 127.0.0.1:PORT with its own config, host key and authorized key."""
    _need("/usr/sbin/sshd", "ssh-keygen", "losetup")
    if os.geteuid() != 0:
        pytest.skip("the local target needs root (loop devices, mount)")
    d = tmp_path / "sshd"
    d.mkdir()
    host = generate_key(d / "host_key", "test-sshd")
    client = generate_key(d / "client", "test-client")
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host}
AuthorizedKeysFile {d / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
StrictModes no
PidFile {d / 'sshd.pid'}
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    log = open(d / "sshd.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    (d / "known_hosts").write_text(known_hosts_line("127.0.0.1", port, d / "host_key.pub"))
    printk = Path("/proc/sys/kernel/printk").read_text().split()[0]
    yield {"port": port, "client": client, "known_hosts": d / "known_hosts", "dir": d}
    proc.terminate()
    proc.wait(10)
    log.close()
    with contextlib.suppress(OSError):  # the steps raise the console log level on their target: set it back
        Path("/proc/sys/kernel/printk").write_text(printk)


def _targets(tmp_path: Path, sshd: dict, known_hosts: Path | None = None) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(f"""targets:
  local:
    host: 127.0.0.1
    port: {sshd['port']}
    user: root
    key: {sshd['client']}
    known_hosts: {known_hosts or sshd['known_hosts']}
    loop_dir: {tmp_path / 'loop'}
    workdir: {tmp_path / 'work'}
""")
    return path


def _host_safe_spec(tmp_path: Path) -> Path:
    """The trivial reproducer, with no sysctls: this host's kernel is the target."""
    repro = trivial_spec(tmp_path / "trivial")
    text = (repro / "repro.yaml").read_text().replace("  cmdline: [\"oops=panic\"]\n", "  cmdline: []\n  sysctls: {}\n")
    (repro / "repro.yaml").write_text(text)
    return repro


def test_ssh_target_runs_the_steps_on_a_loop_image(local_sshd, tmp_path):
    env = {"HARNESS_TARGETS": str(_targets(tmp_path, local_sshd))}
    done = harness("repro", str(_host_safe_spec(tmp_path)), "-k", "debian:6.1.0-47", "--backend", "ssh:local", "--accel", "tcg",
                   "--runs", "2", "--json", "--results", str(tmp_path / "results"), env=env)
    result = _results(done)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["verdict"] for r in result["results"]] == ["CLEAN", "CLEAN"], result
    for r in result["results"]:
        assert [s["name"] for s in r["steps"]] == ["setup", "device", "mount", "compile", "run", "sync", "umount"]
        assert all(s["rc"] == 0 for s in r["steps"])
        run = Path(r["folder"])
        record = json.loads((run / "result.json").read_text())
        assert record["guest"]["backend"] == "ssh:local" and record["guest"]["device"] == "loop"
        assert record["guest"]["kernel_release"] == os.uname().release  # the target's kernel, not -k's
        assert "read back: harness bench" in (run / "guest.log").read_text()
        console = (run / "console.log").read_text()  # dmesg after, less dmesg before
        assert "harness: step run begin" in console and "harness: run run-0" in console
        token = re.search(r"harness: run (\S+) begin", console).group(1)  # this run's, not an earlier guest's
        before = (run / "dmesg-before.txt").read_text()  # the host's log: earlier tests' runs are in it too
        assert f"harness: run {token} begin" not in before
        assert "losetup" not in (run / "guest.log").read_text()  # the loop device attached cleanly
    # nothing left behind on the target: no image, no run folder, no loop device on it
    assert list((tmp_path / "loop").iterdir()) == []
    assert list((tmp_path / "work" / "runs").iterdir()) == []
    losetup = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(tmp_path / "loop") not in losetup
    for r in result["results"]:  # compiled on the target, with its own compiler, every run
        assert json.loads((Path(r["folder"]) / "result.json").read_text())["binary"]["compiled_in"] == "target"


def test_ssh_target_refuses_an_unknown_host_key(local_sshd, tmp_path):
    other = generate_key(tmp_path / "other_host")
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(known_hosts_line("127.0.0.1", local_sshd["port"], Path(str(other) + ".pub")))
    env = {"HARNESS_TARGETS": str(_targets(tmp_path, local_sshd, wrong))}
    done = harness("repro", str(_host_safe_spec(tmp_path)), "-k", "debian:6.1.0-47", "--backend", "ssh:local", "--accel", "tcg",
                   "--runs", "1", "--results", str(tmp_path / "results"), env=env)
    assert done.returncode == 7, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("harness: error: host key of [127.0.0.1]:") and "changed" in last


def test_ssh_target_refuses_a_disk_its_config_does_not_name(local_sshd, tmp_path):
    env = {"HARNESS_TARGETS": str(_targets(tmp_path, local_sshd))}
    done = harness("repro", str(_host_safe_spec(tmp_path)), "-k", "debian:6.1.0-47", "--backend", "ssh:local:/dev/sda", "--accel", "tcg",
                   "--runs", "1", "--results", str(tmp_path / "results"), env=env)
    assert done.returncode == 7, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "harness: error: target local: disk /dev/sda is not among its config's disks (none): refusing to touch it")


def test_ssh_target_uses_a_named_spare_disk(local_sshd, tmp_path):
    """A loop device of this host plays the spare disk: the image is written onto it, then the steps run."""
    backing = tmp_path / "spare.img"
    backing.write_bytes(b"")
    os.truncate(backing, 64 << 20)
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        path = _targets(tmp_path, local_sshd)
        path.write_text(path.read_text().replace(f"    loop_dir: {tmp_path / 'loop'}\n", f"    disks: [{dev}]\n"))
        env = {"HARNESS_TARGETS": str(path)}
        done = harness("repro", str(_host_safe_spec(tmp_path)), "-k", "debian:6.1.0-47", "--backend", f"ssh:local:{dev}",
                       "--accel", "tcg", "--runs", "1", "--json", "--results", str(tmp_path / "results"), env=env)
        result = _results(done)
        assert done.returncode == 0, done.stderr[-3000:]
        (run,) = result["results"]
        assert run["verdict"] == "CLEAN", run
        record = json.loads((Path(run["folder"]) / "result.json").read_text())
        assert record["guest"]["device"] == dev
        assert f"disk {dev} ({dev}) passed the allow-list" in (Path(run["folder"]).parent / "session.log").read_text()
        assert backing.read_bytes()[1024 + 56 : 1024 + 58] == b"\x53\xef"  # the ext4 image is on the "disk" now
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
