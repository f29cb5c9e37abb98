"""matrix.yaml, run_matrix (bounded workers, Ctrl-C/SIGTERM, --resume) and the CLI parsers.

No VM here except the one ``vm`` test at the end: the other tests run the real
``run_matrix`` with a runner that writes cell folders through the real
``Summary``/``RunResult``/``Verdict`` classes (the exact ``result.json`` shape
``run_repro`` writes), and a resolver that returns a ``Kernel`` record.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from harness.cli import matrix as matrix_cli
from harness.cli import results as results_cli
from harness.errors import ExitCode, HarnessError, KernelError, SpecError, UnknownName
from harness.kernels import SOURCES, Kernel
from harness.matrix import pool
from harness.matrix.run import CellJob, exit_code, run_matrix
from harness.matrix.spec import Cell, _sources_available, load_matrix
from harness.options import RunOptions
from harness.repro import spec as specs
from harness.repro.run import RunResult, Summary
from harness.results import new_run_folder, write_json
from harness.results.db import CellResult, History, MatrixIndex
from harness.verdict import Outcome, Verdict

pytestmark = pytest.mark.usefixtures("frozen_reproducers")

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = ["debian:6.1.0-47", "debian:6.1.0-48", "debian:6.1.0-56", "debian:6.12.100", "debian:6.12.117"]
TITLE = "kernel BUG in ext4_write_inline_data"


def available(kind: str) -> list[str]:
    """What `harness kernels` would list, without asking apt."""
    SOURCES.select(kind)  # "Unknown kernel source ..." as for real
    return {"debian": DEBIAN, "debian-src": ["debian-src:6.1.192"]}.get(kind, [])


def kernel_record(name: str) -> Kernel:
    return Kernel(name=name, release="6.1.0-47-amd64", version="6.1.170", image=Path("/nonexistent/vmlinuz"), kind="debian")


def fake_kernel(cell: Cell, spec, *, progress=None) -> Kernel:
    """The resolver hook's signature, without apt or make."""
    return kernel_record(cell.kernel_id)


def fabricate_cell(
    root: Path, kernel: str, repro: str, outcomes: list[Outcome], *, status: str = "done", tth: float = 3.5
) -> Path:
    """A cell folder as ``run_repro`` leaves it: run-NN/{console.log, report.txt, result.json} + result.json."""
    spec = specs.load(repro)
    k = kernel_record(kernel)
    folder = new_run_folder(repro, kernel, root)
    runs = []
    for i, outcome in enumerate(outcomes, 1):
        run_dir = folder / f"run-{i:02d}"
        run_dir.mkdir()
        console = [f"[    {n}.000000] boot line {n} of {kernel} run {i}" for n in range(80)]
        title = TITLE if outcome is Outcome.REPRODUCED else "WARNING in ext4_da_update_reserve_space" if outcome is Outcome.OTHER_CRASH else None
        if title:
            console.append(f"[   81.000000] ------------[ cut here ]------------ {title}")
            (run_dir / "report.txt").write_text(f"{title}\nCall Trace:\n ext4_write_inline_data+0x1/0x2\n")
        (run_dir / "console.log").write_text("\n".join(console) + "\n")
        verdict = Verdict(outcome, title, time_to_hit=tth * i if title else None)
        result = RunResult(i, run_dir, verdict, (), 40.0 + i, 25.0)
        write_json(run_dir / "result.json", {**result.to_dict(), "status": "done"})
        runs.append(result)
    summary = Summary(
        repro=spec.name, kernel=k, accel="tcg", accel_reason="forced by --accel", folder=folder, runs=tuple(runs),
        expectation=spec.expect.for_kernel(kernel), min_hits=spec.expect.min_hits,
        hits=sum(spec.expect.is_hit(r.outcome) for r in runs), interrupted=status != "done",
        extra={"runs_requested": len(outcomes)},
    )
    write_json(folder / "result.json", {**summary.to_dict(), "status": status})
    return folder


