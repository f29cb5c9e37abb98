"""``--vmcore`` under stress (harness/guest/snapshot/dump.py), on ext4_inline (a BUG within a second) on the
suite's Debian kernel and the snapshot backend:

- the results disk too small for the core (a 64 MiB tmpfs, the guest 1 GiB): the dump fails with
  ENOSPC, the run is still REPRODUCED and recorded, result.json's ``vmcore`` says why there is no core,
  and no half core is left behind;
- the harness killed with SIGKILL while QEMU writes the core: no process is left, the run's console log
  and its "running" record are on disk, and the half-written core is ``vmcore.part``, never ``vmcore``.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tools.chaos.kills import Runs
from tools.chaos.sandbox import ChaosError, kill_tagged, run_dirs, survivors, tmpfs, wait_for
from tools.chaos.suite import Context, Row, check, fault

VMCORE = ["ext4_inline", "--vmcore", "-n", "1", "--accel", "tcg", "--backend", "snapshot", "--no-symbols"]


def _run_record(results: Path) -> dict:
    dirs = run_dirs(results)
    return json.loads((dirs[-1] / "result.json").read_text()) if dirs and (dirs[-1] / "result.json").exists() else {}


@fault("--vmcore: no room for the core", "space")
def vmcore_no_room(ctx: Context) -> list[Row]:
    with tmpfs(ctx.box.root / "space" / "vmcore", "64M") as results:
        h = ctx.box.run(["repro", "-k", ctx.kernel, *VMCORE], cache=ctx.warm(), results=results,
                        label="vmcore-enospc", timeout=1800)
        record = _run_record(results)
        core = record.get("guest", {}).get("vmcore", {})
        problems = [] if h.popen.returncode == 0 and record.get("verdict") == "REPRODUCED" else [
            f"exit {h.popen.returncode}, verdict {record.get('verdict')}: {h.last_line()[:120]}"]
        problems += [] if "No space left" in core.get("error", "") else [f"result.json's vmcore: {core}"]
        left = [p.name for d in run_dirs(results) for p in d.glob("vmcore*")]
        problems += [f"left in the run folder: {left}"] if left else []
        problems += [f"left running: {p}" for p in survivors(h.tag, 5)]
    seen, held = check(problems)
    return [Row("--vmcore", "the results disk has no room for the core",
                "REPRODUCED all the same, the reason recorded, no half core",
                f"REPRODUCED; {core.get('error', '')[:70]}" if held else seen, held)]


@fault("--vmcore: SIGKILL during the dump", "kill")
def vmcore_killed(ctx: Context) -> list[Row]:
    results = ctx.box.folder("results-vmcore-kill")
    runs = Runs(results)
    h = ctx.box.start(["repro", "-k", ctx.kernel, *VMCORE], cache=ctx.warm(), results=results, label="vmcore-kill")
    try:
        part = wait_for("the dump", lambda: next((d / "vmcore.part" for d in runs.new()
                                                  if (d / "vmcore.part").exists()), None), 1200,
                        every=0.01, alive=lambda: h.alive)
    except ChaosError:
        h.kill(signal.SIGKILL)
        kill_tagged(h.tag)
        raise
    h.kill(signal.SIGKILL)
    h.wait(60)
    left = [str(p) for p in survivors(h.tag, 10)]
    kill_tagged(h.tag)
    run_dir = Path(part).parent
    problems = [f"left running: {p}" for p in left]
    problems += [] if (run_dir / "console.log").exists() and "kernel BUG at" in (run_dir / "console.log").read_text(
        errors="replace") else ["no console log with the BUG in the run folder"]
    status = json.loads((run_dir / "result.json").read_text()).get("status") if (run_dir / "result.json").exists() \
        else None
    problems += [] if status == "running" else [f"the run's result.json status is {status}"]
    problems += ["a core named vmcore was left by a killed dump"] if (run_dir / "vmcore").exists() else []
    seen, held = check(problems)
    return [Row("--vmcore", "the harness killed (SIGKILL) while QEMU writes the core",
                "nothing left running; console and record on disk; only vmcore.part, never vmcore",
                "no process left, console + running record kept, vmcore.part only" if held else seen, held)]
