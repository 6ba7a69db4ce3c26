"""The workspace's cheap git paths give what git's porcelain gives.

A clean checkout moved between commits by writing only the files that differ
ends exactly as ``git checkout`` leaves it (contents, modes, symlinks, emptied
directories gone, nothing for ``git status`` to report); a commit made with
git's plumbing stores the message ``git commit -F`` stores; a commit's listing
derived from another commit's equals a full ``git ls-tree``.
"""

from __future__ import annotations

import os
import stat
import subprocess

from agent_pipelines.engine.gitenv import git_env
from agent_pipelines.engine.tree import _LISTINGS, GitTree
from agent_pipelines.engine.workspace import Workspace
from tests.conftest import git, make_repo, snapshot


def _checkout(path) -> tuple[dict[str, bytes], dict[str, int], set[str]]:
    """A checkout's files (bytes), their modes and its directories, without its ``.git`` file."""
    files = {k: v for k, v in snapshot(path).items() if k != ".git"}
    modes, dirs = {}, set()
    for dirpath, _dirnames, filenames in os.walk(path):
        dirs.add(os.path.relpath(dirpath, path))
        for name in filenames:
            full = os.path.join(dirpath, name)
            if full != os.path.join(path, ".git"):
                modes[os.path.relpath(full, path)] = os.lstat(full).st_mode
    return files, modes, dirs


def test_moving_between_commits_leaves_the_checkout_git_checkout_leaves(tmp_path):
    repo = make_repo(
        tmp_path / "repo", {"Dockerfile": "FROM alpine\n", "app/main.py": "print(1)\n", "deep/er/gone.txt": "x\n"}
    )
    with Workspace.create(repo, "run1", git(repo, "rev-parse", "HEAD")) as ws:
        base = ws.head()
        ws.writing()
        (ws.path / "Dockerfile").write_text("FROM alpine:3.20\n")
        (ws.path / "deep/er/gone.txt").unlink()
        (ws.path / "run.sh").write_text("#!/bin/sh\necho hi\n")
        (ws.path / "run.sh").chmod(0o755)
        os.symlink("Dockerfile", ws.path / "link")
        first = ws.commit(["Dockerfile", "deep/er/gone.txt", "run.sh", "link"], "edits", {"Pipeline-Task": "t1"})
        (ws.path / "app/main.py").unlink()
        (ws.path / "app/new.py").write_text("print(2)\n")
        second = ws.commit(["app/main.py", "app/new.py"], "more", {"Pipeline-Task": "t2"})
        ws.reset_to(second)  # a reset cleans: the checkout is now known clean, so moves take the cheap path

        for target in (base, second, first, base, first, second):
            assert ws._move(target), "a plain move is done without git checkout"
            assert ws.head() == target
            moved = _checkout(ws.path)
            clone = tmp_path / f"clone-{target[:7]}"
            git(repo, "worktree", "add", "--quiet", "--detach", str(clone), target)
            assert moved == _checkout(clone)
            assert git(ws.path, "status", "--porcelain", "--untracked-files=all", "--ignored=matching") == ""
            git(repo, "worktree", "remove", "--force", str(clone))
        assert stat.S_IMODE(os.stat(ws.path / "run.sh").st_mode) & 0o111
        assert git(ws.path, "rev-parse", "--abbrev-ref", "HEAD") == "pipeline/run1"


def _message(repo, rev: str) -> bytes:
    """A commit's message as stored, byte for byte."""
    raw = subprocess.run(["git", "-C", str(repo), "cat-file", "commit", rev], check=True, capture_output=True).stdout
    return raw.split(b"\n\n", 1)[1]


def test_a_commit_stores_the_message_git_commit_stores(tmp_path):
    message = "Title with trailing blanks   \n\n\n\nbody line\t\n  \n\nRules: DL3008  \n"
    trailers = {"Pipeline-Run": "run1", "Pipeline-Task": "abc"}
    ours = make_repo(tmp_path / "ours", {"a.txt": "a\n"})
    with Workspace.create(ours, "run1", git(ours, "rev-parse", "HEAD")) as ws:
        (ws.path / "a.txt").write_text("b\n")
        sha = ws.commit(["a.txt"], message, trailers)
        assert sha == ws.head()
        stored = _message(ws.path, sha)
        tree, parent = git(ws.path, "rev-parse", f"{sha}^{{tree}}"), git(ws.path, "rev-parse", f"{sha}^")
    theirs = make_repo(tmp_path / "theirs", {"a.txt": "a\n"})
    (theirs / "a.txt").write_text("b\n")
    git(theirs, "add", "a.txt")
    body = message.rstrip() + "\n\n" + "\n".join(f"{k}: {v}" for k, v in trailers.items()) + "\n"
    subprocess.run(
        ["git", "-C", str(theirs), "commit", "--quiet", "-F", "-"],
        input=body.encode(),
        check=True,
        capture_output=True,
        env=git_env(),
    )
    assert stored == _message(theirs, "HEAD")
    assert tree == git(theirs, "rev-parse", "HEAD^{tree}")
    assert parent == git(ours, "rev-parse", "HEAD")


