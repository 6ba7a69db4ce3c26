"""Read-only views of a file tree: a directory on disk, or a git commit.

Ops compares the run's base commit with its head without checking either
out: ``GitTree`` lists a commit with ``git ls-tree -l`` and reads blobs through
one ``git cat-file --batch`` process (not one process per blob).

A tree after a change need not be listed again: ``DirTree.updated`` and
``GitTree.updated`` take the previous listing and look again at the changed
paths only (what an incremental analysis needs after each commit).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agent_pipelines.engine.aside import Aside


class Tree(Protocol):
    label: str
    commit: str  # the commit the tree is known to hold; "" when none is known

    def files(self) -> dict[str, int]:
        """Relative POSIX path -> size in bytes, for every regular file."""

    def read(self, path: str) -> bytes:
        """The file's bytes (KeyError when absent)."""


class DirTree:
    """A directory on disk; ``.git`` is never part of it.

    Only regular files are listed. A symlink counts when it resolves to a
    regular file inside the root; one that leaves the root, dangles or loops
    is left out, and so are FIFOs, sockets and devices: ``skipped`` says
    which and why. Directory symlinks are never descended into (no loops, no
    walking out of the root). ``read`` refuses anything that resolves
    outside the root or is not a regular file.
    """

    def __init__(self, root: Path, label: str = "") -> None:
        self.root = Path(root)
        self.label = label or str(root)
        self._files: dict[str, int] | None = None
        self._real_root: Path | None = None
        self.skipped: dict[str, str] = {}
        self._aside: Aside | None = None  # while the walk runs in a child
        self.commit = ""  # set by the workspace: the commit this checkout is known to be clean at

    @classmethod
    def walked_aside(cls, root: Path) -> DirTree:
        """A tree whose walk starts now in a forked child (``engine.aside``), while the caller goes on.

        On two cores the walk (a stat per file) and the caller's own start-up
        (its imports) overlap; ``files()`` collects the child's answer, or walks
        itself when the walk could not run aside. Call ``close()`` when
        ``files()`` may never be called.
        """
        from agent_pipelines.engine.aside import Aside

        tree = cls(root)
        tree._aside = Aside(tree._walk)
        return tree

    def close(self) -> None:
        """Reap a walk still running aside (its answer is dropped)."""
        if self._aside is not None:
            self._aside.close()
            self._aside = None

    @property
    def real_root(self) -> Path:
        if self._real_root is None:
            self._real_root = self.root.resolve()
        return self._real_root

    def files(self) -> dict[str, int]:
        if self._files is None:
            walked = self._aside.result() if self._aside is not None else None
            self._aside = None
            self._files, self.skipped = walked if walked is not None else self._walk()
        return self._files

    def updated(self, changed: Iterable[str]) -> DirTree:
        """The same directory after ``changed`` paths were written or removed: only those are looked at again.

        The listing is this one's with each changed path given the verdict the
        walk would give it (added, resized, gone, or skipped and why); nothing
        else is walked. The workspace uses it between two commits of a clean
        checkout, with the paths ``git diff`` names.
        """
        tree = DirTree(self.root, self.label)
        # .copy(), not dict(): a listing that lost paths holds holes, and dict() then re-inserts every entry
        # (20 ms at 200,000 files) where .copy() clones the table (2 ms)
        files, skipped = self.files().copy(), dict(self.skipped)
        for path in changed:
            files.pop(path, None)
            skipped.pop(path, None)
            size, why = tree._probe(path)
            if size is not None:
                files[path] = size
            elif why:
                skipped[path] = why
        tree._files, tree.skipped = files, skipped
        return tree

    def _walk(self) -> tuple[dict[str, int], dict[str, str]]:
        """(path -> size, path -> why it was left out) for the whole tree."""
        found: dict[str, int] = {}
        skipped: dict[str, str] = {}
        # os.scandir by hand rather than os.walk + lstat: the entry's type comes free with the listing,
        # so only regular files cost a stat (for the size). Same verdicts as os.walk(followlinks=False).
        stack = [(os.fspath(self.root), "")]
        while stack:
            directory, prefix = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue  # an unreadable directory, as os.walk skips it
            for entry in entries:
                path = prefix + entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name != ".git":
                            stack.append((entry.path, path + "/"))
                        continue
                    if entry.is_symlink():
                        if _points_to_dir(entry):
                            continue  # a directory symlink: never descended into, never listed
                        why = self._bad_link(entry.path)
                        if why:
                            skipped[path] = why
                            continue
                    elif not entry.is_file(follow_symlinks=False):
                        skipped[path] = "not a regular file (FIFO, socket or device); not read"
                        continue
                    found[path] = entry.stat(follow_symlinks=False).st_size
                except OSError as err:
                    skipped[path] = f"cannot stat: {err.strerror or err}"
        return found, skipped

    def _probe(self, path: str) -> tuple[int | None, str]:
        """(size, "") for a file the walk would list; (None, why) for one it leaves out; (None, "") when absent."""
        parts = path.split("/")
        if ".git" in parts[:-1]:
            return None, ""
        parent = self.root
        for part in parts[:-1]:  # the walk never descends through a directory symlink
            parent = parent / part
            if parent.is_symlink() or not parent.is_dir():
                return None, ""
        for entry in _scandir_one(parent, parts[-1]):
            try:
                if entry.is_dir(follow_symlinks=False) or (entry.is_symlink() and _points_to_dir(entry)):
                    return None, ""
                if entry.is_symlink():
                    why = self._bad_link(entry.path)
                    if why:
                        return None, why
                elif not entry.is_file(follow_symlinks=False):
                    return None, "not a regular file (FIFO, socket or device); not read"
                return entry.stat(follow_symlinks=False).st_size, ""
            except OSError as err:
                return None, f"cannot stat: {err.strerror or err}"
        return None, ""

    def _bad_link(self, full: str) -> str:
        """Why a symlink can't be part of the tree, or "" when it resolves to a regular file inside it."""
        try:
            target = Path(full).resolve(strict=True)
        except RuntimeError:
            return "symlink loop; not followed"
        except OSError as err:
            return "symlink loop; not followed" if err.errno == errno.ELOOP else "dangling symlink; not followed"
        if not target.is_relative_to(self.real_root):
            return "symlink to a path outside the repository; not followed"
        if not target.is_file():
            return "symlink to something that is not a regular file; not followed"
        return ""

    def read(self, path: str) -> bytes:
        full = self.root / path
        try:
            try:
                real = full.resolve()
            except RuntimeError:  # a symlink loop (Python < 3.13)
                raise OSError(errno.ELOOP, "symlink loop", str(full)) from None
            if not real.is_relative_to(self.real_root):
                raise KeyError(path)
            with open(full, "rb", opener=_nonblocking) as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise IsADirectoryError(errno.EISDIR, "not a regular file", str(full))
                return fh.read()
        except FileNotFoundError:
            raise KeyError(path) from None


