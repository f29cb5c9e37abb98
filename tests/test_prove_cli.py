"""``harness prove``, ``harness repro --patch/--base/--kernel NAME`` and the matrix's ``prove:`` cell (no VM).

The kernels are fake (``Recipe.build`` returns a ``Kernel`` record and
remembers the recipe it was asked for) and so are the run sessions: a
``FakeSession`` in place of ``ReproSession`` returns real ``RunResult``s
whose outcome a per-kernel pattern decides, so the proof driver, its log,
resume and the records run for real.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from harness import cli, kernels, prove
from harness.errors import ExitCode, UnknownName
from harness.guest.protocol import StepResult
from harness.kernels import Kernel
from harness.kernels import build as kbuild
from harness.kernels import cache as kcache
from harness.kernels import patches as patchlib
from harness.kernels import recipe as recipemod
from harness.kernels.build import DEFAULT_FRAGMENTS, Layout, Variant
from harness.kernels.patches import PatchOp
from harness.matrix import ci, provecell
from harness.matrix.run import run_matrix
from harness.matrix.spec import load_matrix
from harness.options import Accel, RunOptions
from harness.prove import Observation
from harness.repro import spec as specs
from harness.repro import trial as trialmod
from harness.repro.run import RunResult
from harness.results.db import History, MatrixIndex
from harness.verdict import Outcome, Verdict

ROOT = Path(__file__).resolve().parent.parent
EXT2 = ROOT / "reproducers" / "ext2_iomap_blkseq" / "patches"
FIX = EXT2 / "0002-ext2-validate-cached-iomap-with-i_blkseq.patch"
XFS_FIX = ROOT / "reproducers" / "xfs_mkwrite_delalloc" / "patches" / (
    "0001-xfs-restore-pre-6.1.92-delalloc-punch-on-write-failure.patch")


# --- fakes ------------------------------------------------------------------------------------------------


def fake_kernel(variant: Variant) -> Kernel:
    key = kbuild.inputs_key(variant.source, patchlib.digest(variant.patches) if variant.patches else "",
                            "+".join(variant.fragments), "gcc")[:24]
    return Kernel(name=variant.kernel_name, release="6.1.192-lean", version="6.1.192", image=Path("/nonexistent"),
                  kind="build", extra={"key": key, "identity": "linux-source-6.1=6.1.192-3",
                                       "source": variant.source, "variant": variant.name})


@pytest.fixture
def built(monkeypatch):
    """Every recipe ``Recipe.build`` is asked for, in order; the kernel accelerator is fixed."""
    asked: list[Variant] = []

    def build(self, *, progress=None):
        asked.append(self.variant)
        return fake_kernel(self.variant)

    monkeypatch.setattr(recipemod.Recipe, "build", build)
    monkeypatch.setattr("harness.prove.record.accel_for", lambda options, kernel: Accel("tcg", "test"))
    monkeypatch.setattr("harness.cli.repro.accel_for", lambda options, kernel: Accel("tcg", "test"))
    return asked


class FakeSession:
    """``ReproSession``'s surface for the proof: ``run()`` -> a RunResult; ``patterns[kernel name](n)`` -> Outcome."""

    patterns: dict = {}
    opened: list = []
    interrupt_after: int | None = None  # total runs (both kernels) after which Ctrl-C comes
    total = 0

    def __init__(self, spec, kernel, options, *, accel, progress=None):
        self.spec, self.kernel, self.options = spec, kernel, options
        self.n = 0
        FakeSession.opened.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, seconds: float | None = None) -> RunResult:
        if FakeSession.interrupt_after is not None and FakeSession.total >= FakeSession.interrupt_after:
            raise KeyboardInterrupt
        FakeSession.total += 1
        self.n += 1
        outcome = FakeSession.patterns[self.kernel.name](self.n)
        folder = Path(self.options.results) / "session" / f"run-{self.n:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        title = {Outcome.OTHER_CRASH: "possible deadlock in ext4_file_mmap",
                 Outcome.REPRODUCED: "kernel BUG in ext4_write_inline_data"}.get(outcome)
        verdict = Verdict(outcome, title, time_to_hit=0.5 if outcome is not Outcome.CLEAN else None)
        return RunResult(self.n, folder, verdict, (StepResult("run", 0, 1.0, 21.0),), 30.0, 5.0)


@pytest.fixture
def sessions(monkeypatch):
    monkeypatch.setattr(trialmod, "ReproSession", FakeSession)
    FakeSession.patterns, FakeSession.opened, FakeSession.interrupt_after, FakeSession.total = {}, [], None, 0
    return FakeSession


