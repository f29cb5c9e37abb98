"""``harness new NAME --from FILE.c``: a reproducer folder from a C file as it was published.

``scaffold`` writes ``reproducers/NAME/``:

- ``repro.c``: the source, byte for byte;
- ``repro.yaml``: summary, expected titles (or ``any_crash``), mode,
  timeout, image (``none`` for a syzkaller reproducer, which brings its own
  filesystem), default kernel, an empty ``links:`` for the report's URL
  (prefilled when the source's first lines carry one);
- with a syzbot kernel ``.config``: ``syzbot.config``, the options that
  matter for the reproducer (``harness.kernels.syzconfig``), and a
  ``syzbot`` variant that builds a Debian source with ``lean`` plus that
  fragment; the description says which cached Debian kernels lack them.

The result loads with ``harness.repro.spec.load`` before it is returned, so
it is ready for ``harness repro NAME``, ``matrix``, ``bisect`` and ``prove``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from harness.errors import SpecError, UnknownName
from harness.kernels import syzconfig
from harness.paths import reproducers_dir
from harness.repro import adhoc, spec, syzkaller
from harness.repro.syzkaller import SyzInfo

FRAGMENT = "syzbot.config"
VARIANT = "syzbot"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _q(value: str) -> str:
    """A YAML scalar: JSON's double-quoted string is valid YAML."""
    return json.dumps(value)


def check_name(name: str) -> None:
    parts = name.split("/")
    if len(parts) > 2 or not all(_NAME_RE.match(p) for p in parts):
        raise SpecError(f"reproducer name {name!r}: letters, digits, _ . - (PARENT/SUB for a sub-reproducer)")


def _description(source: Path, info: SyzInfo | None, fs: str, syz: syzconfig.SyzConfig | None,
                 debian: list[tuple[str, Path]], config: Path | None) -> list[str]:
    lines = [f"Scaffolded by `harness new` from {source.name}."]
    if info is None:
        lines.append(f"A plain C reproducer: it runs with a fresh {fs} image mounted at its first argument.")
    else:
        lines.append(info.describe() + ".")
        env = syzkaller.environment(info)
        lines.append("The harness gives it: " + "; ".join(env.describe()) + ".")
        for name in info.fatal:
            f = syzkaller.FEATURE_NAMES[name]
            lines.append(f"It exits 1 without {f.title} ({', '.join('CONFIG_' + c for c in f.configs)}).")
    if syz is not None and config is not None:
        heads = ", ".join(syz.heads) or "(none)"
        lines.append(f"{FRAGMENT}: from {config.name} (kernel {syz.version or 'version unknown'}): {heads}.")
        lines += [f"Note: {n}." for n in syz.notes]
        summary = syzconfig.debian_summary(syz, debian)
        lines += [f"Debian: {s}." for s in summary] or ["Debian: no Debian kernel in the cache to compare with."]
    return lines


def _expect_lines(titles: tuple[str, ...]) -> list[str]:
    lines = ["expect:"]
    if titles:
        lines += ["  titles:", *(f"    - {_q(t)}" for t in titles)]
    else:
        lines.append("  any_crash: true  # no title expected: any crash report is a hit")
    lines += ['  reproduce: []  # kernel-name globs that must reproduce ("debian:6.1.0-*", "*/syzbot")',
              "  clean: []  # ... and that must stay clean"]
    return lines


def _variant_lines(syz: syzconfig.SyzConfig | None, image: bool, cmdline: tuple[str, ...]) -> list[str]:
    if syz is None:
        return []
    kconfig = ["lean", *(["filesystems"] if image else []), f"./{FRAGMENT}"]
    extra = [c for c in syz.cmdline if c not in cmdline]
    body = f"source: {_q(syzconfig.source_for(syz.version))}, kconfig: [{', '.join(kconfig)}]"
    if extra:
        body += f", cmdline: [{', '.join(_q(c) for c in extra)}]"
    return ["variants:", f"  {VARIANT}: {{{body}}}"]


