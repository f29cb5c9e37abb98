"""Fault injection set up by the harness in the guest, so any reproducer can use it.

A spec's ``faults:`` block names the kernel's fault-injection attributes to
arm (their debugfs knobs under ``/sys/kernel/debug/NAME/``) and which tasks
fail (``make-it-fail``, by the tasks' ``comm``)::

    faults:
      fail_usercopy: {probability: 100, interval: 1, times: -1, verbose: 0}
      tasks: ["writer*"]   # comm globs of the tasks to mark
      fail_nth: 3          # optional: also arm /proc/TID/fail-nth (one-shot) on each

With ``task-filter`` on (the default) only marked tasks fail.  The guest
runs, before the reproducer:

1. a ``faults`` step: mount debugfs if needed, write every knob
   (probability last, so a half-configured attribute never fires), print
   what took;
2. a marker in the background: every 50 ms until it has marked a task,
   every 0.5 s after that, it writes 1 to ``/proc/PID/task/TID/make-it-fail``
   of every task whose comm matches a glob and is not marked yet.

``make-it-fail`` is copied into threads and children at fork/clone, so
the race-free pattern is one long-lived task with a matching name that
creates the tasks that must fail (they inherit the mark at birth); tasks
marked only by the poller run unmarked for up to one poll period.

After the run the marker is stopped, each attribute's ``probability`` reset
to 0 and its remaining ``times`` printed (initial minus remaining = failures
injected, when ``times`` was finite).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from harness.errors import SpecError
from harness.yamlio import Fields

DEBUGFS = "/sys/kernel/debug"
PROC = "/proc"
STEP = "faults"  # the guest step that configures the knobs (an infra step)
FAST_POLL = 0.05  # marker poll period until the first task is marked
SLOW_POLL = 0.5  # and after (later tasks usually inherit the mark)


@dataclass(frozen=True)
class Kind:
    """One fault-injection attribute: its kconfig option and its own knobs."""

    config: str
    knobs: frozenset[str] = frozenset()


KINDS: dict[str, Kind] = {
    "fail_usercopy": Kind("FAULT_INJECTION_USERCOPY"),
    "failslab": Kind("FAILSLAB", frozenset({"ignore-gfp-wait", "cache-filter"})),
    "fail_page_alloc": Kind("FAIL_PAGE_ALLOC", frozenset({"ignore-gfp-wait", "ignore-gfp-highmem", "min-order"})),
    "fail_futex": Kind("FAIL_FUTEX", frozenset({"ignore-private"})),
}
COMMON_CONFIG = ("FAULT_INJECTION", "FAULT_INJECTION_DEBUG_FS")

_GLOB_RE = re.compile(r"^[A-Za-z0-9_.:/*?\[\]-]{1,40}$")
_VALUE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


@dataclass(frozen=True)
class Injector:
    """One armed attribute (``/sys/kernel/debug/<name>/``)."""

    name: str
    probability: int = 100  # percent
    interval: int = 1
    times: int = -1  # -1: no limit
    space: int = 0
    verbose: int = 0  # 0: quiet; 1: one line per failure; 2: + stack (the console parser may see it)
    task_filter: bool = True
    knobs: tuple[tuple[str, str], ...] = ()  # kind-specific files, e.g. (ignore-gfp-wait, N)

    def settings(self) -> tuple[tuple[str, str], ...]:
        """(file, value) in the order written; probability comes last."""
        return (
            ("interval", str(self.interval)),
            ("times", str(self.times)),
            ("space", str(self.space)),
            ("verbose", str(self.verbose)),
            ("task-filter", "Y" if self.task_filter else "N"),
            *self.knobs,
            ("probability", str(self.probability)),
        )


@dataclass(frozen=True)
class FaultSpec:
    injectors: tuple[Injector, ...]
    tasks: tuple[str, ...] = ()  # comm globs of the tasks marked make-it-fail
    fail_nth: int | None = None

    @property
    def configs(self) -> tuple[str, ...]:
        """Kernel options this needs (without CONFIG_)."""
        return (*COMMON_CONFIG, *(KINDS[i.name].config for i in self.injectors))

    def to_dict(self) -> dict:
        return {
            "injectors": {i.name: dict(i.settings()) for i in self.injectors},
            "tasks": list(self.tasks),
            "fail_nth": self.fail_nth,
        }


# --- parsing -----------------------------------------------------------------------------


def _int(f: Fields, key: str, default: int, lo: int, hi: int | None = None) -> int:
    value = f.get(key, int, default)
    if value < lo or (hi is not None and value > hi):
        raise SpecError(f"{f.where}: {key}: {value} out of range ({lo}..{hi if hi is not None else ''})")
    return value


def _injector(name: str, data: object, where: str) -> Injector:
    kind = KINDS[name]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping of knobs, got {type(data).__name__} {data!r}")
    base = {"probability", "interval", "times", "space", "verbose", "task_filter"}
    f = Fields(data, where, base | set(kind.knobs))
    knobs = []
    for key in sorted(kind.knobs & set(data)):
        value = data[key]
        if isinstance(value, bool):
            value = "Y" if value else "N"
        if not isinstance(value, (int, str)) or not _VALUE_RE.match(str(value)):
            raise SpecError(f"{where}: {key}: expected a number, Y/N or a plain word, got {value!r}")
        knobs.append((key, str(value)))
    return Injector(
        name=name,
        probability=_int(f, "probability", 100, 0, 100),
        interval=_int(f, "interval", 1, 1),
        times=_int(f, "times", -1, -1),
        space=_int(f, "space", 0, 0),
        verbose=_int(f, "verbose", 0, 0, 2),
        task_filter=f.get("task_filter", bool, True),
        knobs=tuple(knobs),
    )


def parse(data: object, where: str) -> FaultSpec | None:
    """A spec's ``faults:`` block (None or empty: no fault injection)."""
    if data is None or data == {}:
        return None
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping (fail_usercopy: {{...}}, tasks: [...]), got {data!r}")
    f = Fields(data, where, {*KINDS, "tasks", "fail_nth"})
    injectors = tuple(_injector(name, data[name], f"{where}: {name}") for name in KINDS if name in data)
    tasks = f.strings("tasks")
    for glob in tasks:
        if not _GLOB_RE.match(glob):
            raise SpecError(f"{where}: tasks: {glob!r}: a comm glob of letters, digits, _.:/- and * ? [ ]")
    fail_nth = f.get("fail_nth", int, None)
    if fail_nth is not None and fail_nth < 1:
        raise SpecError(f"{where}: fail_nth: {fail_nth}: must be 1 or more (the Nth fault site fails)")
    if not injectors and fail_nth is None:
        raise SpecError(f"{where}: names no fault to inject (one of {', '.join(KINDS)}, or fail_nth)")
    if (fail_nth is not None or any(i.task_filter for i in injectors)) and not tasks:
        raise SpecError(f"{where}: tasks: required: with task_filter (the default) or fail_nth only marked tasks fail")
    return FaultSpec(injectors, tasks, fail_nth)