OUTCOMES = {
    "debian:6.1.0-47": [Outcome.REPRODUCED],
    "debian:6.1.0-56": [Outcome.CLEAN],  # contradicts expect.reproduce
    "debian:6.12.100": [Outcome.CLEAN],  # no expectation
    "debian:6.12.117": [Outcome.CLEAN, Outcome.REPRODUCED],
}


def fake_runner(calls: list | None = None, interrupt_on: str | None = None):
    def runner(job: CellJob, folder: Path, progress) -> Path:
        if calls is not None:
            calls.append(job.cell.id)
        if job.cell.id == interrupt_on:  # like run_repro on Ctrl-C: the partial record, then the exception
            fabricate_cell(folder, job.cell.kernel_id, job.cell.repro, [Outcome.CLEAN], status="interrupted")
            raise KeyboardInterrupt
        progress("run 1/1: booting")
        return fabricate_cell(folder, job.cell.kernel_id, job.cell.repro, OUTCOMES[job.cell.kernel_id])

    return runner


def write_matrix(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(body)
    return path


SMALL = """name: small
kernels: [debian:6.1.0-47, debian:6.1.0-56, debian:6.12.117]
reproducers: [ext4_inline]
"""


def run(spec: Path, tmp_path: Path, **kw) -> MatrixIndex:
    kw = {"runner": fake_runner(), "resolver": fake_kernel, **kw}
    return run_matrix(spec, RunOptions(accel="tcg", results=tmp_path / "results"), available=available, **kw)


# --- matrix.yaml -------------------------------------------------------------------------------


def test_shipped_matrix_cells_and_expectations():
    m = load_matrix(available=available)
    ids = [c.id for c in m.cells]
    # aliases, not pinned versions: the cell keeps the alias, its expectation is the kernel's of today
    assert {"debian:6.1-oldest:ext4_inline", "debian:6.1:ext4_inline", "debian:6.12:ext4_inline"} <= set(ids)
    assert all(c.expectation == "reproduce" for c in m.cells if c.kernel.startswith("debian:6.1-") or c.kernel == "debian:6.1")
    unresolved = load_matrix(available=lambda kind: [])  # nothing listed: an alias cannot be judged
    assert [c.expectation for c in unresolved.cells if c.kernel == "debian:6.1-oldest"] == [None]
    assert m.specs["ext4_inline"].name == "ext4_inline"


def test_shipped_matrix_names_exist_in_the_apt_sources():
    names = _sources_available("debian")
    if not names:
        pytest.skip("apt-cache lists no Debian kernel images here")
    assert load_matrix().cells  # every name validated against `harness kernels`


def test_globs_expand_and_expectations_come_from_the_spec(tmp_path):
    m = load_matrix(write_matrix(tmp_path, "kernels: ['debian:6.1.0-*', debian:6.12.117]\nreproducers: [ext4_inline]\n"),
                       available=available)
    assert [c.kernel for c in m.cells] == ["debian:6.1.0-47", "debian:6.1.0-48", "debian:6.1.0-56", "debian:6.12.117"]
    assert [c.expectation for c in m.cells] == ["reproduce"] * 3 + [None]
    assert m.name == "matrix" and m.cells[0].id == "debian:6.1.0-47:ext4_inline"


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ("kernels: [debian:6.1.0-99]\nreproducers: [ext4_inline]\n", UnknownName,
         "Unknown kernel 'debian:6.1.0-99'. Available: debian:6.1.0-47, debian:6.1.0-48"),
        ("kernels: ['debian:5.*']\nreproducers: [ext4_inline]\n", UnknownName, "Unknown kernel 'debian:5.*' (no match). Available: "),
        ("kernels: [gentoo:6.1]\nreproducers: [ext4_inline]\n", UnknownName, "Unknown kernel source 'gentoo'. Available: debian"),
        ("kernels: [debian:6.1.0-47]\nreproducers: [ext5]\n", UnknownName, "Unknown reproducer 'ext5'. Available: "),
        ("kernels: [debian:6.1.0-47]\nreproducers: [ext4_inline]\ncolour: red\n", SpecError, "unknown key(s) colour"),
        ("kernels: [debian:6.1.0-47]\n", SpecError, "reproducers: is required"),
        ("reproducers: [ext4_inline]\n", SpecError, "no kernels"),
        ("kernels: [debian:6.1.0-47]\nreproducers: [{name: ext4_inline, runs: 0}]\n", SpecError, "runs must be positive"),
    ],
)
def test_bad_matrix_one_line_errors(tmp_path, body, error, message):
    with pytest.raises(error) as exc:
        load_matrix(write_matrix(tmp_path, body), available=available)
    assert message in exc.value.one_line() and "\n" not in exc.value.one_line()


