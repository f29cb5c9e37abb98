"""A cached build boots through PVH unless it is a KASAN build (kconfigs/README.md, "KASAN and the PVH
entry"): 6.1's xen_prepare_pvh() is instrumented and runs on the physical early stack before
kasan_early_init(), so a KASAN vmlinux booted through PVH triple-faults before its first console line."""

from __future__ import annotations

import json

import pytest

import harness.kernels.cache as cache


def _entry(tmp_path, options: list[str]):
    entry = tmp_path / "0123456789abcdef01234567"
    entry.mkdir()
    (entry / "meta.json").write_text(json.dumps({"name": "debian-src:6.1.192/debug", "release": "6.1.192",
                                                 "version": "6.1.192"}))
    (entry / "config").write_text("".join(f"{o}\n" for o in options))
    for name in ("bzImage", "vmlinux", "System.map"):
        (entry / name).write_bytes(b"")
    return entry


@pytest.mark.parametrize(("options", "boots_vmlinux"), [
    (["CONFIG_PVH=y"], True),
    (["CONFIG_PVH=y", "CONFIG_KASAN=y", "CONFIG_KASAN_INLINE=y"], False),
    (["CONFIG_PVH=y", "# CONFIG_KASAN is not set"], True),
    (["# CONFIG_PVH is not set"], False),
])
def test_a_kasan_build_boots_its_bzimage(tmp_path, monkeypatch, options, boots_vmlinux):
    monkeypatch.delenv("HARNESS_PVH", raising=False)
    entry = _entry(tmp_path, options)
    kernel = cache.record("debian-src:6.1.192/debug", entry, None, cached=True)
    assert kernel.image == entry / "bzImage"
    assert kernel.boot_image == (entry / "vmlinux" if boots_vmlinux else None)


def test_harness_pvh_0_boots_every_build_as_a_bzimage(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_PVH", "0")
    kernel = cache.record("debian-src:6.1.192", _entry(tmp_path, ["CONFIG_PVH=y"]), None, cached=True)
    assert kernel.boot_image is None
