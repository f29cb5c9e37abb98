"""Reproducer specs: ``reproducers/NAME/repro.yaml`` -> frozen dataclasses."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from harness.errors import SpecError, UnknownName
from harness.fstests import config as fstests_config
from harness.fstests.config import Selection
from harness.images import Recipe as ImageRecipe
from harness.images import load_recipe, parse_recipe
from harness.kernels.build import Variant
from harness.kernels.patches import PatchOp
from harness.kernels.recipe import Recipe
from harness.paths import data_file, data_files, reproducers_dir
from harness.repro import faults, syzkaller
from harness.repro.syzkaller import GuestEnvironment, SyzInfo
from harness.yamlio import Fields, load_mapping

SPEC_FILE = "repro.yaml"
MODES = ("plain", "syzkaller")  # syzkaller: the environment syzkaller's executor gives (repro/syzkaller.py)
TIMEOUT_IS = ("clean", "hang")  # what reaching the time limit with a healthy kernel is
EXIT_STATUS = ("error", "verdict")  # what the run step's exit status is (verdict: 1 = the bug showed)
SECONDS = "{seconds}"  # in args: the race's length, which a proof's trials shorten (``race:`` is the full one)


@dataclass(frozen=True)
class GuestOptions:
    cpus: int = 2
    memory: str = "1G"
    cmdline: tuple[str, ...] = ("oops=panic",)
    sysctls: tuple[tuple[str, str], ...] = (("kernel.hung_task_timeout_secs", "20"),)
    boot_timeout: int = 240  # seconds from vng start to the guest's first step
    fresh_boot: bool = False  # every run needs a real boot of its own (backend auto then picks vng)
    boots: int = 1  # separate saved boots the snapshot backend spreads the runs over (prove asks for 3)
    vmcore: bool = False  # dump the guest's memory at the first crash report (harness.guest.snapshot.dump)


class ExpectKind(StrEnum):
    """What a spec expects of a kernel (``expect.reproduce|clean|other_crash`` globs)."""

    REPRODUCE = "reproduce"  # the bug must show (min_hits hits)
    CLEAN = "clean"  # every run must be clean
    OTHER_CRASH = "other_crash"  # the bug gone, another report in its place (a trade, not a fix)


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
    any_crash: bool = False  # no title expected: any crash report is a hit (a bare C file without --expect)
    failure: bool = False  # an fstests spec: the test failing (TEST_FAILED) is the bug showing

    def is_hit(self, outcome) -> bool:
        """Whether a run's outcome counts as reproducing this bug."""
        from harness.verdict import Outcome  # verdict pulls in the guest protocol: specs load without it

        if outcome is Outcome.REPRODUCED or (self.any_crash and outcome is Outcome.OTHER_CRASH):
            return True
        if self.failure and outcome is Outcome.TEST_FAILED:
            return True
        return self.data_loss and outcome in (Outcome.DATA_LOSS, Outcome.FS_CORRUPT)

    def for_kernel(self, kernel_name: str) -> ExpectKind | None:
        """What a kernel must show (None: no expectation), from the first list whose glob matches its name."""
        for kind, globs in ((ExpectKind.REPRODUCE, self.reproduce), (ExpectKind.CLEAN, self.clean),
                            (ExpectKind.OTHER_CRASH, self.other_crash)):
            if any(fnmatch.fnmatchcase(kernel_name, g) for g in globs):
                return kind
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

    @property
    def build(self) -> Variant:
        """The build recipe (``harness.kernels.build.Variant``) of this variant."""
        return Variant(source=self.source, name=self.name, patches=tuple(PatchOp(p, rev) for p, rev in self.patches),
                       fragments=self.kconfig)

    def recipe(self) -> Recipe:
        return Recipe(self.build, self.cmdline)


