"""``harness new NAME --from FILE.c`` (or ``--from-syzbot ID``): a reproducer folder from a C file as it was published.

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

``from_syzbot`` takes the C file, the ``.config`` and the title from a
syzbot bug (``harness.repro.syzbot``), writes the same folder plus
``syzbot.json`` (the bug's JSON as served), and says which kernels here can
run it (the Debian prebuilt kernels of the crash's series, the Debian
source its variant builds, the exact commit from a clone).

The result loads with ``harness.repro.spec.load`` before it is returned, so
it is ready for ``harness repro NAME``, ``matrix``, ``bisect`` and ``prove``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from harness import kernels
from harness.errors import HarnessError, SpecError, UnknownName
from harness.kernels import syzconfig
from harness.paths import reproducers_dir
from harness.repro import adhoc, spec, syzbot, syzkaller
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


def free_folder(name: str, root: Path | None) -> Path:
    """``root/NAME`` when no reproducer is there yet."""
    folder = (root or reproducers_dir()) / name
    if (folder / spec.SPEC_FILE).exists() or (folder / "repro.c").exists():
        raise SpecError(f"{folder} already holds a reproducer: pick another name or remove it")
    return folder


def _description(source: Path, info: SyzInfo | None, fs: str, syz: syzconfig.SyzConfig | None,
                 debian: list[tuple[str, Path]], config: Path | None, origin: str | None = None) -> list[str]:
    lines = [f"Scaffolded by `harness new` from {origin or source.name}."]
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
           debian: list[tuple[str, Path]] = (), origin: str | None = None, links: tuple[str, ...] = (),
           notes: tuple[str, ...] = ()) -> str:
    """The repro.yaml text (``origin``, ``links``, ``notes``: where it came from, more links, more description)."""
    guest = adhoc.guest_options(info)
    summary = titles[0] if titles else f"{source.name}: {'syzkaller reproducer' if info else 'C reproducer'}, no title expected"
    links = tuple(dict.fromkeys((*links, *((info.links if info else ()) or ()))))
    lines = [f"name: {name}", f"summary: {_q(summary)}", "description: |"]
    lines += [f"  {line}" for line in [*_description(source, info, fs, syz, list(debian), config, origin), *notes]]
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
             debian: list[tuple[str, Path]] | None = None, origin: str | None = None, links: tuple[str, ...] = (),
             notes: tuple[str, ...] = (), extra: dict[str, bytes] | None = None) -> Path:
    """Write ``root/NAME/`` (repro.c, repro.yaml, syzbot.config) from a C file; return the folder.

    ``origin``, ``links`` and ``notes`` go into repro.yaml (``render``); ``extra`` maps more file names
    of the folder to their bytes (``from_syzbot``: the bug's JSON)."""
    check_name(name)
    source = Path(source).expanduser()
    if not source.is_file():
        raise UnknownName(f"--from {source}: no such file: give the path of the C reproducer")
    folder = free_folder(name, root)
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
                  debian=syzconfig.debian_configs() if debian is None and syz else (debian or []),
                  origin=origin, links=links, notes=notes)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "repro.c").write_bytes(text)
    if syz is not None:
        (folder / FRAGMENT).write_text(syz.render(config.name))
    for extra_name, data in (extra or {}).items():
        (folder / extra_name).write_bytes(data)
    (folder / spec.SPEC_FILE).write_text(body)
    try:
        spec.load(str(folder))
    except SpecError:
        if created:
            shutil.rmtree(folder)
        raise
    return folder


JSON_FILE = "syzbot.json"


def offered_kernels() -> dict[str, list[str]]:
    """The Debian kernels and sources the apt sources offer (empty lists where apt cannot say)."""
    offered = {}
    for kind in ("debian", "debian-src"):
        try:
            offered[kind] = kernels.SOURCES.select(kind).available()
        except (HarnessError, OSError):  # no apt here: nothing to name
            offered[kind] = []
    return offered


def from_syzbot(name: str, arg: str, *, titles: tuple[str, ...] | list[str] = (), fs: str | None = None,
                root: Path | None = None, kernel: str | None = None, timeout: int | None = None,
                debian: list[tuple[str, Path]] | None = None,
                offered: dict[str, list[str]] | None = None) -> tuple[Path, list[str]]:
    """Write ``root/NAME/`` from the syzbot bug ``arg`` names; return it and the lines saying which kernels run it."""
    check_name(name)
    free_folder(name, root)  # before any download
    bug = syzbot.fetch(arg)
    version = syzconfig.extract(bug.config).version if bug.config else None
    info = syzkaller.detect(bug.source)
    needs = tuple(f"{f.title} ({', '.join('CONFIG_' + c for c in f.configs)})"
                  for f in (syzkaller.FEATURE_NAMES[n] for n in (info.fatal if info else ())))
    lines = syzbot.runnable(bug, version, syzconfig.source_for(version),
                            offered_kernels() if offered is None else offered, needs)
    links = (bug.ref.page_url, *([bug.commit_link] if bug.commit_link else []))
    origin = f"syzbot bug {bug.ref.key}={bug.ref.value} ({bug.title})"
    with tempfile.TemporaryDirectory(prefix="harness-syzbot-") as tmp:
        source = Path(tmp) / "repro.c"
        source.write_bytes(bug.source)
        config = None
        if bug.config:
            config = Path(tmp) / f"{bug.ref.value}.config"
            config.write_text(bug.config)
        folder = scaffold(name, source, titles=titles or [bug.crash.title or bug.title], config=config, fs=fs,
                          root=root, kernel=kernel, timeout=timeout, debian=debian, origin=origin, links=links,
                          notes=tuple(lines), extra={JSON_FILE: (json.dumps(bug.data, indent=1) + "\n").encode()})
    return folder, lines
