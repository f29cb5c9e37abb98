"""Reproducer specs: ``reproducers/NAME/repro.yaml`` -> frozen dataclasses."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import SpecError, UnknownName
from harness.images import Recipe, load_recipe, parse_recipe
from harness.paths import reproducers_dir
from harness.repro import faults
from harness.yamlio import Fields, load_mapping

SPEC_FILE = "repro.yaml"


@dataclass(frozen=True)
class GuestOptions:
    cpus: int = 2
    memory: str = "1G"
    cmdline: tuple[str, ...] = ("oops=panic",)
    sysctls: tuple[tuple[str, str], ...] = (("kernel.hung_task_timeout_secs", "20"),)
    boot_timeout: int = 240  # seconds from vng start to the guest's first step


@dataclass(frozen=True)
class Expectation:
    titles: tuple[str, ...] = ()
    reproduce: tuple[str, ...] = ()  # kernel-name globs that must reproduce
    clean: tuple[str, ...] = ()  # kernel-name globs that must stay clean
    # kernel-name globs where the bug must be gone but another report must show
    # (a fix that trades the BUG for, say, a lockdep splat: not clean either)
    other_crash: tuple[str, ...] = ()
    min_hits: int = 1
    data_loss: bool = False  # the bug shows as DATA_LOSS/FS_CORRUPT, not an oops

    def is_hit(self, outcome) -> bool:
        """Whether a run's outcome counts as reproducing this bug."""
        from harness.verdict import Outcome

        if outcome is Outcome.REPRODUCED:
            return True
        return self.data_loss and outcome in (Outcome.DATA_LOSS, Outcome.FS_CORRUPT)

    def for_kernel(self, kernel_name: str) -> str | None:
        """'reproduce', 'clean', 'other_crash' or None (no expectation) for a kernel name."""
        if any(fnmatch.fnmatchcase(kernel_name, g) for g in self.reproduce):
            return "reproduce"
        if any(fnmatch.fnmatchcase(kernel_name, g) for g in self.clean):
            return "clean"
        if any(fnmatch.fnmatchcase(kernel_name, g) for g in self.other_crash):
            return "other_crash"
        return None


@dataclass(frozen=True)
class VariantSpec:
    """A kernel this reproducer is built for: source + patch stack + kconfig fragments."""

    name: str
    source: str  # "debian-src:6.1.192", "git:/path@rev", "dir:/path"
    patches: tuple[tuple[Path, bool], ...] = ()  # (patch file, revert?) in order
    kconfig: tuple[str, ...] = ("lean", "filesystems", "faults")  # = kernels.build.DEFAULT_FRAGMENTS
    cmdline: tuple[str, ...] = ()  # extra boot options for this variant's guests

    @property
    def kernel_name(self) -> str:
        return f"{self.source}/{self.name}"

    def describe(self) -> list[str]:
        """The patch stack, one line a patch, in order."""
        return [f"{'revert' if rev else 'apply '} {p.name}" for p, rev in self.patches] or ["(no patches)"]


@dataclass(frozen=True)
class Spec:
    name: str
    folder: Path
    summary: str
    source: Path
    image: Recipe
    cflags: tuple[str, ...] = ("-O2", "-Wall", "-pthread")
    compiler: str = "gcc"  # run inside the guest
    args: tuple[str, ...] = ("{mnt}",)
    timeout: int = 120
    runs: int = 1
    kernel: str = "debian:6.1"
    guest: GuestOptions = field(default_factory=GuestOptions)
    expect: Expectation = field(default_factory=Expectation)
    variants: tuple[VariantSpec, ...] = ()
    source_text: bytes = field(default=b"", repr=False)  # the source as loaded: every run compiles this
    faults: object = None  # harness.repro.faults.FaultSpec: fault injection the harness arms in the guest

    def variant(self, name: str) -> VariantSpec:
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants) or "(none: this reproducer runs on prebuilt kernels)"
        raise UnknownName(f"Unknown variant {name!r} of {self.name}. Available: {known}")


def available() -> list[str]:
    root = reproducers_dir()
    return sorted(p.parent.name for p in root.glob(f"*/{SPEC_FILE}"))


def _guest(data: object, where: str) -> GuestOptions:
    f = Fields(data if isinstance(data, dict) else {}, f"{where}: guest", {"cpus", "memory", "cmdline", "sysctls", "boot_timeout"})
    d = GuestOptions()
    sysctls = f.get("sysctls", dict, dict(d.sysctls))
    return GuestOptions(
        cpus=f.get("cpus", int, d.cpus),
        memory=str(f.get("memory", (str, int), d.memory)),
        cmdline=f.strings("cmdline", d.cmdline),
        sysctls=tuple((str(k), str(v)) for k, v in sysctls.items()),
        boot_timeout=f.get("boot_timeout", int, d.boot_timeout),
    )


