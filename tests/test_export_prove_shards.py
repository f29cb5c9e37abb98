"""A proof cell over CI shards: the plan's jobs (base check -> shards -> merge), both engines' YAML (schema-checked,
job graph read back), and the matrix merge folding the shards into one proof cell (no VM)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from test_export import ROOT, ci_plan, validated
from test_matrix import available
from test_prove_shards import CLEAN, HIT, Script

from harness import prove
from harness.matrix import ci as export
from harness.matrix.spec import load_matrix
from harness.prove import KernelInfo, PatchInfo, Policy, ProofInfo, shards

pytestmark = pytest.mark.usefixtures("frozen_reproducers")

FIX = "0002-ext2-validate-cached-iomap-with-i_blkseq.patch"
BODY = f"""name: ci
kernels: [debian:6.1.0-47]
reproducers:
  - ext4_inline
  - name: ext2_iomap_blkseq
    prove: {{patch: [reproducers/ext2_iomap_blkseq/patches/{FIX}], variant: ext2-iomap, confidence: 0.9,
            fraction: 0.5}}
    shards: 2
"""


def proof_plan(tmp_path: Path):
    shutil.copytree(ROOT / "reproducers" / "ext2_iomap_blkseq" / "patches",
                    tmp_path / "reproducers" / "ext2_iomap_blkseq" / "patches")
    matrix, p = ci_plan(tmp_path, BODY)
    cell = next(c for c in matrix.cells if c.prove)
    return matrix, p, cell


def test_a_sharded_proof_is_a_check_job_then_its_shards(tmp_path):
    _, p, cell = proof_plan(tmp_path)
    jobs = [(c.job, c.proof.index if c.proof else None) for c in p.cells if c.cell == cell.id]
    base = "cell-debian-src_6_1_192_ext2-iomap_0002-ext2-validate-cached-iomap-with-i_blkseq_ext2_iomap_blkseq"
    assert jobs == [(f"{base}-check", 0), (f"{base}-1of2", 1), (f"{base}-2of2", 2)]
    check = p.cells[[c.job for c in p.cells].index(f"{base}-check")].proof
    argv = list(check.argv)
    assert argv[:5] == ["harness", "prove", "ext2_iomap_blkseq", "--variant", "ext2-iomap"]
    assert argv[argv.index("--confidence") + 1] == "0.9" and argv[argv.index("--fraction") + 1] == "0.5"
    text = p.describe()
    assert "proof base check, plan of 2 shards" in text and "proof shard 2/2" in text
    assert "1 proof(s) over shards merged into one proof each" in text


def test_github_proof_shards_need_the_check_and_download_its_plan(tmp_path):
    _, p, cell = proof_plan(tmp_path)
    jobs = validated("github", export.github_actions(p), tmp_path)["jobs"]
    parts = [c for c in p.cells if c.proof]
    check = parts[0]
    run = shlex.split(next(s["run"] for s in jobs[check.job]["steps"] if s.get("name") == "Run the cell"))
    assert run[:2] == ["harness", "prove"] and run[-5:] == ["--plan", "--shards", "2", "--results", f"out/{check.job}"]
    assert "needs" not in jobs[check.job]  # a proof cell builds its own kernels (for now)
    for c in parts[1:]:
        job = jobs[c.job]
        assert job["needs"] == [check.job]
        download = [s["with"] for s in job["steps"] if s.get("uses", "").startswith("actions/download-artifact")]
        assert download == [{"name": check.job, "path": "checks/"}]
        run = next(s["run"] for s in job["steps"] if s.get("name") == "Run the cell")
        assert run == f"harness prove --shard {c.proof.index}/2 --from-check checks/ --results out/{c.job}"
    assert set(jobs["merge"]["needs"]) >= {c.job for c in parts}
    assert all(c.job.startswith("cell-") for c in parts)  # the merge's download pattern takes them all


def test_gitlab_proof_check_stage_before_its_shards(tmp_path):
    _, p, _ = proof_plan(tmp_path)
    ci = validated("gitlab", export.gitlab(p), tmp_path)
    assert ci["stages"] == ["kernels", "checks", "cells", "merge"]
    jobs = {k: v for k, v in ci.items() if isinstance(v, dict) and "stage" in v}
    order = {s: i for i, s in enumerate(ci["stages"])}
    for name, job in jobs.items():
        for need in job.get("needs", []):
            assert need["job"] in jobs and order[jobs[need["job"]]["stage"]] < order[job["stage"]], name
    parts = [c for c in p.cells if c.proof]
    assert jobs[parts[0].job]["stage"] == "checks"
    for c in parts[1:]:
        job = jobs[c.job]
        assert job["needs"] == [{"job": parts[0].job, "artifacts": True}] and job["stage"] == "cells"
        assert job["script"][-1] == (f"harness prove --shard {c.proof.index}/2 --from-check out/{parts[0].job}/ "
                                     f"--results out/{c.job}")
        assert job["artifacts"]["paths"] == [f"out/{c.job}/"]
    assert {n["job"] for n in jobs["merge"]["needs"]} >= {c.job for c in parts}


# --- the matrix merge of a sharded proof -------------------------------------------------------------------


def fabricate(out: Path, cell, check_job: str, shard_jobs: list[str], skip: int | None = None) -> shards.ShardPlan:
    """The folders the check and shard jobs leave: the plan under out/<check job>/, each shard under its job's."""
    policy = Policy(confidence=0.9, fraction=0.5)
    info = ProofInfo(cell.repro, KernelInfo(f"{cell.kernel}/{cell.variant}", "6.1.192"),
                     KernelInfo(f"{cell.kernel}/{cell.variant}+343805b7", "6.1.192"),
                     (PatchInfo("ext2: validate cached iomap with i_blkseq", "cd" * 32, False, FIX),), policy,
                     started="2026-12-08T00:00:00")
    check = out / check_job / "20261208-000000-prove-check"
    proof, _ = prove.plan(Script([HIT]), Script([CLEAN]), info, check)
    plan = shards.make_plan(info, proof, 2, check, 30.0)
    shards.write_plan(check, plan)
    for i, job in enumerate(shard_jobs, 1):
        if i != skip:
            prove.prove(None, None, shards.shard_info(info, plan, i, check), out / job / f"20261208-00000{i}-shard",
                        make=shards.shard_maker(Script([HIT]), Script([CLEAN]), plan, i))
    return plan


def test_matrix_merge_folds_a_proofs_shards_into_one_cell(tmp_path):
    matrix, p, cell = proof_plan(tmp_path)
    parts = [c.job for c in p.cells if c.proof]
    plan = fabricate(tmp_path / "out", cell, parts[0], parts[1:])
    spec = tmp_path / "matrix.yaml"
    index = export.merge([tmp_path / "out"], results_root=tmp_path / "merged", spec=spec, available=available)
    got = index.cell(cell.id)
    assert got.verdict == "FIXED" and got.status == "done" and got.met is True
    assert {c.cell for c in index.cells} == {c.id for c in load_matrix(spec, available=available).cells}
    record = (index.folder / got.folder / "result.json").read_text()
    assert f'"id": "{plan.id}"' in record and '"failure": null' in record

    shutil.rmtree(tmp_path / "out" / parts[2])  # shard 2's job left nothing
    index = export.merge([tmp_path / "out"], results_root=tmp_path / "merged2", spec=spec, available=available)
    got = index.cell(cell.id)
    assert got.verdict == "INCONCLUSIVE" and got.met is False and "shard 2/2 never reported" in (got.error or "")
    assert "shard 2/2 never reported" in (index.folder / got.folder / "result.json").read_text()
