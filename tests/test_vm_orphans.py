"""kill -9 of the harness mid-run, for each backend: 10 s later nothing of that run is alive (issues 16 and 18).

The harness runs as a user starts it (``python -m harness repro``) with
``HARNESS_CHAOS_TAG`` in its environment; every process it starts inherits
it (vng, virtme-run, QEMU, the long-lived backends' guests), so the run's
processes are found by that tag, not by name: other guests on the machine
are not this run's.  For ``ssh:NAME`` (this host through a local sshd, as in
test_vm_ssh.py) the run's processes on the target carry no tag (sshd does not
pass it on): they are the sshd sessions the listener forked for the run and
every process working in the target's workdir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from test_vm_ssh import _targets, local_sshd  # noqa: F401 (the fixture, for the ssh:NAME target)

from tools.chaos.sandbox import TAG, Proc, guest_state, run_dirs, survivors, tagged, wait_for

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parent.parent
SETTLE = 10.0

SLEEPER = r"""#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
	char p[4096]; snprintf(p, sizeof p, "%s/orphan", argv[1]);
	int fd = open(p, O_CREAT | O_WRONLY, 0644);
	if (fd < 0) { perror(p); return 1; }
	for (int i = 0; i < 120; i++) { printf("orphans: %d\n", i); fflush(stdout); sleep(1); }
	return 0;
}
"""


def sleeper_spec(root: Path) -> Path:
    """A reproducer that sleeps in its run step (host-safe: no sysctls, no boot options: ssh:local is this host)."""
    folder = root / "orphans_sleep"
    folder.mkdir(parents=True)
    (folder / "repro.c").write_text(SLEEPER)
    (folder / "repro.yaml").write_text(
        'name: orphans_sleep\nsource: repro.c\nargs: ["{mnt}"]\ntimeout: 150\nimage: {fs: ext4, size: 32M}\n'
        "kernel: debian:6.1\nguest: {cpus: 2, memory: 1G, cmdline: [], sysctls: {}}\nexpect: {titles: []}\n")
    return folder


def start(tmp_path: Path, backend: str, env: dict | None = None) -> tuple[subprocess.Popen, str, Path]:
    tag = f"orphans-{uuid.uuid4().hex[:10]}"
    results = tmp_path / "results"
    err = open(tmp_path / "harness.err", "w")  # noqa: SIM115 (the child writes it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "repro", str(sleeper_spec(tmp_path)), "-k", "debian:6.1", "--accel", "tcg",
         "--backend", backend, "--results", str(results)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, TAG: tag, **(env or {})},
        start_new_session=True)
    return proc, tag, results


def kill_mid_run(proc: subprocess.Popen, results: Path, timeout: float = 900, also=lambda: True) -> None:
    """SIGKILL the harness once its first run's reproducer is running (and ``also`` holds)."""
    def running() -> bool:
        dirs = run_dirs(results)
        return bool(dirs) and guest_state(dirs[0]) == "run:begin" and "orphans: 2" in (
            dirs[0] / "guest.log").read_text(errors="replace") and also()

    try:
        wait_for("the run step", running, timeout, every=0.2, alive=lambda: proc.poll() is None)
    finally:
        proc.kill()
        proc.wait(60)


def names(procs: list[Proc]) -> list[str]:
    return [f"{p}: {p.cmdline[:100]}" for p in procs]


@pytest.mark.parametrize("backend", ["vng", "vng-ssh:0", "snapshot"])
def test_kill_9_mid_run_leaves_no_guest(vm, tmp_path, backend):
    proc, tag, results = start(tmp_path, backend)
    # snapshot: the next run's guest, restored while this one runs, is alive too (two QEMUs)
    qemus = 2 if backend == "snapshot" else 1
    kill_mid_run(proc, results, also=lambda: sum(p.name.startswith("qemu-system") for p in tagged(tag)) >= qemus)
    died = time.monotonic()
    left = survivors(tag, SETTLE)
    assert not left, f"{SETTLE:.0f} s after kill -9 of the harness ({backend}), still alive: {names(left)}"
    assert time.monotonic() - died <= SETTLE + 1


def _children(pid: int) -> list[Proc]:
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            out.append(Proc(int(entry.name), stat[stat.find("(") + 1:stat.rfind(")")], cmd))
    return out


def _in_workdir(workdir: Path) -> list[Proc]:
    """Processes whose command line or working directory is in the target's workdir (the run's steps)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
        except OSError:
            continue
        if str(workdir) in cmd or cwd.startswith(str(workdir)):
            out.append(Proc(int(entry.name), Path(f"/proc/{entry.name}/comm").read_text().strip(), cmd))
    return out


def test_kill_9_mid_run_leaves_nothing_on_an_ssh_target(local_sshd, tmp_path):  # noqa: F811
    env = {"HARNESS_TARGETS": str(_targets(tmp_path, local_sshd))}
    listener = int((local_sshd["dir"] / "sshd.pid").read_text())
    proc, tag, results = start(tmp_path, "ssh:local", env)
    kill_mid_run(proc, results)
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline and (_children(listener) or _in_workdir(tmp_path / "work")):
        time.sleep(0.5)
    sessions, steps = _children(listener), _in_workdir(tmp_path / "work")
    for p in steps:  # the test's own clean-up (the assertion below says what was left)
        os.kill(p.pid, signal.SIGKILL)
    assert not tagged(tag)
    assert not sessions, f"sshd sessions of the run still alive: {names(sessions)}"
    assert not steps, f"the run's steps still running on the target: {names(steps)}"
