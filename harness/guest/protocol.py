"""The guest protocol, both sides: the scripts the guest runs and the parser of what they print.

Writers (pure functions; the shell is in package files under ``templates/``,
rendered by ``render``, one templating style for every script):

- ``script(plan, device)``: the guest steps (setup, device, mount, compile,
  run, sync, umount, check), the device found the way the backend attaches
  the run's image: a virtio disk by serial (vng, snapshot), a loop device
  over the image copy (vng-ssh, ssh:NAME), a spare disk (ssh:NAME), or none
  (a reproducer that brings its own filesystem);
- ``wrapper(...)``: what one run executes over SSH (kmsg marks that slice the
  console per run, taint before/after, the steps in their own session);
- ``boot_script`` helpers for the long-lived guests' markers.

Each step prints ``@@harness step NAME begin UPTIME`` and ``... end RC
UPTIME`` on stdout and ``harness: step ...`` to /dev/kmsg, so the console
carries kernel timestamps for step boundaries (time-to-first-hit comes from
those).  ``GuestOutput.parse`` is the one reader of the stdout side;
``run_started_at``/``slice_console`` read the console side.  The literal
``@@harness`` appears in this module only.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

MARK = "@@harness"
KMSG = "harness:"  # kmsg prefix: the console shows "[ stamp] harness: step run begin 12.3"
MOUNT_POINT = "/tmp/harness-mnt"
BINARY = "/tmp/harness-repro"
RUN_MARK = f"{KMSG} run"  # "harness: run TOKEN begin|end RC" (one run of a long-lived guest)
SESSION = f"{MARK} session"  # a session event written into a run's guest.log by the host

# Steps whose failure means the harness could not do its job (INFRA_ERROR).
INFRA_STEPS = ("setup", "device", "mount", "compile", "faults", "environment")

# Markers of the long-lived guests' boot scripts (vng-ssh, snapshot).
SSH_READY = f"{MARK} ssh-guest ready"
SSH_FAILED = f"{MARK} ssh-guest error"
SNAPSHOT_READY = f"{MARK} snapshot-guest ready"
SNAPSHOT_FAILED = f"{MARK} snapshot-guest error"

TEMPLATES = Path(__file__).resolve().parent / "templates"
_TOKEN = re.compile(r"@([A-Z][A-Z0-9_]*)@")


def render(template: str, **values: str) -> str:
    """``templates/<template>`` with every ``@NAME@`` replaced by ``values[NAME]`` (pure).

    A placeholder without a value, or a value without a placeholder, is a bug
    in the caller: both raise.  Values go in verbatim (quote them first).
    """
    text = (TEMPLATES / template).read_text()
    wanted = set(_TOKEN.findall(text))
    missing, unused = wanted - set(values), set(values) - wanted
    if missing or unused:
        raise KeyError(f"template {template}: missing {sorted(missing)}, unused {sorted(unused)}")
    return _TOKEN.sub(lambda m: values[m.group(1)], text)


# --- the plan and the device ------------------------------------------------------------------


@dataclass(frozen=True)
class GuestPlan:
    """Inputs of the guest steps (all paths as the guest sees them)."""

    title: str
    fs_type: str
    mount_options: str
    source: str
    cflags: tuple[str, ...]
    args: tuple[str, ...]
    run_timeout: int
    check_argv: tuple[str, ...] | None  # "{dev}" replaced by the device
    sysctls: tuple[tuple[str, str], ...] = ()
    compiler: str = "gcc"
    prebuilt: str | None = None  # a binary compiled in an earlier guest, placed by the harness
    binary_out: str | None = None  # where this guest leaves the binary it compiles (its run folder)
    pre_run: tuple[str, ...] = field(default=())  # shell lines (fault injection, reproducer environment)
    post_run: tuple[str, ...] = field(default=())
    workdir: str | None = None  # where the reproducer runs (None: the mounted image)
    image: bool = True  # False: no harness image (the reproducer brings its own filesystem)
    compile_only: bool = False  # setup and compile, nothing else (a guest that compiles for guests without gcc)
    run_argv: tuple[str, ...] | None = None  # the run step runs this instead of a compiled reproducer (fstests' check)
    timeout_ends_trial: bool = False  # run_timeout is a trial's planned end (a C file that runs until stopped)


@dataclass(frozen=True)
class VirtioDisk:
    """The run's image attached at boot as a virtio disk (vng, snapshot)."""

    serial: str


