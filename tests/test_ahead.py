"""One switch for guests prepared ahead ($HARNESS_AHEAD, both backends) and one name for a guest that must go.

The old spellings (``vng-ssh:N``, ``$HARNESS_SNAPSHOT_AHEAD``) keep working and say they are old, once.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from harness.errors import GuestError
from harness.guest import machine
from harness.guest.backends import select
from harness.guest.snapshot.machine import OLD_AHEAD
from harness.guest.vngssh import DEFAULT_AHEAD

GUEST = Path(__file__).resolve().parent.parent / "harness" / "guest"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(machine.AHEAD, raising=False)
    monkeypatch.delenv(OLD_AHEAD, raising=False)
    monkeypatch.setattr(machine, "_WARNED", set())


def test_defaults_without_the_switch():
    assert select("vng-ssh").ahead == DEFAULT_AHEAD and select("snapshot").ahead is True


def test_one_switch_for_both_backends(monkeypatch):
    monkeypatch.setenv(machine.AHEAD, "3")
    assert select("vng-ssh").ahead == 3 and select("snapshot").ahead is True  # snapshot keeps one spare at most
    monkeypatch.setenv(machine.AHEAD, "0")
    assert select("vng-ssh").ahead == 0 and select("snapshot").ahead is False


def test_a_bad_value_is_one_line_saying_what_to_give(monkeypatch):
    for bad in ("x", "9", "-1", ""):
        monkeypatch.setenv(machine.AHEAD, bad)
        with pytest.raises(GuestError, match=r"^\$HARNESS_AHEAD=.*: the number of guests prepared ahead, 0 to 4$"):
            select("snapshot")


def test_old_spellings_still_work_and_say_so_once(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger=machine.log.name)
    monkeypatch.setenv(OLD_AHEAD, "0")
    assert select("snapshot").ahead is False and select("snapshot").ahead is False
    assert select("vng-ssh:1").ahead == 1 and select("vng-ssh:1").ahead == 1
    notes = [r.getMessage() for r in caplog.records]
    assert notes == ["deprecated: $HARNESS_SNAPSHOT_AHEAD is the old spelling of $HARNESS_AHEAD (set HARNESS_AHEAD=0)",
                     "deprecated: --backend vng-ssh:N is the old spelling of HARNESS_AHEAD=N (the switch every "
                     "backend honours)"]
    monkeypatch.setenv(machine.AHEAD, "2")  # the new name wins over the old one
    assert select("snapshot").ahead is True
    monkeypatch.setenv(machine.AHEAD, "0")  # an explicit vng-ssh:N wins over the environment
    assert select("vng-ssh:3").ahead == 3


@pytest.mark.parametrize("name", ["vng", "vng-ssh", "snapshot"])
def test_replace_sets_the_one_name(name):
    backend = select(name)
    assert backend.unfit is None
    backend.replace("kernel BUG in ext4_write_inline_data")
    assert backend.unfit == "kernel BUG in ext4_write_inline_data"


def test_vng_ssh_forgets_it_with_the_guest():
    backend = select("vng-ssh")
    backend.replace("a hang")
    backend._stop_guest("replaced")
    assert backend.unfit is None


def test_no_backend_keeps_its_own_name_for_it():
    old = re.compile(r"\bself\.(pending|previous|tainted)\b")
    found = [f"{p.relative_to(GUEST)}:{n}" for p in sorted(GUEST.rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if old.search(line)]
    assert found == []
