"""A run's guest memory (``--vmcore``) opened with drgn: the task that hit the report, its stack, and
any expression over the program.

The core is the ELF file QEMU's ``dump-guest-memory`` wrote into the run
folder (harness.guest.snapshot.dump).  Its debug info is the same as a report's file:line
lookup uses (harness.report.symbolize): a build's vmlinux and modules, or a
Debian image's -dbg package, of which only vmlinux and the modules the
console lists (``Modules linked in:``) are extracted.  The crashed task is
drgn's ``crashed_thread()`` (the CPU that panicked); a guest that did not
panic (a WARNING) has none, and then it is the CPU whose current task's
stack holds the report's frames.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import drgn
from drgn.helpers.linux.cpumask import for_each_online_cpu
from drgn.helpers.linux.sched import cpu_curr

from harness.errors import HarnessError
from harness.kernels import Kernel, debian
from harness.report.symbolize import FRAME_RE, has_dwarf

CORE_NAME = "vmcore"  # harness.guest.snapshot.dump writes it under this name
_MODULES = re.compile(r"Modules linked in:(.*)")


class VmcoreError(HarnessError):
    pass


@dataclass(frozen=True)
class Crashed:
    """The task that hit the report: its comm, pid, CPU, how it was found, and its stack."""

    comm: str
    pid: int
    cpu: int | None
    how: str
    trace: str
    task: object = field(repr=False, compare=False)  # drgn's task_struct Object


def find_core(folder: Path) -> Path:
    """The vmcore of a run folder (``run-NN``), or of the first run of a results folder that has one."""
    folder = Path(folder)
    if (folder / CORE_NAME).is_file():
        return folder / CORE_NAME
    found = sorted(folder.glob(f"run-*/{CORE_NAME}"))
    if found:
        return found[0]
    raise VmcoreError(f"{folder}: no {CORE_NAME} in it or its run-*/ folders (run with --vmcore, on the snapshot "
                      "backend, a reproducer that crashes)")


def kernel_name(core: Path) -> str:
    """The kernel a run's core came from, from the results folder's result.json."""
    for record in (core.parent.parent / "result.json", core.parent / "result.json"):
        if record.is_file():
            kernel = json.loads(record.read_text()).get("kernel")
            if isinstance(kernel, dict) and kernel.get("name"):
                return kernel["name"]
    raise VmcoreError(f"{core}: no result.json above it names its kernel (give --kernel NAME)")


def console_modules(console: str) -> list[str]:
    """The modules the console names: ``Modules linked in:`` and the frames' ``[ext4]``."""
    names: dict[str, None] = {}
    if m := _MODULES.search(console):
        for word in m.group(1).split():
            if re.fullmatch(r"[A-Za-z0-9_-]+", word):
                names[word] = None
    for line in console.splitlines():
        if (f := FRAME_RE.search(line)) and f.group(5):
            names[f.group(5)] = None
    return list(names)


def console_frames(console: str) -> list[str]:
    """The functions of the console's frames (``ext4_write_inline_data+0xed/0x100``: ext4_write_inline_data)."""
    return list(dict.fromkeys(m.group(1) for line in console.splitlines() if (m := FRAME_RE.search(line))))


def debug_files(kernel: Kernel, console: str, *, progress=None) -> tuple[list[Path], str]:
    """vmlinux and module files with DWARF for ``kernel`` (a -dbg package fetched on first need), and a note."""
    names = console_modules(console)
    if kernel.kind == "debian":
        found = debian.debug_files(kernel, names, fetch=True, progress=progress)
        vmlinux, modules, note = found.vmlinux, list(found.modules.values()), found.note
    else:
        vmlinux, modules, note = kernel.vmlinux, list(debian.module_files(kernel, names).values()), ""
    if vmlinux is None or not vmlinux.exists() or not has_dwarf(vmlinux):
        raise VmcoreError(f"{kernel.name} has no vmlinux with debug info ({note or 'a build without CONFIG_DEBUG_INFO'}"
                          "): drgn cannot read the core's structures without it (build with kconfigs/symbols.config)")
    return [vmlinux, *(m for m in modules if has_dwarf(m))], note


def open_core(core: Path, files: list[Path]) -> drgn.Program:
    """drgn's program over ``core`` with the debug info in ``files`` (modules it has no file for: left out)."""
    prog = drgn.Program()
    try:
        prog.set_core_dump(str(core))
    except Exception as exc:  # noqa: BLE001 (drgn raises plain Exception for a core its readers refuse)
        raise VmcoreError(f"{core}: drgn cannot open it ({exc})") from None
    with contextlib.suppress(drgn.MissingDebugInfoError):  # modules without a file: frames without lines
        prog.load_debug_info([str(p) for p in files])
    return prog


def crashed(prog: drgn.Program, frames: list[str]) -> Crashed:
    """The task that hit the report (see the module doc)."""
    try:
        thread = prog.crashed_thread()
        task = thread.object
        cpu = int(task.thread_info.cpu) if prog.type("struct thread_info").has_member("cpu") else None
        return _crashed(prog, task, cpu, "the CPU that panicked")
    except (LookupError, ValueError, drgn.FaultError):
        pass
    wanted = set(frames)
    for cpu in for_each_online_cpu(prog):
        task = cpu_curr(prog, cpu)
        if wanted & {f.name for f in prog.stack_trace(task) if f.name}:
            return _crashed(prog, task, cpu, f"the task on CPU {cpu} whose stack holds the report's frames")
    raise VmcoreError("no CPU's task has the report's frames on its stack and no CPU panicked: "
                      "look with --eval (e.g. `[cpu_curr(prog, c).comm for c in for_each_online_cpu(prog)]`)")


def _crashed(prog: drgn.Program, task, cpu: int | None, how: str) -> Crashed:
    comm = task.comm.string_().decode(errors="replace")
    return Crashed(comm, int(task.pid), cpu, how, str(prog.stack_trace(task)), task)


def evaluate(prog: drgn.Program, expression: str, task) -> object:
    """``--eval``: a Python expression over ``prog``, ``task`` (the crashed task) and drgn's Linux helpers."""
    import drgn.helpers.linux as helpers  # the names drgn's own CLI gives an expression, only when asked for

    scope = {name: getattr(helpers, name) for name in helpers.__all__}
    scope.update(prog=prog, task=task, drgn=drgn)
    try:
        return eval(expression, scope)  # noqa: S307 (the user's own expression, as drgn's CLI takes it)
    except Exception as exc:  # noqa: BLE001 (any error in the user's expression is one line)
        raise VmcoreError(f"--eval {expression!r}: {type(exc).__name__}: {exc}") from None
