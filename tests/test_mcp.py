"""``harness mcp``: the MCP server, driven by the SDK's own stdio client (``mcp.client.stdio``).

Each test starts ``python -m harness mcp`` with its three folders in tmp and
talks to it as an agent's client would: the tools it lists, ``report`` on a
console log (the same JSON as ``harness report --json``), requests naming a
path outside its folders (``..``, absolute, a symlink out, a patch leaving
the tree) refused in one line, and cancellation stopping a CLI run's whole
process group.  The VM test runs ext4_inline through it to REPRODUCED.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from harness import mcpserver
from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
LOG = DATA / "oops" / "real-ext4-inline-debian-6.1.0-47.log"  # a real console log
TOOLS = {"list_kernels", "list_cached_kernels", "list_reproducers", "run_reproducer", "prove_patch", "read_result",
         "read_report", "report"}


@pytest.fixture
def folders(tmp_path) -> mcpserver.Folders:
    repros = tmp_path / "reproducers"
    shutil.copytree(ROOT / "reproducers" / "ext4_inline", repros / "ext4_inline")
    return mcpserver.Folders.make(repros, tmp_path / "results", tmp_path / "cache")


@asynccontextmanager
async def session(folders: mcpserver.Folders, *, cache: Path | None = None):
    params = StdioServerParameters(command=sys.executable, cwd=str(ROOT), args=[
        "-m", "harness", "mcp", "--reproducers", str(folders.reproducers), "--results", str(folders.results),
        "--cache", str(cache or folders.cache)], env={k: v for k, v in os.environ.items() if k != "HARNESS_RESULTS"})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        yield client


def call(folders, tool: str, arguments: dict, *, timeout: float = 120):
    async def go():
        async with session(folders) as client:
            with anyio.fail_after(timeout):
                return await client.call_tool(tool, arguments)

    return anyio.run(go)


def text(result) -> str:
    (content,) = result.content
    return content.text


def test_the_tools_it_lists(folders):
    async def go():
        async with session(folders) as client:
            return (await client.list_tools()).tools

    tools = {t.name: t for t in anyio.run(go)}
    assert set(tools) == TOOLS
    run = tools["run_reproducer"].input_schema
    assert run["required"] == ["reproducer"] and {"kernel", "patches", "runs", "base"} <= set(run["properties"])
    assert set(tools["prove_patch"].input_schema["required"]) == {"reproducer", "patches"}


def test_report_is_the_clis_json(folders):
    shutil.copy(LOG, folders.results / "console.log")
    result = call(folders, "report", {"path": "console.log"})  # relative: to the results folder
    assert not result.is_error, text(result)
    cli = subprocess.run([sys.executable, "-m", "harness", "report", str(LOG), "--json"], capture_output=True,
                         text=True, cwd=ROOT, check=True)
    assert json.loads(text(result)) == json.loads(cli.stdout)
    assert json.loads(cli.stdout)["title"] == "kernel BUG in ext4_write_inline_data"


def test_list_reproducers(folders):
    result = call(folders, "list_reproducers", {})
    (entry,) = [r for r in json.loads(text(result)) if r["name"] == "ext4_inline"]
    assert entry["titles"] and entry["kernel"].startswith("debian:")


REFUSED = [
    ("report", {"path": "/etc/passwd"}, r"console log '/etc/passwd' is outside them: the server reads only under"),
    ("report", {"path": "../../etc/passwd"}, r"a path with '\.\.' is refused"),
    ("report", {"path": "link-out"}, r"console log 'link-out' leaves them through a symlink"),
    ("read_result", {"folder": "/tmp"}, "folder '/tmp' is outside them"),
    ("read_report", {"folder": "nosuch"}, "folder 'nosuch': no such file or folder"),
    ("read_report", {"folder": "run-planted"}, r"report '.*run-planted/report.txt' leaves them through a symlink"),
    ("read_result", {"folder": "run-planted"}, r"result '.*run-planted/result.json' leaves them through a symlink"),
    ("run_reproducer", {"reproducer": "../ext4_inline"}, r"reproducer '\.\./ext4_inline': a name of letters"),
    ("run_reproducer", {"reproducer": "/tmp/repro.c"}, "not a path or an option"),
    ("run_reproducer", {"reproducer": "--results=/tmp"}, "not a path or an option"),
    ("run_reproducer", {"reproducer": "ext4_inline", "kernel": "dir:/usr/src/linux"}, "kernel '/usr/src/linux' is outside"),
    ("run_reproducer", {"reproducer": "ext4_inline", "kernel": "git:/tmp@HEAD"}, "kernel '/tmp' is outside"),
    ("run_reproducer", {"reproducer": "ext4_inline", "kernel": "--kernel"}, "give debian:NAME"),
    ("run_reproducer", {"reproducer": "ext4_inline", "base": "debian-src:6.1.192", "patches": ["/etc/passwd"]},
     "patch '/etc/passwd' is outside them"),
    ("run_reproducer", {"reproducer": "ext4_inline", "base": "debian-src:6.1.192", "patches": ["escape.patch"]},
     r"\.\./\.\./etc/shadow' leaves the kernel tree"),
    ("run_reproducer", {"reproducer": "ext4_inline", "patches": ["git:/usr@HEAD~1..HEAD"]}, "the tree '/usr' is outside"),
    ("run_reproducer", {"reproducer": "ext4_inline", "runs": 0}, "runs 0: give a whole number from 1"),
    ("prove_patch", {"reproducer": "ext4_inline", "patches": []}, "give at least one patch"),
    ("prove_patch", {"reproducer": "ext4_inline", "patches": ["revert:/etc/hosts"]}, "is outside them"),
    ("prove_patch", {"reproducer": "ext4_inline", "patches": ["escape.patch"], "confidence": 1.5},
     "confidence 1.5: give a number between 0 and 1"),
]


def test_requests_outside_its_folders_are_refused(folders):
    """One server, every refused request: each is one line saying why, and none starts a run."""
    outside = folders.results.parent / "secret.log"
    outside.write_text("not for agents\n")
    (folders.results / "link-out").symlink_to(outside)
    planted = folders.results / "run-planted"  # a run folder whose files point out of the folders
    planted.mkdir()
    (planted / "report.txt").symlink_to(outside)
    (planted / "result.json").symlink_to(outside)
    (folders.results / "escape.patch").write_text(
        "--- a/../../etc/shadow\n+++ b/../../etc/shadow\n@@ -1 +1 @@\n-root\n+toor\n")

    async def go():
        async with session(folders) as client:
            return [await client.call_tool(tool, arguments) for tool, arguments, _ in REFUSED]

    wrong = []
    for (tool, arguments, message), result in zip(REFUSED, anyio.run(go)):
        line = text(result)
        if not result.is_error or "\n" in line or not re.search(message, line):
            wrong.append(f"{tool} {arguments}: {line!r} (want {message!r})")
    assert not wrong, "\n".join(wrong)
    assert not any(folders.results.glob("2*")), "a refused request must not start a run"


def test_read_result_and_report_of_a_run_folder(folders):
    run = folders.results / "20261207-000000-ext4_inline-debian_6.1.0-47" / "run-01"
    run.mkdir(parents=True)
    (run.parent / "result.json").write_text('{"verdict": "REPRODUCED", "status": "done"}\n')
    (run / "report.txt").write_text("kernel BUG at fs/ext4/inline.c:236!\n")

    async def go():
        async with session(folders) as client:
            return (await client.call_tool("read_result", {"folder": str(run.parent)}),
                    await client.call_tool("read_report", {"folder": str(run.parent)}))

    result, reports = anyio.run(go)
    assert json.loads(text(result)) == {"verdict": "REPRODUCED", "status": "done"}
    assert json.loads(text(reports)) == {"run-01": "kernel BUG at fs/ext4/inline.c:236!\n"}


def test_a_cli_fault_is_its_one_line(folders):
    result = call(folders, "run_reproducer", {"reproducer": "nosuch"})
    assert result.is_error and "Unknown reproducer 'nosuch'" in text(result) and "\n" not in text(result)


def test_check_kernel_keeps_names_and_resolves_trees(folders):
    tree = folders.cache / "linux"
    tree.mkdir()
    assert mcpserver.check_kernel("debian:6.1.0-47", folders) == "debian:6.1.0-47"
    assert mcpserver.check_kernel("debian-src:6.1.192/debug", folders) == "debian-src:6.1.192/debug"
    assert mcpserver.check_kernel(f"git:{tree}@v6.1^", folders) == f"git:{tree}@v6.1^"
    with pytest.raises(HarnessError, match="is not a revision"):
        mcpserver.check_kernel(f"git:{tree}@--upload-pack=x", folders)


def test_command_lines(golden):
    golden("mcp/command-lines.txt", "\n".join([
        " ".join(mcpserver.repro_args("ext4_inline")),
        " ".join(mcpserver.repro_args("ext4_inline", kernel="debian:6.1.0-47", runs=10, timeout=60)),
        " ".join(mcpserver.repro_args("ext2_iomap_blkseq", variant="ext2-iomap", patches=("fix.patch", "revert:b.patch"))),
        " ".join(mcpserver.prove_args("ext4_inline", ("git:/src/linux@v6.1..fix",), base="debian-src:6.1.192",
                                      confidence=0.95, fraction=0.1, max_runs=40, budget_minutes=30)),
    ]) + "\n")


def test_cancelling_stops_the_whole_process_group(tmp_path):
    """What a cancelled run_reproducer does to its CLI: SIGTERM to its group, then SIGKILL; nothing left."""
    pids = tmp_path / "pids"
    script = ("import os, signal, subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
              "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
              f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
              "print('… started', file=sys.stderr, flush=True)\n"
              "time.sleep(600)\n")
    lines = []

    async def go():
        async def on_line(line):
            lines.append(line)

        with anyio.move_on_after(3) as scope:
            await mcpserver.run_cli([sys.executable, "-c", script], env=dict(os.environ), cwd=tmp_path,
                                    on_line=on_line, grace=1)
        assert scope.cancelled_caught, "run_cli returned: it should have been cancelled"

    anyio.run(go)
    assert lines == ["… started"]  # progress came through before the cancel
    leader, child = map(int, pids.read_text().split())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(leader) and not _alive(child), "the child ignoring SIGTERM survived the group's SIGKILL"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.vm
def test_vm_ext4_inline_through_mcp_reproduces(vm, tmp_path):
    """An agent's whole path: list, run ext4_inline on its default kernel, read the result and the report."""
    from harness.paths import cache_dir  # the real kernel cache: the Debian kernel is fetched once

    folders = mcpserver.Folders.make(ROOT / "reproducers", tmp_path / "results", cache_dir())
    progress: list[str] = []

    async def go():
        async with session(folders) as client:
            async def on_progress(done, total, message):
                progress.append(message or "")

            with anyio.fail_after(1500):
                run = await client.call_tool("run_reproducer", {"reproducer": "ext4_inline"},
                                             progress_callback=on_progress)
            assert not run.is_error, text(run)
            result = json.loads(text(run))
            folder = result["results"][0]["folder"]
            read = json.loads(text(await client.call_tool("read_result", {"folder": folder})))
            reports = json.loads(text(await client.call_tool("read_report", {"folder": folder})))
            parsed = json.loads(text(await client.call_tool("report", {"path": f"{folder}/console.log"})))
            return result, read, reports, parsed

    result, read, reports, parsed = anyio.run(go)
    assert result["verdict"] == "REPRODUCED" and result["title"] == "kernel BUG in ext4_write_inline_data", result
    assert read["verdict"] == "REPRODUCED" and read["status"] == "done"
    assert "kernel BUG" in next(iter(reports.values()))
    assert parsed["title"] == "kernel BUG in ext4_write_inline_data"
    assert progress, "no progress reached the client"