def test_a_listing_derived_from_another_commit_equals_a_full_listing(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n", "src/b.py": "b\n", "src/c/d.txt": "d\n"})
    first = git(repo, "rev-parse", "HEAD")
    (repo / "src/b.py").write_text("a longer b\n")
    (repo / "src/c/d.txt").unlink()
    (repo / "src/c/d.txt").mkdir()
    (repo / "src/c/d.txt/e").write_text("e\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "second")
    second = git(repo, "rev-parse", "HEAD")
    with GitTree(repo, first) as one:
        one.files()  # listed: the next commit of this repository is derived from it
    with GitTree(repo, second) as two:
        derived = two.files()
    fresh = GitTree(repo, second)
    assert derived == fresh._listing("-r", second)
    assert derived == {"a.txt": 2, "src/b.py": 11, "src/c/d.txt/e": 2}
    assert _LISTINGS.get(second) is derived


def test_the_run_s_worktree_keeps_a_split_index_and_the_user_s_checkout_keeps_its_own(tmp_path):
    repo = make_repo(tmp_path / "repo", {f"pkg/{i}.txt": f"{i}\n" for i in range(50)})
    with Workspace.create(repo, "run1", git(repo, "rev-parse", "HEAD")) as ws:
        gitdir = ws.path / git(ws.path, "rev-parse", "--git-dir").strip()
        for n in range(3):  # commits keep it split: the 50 entries stay in the shared file
            (ws.path / "pkg/0.txt").write_text(f"edit {n}\n")
            ws.commit(["pkg/0.txt"], f"edit {n}", {"Pipeline-Run": "run1"})
            assert len(list(gitdir.glob("sharedindex.*"))) == 1
        status = git(ws.path, "status", "--porcelain")
        listed = git(ws.path, "ls-files").split()
    assert status == "" and len(listed) == 50  # git reads the split index as the whole one
    assert not list((repo / ".git").glob("sharedindex.*"))  # the user's index is as it was


def test_moving_along_commits_made_here_needs_no_diff_and_ends_as_git_checkout(tmp_path):
    from tests.test_workspace_known_clean import git_commands

    repo = make_repo(tmp_path / "repo", {"Dockerfile": "FROM alpine\n", "app/main.py": "print(1)\n" * 20})
    with Workspace.create(repo, "run1", git(repo, "rev-parse", "HEAD")) as ws:
        base = ws.head()
        ws.writing()
        (ws.path / "app/main.py").rename(ws.path / "app/entry.py")  # a rename: its deletion and its addition
        (ws.path / "Dockerfile").write_text("FROM alpine:3.20\n")
        renamed = ws.commit(["app/main.py", "app/entry.py", "Dockerfile"], "rename", {"Pipeline-Task": "t1"})
        ws.reset_to(renamed)  # known clean again
        with git_commands(tmp_path / "trace.json") as commands:
            for n, target in enumerate((base, renamed, base)):  # to the parent and back: the changes undone, redone
                assert ws._move(target)
                moved = _checkout(ws.path)
                clone = tmp_path / f"clone-{n}"
                subprocess.run(
                    ["git", "-C", str(repo), "worktree", "add", "--quiet", "--detach", str(clone), target],
                    check=True,
                    capture_output=True,
                )
                assert moved == _checkout(clone)
                subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(clone)], check=True)
        ours = [c for c in commands if c[:1] != ["worktree"]]
        assert not [c for c in ours if c[:1] == ["diff"]], "the commit's changes were known"
        assert [c[:2] for c in ours].count(["cat-file", "--batch"]) == 1, "one cat-file for every move"
        assert git(ws.path, "status", "--porcelain", "--untracked-files=all", "--ignored=matching") == ""
