"""One active run per repository: a lock file in the repository's git dir.

The holder keeps the file open with an exclusive ``flock``; the kernel drops
that lock when the process ends, however it ends (SIGKILL included), so a
crash never leaves a repository locked and two runs can never both hold it
(taking over by reading the file, then deleting it, was a race: two
starters could both see a half-written or stale file and both win).

The file also holds the owner's pid and run id, for the message a refused
run prints. A file written by something that did not hold the flock (no
``"flock": true`` in it) still counts as held while its pid is alive; a
file that is garbage (not JSON) is taken over.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent_pipelines.engine.procs import Guard


class Locked(Exception):
    """Another live run holds the repository."""


def _alive(pid: int) -> bool:
    from agent_pipelines.engine.procs import alive

    return alive(pid)


class RepoLock:
    def __init__(self, path: Path, run_id: str) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.held = False
        self._fd: int | None = None
        self._guard: Guard | None = None

    def acquire(self) -> RepoLock:
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise Locked(self._busy(self._owner())) from None
            if not self._is_current(fd):  # the holder released (deleted) it between our open and our flock
                os.close(fd)
                continue
            owner = self._owner()
            if owner and not owner.get("flock") and owner.get("pid") != os.getpid() and _alive(_pid(owner)):
                os.close(fd)  # written by a process that does not flock: trust its pid
                raise Locked(self._busy(owner))
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "run_id": self.run_id, "flock": True}).encode())
            self._fd, self.held = fd, True
            from agent_pipelines.engine.procs import Guard

            self._guard = Guard(fd)  # held until the run's children are gone too, even if the run is killed
            return self
        raise Locked(f"could not take the lock {self.path}; remove it if no run is active")

    def _is_current(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def _busy(self, owner: dict | None) -> str:
        if owner and owner.get("run_id"):
            return (
                f"run {owner.get('run_id')} (pid {owner.get('pid')}) is active on this repository; "
                f"wait for it to finish or stop it, then retry"
            )
        return f"another run is active on this repository (it holds {self.path}); wait for it to finish, then retry"

    def _owner(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

    def release(self) -> None:
        if self._guard is not None:
            self._guard.release()
            self._guard = None
        if self.held and self._fd is not None:
            if self._is_current(self._fd):
                self.path.unlink(missing_ok=True)  # while still holding the flock: no one else owns this file
            os.close(self._fd)
        self._fd, self.held = None, False

    def __enter__(self) -> RepoLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _pid(owner: dict) -> int:
    try:
        return int(owner.get("pid", 0))
    except (TypeError, ValueError):
        return 0
