import subprocess

from harness.guest.steps import GuestPlan, guest_done, parse_steps, script

PLAN = GuestPlan(
    title="t",
    disk_serial="harness-img0",
    fs_type="ext4",
    mount_options="errors=continue",
    source="/r/repro.c",
    cflags=("-O2", "-pthread"),
    args=("{mnt}", "-t", "20", "{dev}"),
    run_timeout=60,
    check_argv=("e2fsck", "-fn", "{dev}"),
    sysctls=(("kernel.hung_task_timeout_secs", "20"),),
    binary_cache="/cache/bin/x",
)


def test_script_is_valid_bash():
    subprocess.run(["bash", "-n"], input=script(PLAN), text=True, check=True)


def test_script_steps_in_order():
    text = script(PLAN)
    order = [text.index(f"step {s} ") for s in ("setup", "device", "mount", "compile", "run", "sync", "umount", "check")]
    assert order == sorted(order)
    assert 'mount -t ext4 -o errors=continue "$DEV" /tmp/harness-mnt' in text
    assert "step run 60 /tmp/harness-repro /tmp/harness-mnt -t 20 \"$DEV\"" in text
    assert 'step check 300 e2fsck -fn "$DEV"' in text
    assert "/proc/sys/kernel/hung_task_timeout_secs" in text


def test_no_checker_is_said():
    text = script(GuestPlan(**{**PLAN.__dict__, "check_argv": None}))
    assert "step check skipped" in text


def test_guest_script_runs_its_protocol(tmp_path):
    """Run the real script's step helper under bash and parse what it prints."""
    helper = script(PLAN).split("setup() {")[0]  # up(), mark(), step()
    body = helper + "step ok 0 true\nstep bad 0 false\nstep slow 1 sleep 5\necho '@@harness done'\n"
    out = subprocess.run(["bash", "-c", body], capture_output=True, text=True).stdout
    steps = {s.name: s for s in parse_steps(out)}
    assert steps["ok"].rc == 0 and steps["bad"].rc == 1
    assert steps["slow"].timed_out and steps["slow"].rc == 124
    assert guest_done(out)


def test_parse_steps_open_step():
    out = "@@harness step run begin 70.41\nracing...\n"
    (run,) = parse_steps(out)
    assert run.rc is None and run.end is None and run.seconds is None
