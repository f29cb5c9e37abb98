import argparse
import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import build_parser, dispatch, main
from harness.errors import ExitCode
from harness.options import RunOptions

DATA = Path(__file__).parent / "data"


def test_unknown_reproducer_exit_4(capsys):
    assert main(["repro", "no-such-repro"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("harness: error: Unknown reproducer 'no-such-repro'. Available:")


def test_unknown_kernel_exit_4(capsys):
    assert main(["repro", "ext4_inline", "--kernel", "debian:5.10.0-1"]) == 4
    assert "Unknown Debian kernel" in capsys.readouterr().err
    assert main(["repro", "ext4_inline", "--kernel", "gentoo:6.1"]) == 4
    assert "Unknown kernel source 'gentoo'. Available: debian" in capsys.readouterr().err


def test_broken_yaml_exit_3(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "repro.yaml").write_text("image: {fs: ext4\n")
    (folder / "repro.c").write_text("")
    assert main(["repro", str(folder)]) == 3
    assert "broken YAML" in capsys.readouterr().err


def test_report_command(capsys):
    assert main(["report", str(DATA / "oops" / "real-ext4-inline-debian-6.1.0-47.log")]) == 0
    assert capsys.readouterr().out == "kernel BUG in ext4_write_inline_data\tBUG\n"
    assert main(["report", "--json", str(DATA / "oops" / "debian61-boot-no-crash.log")]) == 0
    assert json.loads(capsys.readouterr().out)["title"] is None


def test_report_of_a_missing_log_is_a_usage_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["report", str(tmp_path / "no-such.log")])
    assert done.value.code == 2
    assert "no-such.log: cannot read: No such file or directory (give the path of a console log)" in capsys.readouterr().err


def test_python_m_harness_runs():
    done = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "repro" in done.stdout


def test_main_restores_the_sigterm_handler():
    import signal

    before = signal.getsignal(signal.SIGTERM)
    main(["report", str(DATA / "oops" / "debian61-boot-no-crash.log")])
    assert signal.getsignal(signal.SIGTERM) is before


# --- numbers are checked at the command line -------------------------------------------------------


def _nothing_runs(monkeypatch) -> list:
    """Replace the commands' bodies: a usage error must stop before any of them."""
    from harness.cli import bisect as bisect_cli
    from harness.cli import matrix as matrix_cli
    from harness.cli import repro as repro_cli

    calls: list = []
    for module, name in ((repro_cli, "cmd_repro"), (matrix_cli, "cmd_matrix_run"), (bisect_cli, "cmd_bisect"),
                         (bisect_cli, "cmd_bisect_step")):
        monkeypatch.setattr(module, name, lambda args, name=name: calls.append(name) or 0)
    return calls


@pytest.mark.parametrize("argv, option", [
    (["repro", "ext4_inline", "-n", "0"], "-n/--runs"),
    (["repro", "ext4_inline", "-n", "-3"], "-n/--runs"),
    (["repro", "ext4_inline", "--runs", "two"], "-n/--runs"),
    (["repro", "ext4_inline", "--timeout", "0"], "--timeout"),
    (["matrix", "run", "--jobs", "0"], "-j/--jobs"),
    (["matrix", "run", "-n", "0"], "-n/--runs"),
    (["bisect", "ext4_inline", "--good", "a", "--bad", "b", "--confidence", "1"], "--confidence"),
    (["bisect", "ext4_inline", "--good", "a", "--bad", "b", "--rate", "0"], "--rate"),
    (["bisect", "ext4_inline", "--good", "a", "--bad", "b", "--max-fail", "0"], "--max-fail"),
    (["results", "list", "--limit", "0"], "-n/--limit"),
])
def test_out_of_range_numbers_are_one_line_usage_errors(argv, option, monkeypatch, tmp_path, capsys):
    calls = _nothing_runs(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--results", str(tmp_path / "results")] if argv[0] != "bisect" else argv)
    assert exit_.value.code == ExitCode.USAGE == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"error: argument {option}:" in err and "--help" in err
    assert calls == [] and not (tmp_path / "results").exists()


def test_bisect_step_usage_error_is_one_line_and_aborts_git_bisect_run(monkeypatch, capsys):
    calls = _nothing_runs(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(["bisect-step", "ext4_inline", "-n", "0"])
    assert exit_.value.code == ExitCode.GIT_ABORT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument -n/--runs: must be 1 or more, not 0" in err[0] and calls == []


def test_run_options_are_the_same_record_for_repro_matrix_and_bisect():
    from harness.cli.options import run_options

    parser = build_parser()
    shared = ["--accel", "tcg", "--backend", "vng-ssh:2", "-n", "3", "--fresh-compile"]
    full = [*shared, "--results", "/tmp/r", "--timeout", "30", "--host-compile"]
    repro = run_options(parser.parse_args(["repro", "ext4_inline", *full]))
    matrix = run_options(parser.parse_args(["matrix", "run", *full]))
    assert repro == matrix == RunOptions(accel="tcg", backend="vng-ssh:2", runs=3, results=Path("/tmp/r"),
                                         fresh_compile=True, host_compile=True, timeout=30)
    no_results = [*shared, "--timeout", "30", "--host-compile"]  # bisect's runs go under its folder
    bisect = run_options(parser.parse_args(["bisect", "ext4_inline", "--good", "a", "--bad", "b", *no_results]))
    step = run_options(parser.parse_args(["bisect-step", "ext4_inline", *no_results]))
    assert bisect == step == repro.with_(results=None)
    defaults = [run_options(parser.parse_args(argv)) for argv in (["repro", "x"], ["matrix", "run"],
                                                                    ["bisect", "x", "--good", "a", "--bad", "b"])]
    assert defaults == [RunOptions()] * 3


def test_backend_help_names_the_registered_backends(capsys):
    from harness.guest.backends import BACKENDS

    with pytest.raises(SystemExit):
        main(["repro", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(name in out for name in BACKENDS.names()) and "ssh:NAME" in out


def test_dispatch_maps_errors_to_one_line_and_an_exit_code(capsys):
    def no_space(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/results/x/run-01/disk.img")

    def interrupted(args):
        raise KeyboardInterrupt

    assert dispatch(argparse.Namespace(verbose=False, func=no_space)) == ExitCode.NO_SPACE
    assert capsys.readouterr().err == ("harness: error: /results/x/run-01/disk.img: no space left on device "
                                       "(free some: `harness kernel evict --max-size SIZE`, old results folders)\n")
    hint = argparse.Namespace(verbose=False, func=interrupted, interrupted_hint="resume with --resume F")
    assert dispatch(hint) == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "harness: interrupted; resume with --resume F\n"


def test_python_m_harness_bisect_goes_through_the_one_dispatch():
    done = subprocess.run([sys.executable, "-m", "harness.bisect", "bisect", "no-such-repro", "--good", "a",
                           "--bad", "b"], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == ExitCode.UNKNOWN, done.stderr
    assert done.stderr.startswith("harness: error: Unknown reproducer 'no-such-repro'")
    assert len(done.stderr.strip().splitlines()) == 1