@dataclass(frozen=True)
class LoopImage:
    """The run's image copy at ``image`` (a guest path), attached to a loop device.

    ``stage``: a folder in the guest's RAM the image is first copied into (sparse), so
    the filesystem under test sits on RAM as a cache=unsafe virtio disk does, and a
    read-only share of the image is no obstacle."""

    image: str
    stage: str | None = None


@dataclass(frozen=True)
class SpareDisk:
    """A block device the target's config allows; the image is written onto it first."""

    disk: str
    image: str


Device = VirtioDisk | LoopImage | SpareDisk | None


def expand(arg: str) -> str:
    return arg.replace("{mnt}", MOUNT_POINT).replace("{dev}", "$DEV")


def _quote(arg: str) -> str:
    """Quote an argument but keep $DEV expandable."""
    if "$DEV" in arg:
        return '"' + arg.replace('"', r"\"") + '"'
    return shlex.quote(arg)


def _device(device: Device) -> str:
    q, mnt = shlex.quote, shlex.quote(MOUNT_POINT)
    if isinstance(device, VirtioDisk):
        return render("device-virtio.sh", SERIAL=q(device.serial))
    if isinstance(device, LoopImage):
        staging = "  # the image is used where it is" if not device.stage else (
            f"  mkdir -p {q(device.stage)} && cp --sparse=always {q(device.image)} {q(device.stage)}/disk.img "
            f"|| {{ echo 'cannot copy the image into the guest'; return 1; }}\n"
            f"  img={q(device.stage)}/disk.img; HARNESS_STAGED=$img")
        return render("device-loop.sh", IMAGE=q(device.image), STAGING=staging, MNT=mnt)
    if isinstance(device, SpareDisk):
        return render("device-spare.sh", DISK=q(device.disk), IMAGE=q(device.image), MNT=mnt)
    return "# no harness image: the reproducer brings its own filesystem"


def _check(plan: GuestPlan) -> str:
    if not plan.check_argv:
        return "mark 'step check skipped'"
    return f"step check 300 {' '.join(_quote(expand(a)) for a in plan.check_argv)}"


def script(plan: GuestPlan, device: Device) -> str:
    """The guest steps for ``plan`` with the run's image found as ``device`` (pure)."""
    q, mnt = shlex.quote, shlex.quote(MOUNT_POINT)
    sysctls = "\n".join(
        f"  echo {q(v)} 2>/dev/null > /proc/sys/{k.replace('.', '/')} || echo 'sysctl {k} not set (not in this kernel)'"
        for k, v in plan.sysctls
    )
    with_image = plan.image and device is not None and not plan.compile_only
    if with_image:
        opts = f"-o {q(plan.mount_options)} " if plan.mount_options else ""
        attach = render("attach-disk.sh", FS_TYPE=q(plan.fs_type), MOUNT_OPTS=opts, MNT=mnt)
        detach = render("detach-disk.sh", MNT=mnt, CHECK=_check(plan))
    elif plan.compile_only:
        attach = detach = ""
    else:
        attach, detach = "mark 'step device skipped (no harness image)'", "mark 'step check skipped (no harness image)'"
    if plan.compile_only:
        run, pre, post = "mark 'step run skipped (compile only)'", (), ()
    else:
        argv = plan.run_argv or (BINARY, *plan.args)
        run = f"step run {plan.run_timeout} {' '.join(_quote(expand(a)) for a in argv)}"
        pre, post = plan.pre_run, plan.post_run
    compile_step = "mark 'step compile skipped (nothing to compile)'" if plan.run_argv else "step compile 0 compile || exit 0"
    return render(
        "steps.sh",
        TITLE=plan.title.replace("\n", " "), MARK=MARK, KMSG=KMSG, SYSCTLS=sysctls or "  :", MNT=mnt,
        DEVICE=_device(device if with_image else None).rstrip("\n"),
        PREBUILT=q(plan.prebuilt or ""), BINARY_OUT=q(plan.binary_out or ""), BINARY=BINARY,
        COMPILER=q(plan.compiler), COMPILER_TEXT=plan.compiler.replace('"', ""),
        CFLAGS=" ".join(q(f) for f in plan.cflags), SOURCE=q(plan.source),
        ATTACH=attach.rstrip("\n"), DETACH=detach.rstrip("\n"), PRE_RUN="\n".join(pre), POST_RUN="\n".join(post),
        WORKDIR=q(plan.workdir) if plan.workdir else mnt, RUN=run, COMPILE=compile_step,
    )


