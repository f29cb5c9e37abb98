"""A bare C file without a spec: the Spec ``harness repro FILE.c`` runs.

A syzkaller reproducer (``harness.repro.syzkaller.detect``) runs in
syzkaller mode without a harness image (it brings its own filesystem) and
with syzbot's boot options; its time limit defaults to 300 s when it loops
until killed.  Any other C file gets a fresh image (ext4 unless ``fs`` says
otherwise) mounted where its first argument points (``{mnt}``).

With expected titles, those are the hits and every kernel is expected to
reproduce; without, any crash report is a hit (``expect.any_crash``) and
there is no expectation to meet.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import SpecError, UnknownName
from harness.images import Recipe, parse_recipe
from harness.repro import syzkaller
from harness.repro.spec import Expectation, GuestOptions, Spec

FS_CHOICES = ("ext4", "ext2", "xfs", "none")
IMAGE_SIZES = {"ext4": "64M", "ext2": "64M", "xfs": "512M"}  # mkfs.xfs refuses filesystems under 300 MiB
PLAIN_TIMEOUT = 120


def default_fs(info: syzkaller.SyzInfo | None) -> str:
    """``none`` for a syzkaller reproducer (it mounts its own images), ``ext4`` for anything else."""
    return "none" if info else "ext4"


def adhoc_image(fs: str, where: str = "--fs") -> Recipe | None:
    """The fresh image a bare C file runs on (None for ``none``)."""
    if fs not in FS_CHOICES:
        raise SpecError(f"{where} {fs}: use one of {', '.join(FS_CHOICES)}")
    if fs == "none":
        return None
    return parse_recipe({"name": f"adhoc-{fs}", "fs": fs, "size": IMAGE_SIZES[fs]}, where)


def default_timeout(info: syzkaller.SyzInfo | None) -> int:
    return syzkaller.DEFAULT_TIMEOUT if info and info.runs_forever else PLAIN_TIMEOUT


def guest_options(info: syzkaller.SyzInfo | None) -> GuestOptions:
    """The default guest, with syzbot's boot options for a syzkaller reproducer."""
    base = GuestOptions()
    if info is None:
        return base
    return GuestOptions(cmdline=tuple(dict.fromkeys((*base.cmdline, *syzkaller.BOOT_OPTIONS))))


def spec_for_file(path: str | Path, *, expect_titles: tuple[str, ...] | list[str] = (), fs: str | None = None,
                  timeout: int | None = None, kernel: str | None = None) -> Spec:
    """The Spec of one C file, as ``harness repro FILE.c [--expect T]... [--fs F] [--timeout S]`` runs it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UnknownName(f"{path}: no such C file: give the path of a reproducer (or a reproducer's name)")
    text = path.read_bytes()
    info = syzkaller.detect(text)
    recipe = adhoc_image(fs or default_fs(info))
    if timeout is not None and timeout < 1:
        raise SpecError(f"--timeout {timeout}: must be a positive number of seconds")
    titles = tuple(expect_titles)
    what = info.describe() if info else "C file"
    return Spec(
        name=path.stem,
        folder=path.parent.resolve(),
        summary=f"{path.name}: {what}" + ("" if titles else " (no title expected: any crash report is a hit)"),
        source=path.resolve(),
        image=recipe,
        args=("{mnt}",) if recipe else (),
        timeout=timeout or default_timeout(info),
        kernel=kernel or "debian:6.1",
        guest=guest_options(info),
        expect=Expectation(titles=titles, reproduce=("*",) if titles else (), any_crash=not titles),
        source_text=text,
        mode="syzkaller" if info else "plain",
        syzkaller=info,
        links=info.links if info else (),
    )
