"""A commit of exactly what a fix wrote is made from git objects, and is the commit `git add` would make.

On a 200,000-file monorepo the index is 25 MB, and `git add`, `git diff --cached`
and `git write-tree` each read all of it: 0.15 s per commit together. So the
files a fix wrote become blobs, the trees above them are rewritten, and the
commit is made from the new root tree; the index is not read or written. It
catches up (one `git update-index`) before a git command that reads it and when
the workspace closes, so `git status` in the run's worktree never shows a
difference that isn't there. Where git would store something else than the
file's bytes (attributes, end-of-line settings) or a path is not a plain file,
`git add` does the work as before.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from agent_pipelines.engine.gitenv import git_env
from agent_pipelines.engine.workspace import Workspace
from tests.conftest import git, make_repo
from tests.test_workspace_known_clean import git_commands

FILES = {
    "Dockerfile": "FROM alpine:3.20\n",
    "services/api/Dockerfile": "FROM python:3.12-slim\nCOPY . .\n",
    "services/api/app.py": "print(1)\n",
    ".gitignore": "*.log\n",
}


def _index_commands(commands: list[list[str]]) -> list[str]:
    named = [next((a for a in c if not a.startswith("-")), "") for c in commands]  # past `--literal-pathspecs`
    return [name for name in named if name in ("add", "write-tree", "update-index", "read-tree")]


def _write(ws: Workspace, files: dict[str, str]) -> list[str]:
    for rel, text in files.items():
        (ws.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws.path / rel).write_text(text, encoding="utf-8")
    return list(files)


def _fix(ws: Workspace, files: dict[str, str], task: str = "t1") -> str | None:
    """What the implementer does for a fix: announce the writes, write, stage exactly those files, commit."""
    ws.writing()
    written = _write(ws, files)
    return ws.commit(written, f"Fix {task}", {"Pipeline-Task": task}, staged=ws.stage(written, only=True))


def _commit_with_git(repo, base: str, files: dict[str, str], modes: dict[str, int], links: dict[str, str]) -> str:
    """The same edit made in a plain clone with `git add` and `git commit`: the tree git makes of it."""
    clone = repo.parent / "with-git"
    git(repo, "worktree", "add", "--quiet", "--detach", str(clone), base)
    for rel, text in files.items():
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        (clone / rel).write_text(text, encoding="utf-8")
    for rel, mode in modes.items():
        os.chmod(clone / rel, mode)
    for rel, target in links.items():
        os.symlink(target, clone / rel)
    git(clone, "add", "--force", "--", *files, *links)
    git(clone, "commit", "--quiet", "-m", "the same edit")
    return git(clone, "rev-parse", "HEAD^{tree}")


def test_a_fix_s_files_are_committed_as_git_objects_to_the_tree_git_add_makes(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    base = git(repo, "rev-parse", "HEAD")
    edit = {
        "services/api/Dockerfile": "FROM python:3.12-slim\nCOPY app.py .\n",  # a change two directories down
        "services/web/.dockerignore": "node_modules\n",  # a new directory
        "deploy/run.sh": "#!/bin/sh\nexec docker compose up\n",  # made executable below
        "build.log": "ignored by .gitignore, forced in\n",
        "services/api/café.txt": "a name git would C-quote\n",
    }
    with Workspace.create(repo, "run1", base) as ws:
        index = (ws._gitdir / "index").stat()
        ws.writing()
        written = _write(ws, edit)
        os.chmod(ws.path / "deploy/run.sh", 0o755)
        os.symlink("Dockerfile", ws.path / "services/api/Dockerfile.link")
        written.append("services/api/Dockerfile.link")
        with git_commands(tmp_path / "trace.json") as commands:
            staged = ws.stage(written, only=True)
            sha = ws.commit(written, "Edit", {"Pipeline-Task": "t1"}, staged=staged)
        assert sha is not None and ws.head() == sha
        assert _index_commands(commands) == [], "nothing read or wrote the index"
        assert not [c for c in commands if "hash-object" in c], "objects are written in this process"
        assert (ws._gitdir / "index").stat().st_mtime_ns == index.st_mtime_ns

        made = git(ws.path, "rev-parse", f"{sha}^{{tree}}")
        assert made == _commit_with_git(
            repo, base, edit, {"deploy/run.sh": 0o755}, {"services/api/Dockerfile.link": "Dockerfile"}
        )
        assert subprocess.run(["git", "-C", str(ws.path), "fsck", "--strict"], capture_output=True).returncode == 0
        assert {s.path: s.status for s in staged} == {path: "A" for path in written} | {"services/api/Dockerfile": "M"}
        shown = git(ws.path, "show", "--numstat", "--format=", sha).splitlines()
        counts = [line.split("\t", 2) for line in shown]
        assert ws.numstat(sha)[1:] == (sum(int(c[0]) for c in counts), sum(int(c[1]) for c in counts)) == (7, 1)

    # Closed: the index caught up, so git sees the checkout exactly at its HEAD.
    assert git(ws.path, "status", "--porcelain", "--untracked-files=all", "--ignored=matching") == ""
    assert git(ws.path, "diff", "--cached", "--name-only") == ""


def test_the_index_catches_up_before_a_command_that_reads_it(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    base = git(repo, "rev-parse", "HEAD")
    with Workspace.create(repo, "run1", base) as ws:
        first = _fix(ws, {"Dockerfile": "FROM alpine:3.21\n"}, "t1")
        second = _fix(ws, {"services/api/app.py": "print(2)\n"}, "t2")
        assert first and second

        ws.reset_to(base)  # a move: the lagging entries and the move's go into one `git update-index`
        assert git(ws.path, "status", "--porcelain", "--untracked-files=all") == ""
        assert (ws.path / "Dockerfile").read_text() == FILES["Dockerfile"]

        assert ws.cherry_pick(second)  # a pick merges into the index, which says what HEAD says
        assert (ws.path / "services/api/app.py").read_text() == "print(2)\n"
        assert (ws.path / "Dockerfile").read_text() == FILES["Dockerfile"]
        assert git(ws.path, "status", "--porcelain", "--untracked-files=all") == ""


def test_files_git_would_convert_are_staged_by_git_add(tmp_path):
    repo = make_repo(tmp_path / "repo", {**FILES, ".gitattributes": "*.sh text eol=crlf\n"})
    base = git(repo, "rev-parse", "HEAD")
    with Workspace.create(repo, "run1", base) as ws:
        with git_commands(tmp_path / "trace.json") as commands:
            sha = _fix(ws, {"deploy/run.sh": "#!/bin/sh\necho hi\n"})
        assert _index_commands(commands) == ["add", "write-tree"]
        assert sha is not None
        stored = subprocess.run(
            ["git", "-C", str(ws.path), "cat-file", "blob", f"{sha}:deploy/run.sh"],
            check=True,
            capture_output=True,
            env=git_env(),
        ).stdout
        assert stored == b"#!/bin/sh\necho hi\n", "git normalizes to LF in the repository, as its attribute says"
        assert git(ws.path, "status", "--porcelain", "--untracked-files=all") == ""


def test_a_file_where_git_has_a_directory_is_staged_by_git_add(tmp_path):
    repo = make_repo(tmp_path / "repo", FILES)
    base = git(repo, "rev-parse", "HEAD")
    with Workspace.create(repo, "run1", base) as ws:
        ws.writing()
        (ws.path / "services/api/app.py").unlink()
        (ws.path / "services/api/app.py").mkdir()
        (ws.path / "services/api/app.py/inner.py").write_text("x\n")
        written = ["services/api/app.py/inner.py"]
        with git_commands(tmp_path / "trace.json") as commands:
            staged = ws.stage(written, only=True)
        assert _index_commands(commands) == ["add"]
        assert {s.path: s.status for s in staged} == {
            "services/api/app.py": "D",
            "services/api/app.py/inner.py": "A",
        }


@pytest.mark.parametrize(
    "setting",
    [("core.autocrlf", "true"), ("core.fileMode", "false"), ("core.ignoreCase", "true"), ("core.ignoreCase", "")],
)
def test_a_repository_whose_settings_change_what_git_add_stores_is_staged_by_git_add(tmp_path, setting):
    repo = make_repo(tmp_path / "repo", FILES)
    if setting[1]:
        git(repo, "config", *setting)
    else:  # a key without a value is a boolean that is true, as git reads it
        with (repo / ".git" / "config").open("a") as config:
            config.write("[core]\n\tignoreCase\n")
        assert git(repo, "config", "--bool", setting[0]) == "true"
    base = git(repo, "rev-parse", "HEAD")
    with Workspace.create(repo, "run1", base) as ws:
        with git_commands(tmp_path / "trace.json") as commands:
            sha = _fix(ws, {"Dockerfile": "FROM alpine:3.21\n"})
        assert sha is not None
        assert _index_commands(commands) == ["add", "write-tree"]
