"""Whether the process a run record names is still the one that wrote it.

A pid alone is not enough: after a crash or a reboot the number names
another process. The record keeps the pid with its start time from /proc
(clock ticks since boot, prefixed by the boot id), so a reused pid reads
as dead. Where /proc is missing, a live pid is taken as alive.
"""

from __future__ import annotations

import os
from pathlib import Path


def start_token(pid: int) -> str:
    """``<boot id>:<start ticks>`` of a live process, "" when /proc does not say (not Linux, or no such pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return f"{boot}:{fields[19]}" if len(fields) > 19 else ""


def alive(pid: int, token: str = "") -> bool:
    """Whether process ``pid`` runs and, when ``token`` was recorded, is the same process (not a reused pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if token and Path("/proc").is_dir():
        current = start_token(pid)
        return current == token
    return True


def lead_group() -> None:
    """Make this process the leader of its own process group, so its children (git and the tools a pipeline runs)
    can be stopped with it. Not when it already leads one, nor when it shares the terminal's foreground
    group (Ctrl-C there reaches every process in it already; leaving it would cut the run off the terminal)."""
    if os.getpgrp() == os.getpid():
        return
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return
    except OSError:
        pass
    try:
        os.setpgid(0, 0)
    except OSError:
        pass


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of group ``pgid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


# The guard: holds the lock's file (same open file, same flock) until the run's process group is empty.
GUARD = """
import os, signal, sys, time
sys.path[:0] = [sys.argv[3]]
from procs import group_members
pgid, done = int(sys.argv[1]), int(sys.argv[2])
if os.read(done, 1):
    sys.exit(0)               # released: the run ended normally
try:
    os.killpg(pgid, signal.SIGKILL)   # the run died: its children die with it
except ProcessLookupError:
    sys.exit(0)
if os.path.isdir("/proc"):
    while group_members(pgid):
        time.sleep(0.05)
"""


class Guard:
    """Keeps a lock held until every process of the run's group is gone, even after a SIGKILL of the run.

    Why: the flock dies with the run's process, but its children (a ``git reset --hard`` in the
    worktree) did not: the next run could take the lock while they still wrote. A small process
    outside the group shares the lock's open file; when the run dies (its end of a pipe closes without
    a word) it kills the group, waits until it is empty, then exits, and the lock is free.
    Only when this process leads its group (see ``lead_group``): another group is not ours to kill.
    """

    def __init__(self, lock_fd: int) -> None:
        import subprocess
        import sys

        self.proc = None
        self._done = None
        if os.getpgrp() != os.getpid():
            return
        read, self._done = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    GUARD,
                    str(os.getpgrp()),
                    str(read),
                    str(Path(__file__).resolve().parent),
                ],
                pass_fds=(lock_fd, read),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            os.close(read)

    def release(self) -> None:
        """The run ended normally: the guard exits without killing anything."""
        if self._done is not None:
            try:
                os.write(self._done, b"1")
            finally:
                os.close(self._done)
                self._done = None
        if self.proc is not None:
            self.proc.wait()
            self.proc = None


def descendants() -> dict[int, str]:
    """Every live descendant process of this one, pid -> command line, read from /proc (for leak checks)."""
    me, parents, commands = os.getpid(), {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        commands[int(entry)] = cmd
    found = {}
    for pid, cmd in commands.items():
        p = pid
        while p in parents and p not in (0, 1, me):
            p = parents[p]
        if p == me and pid != me:
            found[pid] = cmd
    return found


def open_fds() -> set[str]:
    """What this process's open file descriptors point at (for leak checks)."""
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return fds
