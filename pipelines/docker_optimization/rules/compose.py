"""Compose rules: resource limits and service health."""

from __future__ import annotations

from typing import Iterable

from engine.artifacts import Applicability, Category, Severity
from pipelines.docker_optimization.rules import Hit, rule


def limits(service: dict) -> dict:
    deploy = service.get("deploy") if isinstance(service.get("deploy"), dict) else {}
    resources = deploy.get("resources") if isinstance(deploy.get("resources"), dict) else {}
    found = resources.get("limits") if isinstance(resources.get("limits"), dict) else {}
    return found


@rule("CO001", "service-without-cpu-limit", Category.reliability, Severity.warning, "service",
      fix=Applicability.safe, fix_group="compose-cpu", phase="compose")
def service_without_cpu_limit(svc) -> Iterable[Hit]:
    """A compose service has no CPU limit.

    Why: one busy container (a build step, a runaway worker) can take every
    core of the host and starve the others, including their health checks.

    Example:
        services:
          worker:
            build: ./worker

    Use instead:
        services:
          worker:
            build: ./worker
            deploy:
              resources:
                limits: {cpus: "1.0"}
                reservations: {cpus: "0.5"}
    """
    if "cpus" in svc.data or "cpus" in limits(svc.data):
        return
    yield Hit(svc.line, f"service {svc.name} has no CPU limit", f"{svc.name}:")