def _expect(data: object, where: str) -> Expectation:
    f = Fields(data if isinstance(data, dict) else {}, f"{where}: expect", {"titles", "reproduce", "clean", "other_crash", "min_hits", "data_loss"})
    exp = Expectation(
        titles=f.strings("titles"),
        reproduce=f.strings("reproduce"),
        clean=f.strings("clean"),
        other_crash=f.strings("other_crash"),
        min_hits=f.get("min_hits", int, 1),
        data_loss=f.get("data_loss", bool, False),
    )
    if exp.reproduce and not (exp.titles or exp.data_loss):
        raise SpecError(f"{where}: expect: lists kernels that must reproduce but no titles (or data_loss: true)")
    return exp


def _patch(item: object, folder: Path, where: str) -> tuple[Path, bool]:
    """``path``, ``revert:path`` or ``{path: ..., revert: true}``, relative to the folder."""
    if isinstance(item, dict):
        f = Fields(item, where, {"path", "revert"})
        rel, revert = f.get("path", str, required=True), f.get("revert", bool, False)
    elif isinstance(item, str):
        revert = item.startswith("revert:")
        rel = item.removeprefix("revert:")
    else:
        raise SpecError(f"{where}: expected a patch path, got {item!r}")
    path = (folder / rel).resolve()
    if not path.is_file():
        raise SpecError(f"{where}: patch {rel} does not exist in {folder}")
    return path, revert


def _variants(data: object, folder: Path, where: str) -> tuple[VariantSpec, ...]:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: variants: expected a mapping of name -> variant")
    out = []
    for name, body in data.items():
        w = f"{where}: variants: {name}"
        f = Fields(body if isinstance(body, dict) else {}, w, {"source", "patches", "kconfig", "cmdline", "description"})
        patches = f.get("patches", list, [])
        out.append(
            VariantSpec(
                name=str(name),
                source=f.get("source", str, required=True),
                patches=tuple(_patch(p, folder, f"{w}: patches[{i}]") for i, p in enumerate(patches)),
                kconfig=f.strings("kconfig", ("lean", "filesystems", "faults")),
                cmdline=f.strings("cmdline"),
            )
        )
    return tuple(out)


def parse(data: dict, folder: Path, where: str) -> Spec:
    f = Fields(
        data,
        where,
        {"name", "summary", "description", "source", "image", "cflags", "compiler", "args", "timeout", "runs", "kernel", "guest", "expect", "links", "variants", "faults"},
    )
    source = folder / f.get("source", str, "repro.c")
    if not source.exists():
        raise SpecError(f"{where}: source: {source.name} does not exist in {folder}")
    image = f.get("image", (str, dict), required=True)
    recipe = parse_recipe(image, f"{where}: image") if isinstance(image, dict) else load_recipe(image)
    runs = f.get("runs", int, 1)
    timeout = f.get("timeout", int, 120)
    if runs < 1 or timeout < 1:
        raise SpecError(f"{where}: runs and timeout must be positive")
    return Spec(
        name=f.get("name", str, folder.name),
        folder=folder,
        summary=f.get("summary", str, ""),
        source=source,
        image=recipe,
        cflags=f.strings("cflags", Spec.__dataclass_fields__["cflags"].default),
        compiler=f.get("compiler", str, "gcc"),
        args=f.strings("args", ("{mnt}",)),
        timeout=timeout,
        runs=runs,
        kernel=f.get("kernel", str, "debian:6.1"),
        guest=_guest(f.get("guest", dict, {}), where),
        expect=_expect(f.get("expect", dict, {}), where),
        variants=_variants(f.get("variants", dict, {}), folder, where),
        source_text=source.read_bytes(),
        faults=faults.parse(f.get("faults", dict, None), f"{where}: faults") if "faults" in data else None,
    )


def load(name: str) -> Spec:
    """A spec by reproducer name, or by the path of a folder or a repro.yaml."""
    path = Path(name)
    if path.is_dir():
        folder = path
    elif path.name == SPEC_FILE and path.exists():
        folder = path.parent
    else:
        folder = reproducers_dir() / name
    spec_file = folder / SPEC_FILE
    if not spec_file.exists():
        raise UnknownName(f"Unknown reproducer {name!r}. Available: {', '.join(available()) or '(none)'}")
    return parse(load_mapping(spec_file), folder.resolve(), str(spec_file))
