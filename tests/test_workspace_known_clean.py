"""A checkout the run left clean stays known as clean across the agents of one process, and only there.

Each agent opens its own Workspace on the run's worktree. What one of them left
clean at a commit is not reset and cleaned again by the next (a `git reset
--hard` and a `git clean -ffdx` re-check every file of a large checkout). The
knowledge is dropped the moment anything writes: a Workspace that announces a
write, a git command that moves HEAD or rewrites the index, a new process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from agent_pipelines.engine.gitenv import git_env
from agent_pipelines.engine.tree import changed_paths
from agent_pipelines.engine.workspace import Workspace
from tests.conftest import git, make_repo

FILES = {"Dockerfile": "FROM alpine:3.20\n", "app/main.py": "print(1)\n", ".gitignore": "*.log\n"}


@contextmanager
def git_commands(trace: Path):
    """The git commands run inside the block (their argv after `git`), from git's own trace; not the ones git
    runs itself (`git worktree add` checks out with a `git reset --hard` of its own)."""
    trace.unlink(missing_ok=True)
    run: list[list[str]] = []
    os.environ["GIT_TRACE2_EVENT"] = str(trace)
    try:
        yield run
    finally:
        del os.environ["GIT_TRACE2_EVENT"]
    if trace.exists():
        for line in trace.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "start" and "/" not in event["sid"]:
                argv = event["argv"][1:]
                while argv and argv[0] == "-C":  # `git -C <path> ...`
                    argv = argv[2:]
                run.append(argv)


def _thorough(commands: list[list[str]]) -> list[list[str]]:
    return [c for c in commands if c[:2] == ["reset", "--hard"] or c[:1] == ["clean"]]


def test_a_worktree_just_made_and_left_clean_is_neither_scrubbed_nor_reset_again(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    base = git(repo, "rev-parse", "HEAD")
    with git_commands(tmp_path / "trace.json") as commands:
        with Workspace.create(repo, "run1", base) as made:
            path, branch = made.path, made.branch
        with Workspace.open(repo, path, branch, base=base) as opened:  # the runner's "scrub before any agent"
            assert opened.head() == base
        for _agent in ("analyst", "implementer", "reviewer"):  # each agent opens its own Workspace
            with Workspace(path, branch) as ws:
                ws.reset_to(base)
    assert _thorough(commands) == [], "the checkout git just made is not reset and cleaned again"
    assert git(path, "status", "--porcelain", "--untracked-files=all", "--ignored=matching") == ""


def test_only_the_first_open_after_create_skips_the_scrub(tmp_path):
    """A later invocation in the same process (a server's resume) scrubs: a file written there by hand since,
    which no git command saw, is gone."""
    repo = make_repo(tmp_path / "repo", FILES)
    base = git(repo, "rev-parse", "HEAD")
    with Workspace.create(repo, "run1", base) as made:
        path, branch = made.path, made.branch
    Workspace.open(repo, path, branch, base=base).close()
    (path / "Dockerfile").write_text("FROM scratch\n")
    (path / "by-hand.txt").write_text("x\n")
    with git_commands(tmp_path / "trace.json") as commands:
        Workspace.open(repo, path, branch).close()
    assert len(_thorough(commands)) == 2
    assert not (path / "by-hand.txt").exists() and (path / "Dockerfile").read_text() == FILES["Dockerfile"]


def test_an_announced_write_makes_another_workspace_reset_thoroughly(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    base = git(repo, "rev-parse", "HEAD")
    with Workspace.create(repo, "run1", base) as fixer, Workspace(fixer.path, fixer.branch) as reviewer:
        fixer.writing()  # a fix is about to write
        (fixer.path / "Dockerfile").write_text("FROM alpine:3.21\n")
        (fixer.path / "debug.log").write_text("ignored, untracked\n")
        with git_commands(tmp_path / "trace.json") as commands:
            reviewer.reset_to(base)
        assert len(_thorough(commands)) == 2
        assert (reviewer.path / "Dockerfile").read_text() == FILES["Dockerfile"]
        assert not (reviewer.path / "debug.log").exists()
        assert git(reviewer.path, "status", "--porcelain", "--untracked-files=all", "--ignored=matching") == ""


def test_a_file_staged_or_committed_outside_the_run_makes_the_next_reset_thorough(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    base = git(repo, "rev-parse", "HEAD")
    with Workspace.create(repo, "run1", base) as ws:
        path = ws.path
    # Someone else, with plain git in the run's worktree: a new file staged (the index is rewritten) ...
    (path / "notes.txt").write_text("mine\n")
    git(path, "add", "notes.txt")
    with Workspace(path, "pipeline/run1") as ws, git_commands(tmp_path / "trace.json") as commands:
        ws.reset_to(base)
    assert len(_thorough(commands)) == 2
    assert not (path / "notes.txt").exists()
    # ... or a commit made there by hand (HEAD moves; the checkout is clean at it, but not known to be).
    (path / "notes.txt").write_text("mine\n")
    git(path, "add", "notes.txt")
    git(path, "commit", "--quiet", "-m", "by hand")
    with Workspace(path, "pipeline/run1") as ws, git_commands(tmp_path / "trace2.json") as commands:
        ws.reset_to(base)
    assert len(_thorough(commands)) == 2
    assert not (path / "notes.txt").exists()
    assert git(path, "status", "--porcelain", "--untracked-files=all", "--ignored=matching") == ""


def test_a_new_process_never_trusts_what_another_process_knew(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    base = git(repo, "rev-parse", "HEAD")
    with Workspace.create(repo, "run1", base) as ws:  # known clean in this process
        path = ws.path
    (path / "left-by-a-crash.txt").write_text("half-done\n")  # not announced: as a killed fix leaves it
    opened = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from agent_pipelines.engine.workspace import Workspace\n"
            "Workspace.open(Path(sys.argv[1]), Path(sys.argv[2]), 'pipeline/run1').close()",
            str(repo),
            str(path),
        ],
        capture_output=True,
        text=True,
        env=git_env(),
    )
    assert opened.returncode == 0, opened.stderr
    assert not (path / "left-by-a-crash.txt").exists(), "a new process scrubs the worktree"
    assert git(path, "status", "--porcelain", "--untracked-files=all", "--ignored=matching") == ""


def test_a_commit_of_exactly_what_a_fix_wrote_keeps_the_checkout_known_to_the_next_agent(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    base = git(repo, "rev-parse", "HEAD")
    with Workspace.create(repo, "run1", base) as ws:
        ws.writing()
        (ws.path / "Dockerfile").write_text("FROM alpine:3.21\n")
        (ws.path / "build.log").write_text("forced in: the .gitignore hides it\n")
        written = ["Dockerfile", "build.log"]
        sha = ws.commit(written, "Edit", {"Pipeline-Task": "t1"}, staged=ws.stage(written, only=True))
        assert sha is not None
        with Workspace(ws.path, ws.branch) as next_agent, git_commands(tmp_path / "trace.json") as commands:
            next_agent.reset_to(sha)
            next_agent.reset_to(base)  # a move of a clean checkout: only the files that differ
        assert _thorough(commands) == []
        assert not (ws.path / "build.log").exists()
        assert (ws.path / "Dockerfile").read_text() == FILES["Dockerfile"]
        assert git(ws.path, "status", "--porcelain", "--untracked-files=all", "--ignored=matching") == ""


def test_a_commit_is_measured_when_staged_as_git_show_and_git_diff_measure_it(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    base = git(repo, "rev-parse", "HEAD")
    with Workspace.create(repo, "run1", base) as ws:
        ws.writing()
        (ws.path / "Dockerfile").write_text("FROM alpine:3.21\nRUN echo hi\n")
        (ws.path / "app/main.py").rename(ws.path / "app/entry.py")  # a rename, as `git show` names it
        (ws.path / "build.log").write_text("forced in: the .gitignore hides it\n")
        sha = ws.commit(["Dockerfile", "app/main.py", "app/entry.py", "build.log"], "Edit", {"Pipeline-Task": "t1"})
        assert sha is not None
        with git_commands(tmp_path / "numstat.json") as asked:
            files, added, removed = ws.numstat(sha)
            paths = changed_paths(ws.path, base, sha)
            parent = ws.parent(sha)
        assert asked == [], "measured when it was staged"
        assert parent == git(ws.path, "rev-parse", f"{sha}^") == base
        assert ws.parent(base) is None  # the root commit, asked of git
        shown = subprocess.run(
            ["git", "-C", str(ws.path), "show", "--numstat", "-z", "--format=", sha],
            check=True,
            capture_output=True,
            text=True,
            env=git_env(),
        ).stdout
        assert shown == "2\t1\tDockerfile\x000\t0\t\x00app/main.py\x00app/entry.py\x001\t0\tbuild.log\x00"
        assert (files, added, removed) == (["Dockerfile", "app/entry.py", "build.log"], 3, 1)
        named = git(ws.path, "diff", "--name-only", "--no-renames", base, sha).splitlines()
        assert paths == named == ["Dockerfile", "app/entry.py", "app/main.py", "build.log"]