def _scandir_one(directory: Path, name: str) -> list[os.DirEntry]:
    """The directory entry ``name`` in ``directory`` (as the walk sees it), or none."""
    try:
        with os.scandir(directory) as entries:
            return [e for e in entries if e.name == name]
    except OSError:
        return []


def _points_to_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a loop (ELOOP) is not a directory; _bad_link says what it is
        return False


def _nonblocking(path: str, flags: int) -> int:
    """Open without blocking on a FIFO (a FIFO is then refused as not a regular file)."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


class GitTree:
    """The tree of one commit, read through git without a checkout.

    Blobs are read through one ``git cat-file --batch`` process, started on
    the first read of any of the trees that share it (the ones ``updated``
    and ``at`` derive from this one), and stopped by ``close()`` of any of
    them (a later read starts it again) or when the last of them is collected.
    """

    def __init__(self, repo: Path, commit: str, label: str = "") -> None:
        self.repo = Path(repo)
        self.commit = commit
        self.label = label or commit[:10]
        self._files: dict[str, int] | None = None
        self._batch = _Reader(self.repo)

    def _git(self, *args: str) -> bytes:
        return subprocess.run(["git", "-C", str(self.repo), *args], check=True, capture_output=True).stdout

    def files(self) -> dict[str, int]:
        if self._files is None:
            self._files = _LISTINGS.get(self.commit)
        if self._files is None:
            near = _LISTINGS.near(self.repo)
            changed = changed_paths(self.repo, near.commit, self.commit) if near is not None else None
            derived = (
                near.updated(self.commit, changed)._files
                if near is not None and changed is not None and len(changed) <= _LISTINGS.DERIVE_LIMIT
                else None
            )
            files = derived if derived is not None else self._listing("-r", self.commit)
            _LISTINGS.put(self.repo, self.commit, files)
            self._files = files
        return self._files

    def _listing(self, *args: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for entry in self._git("ls-tree", "-l", "-z", *args).split(b"\0"):
            if not entry:
                continue
            meta, _, path = entry.partition(b"\t")
            mode, kind, _sha, size = meta.split()
            if kind == b"blob" and mode != b"120000":
                found[path.decode("utf-8", "surrogateescape")] = int(size)
        return found

    def updated(self, commit: str, changed: Iterable[str], label: str = "") -> GitTree:
        """The tree of ``commit``, which differs from this one in ``changed`` paths only (see ``changed_paths``).

        Its listing is this one's with the changed paths listed anew (one
        ``git ls-tree`` for them, not for the whole tree).
        """
        changed = sorted(set(changed))
        tree = self.at(commit, label)
        files = self.files().copy()  # the table cloned (see DirTree.updated)
        for path in changed:
            files.pop(path, None)
        for start in range(0, len(changed), 500):  # a bounded command line
            files.update(tree._listing("-r", commit, "--", *(":(literal)" + p for p in changed[start : start + 500])))
        tree._files = files
        _LISTINGS.put(self.repo, commit, files)
        return tree

    def at(self, commit: str, label: str = "") -> GitTree:
        """The tree of another commit of the same repository, reading blobs through this tree's process.

        Its listing is made as ``files`` makes one: kept from an earlier listing of the commit, derived
        from a commit listed near it, or listed afresh. Why: a reviewer reads each change and its parent;
        one process serves them all instead of one per tree."""
        tree = GitTree(self.repo, commit, label)
        tree._batch = self._batch
        return tree

    def shares_reader(self, other: object) -> bool:
        """Does ``other`` read blobs through this tree's process (closing one stops the other's)?"""
        return isinstance(other, GitTree) and other._batch is self._batch

    def read(self, path: str) -> bytes:
        if self._files is None:  # one path asked of an unlisted commit: ask git for it, don't list 20,000 files
            entry = self._git("ls-tree", "-z", self.commit, "--", path).split(b"\0")[0]
            meta = entry.partition(b"\t")[0].split()
            if len(meta) != 3 or meta[1] != b"blob" or meta[0] == b"120000":
                raise KeyError(path)
        elif path not in self._files:
            raise KeyError(path)
        if "\n" in path:  # the batch protocol is line-based
            return self._git("cat-file", "blob", f"{self.commit}:{path}")
        return self._batch.get().read(f"{self.commit}:{path}")

    def object(self, name: str) -> bytes:
        """The blob git names ``name`` (an object id, or ``<commit>:<path>`` of any commit), through this
        tree's process and without a listing; KeyError when there is none."""
        if "\n" in name:  # the batch protocol is line-based
            raise KeyError(name)
        return self._batch.get().read(name)

    def close(self) -> None:
        self._batch.close()

    def __enter__(self) -> GitTree:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Listings:
    """The listings of the last few commits a process listed, shared by every GitTree of those commits.

    Why: a commit's listing never changes, and a run opens trees of the same commits again and again (ops'
    base at every phase, each reviewed change's parent, each phase's incremental analysis). Listing a
    20,000-file commit (``git ls-tree -r -l``, which reads every blob's size) costs far more than deriving it
    from a listed commit near it: one ``git diff`` and one ``git ls-tree`` of the paths that differ. Keyed by
    commit id (a full hex id names the same tree in every repository); the listings are read-only.
    """

    KEEP = 4
    DERIVE_LIMIT = 2000  # more paths than this differ: list the commit afresh

    def __init__(self) -> None:
        self._items: dict[str, tuple[Path, dict[str, int]]] = {}

    @staticmethod
    def _key(commit: str) -> str | None:
        return commit if len(commit) in (40, 64) and all(c in "0123456789abcdef" for c in commit) else None

    def get(self, commit: str) -> dict[str, int] | None:
        key = self._key(commit)
        found = self._items.pop(key, None) if key else None
        if key is None or found is None:
            return None
        self._items[key] = found  # most recently used last
        return found[1]

    def near(self, repo: Path) -> GitTree | None:
        """The most recently listed commit of ``repo``, as a tree to derive another listing from."""
        for commit, (where, files) in reversed(self._items.items()):
            if where == repo:
                tree = GitTree(repo, commit)
                tree._files = files
                return tree
        return None

    def put(self, repo: Path, commit: str, files: dict[str, int]) -> None:
        key = self._key(commit)
        if key is None:
            return
        self._items.pop(key, None)
        self._items[key] = (repo, files)
        while len(self._items) > self.KEEP:
            del self._items[next(iter(self._items))]


