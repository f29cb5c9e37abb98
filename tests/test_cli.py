import json
import subprocess
import sys
from pathlib import Path

from harness.cli import main

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


def test_python_m_harness_runs():
    done = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "repro" in done.stdout


def test_main_restores_the_sigterm_handler():
    import signal

    before = signal.getsignal(signal.SIGTERM)
    main(["report", str(DATA / "oops" / "debian61-boot-no-crash.log")])
    assert signal.getsignal(signal.SIGTERM) is before
