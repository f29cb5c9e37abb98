"""The one git helper: every git command the harness runs goes through ``run``.

``run(repo, *args)`` is ``git -C repo ARGS`` with stdout and stderr kept
apart (callers parse stdout), the command logged like ``harness.proc``'s
(``harness -v``) and, with ``log=``, appended to that file with its exit
code and output.  A failure raises ``GitError`` (``harness.errors``) with
git's own complaint on one line.  The rest are the questions the harness
asks a repository: ``rev_parse``, ``is_repo``, ``is_ancestor``,
``main_worktree``, ``commit_info``.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from pathlib import Path

from harness.errors import GitError, MissingTool

log = logging.getLogger("harness.cmd")


def run(repo: Path, *args: str, check: bool = True, log_path: Path | None = None) -> subprocess.CompletedProcess:
    """``git -C repo ARGS``; raises GitError when it fails and ``check``."""
    argv = ["git", "-C", str(repo), *args]
    log.info("$ %s", shlex.join(argv))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise MissingTool("git not found", hint="run `harness setup` to install the host packages") from None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as fh:
            fh.write(f"$ git {shlex.join(args)}  (exit {done.returncode})\n{done.stdout}{done.stderr}")
    if check and done.returncode != 0:
        raise GitError(f"git {shlex.join(args)} failed in {repo}: {complaint(done.stderr or done.stdout)}")
    return done


def complaint(output: str) -> str:
    """git's reason in one line: its first ``fatal:``/``error:`` line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "(no output)"


def is_repo(path: Path) -> bool:
    """Whether ``path`` is inside a git work tree or repository."""
    return path.is_dir() and run(path, "rev-parse", "--git-dir", check=False).returncode == 0


def rev_parse(repo: Path, rev: str) -> str:
    """The full commit id ``rev`` names in ``repo``; GitError when it names no commit."""
    done = run(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise GitError(f"{rev!r} is not a commit of {repo}")
    return done.stdout.strip()


def is_ancestor(repo: Path, old: str, new: str) -> bool:
    """Whether commit ``old`` is an ancestor of (or is) commit ``new``."""
    return run(repo, "merge-base", "--is-ancestor", old, new, check=False).returncode == 0


def main_worktree(path: Path) -> Path:
    """The repository's main work tree (where a linked worktree's objects live)."""
    common = Path(run(path, "rev-parse", "--path-format=absolute", "--git-common-dir").stdout.strip())
    return common.parent if common.name == ".git" else common


def commit_info(repo: Path, sha: str) -> dict:
    """``{commit, subject, author, date}`` of ``sha``, or {} when git cannot say."""
    done = run(repo, "log", "-1", "--format=%H%x00%s%x00%an <%ae>%x00%aI", sha, check=False)
    if done.returncode != 0 or "\0" not in done.stdout:
        return {}
    full, subject, author, date = done.stdout.rstrip("\n").split("\0")
    return {"commit": full, "subject": subject, "author": author, "date": date}
