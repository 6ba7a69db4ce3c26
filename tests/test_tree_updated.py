"""A listing updated for the changed paths equals a fresh one, and the listing it came from stays as it was.

``DirTree.updated`` and ``GitTree.updated`` copy the previous listing (a
table cloned in C, not rebuilt entry by entry) and look again at the
changed paths only. Other holders of the previous tree (a project made from
it, the gates' parent) keep reading it afterwards, so it must not move.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_pipelines.engine.tree import DirTree, GitTree, changed_paths
from tests.conftest import git, make_repo

PATHS = ["a.txt", "b.txt", "src/c.py", "src/d/e.py", "src/d/f.py", "docs/g.md", "z/y/x.bin"]
START = {p: p * 2 for p in PATHS[:5]}

# one edit: (path, new text) or (path, None) to remove it
edits = st.lists(
    st.tuples(st.sampled_from(PATHS), st.one_of(st.none(), st.text("xyz\n", min_size=0, max_size=12))),
    min_size=1,
    max_size=8,
)


def apply(root: Path, path: str, text: str | None) -> None:
    target = root / path
    if text is None:
        target.unlink(missing_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def listed(repo: Path, commit: str) -> dict[str, int]:
    """What ``git ls-tree`` says of a commit: every blob's path and size."""
    out = {}
    for line in git(repo, "ls-tree", "-r", "-l", commit).splitlines():
        meta, path = line.split("\t", 1)
        out[path] = int(meta.split()[3])
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(edits, min_size=1, max_size=4))
def test_a_directory_listing_updated_after_random_edits_equals_a_fresh_walk(steps):
    root = Path(tempfile.mkdtemp(prefix="tree-updated-"))
    try:
        for path, text in START.items():
            apply(root, path, text)
        tree = DirTree(root)
        for step in steps:
            before = dict(tree.files())
            for path, text in step:
                apply(root, path, text)
            new = tree.updated([path for path, _ in step])
            assert new.files() == DirTree(root).files()
            assert tree.files() == before  # the tree it came from still lists what it listed
            tree = new
    finally:
        shutil.rmtree(root)


def test_a_commit_listing_updated_after_each_commit_equals_git_ls_tree(tmp_path):
    repo = make_repo(tmp_path / "repo", START)
    commits = [git(repo, "rev-parse", "HEAD")]
    steps = [
        [("a.txt", "longer text than before\n"), ("docs/g.md", "new\n")],
        [("src/d/e.py", None), ("b.txt", None)],
        [("z/y/x.bin", "\0\0"), ("b.txt", "back\n"), ("src/d/e.py", "again\n")],
        [("src/c.py", None), ("src/d/f.py", None), ("src/d/e.py", None)],
    ]
    for n, step in enumerate(steps):
        for path, text in step:
            apply(repo, path, text)
        git(repo, "add", "--all")
        git(repo, "commit", "--quiet", "-m", f"step {n}")
        commits.append(git(repo, "rev-parse", "HEAD"))
    tree = GitTree(repo, commits[0])
    with tree:
        for old, new in zip(commits, commits[1:]):
            before = dict(tree.files())
            updated = tree.updated(new, changed_paths(repo, old, new))
            assert updated.files() == listed(repo, new)
            assert tree.files() == before == listed(repo, old)
            tree = updated