def wrapper(token: str, steps: str, sid_file: str, *, cwd: str | None = None, console_level: bool = True) -> str:
    """The per-run script a long-lived guest or a remote machine runs over SSH (guest paths)."""
    return render(
        "wrapper.sh", TOKEN=token, MARK=MARK, KMSG=KMSG, STEPS=shlex.quote(steps), SID_FILE=shlex.quote(sid_file),
        CONSOLE_LEVEL="echo 8 > /proc/sys/kernel/printk 2>/dev/null\n" if console_level else "",
        CD=f"cd {shlex.quote(cwd)} || exit 1\n" if cwd else "",
    )


def kill_command(sid_file: str) -> str:
    """Kill every process of a run's session (the steps, timeout(1), the reproducer)."""
    f = shlex.quote(sid_file)
    return f'[ -s {f} ] && pkill -KILL -s "$(cat {f})"; rm -f {f}; true'


def session_line(text: str) -> str:
    """A host-side session event as a line of the run's guest.log."""
    return f"{SESSION} {text}\n"


# --- the stdout side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepResult:
    name: str
    rc: int | None  # None: began but never ended (crash or hang inside it)
    begin: float  # guest uptime, seconds
    end: float | None

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else round(self.end - self.begin, 3)

    @property
    def timed_out(self) -> bool:
        return self.rc in (124, 137)


_STEP_RE = re.compile(rf"^{MARK} step (\S+) (begin|end) (?:(-?\d+) )?([\d.]+)\s*$")
_UP_RE = re.compile(rf"^{MARK} guest up ([\d.]+)(?: kernel (\S+))?")
_TAINT_RE = re.compile(rf"^{MARK} taint (before|after) (\d+)\s*$")
_DEVICE_RE = re.compile(rf"^{MARK} device (\S+)")
_BINARY_RE = re.compile(rf"^{MARK} binary (compiled|prebuilt)(?: ([0-9a-f]{{64}}))?\s*$")
_STUCK_RE = re.compile(rf"^{MARK} stuck (\d+) (\S+) (\S+)\s*$")
_LOST_RE = re.compile(r"^@@lost (.*)$")
_LOSS_AFTER_RE = re.compile(r"^@@first-loss-after ([\d.]+)")