@pytest.mark.vm
def test_vm_cancelling_a_run_stops_its_guest(vm, tmp_path):
    """The client cancels run_reproducer once the run has started: the CLI stops (SIGTERM: it kills its
    guest and records the run as interrupted) and no QEMU of that run is left."""
    from harness.paths import cache_dir  # the real kernel cache: the Debian kernel is fetched once

    folders = mcpserver.Folders.make(ROOT / "reproducers", tmp_path / "results", cache_dir())
    booted = anyio.Event()

    async def go():
        async with session(folders) as client:
            async def on_progress(done, total, message):
                if "boot" in (message or "").lower() or "run 1" in (message or ""):
                    booted.set()

            async with anyio.create_task_group() as tg:
                async def run():
                    await client.call_tool("run_reproducer", {"reproducer": "ext4_inline", "runs": 50},
                                           progress_callback=on_progress)

                tg.start_soon(run)
                with anyio.fail_after(900):
                    await booted.wait()
                await anyio.sleep(5)
                tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled for the abandoned call
            await anyio.sleep(mcpserver.STOP_GRACE + 10)

    anyio.run(go)
    left = subprocess.run(["pgrep", "-f", f"qemu-system.*{folders.results}"], capture_output=True, text=True)
    assert not left.stdout.strip() or _only_zombies(left.stdout), f"QEMU left running: {left.stdout}"
    (record,) = folders.results.glob("*/result.json")
    assert json.loads(record.read_text())["interrupted"] is True


