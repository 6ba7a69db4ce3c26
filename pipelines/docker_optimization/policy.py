"""Resource policy: how many CPUs a service gets, derived from its memory limit and the host.

The default: one CPU per GiB of memory limit, at least 0.25 and at most the
host's core count; a service without a memory limit gets half the host's
cores. The reservation is half the limit. Both are strings in compose
(``cpus: "0.5"``), rounded to a quarter CPU.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}

STATEMENT = ("CPU limit = 1 CPU per GiB of the service's memory limit (0.25 minimum, host cores maximum; "
             "half the host's cores without a memory limit); reservation = half the limit; quarter-CPU steps")


def parse_bytes(value: object) -> int | None:
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?b?)\s*", str(value).lower())
    if not match:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _quarter(x: float) -> float:
    return max(0.25, round(x * 4) / 4)


def cpu_policy(memory_limit: object, host_cores: int) -> tuple[str, str]:
    """(limit, reservation) as compose strings, e.g. ``cpu_policy("512M", 2) == ("0.5", "0.25")``."""
    mem = parse_bytes(memory_limit)
    limit = min(float(host_cores), _quarter(mem / 1024**3)) if mem else max(0.25, host_cores / 2)
    reservation = _quarter(limit / 2)
    return f"{limit:g}", f"{reservation:g}"
