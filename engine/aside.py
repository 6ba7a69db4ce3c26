"""Work done aside: in a forked child, on another core, while the caller goes on.

``pipeline analyze`` is CPU-bound Python: one core. A forked child starts
with the parent's memory (the loaded project, copy-on-write), does its share
and sends the answer back through a pipe with ``marshal`` (plain data only).

It only ever speeds things up: where fork is missing, or threads run (a
child forked from a threaded process can deadlock on a lock another thread
held), or the child fails in any way, ``result()`` is None and the caller
does the work itself. The child is always reaped; ``close()`` drops an
answer nobody collected.
"""

from __future__ import annotations

import marshal
import os
import threading
from collections.abc import Callable
from typing import Any

ENABLED = hasattr(os, "fork")  # tests turn it off to compare with the one-process answer


class Aside:
    def __init__(self, work: Callable[[], Any]) -> None:  # its answer must be marshal-able
        self._child: tuple[int, int] | None = None
        if not ENABLED or threading.active_count() > 1:
            return
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # no process to spare (ulimit, memory): the caller does the work
            os.close(read_end)
            os.close(write_end)
            return
        if pid == 0:  # the child: work, write the answer, leave without the parent's exit handlers
            status = 1
            try:
                os.close(read_end)
                data = marshal.dumps(work())
                with os.fdopen(write_end, "wb") as out:
                    out.write(data)
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        self._child = (pid, read_end)

    @property
    def running(self) -> bool:
        return self._child is not None

    def result(self) -> Any:
        """The child's answer; None when there was no child or it failed (the child is reaped either way)."""
        if self._child is None:
            return None
        pid, read_end = self._child
        self._child = None
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            return None
        try:
            return marshal.loads(data)
        except (EOFError, ValueError, TypeError):
            return None

    def close(self) -> None:
        self.result()

    def __enter__(self) -> Aside:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
