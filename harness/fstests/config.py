"""fstests' configuration for one guest: pure functions, golden-tested.

The guest gets two virtio-blk disks, found by their serials (``harness-test``,
``harness-scratch``) without udev: TEST_DEV holds a filesystem made on the host (a
cached image recipe, copied fresh for every run, like every harness image), SCRATCH_DEV
is blank (fstests mkfs's it itself).  ``local.config`` is a shell file ``./check``
sources (``HOST_OPTIONS=<file> ./check ...``); RESULT_BASE points into the run folder,
which the guest shares read-write with the host.

The host expands a selection (tests, ``-g``/``-x`` groups, exclusions) to the exact list
itself, from the build's ``tests/*/group.list``, and passes it with ``--exact-order``:
the host then knows which tests a crash kept from running.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from harness import images
from harness.errors import SpecError, UnknownName

FILESYSTEMS = ("xfs", "ext4", "ext2")
TEST_SERIAL = "harness-test"
SCRATCH_SERIAL = "harness-scratch"
TEST_DIR = "/tmp/fstests/test"
SCRATCH_MNT = "/tmp/fstests/scratch"
GUEST_TREE = "/tmp/fstests/tree"  # where the guest unpacks the build (its /tmp is writable)
# kvm-xfstests' size; the images are sparse, so an untouched gigabyte costs nothing.
DISK_SIZE = 5 << 30
GENERIC = "generic"
# check's xunit report (-R xunit) is rewritten before every test, which costs ~20-45 s a test
# under TCG (a hundred programs started per rewrite; measured: 1-5 s of check overhead a test
# without it).  Off by default: check's output and the results folder say the same
# (results.py reads result.xml when it is there).
REPORTS = ("xunit", "xunit-quiet")

_TEST = re.compile(r"^[a-z0-9]+/[0-9]{3}(-[A-Za-z0-9-]+)?$")
_TEST_GLOB = re.compile(r"^[a-z0-9]+/[0-9-]*[*?\[][0-9*?\[\]!-]*$")  # check takes globs (xfs/*) in its list
_GROUP = re.compile(r"^([a-z0-9]+/)?[A-Za-z0-9_-]+$")
_GROUP_LINE = re.compile(r"^([0-9]{3}(?:-[A-Za-z0-9-]+)?)((?:\s+\S+)*)\s*$")


@dataclass(frozen=True)
class Profile:
    """How fstests runs on one filesystem."""

    fs: str
    tests_dir: str  # tests/<dir> holding the filesystem's own tests (ext2 -> ext4, as check does)
    image_mkfs: tuple[str, ...] = ()  # TEST_DEV's mkfs options on the host (besides MKFS_OPTIONS)
    mkfs_options: str = ""  # MKFS_OPTIONS ("": fstests' default for the fs)
    mount_options: str = ""  # MOUNT_OPTIONS ("": fstests' default)
    test_size: int = DISK_SIZE
    scratch_size: int = DISK_SIZE


# TEST_DEV's inode tables (and journal) are zeroed at mkfs on the host, so that ext4's
# lazyinit thread does not zero them in the guest (costly under TCG); copies stay sparse.
PROFILES = {
    "xfs": Profile("xfs", "xfs"),
    "ext4": Profile("ext4", "ext4", ("-E", "lazy_itable_init=0,lazy_journal_init=0")),
    "ext2": Profile("ext2", "ext4", ("-E", "lazy_itable_init=0")),
}


@dataclass(frozen=True)
class Selection:
    """What to run: tests (globs allowed), groups, exclusions, on which filesystem, with which settings.

    A reproducer spec's ``fstests:`` key (``fstests: generic/346`` or a mapping) and
    ``harness fstests`` both make one."""

    fs: str = "xfs"
    tests: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    exclude_groups: tuple[str, ...] = ()
    exclude_tests: tuple[str, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()  # more local.config lines (TIME_FACTOR, LOAD_FACTOR...)

    def __post_init__(self) -> None:
        profile(self.fs)
        for name in (*self.tests, *self.exclude_tests):
            validate_test(name, globs=True)
        for name in (*self.groups, *self.exclude_groups):
            validate_group(name)
        if not self.tests and not self.groups:
            raise SpecError("fstests: name tests (generic/001) or groups (-g quick)")

    def describe(self) -> str:
        bits = [*self.tests, *(f"-g {g}" for g in self.groups), *(f"-x {g}" for g in self.exclude_groups),
                *(f"-e {e}" for e in self.exclude_tests)]
        return f"{' '.join(bits)} on {self.fs}"


def parse_selection(data: object, where: str) -> Selection:
    """A spec's ``fstests:``: one test name, a list of them, or a mapping (tests, groups, exclude, fs, settings)."""
    if isinstance(data, str):
        data = {"tests": [data]}
    elif isinstance(data, list):
        data = {"tests": data}
    if not isinstance(data, dict):
        raise SpecError(f"{where}: fstests: expected a test name, a list of them, or a mapping")
    allowed = {"tests", "groups", "exclude_groups", "exclude_tests", "fs", "settings"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SpecError(f"{where}: fstests: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")

    def names(key: str) -> tuple[str, ...]:
        value = data.get(key) or []
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SpecError(f"{where}: fstests: {key}: expected a list of names")
        return tuple(value)

    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise SpecError(f"{where}: fstests: settings: expected a mapping of NAME: value")
    try:
        return Selection(fs=str(data.get("fs", "xfs")), tests=names("tests"), groups=names("groups"),
                         exclude_groups=names("exclude_groups"), exclude_tests=names("exclude_tests"),
                         settings=tuple((str(k), str(v)) for k, v in settings.items()))
    except (SpecError, UnknownName) as exc:
        raise SpecError(f"{where}: {exc}") from None


def profile(fs: str, *, mkfs_options: str | None = None, mount_options: str | None = None) -> Profile:
    """The profile for ``fs``, with MKFS_OPTIONS / MOUNT_OPTIONS overridden when given."""
    if fs not in PROFILES:
        raise UnknownName(f"fstests filesystem {fs!r}: expected one of {', '.join(FILESYSTEMS)}")
    chosen = PROFILES[fs]
    if mkfs_options is not None:
        chosen = replace(chosen, mkfs_options=mkfs_options)
    if mount_options is not None:
        chosen = replace(chosen, mount_options=mount_options)
    return chosen


def local_config(
    prof: Profile,
    result_base: str,
    *,
    extra: Mapping[str, str] | None = None,
    test_dir: str = TEST_DIR,
    scratch_mnt: str = SCRATCH_MNT,
) -> str:
    """fstests' local.config for ``prof``; RESULT_BASE is the guest's path of the results folder.

    ``extra``: more settings (TIME_FACTOR, LOAD_FACTOR, KEEP_DMESG...).  The mount points
    are created when the file is sourced (the guest's /tmp is writable, its / is not).
    """
    values = {
        "FSTYP": prof.fs,
        "TEST_DEV": f"$(_harness_disk {TEST_SERIAL})",
        "TEST_DIR": test_dir,
        "SCRATCH_DEV": f"$(_harness_disk {SCRATCH_SERIAL})",
        "SCRATCH_MNT": scratch_mnt,
        "RESULT_BASE": result_base,
    }
    if prof.mkfs_options:
        values["MKFS_OPTIONS"] = prof.mkfs_options
    if prof.mount_options:
        values["MOUNT_OPTIONS"] = prof.mount_options
    for name, value in (extra or {}).items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            raise SpecError(f"fstests setting {name!r}: names are upper-case shell variables (e.g. TIME_FACTOR)")
        values[name] = value
    lines = [
        f"# fstests local.config for {prof.fs} (written by kernel-repro-harness; do not edit)",
        "# ./check sources it (HOST_OPTIONS=this file).  The disks are found by their virtio",
        "# serial, without udev: fstests compares TEST_DEV with /proc/mounts, so it must be",
        "# the /dev/vdX node itself, not a /dev/disk/by-id link.",
        "_harness_disk() {",
        "\tlocal b",
        "\tfor b in /sys/block/vd*; do",
        '\t\t[ -r "$b/serial" ] && [ "$(<"$b/serial")" = "$1" ] && { echo "/dev/${b##*/}"; return 0; }',
        "\tdone",
        '\techo "/dev/disk/by-id/virtio-$1"',
        "}",
    ]
    lines += [f"export {name}={_shell_value(value)}" for name, value in values.items()]
    lines.append('mkdir -p "$TEST_DIR" "$SCRATCH_MNT"')
    return "\n".join(lines) + "\n"


def _shell_value(value: str) -> str:
    if value.startswith("$(_harness_disk "):
        return value
    return shlex.quote(value)


def check_argv(
    tests: Iterable[str] = (),
    *,
    groups: Iterable[str] = (),
    exclude_groups: Iterable[str] = (),
    exclude_tests: Iterable[str] = (),
    exact_order: bool = True,
    report: str | None = None,
) -> list[str]:
    """``./check``'s argv (run from the build's top).  Pass what ``select_tests`` expanded;
    ``report``: "xunit" (result.xml, see REPORTS) or None."""
    tests, groups, xgroups, xtests = (list(x) for x in (tests, groups, exclude_groups, exclude_tests))
    for name in tests:
        validate_test(name, globs=True)
    for name in xtests:  # check's -e matches names exactly
        validate_test(name)
    for name in (*groups, *xgroups):
        validate_group(name)
    if not tests and not groups:
        raise SpecError("fstests: name tests (generic/001) or groups (-g quick)")
    if report is not None and report not in REPORTS:
        raise SpecError(f"fstests report {report!r}: expected one of {', '.join(REPORTS)}")
    argv = ["./check", *(["-R", report] if report else [])]
    if exact_order:
        argv.append("--exact-order")
    for flag, names in (("-g", groups), ("-x", xgroups)):
        if names:
            argv += [flag, ",".join(names)]
    if xtests:
        argv += ["-e", ",".join(xtests)]
    return argv + tests


def check_command(archive: str, local_config_path: str, argv: Sequence[str], *, tree: str = GUEST_TREE) -> str:
    """The guest's shell line: unpack the build's archive into ``tree`` (tmpfs), run ``argv``
    (check_argv's) there with this local.config.

    check lists tests/*/* as it starts: 110 s over the guest's 9p root under TCG, under 1 s
    in tmpfs after a 9 s unpack.  check writes only under RESULT_BASE, /tmp and the mounts.
    """
    q = shlex.quote
    return (f"mkdir -p {q(tree)} && tar -xf {q(archive)} -C {q(tree)} && cd {q(tree)} && "
            f"HOST_OPTIONS={q(local_config_path)} {shlex.join(argv)}")


def validate_test(name: str, *, globs: bool = False) -> str:
    if _TEST.match(name) or (globs and _TEST_GLOB.match(name)):
        return name
    raise SpecError(f"fstests test {name!r}: expected DIR/NNN, e.g. generic/001 or xfs/123")


def validate_group(name: str) -> str:
    if _GROUP.match(name):
        return name
    raise SpecError(f"fstests group {name!r}: expected a name such as quick or xfs/quick")


def parse_groups(text: str, tests_dir: str) -> dict[str, frozenset[str]]:
    """``tests/<dir>/group.list`` -> {"generic/001": {"auto", "quick", ...}}."""
    index = {}
    for line in text.splitlines():
        m = _GROUP_LINE.match(line.split("#", 1)[0].strip())
        if m:
            index[f"{tests_dir}/{m.group(1)}"] = frozenset(m.group(2).split())
    return index


def select_tests(
    index: Mapping[str, frozenset[str]],
    prof: Profile,
    *,
    tests: Iterable[str] = (),
    groups: Iterable[str] = (),
    exclude_groups: Iterable[str] = (),
    exclude_tests: Iterable[str] = (),
) -> list[str]:
    """The tests ``./check`` would run for this selection, in its order (as check's -g/-x/-e do)."""
    chosen: set[str] = set()
    for pattern in tests:
        matched = [t for t in index if fnmatch.fnmatchcase(t, validate_test(pattern, globs=True))]
        if not matched:
            raise UnknownName(f"fstests test {pattern} is not in this fstests tree")
        chosen.update(matched)
    for group in groups:
        members = _group_members(index, prof, group)
        if not members:
            raise UnknownName(f'fstests group "{group}" is empty or not defined for {prof.fs}')
        chosen.update(members)
    for group in exclude_groups:
        chosen -= _group_members(index, prof, group)
    for pattern in exclude_tests:
        chosen = {t for t in chosen if not fnmatch.fnmatchcase(t, validate_test(pattern, globs=True))}
    return sorted(chosen)


def _group_members(index: Mapping[str, frozenset[str]], prof: Profile, group: str) -> set[str]:
    validate_group(group)
    where, _, name = group.rpartition("/")
    dirs = (where,) if where else (GENERIC, prof.tests_dir)
    return {t for t, g in index.items() if t.split("/")[0] in dirs and (name == "all" or name in g)}


def test_image(prof: Profile) -> images.Recipe:
    """The image recipe for TEST_DEV: fstests expects it to hold an FSTYP filesystem already."""
    mkfs = [*prof.image_mkfs, *shlex.split(prof.mkfs_options)]
    if prof.fs == "xfs":
        mkfs = [o for o in mkfs if o != "-f"]  # the recipe's mkfs.xfs forces already
    data = {
        "name": f"fstests-{prof.fs}-test",
        "fs": prof.fs,
        "size": f"{prof.test_size >> 20}M",
        "mkfs_options": mkfs,
        "mount_options": prof.mount_options,
        "description": f"fstests TEST_DEV for {prof.fs}",
    }
    return images.parse_recipe(data, f"fstests {prof.fs} TEST_DEV")
