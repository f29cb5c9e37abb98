"""harness.git: the one git helper (bisect and the git: kernel source both use it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness import git
from harness.errors import ExitCode, GitError, HarnessError, UnknownName
from harness.kernels.sources import GitSource

ENV = {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.invalid",
       "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **ENV}).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> tuple[Path, list[str]]:
    path = tmp_path / "linux"
    path.mkdir()
    _git(path, "init", "-q", "-b", "master")
    shas = []
    for i in range(3):
        (path / "file.c").write_text(f"/* change {i} */\n")
        _git(path, "add", "file.c")
        _git(path, "commit", "-q", "-m", f"c{i}: change {i}", "--author=Ada <ada@example.invalid>")
        shas.append(_git(path, "rev-parse", "HEAD"))
    return path, shas


def test_rev_parse_and_ancestry(repo):
    path, shas = repo
    assert git.rev_parse(path, "master") == shas[-1] and git.rev_parse(path, shas[0][:10]) == shas[0]
    assert git.is_ancestor(path, shas[0], shas[2]) and not git.is_ancestor(path, shas[2], shas[0])
    with pytest.raises(GitError, match="'nope' is not a commit of"):
        git.rev_parse(path, "nope")


def test_git_error_is_a_harness_error_on_one_line(repo, tmp_path):
    path, _ = repo
    with pytest.raises(GitError) as e:
        git.run(path, "checkout", "no-such-branch")
    assert isinstance(e.value, HarnessError) and e.value.exit_code == ExitCode.KERNEL
    line = e.value.one_line()
    assert line.startswith("git checkout no-such-branch failed in") and "no-such-branch" in line
    assert "\n" not in str(e.value)
    assert git.run(path, "checkout", "no-such-branch", check=False).returncode != 0


def test_complaint_is_gits_reason():
    assert git.complaint("hint: a\nerror: pathspec 'x' did not match\nhint: b\n") == "error: pathspec 'x' did not match"
    assert git.complaint("one\ntwo\n") == "two" and git.complaint("") == "(no output)"


def test_log_file_gets_command_exit_and_output(repo, tmp_path):
    path, shas = repo
    log = tmp_path / "logs" / "git.log"
    git.run(path, "rev-parse", "HEAD", log_path=log)
    git.run(path, "rev-parse", "--verify", "--quiet", "nope", check=False, log_path=log)
    text = log.read_text()
    assert f"$ git rev-parse HEAD  (exit 0)\n{shas[-1]}\n" in text and "(exit 1)" in text


def test_is_repo_main_worktree_commit_info(repo, tmp_path):
    path, shas = repo
    assert git.is_repo(path) and not git.is_repo(tmp_path) and not git.is_repo(tmp_path / "missing")
    linked = tmp_path / "wt"
    _git(path, "worktree", "add", "--detach", "--no-checkout", str(linked), shas[0])
    assert git.main_worktree(linked) == path.resolve() and git.main_worktree(path) == path.resolve()
    info = git.commit_info(path, shas[1])
    assert info["commit"] == shas[1] and info["subject"] == "c1: change 1" and info["author"] == "Ada <ada@example.invalid>"
    assert git.commit_info(path, "nope") == {}


def test_git_source_names_a_bad_revision(repo):
    path, shas = repo
    assert GitSource().tree(f"{path}@{shas[1][:12]}").identity == f"git:{shas[1]}"
    with pytest.raises(UnknownName, match="'nope' is not a commit"):
        GitSource().tree(f"{path}@nope")


def test_missing_git_is_a_missing_tool(repo, monkeypatch):
    path, _ = repo
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(HarnessError, match="git not found") as e:
        git.rev_parse(path, "HEAD")
    assert e.value.exit_code == ExitCode.MISSING_TOOL
