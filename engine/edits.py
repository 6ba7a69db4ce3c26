"""Applying an edit a model proposed, inside the repository only.

Whatever the model (or text in the repository) says, an edit may only write
a relative path inside the worktree: never an absolute path, never ``..``,
never ``.git/``, never through a symlink (a symlinked file or directory on
the way could lead out of the repository). Diffs go through ``git apply``,
which parses them for real and refuses what doesn't apply.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from pathlib import Path

from engine.domain import FixError
from engine.gitenv import git_env

_DIFF_TARGET = re.compile(r"^(?:\+\+\+|---) (?:[ab]/)?(\S+)", re.MULTILINE)


def safe_path(root: Path, rel: str) -> Path:
    """``root / rel`` if writing there stays inside the repository, else FixError saying why."""
    if not rel or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise FixError(f"refused edit of {rel!r}: only relative paths inside the repository")
    clean = posixpath.normpath(rel.replace("\\", "/"))
    parts = clean.split("/")
    if clean == ".." or parts[0] == ".." or ".git" in parts:
        raise FixError(f"refused edit of {rel!r}: outside the repository or inside .git")
    root = root.resolve()
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise FixError(f"refused edit of {rel!r}: {current.relative_to(root)} is a symlink")
    if not current.resolve().is_relative_to(root):
        raise FixError(f"refused edit of {rel!r}: resolves outside the repository")
    return current


def apply_edit(root: Path, file: str, content: str, diff: str) -> list[str]:
    """Write a whole-file ``content`` or apply a unified ``diff``; return the files written."""
    if content and diff:
        raise FixError("the model sent both a whole file and a diff; refused")
    if content:
        target = safe_path(root, file)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8", newline="") as fh:
            fh.write(content)
        return [posixpath.normpath(file)]
    if diff:
        targets = sorted({t for t in _DIFF_TARGET.findall(diff) if t != "/dev/null"})
        for t in targets:
            safe_path(root, t)
        patch = diff if diff.endswith("\n") else diff + "\n"
        for args in (["apply", "--check"], ["apply"]):
            done = subprocess.run(["git", "-C", str(root), *args, "-"], input=patch, capture_output=True,
                                  text=True, env=git_env())
            if done.returncode != 0:
                raise FixError(f"the model's diff does not apply: {' '.join(done.stderr.split())[:200]}")
        return targets
    raise FixError("the model proposed no change")
