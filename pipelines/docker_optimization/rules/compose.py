"""Compose rules: resource limits (CO001, CO002), restarts and logs (CO005, CO009); with the CPU fix.

Service health (CO003, CO004) is in ``compose_health.py``; build caches, contexts and the schema (CO006,
CO007, CO008, CO010) in ``compose_build.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.tokens import CommentToken

from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization import policy
from agent_pipelines.pipelines.docker_optimization.model import variants
from agent_pipelines.pipelines.docker_optimization.model.compose import BuildSpec, ComposeFile, RoundTrip
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, rule

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

COMPOSE_CPU_FIX = Fix("compose-cpu")

HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"
# Log drivers that rotate by default (local) or don't keep the logs on the host's disk.
LOG_DRIVERS_BOUNDED = frozenset(
    {"local", "none", "syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "etwlogs", "gcplogs", "logentries"}
)
# A registry host is the first path component of a reference when it has a "." or ":" or is localhost.
_REGISTRY_HOST = re.compile(r"^(?:localhost|[^/]*[.:][^/]*)/")


def limits(service: dict) -> dict:
    deploy = _mapping(service.get("deploy"))
    resources = _mapping(deploy.get("resources"))
    return _mapping(resources.get("limits"))


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _line(node: Any, key: object, default: int) -> int:
    """The 1-based line of ``key`` (a mapping key or a list index) in a round-trip node."""
    try:
        lines = node.lc
        found = lines.item(key) if isinstance(node, list) else lines.key(key)
        return found[0] + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return default


def _build_of(compose: ComposeFile, name: str) -> BuildSpec | None:
    return next((b for b in compose.builds if b.service == name), None)


@dataclass(frozen=True)
class Dependency:
    service: str
    on: str
    condition: str  # "" for the short syntax (which means service_started)
    line: int


def dependencies(compose: ComposeFile, name: str) -> list[Dependency]:
    """The ``depends_on`` entries of one service, short or long syntax, with their lines."""
    svc = _mapping(compose.services.get(name))
    deps = svc.get("depends_on")
    start = compose.line_of(name)
    default = _line(svc, "depends_on", start)

    def line(key: object) -> int:  # an alias or a merged (<<) node was written above: point at this service
        found = _line(deps, key, default)
        return found if found >= start else default

    if isinstance(deps, list):
        return [Dependency(name, str(d), "", line(i)) for i, d in enumerate(deps)]
    return [
        Dependency(name, str(d), str(_mapping(v).get("condition") or ""), line(d)) for d, v in _mapping(deps).items()
    ]


@rule(
    "CO001",
    "service-without-cpu-limit",
    Category.reliability,
    Severity.warning,
    "service",
    fix=COMPOSE_CPU_FIX,
    safety=Applicability.unsafe,
    phase="compose",
)
def service_without_cpu_limit(svc) -> Iterable[Hit]:
    """A compose service has no CPU limit.

    A service defined again in variant files of the same directory
    (compose.full.yaml patching compose.yaml's service) is reported once, on
    the first file that lacks the limit, naming the others; a patch without
    `image:` or `build:` has the limit of the service it patches. The fix
    writes the reported file only: a variant that redefines the service
    completely is reported again once the first file is fixed.

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

    Fix: writes `deploy.resources.limits.cpus` (and `reservations.cpus`
    when it has one) for each service of the file without a limit.

    Fix safety: a CPU limit is a number only someone who knows the
    service's load can choose, and it changes how the service runs. The
    fix takes it from `.pipeline.yaml` and is then safe:

        policy:
          services:
            api: {cpus: "0.5", cpus_reservation: "0.25"}

    Otherwise the fix is unsafe: it derives the limit from the service's
    own memory limit (1 CPU per GiB, 0.25 minimum, quarter steps;
    reservation half), says the values and why in the task and commit
    message, and leaves a service with neither alone. The cores of the
    machine running this tool are never used: they say nothing about where
    the service runs.
    """
    data = svc.effective  # a variant file's patch gets its limits from the service it patches
    if "cpus" in data or "cpus" in limits(data):
        return
    yield Hit(svc.line, f"service {svc.name} has no CPU limit", f"{svc.name}:")


@rule("CO002", "service-without-memory-limit", Category.reliability, Severity.warning, "service")
def service_without_memory_limit(svc) -> Iterable[Hit]:
    """A compose service has no memory limit.

    No fix: the right figure depends on what the service does, so a person
    picks it (CO001's unsafe CPU fix then derives a CPU share from it).

    Why: without a limit one leaking or overloaded container can use all the
    host's memory; the kernel's OOM killer then picks a victim, which may be
    the database next to it rather than the culprit.

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
                limits: {memory: 512M}
    """
    data = svc.effective
    if "mem_limit" in data or "memory" in limits(data):
        return
    yield Hit(svc.line, f"service {svc.name} has no memory limit", f"{svc.name}:")


# -- restarts and logs ---------------------------------------------------------------------


def one_shots(compose: ComposeFile) -> set[str]:
    """Services another waits for with ``condition: service_completed_successfully`` (jobs, not daemons)."""
    return {d.on for name in compose.services for d in dependencies(compose, str(name)) if d.condition == COMPLETED}


@rule("CO005", "service-without-restart-policy", Category.reliability, Severity.warning, "service")
def service_without_restart_policy(svc) -> Iterable[Hit]:
    """A long-running compose service has no restart policy.

    Services that another waits for with `condition: service_completed_successfully`
    are one-shot jobs and are left alone; `restart: "no"` counts as a decision.
    A variant file that only patches a service (no `image:`, no `build:`)
    gets the policy of the service it patches.

    Why: without `restart:` (or `deploy.restart_policy`) a crash, an OOM kill
    or a host reboot leaves the service down until someone runs `up` again.

    Example:
        services:
          worker:
            build: ./worker

    Use instead:
        services:
          worker:
            build: ./worker
            restart: unless-stopped
    """
    data = svc.effective
    if svc.file is not None and str(svc.name) in one_shots(svc.file):
        return
    if "restart" in data or "restart_policy" in _mapping(data.get("deploy")):
        return
    yield Hit(svc.line, f"service {svc.name} has no restart policy: a crash or a reboot leaves it down", f"{svc.name}:")


@rule("CO009", "service-without-log-rotation", Category.reliability, Severity.info, "service")
def service_without_log_rotation(svc) -> Iterable[Hit]:
    """A long-running compose service logs to json-file without a size limit.

    Fires when `logging` has no driver (Docker's default is json-file) or
    `json-file`, and no `max-size` option. A daemon-wide default in
    /etc/docker/daemon.json may already rotate logs: then this is noise.
    A variant file that only patches a service gets the logging of the
    service it patches.

    Why: the json-file driver keeps every line forever; a chatty service fills
    the host's disk, and then every container on it fails.

    Example:
        services:
          api:
            build: ./api

    Use instead:
        services:
          api:
            build: ./api
            logging:
              options: {max-size: 10m, max-file: "3"}
    """
    if svc.file is not None and str(svc.name) in one_shots(svc.file):
        return
    logging = _mapping(svc.effective.get("logging"))
    if str(logging.get("driver") or "json-file") in LOG_DRIVERS_BOUNDED:
        return
    if "max-size" in _mapping(logging.get("options")):
        return
    yield Hit(
        svc.line,
        f"service {svc.name} logs to json-file without max-size: its logs grow until the disk is full",
        f"{svc.name}: logging",
    )


# -- fixes -----------------------------------------------------------------------------------------------
# Compose fixes: edits through ruamel.yaml round-trip, touching only the keys they mean to.


def _split_comment(token) -> tuple[str, str]:
    """(end-of-line comment with its newline, what follows: full-line comments and blank lines)."""
    value = token.value if token is not None else ""
    if value.startswith("#"):
        eol, _, rest = value.partition("\n")
        return eol + "\n", rest
    return "", value[1:] if value.startswith("\n") else value


def _comment(text: str, like) -> CommentToken:
    return CommentToken(text, like.start_mark, None)


def _last_slot(node: object) -> tuple[object, object] | None:
    """(container, key) of the last line a block node writes: where ruamel keeps what follows the node
    (blank lines, comments above the next key)."""
    slot = None
    while isinstance(node, (CommentedMap, CommentedSeq)) and not node.fa.flow_style():
        keys = [k for k, _ in node.non_merged_items()] if isinstance(node, CommentedMap) else list(range(len(node)))
        if not keys:
            break
        slot, node = (node, keys[-1]), node[keys[-1]]
        if getattr(getattr(node, "anchor", None), "value", None):
            break  # an anchored node's comments belong where it is defined, maybe far from here
    return slot


def _token(slot: tuple[Any, object]):  # (a ruamel container, a key in it)
    container, key = slot
    entry = container.ca.items.get(key)
    position = 2 if isinstance(container, CommentedMap) else 0
    return entry[position] if entry and len(entry) > position else None


def _set_token(slot: tuple[Any, object], token) -> None:
    container, key = slot
    position = 2 if isinstance(container, CommentedMap) else 0
    entry = container.ca.items.setdefault(key, [None, None, None, None])
    entry[position] = token


def detach_trailer(node: object) -> tuple[str, object] | None:
    """Take the blank lines and comments that follow a block node off its last line (to put them back
    after an edit that appends to it, so they don't end up between the old last line and the new ones)."""
    slot = _last_slot(node)
    token = _token(slot) if slot else None
    if slot is None or token is None:
        return None
    eol, rest = _split_comment(token)
    if not rest:
        return None
    _set_token(slot, _comment(eol, token) if eol else None)
    return rest, token


def attach_trailer(node: object, trailer: tuple[str, object] | None) -> None:
    """Put what ``detach_trailer`` took after the node's (new) last line."""
    slot = _last_slot(node) if trailer else None
    if slot is None or trailer is None:
        return
    rest, like = trailer
    current = _token(slot)
    eol = _split_comment(current)[0] if current is not None else ""
    _set_token(slot, _comment((eol or "\n") + rest, like))


def _cpu_plan(project: Project, file: str) -> list[tuple[str, dict, policy.CpuValues | None]]:
    """(service, its node, the CPU values it would get) for each service of ``file`` the fix would change."""
    text = project.text(file)
    if text is None:
        raise FixError(f"{file} no longer exists")
    doc = RoundTrip(text)
    chosen = policy.load(project)
    bases = variants.bases(project.composes)
    directory = file.rpartition("/")[0]
    out = []
    for name, svc in (doc.data.get("services") or {}).items():
        if not isinstance(svc, dict) or "cpus" in svc or "cpus" in limits(svc):
            continue
        base = bases.get((directory, str(name)))
        if variants.is_patch(svc) and base is not None and base[0].path != file:
            continue  # a variant's patch: the limit belongs to the service it patches, in its own file
        memory = limits(svc).get("memory") or svc.get("mem_limit")
        out.append((str(name), svc, policy.cpu_values(str(name), memory, chosen)))
    return out


def _describe(planned: list[tuple[str, dict, policy.CpuValues | None]]) -> str:
    said = []
    for name, _, values in planned:
        if values is None:
            said.append(
                f"{name}: left alone (no policy.services.{name}.cpus in .pipeline.yaml and no memory "
                "limit to derive one from)"
            )
        else:
            reservation = f", reservation {values.reservation}" if values.reservation else ""
            said.append(f"{name}: cpus {values.limit}{reservation} ({values.why})")
    return "; ".join(said)


def assess_cpu(project: Project, file: str) -> tuple[bool, str]:
    """Safe only when .pipeline.yaml gives every service's CPU limit; otherwise unsafe, naming the guesses."""
    planned = _cpu_plan(project, file)
    safe = bool(planned) and all(v is not None and v.configured for _, _, v in planned)
    how = "values from .pipeline.yaml" if safe else "unsafe: values not all configured"
    return safe, f"CPU limits to write ({how}): {_describe(planned)}."


@COMPOSE_CPU_FIX.applies(
    "Set CPU limits and reservations for the services in {file}",
    compose_keys=(("services", "*", "deploy", "resources"), ("services", "*", "deploy")),
    assess=assess_cpu,
)
def add_cpu_limits(project: Project, task: Task, design: Design) -> dict[str, str]:
    doc = RoundTrip(project.text(task.file) or "")
    services = doc.data.get("services") or {}
    planned = _cpu_plan(project, task.file)
    if not planned:
        raise AlreadyResolved(f"every service in {task.file} has a CPU limit: an earlier change resolved it")
    # A safe task writes only configured values (the policy may have changed since it was planned).
    usable = [
        (n, v) for n, _, v in planned if v is not None and (v.configured or task.applicability is Applicability.unsafe)
    ]
    if not usable:
        raise Declined(
            f"no CPU limit to write in {task.file} without inventing one: {_describe(planned)}",
            "set policy.services.<name>.cpus in .pipeline.yaml (or run with --unsafe-fixes to derive "
            "them from memory limits)",
        )
    for name, values in usable:
        svc = services[name] if name in services else next(v for k, v in services.items() if str(k) == name)
        trailer = detach_trailer(svc)
        deploy = svc.setdefault("deploy", CommentedMap())
        resources = deploy.setdefault("resources", CommentedMap())
        resources.setdefault("limits", CommentedMap())["cpus"] = values.limit
        if values.reservation:
            resources.setdefault("reservations", CommentedMap())["cpus"] = values.reservation
        attach_trailer(svc, trailer)
    return {task.file: doc.dump()}