# --- the kernel --------------------------------------------------------------------------


def unsupported(fault: FaultSpec | None, kernel) -> str | None:
    """Why ``kernel`` cannot run ``fault`` (a missing option), or None.

    A kernel whose config is unknown passes: the guest's faults step will
    say so if the knobs are missing.
    """
    if fault is None or not kernel.config or not kernel.config.exists():
        return None
    missing = [opt for opt in fault.configs if kernel.config_value(opt) != "y"]
    if not missing:
        return None
    return (
        f"kernel {kernel.name} lacks {', '.join('CONFIG_' + m for m in missing)} "
        f"(build a variant with the 'faults' kconfig fragment)"
    )


def check_kernel(fault: FaultSpec | None, kernel, where: str = "faults") -> None:
    """Raise SpecError when ``kernel`` cannot run ``fault``."""
    why = unsupported(fault, kernel)
    if why:
        raise SpecError(f"{where}: {why}")


# --- guest shell lines ---------------------------------------------------------------------


def _case_pattern(tasks: tuple[str, ...]) -> str:
    # globs are validated to a safe charset; unquoted so * ? [ ] stay globs
    return "|".join(tasks)


def _setup_function(fault: FaultSpec, debugfs: str, proc: str) -> list[str]:
    """harness_faults_setup(): mount debugfs, write every knob (probability last), say what took."""
    q = shlex.quote
    lines = [
        "harness_faults_setup() {",
        "  local d",
        f"  grep -qs ' '{q(debugfs)}' debugfs ' {q(proc + '/mounts')} || mount -t debugfs debugfs {q(debugfs)} "
        "|| { echo 'harness-faults: cannot mount debugfs'; return 1; }",
    ]
    for inj in fault.injectors:
        d = f"{debugfs}/{inj.name}"
        lines += [
            f"  d={q(d)}",
            f"  [ -d \"$d\" ] || {{ echo \"harness-faults: $d missing: kernel without "
            f"CONFIG_{KINDS[inj.name].config} and CONFIG_FAULT_INJECTION_DEBUG_FS\"; return 1; }}",
            "  echo 0 > \"$d/probability\" || return 1",
        ]
        for knob, value in inj.settings():
            lines.append(
                f"  echo {q(value)} > \"$d/{knob}\" || {{ echo \"harness-faults: cannot write {value} to $d/{knob}\"; return 1; }}"
            )
        shown = " ".join(f"{k}=$(cat \"$d/{k}\")" for k, _ in inj.settings())
        lines.append(f"  echo \"harness-faults: {inj.name} {shown}\"")
    if fault.tasks:
        lines.append(f"  [ -e {q(proc + '/self/make-it-fail')} ] || {{ echo 'harness-faults: no make-it-fail "
                     "(kernel without CONFIG_FAULT_INJECTION)'; return 1; }")
        lines.append(f"  echo \"harness-faults: marking tasks named {' '.join(fault.tasks)}\"")
    return [*lines, "}"]