@pytest.fixture
def with_variants(tmp_path, monkeypatch) -> Path:
    """ext4_inline, plus xfs_fake whose spec has two variants (as xfs_mkwrite_delalloc's does)."""
    repros = tmp_path / "reproducers"
    shutil.copytree(ROOT / "reproducers" / "ext4_inline", repros / "ext4_inline")
    (repros / "xfs_fake").mkdir()
    (repros / "xfs_fake" / "repro.c").write_text("int main(void){return 0;}\n")
    (repros / "xfs_fake" / "repro.yaml").write_text("""image: {fs: xfs, size: 64M}
variants:
  unfixed: {source: "debian-src:6.1.192", cmdline: [fail_usercopy=1]}
  fixed: {source: "debian-src:6.1.192"}
expect: {data_loss: true, reproduce: ['*/unfixed'], clean: ['*/fixed']}
""")
    monkeypatch.setenv("HARNESS_REPRODUCERS", str(repros))
    return repros


def test_variants_and_per_reproducer_kernels(tmp_path, with_variants):
    m = load_matrix(write_matrix(tmp_path, """
kernels: [debian:6.1.0-47]
reproducers:
  - ext4_inline
  - name: xfs_fake
    runs: 5
"""), available=available)
    assert [(c.id, c.expectation, c.runs) for c in m.cells] == [
        ("debian:6.1.0-47:ext4_inline", "reproduce", None),
        ("debian-src:6.1.192/unfixed:xfs_fake", "reproduce", 5),  # a spec with variants runs on them
        ("debian-src:6.1.192/fixed:xfs_fake", "clean", 5),
    ]
    assert [c.id for c in m.select(["xfs_fake"])] == [m.cells[1].id, m.cells[2].id]
    assert [c.id for c in m.select(["*/fixed:*"])] == [m.cells[2].id]
    with pytest.raises(UnknownName, match="Unknown cell 'debian:6.12.1:ext4_inline' in matrix.yaml. Available: debian:6.1.0-47"):
        m.select(["debian:6.12.1:ext4_inline"])

    one = load_matrix(write_matrix(tmp_path, "reproducers: [{name: xfs_fake, variants: [fixed]}]\n"), available=available)
    assert [c.id for c in one.cells] == ["debian-src:6.1.192/fixed:xfs_fake"]
    mapping = "kernels: [{name: debian-src:6.1.192, variant: unfixed}]\nreproducers: [{name: xfs_fake, kernels: [{name: debian-src:6.1.192, variant: unfixed}]}]\n"
    assert [c.id for c in load_matrix(write_matrix(tmp_path, mapping), available=available).cells] == [m.cells[1].id]
    with pytest.raises(UnknownName, match="Unknown variant 'patched' of xfs_fake. Available: unfixed, fixed"):
        load_matrix(write_matrix(tmp_path, "reproducers: [{name: xfs_fake, variants: [patched]}]\n"), available=available)
    with pytest.raises(SpecError, match="variant fixed of xfs_fake builds debian-src:6.1.192, not debian-src:6.12.117"):
        load_matrix(write_matrix(tmp_path, "reproducers: [{name: xfs_fake, kernels: [{name: 'debian-src:6.12.117', variant: fixed}]}]\n"),
                       available=lambda kind: [])


