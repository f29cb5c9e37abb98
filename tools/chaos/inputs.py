"""Bad input, a guest that hangs hard, and the harness of a virtualenv nobody activated.

Bad input: each case is a command line a user could type (or a file they
could be handed); it must end within seconds with one line on stderr and
exit 2 (usage), 3 (bad spec/YAML/patch) or 4 (unknown name), with nothing
run: no run folder, no process left.

Hangs: a reproducer that writes to a frozen filesystem (a task in D state
for good: the guest still answers, the run never ends) and a guest whose
QEMU is stopped with SIGSTOP (no console, no answer at all).  Each must end
within its budget as HANG, and the next run goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from tools.chaos.fixtures import ESCAPING_PATCH, billion_laughs
from tools.chaos.kills import RUN, Runs
from tools.chaos.sandbox import ChaosError, Harness, run_dirs, survivors, tagged, wait_for
from tools.chaos.suite import Context, Row, check, fault

USAGE, SPEC, UNKNOWN = 2, 3, 4
ANY = (USAGE, SPEC, UNKNOWN)  # a file named on the command line that cannot be read: any of the three says so


def bad_inputs(fixtures: Path, kernel: str, source: str) -> list[tuple[str, list[str], int | tuple[int, ...]]]:
    """(what, harness arguments, expected exit code(s)); writes the files the cases need into ``fixtures``."""
    reps = fixtures / "reproducers"
    bomb = reps / "chaos_bomb"
    bomb.mkdir(parents=True, exist_ok=True)
    (bomb / "repro.c").write_text("int main(void) { return 0; }\n")
    (bomb / "repro.yaml").write_text("name: chaos_bomb\nsource: repro.c\nimage: none\n" + billion_laughs())
    big = reps / "chaos_big"
    big.mkdir(exist_ok=True)
    (big / "repro.c").write_text("int main(void) { return 0; }\n")
    (big / "repro.yaml").write_text("name: chaos_big\nsource: repro.c\nimage: none\ndescription: |\n"
                                    + ("  " + "x" * 78 + "\n") * 20000)
    binary = reps / "chaos_binary"
    binary.mkdir(exist_ok=True)
    (binary / "repro.yaml").write_bytes(b"name: chaos_binary\n\xff\xfe\x00\x01 not text\n")
    outside = fixtures / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "repro.c").write_text("int main(void) { return 0; }\n")
    (outside / "repro.yaml").write_text(f"name: outside\nsource: repro.c\nimage: none\nkernel: {kernel}\n")
    (fixtures / "escaping.patch").write_text(ESCAPING_PATCH)
    (fixtures / "bomb-matrix.yaml").write_text(billion_laughs() + "reproducers: [chaos_sleep]\n")
    fifo = fixtures / "fifo.yaml"
    if not fifo.exists():
        os.mkfifo(fifo)
    run = ["--accel", "tcg"]
    return [
        ("-n 0", ["repro", "chaos_sleep", "-n", "0", *run], USAGE),
        ("-n -3", ["repro", "chaos_sleep", "-n", "-3", *run], USAGE),
        ("-n 1.5", ["repro", "chaos_sleep", "-n", "1.5", *run], USAGE),
        ("--timeout 0", ["repro", "chaos_sleep", "--timeout", "0", *run], USAGE),
        ("--jobs 0", ["matrix", "run", str(fixtures / "chaos-matrix.yaml"), "--jobs", "0"], USAGE),
        ("bisect --confidence 1.5", ["bisect", "chaos_release", "--good", "debian:6.1.0-54", "--bad", kernel,
                                     "--confidence", "1.5"], USAGE),
        ("prove --max-runs 1", ["prove", "chaos_lost", "--patch", str(fixtures / "escaping.patch"),
                                "--max-runs", "1"], USAGE),
        ("unknown reproducer", ["repro", "no_such_reproducer", *run], UNKNOWN),
        ("reproducer name with /../", ["repro", "chaos_sleep/../../outside", *run], UNKNOWN),
        ("unknown kernel", ["repro", "chaos_sleep", "-k", "debian:9.9.9", *run], UNKNOWN),
        ("missing matrix file", ["matrix", "run", str(fixtures / "no-such.yaml")], ANY),
        ("missing patch file", ["kernel", "build", source, "-p", str(fixtures / "no-such.patch")], ANY),
        ("missing console log", ["report", str(fixtures / "no-such.log")], ANY),
        ("a folder as the matrix file", ["matrix", "run", str(fixtures)], ANY),
        ("a FIFO as the matrix file", ["matrix", "run", str(fifo)], ANY),
        ("spec that is not UTF-8", ["repro", "chaos_binary", *run], SPEC),
        ("patch leaving the tree (../)", ["kernel", "build", source, "-p", str(fixtures / "escaping.patch")], SPEC),
        ("YAML bomb in a spec", ["repro", "chaos_bomb", *run], SPEC),
        ("YAML bomb in a matrix", ["matrix", "run", str(fixtures / "bomb-matrix.yaml")], SPEC),
        ("spec over the size limit", ["repro", "chaos_big", *run], SPEC),
    ]


def judge_bad_input(h: Harness, want: int | tuple[int, ...], seconds: float, results: Path) -> tuple[str, bool]:
    rc = h.popen.returncode
    wanted = want if isinstance(want, tuple) else (want,)
    lines = [ln for ln in h.stderr().splitlines()[1:] if ln.strip()]
    problems = [] if rc in wanted else [f"exit {rc}, not {'/'.join(map(str, wanted))}"]
    problems += [] if len(lines) == 1 else [f"{len(lines)} lines on stderr{' (a traceback)' if 'Traceback' in h.stderr() else ''}"]
    problems += [] if seconds < 15 else [f"took {seconds:.0f} s"]
    problems += [f"ran: {p.relative_to(results)}" for p in run_dirs(results)]
    problems += [f"left running: {p}" for p in survivors(h.tag, 2)]
    seen, held = check(problems)
    said = short((lines or [""])[-1])
    return (f"exit {rc}: {said}" if held else f"{seen} [{said}]"), held


def short(line: str, width: int = 64) -> str:
    """An error line without its ``harness ...: error:`` prefix and folders, cut to ``width``."""
    text = line.split("error: ", 1)[-1]
    text = " ".join(w.rsplit("/", 1)[-1] if "/" in w and w.startswith(("/", "'/")) else w for w in text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


@fault("bad input", "input", ci=True)
def bad_input(ctx: Context) -> list[Row]:
    rows = []
    cache = ctx.box.folder("cache-input")
    results = ctx.box.folder("results-input")
    for what, args, want in bad_inputs(ctx.box.fixtures, ctx.kernel, ctx.source):
        start = time.monotonic()
        h = ctx.box.start(args, cache=cache, results=results, label="input")
        with contextlib.suppress(ChaosError):  # it ran on: killed, and the row says so
            h.wait(60)
        seen, held = judge_bad_input(h, want, time.monotonic() - start, results)
        code = "/".join(map(str, want)) if isinstance(want, tuple) else want
        rows.append(Row("bad input", what, f"one line, exit {code}, nothing run", seen, held))
    return rows


# --- the venv's harness, not activated --------------------------------------------------------------------


@fault("the virtualenv's harness, not activated", "venv", ci=True)
def venv_not_activated(ctx: Context) -> list[Row]:
    results = ctx.box.folder("results-venv")
    h = ctx.box.run(["repro", "chaos_sleep", "-k", ctx.kernel, "--accel", "tcg", "--backend", "vng"],
                    cache=ctx.warm(), results=results, label="venv")
    last = (h.stdout().strip().splitlines() or [""])[-1]
    problems = [] if h.popen.returncode == 0 and last.startswith("CLEAN") else [f"exit {h.popen.returncode}: {last[:120]}"]
    seen, held = check(problems)
    return [Row("venv not activated", "its bin/harness, PATH without the venv",
                "its own vng/virtme-run found; a real verdict", "CLEAN" if held else seen, held)]


# --- hangs ---------------------------------------------------------------------------------------------------




@fault("a guest that hangs hard", "hang")
def hangs(ctx: Context) -> list[Row]:
    return [_frozen_fs(ctx), _stopped_qemu(ctx)]


def _judge_hang(h: Harness, made: Runs, budget: float, what: str, hung_for: float) -> Row:
    runs = [json.loads((d / "result.json").read_text()) for d in made.new()]
    verdicts = [r.get("verdict") for r in runs]
    problems = [] if verdicts == ["HANG", "CLEAN"] else [f"verdicts {verdicts} (HANG then CLEAN wanted)"]
    if runs and verdicts[0] != "HANG":
        steps = ", ".join(f"{st['name']} rc {st['rc']}" for st in runs[0].get("steps", []) if st.get("rc") not in (0,))
        problems.append(f"run 1: {runs[0].get('detail', '')[:70]!r}; {steps}")
    problems += [] if hung_for <= budget else [f"ended {hung_for:.0f} s after the hang began (budget {budget:.0f} s)"]
    problems += [] if h.popen.returncode == 0 else [f"exit {h.popen.returncode}: {h.last_line()[:100]}"]
    problems += [f"left running: {p}" for p in survivors(h.tag, 5)]
    seen, held = check(problems)
    detail = runs[0].get("detail", "")[:60] if runs else ""
    return Row("hung guest", what, f"HANG within {budget:.0f} s, next run goes on",
               f"HANG after {hung_for:.0f} s ({detail}), run 2 CLEAN" if held else seen, held)


def _frozen_fs(ctx: Context) -> Row:
    results = ctx.box.folder("results-hang-frozen")
    runs = Runs(results)
    h = ctx.box.start(["repro", "chaos_freeze", "-k", ctx.kernel, "-n", "2", *RUN], cache=ctx.warm(), results=results,
                      label="hang-frozen")
    wait_for("run-01's run step", lambda: runs.state() == "run:begin", 400, alive=lambda: h.alive)
    began = time.monotonic()
    wait_for("run-02", lambda: len(runs.new()) >= 2, 600, alive=lambda: h.alive)
    hung_for = time.monotonic() - began
    h.wait(600)
    return _judge_hang(h, runs, 10 + 45 + 30, "reproducer stuck in D state (frozen fs)", hung_for)


def _stopped_qemu(ctx: Context) -> Row:
    results = ctx.box.folder("results-hang-sigstop")
    runs = Runs(results)
    h = ctx.box.start(["repro", "chaos_stop", "-k", ctx.kernel, "-n", "2", *RUN], cache=ctx.warm(), results=results,
                      label="hang-sigstop")
    wait_for("run-01's run step", lambda: runs.state() == "run:begin", 400, alive=lambda: h.alive)
    qemus = [p for p in tagged(h.tag) if p.name.startswith("qemu-system")]
    for p in qemus:
        os.kill(p.pid, signal.SIGSTOP)
    began = time.monotonic()
    wait_for("run-02", lambda: len(runs.new()) >= 2, 600, alive=lambda: h.alive)
    hung_for = time.monotonic() - began
    h.wait(600)
    return _judge_hang(h, runs, 15 + 45 + 30, f"QEMU stopped (SIGSTOP of {len(qemus)} process)", hung_for)