@dataclass(frozen=True)
class GuestOutput:
    """Everything the guest steps (and a run wrapper) said on stdout."""

    steps: tuple[StepResult, ...] = ()
    up_at: float | None = None  # guest uptime when the steps began (what the boot cost)
    kernel: str | None = None  # `uname -r` in the guest
    taint_before: int | None = None
    taint_after: int | None = None
    device: str | None = None
    binary: str | None = None  # "compiled" (by this guest) or "prebuilt" (an earlier guest's, placed by the harness)
    binary_sha256: str | None = None  # of the binary this guest compiled, said by its compile step
    done: bool = False  # the steps reached their end
    lost: tuple[str, ...] = ()  # "@@lost X": what the reproducer found lost or wrong
    first_loss_after: float | None = None  # "@@first-loss-after S": seconds into the run
    sessions: tuple[str, ...] = ()  # host-side session events
    last_mark: str | None = None  # the last step mark: "run:begin", "sync:end"...
    stuck: tuple[str, ...] = ()  # "PID comm in wchan": processes the run's time limit left in D state

    @classmethod
    def parse(cls, text: str) -> GuestOutput:
        steps: dict[str, StepResult] = {}
        found: dict = {"lost": [], "sessions": [], "stuck": []}
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith(MARK):
                cls._mark(line, steps, found)
            elif m := _LOST_RE.match(line):
                found["lost"].append(m.group(1).strip())
            elif (m := _LOSS_AFTER_RE.match(line)) and "first_loss_after" not in found:
                found["first_loss_after"] = float(m.group(1))
        return cls(steps=tuple(steps.values()), lost=tuple(found.pop("lost")), sessions=tuple(found.pop("sessions")),
                   stuck=tuple(found.pop("stuck")), **found)

    @staticmethod
    def _mark(line: str, steps: dict[str, StepResult], found: dict) -> None:
        if m := _STEP_RE.match(line):
            name, what, rc, t = m.group(1), m.group(2), m.group(3), float(m.group(4))
            if what == "begin":
                steps[name] = StepResult(name, None, t, None)
            elif name in steps:
                steps[name] = StepResult(name, int(rc), steps[name].begin, t)
            found["last_mark"] = f"{name}:{what}"
        elif (m := _UP_RE.match(line)) and "up_at" not in found:
            found["up_at"], found["kernel"] = float(m.group(1)), m.group(2)
        elif m := _TAINT_RE.match(line):
            found[f"taint_{m.group(1)}"] = int(m.group(2))
        elif m := _STUCK_RE.match(line):
            found["stuck"].append(f"{m.group(1)} {m.group(2)} in {m.group(3)}")
        elif m := _DEVICE_RE.match(line):
            found["device"] = m.group(1)
        elif (m := _BINARY_RE.match(line)) and "run" not in steps and "binary" not in found:
            # said before the reproducer started: what the reproducer prints cannot pass for it
            found["binary"], found["binary_sha256"] = m.group(1), m.group(2)
        elif line == f"{MARK} done":
            found["done"] = True
        elif line.startswith(SESSION + " "):
            found["sessions"].append(line[len(SESSION) + 1:])

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def up(self) -> bool:
        """The guest reached its first step (booted)."""
        return self.up_at is not None

    @property
    def state(self) -> str:
        """Where the steps are: boot, steps (up, no step yet), NAME:begin, NAME:end, done."""
        if self.done:
            return "done"
        return self.last_mark or ("steps" if self.up else "boot")

    @property
    def open_steps(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps if s.rc is None)


def step_text(text: str, name: str) -> str:
    """What the guest printed inside step ``name`` (between its begin and end marks)."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith(f"{MARK} step {name} begin"):
            inside, lines = True, []
        elif line.startswith(f"{MARK} step {name} end"):
            inside = False
        elif inside:
            lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def tail(text: str, n: int = 1) -> str:
    """The last ``n`` lines of guest output that are not protocol marks."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(MARK)]
    return " | ".join(lines[-n:])


# --- the console side ---------------------------------------------------------------------------

_STAMP_RE = re.compile(r"^\[\s*(\d+\.\d+)\]")


def stamp_at(console: str, offset: int) -> float | None:
    """Kernel timestamp of the console line holding ``offset``."""
    start = console.rfind("\n", 0, offset) + 1
    m = _STAMP_RE.match(console[start : start + 40])
    return float(m.group(1)) if m else None


def line_stamp(line: str) -> float | None:
    m = _STAMP_RE.match(line)
    return float(m.group(1)) if m else None


def run_started_at(console: str) -> float | None:
    """Kernel time at which the run step began (its kmsg mark), or None."""
    idx = console.find(f"{KMSG} step run begin")
    return None if idx < 0 else stamp_at(console, idx)


def slice_console(console: str, token: str, start: int = 0) -> tuple[str, int]:
    """(one run's window of a long-lived guest's console, where the next window starts).

    The window opens at the line holding ``harness: run TOKEN begin`` (or at
    ``start`` when that line never reached the console: the guest died first)
    and runs to the end of what the console holds now: a late report of this
    run (after its end mark) stays with it.
    """
    at = console.find(f"{RUN_MARK} {token} begin", start)
    begin = start if at < 0 else console.rfind("\n", start, at) + 1
    if at >= 0 and begin < start:
        begin = start
    return console[begin:], len(console)


def console_has_end(console: str, token: str, start: int = 0) -> bool:
    return console.find(f"{RUN_MARK} {token} end", start) >= 0
