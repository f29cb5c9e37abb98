"""One contract, every backend (kirk's ``tests/test_sut.py`` habit): subclass ``BackendContract`` per backend.

The tests drive a backend through its contract (harness.guest.machine.Backend)
the way the run driver does: open, run a request, take the driver's one
decision about the guest (``unfit_reason`` -> ``replace``), run again, close.
The guest programs are tiny C files compiled on the host and handed to the
guest as its prebuilt binary (what every backend accepts), so the tests say
nothing about compiling and everything about the backend:

- a clean run leaves its console.log, guest.log and steps script, every step
  ends 0, the guest says its taint before and after;
- the guest writes nothing of the host's: the binary cache, the project tree
  and /root are out of its reach;
- a crash is seen in the run's own console window, and the next run (after
  the driver's replace) meets a kernel that has not crashed;
- a run stuck in the kernel (a write to a frozen filesystem, unkillable) is
  ended by the watchdog within its budget, and the next run goes on.

``tests/test_contract.py`` runs it against a fake backend, tests/test_vm_contract.py
against the real ones (vng, vng-ssh, snapshot, ssh:NAME).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness.guest.machine import Backend, Disk, GuestRequest, GuestRun, unfit_reason
from harness.guest.protocol import GuestOutput, GuestPlan
from harness.paths import PROJECT_ROOT, cache_dir

PROGRAMS = {
    "clean": r"""// contract: clean
#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
int main(int argc, char **argv) {
	char p[4096]; snprintf(p, sizeof p, "%s/contract", argc > 1 ? argv[1] : ".");
	int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "ok\n", 3) != 3 || fsync(fd)) { perror(p); return 1; }
	printf("contract: wrote %s\n", p);
	return 0;
}
""",
    "escape": r"""// contract: escape
#include <errno.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "w");
		int ok = f && fputs("escaped\n", f) >= 0 && fclose(f) == 0;
		printf("contract: write %s: %s\n", argv[i], ok ? "done" : strerror(errno));
	}
	return 0;
}
""",
    "crash": r"""// contract: crash
#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
int main(void) {
	int fd = open("/proc/sysrq-trigger", O_WRONLY);
	printf("contract: crashing the kernel\n"); fflush(stdout);
	if (fd < 0 || write(fd, "c", 1) != 1) { perror("sysrq"); return 1; }
	return 0;
}
""",
    "hang": r"""// contract: hang
#include <linux/fs.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>
int main(int argc, char **argv) {
	int dir = open(argv[1], O_RDONLY);
	if (dir < 0 || ioctl(dir, FIFREEZE, 0)) { perror("FIFREEZE"); return 1; }
	char p[4096]; snprintf(p, sizeof p, "%s/stuck", argv[1]);
	printf("contract: writing to a frozen filesystem\n"); fflush(stdout);
	int fd = open(p, O_CREAT | O_WRONLY, 0644);  /* sleeps in the kernel, unkillable, until thawed */
	printf("contract: never here (%d)\n", fd);
	return 0;
}
""",
}


def compile_program(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    src, out = folder / f"{name}.c", folder / f"{name}.bin"
    if not out.exists():
        src.write_text(PROGRAMS[name])
        subprocess.run(["gcc", "-O2", "-static", "-o", str(out), str(src)], check=True)
    return out


class StuckWatchdog:
    """The driver's watchdog, shortened: a run step older than ``after`` seconds made no progress."""

    def __init__(self, output: Path, after: float, boot_timeout: float = 240):
        self.output, self.after, self.boot_timeout = output, after, boot_timeout
        self.since: float | None = None
        self.reason: str | None = None

    def __call__(self) -> str | None:
        text = self.output.read_text(errors="replace") if self.output.exists() else ""
        if GuestOutput.parse(text).state == "run:begin":
            self.since = self.since or time.monotonic()
            if time.monotonic() - self.since > self.after:
                self.reason = f"step run made no progress for {self.after:.0f} s (test budget)"
        return self.reason