@dataclass(frozen=True)
class Spec:
    name: str
    folder: Path
    summary: str
    source: Path
    image: ImageRecipe | None  # None (`image: none`): no harness image, the reproducer brings its own filesystem
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
    mode: str = "plain"  # "syzkaller": the guest gives it syzkaller's environment (see `environment`)
    timeout_is: str = "clean"  # at its time limit with a healthy kernel: "clean" (CLEAN) or "hang" (HANG)
    exit_status: str = "error"  # "verdict": the reproducer exits 1 when the bug showed, 0 when not
    syzkaller: SyzInfo | None = None  # what the source says, in syzkaller mode
    links: tuple[str, ...] = ()
    fstests: Selection | None = None  # an fstests test (or a selection) instead of a C source (mode "fstests")
    race: float | None = None  # the race's full length in seconds, what "{seconds}" in args stands for by default

    @property
    def timed_race(self) -> bool:
        """The race's length is an argument (``{seconds}`` in args): a trial shortens the race itself."""
        return any(SECONDS in a for a in self.args)

    @property
    def full_trial(self) -> float:
        """The seconds one run races as written: ``race:``, else the run step's time limit."""
        return self.race if self.timed_race and self.race is not None else float(self.timeout)

    def trial_args(self, seconds: float | None = None) -> tuple[str, ...]:
        """``args`` with ``{seconds}`` replaced by the trial's length (the full race when None)."""
        if not self.timed_race:
            return self.args
        value = f"{(self.full_trial if seconds is None else seconds):g}"
        return tuple(a.replace(SECONDS, value) for a in self.args)

    def trial_timeout(self, seconds: float | None, timeout: int) -> int:
        """The run step's time limit for a trial of ``seconds``: the same slack past the race as the
        spec's own (``timeout - race``); a C file without ``{seconds}`` is stopped at the trial's end."""
        if seconds is None:
            return timeout
        if self.timed_race:
            return max(1, math.ceil(timeout - self.full_trial + seconds))
        return max(1, math.ceil(seconds))

    @property
    def environment(self) -> GuestEnvironment | None:
        """What the guest sets up around the run (syzkaller mode), or None."""
        return syzkaller.environment(self.syzkaller) if self.mode == "syzkaller" else None

    def recipe(self, *, variant: str | None = None, base: str | None = None) -> Recipe:
        """The kernel a fix goes on: ``variant`` of the spec, or the ``base`` source with the default
        fragments; neither: the spec's only variant, or its kernel when that is a source."""
        if variant and base:
            raise SpecError("--variant and --base both name the kernel to patch: give one")
        if variant:
            return self.variant(variant).recipe()
        if base:
            return Recipe.of_source(base)
        if len(self.variants) == 1:
            return self.variants[0].recipe()
        if self.variants:
            names = ", ".join(v.name for v in self.variants)
            raise UnknownName(f"{self.name} has the variants {names}: say which one the patches go on "
                              "(--variant V), or give --base SOURCE")
        try:
            return Recipe.of_source(self.kernel)
        except SpecError:
            raise SpecError(f"{self.name} runs on {self.kernel}, a prebuilt kernel: give --base SOURCE "
                            "(e.g. debian-src:6.1.192) to build one the patches can go on") from None

    def variant(self, name: str) -> VariantSpec:
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants) or "(none: this reproducer runs on prebuilt kernels)"
        raise UnknownName(f"Unknown variant {name!r} of {self.name}. Available: {known}")


def available() -> list[str]:
    """Reproducer names over the search path (harness.paths): a user's own beside the built-in ones."""
    return [p.parent.name for p in data_files("reproducers", f"*/{SPEC_FILE}")]


def _guest(data: object, where: str) -> GuestOptions:
    f = Fields(data if isinstance(data, dict) else {}, f"{where}: guest",
               {"cpus", "memory", "cmdline", "sysctls", "boot_timeout", "fresh_boot", "boots", "vmcore"})
    d = GuestOptions()
    sysctls = f.get("sysctls", dict, dict(d.sysctls))
    return GuestOptions(
        cpus=f.get("cpus", int, d.cpus),
        memory=str(f.get("memory", (str, int), d.memory)),
        cmdline=f.strings("cmdline", d.cmdline),
        sysctls=tuple((str(k), str(v)) for k, v in sysctls.items()),
        boot_timeout=f.get("boot_timeout", int, d.boot_timeout),
        fresh_boot=f.get("fresh_boot", bool, d.fresh_boot),
        boots=_boots(f.get("boots", int, d.boots), where),
        vmcore=f.get("vmcore", bool, d.vmcore),
    )