def render(name: str, source: Path, info: SyzInfo | None, *, titles: tuple[str, ...], fs: str, kernel: str,
           timeout: int, syz: syzconfig.SyzConfig | None = None, config: Path | None = None,
           debian: list[tuple[str, Path]] = ()) -> str:
    """The repro.yaml text."""
    guest = adhoc.guest_options(info)
    summary = titles[0] if titles else f"{source.name}: {'syzkaller reproducer' if info else 'C reproducer'}, no title expected"
    links = (info.links if info else ()) or ()
    lines = [f"name: {name}", f"summary: {_q(summary)}", "description: |"]
    lines += [f"  {line}" for line in _description(source, info, fs, syz, list(debian), config)]
    lines += ["links:", *(f"  - {_q(u)}" for u in links)] if links else [
        "links: []  # the report: syzbot's bug page, the lore thread"]
    lines += ["source: repro.c", f"mode: {'syzkaller' if info else 'plain'}", f"timeout: {timeout}",
              "timeout_is: clean  # still running at its limit with a healthy kernel: CLEAN (hang: HANG)", "runs: 1"]
    if fs == "none":
        lines.append("image: none  # the reproducer brings its own filesystem images")
    else:
        size = adhoc.IMAGE_SIZES[fs]
        lines += [f"image: {{fs: {fs}, size: {size}}}", 'args: ["{mnt}"]']
    lines += [f"kernel: {_q(kernel)}", "guest:", f"  cpus: {guest.cpus}", f"  memory: {guest.memory}",
              f"  cmdline: [{', '.join(_q(c) for c in guest.cmdline)}]"]
    lines += _expect_lines(titles)
    lines += _variant_lines(syz, fs != "none", guest.cmdline)
    return "\n".join(lines) + "\n"


def scaffold(name: str, source: str | Path, *, titles: tuple[str, ...] | list[str] = (), config: str | Path | None = None,
             fs: str | None = None, root: Path | None = None, kernel: str | None = None, timeout: int | None = None,
             debian: list[tuple[str, Path]] | None = None) -> Path:
    """Write ``root/NAME/`` (repro.c, repro.yaml, syzbot.config) from a C file; return the folder."""
    check_name(name)
    source = Path(source).expanduser()
    if not source.is_file():
        raise UnknownName(f"--from {source}: no such file: give the path of the C reproducer")
    folder = (root or reproducers_dir()) / name
    if (folder / spec.SPEC_FILE).exists() or (folder / "repro.c").exists():
        raise SpecError(f"{folder} already holds a reproducer: pick another name or remove it")
    text = source.read_bytes()
    info = syzkaller.detect(text)
    fs = fs or adhoc.default_fs(info)
    adhoc.adhoc_image(fs, "--fs")  # validates the choice
    syz = None
    if config is not None:
        config = Path(config).expanduser()
        if not config.is_file():
            raise UnknownName(f"--config {config}: no such file: give a syzbot kernel .config")
        mounted = (*(info.filesystems if info else ()), *(() if fs == "none" else (fs,)))
        syz = syzconfig.extract(config.read_text(errors="replace"), mounted, loop=bool(info and info.loop))
    series = "debian:6.12" if syz and syzconfig.source_for(syz.version).startswith("debian-src:6.12") else "debian:6.1"
    body = render(name, source, info, titles=tuple(titles), fs=fs, kernel=kernel or series,
                  timeout=timeout or adhoc.default_timeout(info), syz=syz, config=config,
                  debian=syzconfig.debian_configs() if debian is None and syz else (debian or []))
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "repro.c").write_bytes(text)
    if syz is not None:
        (folder / FRAGMENT).write_text(syz.render(config.name))
    (folder / spec.SPEC_FILE).write_text(body)
    try:
        spec.load(str(folder))
    except SpecError:
        if created:
            shutil.rmtree(folder)
        raise
    return folder
