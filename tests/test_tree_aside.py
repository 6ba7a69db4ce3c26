"""DirTree.walked_aside: the walk in a forked child gives exactly the plain walk's answer, and leaves nothing behind."""

from __future__ import annotations

import os
import threading

import pytest

from agent_pipelines.engine.tree import DirTree
from tests.rulekit import write

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the walk runs aside only where fork exists")


def awkward_tree(root):
    write(
        root,
        {
            "Dockerfile": "FROM alpine:3.20\n",
            "a/b/c.txt": "x" * 70,
            "ünïcode/é.txt": "é",
            ".git/HEAD": "ref: refs/heads/main\n",
        },
    )
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("/etc/hostname", root / "outside")
    os.symlink("a", root / "dirlink")
    os.mkfifo(root / "fifo")
    (root / os.fsdecode(b"latin1-\xe9.txt")).write_bytes(b"not utf-8 name")
    return root


def test_the_walk_aside_is_the_plain_walk(tmp_path):
    root = awkward_tree(tmp_path)
    plain, aside = DirTree(root), DirTree.walked_aside(root)
    assert aside._aside.running  # a child is walking
    assert aside.files() == plain.files() and aside.skipped == plain.skipped
    assert aside._aside is None
    assert set(plain.files()) == {"Dockerfile", "a/b/c.txt", "ünïcode/é.txt", os.fsdecode(b"latin1-\xe9.txt")}
    assert set(plain.skipped) == {"loop1", "loop2", "outside", "fifo"}


def test_the_child_is_reaped_whether_or_not_its_answer_is_read(tmp_path):
    for read in (True, False):
        tree = DirTree.walked_aside(write(tmp_path / str(read), {"x": "1"}))
        pid = tree._aside._child[0]
        tree.files() if read else tree.close()
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie left


def test_a_child_that_fails_leaves_the_walk_to_the_parent(tmp_path, monkeypatch):
    parent, original = os.getpid(), DirTree._walk

    def walk(self):
        if os.getpid() != parent:
            raise RuntimeError("the child breaks")
        return original(self)

    monkeypatch.setattr(DirTree, "_walk", walk)
    tree = DirTree.walked_aside(write(tmp_path, {"a/x": "12"}))
    assert tree._aside.running and tree.files() == {"a/x": 2}


def test_no_fork_while_threads_run(tmp_path):
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        tree = DirTree.walked_aside(write(tmp_path, {"x": "1"}))
        assert not tree._aside.running and tree.files() == {"x": 1}
    finally:
        stop.set()
        worker.join()