class BackendContract:
    """Subclasses set ``kernel`` (a fixture) and ``make_backend``; ``crashes`` False for a machine of the user's."""

    crashes = True  # the backend's guest may be crashed and hung (not a user's machine)
    escapes = True  # the escape test means something (the guest is a guest)
    timeout = 60.0  # host seconds a clean run may take (TCG)
    stuck_after = 15.0  # the test watchdog's budget for a run step that makes no progress

    def make_backend(self) -> Backend:
        raise NotImplementedError

    # --- plumbing -------------------------------------------------------------------------------

    @pytest.fixture
    def session(self, tmp_path, kernel):
        backend = self.make_backend()
        folder = tmp_path / "results"
        folder.mkdir()
        backend.open(folder)
        backend.plan(4)
        yield _Session(backend, kernel, folder, tmp_path / "bin")
        backend.close()

    # --- the contract ---------------------------------------------------------------------------

    def test_clean_runs_record_their_logs_and_taint(self, session):
        for i in (1, 2):
            run, out = session.run(f"run-0{i}", "clean", ("{mnt}",))
            assert run.console_log.exists() and run.output_log.exists()
            assert (session.folder / f"run-0{i}" / "guest.sh").exists()  # exactly what ran
            assert out.done and out.up, run.output_log.read_text()[-2000:]
            names = [s.name for s in out.steps]
            assert names[:5] == ["setup", "device", "mount", "compile", "run"], names
            assert all(s.rc == 0 for s in out.steps), out.steps
            assert out.binary == "prebuilt" and out.taint_before is not None and out.taint_after is not None
            assert "contract: wrote /tmp/harness-mnt/contract" in run.output_log.read_text()
            if run.signals is not None:
                assert unfit_reason(run.signals) is None  # a clean run leaves a fit guest

    def test_the_guest_writes_nothing_of_the_hosts(self, session):
        if not self.escapes:
            pytest.skip("the backend runs on a machine of the user's: it is not a guest")
        tag = uuid.uuid4().hex[:8]
        targets = [cache_dir("binaries") / f"contract-{tag}", PROJECT_ROOT / "tests" / f"contract-{tag}",
                   Path("/root") / f"contract-{tag}"]
        run, out = session.run("run-01", "escape", tuple(str(t) for t in targets))
        text = run.output_log.read_text()
        assert out.step("run").rc == 0, text[-2000:]
        for t in targets:
            assert f"contract: write {t}:" in text
            assert not t.exists(), f"the guest wrote {t} on the host"

    def test_a_crash_is_seen_and_the_next_run_meets_a_fresh_kernel(self, session):
        if not self.crashes:
            pytest.skip("the backend runs on a machine of the user's: the contract does not crash it")
        crashed, _ = session.run("run-01", "crash", ())
        console = crashed.console_log.read_text()
        assert "sysrq" in console.lower() and "Kernel panic" in console, console[-2000:]
        clean, out = session.run("run-02", "clean", ("{mnt}",))
        assert out.done and all(s.rc == 0 for s in out.steps), clean.output_log.read_text()[-2000:]
        assert "Kernel panic" not in clean.console_log.read_text()  # its own window, its own kernel
        assert out.taint_before == 0 or out.taint_before is not None and not out.taint_before & (1 << 7)

    def test_a_run_stuck_in_the_kernel_is_ended_and_the_next_goes_on(self, session):
        if not self.crashes:
            pytest.skip("the backend runs on a machine of the user's: the contract does not hang it")
        started = time.monotonic()
        stuck, out = session.run("run-01", "hang", ("{mnt}",), watchdog_after=self.stuck_after)
        assert time.monotonic() - started < self.stuck_after + self.timeout + 60  # ended within its budget
        assert stuck.detail and "made no progress" in stuck.detail
        assert out.step("run") is not None and out.step("run").rc is None  # never ended by itself
        assert "never here" not in stuck.output_log.read_text()
        clean, out = session.run("run-02", "clean", ("{mnt}",))
        assert out.done and all(s.rc == 0 for s in out.steps), clean.output_log.read_text()[-2000:]


class _Session:
    """A backend opened for the contract; ``run`` builds a request, runs it and acts as the driver."""

    def __init__(self, backend: Backend, kernel, folder: Path, bindir: Path):
        self.backend, self.kernel, self.folder, self.bindir = backend, kernel, folder, bindir

    def run(self, name: str, program: str, args: tuple[str, ...], *, watchdog_after: float | None = None
            ) -> tuple[GuestRun, GuestOutput]:
        run_dir = self.folder / name
        run_dir.mkdir()
        binary = run_dir / "repro.bin"
        shutil.copyfile(compile_program(program, self.bindir), binary)
        binary.chmod(0o755)
        source = run_dir / "repro.c"
        source.write_text(PROGRAMS[program])
        disk = run_dir / "disk.img"
        with open(disk, "wb") as fh:
            fh.truncate(32 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True)
        plan = GuestPlan(title=f"contract {program}", fs_type="ext4", mount_options="", source=str(source),
                         cflags=("-O2",), args=args, run_timeout=120, check_argv=None,
                         sysctls=(("kernel.hung_task_timeout_secs", "0"),), prebuilt=str(binary),
                         binary_out=str(binary))
        req = GuestRequest(kernel=self.kernel, plan=plan, run_dir=run_dir, accel="tcg", cmdline=("oops=panic",),
                           disks=(Disk(disk, "harness-img0"),), preload=("fs-ext4",), inputs=(source, binary))
        watchdog = StuckWatchdog(run_dir / "guest.log", watchdog_after or 1e9)
        run = self.backend.run(req, watchdog=watchdog)
        if run.signals is not None and (why := unfit_reason(run.signals)):
            self.backend.replace(why)  # the driver's one decision
        text = run.output_log.read_text(errors="replace") if run.output_log.exists() else ""
        return run, GuestOutput.parse(text)
