"""Kills between the units of the long drivers: matrix cells, bisect steps, proof runs; then resume.

Each driver is killed twice (SIGKILL after its first unit is recorded,
SIGTERM after one more), then resumed to its end.  Held: no orphan, the
records parse, SIGTERM exits 130, and the resumed run keeps every unit the
killed ones had finished (the same cell folders and verdicts, the same
steps.jsonl / proof.jsonl lines first) and completes.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tools.chaos.fixtures import one_line_patch, write_matrix
from tools.chaos.kills import RUN, Kill, after_problems, kill_in, rows_for
from tools.chaos.sandbox import ChaosError
from tools.chaos.suite import Context, Row, fault


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _lines(path: Path, kind: str | None = None) -> list[str]:
    """The whole JSON lines of a log (of one ``type`` when given)."""
    out = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if kind is None or rec.get("type") == kind:
            out.append(line)
    return out


def _kept(before: list[str], after: list[str]) -> list[str]:
    return [] if after[:len(before)] == before else ["a finished unit was lost or rewritten on resume"]


# --- matrix ---------------------------------------------------------------------------------------------


def _cells(results: Path) -> tuple[Path | None, dict[str, tuple[str, str]]]:
    """(the matrix folder, its finished cells: id -> (folder, verdict))."""
    index = next(iter(sorted(results.glob("*-matrix-chaos*/matrix.json"))), None)
    if index is None:
        return None, {}
    data = _json(index)
    return index.parent, {c["cell"]: (c.get("folder"), c.get("verdict")) for c in data.get("cells", [])
                          if c.get("status") == "done"}


@fault("kill between matrix cells", "kill")
def kill_matrix(ctx: Context) -> list[Row]:
    cache, results = ctx.warm(), ctx.box.folder("results-kill-matrix")
    spec = write_matrix(ctx.box.fixtures / "chaos-matrix.yaml", ["chaos_sleep", "chaos_quick", "chaos_release"],
                        [ctx.kernel])
    kills: list[Kill] = []
    args = ["matrix", "run", str(spec), "--jobs", "1", *RUN]
    for sig, cells in ((signal.SIGKILL, 1), (signal.SIGTERM, 2)):
        h = ctx.box.start(args, cache=cache, results=results, label="kill-matrix")
        kills.append(kill_in(ctx, h, f"{cells} cell(s) recorded", lambda n=cells: len(_cells(results)[1]) >= n, sig))
        folder = _cells(results)[0]
        if folder is None:
            raise ChaosError("no matrix folder after the kill")
        args = ["matrix", "run", "--resume", str(folder), "--jobs", "1", *RUN]
    done_before = _cells(results)[1]
    after = after_problems(cache, results)
    h = ctx.box.run(args, cache=cache, results=results, label="resume-matrix")
    _, done = _cells(results)
    problems = [] if h.popen.returncode == 0 and len(done) == 3 else [
        f"resume: exit {h.popen.returncode}, {len(done)}/3 cells done: {h.last_line()[:120]}"]
    problems += [f"cell {c} changed on resume" for c, v in done_before.items() if done.get(c) != v]
    return rows_for("kill the harness", "matrix, between cells", kills, after + problems,
                    f"--resume kept the {len(done_before)} finished cells, ran the last",
                    "no orphan; whole files; --resume completes")


# --- bisect ---------------------------------------------------------------------------------------------


@fault("kill between bisect steps", "kill")
def kill_bisect(ctx: Context) -> list[Row]:
    cache, results = ctx.warm(), ctx.box.folder("results-kill-bisect")
    folder = results / "bisect"
    log = folder / "steps.jsonl"
    args = ["bisect", "chaos_release", "--good", "debian:6.1.0-54", "--bad", ctx.kernel, "--folder", str(folder),
            "-n", "1", *RUN]
    kills: list[Kill] = []
    for sig, steps in ((signal.SIGKILL, 1), (signal.SIGTERM, 2)):
        h = ctx.box.start(args, cache=cache, results=results, label="kill-bisect")
        kills.append(kill_in(ctx, h, f"{steps} step(s) recorded", lambda n=steps: len(_lines(log)) >= n, sig,
                             timeout=900))
    before = _lines(log)
    after = after_problems(cache, results)
    h = ctx.box.run(args, cache=cache, results=results, label="resume-bisect", timeout=1800)
    report = _json(folder / "report.json")
    first = str(report.get("first") or report.get("first_new") or "")
    problems = [] if h.popen.returncode == 0 and "6.1.0-56" in (first or h.stderr()) else [
        f"resume: exit {h.popen.returncode}, first {first or '?'}: {h.last_line()[:120]}"]
    problems += _kept(before, _lines(log))
    candidates = [_json_line(x).get("candidate") for x in _lines(log)]
    problems += [f"step {c} run twice" for c in set(candidates) if candidates.count(c) > 1 and c]
    return rows_for("kill the harness", "bisect, between steps", kills, after + problems,
                    f"resumed: {len(before)} steps kept, first bad {first or '?'}",
                    "no orphan; whole files; same --folder resumes")


def _json_line(line: str) -> dict:
    try:
        return json.loads(line)
    except ValueError:
        return {}


# --- prove ------------------------------------------------------------------------------------------------


@fault("kill between proof runs", "kill")
def kill_proof(ctx: Context) -> list[Row]:
    cache, results = ctx.build_cache(), ctx.box.folder("results-kill-proof")
    patch = ctx.box.fixtures / "chaos-proof.patch"
    patch.write_text(one_line_patch(ctx.box.source()[1] / "tree", note="chaos proof"))
    args = ["prove", "chaos_lost", "--base", ctx.source, "--patch", str(patch), "--max-runs", "8", *RUN]
    kills: list[Kill] = []
    for sig, runs in ((signal.SIGKILL, 2), (signal.SIGTERM, 3)):
        h = ctx.box.start(args, cache=cache, results=results, label="kill-proof")
        kills.append(kill_in(ctx, h, f"{runs} runs logged", lambda n=runs: len(_proof_runs(results)) >= n, sig,
                             timeout=3600))
        folder = _proof_folder(results)
        if folder is None:
            raise ChaosError("no proof folder after the kill")
        args = ["prove", "--resume", str(folder), *RUN]
    before = _proof_runs(results)
    after = after_problems(cache, results)
    h = ctx.box.run(args, cache=cache, results=results, label="resume-proof", timeout=3600)
    verdict = _json(_proof_folder(results) / "result.json").get("verdict") if _proof_folder(results) else None
    problems = [] if h.popen.returncode == 1 and h.said("NOT_FIXED") else [
        f"resume: exit {h.popen.returncode} ({verdict}): {h.last_line()[:120]}"]
    problems += _kept(before, _proof_runs(results))
    return rows_for("kill the harness", "prove, between runs", kills, after + problems,
                    f"--resume kept {len(before)} runs, ended NOT_FIXED", "no orphan; whole files; --resume completes")


def _proof_folder(results: Path) -> Path | None:
    found = sorted(results.glob("*/proof.jsonl"))
    return found[-1].parent if found else None


def _proof_runs(results: Path) -> list[str]:
    folder = _proof_folder(results)
    return _lines(folder / "proof.jsonl", "run") if folder else []


@fault("SIGKILL during a --jobs 2 proof", "kill")
def kill_parallel_proof(ctx: Context) -> list[Row]:
    """Two guests racing when the harness dies: none left, and every finished run (``done``) taken on resume."""
    cache, results = ctx.build_cache(), ctx.box.folder("results-kill-jobs")
    patch = ctx.box.fixtures / "chaos-jobs.patch"
    patch.write_text(one_line_patch(ctx.box.source()[1] / "tree", note="chaos jobs"))
    args = ["prove", "chaos_lost", "--base", ctx.source, "--patch", str(patch), "--max-runs", "10", "--jobs", "2", *RUN]
    h = ctx.box.start(args, cache=cache, results=results, label="kill-jobs")
    kills = [kill_in(ctx, h, "3 runs finished", lambda: len(_proof_done(results)) >= 3, signal.SIGKILL,
                     timeout=3600)]
    folder = _proof_folder(results)
    if folder is None:
        raise ChaosError("no proof folder after the kill")
    finished = {json.loads(x)["index"] for x in _proof_done(results) if json.loads(x).get("side") == "patched"}
    before = _proof_runs(results)
    after = after_problems(cache, results)  # no QEMU, vng or sshd of either guest left
    h = ctx.box.run(["prove", "--resume", str(folder), "--jobs", "2", *RUN], cache=cache, results=results,
                    label="resume-jobs", timeout=3600)
    problems = [] if h.popen.returncode == 1 and h.said("NOT_FIXED") else [
        f"resume: exit {h.popen.returncode}: {h.last_line()[:120]}"]
    problems += _kept(before, _proof_runs(results))
    taken = {json.loads(x).get("index") for x in _proof_runs(results) if json.loads(x).get("side") == "patched"}
    problems += [f"finished patched run {i} neither taken nor set aside on resume" for i in sorted(finished - taken)
                 if not any(json.loads(x).get("index") == i for x in _lines(folder / "proof.jsonl", "surplus"))]
    return rows_for("kill the harness", "prove --jobs 2, two guests racing", kills, after + problems,
                    f"--resume kept {len(before)} taken and {len(finished)} finished patched runs, ended NOT_FIXED",
                    "no orphan; every finished run kept; --resume completes")


def _proof_done(results: Path) -> list[str]:
    folder = _proof_folder(results)
    return _lines(folder / "proof.jsonl", "done") if folder else []
