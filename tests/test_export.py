"""Scale-out: the pipeline plan (each kernel once, cells, shards), its GitHub Actions / GitLab YAML (golden,
checked against the engines' published schemas, its job graph read back), the kernel artifacts a cell
imports, and the merge of cell and shard folders."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import junitparser
import pytest
import yaml
from test_build import fake  # noqa: F401  (the fixture: a fake tree behind debian-src, fake make)
from test_matrix import SMALL, available, fabricate_cell, fake_kernel, fake_runner, write_matrix

from harness.cli import matrix as matrix_cli
from harness.errors import ExitCode, HarnessError, SpecError
from harness.kernels import artifact
from harness.kernels import build as kbuild
from harness.kernels.build import Variant
from harness.matrix import ci as export
from harness.matrix import shards
from harness.matrix.plan import plan
from harness.matrix.run import exit_code, run_matrix
from harness.matrix.spec import load_matrix
from harness.options import RunOptions
from harness.results import write_json
from harness.results.db import CellResult, History, MatrixIndex
from harness.verdict import Outcome

pytestmark = pytest.mark.usefixtures("frozen_reproducers")

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}

# One Debian image shared by two reproducers (fetched once), variants of two reproducers whose "stock"
# recipes are the same build (built once for three cells), and an fstests cell over two shards.
CI = """name: ci
kernels: [debian:6.1.0-47]
reproducers:
  - ext4_inline
  - ext4_inline/debug
  - {name: xfs_mkwrite_delalloc, variants: [xfs-unfixed, stock]}
  - {name: ext2_iomap_blkseq, variants: [stock]}
  - {name: xfs_mkwrite_delalloc/fstests, variants: [stock], shards: 2}
"""
CI_DEBIAN_ONLY = CI.replace("  - ext4_inline/debug\n", "").split("  - {name: xfs")[0]


def validated(engine: str, text: str, tmp_path: Path) -> dict:
    """``text`` checked against the engine's published schema (check-jsonschema, SchemaStore's), then parsed."""
    path = tmp_path / f"export-{engine}.yml"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", SCHEMAS[engine], str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return yaml.safe_load(text)


def ci_plan(tmp_path: Path, body: str = CI, history: History | None = None, avail=available):
    matrix = load_matrix(write_matrix(tmp_path, body), available=avail)
    return matrix, matrix_cli.export_plan(matrix, "matrix.yaml", history)


def fstests_history(root: Path, cell: str, seconds: dict[str, int]) -> History:
    """A results history holding one finished run of ``cell`` whose fstests tests took ``seconds``."""
    folder = root / "20260101-000000-matrix-ci" / "cell"
    folder.mkdir(parents=True)
    tests = [{"name": t, "status": "pass", "seconds": s, "reason": ""} for t, s in seconds.items()]
    write_json(folder / "result.json", {"results": [{"run": 1, "verdict": "CLEAN", "fstests": {"tests": tests}}]})
    history = History(root / "history.sqlite3")
    history.record(MatrixIndex(id="m1", folder=folder.parent, started="2026-01-01T00:00:00", status="done", cells=(
        CellResult(cell, "k", "r", status="done", verdict="CLEAN", folder="cell"),)))
    return history


FSTESTS_CELL = "debian-src:6.1.192/stock:xfs_mkwrite_delalloc/fstests"


# --- the plan --------------------------------------------------------------------------------------


def test_each_kernel_once_each_cell_its_own_kernels(tmp_path):
    matrix, p = ci_plan(tmp_path)
    jobs = {k.job: (k.name, k.verb, k.build, k.cells) for k in p.kernels}
    assert jobs["fetch-debian_6_1_0-47"] == ("debian:6.1.0-47", "fetch", (), ("debian:6.1.0-47:ext4_inline",))
    assert jobs["build-debian-src_6_1_192_stock"] == (
        "debian-src:6.1.192/stock", "build", ("xfs_mkwrite_delalloc", "--variant", "stock"),
        ("debian-src:6.1.192/stock:xfs_mkwrite_delalloc", "debian-src:6.1.192/stock:ext2_iomap_blkseq", FSTESTS_CELL))
    # the same recipe under one name, built once: xfs's and ext2's "stock" are one kernel (the same source,
    # no patches, the same fragments); ext4_inline/debug's two variants are two recipes
    assert len({k.recipe for k in p.kernels if k.recipe}) == len([k for k in p.kernels if k.recipe]) == 4
    uses = [j for c in p.cells for j in c.kernels if j.startswith("build-")]
    assert len(uses) == 7 and len(set(uses)) == 4  # 7 cell jobs take a built kernel; 4 builds in all
    assert [(c.job, c.shard.label if c.shard else None) for c in p.cells if c.cell == FSTESTS_CELL] == [
        ("cell-debian-src_6_1_192_stock_xfs_mkwrite_delalloc_fstests-1of2", "1/2"),
        ("cell-debian-src_6_1_192_stock_xfs_mkwrite_delalloc_fstests-2of2", "2/2")]
    assert p.cell_count == len(matrix.cells) == 7 and len(p.cells) == 8


def test_a_proof_cell_and_a_named_build_resolve_their_kernels_in_their_own_job(tmp_path):
    body = CI_DEBIAN_ONLY + """  - {name: ext4_inline, kernels: ['debian-src:6.1.192/mine']}
  - name: ext2_iomap_blkseq
    prove: {patch: [reproducers/ext2_iomap_blkseq/patches/0002-ext2-validate-cached-iomap-with-i_blkseq.patch],
            variant: ext2-iomap}
