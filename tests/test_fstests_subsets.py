"""Documented fstests subsets: data files with what they measured, chosen with --subset."""

from __future__ import annotations

import pytest

from harness.cli import build_parser as parser
from harness.errors import SpecError, UnknownName
from harness.fstests import subsets


def test_tcg20_is_at_least_20_measured_tests():
    s = subsets.load("tcg20")
    assert len(s.tests) >= 20 and all(t.startswith("generic/") for t in s.tests)
    assert set(s.seconds) == set(s.tests) and s.measured_total <= 20 * 60
    assert "ext4 1135 s" in s.notes  # the whole run it was measured in


def test_unknown_subset_lists_the_known_ones():
    with pytest.raises(UnknownName, match=r"Unknown fstests subset 'nope'\. Available: .*tcg20"):
        subsets.load("nope")


def test_bad_line_names_its_number():
    with pytest.raises(SpecError, match="line 2: expected 'DIR/NNN"):
        subsets.parse_subset("x", "# a note\ngeneric/1 5\n")


def test_cli_subset_adds_its_tests_after_the_named_ones(monkeypatch):
    from harness.cli import fstests as cli

    seen = {}

    class Prepared:
        def __init__(self, selection):
            self.tests = selection.tests

    def prepare(selection, *, source=None):
        seen["selection"] = selection
        return Prepared(selection)

    monkeypatch.setattr(cli.fguest, "prepare", prepare)
    args = parser().parse_args(["fstests", "generic/346", "--subset", "tcg20", "--fs", "ext4"])
    spec = cli.fstests_spec(args)
    tests = seen["selection"].tests
    assert tests[0] == "generic/346" and tests[1:] == subsets.load("tcg20").tests
    assert spec.timeout == cli.PER_TEST * len(tests)
