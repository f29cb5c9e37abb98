"""The exported GitLab pipeline run for real: gitlab-ci-local, shell executor, real artifacts and needs.

A small matrix (ext4_inline on a Debian image and on the lean base built from
Debian's source) is exported with ``harness matrix export --gitlab`` into a copy
of the checkout, and gitlab-ci-local runs the whole pipeline: a fetch job and a
build job (each kernel once, exported as an artifact), one job per cell
importing its kernel, and the merge job.  Each job runs in its own copy of the
checkout with its own harness cache (``--shell-isolation``), so a cell has
its kernel only through the artifact.

The engine's cache (gitlab-ci-local keeps it under ``.gitlab-ci-local/cache``,
one folder per key, as GitLab keeps it between pipelines) is seeded with this
suite's own ccache and unpacked kernel source, as a project's second pipeline
finds it: the build job still builds (make runs, ccache hits).  The first run
of this test, cold, took 1098 s in its build job alone (1730 objects under
load, 2026-12-08): too long for CI's budget, and what the engine's cache is for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness.paths import cache_dir
from harness.results.db import MatrixIndex

# a lean build inside the pipeline, on the engine cache seeded from this suite's (see the module doc)
pytestmark = [pytest.mark.vm, pytest.mark.build, pytest.mark.ci]

ROOT = Path(__file__).resolve().parent.parent
MATRIX = """name: pipeline
runs: 1
reproducers:
  - {name: ext4_inline, kernels: ['debian:6.1']}
  - {name: ext4_inline, kernels: ['debian-src:6.1.192']}
"""
BUILD_JOB = "build-debian-src_6_1_192"
SOURCE_CELL = "cell-debian-src_6_1_192_ext4_inline"
DEBIAN_CELL = "cell-debian_6_1_ext4_inline"


def _checkout(dest: Path) -> None:
    """The working tree's files (tracked and new, not ignored) as a git repository of their own."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.split(b"\0")
    for rel in filter(None, files):
        src = ROOT / os.fsdecode(rel)
        if src.is_file():
            (dest / os.fsdecode(rel)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(rel), follow_symlinks=False)
    git = ["git", "-c", "user.name=harness", "-c", "user.email=harness@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "pipeline test"], cwd=dest, check=True)


def _seed_engine_cache(project: Path) -> None:
    """The build job's engine cache as a second pipeline finds it: this suite's ccache and kernel sources."""
    kernels = cache_dir("kernels")
    dest = project / ".gitlab-ci-local" / "cache" / f"kernel-{BUILD_JOB}" / ".harness-cache" / "kernels"
    dest.mkdir(parents=True)
    for part in ("ccache", "src"):
        if (kernels / part).is_dir():
            subprocess.run(["cp", "-a", str(kernels / part), str(dest / part)], check=True)


@pytest.fixture
def short_dir():
    """A project folder with a short path.  A cell's compile guest (vng) carries its run folder's path on the
    kernel command line several times (--cwd, --rwdir, the command), and gitlab-ci-local nests each job's
    run folders deep (.gitlab-ci-local/builds/JOB/out/JOB/MATRIX/RUN/compile): under pytest's own tmp_path
    (/tmp/pytest-of-root/pytest-NNN/test_.../project/...) both cells' kernels died at boot with "detected
    buffer overflow in __fortify_strlen" (x86's 2048-byte command line), measured 2026-12-08."""
    path = Path(tempfile.mkdtemp(prefix="glp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_exported_gitlab_pipeline_runs_end_to_end(vm, short_dir):
    if shutil.which("gitlab-ci-local") is None or shutil.which("rsync") is None:
        pytest.skip("gitlab-ci-local or rsync missing: run `harness setup --test`")
    project = short_dir / "p"
    project.mkdir()
    (project / "pipeline.yaml").write_text(MATRIX)
    _checkout(project)
    export = subprocess.run([sys.executable, "-m", "harness", "matrix", "export", "pipeline.yaml", "--gitlab",
                             "-o", ".gitlab-ci.yml"], cwd=project, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(project)})  # the copy's harness: its paths
    assert export.returncode == 0, export.stderr
    assert "kernels: 1 build, 1 Debian fetch" in export.stderr
    git = ["git", "-c", "user.name=harness", "-c", "user.email=harness@localhost"]
    subprocess.run([*git, "add", ".gitlab-ci.yml"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "the pipeline"], cwd=project, check=True)

    _seed_engine_cache(project)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_CACHE", "HARNESS_RESULTS"))}
    done = subprocess.run(["gitlab-ci-local", "--force-shell-executor", "--shell-isolation", "--concurrency", "1"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=3 * 3600)
    logs = project / ".gitlab-ci-local" / "output"
    print(done.stdout[-6000:])

    def log(job: str) -> str:
        return (logs / f"{job}.log").read_text(errors="replace")

    # the source kernel: built once, in its build job; its cell imported it and built nothing
    assert "built, " in log(BUILD_JOB) and "\tcache hit in" not in log(BUILD_JOB)
    cell = log(SOURCE_CELL)
    assert f"{BUILD_JOB}.tar imported" in cell and "from the build job (imported " in cell
    assert "building because the artifact is missing" not in cell and "built, " not in cell
    assert "fetch-debian_6_1.tar imported" in log(DEBIAN_CELL)

    merged = next((project / "merged").glob("*-matrix-pipeline-merged"))
    index = MatrixIndex.load(merged)
    assert [c.status for c in index.cells] == ["done", "done"]
    assert all(c.verdict not in (None, "BUILD_ERROR", "BOOT_FAILURE", "INFRA_ERROR") for c in index.cells), index.cells
    assert (merged / "junit.xml").exists() and (merged / "index.html").exists()
    for c in index.cells:  # every cell says which accelerator it had and why
        record = json.loads((merged / c.folder / "result.json").read_text())
        assert record["accel"] in ("kvm", "tcg") and record["accel_reason"]
