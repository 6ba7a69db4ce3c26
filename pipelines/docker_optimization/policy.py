"""Resource policy: the CPU limits a fix may write, and where each figure comes from.

A fix never invents a number. A service's CPU limit comes from, in order:

1. the repository's ``.pipeline.yaml`` (``policy.services.<name>.cpus`` and,
   optionally, ``cpus_reservation``): a person chose it, so writing it is safe;
2. the service's own memory limit, by a stated rule of thumb (1 CPU per GiB,
   0.25 minimum, quarter-CPU steps; reservation half the limit): a guess
   about the service's load, so the fix is unsafe and says the values;
3. nothing: the service is left for a person (no value is made up).

The machine running the tool says nothing about the machine that runs the
service, so its core count is never used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent_pipelines.pipelines.docker_optimization.ignores import Policy, project_config

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}

STATEMENT = (
    "CPU limits: policy.services.<name>.cpus in .pipeline.yaml (safe); otherwise 1 CPU per GiB of the "
    "service's memory limit, 0.25 minimum, quarter-CPU steps, reservation half the limit (unsafe: a guess); "
    "a service with neither is left alone"
)


def parse_bytes(value: object) -> int | None:
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?b?)\s*", str(value).lower())
    if not match:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _quarter(x: float) -> float:
    return max(0.25, round(x * 4) / 4)


def cpu_from_memory(memory_limit: object) -> tuple[str, str] | None:
    """(limit, reservation) derived from a memory limit, e.g. ``cpu_from_memory("512M") == ("0.5", "0.25")``;
    None without a readable memory limit."""
    mem = parse_bytes(memory_limit)
    if not mem:
        return None
    limit = _quarter(mem / 1024**3)
    return f"{limit:g}", f"{_quarter(limit / 2):g}"


@dataclass(frozen=True)
class CpuValues:
    limit: str
    reservation: str | None  # None: not configured, so not written
    configured: bool
    why: str


def cpu_values(name: str, memory_limit: object, policy: Policy) -> CpuValues | None:
    """The CPU figures for service ``name`` and why; None when neither the policy nor a memory limit gives one."""
    chosen = policy.services.get(name, {})
    if "cpus" in chosen:
        return CpuValues(
            chosen["cpus"], chosen.get("cpus_reservation"), True, f"policy.services.{name} in .pipeline.yaml"
        )
    derived = cpu_from_memory(memory_limit)
    if derived is None:
        return None
    return CpuValues(
        derived[0], derived[1], False, f"derived from its memory limit {memory_limit} (1 CPU per GiB, reservation half)"
    )


def load(project) -> Policy:
    """The ``policy:`` of the repository's ``.pipeline.yaml`` or ``[tool.pipeline]`` (empty without one; bad
    entries left out), found as the analysis finds it (``ignores.find_config``)."""
    return project_config(project).policy
