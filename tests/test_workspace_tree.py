"""The workspace keeps its checkout's file list from git instead of walking it after every commit.

Whatever the commits did (add, edit, delete, a symlink out of the
repository, a file replaced by a directory), the kept list is the list a
fresh walk of the checkout gives, with the same verdicts on what is skipped.
"""

from __future__ import annotations

import os

from agent_pipelines.engine.tree import DirTree
from agent_pipelines.engine.workspace import Workspace
from tests.conftest import git, make_repo


def walked(path) -> tuple[dict[str, int], dict[str, str]]:
    tree = DirTree(path)
    return tree.files(), tree.skipped


def test_the_kept_file_list_equals_a_fresh_walk_after_each_commit(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n", "src/b.py": "b\n", "src/c/d.txt": "d\n", "gone.txt": "x\n"})
    with Workspace.create(repo, "run1", git(repo, "rev-parse", "HEAD")) as ws:
        first = ws.tree()
        assert (first.files(), first.skipped) == walked(ws.path)
        steps = [  # (what a fix does, the paths it says it wrote)
            (lambda p: (p / "a.txt").write_text("a longer line\n"), ["a.txt"]),
            (lambda p: (p / "gone.txt").unlink(), ["gone.txt"]),
            (lambda p: os.symlink("/etc/passwd", p / "out"), ["out"]),
            (
                lambda p: (
                    (p / "src/c/d.txt").unlink(),
                    (p / "src/c/d.txt").mkdir(),
                    (p / "src/c/d.txt/e").write_text("e"),
                ),
                ["src/c/d.txt"],
            ),
            (
                lambda p: (p / "new dir").mkdir() or (p / "new dir/ünïcode.txt").write_text("u\n"),
                ["new dir/ünïcode.txt"],
            ),
        ]
        for n, (step, wrote) in enumerate(steps):
            step(ws.path)
            assert ws.commit(wrote, f"step {n}", {}) is not None
            kept = ws.tree()
            assert (kept.files(), kept.skipped) == walked(ws.path), f"after step {n}"
        assert "out" in kept.skipped and "gone.txt" not in kept.files()
        ws.reset_to(git(repo, "rev-parse", "HEAD"))  # back to the base: the list follows
        back = ws.tree()
        assert (back.files(), back.skipped) == walked(ws.path) and "gone.txt" in back.files()


def test_the_same_commit_gives_the_same_tree_without_asking_again(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    with Workspace.create(repo, "run1", git(repo, "rev-parse", "HEAD")) as ws:
        assert ws.tree() is ws.tree()
