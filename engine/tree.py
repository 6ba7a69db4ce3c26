"""Read-only views of a file tree: a directory on disk, or a git commit.

Ops compares the run's base commit with its head without checking either
out: ``GitTree`` lists a commit with ``git ls-tree -l`` and reads blobs with
``git cat-file``, each a short-lived child process.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Protocol


class Tree(Protocol):
    label: str

    def files(self) -> dict[str, int]:
        """Relative POSIX path -> size in bytes, for every regular file."""

    def read(self, path: str) -> bytes:
        """The file's bytes (KeyError when absent)."""


class DirTree:
    """A directory on disk; ``.git`` is never part of it."""

    def __init__(self, root: Path, label: str = "") -> None:
        self.root = Path(root)
        self.label = label or str(root)
        self._files: dict[str, int] | None = None

    def files(self) -> dict[str, int]:
        if self._files is None:
            found: dict[str, int] = {}
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames[:] = [d for d in dirnames if d != ".git"]
                rel = os.path.relpath(dirpath, self.root)
                for name in filenames:
                    full = os.path.join(dirpath, name)
                    try:
                        st = os.lstat(full)
                    except OSError:
                        continue
                    path = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
                    found[path] = st.st_size
            self._files = found
        return self._files

    def read(self, path: str) -> bytes:
        try:
            return (self.root / path).read_bytes()
        except FileNotFoundError:
            raise KeyError(path) from None


class GitTree:
    """The tree of one commit, read through git without a checkout."""

    def __init__(self, repo: Path, commit: str, label: str = "") -> None:
        self.repo = Path(repo)
        self.commit = commit
        self.label = label or commit[:10]
        self._files: dict[str, int] | None = None

    def _git(self, *args: str) -> bytes:
        return subprocess.run(
            ["git", "-C", str(self.repo), *args], check=True, capture_output=True
        ).stdout

    def files(self) -> dict[str, int]:
        if self._files is None:
            found: dict[str, int] = {}
            for entry in self._git("ls-tree", "-r", "-l", "-z", self.commit).split(b"\0"):
                if not entry:
                    continue
                meta, _, path = entry.partition(b"\t")
                mode, kind, _sha, size = meta.split()
                if kind == b"blob" and mode != b"120000":
                    found[path.decode("utf-8", "surrogateescape")] = int(size)
            self._files = found
        return self._files

    def read(self, path: str) -> bytes:
        if path not in self.files():
            raise KeyError(path)
        return self._git("cat-file", "blob", f"{self.commit}:{path}")