def _only_zombies(pids: str) -> bool:
    return not any(_alive(int(p)) for p in pids.split())


def test_default_reproducers_folder_never_makes_one_where_the_client_started(tmp_path, monkeypatch):
    from harness.cli.mcp import default_reproducers
    from harness.paths import builtin_dir

    monkeypatch.delenv("HARNESS_REPRODUCERS", raising=False)
    assert default_reproducers(tmp_path) == builtin_dir("reproducers")
    assert not (tmp_path / "reproducers").exists()
    (tmp_path / "reproducers").mkdir()
    assert default_reproducers(tmp_path) == tmp_path / "reproducers"
    monkeypatch.setenv("HARNESS_REPRODUCERS", f"{tmp_path / 'mine'}{os.pathsep}{tmp_path / 'other'}")
    assert default_reproducers(tmp_path) == tmp_path / "mine"


def test_builtin_reproducers_patches_are_readable_from_a_users_own_folder(folders):
    """A user's own reproducers folder beside the built-in ones: a shipped fix is a valid --patch, read only;
    a file beside the built-in folder is not."""
    fix = ROOT / "reproducers/ext2_iomap_blkseq/patches/0002-ext2-validate-cached-iomap-with-i_blkseq.patch"
    assert folders.builtin is not None and folders.reproducers != folders.builtin
    assert mcpserver.check_patch(str(fix), folders) == str(fix.resolve())
    with pytest.raises(mcpserver.Refused, match="is outside them"):
        mcpserver.check_patch(str(ROOT / "pyproject.toml"), folders)
