"""The one per-run protocol over SSH: stage -> run -> settle -> console window -> collect -> signals.

vng-ssh (a long-lived guest), snapshot (a guest restored for each run) and
ssh:NAME (a machine of the user's) differ in how their guest comes to be and
where its console is; one run on any of them is this module's ``run_over``:

1. stage: the run's steps script (harness.guest.protocol.script, with the
   device the backend attaches) and the wrapper are written into the run
   folder (exactly what ran), then copied to the guest with the run's inputs
   (source, prebuilt binary) in one round trip, a tar stream, unless the guest
   reads the host's files where they are (``Staging.shared``: vng-ssh's
   read-only 9p root); a remote machine's image follows;
2. run: the wrapper over SSH, its output streamed into the run's guest.log
   under the run's watchdog;
3. settle: on a host-side timeout the guest is probed (an answer: the
   reproducer is slow or stuck, its processes are killed; none: the kernel
   hung); a guest that went down gets time to finish dying; a live one's
   console gets time to show the run's end mark;
4. console window: the backend's ``Console`` says where the run's console
   is (a slice of a serial log, or a machine's new dmesg lines);
5. collect: what the guest compiled, and the image when it is the evidence
   (data loss, a failed check), come home into the run folder; the guest's
   copy of the run is removed (unless the guest is thrown away after it);
6. signals: taint before/after, the run step's status, the reports in the
   window, a lost connection, a kill: the driver decides from them whether
   the guest may take another run (harness.guest.machine.unfit_reason).

Guests write nothing on the host: everything comes back over SSH.
"""

from __future__ import annotations

import contextlib
import posixpath
import shlex
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from harness import report
from harness.errors import GuestError
from harness.guest.machine import GuestRequest, GuestRun, RunSignals, taint_letters
from harness.guest.protocol import (
    Device,
    GuestOutput,
    GuestPlan,
    console_has_end,
    kill_command,
    line_stamp,
    script,
    wrapper,
)
from harness.guest.ssh import Connection, tar_of, unpack_command

STAGING_FAILED = 251  # the run's command exits so when its folder, preparation or files could not be made
PROBE_TIMEOUT = 15.0  # a trivial command's answer on a host-side timeout: does the kernel still schedule?
PANIC_WAIT = 30.0  # a panic with panic=-1 powers the guest off; give QEMU this long
CONSOLE_SETTLE = 10.0  # for the run's end mark to reach the console (serial is real time)


class Guest(Protocol):
    """The running guest (or machine) a run is made on."""

    def gone(self) -> str | None: ...

    def wait_gone(self, timeout: float) -> bool: ...


class Console(Protocol):
    """Where a run's console is: ``mark`` before the run, ``window`` after it (``text``: the live log, for settling)."""

    def mark(self, conn: Connection) -> object: ...

    def window(self, mark: object, token: str, conn: Connection, run_dir: Path) -> str: ...

    def text(self) -> str | None: ...


@dataclass(frozen=True)
class Staging:
    """Where one run lives in the guest, and how the run's files get there."""

    guest_run: str  # the run's folder in the guest (scripts when copied, the compiled binary, sids)
    device: Device  # how the steps find the run's image
    shared: bool = False  # the guest reads the run folder's files at their host paths (no copies)
    image_to: str | None = None  # copy the run's image here first (a remote machine)
    prepare: str = ""  # shell run before the run (fresh randomness, dropped caches)
    prefix: str = ""  # "sudo -n " for a target that wants it
    console_level: bool = True  # raise printk's level (not on a user's machine)
    stage: str | None = None  # the guest folder holding the image's RAM copy (evidence comes from there)
    disposable: bool = False  # the guest is thrown away after the run: nothing to clean up in it

    def path(self, host: Path) -> str:
        return str(host) if self.shared else posixpath.join(self.guest_run, host.name)


def guest_plan(plan: GuestPlan, staging: Staging) -> GuestPlan:
    """The plan with its host paths replaced by where the guest finds them."""

    def mapped(value: str | None) -> str | None:
        return None if value is None else staging.path(Path(value))

    return replace(plan, source=mapped(plan.source) or plan.source, prebuilt=mapped(plan.prebuilt),
                   binary_out=posixpath.join(staging.guest_run, "repro.bin") if plan.binary_out else None)


def _stage(req: GuestRequest, conn: Connection, staging: Staging, token: str) -> tuple[str, bytes | None]:
    """Write the run's scripts; (the run's command, its input).  A guest that reads the host's files gets its
    folder made first; any other gets the folder, the preparation and the files (a tar on the command's input)
    in the run's own command: one round trip."""
    run_dir = req.run_dir
    steps = run_dir / "guest.sh"
    steps.write_text(script(guest_plan(req.plan, staging), staging.device))
    outer = run_dir / "ssh-run.sh"
    outer.write_text(wrapper(token, staging.path(steps), posixpath.join(staging.guest_run, "steps.sid"),
                             cwd=staging.guest_run, console_level=staging.console_level))
    q, pre = shlex.quote, staging.prefix
    if staging.image_to and req.disks:  # a remote machine's image: its own copy, before the run
        conn.check(f"{pre}mkdir -p {q(posixpath.dirname(staging.image_to))}", what="making the image's folder")
        conn.put(req.disks[0].path, staging.image_to, prefix=pre)
    run = f"{pre}bash {q(staging.path(outer))}"
    if staging.shared:
        conn.check(f"{pre}mkdir -p {q(staging.guest_run)}" + (f" && {staging.prepare}" if staging.prepare else ""),
                   what="preparing the run's folder in the guest", timeout=60)
        return run, None
    unpack = unpack_command(staging.guest_run, before=staging.prepare, prefix=pre)
    files = tar_of([steps, outer, *(p for p in req.inputs if p.exists())])
    return f"{{ {unpack}; }} || exit {STAGING_FAILED}; {run}", files