def _boots(value: int, where: str) -> int:
    if value < 1:
        raise SpecError(f"{where}: guest: boots: {value}: give at least 1 (separate saved boots the runs spread over)")
    return value


def _expect(data: object, where: str) -> Expectation:
    f = Fields(data if isinstance(data, dict) else {}, f"{where}: expect",
               {"titles", "reproduce", "clean", "other_crash", "min_hits", "data_loss", "any_crash", "failure"})
    exp = Expectation(
        titles=f.strings("titles"),
        reproduce=f.strings("reproduce"),
        clean=f.strings("clean"),
        other_crash=f.strings("other_crash"),
        min_hits=f.get("min_hits", int, 1),
        data_loss=f.get("data_loss", bool, False),
        any_crash=f.get("any_crash", bool, False),
        failure=f.get("failure", bool, False),
    )
    if exp.any_crash and exp.titles:
        raise SpecError(f"{where}: expect: any_crash: true counts every crash report: drop the titles or any_crash")
    if exp.reproduce and not (exp.titles or exp.data_loss or exp.any_crash or exp.failure):
        raise SpecError(f"{where}: expect: lists kernels that must reproduce but no titles "
                        "(or data_loss: true, any_crash: true, or failure: true for an fstests spec)")
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


def _fragment(name: str, folder: Path, where: str) -> str:
    """A fragment name (``lean``) as is; a path (``./syzbot.config``) made absolute from the folder."""
    if "/" not in name and not name.endswith(".config"):
        return name
    path = (folder / Path(name).expanduser()).resolve()
    if not path.is_file():
        raise SpecError(f"{where}: fragment {name} does not exist in {folder}")
    return str(path)


def _mode(f: Fields, text: bytes, where: str) -> tuple[str, SyzInfo | None]:
    """``mode:`` as written, else detected from the source; the syzkaller facts in syzkaller mode."""
    mode = f.get("mode", str, None)
    if mode is not None and mode not in MODES:
        raise SpecError(f"{where}: mode: {mode!r}: use syzkaller or plain (or leave it out: detected from the source)")
    info = None if mode == "plain" else syzkaller.detect(text, assume=mode == "syzkaller")
    return ("syzkaller" if info else "plain"), info


def _image(f: Fields, where: str) -> ImageRecipe | None:
    image = f.get("image", (str, dict), required=True)
    if image == "none":
        return None
    return parse_recipe(image, f"{where}: image") if isinstance(image, dict) else load_recipe(image)


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
                kconfig=tuple(_fragment(k, folder, f"{w}: kconfig")
                              for k in f.strings("kconfig", ("lean", "filesystems", "faults"))),
                cmdline=f.strings("cmdline"),
            )
        )
    return tuple(out)