def _marker_function(fault: FaultSpec, proc: str) -> list[str]:
    """harness_faults_mark(): until killed, mark the tasks whose comm matches make-it-fail (and fail-nth)."""
    nth = (
        f"      echo {fault.fail_nth} > \"$d/fail-nth\" 2>/dev/null || echo \"harness-faults: cannot arm $d/fail-nth\""
        if fault.fail_nth is not None
        else "      :"
    )
    return [
        "harness_faults_mark() {  # until killed: mark matching tasks make-it-fail",
        f"  local c d n v wait={FAST_POLL} fd",
        "  exec {fd}<> <(:) 2>/dev/null || fd=",
        "  while :; do",
        f"    for c in {shlex.quote(proc)}/[0-9]*/task/[0-9]*/comm; do",
        "      read -r n < \"$c\" 2>/dev/null || continue",
        f"      case \"$n\" in {_case_pattern(fault.tasks)}) ;; *) continue ;; esac",
        "      d=${c%/comm}",
        "      read -r v < \"$d/make-it-fail\" 2>/dev/null || continue",
        "      [ \"$v\" = 1 ] && continue",
        "      echo 1 > \"$d/make-it-fail\" 2>/dev/null || continue",
        nth,
        f"      echo \"harness-faults: marked ${{d#{proc}/}} ($n)\"",
        f"      wait={SLOW_POLL}",
        "    done",
        "    if [ -n \"$fd\" ]; then read -r -t \"$wait\" -u \"$fd\" _; else sleep \"$wait\"; fi",
        "  done",
        "}",
    ]


def setup_lines(fault: FaultSpec | None, *, debugfs: str = DEBUGFS, proc: str = PROC) -> tuple[str, ...]:
    """Shell lines for GuestPlan.pre_run: configure, then start the marker."""
    if fault is None:
        return ()
    lines = ["# --- fault injection (harness/repro/faults.py) ---", *_setup_function(fault, debugfs, proc)]
    if fault.tasks:
        lines += _marker_function(fault, proc)
    lines.append(f"step {STEP} 0 harness_faults_setup || exit 0")
    if fault.tasks:
        lines.append("harness_faults_mark & HARNESS_FAULTS_MARKER=$!")
    return tuple(lines)


def teardown_lines(fault: FaultSpec | None, *, debugfs: str = DEBUGFS) -> tuple[str, ...]:
    """Shell lines for GuestPlan.post_run: stop the marker, disarm, report."""
    if fault is None:
        return ()
    lines = ["# --- fault injection off ---"]
    if fault.tasks:
        lines.append('[ -n "$HARNESS_FAULTS_MARKER" ] && { kill "$HARNESS_FAULTS_MARKER"; wait "$HARNESS_FAULTS_MARKER"; } 2>/dev/null')
    for inj in fault.injectors:
        d = shlex.quote(f"{debugfs}/{inj.name}")
        lines.append(
            f"echo 0 > {d}/probability 2>/dev/null; "
            f"echo \"harness-faults: {inj.name} off; times left $(cat {d}/times 2>/dev/null) (set {inj.times})\""
        )
    return tuple(lines)