def settle(done, conn: Connection, guest: Guest, console: Console, info: dict, token: str, kill: str) -> str | None:
    """After the run's command: the run's detail, or None when it simply ended."""
    detail = None
    if done.killed:
        if guest.gone() is None and conn.active:
            ok, said = conn.probe(PROBE_TIMEOUT)
        else:
            ok, said = False, guest.gone() or "connection down"
        info["probe"] = {"responsive": ok, "said": said}
        if ok:
            conn.run(kill, timeout=30)
        verdict = ("guest responsive: the reproducer is slow or stuck, the kernel still schedules; its processes "
                   "were killed" if ok else "guest unresponsive: the kernel hung")
        detail = f"{done.killed}; probe: {verdict} ({said})"
    if done.lost or guest.gone():
        guest.wait_gone(PANIC_WAIT)
        return detail or f"the guest went down during the run ({guest.gone() or 'SSH connection lost'})"
    deadline = time.monotonic() + CONSOLE_SETTLE
    while console.text() is not None and time.monotonic() < deadline and not console_has_end(console.text(), token):
        time.sleep(0.1)
    return detail


def _collect(req: GuestRequest, conn: Connection, staging: Staging, out: GuestOutput, info: dict) -> None:
    """Bring home what the guest compiled and the image when it is the evidence; drop the guest's copy."""
    if not conn.active:
        return
    pre, q = staging.prefix, shlex.quote
    if req.plan.binary_out and out.binary == "compiled":
        try:
            conn.get(posixpath.join(staging.guest_run, "repro.bin"), Path(req.plan.binary_out), prefix=pre)
        except Exception as exc:  # noqa: BLE001 (the run stands; only the cache misses this binary)
            info["binary_copy_failed"] = str(exc)
    check = out.step("check")
    evidence = bool(out.lost) or (check is not None and check.rc not in (0, None))
    remote_image = staging.image_to or (posixpath.join(staging.stage, "disk.img") if staging.stage else None)
    if evidence and remote_image and req.disks:
        conn.get(remote_image, req.disks[0].path, prefix=pre)  # the image is the evidence: bring it home
    if staging.disposable:
        return
    gone = [staging.guest_run, *([staging.image_to] if staging.image_to else []), *([staging.stage] if staging.stage else [])]
    conn.run(f"{pre}rm -rf {' '.join(q(g) for g in gone)}", timeout=120)


def run_over(req: GuestRequest, conn: Connection, guest: Guest, console: Console, staging: Staging, *,
             watchdog=None, timeout: float | None = None, info: dict | None = None) -> GuestRun:
    """One run on a guest reachable over ``conn`` (see the module doc)."""
    started = time.monotonic()
    info = dict(info or {})
    run_dir = req.run_dir
    out_log, console_log = run_dir / "guest.log", run_dir / "console.log"
    token = f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
    phases = Phases(info)
    with phases("stage"):
        command, files = _stage(req, conn, staging, token)
        mark = console.mark(conn)
    with phases("run"):
        done, text = conn.run(command, output=out_log, timeout=timeout, watchdog=watchdog, alive=guest.gone,
                              stdin=files)
    out = GuestOutput.parse(text)
    if done.returncode == STAGING_FAILED and out.taint_before is None:
        said = text.strip().splitlines()[-1][:200] if text.strip() else "no output"
        raise GuestError(f"staging {run_dir.name} in {staging.guest_run} on the guest failed: {said}")
    kill = staging.prefix + f"bash -c {shlex.quote(kill_command(posixpath.join(staging.guest_run, 'steps.sid')))}"
    with phases("settle"):
        detail = settle(done, conn, guest, console, info, token, kill)
        window = console.window(mark, token, conn, run_dir)
    console_log.write_text(window)
    if not (done.lost or done.killed):
        with phases("collect"):
            _collect(req, conn, staging, out, info)
    run = out.step("run")
    signals = RunSignals(out.taint_before, out.taint_after, lost=bool(done.lost or guest.gone()), killed=done.killed,
                         reports=tuple(r.title for r in report.parse(window)), run_rc=run.rc if run else 0,
                         trial_end=req.plan.timeout_ends_trial)
    info.update(taint_before=taint_letters(out.taint_before), taint_after=taint_letters(out.taint_after),
                returncode=done.returncode, ssh_seconds=round(done.seconds, 2))
    return GuestRun(done.returncode, time.monotonic() - started, console_log, out_log, detail=detail, info=info,
                    signals=signals)


class Phases:
    """Where a run's wall time went: ``with phases("stage"): ...`` adds the seconds to ``info["phases"]``."""

    def __init__(self, info: dict):
        self.seconds: dict[str, float] = info.setdefault("phases", {})

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.monotonic() - start, 3)


# --- console windows -------------------------------------------------------------------------------


def dmesg_new(before: str, after: str, tail: int = 5) -> str:
    """Lines of ``after`` (a kernel log read after a run) that ``before`` did not have.

    Anchored on the last few lines of ``before``; when they are gone (the ring
    buffer wrapped) every line stamped later than before's last stamp.
    """
    b = before.splitlines()
    a = after.splitlines()
    if not b:
        return after
    k = min(tail, len(b))
    block = b[-k:]
    for i in range(len(a) - k, -1, -1):
        if a[i : i + k] == block:
            return "\n".join(a[i + k :]) + ("\n" if a[i + k :] else "")
    last = line_stamp(b[-1])
    if last is None:
        return after
    return "".join(ln + "\n" for ln in a if (line_stamp(ln) or -1.0) > last)