def test_variant_cells_build_once_each_and_a_failed_build_is_a_build_error_cell(tmp_path, with_variants):
    built, jobs = [], []

    def resolver(cell, spec, *, progress=None):
        built.append(cell.id)
        if cell.variant == "unfixed":
            raise KernelError("patch 0001-x.patch does not apply", hint="hunk #2 at fs/xfs/xfs_iomap.c")
        return kernel_record(cell.kernel_id)

    def runner(job, folder, progress):
        jobs.append((job.cell.id, job.options.cmdline))
        return fabricate_cell(folder, job.cell.kernel_id, job.cell.repro, [Outcome.CLEAN])

    spec = write_matrix(tmp_path, "reproducers: [xfs_fake]\n")
    index = run(spec, tmp_path, resolver=resolver, runner=runner)
    assert built == ["debian-src:6.1.192/unfixed:xfs_fake", "debian-src:6.1.192/fixed:xfs_fake"]
    assert jobs == [("debian-src:6.1.192/fixed:xfs_fake", ())]
    bad = index.cell("debian-src:6.1.192/unfixed:xfs_fake")
    assert (bad.verdict, bad.status, bad.expectation) == ("BUILD_ERROR", "done", "reproduce")
    assert "does not apply" in bad.error and (index.folder / bad.folder / "run-01" / "build-error.txt").exists()
    assert exit_code(index) == ExitCode.INFRA  # an error, not a contradiction
    assert "build-error.txt:\npatch 0001-x.patch does not apply" in (index.folder / "junit.xml").read_text()


def test_plan_jobs_cpu_and_memory_caps(tmp_path):
    assert pool.plan_jobs(None, cpu_count=2, available_memory=20 << 30)[0] == 1
    assert pool.plan_jobs(None, cpu_count=16, available_memory=3 << 30)[0] == 2  # 1 GiB + QEMU overhead a guest
    jobs, why = pool.plan_jobs(4, cpu_count=2, available_memory=20 << 30)
    assert jobs == 1 and why.startswith("--jobs 4 capped to 1")
    assert pool.plan_jobs(2, cpu_count=16, available_memory=64 << 30)[0] == 2
    with pytest.raises(HarnessError, match="--jobs must be positive"):
        pool.plan_jobs(0)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  4000000 kB\nMemAvailable:    2097152 kB\n")
    assert pool.mem_available(meminfo) == 2 << 30
    assert pool.memory_bytes("1G") == 1 << 30 and pool.memory_bytes("512M") == 512 << 20 and pool.memory_bytes(2048) == 2 << 30


# --- run_matrix ---------------------------------------------------------------------------------


def test_run_matrix_index_reports_and_history(tmp_path, capsys):
    index = run(write_matrix(tmp_path, SMALL), tmp_path)
    saved = json.loads((index.folder / "matrix.json").read_text())
    assert saved["status"] == "done" and saved["id"] == index.folder.name
    assert [(c["cell"], c["verdict"], c["met"]) for c in saved["cells"]] == [
        ("debian:6.1.0-47:ext4_inline", "REPRODUCED", True),
        ("debian:6.1.0-56:ext4_inline", "CLEAN", False),
        ("debian:6.12.117:ext4_inline", "REPRODUCED", None),
    ]
    for c in index.cells:
        assert (index.folder / c.folder / "result.json").exists() and (index.folder / c.folder).parent == index.folder
    assert index.cell("debian:6.12.117:ext4_inline").hits == 1 and index.cell("debian:6.12.117:ext4_inline").runs == 2
    assert (index.folder / "junit.xml").exists() and (index.folder / "index.html").exists()
    rows = sqlite3.connect(tmp_path / "results" / "history.sqlite3").execute("SELECT cell, verdict FROM cells").fetchall()
    assert len(rows) == 3
    assert exit_code(index) == ExitCode.UNMET
    err = capsys.readouterr().err
    assert "[1/3] debian:6.1.0-47 × ext4_inline: REPRODUCED ✓" in err and "[3/3] debian:6.12.117" in err