def parse(data: dict, folder: Path, where: str) -> Spec:
    f = Fields(
        data,
        where,
        {"name", "summary", "description", "source", "image", "cflags", "compiler", "args", "timeout", "runs", "kernel",
         "guest", "expect", "links", "variants", "faults", "mode", "timeout_is", "exit_status", "fstests", "race"},
    )
    selection = fstests_config.parse_selection(data["fstests"], where) if "fstests" in data else None
    if selection is not None and ("source" in data or "image" in data):
        raise SpecError(f"{where}: an fstests spec names tests, not a source or an image (fstests makes its disks)")
    source = folder / f.get("source", str, "repro.c")
    if selection is None and not source.exists():
        raise SpecError(f"{where}: source: {source.name} does not exist in {folder}")
    recipe = _image(f, where) if selection is None else None
    runs = f.get("runs", int, 1)
    timeout = f.get("timeout", int, 120)
    if runs < 1 or timeout < 1:
        raise SpecError(f"{where}: runs and timeout must be positive")
    text = source.read_bytes() if selection is None else b""
    mode, info = _mode(f, text, where) if selection is None else ("fstests", None)
    timeout_is = f.get("timeout_is", str, "clean")
    exit_status = f.get("exit_status", str, "error")
    if exit_status not in EXIT_STATUS:
        raise SpecError(f"{where}: exit_status: {exit_status!r}: use verdict (exit 1: the bug showed, 0: it did "
                        "not) or error (the default: non-zero is a failed run)")
    if timeout_is not in TIMEOUT_IS:
        raise SpecError(f"{where}: timeout_is: {timeout_is!r}: use clean (the limit is a normal end) or hang")
    args = f.strings("args", ("{mnt}",) if recipe else ())
    if recipe is None and any("{mnt}" in a or "{dev}" in a for a in args):
        raise SpecError(f"{where}: args: {{mnt}} and {{dev}} need a harness image, and image is none: drop them")
    race = _race(f, args, timeout, where)
    guest = _guest(f.get("guest", dict, {}), where)
    if mode == "syzkaller" and "cmdline" not in (data.get("guest") or {}):
        guest = replace(guest, cmdline=tuple(dict.fromkeys((*guest.cmdline, *syzkaller.BOOT_OPTIONS))))
    return Spec(
        name=f.get("name", str, folder.name),
        folder=folder,
        summary=f.get("summary", str, ""),
        source=source,
        image=recipe,
        cflags=f.strings("cflags", Spec.__dataclass_fields__["cflags"].default),
        compiler=f.get("compiler", str, "gcc"),
        args=args,
        timeout=timeout,
        runs=runs,
        kernel=f.get("kernel", str, "debian:6.1"),
        guest=guest,
        expect=_expect(f.get("expect", dict, {}), where),
        variants=_variants(f.get("variants", dict, {}), folder, where),
        source_text=text,
        faults=faults.parse(f.get("faults", dict, None), f"{where}: faults") if "faults" in data else None,
        mode=mode,
        timeout_is=timeout_is,
        exit_status=exit_status,
        syzkaller=info,
        links=f.strings("links"),
        fstests=selection,
        race=race,
    )


def _race(f: Fields, args: tuple[str, ...], timeout: int, where: str) -> float | None:
    """``race:`` (seconds), required by and only with a ``{seconds}`` placeholder in args."""
    placeholder = any(SECONDS in a for a in args)
    if "race" not in f.data:
        if placeholder:
            raise SpecError(f"{where}: args has {SECONDS} but no race: say the race's full length (race: 30)")
        return None
    if not placeholder:
        raise SpecError(f"{where}: race: needs {SECONDS} in args, where the reproducer takes its race's length")
    race = f.get("race", float, 0.0)
    if isinstance(race, bool) or not 0 < race < timeout:
        raise SpecError(f"{where}: race: {race!r}: give the race's seconds, above 0 and below timeout ({timeout})")
    return float(race)


def load(name: str) -> Spec:
    """A spec by reproducer name, or by the path of a folder or a repro.yaml."""
    path = Path(name)
    if path.is_dir():
        folder = path
    elif path.name == SPEC_FILE and path.exists():
        folder = path.parent
    elif ".." in path.parts:  # a name stays inside the reproducers folder (a path is given as a path)
        raise UnknownName(f"Unknown reproducer {name!r}: a reproducer name has no '..' (give the path of its folder "
                          f"to run one from elsewhere). Available: {', '.join(available()) or '(none)'}")
    else:
        found = data_file("reproducers", f"{name}/{SPEC_FILE}")  # the first folder of the search path holding it
        folder = found.parent if found else reproducers_dir() / name
    spec_file = folder / SPEC_FILE
    if not spec_file.exists():
        raise UnknownName(f"Unknown reproducer {name!r}. Available: {', '.join(available()) or '(none)'}")
    return parse(load_mapping(spec_file), folder.resolve(), str(spec_file))
