import subprocess

from harness.guest.protocol import GuestOutput, GuestPlan, VirtioDisk, script

DISK = VirtioDisk("harness-img0")
PLAN = GuestPlan(
    title="t",
    fs_type="ext4",
    mount_options="errors=continue",
    source="/r/repro.c",
    cflags=("-O2", "-pthread"),
    args=("{mnt}", "-t", "20", "{dev}"),
    run_timeout=60,
    check_argv=("e2fsck", "-fn", "{dev}"),
    sysctls=(("kernel.hung_task_timeout_secs", "20"),),
    prebuilt="/r/repro.bin",
    binary_out="/r/repro.bin",
)


def test_script_is_valid_bash():
    subprocess.run(["bash", "-n"], input=script(PLAN, DISK), text=True, check=True)


def test_script_steps_in_order():
    text = script(PLAN, DISK)
    order = [text.index(f"step {s} ") for s in ("setup", "device", "mount", "compile", "run", "sync", "umount", "check")]
    assert order == sorted(order)
    assert 'mount -t ext4 -o errors=continue "$DEV" /tmp/harness-mnt' in text
    assert "step run 60 /tmp/harness-repro /tmp/harness-mnt -t 20 \"$DEV\"" in text
    assert 'step check 300 e2fsck -fn "$DEV"' in text
    assert "/proc/sys/kernel/hung_task_timeout_secs" in text


def test_no_checker_is_said():
    text = script(GuestPlan(**{**PLAN.__dict__, "check_argv": None}), DISK)
    assert "step check skipped" in text


def test_guest_script_runs_its_protocol(tmp_path):
    """Run the real script's step helper under bash and parse what it prints."""
    helper = script(PLAN, DISK).split("setup() {")[0]  # up(), mark(), step()
    body = helper + "step ok 0 true\nstep bad 0 false\nstep slow 1 sleep 5\necho '@@harness done'\n"
    out = subprocess.run(["bash", "-c", body], capture_output=True, text=True).stdout
    steps = {s.name: s for s in GuestOutput.parse(out).steps}
    assert steps["ok"].rc == 0 and steps["bad"].rc == 1
    assert steps["slow"].timed_out and steps["slow"].rc == 124
    assert GuestOutput.parse(out).done


def test_parse_steps_open_step():
    out = "@@harness step run begin 70.41\nracing...\n"
    (run,) = GuestOutput.parse(out).steps
    assert run.rc is None and run.end is None and run.seconds is None
