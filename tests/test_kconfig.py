"""Kconfig fragments: parse, merge, overlay, verify, explain (no make)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import SpecError, UnknownName
from harness.kernels import kconfig


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_parse_set_and_unset() -> None:
    opts = kconfig.parse('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\n# comment\n\nCONFIG_D=0x10\n')
    assert opts == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": '"x y"', "CONFIG_D": "0x10"}


def test_parse_rejects_garbage() -> None:
    with pytest.raises(SpecError, match="lean.config:2"):
        kconfig.parse("CONFIG_A=y\nA=y\n", "lean.config")


def test_merge_last_wins_in_order(tmp_path: Path) -> None:
    a = write(tmp_path / "a.config", "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n")
    b = write(tmp_path / "b.config", "# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=m\n")
    merged = kconfig.merge([a, b])
    assert merged == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "y", "CONFIG_D": "m"}
    assert kconfig.merge([b, a])["CONFIG_B"] == "y"
    assert kconfig.render(merged) == "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=m\n"


def test_overlay_replaces_base_values() -> None:
    base = "# top\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_KEEP=y\n"
    text = kconfig.overlay(base, {"CONFIG_A": "n", "CONFIG_B": "y"})
    opts = kconfig.parse(text, strict=False)
    assert opts == {"CONFIG_KEEP": "y", "CONFIG_A": "n", "CONFIG_B": "y"}
    assert text.count("CONFIG_A") == 1


def test_verify_reports_missing_and_wrong() -> None:
    requested = {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "y", "CONFIG_S": '"x"', "CONFIG_N": "n"}
    actual = {"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_S": '"x"'}
    bad = {m.option: m for m in kconfig.verify(requested, actual)}
    assert set(bad) == {"CONFIG_B", "CONFIG_C"}  # absent counts as "not set"
    assert bad["CONFIG_C"].got is None
    assert "CONFIG_C=y requested, got unset" in str(bad["CONFIG_C"])


def test_verify_explains_unmet_dependency(tmp_path: Path) -> None:
    src = tmp_path / "linux"
    write(src / "Kconfig", 'source "fs/9p/Kconfig"\n')
    write(
        src / "fs/9p/Kconfig",
        'config 9P_FS\n\ttristate "9p"\n\tdepends on INET && NET_9P\n\thelp\n\t  depends on nothing\n\n'
        'if 9P_FS\nconfig 9P_FS_POSIX_ACL\n\tbool "acl"\nendif\n',
    )
    write(src / "arch/arm/Kconfig", "config 9P_FS\n\tdepends on ARM\n")  # other arches are ignored
    requested = {"CONFIG_9P_FS": "y", "CONFIG_9P_FS_POSIX_ACL": "y", "CONFIG_NOPE": "y"}
    actual = {"CONFIG_NET_9P": "y"}
    bad = {m.option: m.reason for m in kconfig.verify(requested, actual, src)}
    assert bad["CONFIG_9P_FS"] == "depends on INET [INET=n] at fs/9p/Kconfig:1"  # the unmet part only
    assert bad["CONFIG_9P_FS_POSIX_ACL"].startswith("depends on 9P_FS [9P_FS=n]")
    assert bad["CONFIG_NOPE"] == "no such option in this tree"


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("A && B", 2),
        ("A && !C", 2),
        ("A && C", 0),
        ("C || (A && M)", 1),
        ("!(A || C)", 0),
        ('S = "x"', 2),
        ("S != x", 0),
        ("$(cc-option,-foo)", None),
    ],
)
def test_evaluate(expr: str, value: int | None) -> None:
    config = {"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_M": "m", "CONFIG_S": '"x"'}
    assert kconfig.evaluate(expr, config) == value


def test_fragment_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_KCONFIGS", str(tmp_path))
    write(tmp_path / "lean.config", "CONFIG_A=y\n")
    other = write(tmp_path / "elsewhere" / "mine.config", "CONFIG_B=y\n")
    assert kconfig.fragment_path("lean") == tmp_path / "lean.config"
    assert kconfig.fragment_path(str(other)) == other
    write(tmp_path / "mine.config", "CONFIG_C=y\n")
    assert kconfig.fragment_path("mine") == tmp_path / "mine.config"  # a user's fragment beside the shipped ones
    assert kconfig.fragment_path("debug").parent != tmp_path  # not in $HARNESS_KCONFIGS: the shipped one
    with pytest.raises(UnknownName, match=r"Available: debug, .*lean, mine"):
        kconfig.fragment_path("nope")


def test_shipped_fragments_parse() -> None:
    names = kconfig.available()
    assert {"lean", "filesystems", "debug", "faults", "symbols"} <= set(names)
    for name in names:
        assert kconfig.merge([kconfig.fragment_path(name)])
    merged = kconfig.merge([kconfig.fragment_path(n) for n in ("lean", "filesystems")])
    assert merged["CONFIG_EXT2_FS"] == "y" and merged["CONFIG_EXT4_USE_FOR_EXT2"] == "n"
    assert merged["CONFIG_MODULES"] == "n"


def test_optional_marker(tmp_path: Path) -> None:
    frag = write(tmp_path / "f.config", "CONFIG_A=y  # optional: 6.12+\n# CONFIG_B is not set # optional\nCONFIG_C=y\n")
    assert kconfig.merge([frag]) == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "y"}
    opt = kconfig.optional([frag])
    assert opt == {"CONFIG_A", "CONFIG_B"}
    bad = kconfig.verify(kconfig.merge([frag]), {"CONFIG_B": "y"}, optional=opt)
    assert [(m.option, m.optional) for m in bad] == [("CONFIG_A", True), ("CONFIG_B", True), ("CONFIG_C", False)]
    assert str(bad[0]).endswith("[optional]")


def test_why_names_selects_and_hidden_prompts(tmp_path: Path) -> None:
    src = tmp_path / "linux"
    write(
        src / "Kconfig",
        'config ACPI\n\tbool "acpi"\n\tselect PNP if X86\n\thelp\n\t  if you say Y here\n\t  select NOTHING\n\n'
        'config PNP\n\tbool "pnp"\n\n'
        'menu "CPUs"\n\tdepends on X86\n\n'
        'config CPU_SUP_HYGON\n\tdefault y\n\tbool "hygon" if PROCESSOR_SELECT\n'
        "endmenu\n",
    )
    actual = {"CONFIG_ACPI": "y", "CONFIG_X86": "y", "CONFIG_PNP": "y", "CONFIG_CPU_SUP_HYGON": "y"}
    requested = {"CONFIG_PNP": "n", "CONFIG_CPU_SUP_HYGON": "n"}
    bad = {m.option: m.reason for m in kconfig.verify(requested, actual, src)}
    assert bad["CONFIG_PNP"] == "selected by ACPI [=y]"
    assert bad["CONFIG_CPU_SUP_HYGON"].startswith("no prompt unless PROCESSOR_SELECT [PROCESSOR_SELECT=n]")
    defs = {d.symbol: d for d in kconfig.scan(src)}
    assert defs["CPU_SUP_HYGON"].depends == ("X86",)  # the menu's condition
    assert defs["ACPI"].selects == (("PNP", "X86"),)  # help text is not parsed