def always(outcome: Outcome):
    return lambda n: outcome


# --- prove: the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--confidence", "1.5"], "--confidence"),
    (["--confidence", "0"], "--confidence"),
    (["--fraction", "0"], "--fraction"),
    (["--fraction", "1.1"], "--fraction"),
    (["--max-runs", "1"], "--max-runs"),
    (["--budget", "0"], "--budget"),
    (["--budget", "soon"], "--budget"),
    (["--variant", "ext2-iomap", "--base", "debian-src:6.1.192"], "not allowed with argument"),
])
def test_prove_numbers_and_exclusive_kernels_are_usage_errors(argv, message, built, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["prove", "ext2_iomap_blkseq", "--patch", str(FIX), *argv])
    assert exit_.value.code == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert built == []  # nothing was built


@pytest.mark.parametrize("argv, message", [
    (["prove", "ext2_iomap_blkseq"], "--patch FIX"),
    (["prove", "--patch", str(FIX)], "give the reproducer"),
    (["prove", "--resume", "x", "ext2_iomap_blkseq"], "drop REPRO"),
    (["prove", "--resume", "x", "--confidence", "0.9"], "drop --confidence"),
])
def test_prove_missing_or_extra_arguments_are_usage_errors(argv, message, built, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == ExitCode.USAGE
    assert message in capsys.readouterr().err


def test_prove_names_the_variants_when_none_is_given(built, capsys):
    assert cli.main(["prove", "ext2_iomap_blkseq", "--patch", str(FIX)]) == ExitCode.UNKNOWN
    assert "variants stock, ext2-iomap, ext2-iomap-blkseq" in capsys.readouterr().err


def test_prove_on_a_prebuilt_base_says_how_to_build_one(built, capsys):
    assert cli.main(["prove", "ext4_inline", "--patch", str(FIX)]) == ExitCode.SPEC
    assert "--base SOURCE" in capsys.readouterr().err
    assert cli.main(["prove", "ext4_inline", "--base", "debian:6.1", "--patch", str(FIX)]) == ExitCode.SPEC
    assert "prebuilt kernel" in capsys.readouterr().err


# --- recipes --------------------------------------------------------------------------------------------


def test_recipe_variant_stack_then_the_fixes():
    spec = specs.load("ext2_iomap_blkseq")
    base = spec.recipe(variant="ext2-iomap")
    ops = recipemod.load_ops([str(FIX)])
    patched = base.patched(ops)
    names = [op.path.name for op in patched.variant.patches]
    assert [op.path.name for op in base.variant.patches] == names[:2] == [
        "0001-ext2-buffered-io-through-iomap.patch", "0003-ext2-DEBUG-map_blocks-delay-knob.patch"]
    assert names[2] == FIX.name and not patched.variant.patches[2].revert
    assert base.name == "debian-src:6.1.192/ext2-iomap"
    assert patched.name == f"debian-src:6.1.192/ext2-iomap+{patchlib.digest(ops)[:8]}"
    assert patched.variant.source == base.variant.source and patched.variant.fragments == base.variant.fragments
    assert patched.cmdline == base.cmdline == ("ext2.map_delay_us=200000",)


def test_recipe_base_source_default_fragments_and_reverts():
    spec = specs.load("xfs_mkwrite_delalloc")
    base = spec.recipe(base="debian-src:6.1.192")
    assert base.variant == Variant("debian-src:6.1.192") and base.variant.fragments == DEFAULT_FRAGMENTS
    ops = recipemod.load_ops([f"revert:{XFS_FIX}"])
    patched = base.patched(ops)
    assert patched.variant.patches == (PatchOp(XFS_FIX.resolve(), True),)
    assert patched.name == f"debian-src:6.1.192/patched-{patchlib.digest(ops)[:8]}"
    assert base.patched([]) == base
    assert spec.recipe(variant="stock").variant == Variant("debian-src:6.1.192", "stock")


def test_prove_default_trials_and_jobs(built, sessions, tmp_path, capsys):
    """The default proof: a base check at the full race, then trials of the chosen length; --jobs 2 opens a
    session a slot and gives the same verdict and counts."""
    spec = specs.load("ext2_iomap_blkseq")
    base = spec.recipe(variant="ext2-iomap")
    patched = base.patched(recipemod.load_ops([str(FIX)]))
    sessions.patterns = {base.name: always(Outcome.DATA_LOSS), patched.name: always(Outcome.CLEAN)}
    out = {}
    for jobs in ("1", "2"):
        sessions.opened.clear()
        code = cli.main(["prove", "ext2_iomap_blkseq", "--variant", "ext2-iomap", "--patch", str(FIX), "--jobs", jobs,
                         "--confidence", "0.9", "--fraction", "0.5", "--results", str(tmp_path / jobs), "--json"])
        out[jobs] = json.loads(capsys.readouterr().out)
        assert code == ExitCode.OK and out[jobs]["verdict"] == "FIXED"
        assert out[jobs]["unit"] == "trial" and out[jobs]["check"]["runs"] == 3 and out[jobs]["trial"]["seconds"] < 30
        assert "In " in out[jobs]["statement"] and " s trials" in out[jobs]["statement"]
        assert len(sessions.opened) == 2 * int(jobs)  # each slot its own session of each kernel
    assert {k: (out["1"][k]["runs"], out["1"][k]["hits"]) for k in ("base", "patched")} == \
           {k: (out["2"][k]["runs"], out["2"][k]["hits"]) for k in ("base", "patched")}


def test_prove_plan_runs_the_base_check_and_stops(built, sessions, tmp_path, capsys):
    spec = specs.load("ext2_iomap_blkseq")
    base = spec.recipe(variant="ext2-iomap")
    patched = base.patched(recipemod.load_ops([str(FIX)]))
    sessions.patterns = {base.name: always(Outcome.DATA_LOSS), patched.name: always(Outcome.CLEAN)}
    code = cli.main(["prove", "ext2_iomap_blkseq", "--variant", "ext2-iomap", "--patch", str(FIX), "--plan",
                     "--results", str(tmp_path)])
    out = capsys.readouterr()
    assert code == ExitCode.OK
    assert out.out.splitlines()[0].split()[:3] == ["confidence", "fraction", "trial"]
    assert "0.95        0.1" in out.out and "harness prove --resume" in out.out
    folder = Path(re.search(r"--resume (\S+)`", out.out).group(1))
    assert cli.main(["prove", "--resume", str(folder)]) == ExitCode.OK  # the proof goes on from its base check
    _, records = prove.ProofLog(folder).read()
    phases = [r["phase"] for r in records if r["type"] == "run" and r["side"] == "base"]
    assert phases[:3] == ["check"] * 3 and set(phases[3:]) == {"trials"}  # the check was not run again
    assert sum(r["type"] == "trial" for r in records) == 1  # nor the trial length chosen again


def test_prove_plan_from_the_recorded_history(built, sessions, tmp_path, capsys):
    """A second proof on the same base build prints the plan from the first one's base check before it runs;
    --plan then answers from that record, opening no session and leaving no folder."""
    spec = specs.load("ext2_iomap_blkseq")
    base = spec.recipe(variant="ext2-iomap")
    patched = base.patched(recipemod.load_ops([str(FIX)]))
    sessions.patterns = {base.name: always(Outcome.DATA_LOSS), patched.name: always(Outcome.CLEAN)}
    argv = ["prove", "ext2_iomap_blkseq", "--variant", "ext2-iomap", "--patch", str(FIX), "--confidence", "0.9",
            "--fraction", "0.5", "--results", str(tmp_path)]
    assert cli.main(argv) == ExitCode.OK
    assert "recorded in" not in capsys.readouterr().err
    folders = set(tmp_path.iterdir())
    sessions.opened.clear()
    assert cli.main([*argv, "--plan"]) == ExitCode.OK
    out = capsys.readouterr()
    assert "the plan, from the base check recorded in" in out.err and out.out.startswith("confidence")
    assert "0.9         0.5" in out.out and not sessions.opened and set(tmp_path.iterdir()) == folders


def test_prove_fixed_builds_base_then_patched_and_prints_everything(built, sessions, tmp_path, capsys):
    spec = specs.load("ext2_iomap_blkseq")
    base = spec.recipe(variant="ext2-iomap")
    patched = base.patched(recipemod.load_ops([str(FIX)]))
    sessions.patterns = {base.name: always(Outcome.DATA_LOSS), patched.name: always(Outcome.CLEAN)}
    code = cli.main(["prove", "ext2_iomap_blkseq", "--variant", "ext2-iomap", "--patch", str(FIX), "--trial", "full",
                     "--confidence", "0.9", "--fraction", "0.5", "--results", str(tmp_path)])
    out = capsys.readouterr()
    assert code == ExitCode.OK, out.err
    assert built == [base.variant, patched.variant]  # the base first: the patched build is incremental on it
    assert [s.kernel.name for s in sessions.opened] == [base.name, patched.name]
    assert all(s.options.cmdline == ("ext2.map_delay_us=200000",) for s in sessions.opened)
    assert all(s.options.backend == "auto" for s in sessions.opened)
    assert "base run 1: DATA_LOSS (1/1 hits)" in out.err and "patched run 1: CLEAN (0/1 hits)" in out.err
    assert "0.9" in out.out and "1/2 of the base rate" in out.out  # the statement
    assert "sha256 " + recipemod.load_ops([str(FIX)])[0].sha256 in out.out  # the mailing-list block
    assert "validate cached iomap" in out.out.lower()
    folder = Path(out.out.split("proof:")[1].split()[0])
    record = json.loads((folder / "result.json").read_text())
    assert record["verdict"] == "FIXED" and record["base"]["hits"] == record["base"]["runs"] > 0
    assert record["patched"]["hits"] == 0 and record["runs"] == record["patched"]["runs"]
    assert (folder / "base").is_dir() and (folder / "patched").is_dir()
    assert "FIXED:" in out.out.splitlines()[-1]


def test_prove_no_change_ends_before_any_accelerator_probe(built, sessions, tmp_path, capsys, monkeypatch):
    """The same code on both sides ends the proof after the builds: no probe, no session, exit 13; a code
    change probes each kernel once, after the comparison, and says which accelerator it got."""
    from harness.prove import record

    probes = []
    same = type("Diff", (), {"same": True, "describe": lambda self: "the same code: vmlinux .text"})()
    monkeypatch.setattr(record, "code_change", lambda base, patched: same)
    monkeypatch.setattr(record, "accel_for", lambda options, kernel: probes.append(kernel.name) or Accel("tcg", "t"))
    argv = ["prove", "ext2_iomap_blkseq", "--variant", "ext2-iomap", "--patch", str(FIX), "--trial", "full",
            "--results", str(tmp_path)]
    assert cli.main(argv) == ExitCode.NO_CHANGE
    assert probes == [] and sessions.opened == []
    assert "NO_CHANGE" in capsys.readouterr().out
    spec = specs.load("ext2_iomap_blkseq")
    base = spec.recipe(variant="ext2-iomap")
    patched = base.patched(recipemod.load_ops([str(FIX)]))
    sessions.patterns = {base.name: always(Outcome.DATA_LOSS), patched.name: always(Outcome.CLEAN)}
    monkeypatch.setattr(record, "code_change", lambda base, patched: None)
    assert cli.main([*argv, "--confidence", "0.9", "--fraction", "0.5"]) == ExitCode.OK
    assert probes == [base.name, patched.name]
    assert f"base: {base.name} (6.1.192-lean), accel tcg: t" in capsys.readouterr().err


def test_prove_json_and_exit_codes_per_verdict(built, sessions, tmp_path, capsys):
    spec = specs.load("xfs_mkwrite_delalloc")
    argv = ["prove", "xfs_mkwrite_delalloc", "--variant", "stock", "--patch", f"revert:{XFS_FIX}",
            "--max-runs", "12", "--trial", "full", "--results", str(tmp_path), "--json"]
    base = spec.recipe(variant="stock")
    patched = base.patched(recipemod.load_ops([f"revert:{XFS_FIX}"]))
    cases = [
        (Outcome.CLEAN, Outcome.CLEAN, "BASE_CLEAN", ExitCode.BASE_CLEAN),
        (Outcome.DATA_LOSS, Outcome.DATA_LOSS, "NOT_FIXED", ExitCode.UNMET),
        (Outcome.DATA_LOSS, Outcome.CLEAN, "INCONCLUSIVE", ExitCode.INCONCLUSIVE),  # 12 runs cannot settle 0.95/0.1
    ]
    for b, p, verdict, code in cases:
        sessions.patterns = {base.name: always(b), patched.name: always(p)}
        assert cli.main(argv) == code
        data = json.loads(capsys.readouterr().out)
        assert data["verdict"] == verdict and data["exit_code"] == code
        assert {"confidence", "base", "patched", "statement", "folders"} <= set(data)
        assert set(data["base"]) >= {"runs", "hits"}
    assert data["more_runs"] > 0 and "more clean runs" in data["statement"]


def test_prove_traded_names_the_other_report(built, sessions, tmp_path, capsys):
    spec = specs.load("ext4_inline/debug")
    base = spec.recipe(variant="debug")
    ops = recipemod.load_ops([str(ROOT / "reproducers/ext4_inline/patches/0001-ext4-convert-inline-data-at-mmap-time.patch")])
    patched = base.patched(ops)
    sessions.patterns = {base.name: always(Outcome.REPRODUCED), patched.name: always(Outcome.OTHER_CRASH)}
    code = cli.main(["prove", "ext4_inline/debug", "--variant", "debug", "--patch", str(ops[0].path),
                     "--confidence", "0.8", "--fraction", "1", "--results", str(tmp_path), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == ExitCode.UNMET and data["verdict"] == "TRADED"
    assert data["traded"] == ["possible deadlock in ext4_file_mmap"]
    assert "possible deadlock in ext4_file_mmap" in data["statement"]


def test_ctrl_c_keeps_the_runs_and_resume_rebuilds_the_same_recipe(built, sessions, tmp_path, capsys, monkeypatch):
    spec = specs.load("ext2_iomap_blkseq")
    base = spec.recipe(variant="ext2-iomap")
    patched = base.patched(recipemod.load_ops([str(FIX)]))
    sessions.patterns = {base.name: always(Outcome.DATA_LOSS), patched.name: always(Outcome.CLEAN)}
    sessions.interrupt_after = 5
    monkeypatch.chdir(FIX.parent)  # a relative --patch: the log keeps it absolute
    code = cli.main(["prove", "ext2_iomap_blkseq", "--variant", "ext2-iomap", "--patch", FIX.name,
                     "--confidence", "0.9", "--fraction", "0.5", "--backend", "vng", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == ExitCode.INTERRUPTED
    hint = err.split("harness prove --resume ")[1].split("`")[0]
    folder = Path(hint)
    records = [json.loads(line) for line in (folder / prove.LOG_FILE).read_text().splitlines()]
    assert [r["type"] for r in records].count("run") == 5
    monkeypatch.chdir(tmp_path)
    built.clear()
    sessions.opened.clear()
    sessions.interrupt_after = None
    code = cli.main(["prove", "--resume", str(folder), "--max-runs", "100"])
    out = capsys.readouterr()
    assert code == ExitCode.OK, out.err
    assert built == [base.variant, patched.variant]  # the same recipe, from the log
    assert all(s.options.backend == "vng" for s in sessions.opened)  # the logged run options
    result = prove.load(folder)
    assert result.verdict is prove.ProofVerdict.FIXED and result.proof.base.runs >= 3
    assert result.info.policy.max_runs == 200  # the logged policy; --max-runs changed this invocation only


def test_resume_refuses_a_changed_patch(built, sessions, tmp_path, capsys):
    fix = tmp_path / "fix.patch"
    fix.write_bytes(FIX.read_bytes())
    spec = specs.load("ext2_iomap_blkseq")
    base = spec.recipe(variant="ext2-iomap")
    patched = base.patched(recipemod.load_ops([str(fix)]))
    sessions.patterns = {base.name: always(Outcome.DATA_LOSS), patched.name: always(Outcome.CLEAN)}
    sessions.interrupt_after = 2
    cli.main(["prove", "ext2_iomap_blkseq", "--variant", "ext2-iomap", "--patch", str(fix), "--results",
              str(tmp_path / "r")])
    folder = Path(capsys.readouterr().err.split("harness prove --resume ")[1].split("`")[0])
    fix.write_text(fix.read_text().replace("i_blkseq", "i_blkseq2", 1))
    assert cli.main(["prove", "--resume", str(folder)]) == ExitCode.SPEC
    assert "the patches changed since the proof began" in capsys.readouterr().err
    assert cli.main(["prove", "--resume", str(tmp_path)]) == ExitCode.SPEC  # not a proof folder
    assert "no proof to resume" in capsys.readouterr().err


# --- harness repro --patch / --base / --kernel NAME --------------------------------------------------------


def repro_targets(argv: list[str]):
    from harness.cli import repro as repro_cli

    args = cli.build_parser().parse_args(["repro", *argv])
    return repro_cli._recipes(args, specs.load(args.reproducer))


def test_repro_patch_goes_on_each_kernel_the_run_would_build():
    ops = recipemod.load_ops([str(FIX)])
    tag = patchlib.digest(ops)[:8]
    got = repro_targets(["ext2_iomap_blkseq", "--variant", "ext2-iomap", "--patch", str(FIX)])
    assert [label for label, _ in got] == [f"debian-src:6.1.192/ext2-iomap+{tag}"]
    assert got[0][1].variant.patches[-1] == ops[0] and got[0][1].cmdline == ("ext2.map_delay_us=200000",)
    got = repro_targets(["ext4_inline", "--base", "debian-src:6.1.192", "--patch", str(FIX)])
    assert [label for label, _ in got] == [f"debian-src:6.1.192/patched-{tag}"]
    assert got[0][1].variant.fragments == DEFAULT_FRAGMENTS
    got = repro_targets(["xfs_mkwrite_delalloc", "--patch", str(FIX)])  # every variant
    assert [label for label, _ in got] == [f"debian-src:6.1.192/xfs-unfixed+{tag}", f"debian-src:6.1.192/stock+{tag}"]
    assert repro_targets(["ext4_inline", "--base", "debian-src:6.1.192"])[0][0] == "debian-src:6.1.192"
    assert repro_targets(["ext4_inline"]) == [("debian:6.1", None)]
    assert repro_targets(["ext4_inline", "-k", "debian-src:6.1.192/mine"]) == [("debian-src:6.1.192/mine", None)]


def test_repro_patch_usage_and_spec_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["repro", "ext4_inline", "--kernel", "debian:6.1", "--patch", str(FIX)])
    assert exit_.value.code == ExitCode.USAGE and "not --kernel" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["repro", "ext4_inline", "--kernel", "debian:6.1", "--base", "debian-src:6.1.192"])
    assert exit_.value.code == ExitCode.USAGE
    assert cli.main(["repro", "ext4_inline", "--patch", str(FIX)]) == ExitCode.SPEC
    assert "--base SOURCE" in capsys.readouterr().err
    assert cli.main(["repro", "ext4_inline", "--base", "debian-src:6.1.192", "--patch", "nope.patch"]) == ExitCode.SPEC
    assert "does not exist" in capsys.readouterr().err


def test_repro_patch_that_does_not_apply_is_a_build_error_naming_the_hunk(monkeypatch, tmp_path, capsys):
    def fail(self, *, progress=None):
        op = self.variant.patches[-1]
        raise patchlib.PatchFailed(op, "fs/ext2/inode.c", "@@ -1,3 +1,3 @@\n-old\n+new\n", "Hunk #1 FAILED")

    monkeypatch.setattr(recipemod.Recipe, "build", fail)
    code = cli.main(["repro", "ext2_iomap_blkseq", "--variant", "ext2-iomap", "--patch", str(FIX), "--json",
                     "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == ExitCode.KERNEL
    data = json.loads(out.splitlines()[0])
    assert data["verdict"] == "BUILD_ERROR" and "fails on fs/ext2/inode.c" in data["results"][0]["detail"]
    evidence = (Path(data["folder"]) / "run-01" / "build-error.txt").read_text()
    assert "--- hunk ---" in evidence and "+new" in evidence


def fake_entry(layout: Layout, key: str, name: str, built_at: str, source: str = "debian-src:6.1.192") -> Path:
    entry = layout.built / key
    entry.mkdir(parents=True)
    variant = name.removeprefix(source).lstrip("/")
    meta = {"key": key, "name": name, "source": source, "variant": variant or "default", "release": "6.1.192-lean",
            "version": "6.1.192", "built_at": built_at, "fragments": list(DEFAULT_FRAGMENTS)}
    (entry / "meta.json").write_text(json.dumps(meta))
    for artifact in ("bzImage", "vmlinux", "System.map", "config"):
        (entry / artifact).write_text("x")
    (entry / ".complete").write_text(key + "\n")
    return entry


def test_kernel_source_slash_name_resolves_a_named_build(tmp_path, monkeypatch):
    layout = Layout(tmp_path / "kernels")
    monkeypatch.setattr(kbuild.Layout, "default", classmethod(lambda cls: layout))
    mine = fake_entry(layout, "k1", "debian-src:6.1.192/mine", "2026-12-01T10:00:00")
    fake_entry(layout, "k2", "debian-src:6.1.192", "2026-12-02T10:00:00")
    fake_entry(layout, "k3", "git:/src/linux@v6.1", "2026-12-02T10:00:00", source="git:/src/linux@v6.1")
    built = []
    monkeypatch.setattr(kbuild, "build", lambda variant, progress=None: built.append(variant) or "built")
    kernel = kernels.resolve("debian-src:6.1.192/mine")
    assert kernel.name == "debian-src:6.1.192/mine" and kernel.image == mine / "bzImage" and built == []
    assert kernels.resolve("debian-src:6.1.192") == "built"  # a plain name keeps building (a cache hit when built)
    assert built == [Variant("debian-src:6.1.192")]
    with pytest.raises(UnknownName, match=r"harness kernel build debian-src:6\.1\.192 --name nobody"):
        kernels.resolve("debian-src:6.1.192/nobody")
    with pytest.raises(UnknownName, match=r"harness kernel build git:/src/linux@v6\.1 --name gone"):
        kernels.resolve("git:/src/linux@v6.1/gone")
    listed = {r["name"] for r in kcache.list_cached(layout)}
    assert "debian-src:6.1.192/mine" in listed  # what `harness kernel list` shows is what --kernel takes


def test_kernel_build_patch_takes_series_and_names(tmp_path, capsys, monkeypatch):
    from harness.cli import kernel as kernel_cli

    (tmp_path / "series").write_text(f"{FIX}\n# a comment\n{EXT2 / '0003-ext2-DEBUG-map_blocks-delay-knob.patch'}\n")
    parser = cli.build_parser()
    args = parser.parse_args(["kernel", "build", "debian-src:6.1.192", "-p", str(tmp_path / "series"),
                              "-p", f"revert:{XFS_FIX}", "--name", "mine"])
    variant = kernel_cli._variants(args)[0]
    assert [(op.path.name, op.revert) for op in variant.patches] == [
        (FIX.name, False), ("0003-ext2-DEBUG-map_blocks-delay-knob.patch", False), (XFS_FIX.name, True)]
    assert variant.kernel_name == "debian-src:6.1.192/mine" and variant.fragments == DEFAULT_FRAGMENTS
    args = parser.parse_args(["kernel", "build", "debian-src:6.1.192", "-p", str(FIX)])
    assert kernel_cli._variants(args)[0].name.startswith("patched-")
    assert cli.main(["kernel", "build", "debian-src:6.1.192", "--name", "a/b"]) == ExitCode.SPEC
    assert "--name 'a/b'" in capsys.readouterr().err


# --- the matrix's prove: cell ----------------------------------------------------------------------------


class FakeSide:
    def __init__(self, outcome: Outcome, title: str | None = None):
        self.outcome, self.title = outcome, title

    def run(self, seconds: float | None = None) -> Observation:
        hit = self.outcome is Outcome.DATA_LOSS
        return Observation(hit=hit, outcome=self.outcome.value, title=self.title, seconds=20.0,
                           time_to_hit=0.4 if hit else None)


def fake_resolver(cell, spec, *, progress=None, patched=False):
    base, patched_target, _ = provecell.entry_recipes(cell.prove, spec)
    return fake_kernel((patched_target if patched else base).variant)


MATRIX = f"""
name: proofs
reproducers:
  - name: ext2_iomap_blkseq
    prove: {{patch: [{FIX}], variant: ext2-iomap, confidence: 0.9, fraction: 0.5, max_runs: 60, trial: full}}
  - name: xfs_mkwrite_delalloc
    prove: {{patch: revert:{XFS_FIX}, variant: stock, max_runs: 10, expect: base_clean}}
"""


def test_matrix_prove_cells_one_row_both_kernels(tmp_path, monkeypatch):
    spec_path = tmp_path / "matrix.yaml"
    spec_path.write_text(MATRIX)
    matrix = load_matrix(spec_path)
    ids = [c.id for c in matrix.cells]
    assert ids == [f"debian-src:6.1.192/ext2-iomap + {FIX.stem}:ext2_iomap_blkseq",
                   f"debian-src:6.1.192/stock + revert {XFS_FIX.stem}:xfs_mkwrite_delalloc"]
    assert [c.expectation for c in matrix.cells] == ["fixed", "base_clean"]
    outcomes = {"ext2_iomap_blkseq": (Outcome.DATA_LOSS, Outcome.CLEAN),
                "xfs_mkwrite_delalloc": (Outcome.CLEAN, Outcome.CLEAN)}

    def runner(job, folder, progress=None):
        b, p = outcomes[job.cell.repro]
        assert job.proof[1].kernel.name.startswith(job.proof[0].kernel.name + "+")
        return provecell.run_proof_cell(job, folder, progress, sides=(FakeSide(b), FakeSide(p)))

    monkeypatch.setattr("harness.matrix.run.choose_accel", lambda accel, kernel: ("tcg", "test"))
    index = run_matrix(spec_path, only=(), resolver=fake_resolver, runner=runner,
                       options=RunOptions(results=tmp_path / "results"))
    cells = {c.repro: c for c in index.cells}
    ext2, xfs = cells["ext2_iomap_blkseq"], cells["xfs_mkwrite_delalloc"]
    assert (ext2.verdict, ext2.met, xfs.verdict, xfs.met) == ("FIXED", True, "BASE_CLEAN", True)
    assert ext2.proof["base"]["hits"] == ext2.proof["base"]["runs"] >= 3 and ext2.proof["patched"]["hits"] == 0
    assert ext2.proof["base"]["kernel"] == "debian-src:6.1.192/ext2-iomap"
    assert "Had the patched kernel still failed" in ext2.proof["statement"]
    assert {r.side for r in ext2.results} == {"base", "patched"}
    html = (index.folder / "index.html").read_text()
    assert html.count("<tr><th>") == 1 + 2 and "FIXED" in html
    assert re.search(r"base (\d+)/\1 · patched 0/\d+ hits", html)
    junit = (index.folder / "junit.xml").read_text()
    assert 'tests="2" failures="0" errors="0"' in junit and 'name="base"' in junit
    again = MatrixIndex.load(index.folder)
    assert again.cell(ext2.cell).proof == ext2.proof  # matrix.json keeps it
    rows = sqlite3.connect(tmp_path / "results" / "history.sqlite3").execute(
        "SELECT verdict, met FROM cells ORDER BY cell").fetchall()
    assert rows == [("FIXED", 1), ("BASE_CLEAN", 1)]
    assert History(tmp_path / "results" / "history.sqlite3").flaky() == []


def test_matrix_prove_cell_unmet_and_merge_skips_the_sessions_inside(tmp_path, monkeypatch):
    spec_path = tmp_path / "matrix.yaml"
    spec_path.write_text(MATRIX.split("  - name: xfs")[0])
    monkeypatch.setattr("harness.matrix.run.choose_accel", lambda accel, kernel: ("tcg", "test"))

    def runner(job, folder, progress=None):
        out = provecell.run_proof_cell(job, folder, progress,
                                      sides=(FakeSide(Outcome.DATA_LOSS), FakeSide(Outcome.DATA_LOSS)))
        session = out / "base" / "20260101-000000-ext2_iomap_blkseq-x"  # what a real session leaves inside
        session.mkdir(parents=True)
        (session / "result.json").write_text(json.dumps({"repro": "ext2_iomap_blkseq", "kernel": {"name": "x"},
                                                         "results": [], "status": "done"}))
        return out

    index = run_matrix(spec_path, resolver=fake_resolver, runner=runner,
                       options=RunOptions(results=tmp_path / "results"))
    (cell,) = index.cells
    assert cell.verdict == "NOT_FIXED" and cell.met is False and cell.hits == 1
    junit = (index.folder / "junit.xml").read_text()
    assert "expected fixed, got NOT_FIXED" in junit and "The patched kernel still fails" in junit
    found = ci.find_cells([index.folder])
    assert list(found) == [cell.cell]  # the session folder inside the proof is not a cell


def test_matrix_prove_cell_whose_patch_does_not_apply_is_a_build_error(tmp_path, monkeypatch):
    spec_path = tmp_path / "matrix.yaml"
    spec_path.write_text(MATRIX.split("  - name: xfs")[0])
    monkeypatch.setattr("harness.matrix.run.choose_accel", lambda accel, kernel: ("tcg", "test"))

    def resolver(cell, spec, *, progress=None, patched=False):
        if patched:
            base, target, ops = provecell.entry_recipes(cell.prove, spec)
            raise patchlib.PatchFailed(ops[0], "fs/ext2/inode.c", "@@ hunk", "Hunk #1 FAILED")
        return fake_resolver(cell, spec)

    index = run_matrix(spec_path, resolver=resolver, runner=lambda *a: pytest.fail("no run without kernels"),
                       options=RunOptions(results=tmp_path / "results"))
    (cell,) = index.cells
    assert cell.verdict == "BUILD_ERROR" and "fails on fs/ext2/inode.c" in cell.error


@pytest.mark.parametrize("prove_yaml, message", [
    ("{patch: nope.patch, variant: ext2-iomap}", "does not exist"),
    (f"{{patch: {FIX}, variant: nope}}", "Unknown variant 'nope'"),
    (f"{{patch: {FIX}}}", "say which one the patches go on"),
    (f"{{patch: {FIX}, variant: ext2-iomap, base: 'debian-src:6.1.192'}}", "give one"),
    (f"{{patch: {FIX}, variant: ext2-iomap, confidence: 2}}", "confidence"),
    (f"{{patch: {FIX}, variant: ext2-iomap, expect: fixed_maybe}}", "expect"),
    (f"{{patch: {FIX}, variant: ext2-iomap, colour: red}}", "colour"),
])
def test_matrix_prove_entry_errors(tmp_path, prove_yaml, message):
    spec_path = tmp_path / "matrix.yaml"
    spec_path.write_text(f"reproducers:\n  - name: ext2_iomap_blkseq\n    prove: {prove_yaml}\n")
    with pytest.raises(Exception, match=message):
        load_matrix(spec_path)
    spec_path.write_text(f"reproducers:\n  - name: ext2_iomap_blkseq\n    variants: [stock]\n"
                         f"    prove: {{patch: {FIX}, variant: ext2-iomap}}\n")
    with pytest.raises(Exception, match="drop kernels:/variants:/runs:"):
        load_matrix(spec_path)
