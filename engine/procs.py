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
    fields = stat[stat.rindex(")") + 2:].split()   # the command name may hold spaces and parentheses
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