def test_only_selects_cells_and_exit_code_ok(tmp_path):
    index = run(write_matrix(tmp_path, SMALL), tmp_path, only=["debian:6.1.0-47:ext4_inline"])
    assert [c.cell for c in index.cells] == ["debian:6.1.0-47:ext4_inline"] and exit_code(index) == ExitCode.OK


def test_kernel_that_fails_to_build_is_a_build_error_cell(tmp_path):
    def resolver(cell, spec, *, progress=None):
        if cell.kernel == "debian:6.1.0-56":
            raise KernelError("apt-get download linux-image-6.1.0-56-amd64 failed: 404 Not Found")
        return kernel_record(cell.kernel)

    index = run(write_matrix(tmp_path, SMALL), tmp_path, resolver=resolver, only=["debian:6.1.0-*"])
    bad = index.cell("debian:6.1.0-56:ext4_inline")
    assert bad.verdict == "BUILD_ERROR" and "404 Not Found" in bad.error and bad.status == "done"
    assert index.cell("debian:6.1.0-47:ext4_inline").verdict == "REPRODUCED"
    assert exit_code(index) == ExitCode.INFRA


def test_a_cell_that_raises_a_harness_error_is_recorded_and_the_matrix_goes_on(tmp_path):
    def runner(job, folder, progress):
        if job.cell.kernel == "debian:6.1.0-47":
            raise HarnessError("image recipe ext4-inline-fullbitmap: mkfs.ext4 failed")
        return fake_runner()(job, folder, progress)

    index = run(write_matrix(tmp_path, SMALL), tmp_path, runner=runner)
    assert index.cell("debian:6.1.0-47:ext4_inline").verdict == "INFRA_ERROR"
    assert [c.status for c in index.cells] == ["done"] * 3


def test_interrupt_keeps_finished_cells_and_resume_runs_the_rest(tmp_path):
    spec = write_matrix(tmp_path, SMALL)
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path, runner=fake_runner(calls, interrupt_on="debian:6.1.0-56:ext4_inline"))
    (folder,) = (tmp_path / "results").glob("*-matrix-small")
    saved = MatrixIndex.load(folder)
    assert saved.status == "interrupted"
    assert [(c.status, c.verdict) for c in saved.cells] == [
        ("done", "REPRODUCED"), ("interrupted", "CLEAN"), ("pending", None)
    ]
    assert saved.cells[1].folder  # the partial cell's folder is indexed too
    assert History(tmp_path / "results" / "history.sqlite3").cells(matrix=saved.id)[0].verdict == "REPRODUCED"

    calls.clear()
    index = run(None, tmp_path, resume=folder, runner=fake_runner(calls))
    assert calls == ["debian:6.1.0-56:ext4_inline", "debian:6.12.117:ext4_inline"]
    assert index.folder == folder and index.status == "done" and all(c.status == "done" for c in index.cells)
    assert index.cell("debian:6.1.0-56:ext4_inline").verdict == "CLEAN"


def test_sigterm_stops_the_matrix_like_ctrl_c(tmp_path):
    def runner(job, folder, progress):
        if job.cell.kernel == "debian:6.1.0-56":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        return fake_runner()(job, folder, progress)

    with pytest.raises(KeyboardInterrupt):
        run(write_matrix(tmp_path, SMALL), tmp_path, runner=runner)
    (folder,) = (tmp_path / "results").glob("*-matrix-small")
    saved = MatrixIndex.load(folder)
    assert saved.status == "interrupted" and saved.cells[0].status == "done"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_parallel_run_matrix(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)  # pretend a bigger host: 4 guests fit
    index = run(write_matrix(tmp_path, SMALL), tmp_path, jobs=2)
    assert sorted(c.verdict for c in index.cells) == ["CLEAN", "REPRODUCED", "REPRODUCED"]
    assert "guests: 2 at a time (--jobs)" in capsys.readouterr().err


