"""One active run per repository: a lock file in the repository's git dir.

The lock holds the owner's pid; a lock whose process is gone (a crashed or
killed run) is taken over, so a crash never leaves a repository locked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class Locked(Exception):
    """Another live run holds the repository."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RepoLock:
    def __init__(self, path: Path, run_id: str) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.held = False

    def acquire(self) -> "RepoLock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner and owner.get("pid") != os.getpid() and _alive(int(owner.get("pid", 0))):
                    raise Locked(f"run {owner.get('run_id')} (pid {owner.get('pid')}) is active on this repository; "
                                 f"wait for it to finish or stop it, then retry") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump({"pid": os.getpid(), "run_id": self.run_id}, fh)
            self.held = True
            return self
        raise Locked(f"could not take the lock {self.path}; remove it if no run is active")

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            owner = self._owner()
            if owner and owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RepoLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
