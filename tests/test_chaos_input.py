"""Chaos in CI, bad input (issue 18): every case of the chaos suite's bad-input fault, and the YAML limits.

The cases are the suite's own (tools.chaos.inputs.bad_inputs), run the
same way: the virtualenv's ``harness`` with a PATH that lacks the
virtualenv, a private cache and results folder.  Each must end in seconds
with one line and exit 2, 3 or 4, with nothing run.  About 20 s (one
interpreter start per case).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.errors import SpecError, UnknownName
from harness.repro import spec as specs
from harness.yamlio import MAX_BYTES, load_mapping
from tools.chaos.fixtures import billion_laughs, write_reproducers
from tools.chaos.inputs import bad_input
from tools.chaos.sandbox import Sandbox, venv_harness
from tools.chaos.suite import Context

# Cases that do not hold yet, in files the chaos suite does not own: the owner's fix makes the test fail
# until the case is taken off this list.
KNOWN: dict[str, str] = {}


def test_every_bad_input_is_one_line_and_runs_nothing(tmp_path):
    box = Sandbox(tmp_path / "chaos", tmp_path / "no-user-cache", venv_harness())
    write_reproducers(box.fixtures)
    rows = bad_input(Context(box, "6.1.0-57", "debian-src:6.1.192"))
    failed = {r.phase: r.seen for r in rows if not r.held}
    assert len(rows) >= 20
    assert set(failed) == set(KNOWN), "\n".join(f"{k}: {v}" for k, v in failed.items() if k not in KNOWN) or (
        f"fixed, take them off KNOWN: {sorted(set(KNOWN) - set(failed))}")


def _yaml(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "x.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_a_yaml_bomb_is_refused_in_milliseconds(tmp_path):
    path = _yaml(tmp_path, billion_laughs(levels=12, width=10))  # 10**11 strings once expanded
    start = time.monotonic()
    with pytest.raises(SpecError, match="expand to over"):
        load_mapping(path)
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("text, error", [
    ("a: &a [*a]\n", "refers to itself"),
    ("a: " + "[" * 30000 + "]" * 30000 + "\n", "nested too deep"),
    (b"name: \xff\xfe\n", "not UTF-8"),
    ("a: " + "x" * (MAX_BYTES + 10) + "\n", "over the 1024 KiB limit"),
])
def test_hostile_yaml_is_one_line(tmp_path, text, error):
    with pytest.raises(SpecError, match=error):
        load_mapping(_yaml(tmp_path, text))


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(SpecError, match="not a regular file"):
        load_mapping(fifo)
    with pytest.raises(SpecError, match="not a regular file"):
        load_mapping(tmp_path)


def test_aliases_a_spec_may_use_still_load(tmp_path):
    data = load_mapping(_yaml(tmp_path, "flags: &f [-O2, -Wall]\ncflags: *f\nmore: [*f, *f]\n"))
    assert data["cflags"] == ["-O2", "-Wall"] and data["more"] == [["-O2", "-Wall"]] * 2


def test_a_reproducer_name_cannot_leave_the_reproducers_folder(tmp_path, monkeypatch):
    write_reproducers(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "repro.c").write_text("int main(void) { return 0; }\n")
    (outside / "repro.yaml").write_text("name: outside\nsource: repro.c\nimage: none\n")
    monkeypatch.setenv("HARNESS_REPRODUCERS", str(tmp_path / "reproducers"))
    monkeypatch.chdir(tmp_path / "reproducers")
    with pytest.raises(UnknownName, match="has no '..'"):
        specs.load("chaos_sleep/../../nowhere/../outside")
    assert specs.load("chaos_sleep").name == "chaos_sleep"
    assert specs.load(str(outside)).name == "outside"  # a folder given as a path is the user's choice