# --- workers -----------------------------------------------------------------------------------------


def _work(task):
    kind, arg = task
    if kind == "sleep":
        time.sleep(arg)
        return arg
    if kind == "die":
        os._exit(arg)
    raise HarnessError(arg)


def test_in_processes_is_parallel_and_reports_failures():
    started = time.monotonic()
    tasks = [("sleep", 1.0), ("sleep", 1.0), ("die", 3), ("fail", "mkfs.xfs not found")]
    out = dict(pool.in_processes(tasks, 2, _work))
    assert time.monotonic() - started < 3.0  # two 1 s sleeps side by side
    assert out[("sleep", 1.0)] == 1.0
    assert out[("die", 3)] == "worker died (exit code 3)"
    assert out[("fail", "mkfs.xfs not found")] == "mkfs.xfs not found"


def test_in_processes_ctrl_c_stops_every_worker_cleanly(tmp_path):
    def work(i):
        try:
            (tmp_path / f"started-{i}").write_text("")
            time.sleep(60)
        except KeyboardInterrupt:
            (tmp_path / f"stopped-{i}").write_text("recorded\n")  # run_repro records its partial cell here
            raise

    def interrupt_once_both_work():  # not a fixed delay: a loaded host starts workers slowly
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("started-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    # a shell's background job starts with SIGINT ignored, and Python then keeps it so: Ctrl-C's handler here
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Thread(target=interrupt_once_both_work, daemon=True)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            list(pool.in_processes([0, 1, 2], 2, work))
    finally:
        signal.signal(signal.SIGINT, old)
    assert time.monotonic() - started < 30
    assert sorted(p.name for p in tmp_path.glob("stopped-*")) == ["stopped-0", "stopped-1"]


# --- CLI --------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness")
    sub = p.add_subparsers(dest="command", required=True)
    matrix_cli.add_parsers(sub)
    results_cli.add_parsers(sub)
    return p


def test_cli_parsers_and_results_commands(tmp_path, capsys):
    a = parser().parse_args(["matrix", "run", "--only", "debian:6.1.0-47:ext4_inline", "--jobs", "2", "--runs", "3"])
    assert a.func is matrix_cli.cmd_matrix_run and a.spec is None and a.only == ["debian:6.1.0-47:ext4_inline"] and a.jobs == 2
    a = parser().parse_args(["matrix", "export", "--gitlab", "-o", "x.yml"])
    assert a.func is matrix_cli.cmd_matrix_export and a.gitlab and not a.github_actions
    with pytest.raises(SystemExit):
        parser().parse_args(["matrix", "export", "--gitlab", "--github-actions"])

    spec = write_matrix(tmp_path, SMALL)
    first = run(spec, tmp_path)
    OUTCOMES_BACKUP = dict(OUTCOMES)
    try:
        OUTCOMES["debian:6.1.0-56"] = [Outcome.REPRODUCED]
        second = run(spec, tmp_path)
    finally:
        OUTCOMES.update(OUTCOMES_BACKUP)
    root = str(tmp_path / "results")

    def cli(*argv: str) -> str:
        args = parser().parse_args(list(argv))
        assert args.func(args) == 0
        return capsys.readouterr().out

    out = cli("results", "list", "--results", root)
    assert out.splitlines()[0].startswith(second.id) and first.id in out
    assert cli("results", "compare", first.id, "latest", "--results", root) == "debian:6.1.0-56:ext4_inline\tCLEAN -> REPRODUCED\n"
    assert "debian:6.1.0-56:ext4_inline\tCLEAN / REPRODUCED" in cli("results", "flaky", "--results", root)
    history = cli("results", "history", "debian:6.1.0-56:ext4_inline", "--results", root, "--json")
    assert [r["verdict"] for r in json.loads(history)] == ["CLEAN", "REPRODUCED"]
    args = parser().parse_args(["results", "history", "nope:x", "--results", root])
    with pytest.raises(UnknownName, match="Unknown cell 'nope:x'"):
        args.func(args)


# --- the one real boot --------------------------------------------------------------------------


@pytest.mark.vm
def test_one_cell_matrix_boots_for_real(vm, tmp_path):
    """ext4_inline × debian:6.1-oldest (6.1.0-47), 1 run, through run_matrix: JUnit, HTML and DB hold it."""
    import junitparser

    cell = "debian:6.1-oldest:ext4_inline"  # the shipped matrix's alias for debian:6.1.0-47
    index = run_matrix(None, RunOptions(runs=1, results=tmp_path), only=[cell])
    (result,) = index.cells
    assert (result.cell, result.status, result.verdict, result.met) == (cell, "done", "REPRODUCED", True), result
    assert result.title in specs.load("ext4_inline").expect.titles
    run_dir = index.folder / result.folder / "run-01"
    assert "kernel BUG at fs/ext4/inline.c" in (run_dir / "console.log").read_text()
    xml = junitparser.JUnitXml.fromfile(str(index.folder / "junit.xml"))
    cases = [c for suite in xml for c in suite]
    assert [(c.classname, c.name, c.is_passed) for c in cases] == [("ext4_inline", "debian:6.1-oldest", True)]
    page = (index.folder / "index.html").read_text()
    assert "REPRODUCED" in page and f'{result.folder}/run-01/console.log' in page
    rows = History(tmp_path / "history.sqlite3").cells(cell)
    assert [(r.matrix, r.verdict, r.hits, r.runs, r.met) for r in rows] == [(index.id, "REPRODUCED", 1, 1, True)]
    assert exit_code(index) == 0
    assert isinstance(CellResult.from_folder(cell, "debian:6.1-oldest", index.folder / result.folder, index.folder), CellResult)


def test_only_names_a_cell_outside_the_matrix_yaml(tmp_path):
    """`matrix run --only KERNEL:REPRO` for a reproducer the matrix does not list (one `harness new` made)."""
    m = load_matrix(write_matrix(tmp_path, SMALL), available=available)
    grown = m.with_cells_named(["debian:6.1.0-48:ext4_inline", "debian-src:6.1.192/xfs-unfixed:xfs_mkwrite_delalloc",
                                "debian-src:6.1.192/debug:ext4_inline", "debian:6.1.0-47:ext4_inline"], available)
    extra = [c for c in grown.cells if c not in m.cells]
    assert [(c.id, c.variant, c.expectation) for c in extra] == [
        ("debian:6.1.0-48:ext4_inline", None, "reproduce"),
        ("debian-src:6.1.192/xfs-unfixed:xfs_mkwrite_delalloc", "xfs-unfixed", "reproduce"),
        ("debian-src:6.1.192/debug:ext4_inline", None, None),  # a named build, found by the resolver
    ]
    assert grown.select(["debian:6.1.0-48:ext4_inline"]) == (extra[0],)
    with pytest.raises(UnknownName, match="Unknown kernel 'debian:6.1.0-99'"):
        m.with_cells_named(["debian:6.1.0-99:ext4_inline"], available)
    for pattern in ("debian:6.1.0-47:nope", "debian:6.1.0-99"):  # no such reproducer; a kernel no cell has
        assert m.with_cells_named([pattern], available).cells == m.cells
        with pytest.raises(UnknownName, match=f"Unknown cell '{pattern}' in matrix.yaml"):
            m.with_cells_named([pattern], available).select([pattern])
    assert m.with_cells_named(["debian:6.1.0-9*:ext4_inline"], available).cells == m.cells  # a glob adds nothing
