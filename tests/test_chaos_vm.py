"""Chaos in CI, with a guest (issue 18): SIGTERM mid-run on a Debian kernel, ENOSPC in the results folder,
two harnesses fetching one kernel.

The harness runs as a user starts it (the virtualenv's ``harness``, PATH
without the virtualenv) through the chaos suite's sandbox; its processes are
found by their tag.  About 2.5 min under TCG: two boots (the killed run and
its rerun); the ENOSPC case fails before any boot; the download pair boots
nothing.  kill -9 mid-run, per backend, is tests/test_vm_orphans.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from harness.paths import cache_dir
from tools.chaos import checks
from tools.chaos.fixtures import write_reproducers
from tools.chaos.kills import RUN, Runs, kill_in, kill_problems, rerun_ok
from tools.chaos.sandbox import Sandbox, fill, survivors, tmpfs, unparsable_json, venv_harness
from tools.chaos.suite import Context

pytestmark = pytest.mark.vm


@pytest.fixture
def ctx(vm, tmp_path):
    """The chaos sandbox over the user's (CI's) cache: these faults do not damage it."""
    box = Sandbox(tmp_path / "chaos", cache_dir(), venv_harness())
    write_reproducers(box.fixtures)
    box.run(["accel", "debian:6.1", "--accel", "tcg"], cache=cache_dir(), results=tmp_path, label="fetch")
    context = Context(box, box.debian_release())
    context.shared["warm"] = cache_dir()
    return context


def test_sigterm_mid_run_records_the_run_and_leaves_nothing(ctx):
    results = ctx.box.folder("results")
    runs = Runs(results)
    h = ctx.box.start(["repro", "chaos_long", "-k", ctx.kernel, *RUN], cache=ctx.warm(), results=results, label="term")
    killed = kill_in(ctx, h, "the run step", lambda: runs.state() == "run:begin" and runs.said("chaos: 3/"),
                     signal.SIGTERM, timeout=600)
    assert not kill_problems(killed), kill_problems(killed)
    assert "qemu-system-x86" in killed.running
    run = json.loads((runs.last() / "result.json").read_text())
    summary = json.loads((runs.last().parent / "result.json").read_text())
    assert run["status"] == "interrupted" and summary["status"] == "interrupted", (run, summary)
    assert not unparsable_json(results) and not checks.audit(ctx.warm())
    again = ctx.box.run(["repro", "chaos_sleep", "-k", ctx.kernel, *RUN], cache=ctx.warm(), results=results,
                        label="rerun")
    seen, problems = rerun_ok(again, again.popen.returncode)
    assert not problems, problems
    assert (runs.last().parent / "result.json").exists()  # the killed run's folder is kept as it was


def test_a_full_results_folder_is_one_line_and_exit_12(ctx):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    with tmpfs(ctx.box.root / "full", "8M") as results:
        fill(results, 0)
        h = ctx.box.run(["repro", "chaos_sleep", "-k", ctx.kernel, *RUN, "--results", str(results)],
                        cache=ctx.warm(), results=results, label="enospc")
        lines = h.stderr().strip().splitlines()[1:]
        assert h.popen.returncode == 12, h.stderr()
        assert lines[-1].startswith("harness: error: ") and "no space left" in lines[-1]
        assert "Traceback" not in h.stderr() and not unparsable_json(results)
        assert not survivors(h.tag, 2)


def test_two_harnesses_fetch_one_kernel_once(ctx, tmp_path):
    if shutil.which("apt-get") is None:
        pytest.skip("needs apt (Debian's kernel packages)")
    cache = ctx.box.folder("pair-cache")
    pair = [ctx.box.start(["accel", ctx.kernel, "--accel", "tcg"], cache=cache, results=tmp_path, label=f"pair-{i}")
            for i in (1, 2)]
    for h in pair:
        h.wait(600)
    assert [h.popen.returncode for h in pair] == [0, 0], [h.stderr() for h in pair]
    assert sum(h.stderr().count("downloading linux-image") for h in pair) == 1
    assert pair[0].stdout() == pair[1].stdout() and not checks.audit(cache)