"""
    patches = ROOT / "reproducers" / "ext2_iomap_blkseq" / "patches"
    shutil.copytree(patches, tmp_path / "reproducers" / "ext2_iomap_blkseq" / "patches")
    _, p = ci_plan(tmp_path, body, avail=lambda kind: [])  # no listing: a named build is taken as named
    assert [why for _, why in p.in_cell] == ["a named build of a local cache: its job looks for it in its own cache",
                                            "a proof cell builds its base and patched kernels in its own job"]
    assert [c.kernels for c in p.cells][1:] == [(), ()]


def test_shards_split_by_measured_seconds_longest_first(tmp_path):
    got = shards.split(["t/001", "t/002", "t/003", "t/004", "t/005"],
                       {"t/001": 50, "t/002": 40, "t/003": 30, "t/004": 20, "t/005": 10}, 2)
    assert [(s.tests, s.seconds) for s in got] == [(("t/001", "t/004", "t/005"), 80.0), (("t/002", "t/003"), 70.0)]
    # a test never measured counts as the median of the measured ones, not as free
    got = shards.split(["t/001", "t/002", "t/003", "t/009"], {"t/001": 100, "t/002": 10, "t/003": 30}, 2)
    assert [(s.tests, s.seconds, s.measured) for s in got] == [(("t/001",), 100.0, 1),
                                                                (("t/002", "t/003", "t/009"), 70.0, 2)]
    assert [s.tests for s in shards.split(["t/001", "t/002"], {}, 5)] == [("t/001",), ("t/002",)]  # no empty shard
    with pytest.raises(SpecError, match="no tests to split"):
        shards.split([], {}, 2)


def test_the_export_splits_a_cell_by_its_history(tmp_path):
    history = fstests_history(tmp_path / "results", FSTESTS_CELL, {"generic/346": 300, "generic/344": 20})
    assert shards.measured_seconds(history, FSTESTS_CELL) == {"generic/346": 300.0, "generic/344": 20.0}
    _, p = ci_plan(tmp_path, history=history)
    assert [(s.tests, s.seconds) for s in p.shards[FSTESTS_CELL]] == [(("generic/346",), 300.0),
                                                                       (("generic/344",), 20.0)]


def test_shards_only_on_fstests_cells(tmp_path):
    with pytest.raises(SpecError, match=r"shards: only an fstests reproducer's cells are split .*drop shards:"):
        load_matrix(write_matrix(tmp_path, SMALL.replace("[ext4_inline]", "[{name: ext4_inline, shards: 2}]")),
                    available=available)
    with pytest.raises(SpecError, match="shards: 0: give a positive number"):
        load_matrix(write_matrix(tmp_path, SMALL.replace("[ext4_inline]", "[{name: ext4_inline, shards: 0}]")),
                    available=available)


def test_describe_says_what_the_pipeline_will_do(tmp_path):
    _, p = ci_plan(tmp_path)
    text = p.describe()
    assert text.startswith("pipeline of matrix.yaml (ci): 5 kernel jobs, 8 cell jobs for 7 cells, 1 merge job\n")
    assert "  kernels: 4 builds, 1 Debian fetch, each once, handed to the cells as artifacts " \
           "(6 cell kernels from 4 builds)\n" in text
    assert "    build debian-src:6.1.192/stock  (recipe " in text and ") -> 3 cell(s)  [build-debian-src_6_1_192_stock]" in text
    assert f"    {FSTESTS_CELL} · shard 1/2: 1 tests, ~60 s (0 measured)  <- build-debian-src_6_1_192_stock" in text
    assert text.endswith("; 1 sharded cell(s) merged into one result each\n")


def test_export_cli_prints_the_plan_then_writes(tmp_path, capsys):
    spec = write_matrix(tmp_path, CI)
    p = argparse.ArgumentParser()
    matrix_cli.add_parsers(p.add_subparsers(dest="command"))
    out = tmp_path / "gl.yml"
    args = p.parse_args(["matrix", "export", str(spec), "--gitlab", "--tag", "kvm", "-o", str(out)])
    args.func(args)
    err = capsys.readouterr().err
    assert err.startswith("pipeline of ") and err.endswith(f"14 jobs -> {out}\n")
    ci = validated("gitlab", out.read_text(), tmp_path)
    assert ci["default"]["tags"] == ["kvm"]
    args = p.parse_args(["matrix", "export", str(spec), "--github-actions", "--history", str(tmp_path / "no.sqlite3")])
    with pytest.raises(SpecError, match="--history .*no.sqlite3: no such file"):
        args.func(args)


# --- the YAML ---------------------------------------------------------------------------------------


def test_golden_exports(tmp_path, golden):
    _, p = ci_plan(tmp_path)
    golden("ci/github-actions.yml", export.github_actions(p))
    golden("ci/gitlab-ci.yml", export.gitlab(p))
    golden("ci/github-actions-self-hosted.yml",
           export.github_actions(ci_plan(tmp_path, CI_DEBIAN_ONLY)[1], export.Engine(("self-hosted", "kvm"), kvm=True)))


@pytest.mark.parametrize("engine", ["github", "gitlab"])
@pytest.mark.parametrize("body", [CI, CI_DEBIAN_ONLY, SMALL], ids=["ci", "debian", "small"])
def test_every_export_passes_the_engines_schema(engine, body, tmp_path):
    _, p = ci_plan(tmp_path, body)
    for e in (export.Engine(), export.Engine(("self-hosted", "linux", "kvm"), kvm=False, tags=("kvm", "x86_64"))):
        validated(engine, export.github_actions(p, e) if engine == "github" else export.gitlab(p, e), tmp_path)


def test_committed_workflow_is_the_export_of_the_shipped_matrix_and_valid(tmp_path):
    matrix = load_matrix(ROOT / "matrix.yaml", available=lambda kind: [])
    shipped = (ROOT / ".github" / "workflows" / "matrix.yml").read_text()
    assert shipped == export.github_actions(matrix_cli.export_plan(matrix, "matrix.yaml", None)), (
        "regenerate: harness matrix export --github-actions -o .github/workflows/matrix.yml"
    )
    validated("github", shipped, tmp_path)


def _run_line(steps: list) -> str:
    return next(s for s in steps if s.startswith("harness matrix run"))


def test_github_job_graph_build_cells_merge(tmp_path):
    """Read back: every needs names a job; kernel jobs upload what the cells download and import; merge needs
    every cell and downloads their artifacts."""
    _, p = ci_plan(tmp_path)
    jobs = validated("github", export.github_actions(p), tmp_path)["jobs"]
    uploads = {}
    for name, job in jobs.items():
        for need in job.get("needs", []):
            assert need in jobs, f"{name} needs {need}: no such job"
        for s in job["steps"]:
            if s.get("uses", "").startswith("actions/upload-artifact"):
                uploads[name] = s["with"]
    kernel_jobs = [k.job for k in p.kernels]
    for k in p.kernels:  # each kernel job: export to the file the cells import, uploaded under its own name
        runs = [s.get("run", "") for s in jobs[k.job]["steps"]]
        assert f"harness kernel export {shlex.quote(k.name)} kernels/{k.job}.tar" in runs
        assert ("harness kernel build " + shlex.join(k.build) in runs) == bool(k.recipe)
        assert uploads[k.job] == {"name": k.job, "path": f"kernels/{k.job}.tar", "if-no-files-found": "error",
                                  "retention-days": 7}
        assert "needs" not in jobs[k.job]
    cells = [c.job for c in p.cells]
    for c in p.cells:
        job = jobs[c.job]
        assert job["needs"] == list(c.kernels) and set(c.kernels) <= set(kernel_jobs)
        downloads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/download-artifact")]
        assert [d["with"] for d in downloads] == [{"name": k, "path": "kernels/"} for k in c.kernels]
        assert all(d["continue-on-error"] is True for d in downloads)  # a missing one: the cell says so, builds
        run = shlex.split(_run_line([s.get("run", "") for s in job["steps"]]))
        assert run[run.index("--only") + 1] == c.cell and run[run.index("--kernels") + 1] == "kernels/"
        assert run[run.index("--results") + 1] == f"out/{c.job}"
        assert uploads[c.job] == {"name": c.job, "path": "out/", "if-no-files-found": "warn"}
        assert job["container"] == {"image": "debian:bookworm", "options": "--device /dev/kvm"}
        if c.shard:
            assert run[run.index("--shard") + 1] == c.shard.label
            assert run[run.index("--tests") + 1] == ",".join(c.shard.tests)
    merge = jobs["merge"]
    assert merge["needs"] == cells and merge["if"] == "${{ !cancelled() }}"
    pattern = next(s for s in merge["steps"] if s.get("uses", "").startswith("actions/download-artifact"))["with"]
    assert pattern == {"pattern": "cell-*", "path": "cells/"} and all(c.startswith("cell-") for c in cells)
    assert not any(k.startswith("cell-") for k in kernel_jobs)  # the merge downloads no kernel
    assert "harness matrix merge cells/ --spec matrix.yaml --results merged/" in [s.get("run") for s in merge["steps"]]


def test_gitlab_job_graph_build_cells_merge(tmp_path):
    _, p = ci_plan(tmp_path)
    ci = validated("gitlab", export.gitlab(p), tmp_path)
    assert ci["stages"] == ["kernels", "cells", "merge"]
    jobs = {k: v for k, v in ci.items() if isinstance(v, dict) and "stage" in v}
    order = {s: i for i, s in enumerate(ci["stages"])}
    for name, job in jobs.items():
        for need in job.get("needs", []):
            assert need["job"] in jobs and need["artifacts"] is True
            assert order[jobs[need["job"]]["stage"]] < order[job["stage"]], f"{name} needs a later stage"
    for k in p.kernels:
        job = jobs[k.job]
        assert job["stage"] == "kernels" and job["artifacts"]["paths"] == [f"kernels/{k.job}.tar"]
        assert job["script"][-1] == f"harness kernel export {shlex.quote(k.name)} kernels/{k.job}.tar"
        assert job["cache"][0]["paths"] == ([".harness-cache/kernels/ccache/", ".harness-cache/kernels/src/"]
                                            if k.recipe else [".harness-cache/kernels/debian/"])
    for c in p.cells:
        job = jobs[c.job]
        assert [n["job"] for n in job["needs"]] == list(c.kernels) and job["when"] == "always"
        assert job["artifacts"] == {"when": "always", "paths": [f"out/{c.job}/"], "expire_in": "1 week"}
        run = shlex.split(_run_line(job["script"]))
        assert run[run.index("--results") + 1] == f"out/{c.job}"
    merge = jobs["merge"]
    assert [n["job"] for n in merge["needs"]] == [c.job for c in p.cells]
    assert merge["script"] == ["harness matrix merge out/ --spec matrix.yaml --results merged/"]
    assert merge["artifacts"]["reports"]["junit"] == "merged/*/junit.xml"
    assert 'export PATH="$PWD/.venv/bin:$PATH" HARNESS_CACHE="$PWD/.harness-cache"' in ci["default"]["before_script"]


# --- a cell's kernels from the artifacts -----------------------------------------------------------


def test_a_cell_takes_the_build_jobs_kernel_and_builds_one_whose_artifact_is_missing(fake, tmp_path, monkeypatch):  # noqa: F811
    layout, _, _ = fake
    body = "name: src\nkernels: ['debian-src:6.1.999', 'debian-src:6.1.998']\nreproducers: [ext4_inline]\n"
    matrix = load_matrix(write_matrix(tmp_path, body), available=lambda kind: [])
    p = plan(matrix, "matrix.yaml")
    assert [k.job for k in p.kernels] == ["build-debian-src_6_1_999", "build-debian-src_6_1_998"]
    folder = tmp_path / "kernels"
    built = kbuild.build(Variant("debian-src:6.1.999"), layout=layout)  # what the build job made and exported
    artifact.export(built, folder / "build-debian-src_6_1_999.tar")  # the other build job's artifact is gone

    said: list[str] = []
    resolve = export.prebuilt_resolver(p, folder, said.append)
    monkeypatch.setattr(kbuild, "build", lambda *a, **k: pytest.fail("a kernel the build job built was built again"))
    first, second = matrix.cells
    kernel = resolve(first, matrix.specs["ext4_inline"])
    assert kernel.image.read_bytes() == built.image.read_bytes() and kernel.image != built.image
    fallback = []
    monkeypatch.setattr(export, "resolve_kernel", lambda cell, spec, **kw: fallback.append(cell.id) or "built here")
    assert resolve(second, matrix.specs["ext4_inline"]) == "built here" and fallback == [second.id]
    assert said[0].startswith("debian-src:6.1.999: build job's artifact build-debian-src_6_1_999.tar imported (")
    assert said[1].startswith("debian-src:6.1.999: from the build job (imported ")
    assert said[2] == (f"debian-src:6.1.998: building because the artifact is missing "
                       f"({folder / 'build-debian-src_6_1_998.tar'} is missing)")


def test_a_missing_debian_artifact_is_said_then_fetched(tmp_path, monkeypatch):
    matrix, p = ci_plan(tmp_path, SMALL)
    said: list[str] = []
    resolve = export.prebuilt_resolver(p, tmp_path / "kernels", said.append)
    monkeypatch.setattr(export, "resolve_kernel", lambda cell, spec, **kw: "fetched")
    assert resolve(matrix.cells[0], matrix.specs["ext4_inline"]) == "fetched"
    assert said == [f"debian:6.1.0-47: fetching because the artifact is missing "
                    f"({tmp_path / 'kernels' / 'fetch-debian_6_1_0-47.tar'} is missing)"]


# --- shards run and merged ---------------------------------------------------------------------------


def test_a_shard_runs_its_tests_only_and_leaves_its_marker(tmp_path):
    matrix = load_matrix(write_matrix(tmp_path, CI), available=available)
    cell = next(c for c in matrix.cells if c.id == FSTESTS_CELL)
    seen = []
    runner = export.shard_runner(cell.id, ["generic/344"])
    from harness.matrix import run as matrix_run  # the runner the shard wraps

    original = matrix_run.run_cell
    try:
        export.run_cell = lambda job, folder, progress=None: seen.append(job.spec.fstests.tests) or folder
        job = matrix_run.CellJob(cell, matrix.specs[cell.repro], fake_kernel(cell, None), None, RunOptions())
        runner(job, tmp_path)
    finally:
        export.run_cell = original
    assert seen == [("generic/344",)]
    marker = export.write_marker(tmp_path / "out", cell, 2, 2, ["generic/344"])
    assert json.loads(marker.read_text()) == {"cell": FSTESTS_CELL, "repro": "xfs_mkwrite_delalloc/fstests",
                                              "index": 2, "of": 2, "tests": ["generic/344"]}


def test_shard_arguments(tmp_path):
    spec = write_matrix(tmp_path, CI)
    p = argparse.ArgumentParser()
    matrix_cli.add_parsers(p.add_subparsers(dest="command"))
    for argv, error in (
        (["--shard", "3/2", "--only", FSTESTS_CELL, "--tests", "generic/344"], "--shard 3/2: expected I/N"),
        (["--shard", "1/2", "--only", "debian:6.1.0-47:ext4_inline", "--tests", "a"], "one fstests cell"),
        (["--shard", "1/2", "--only", FSTESTS_CELL], "--shard needs --tests"),
        (["--tests", "generic/344"], "give --shard I/N with it"),
    ):
        args = p.parse_args(["matrix", "run", str(spec), *argv])
        with pytest.raises(SpecError, match=error):
            matrix_cli._shard(args, load_matrix(spec, available=available))


def fstests_shard(root: Path, index: int, tests: dict[str, str], verdict: Outcome = Outcome.CLEAN,
                  status: str = "done") -> Path:
    """A shard job's results: its marker, and its cell folder with fstests' per-test records."""
    kernel, repro = "debian-src:6.1.192/stock", "xfs_mkwrite_delalloc/fstests"
    folder = fabricate_cell(root, kernel, repro, [verdict], status=status)
    data = json.loads((folder / "result.json").read_text())
    records = [{"name": t, "status": s, "seconds": 30, "reason": ""} for t, s in tests.items()]
    data["results"][0]["fstests"] = {"tests": records, "counts": {}}
    write_json(folder / "result.json", data)
    write_json(root / "matrix.json", {"cells": [{"cell": FSTESTS_CELL, "kernel": kernel, "folder": folder.name}]})
    write_json(root / shards.MARKER, {"cell": FSTESTS_CELL, "repro": repro, "index": index, "of": 2,
                                      "tests": list(tests)})
    return folder


def _merged(tmp_path: Path, jobs: Path):
    index = export.merge([jobs], results_root=tmp_path / "merged", spec=write_matrix(tmp_path, CI),
                         available=available)
    return index, index.cell(FSTESTS_CELL)


def test_two_clean_shards_merge_into_one_clean_cell_with_one_table(tmp_path):
    fstests_shard(tmp_path / "jobs" / "s1", 1, {"generic/346": "pass"})
    fstests_shard(tmp_path / "jobs" / "s2", 2, {"generic/344": "pass"})
    index, cell = _merged(tmp_path, tmp_path / "jobs")
    assert (cell.verdict, cell.met, cell.error, cell.runs) == ("CLEAN", True, None, 2)
    assert [(r.side, r.path) for r in cell.results] == [("shard 1/2", "shard-1/run-01"), ("shard 2/2", "shard-2/run-01")]
    folder = index.folder / cell.folder
    assert (folder / "shard-2" / "run-01" / "console.log").exists()
    table = (folder / shards.TABLE).read_text()
    assert "generic/344" in table and "generic/346" in table
    assert json.loads((folder / "result.json").read_text())["fstests"]["counts"] == {"pass": 2}
    page = (index.folder / "index.html").read_text()
    assert f'href="{cell.folder}/shard-2/run-01/console.log"' in page


def test_a_shard_that_never_reported_is_named_and_never_clean(tmp_path):
    fstests_shard(tmp_path / "jobs" / "s1", 1, {"generic/346": "pass"})  # shard 2's job died before anything
    index, cell = _merged(tmp_path, tmp_path / "jobs")
    assert cell.verdict == "INFRA_ERROR" and cell.met is None and cell.is_error
    assert cell.error == "shard 2/2 never reported (its job left no cell folder): its share is not counted"
    record = json.loads((index.folder / cell.folder / "result.json").read_text())
    assert [(s["index"], s["folder"], s["failure"]) for s in record["shards"]] == [
        (1, "shard-1", None), (2, None, "never reported (its job left no cell folder)")]
    missing = {t["name"]: (t["status"], t["reason"]) for t in record["fstests"]["tests"]}
    assert missing["generic/344"] == ("unreached", "shard 2/2 never reported (its job left no cell folder)")
    assert exit_code(index) != ExitCode.OK
    xml = junitparser.JUnitXml.fromfile(str(index.folder / "junit.xml"))
    assert xml.errors >= 1


def test_a_killed_shard_is_named_and_a_failed_test_elsewhere_still_counts(tmp_path):
    fstests_shard(tmp_path / "jobs" / "s1", 1, {"generic/346": "fail"}, Outcome.TEST_FAILED)
    fstests_shard(tmp_path / "jobs" / "s2", 2, {"generic/344": "unfinished"}, status="interrupted")
    _, cell = _merged(tmp_path, tmp_path / "jobs")
    assert cell.verdict == "TEST_FAILED" and cell.met is False  # stock must pass: a failure is a contradiction
    assert cell.error == "shard 2/2 did not finish (interrupted): its share is not counted"


# --- the round trip and the merge ------------------------------------------------------------------


def test_export_then_merge_round_trip(tmp_path):
    """Each exported cell job runs its one cell into its own out/<job>/; the merge job rebuilds one matrix."""
    spec = write_matrix(tmp_path, SMALL)
    p = ci_plan(tmp_path, SMALL)[1]
    downloads = tmp_path / "cells"
    for c in p.cells[:2]:  # the third job died before it could upload anything
        out = tmp_path / "jobs" / c.job / c.results
        run_matrix(spec, RunOptions(accel="tcg", results=out), only=[c.cell], available=available,
                   resolver=fake_kernel, runner=fake_runner())
        shutil.copytree(out.parent, downloads / c.job)  # download-artifact of out/: cells/<name>/<job>/
    assert len(list(downloads.glob("*/*/*-matrix-small/matrix.json"))) == 2

    merged_root = tmp_path / "merged"
    index = export.merge([downloads], results_root=merged_root, spec=spec, available=available)
    saved = MatrixIndex.load(index.folder)
    assert [(c.cell, c.status, c.verdict) for c in saved.cells] == [
        ("debian:6.1.0-47:ext4_inline", "done", "REPRODUCED"),
        ("debian:6.1.0-56:ext4_inline", "done", "CLEAN"),
        ("debian:6.12.117:ext4_inline", "missing", None),
    ]
    for c in saved.cells[:2]:  # the cell folders were copied in, not referenced
        assert (index.folder / c.folder / "run-01" / "console.log").exists()
        assert (index.folder / c.folder).parent == index.folder
    assert json.loads((index.folder / "matrix.json").read_text())["merged_from"] == [str(downloads.resolve())]

    xml = junitparser.JUnitXml.fromfile(str(index.folder / "junit.xml"))
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (3, 1, 1, 0)

    page = (index.folder / "index.html").read_text()
    for c in saved.cells:
        assert f"<th>{c.kernel}</th>" in page
    assert f'href="{saved.cells[0].folder}/run-01/report.txt"' in page

    rows = History(merged_root / "history.sqlite3").cells(matrix=index.id)
    assert [(r.cell, r.verdict) for r in rows] == [("debian:6.1.0-47:ext4_inline", "REPRODUCED"),
                                                    ("debian:6.1.0-56:ext4_inline", "CLEAN")]
    assert exit_code(index) == ExitCode.UNMET


def test_merge_prefers_a_finished_cell_and_takes_bare_folders(tmp_path):
    """A retried job leaves two folders for one cell; a folder without matrix.json still merges."""
    a, b = tmp_path / "a", tmp_path / "b"
    fabricate_cell(a, "debian:6.1.0-47", "ext4_inline", [Outcome.CLEAN], status="interrupted")
    fabricate_cell(b, "debian:6.1.0-47", "ext4_inline", [Outcome.REPRODUCED])
    fabricate_cell(b, "debian:6.1.0-56", "ext4_inline", [Outcome.REPRODUCED])
    found = export.find_cells([a, b])
    assert sorted(found) == ["debian:6.1.0-47:ext4_inline", "debian:6.1.0-56:ext4_inline"]
    assert found["debian:6.1.0-47:ext4_inline"][0].parent == b
    index = export.merge([a, b], results_root=tmp_path / "merged")
    assert [(c.cell, c.verdict, c.met) for c in index.cells] == [
        ("debian:6.1.0-47:ext4_inline", "REPRODUCED", True), ("debian:6.1.0-56:ext4_inline", "REPRODUCED", True)
    ]
    assert exit_code(index) == ExitCode.OK


def test_merge_cli(tmp_path, capsys):
    fabricate_cell(tmp_path / "in", "debian:6.1.0-47", "ext4_inline", [Outcome.REPRODUCED])
    p = argparse.ArgumentParser()
    matrix_cli.add_parsers(p.add_subparsers(dest="command"))
    args = p.parse_args(["matrix", "merge", str(tmp_path / "in"), "--results", str(tmp_path / "out")])
    assert args.func(args) == 0
    assert capsys.readouterr().out.startswith("1 met, 0 not met, 0 errors, 0 not run of 1 cells · ")
    args = p.parse_args(["matrix", "merge", str(tmp_path / "nothing-here")])
    with pytest.raises(HarnessError, match="nothing-here: no such folder"):
        args.func(args)
