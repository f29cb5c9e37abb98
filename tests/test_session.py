"""vng-ssh pieces without a guest: argv, scripts, console windows, taint and reboot decisions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.errors import GuestError
from harness.guest.backends import select
from harness.guest.machine import (
    BENIGN_TAINT,
    Disk,
    GuestRequest,
    RunSignals,
    new_taint,
    taint_letters,
    unfit_reason,
)
from harness.guest.protocol import (
    SSH_READY,
    GuestOutput,
    GuestPlan,
    LoopImage,
    SpareDisk,
    VirtioDisk,
    console_has_end,
    kill_command,
    script,
    slice_console,
    wrapper,
)
from harness.guest.remote import dmesg_new
from harness.guest.ssh import GUEST_DIR, Keys, sshd_config
from harness.guest.vng import vng_argv
from harness.guest.vngssh import VngSsh, boot_key, boot_script, net_opts, session_boot
from harness.kernels import Kernel

READY = SSH_READY
KERNEL = Kernel("debian:6.1.0-47", "6.1.0-47-amd64", "6.1.170", Path("/k/vmlinuz"))


def _plan() -> GuestPlan:
    return GuestPlan(title="t", fs_type="ext4", mount_options="", source="/r/f/run-01/repro.c",
                     cflags=("-O2",), args=("{mnt}",), run_timeout=60, check_argv=("e2fsck", "-fn", "{dev}"))


def _req(**kw) -> GuestRequest:
    base = dict(kernel=KERNEL, plan=_plan(), run_dir=Path("/r/f/run-01"), accel="tcg", cmdline=("oops=panic",),
                disks=(Disk(Path("/r/f/run-01/disk.img"), "harness-img0"),))
    return GuestRequest(**{**base, **kw})


def parse_taint(out: str) -> tuple[int | None, int | None]:
    o = GuestOutput.parse(out)
    return o.taint_before, o.taint_after


def session_argv(req: GuestRequest, port: int) -> list[str]:
    return vng_argv(session_boot(req, ("bash", "/boot.sh"), port, Path("/b")))


def _bash_n(text: str, tmp_path: Path) -> None:
    path = tmp_path / "s.sh"
    path.write_text(text)
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- argv -------------------------------------------------------------------------------------


def test_session_argv_adds_a_loopback_only_nic_last():
    argv = session_argv(_req(disks=()), 40031)
    assert argv[-4] == f"--qemu-opts={' '.join(net_opts(40031))}"
    opts = next(a for a in argv if a.startswith("--qemu-opts="))
    assert "hostfwd=tcp:127.0.0.1:40031-:22" in opts and "restrict=on" in opts and "virtio-net-pci" in opts
    assert argv.index(opts) == argv.index("--") - 1  # vng wants --qemu-opts last


def test_session_guest_gets_no_disk_and_no_writable_share():
    """A run's disk reaches the guest as a file it reads (staged into RAM), never as a boot-time disk;
    and the guest may write nothing of the host's (issue 18: only its own run folder, and a session
    guest has none: what it makes comes home over SSH)."""
    argv = session_argv(_req(), 2222)
    opts = [a for a in argv if a.startswith("--qemu-opts=")]
    assert len(opts) == 1 and "serial=harness-img0" not in opts[0] and "hostfwd=tcp:127.0.0.1:2222-:22" in opts[0]
    assert "--rwdir" not in argv


def test_boot_key_changes_with_what_a_boot_fixes():
    a = boot_key(_req())
    assert a == boot_key(_req(run_dir=Path("/r/f/run-02"), disks=()))  # per-run parts do not count
    assert a != boot_key(_req(cmdline=()))
    assert a != boot_key(_req(cpus=1))


def test_boot_script_pins_keys_and_locks_down_sshd(tmp_path):
    keys = Keys(tmp_path, tmp_path / "client", tmp_path / "guest_host_key")
    text = boot_script(keys)
    _bash_n(text, tmp_path)
    assert f"S={GUEST_DIR}\n" in text
    assert f"printf '%s\\n' \"$(<{keys.host})\" > $S/ssh_host_ed25519_key" in text
    assert f"printf '%s\\n' \"$(<{keys.client_pub})\" > $S/authorized_keys" in text
    assert READY in text and "exec /usr/sbin/sshd -D -e" in text
    # never edits a shadow that is not the guest's own
    assert "fstype_of /etc/shadow\ncase $FSTYPE in\n  tmpfs|overlay) edit_root /etc/shadow" in text
    conf = sshd_config()
    for line in ("PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                 "UsePAM no"):
        assert line in conf


def test_vng_ssh_is_registered_and_takes_how_many_guests_boot_ahead():
    assert select("vng-ssh").name == "vng-ssh"
    assert select("vng-ssh").ahead == session_mod.DEFAULT_AHEAD
    assert select("vng-ssh:0").ahead == 0 and select("vng-ssh:3").ahead == 3
    for bad in ("x", "9", "-1"):
        with pytest.raises(GuestError, match="how many guests boot ahead"):
            VngSsh.parse(bad)


# --- guest scripts ---------------------------------------------------------------------------


def test_loop_device_replaces_the_virtio_lookup(tmp_path):
    text = script(_plan(), LoopImage("/r/f/run-01/disk.img"))
    _bash_n(text, tmp_path)
    assert text.index("local img=/r/f/run-01/disk.img") < text.index('losetup --find --show "$img"') \
        < text.index('mark "guest up')
    assert "HARNESS_STAGED=$img" not in text  # no staging unless asked
    assert "/sys/block/vd*" not in text  # no virtio lookup at all
    assert "trap harness_cleanup EXIT" in text and 'losetup -d "$HARNESS_LOOP"' in text
    virtio = script(_plan(), VirtioDisk("harness-img0"))
    assert text.endswith(virtio[virtio.index('\nmark "guest up'):])  # the steps themselves are the same


def test_loop_device_stages_the_image_in_ram(tmp_path):
    text = script(_plan(), LoopImage("/r/f/run-01/disk.img", stage="/run/harness-ssh/tok"))
    _bash_n(text, tmp_path)
    assert "cp --sparse=always /r/f/run-01/disk.img /run/harness-ssh/tok/disk.img" in text
    assert text.index("cp --sparse=always /r/f") < text.index('losetup --find --show "$img"')


def test_spare_disk_writes_the_image_first(tmp_path):
    text = script(_plan(), SpareDisk("/dev/vdc", "/w/runs/t/disk.img"))
    _bash_n(text, tmp_path)
    assert "DEV=/dev/vdc" in text and "dd if=/w/runs/t/disk.img of=\"$DEV\"" in text
    assert "is mounted: refusing to overwrite it" in text and "losetup --find" not in text


def test_wrapper_marks_taint_and_session(tmp_path):
    text = wrapper("run-03-abcd", "/r/f/run-03/ssh-steps.sh", "/run/harness-ssh/run-03-abcd.sid", cwd="/r/f/run-03")
    _bash_n(text, tmp_path)
    assert 'echo "harness: run run-03-abcd begin" > /dev/kmsg' in text
    assert 'echo "harness: run run-03-abcd end $rc" > /dev/kmsg' in text
    assert "setsid bash /r/f/run-03/ssh-steps.sh &" in text
    assert text.index("taint before") < text.index("setsid") < text.index("taint after")
    assert "printk" not in wrapper("t", "/s", "/sid", console_level=False)
    assert 'pkill -KILL -s "$(cat /sid)"' in kill_command("/sid")


def test_wrapper_runs_the_steps_and_reports_taint(tmp_path):
    """The real wrapper, on this host, with /dev/kmsg and printk out of reach (sed'ed to files)."""
    steps = tmp_path / "steps.sh"
    steps.write_text("echo '@@harness step run begin 1.0'; echo hello; echo '@@harness step run end 0 2.0'; exit 4\n")
    text = wrapper("tok", str(steps), str(tmp_path / "sid"), cwd=str(tmp_path))
    text = text.replace("/dev/kmsg", str(tmp_path / "kmsg")).replace("/proc/sys/kernel/printk", str(tmp_path / "pk"))
    (tmp_path / "w.sh").write_text(text)
    done = subprocess.run(["bash", str(tmp_path / "w.sh")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 4
    before, after = parse_taint(done.stdout)
    assert before is not None and after is not None and "hello" in done.stdout
    assert (tmp_path / "kmsg").read_text() == "harness: run tok end 4\n"  # last write wins in a plain file
    assert not (tmp_path / "sid").exists()


# --- taint ---------------------------------------------------------------------------------------


def test_taint_letters():
    assert taint_letters(0) == "-" and taint_letters(None) == "?"
    assert taint_letters((1 << 7) | (1 << 9)) == "DW"
    assert taint_letters(1 << 12 | 1 << 13) == "OE"


def test_parse_taint():
    out = "@@harness taint before 0\nstuff\n@@harness taint after 640\n"
    assert parse_taint(out) == (0, 640)
    assert parse_taint("@@harness taint before 4096\n") == (4096, None)


@pytest.mark.parametrize("before, after, new", [
    (0, 0, 0),
    (0, 1 << 7, 1 << 7),  # D: an oops
    (0, 1 << 9, 1 << 9),  # W: a warning
    (1 << 9, 1 << 9, 0),  # already warned before this run
    (0, 1 << 12 | 1 << 13, 0),  # O/E: an out-of-tree or unsigned module was loaded
    (None, 1 << 7, 0),
])
def test_new_taint(before, after, new):
    assert new_taint(before, after) == new


def test_benign_taint_is_module_loading_only():
    assert taint_letters(BENIGN_TAINT) == "PCOEKXT"


def test_reboot_decisions():
    reboot_reason = unfit_reason
    fit = RunSignals(0, 0)
    assert reboot_reason(fit) is None
    assert reboot_reason(RunSignals(0, 1 << 12)) is None
    assert "taint changed - -> DW (new: DW)" in reboot_reason(RunSignals(0, 1 << 7 | 1 << 9))
    assert "went down" in reboot_reason(RunSignals(0, None, lost=True))
    assert "no progress (step run made no progress" in reboot_reason(RunSignals(0, None, killed="step run made no progress"))
    assert "the console shows kernel BUG in x" in reboot_reason(RunSignals(0, 0, reports=("kernel BUG in x",)))
    assert "timeout in the guest" in reboot_reason(RunSignals(0, 0, run_rc=124))
    # a trial of a C file that runs until stopped ends at its planned D: said as that, not as a stuck reproducer
    assert reboot_reason(RunSignals(0, 0, run_rc=124, trial_end=True)) == (
        "the reproducer was stopped at the trial's planned end (its processes may still hold the kernel)")
    assert "without reporting the kernel's taint" in reboot_reason(RunSignals(0, None))


# --- console windows -----------------------------------------------------------------------------

CONSOLE = """[    1.000000] booting
[   40.000000] harness: run run-01-aa begin
[   40.100000] harness: step run begin 40.1
[   45.000000] harness: step run end 0 45.0
[   45.100000] harness: run run-01-aa end 0
[   46.000000] harness: run run-02-bb begin
[   46.100000] harness: step run begin 46.1
[   47.000000] kernel BUG at fs/ext4/inline.c:235!
[   47.100000] Kernel panic - not syncing: Fatal exception
"""


def test_slice_console_per_run():
    first, pos = slice_console(CONSOLE[: CONSOLE.index("[   46.0")], "run-01-aa")
    assert first.startswith("[   40.000000] harness: run run-01-aa begin") and "booting" not in first
    assert console_has_end(first, "run-01-aa") and not console_has_end(first, "run-02-bb")
    second, end = slice_console(CONSOLE, "run-02-bb", pos)
    assert second.startswith("[   46.000000] harness: run run-02-bb begin")
    assert "kernel BUG" in second and "run-01-aa" not in second and end == len(CONSOLE)


def test_slice_console_without_begin_mark_starts_where_the_last_run_ended():
    pos = CONSOLE.index("[   46.0")
    text = CONSOLE[:pos] + "[   46.000000] BUG: early\n"
    window, _ = slice_console(text, "run-02-zz", pos)
    assert window == "[   46.000000] BUG: early\n"


def test_slice_console_ignores_a_mark_before_start():
    window, _ = slice_console(CONSOLE, "run-01-aa", CONSOLE.index("[   46.0"))
    assert window.startswith("[   46.000000]")


def test_dmesg_new_anchors_on_the_tail():
    before = "[1.0] a\n[2.0] b\n[3.0] c\n"
    after = before + "[4.0] harness: run x begin\n[5.0] BUG: y\n"
    assert dmesg_new(before, after) == "[4.0] harness: run x begin\n[5.0] BUG: y\n"
    assert dmesg_new(before, before) == ""
    assert dmesg_new("", "[1.0] a\n") == "[1.0] a\n"


def test_dmesg_new_after_the_ring_buffer_wrapped():
    before = "[1.0] a\n[2.0] b\n[3.0] c\n"
    after = "[2.5] old\n[3.0] c-ish\n[4.0] new\n"
    assert dmesg_new(before, after) == "[4.0] new\n"


def test_dmesg_new_repeated_lines():
    before = "[1.0] same\n[2.0] same\n"
    after = "[1.0] same\n[2.0] same\n[3.0] same\n"
    assert dmesg_new(before, after) == "[3.0] same\n"


def test_trivial_spec_loads(tmp_path):
    from harness.repro import spec as specs
    from tools.bench.figures import trivial_spec

    spec = specs.load(str(trivial_spec(tmp_path / "t")))
    assert spec.name == "bench_trivial" and spec.args == ("{mnt}",) and spec.guest.cmdline == ("oops=panic",)


# --- the backend's decisions, with a fake guest and connection ------------------------------------

import re  # noqa: E402

from harness.guest import remote as remote_mod  # noqa: E402
from harness.guest import vngssh as session_mod  # noqa: E402
from harness.guest.ssh import Exec  # noqa: E402


class FakeConn:
    def __init__(self, guest, scenario):
        self.guest, self.scenario, self.active, self.commands = guest, scenario, True, []

    def run(self, command, output=None, timeout=None, watchdog=None, alive=None, stdin=None):
        assert stdin is None  # vng-ssh's guest reads the run folder over 9p: nothing is sent
        self.commands.append(command)
        if command == "cat /proc/sys/kernel/tainted":
            return Exec(0, 0.1), f"{self.guest.taint}\n"
        if command.startswith(("rm -rf ", "[ -f ", "mkdir -p ", "bash -c ")):  # cleanup, staging, kill
            return Exec(0, 0.1), ""
        if command.startswith("echo o > /proc/sysrq-trigger"):
            self.guest.dead = "the guest stopped (vng exit 0)"
            return Exec(None, 0.1, lost=True), ""
        wrapper_text = Path(command.split()[-1]).read_text()
        token = re.search(r"harness: run (\S+) begin", wrapper_text).group(1)
        kind = self.scenario.pop(0)
        stamp = f"[{100 + len(self.commands):4d}.000000]"
        console = f"{stamp} harness: run {token} begin\n{stamp} harness: step run begin 1.0\n"
        text = f"@@harness taint before {self.guest.taint}\n@@harness guest up 1.0 kernel k\n@@harness step run begin 1.0\n"
        result = Exec(0, 1.0)
        if kind == "clean":
            text += f"@@harness step run end 0 2.0\n@@harness done\n@@harness taint after {self.guest.taint}\n"
            console += f"{stamp} harness: run {token} end 0\n"
        elif kind == "warn":
            self.guest.taint = 512
            text += "@@harness step run end 0 2.0\n@@harness done\n@@harness taint after 512\n"
            console += f"{stamp} WARNING: CPU: 0 PID: 1 at fs/ext4/inode.c:1 ext4_x+0x1/0x2\n{stamp} harness: run {token} end 0\n"
        elif kind == "oops":
            console += f"{stamp} kernel BUG at fs/ext4/inline.c:235!\n{stamp} Kernel panic - not syncing: Fatal exception\n"
            self.guest.dead = "the guest stopped (vng exit 0)"
            result = Exec(None, 1.0, lost=True)
        elif kind == "stuck":
            result = Exec(None, 1.0, killed="step run made no progress for 105 s (budget 105 s)")
        with open(self.guest.console, "a") as fh:
            fh.write(console)
        if output:
            with open(output, "a") as fh:
                fh.write(text)
        return result, text

    def probe(self, timeout=15.0):
        return True, "answered in 0.2 s (uptime 300.00)"

    def check(self, command, *, timeout=60.0, what=None):
        done, text = self.run(command)
        assert done.ok, command
        return text

    def get(self, remote, local, *, prefix=""):
        self.commands.append(f"get {remote}")

    def close(self):
        self.active = False


class FakeGuest:
    boots: list = []

    def __init__(self, index, req, boot_dir, keys, port, hide=()):
        self.index, self.req, self.boot_dir, self.port, self.hide = index, req, boot_dir, port, hide
        self.ready_seconds, self.stopped = 1.0, None
        boot_dir.mkdir(parents=True, exist_ok=True)
        self.console = boot_dir / "console.log"
        self.console.write_text("[    0.000000] Linux version 6.1\n")
        self.argv, self.dead, self.taint, self.done = ["vng"], None, 0, None
        FakeGuest.boots.append(self)

    def start(self):
        pass

    def wait_ready(self, timeout):
        self.conn = FakeConn(self, FakeGuest.scenario)
        return self.conn

    def gone(self):
        return self.dead

    def wait_gone(self, timeout):
        return True

    def text(self, which="output"):
        return self.console.read_text() if which == "console" else ""

    def stop(self, reason, conn=None):
        self.stopped = (reason, conn)
        self.dead = self.dead or f"stopped: {reason}"

    def port_taken(self):
        return False


@pytest.fixture
def fake_session(tmp_path, monkeypatch):
    FakeGuest.boots = []
    monkeypatch.setattr(session_mod, "Guest", FakeGuest)
    monkeypatch.setattr(remote_mod, "CONSOLE_SETTLE", 0.5)
    monkeypatch.setattr(session_mod, "make_keys", lambda d: Keys(d, d / "client", d / "host"))
    monkeypatch.setattr(session_mod, "lean_boot_available", lambda: (True, "test: udev hidden"))
    monkeypatch.setattr(session_mod, "skipped_paths", lambda: ("/usr/bin/udevadm",))
    folder = tmp_path / "results"
    folder.mkdir()
    backend = VngSsh()
    backend.open(folder)
    events = []
    backend.progress = events.append

    def run(i):
        """One run as the run driver makes it: the backend runs, the driver decides about the guest."""
        run_dir = folder / f"run-{i:02d}"
        run_dir.mkdir()
        req = _req(run_dir=run_dir, disks=(Disk(run_dir / "disk.img", "harness-img0"),))
        result = backend.run(req)
        why = unfit_reason(result.signals)
        if why:
            backend.replace(why)
        result.info["replace"] = why
        return result

    yield backend, run, events, folder
    backend.close()


def test_session_reuses_the_guest_while_runs_stay_clean(fake_session):
    backend, run, events, folder = fake_session
    FakeGuest.scenario = ["clean", "clean", "clean"]
    results = [run(i) for i in (1, 2, 3)]
    assert len(FakeGuest.boots) == 1
    assert [r.info["booted"] for r in results] == [True, False, False]
    assert [r.info["run_on_boot"] for r in results] == [1, 2, 3]
    assert all(r.info["replace"] is None and r.returncode == 0 and r.detail is None for r in results)
    for i, r in enumerate(results, 1):
        window = r.console_log.read_text()
        assert window.count("harness: run run-") == 2 and f"harness: run run-0{i}-" in window
        assert "Linux version" not in window  # the boot belongs to no run
    assert "losetup" in (folder / "run-01" / "guest.sh").read_text()
    conn = FakeGuest.boots[0].conn
    assert [c for c in conn.commands if c.startswith("rm -rf /run/harness-ssh/run-0")][:1]  # RAM copy freed
    assert not [c for c in conn.commands if "cp --sparse" in c]  # CLEAN: no evidence to bring home


def test_session_reboots_after_an_oops_and_keeps_the_verdict_evidence(fake_session):
    backend, run, events, folder = fake_session
    FakeGuest.scenario = ["oops", "clean"]
    first, second = run(1), run(2)
    assert first.returncode is None and "went down" in first.detail
    assert "kernel BUG at fs/ext4/inline.c:235!" in first.console_log.read_text()
    assert "the guest went down" in first.info["replace"]
    assert second.info["booted"] and second.info["boot"] == 2 and "went down" in second.info["reboot_before"]
    assert len(FakeGuest.boots) == 2
    log = (folder / "session.log").read_text()
    assert "reboot before run-02" in log and "boot 2 for run-02" in log
    assert (folder / "run-02" / "guest.log").read_text().startswith("@@harness session reboot before run-02")


def test_session_reboots_after_a_new_taint(fake_session):
    backend, run, events, folder = fake_session
    FakeGuest.scenario = ["warn", "clean"]
    first, second = run(1), run(2)
    assert first.returncode == 0 and "taint changed - -> W" in first.info["replace"]
    assert first.info["taint_after"] == "W" and second.info["boot"] == 2


def test_session_probes_on_a_host_timeout(fake_session):
    backend, run, events, folder = fake_session
    FakeGuest.scenario = ["stuck", "clean"]
    first, second = run(1), run(2)
    assert first.returncode is None
    assert first.detail.startswith("step run made no progress")
    assert "probe: guest responsive: the reproducer is slow or stuck, the kernel still schedules" in first.detail
    assert first.info["probe"]["responsive"] is True
    assert "no progress" in first.info["replace"] and second.info["boot"] == 2


def test_session_reboots_when_taint_changes_between_runs(fake_session):
    backend, run, events, folder = fake_session
    FakeGuest.scenario = ["clean", "clean"]
    run(1)
    FakeGuest.boots[0].taint = 1 << 9  # e.g. a late warning after the run's window closed
    second = run(2)
    assert "taint changed between runs - -> W" in second.info["reboot_before"] and second.info["boot"] == 2


def test_session_close_powers_the_guest_off(fake_session):
    backend, run, events, folder = fake_session
    FakeGuest.scenario = ["clean"]
    run(1)
    guest = FakeGuest.boots[0]
    backend.close()
    assert guest.stopped == ("session closed", guest.conn)  # graceful: powered off through the connection
    assert backend.keys is None and backend.current is None


def test_session_boots_ahead_once_a_run_needed_a_reboot(fake_session):
    backend, run, events, folder = fake_session
    backend.plan(4)
    FakeGuest.scenario = ["oops"] * 4
    results = [run(i) for i in (1, 2, 3, 4)]
    # run 1 boots in the foreground (nothing is known yet); its oops starts boots 2 and 3
    # ahead; each later run adopts the oldest and tops the pool up to the runs still to come
    assert [r.info["boot"] for r in results] == [1, 2, 3, 4]
    assert [r.info.get("booted_ahead", False) for r in results] == [False, True, True, True]
    assert len(FakeGuest.boots) == 4  # no guest booted for a run that never comes
    assert all(g.hide == ("/usr/bin/udevadm",) for g in FakeGuest.boots)
    log = (folder / "session.log").read_text()
    assert "boot 2 started ahead, for a run after run-01" in log
    assert "reboot before run-02" in log and "boot 2 (booted ahead) takes run-02" in log
    assert "@@harness session boot 3 (booted ahead) takes run-03" in (folder / "run-03" / "guest.log").read_text()


def test_session_boots_nothing_ahead_while_runs_stay_clean(fake_session):
    backend, run, events, folder = fake_session
    backend.plan(3)
    FakeGuest.scenario = ["clean"] * 3
    [run(i) for i in (1, 2, 3)]
    assert len(FakeGuest.boots) == 1 and not backend.spares


def test_session_close_stops_the_guests_booted_ahead(fake_session):
    backend, run, events, folder = fake_session
    backend.plan(5)
    FakeGuest.scenario = ["oops", "clean"]
    run(1)
    spares = list(backend.spares)
    assert len(spares) == 2
    backend.close()
    assert all(g.stopped == ("session closed", None) for g in spares) and not backend.spares


def test_lean_prefix_hides_binaries_in_a_private_mount_namespace():
    argv = session_mod.lean_prefix(("/usr/bin/udevadm", "/usr/bin/systemd-tmpfiles"))
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert argv[-3:-1] == ["-c", 'mount --bind /dev/null /usr/bin/udevadm && '
                                 'mount --bind /dev/null /usr/bin/systemd-tmpfiles && exec "$@"']
    assert argv[-1] == "sh"  # $0; vng's argv follows as "$@"
    assert session_mod.lean_prefix(()) == []


def test_boot_script_loads_the_nic_driver_and_preloads_modules(tmp_path):
    keys = Keys(tmp_path, tmp_path / "client", tmp_path / "host")
    text = session_mod.boot_script(keys, ("fs-ext4",))
    assert "modprobe -q -a loop virtio_net" in text
    assert "(modprobe -q -a fs-ext4 &)\nexec /usr/sbin/sshd" in text
    assert "@PRELOAD@" not in session_mod.boot_script(keys)
    _bash_n(text, tmp_path)


def _boot_function(name: str) -> str:
    text = session_mod.boot_script(Keys(Path("/k"), Path("/k/c"), Path("/k/h")))
    start = text.index(f"{name}() {{")
    return text[start:text.index("\n}\n", start) + 3]


def test_boot_script_edits_roots_entries_with_builtins(tmp_path):
    shadow, passwd = tmp_path / "shadow", tmp_path / "passwd"
    shadow.write_text("root:*:20228:0:99999:7:::\nsshd:*:20228:0:99999:7:::\n")
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:n:/:/usr/sbin/nologin\n")
    body = _boot_function("edit_root") + f"""
edit_root {shadow} '"root:harness-pubkey-only:${{line#root:*:}}"'
edit_root {passwd} '"${{line%:*}}:/bin/sh"'
"""
    subprocess.run(["bash", "-c", body], check=True)
    assert shadow.read_text() == "root:harness-pubkey-only:20228:0:99999:7:::\nsshd:*:20228:0:99999:7:::\n"
    assert passwd.read_text() == "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:n:/:/usr/sbin/nologin\n"


def test_boot_script_finds_the_mount_holding_a_path(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("root / 9p ro 0 0\nnone /etc overlay rw 0 0\ntmpfs /etc/shadow tmpfs rw 0 0\nproc /proc proc rw 0 0\n")
    fn = _boot_function("fstype_of").replace("/proc/self/mounts", str(mounts))
    out = subprocess.run(["bash", "-c", fn + 'for p in /etc/shadow /etc/passwd /usr/bin/x /etcetera; do fstype_of $p; '
                          'echo $FSTYPE; done'], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["tmpfs", "overlay", "9p", "9p"]
