"""Compose fixes: edits through ruamel.yaml round-trip, touching only the keys they mean to."""

from __future__ import annotations

from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization.compose import RoundTrip
from pipelines.docker_optimization.fixes import fix
from pipelines.docker_optimization.policy import cpu_policy
from pipelines.docker_optimization.project import Project
from pipelines.docker_optimization.rules.compose import limits


@fix("compose-cpu", "Set CPU limits and reservations for the services in {file}",
     compose_keys=(("services", "*", "deploy", "resources"), ("services", "*", "deploy")))
def add_cpu_limits(project: Project, task: Task, design: Design) -> dict[str, str]:
    text = project.text(task.file)
    if text is None:
        raise FixError(f"{task.file} no longer exists")
    doc = RoundTrip(text)
    services = doc.data.get("services") or {}
    host_cores = int(design.policies.get("host_cores", "2") or 2)
    changed = []
    for name, svc in services.items():
        if not isinstance(svc, dict) or "cpus" in svc or "cpus" in limits(svc):
            continue
        limit, reservation = cpu_policy(limits(svc).get("memory") or svc.get("mem_limit"), host_cores)
        deploy = svc.setdefault("deploy", {})
        resources = deploy.setdefault("resources", {})
        resources.setdefault("limits", {})["cpus"] = limit
        resources.setdefault("reservations", {})["cpus"] = reservation
        changed.append(name)
    if not changed:
        raise AlreadyResolved(f"every service in {task.file} has a CPU limit: an earlier change resolved it")
    return {task.file: doc.dump()}