_LISTINGS = _Listings()


class _Reader:
    """The ``git cat-file --batch`` that trees share: started on the first read of any, again after a close."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.proc: _CatFile | None = None

    def get(self) -> _CatFile:
        if self.proc is None or not self.proc.usable():
            self.proc = _CatFile(self.repo)
        return self.proc

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()
            self.proc = None


class _CatFile:
    """One ``git cat-file --batch`` process: a blob per request, no process per blob.

    Only the process that started it uses it (a forked child would share the
    pipes: ``usable`` says no there, and the child starts its own).
    """

    def __init__(self, repo: Path) -> None:
        self.pid = os.getpid()
        self.proc = subprocess.Popen(
            ["git", "-C", str(repo), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._stop = weakref.finalize(self, _stop_process, self.proc, self.pid)

    def usable(self) -> bool:
        return os.getpid() == self.pid and self.proc.poll() is None

    def read(self, spec: str) -> bytes:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(spec.encode("utf-8", "surrogateescape") + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        if len(header) != 3:  # "<spec> missing", or the process died
            raise KeyError(spec)
        data = self.proc.stdout.read(int(header[2]))
        self.proc.stdout.read(1)  # the newline after each object
        if header[1] != b"blob":
            raise IsADirectoryError(errno.EISDIR, "not a file", spec)
        return data

    def close(self) -> None:
        self._stop()


def _stop_process(proc: subprocess.Popen, owner: int) -> None:
    if os.getpid() != owner:
        return
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    proc.wait()


def changed_paths(repo: Path, old: str, new: str) -> list[str]:
    """The files that differ between two commits (added, modified, deleted; a rename is both its paths).

    Kept per pair of object ids (what two ids name never changes): a run asks it of the same two commits
    from the workspace, the implementer's project, the incremental analysis and the gates.
    """
    key = (str(repo), old, new)
    if key in _CHANGED:
        return list(_CHANGED[key])
    out = subprocess.run(
        ["git", "-C", str(repo), "diff", "--name-only", "--no-renames", "-z", old, new], check=True, capture_output=True
    ).stdout
    found = [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]
    if OBJECT_ID.fullmatch(old) and OBJECT_ID.fullmatch(new):  # not a ref or HEAD, which move
        keep(_CHANGED, key, tuple(found))
    return found


def remember_changed(repo: Path, old: str, new: str, paths: Iterable[str]) -> None:
    """Record what ``changed_paths`` says of two commits, from a caller that knows it without asking git (the
    workspace knows what a commit it just made changed): the same list, in git's order (paths by their bytes)."""
    if OBJECT_ID.fullmatch(old) and OBJECT_ID.fullmatch(new):
        paths = sorted(set(paths), key=lambda p: p.encode("utf-8", "surrogateescape"))
        keep(_CHANGED, (str(repo), old, new), tuple(paths))


def keep(cache: dict, key: object, value: object, limit: int = 4096) -> None:
    """Put ``value`` in a per-process ``cache`` of what object ids name (it never changes), emptied when it
    holds ``limit`` entries: a bound on memory for a long-lived process (a server running many runs)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value


_CHANGED: dict[tuple[str, str, str], tuple[str, ...]] = {}
OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a full object id (SHA-1 or SHA-256), not a ref
