"""Compose fixes: edits through ruamel.yaml round-trip, touching only the keys they mean to."""

from __future__ import annotations

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.tokens import CommentToken

from engine.artifacts import Applicability, Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization import policy
from pipelines.docker_optimization.model import variants
from pipelines.docker_optimization.model.compose import RoundTrip
from pipelines.docker_optimization.model.project import Project
from pipelines.docker_optimization.rules.compose import COMPOSE_CPU_FIX, COMPOSE_HEALTHY_DEPS_FIX
from pipelines.docker_optimization.rules.compose import HEALTHY, limits, unhealthy_waits


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


def _token(slot: tuple[object, object]):
    container, key = slot
    entry = container.ca.items.get(key)
    position = 2 if isinstance(container, CommentedMap) else 0
    return entry[position] if entry and len(entry) > position else None


def _set_token(slot: tuple[object, object], token) -> None:
    container, key = slot
    position = 2 if isinstance(container, CommentedMap) else 0
    entry = container.ca.items.setdefault(key, [None, None, None, None])
    entry[position] = token


def detach_trailer(node: object) -> tuple[str, object] | None:
    """Take the blank lines and comments that follow a block node off its last line (to put them back
    after an edit that appends to it, so they don't end up between the old last line and the new ones)."""
    slot = _last_slot(node)
    token = _token(slot) if slot else None
    if token is None:
        return None
    eol, rest = _split_comment(token)
    if not rest:
        return None
    _set_token(slot, _comment(eol, token) if eol else None)
    return rest, token


def attach_trailer(node: object, trailer: tuple[str, object] | None) -> None:
    """Put what ``detach_trailer`` took after the node's (new) last line."""
    slot = _last_slot(node) if trailer else None
    if slot is None:
        return
    rest, like = trailer
    current = _token(slot)
    eol = _split_comment(current)[0] if current is not None else ""
    _set_token(slot, _comment((eol or "\n") + rest, like))


def _cpu_plan(project: Project, file: str) -> list[tuple[str, object, policy.CpuValues | None]]:
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


def _describe(planned: list[tuple[str, object, policy.CpuValues | None]]) -> str:
    said = []
    for name, _, values in planned:
        if values is None:
            said.append(f"{name}: left alone (no policy.services.{name}.cpus in .pipeline.yaml and no memory "
                        "limit to derive one from)")
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


@COMPOSE_CPU_FIX.applies("Set CPU limits and reservations for the services in {file}",
     compose_keys=(("services", "*", "deploy", "resources"), ("services", "*", "deploy")), assess=assess_cpu)
def add_cpu_limits(project: Project, task: Task, design: Design) -> dict[str, str]:
    doc = RoundTrip(project.text(task.file) or "")
    services = doc.data.get("services") or {}
    planned = _cpu_plan(project, task.file)
    if not planned:
        raise AlreadyResolved(f"every service in {task.file} has a CPU limit: an earlier change resolved it")
    # A safe task writes only configured values (the policy may have changed since it was planned).
    usable = [(n, v) for n, _, v in planned
              if v is not None and (v.configured or task.applicability is Applicability.unsafe)]
    if not usable:
        raise FixError(f"no CPU limit to write in {task.file} without inventing one: {_describe(planned)}; set "
                       "policy.services.<name>.cpus in .pipeline.yaml (or run with --unsafe-fixes to derive "
                       "them from memory limits)")
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


def _long_form(entries: CommentedSeq, healthy: set[str]) -> CommentedMap:
    """A short-syntax depends_on list as the long syntax, its comments kept on the same entries.

    Dependencies in ``healthy`` wait for ``service_healthy``; the others keep the
    short syntax's meaning, ``service_started``. A flow list becomes a flow mapping.
    """
    out = CommentedMap()
    for index, name in enumerate(entries):
        value = CommentedMap([("condition", HEALTHY if str(name) in healthy else "service_started")])
        out[name] = value
        token = entries.ca.items.get(index, [None])[0]
        if token is None:
            continue
        eol, rest = _split_comment(token)
        if eol:
            out.ca.items[name] = [None, None, _comment(eol, token), None]
        if rest:  # full-line comments and blank lines after the entry stay after it
            value.ca.items["condition"] = [None, None, _comment("\n" + rest, token), None]
    if entries.fa.flow_style():
        out.fa.set_flow_style()
        for value in out.values():
            value.fa.set_flow_style()
    if entries.anchor.value:
        out.yaml_set_anchor(entries.anchor.value, always_dump=entries.anchor.always_dump)
    return out


def _wait_healthy(entries: CommentedMap, healthy: set[str]) -> None:
    """Set ``condition: service_healthy`` on long-syntax entries, in place, first key of each entry."""
    for name in list(entries):
        if str(name) not in healthy:
            continue
        value = entries[name]
        if isinstance(value, CommentedMap):
            if "condition" in value:
                value["condition"] = HEALTHY
            else:
                value.insert(0, "condition", HEALTHY)
            continue
        new = CommentedMap([("condition", HEALTHY)])
        token = (entries.ca.items.get(name) or [None, None, None])[2]
        if token is not None:  # "redis:  # cache" with no value: keep the comment on the key's line
            eol, rest = _split_comment(token)
            entries.ca.items[name][2] = _comment(eol, token) if eol else None
            if rest:
                new.ca.items["condition"] = [None, None, _comment("\n" + rest, token), None]
        entries[name] = new


def _where(data: object, target: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path at which the object ``target`` appears (anchors make one node appear several times)."""
    if data is target:
        return [path]
    found = []
    if isinstance(data, dict):
        for key, value in data.non_merged_items() if isinstance(data, CommentedMap) else data.items():
            found += _where(value, target, path + (str(key),))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _where(value, target, path + (str(index),))
    return found


def _fresh(node: object) -> object:
    """A copy of a node without anchors or comments (for a service that must stop sharing it)."""
    if isinstance(node, dict):
        return CommentedMap((k, _fresh(v)) for k, v in node.items())
    if isinstance(node, list):
        return CommentedSeq(_fresh(v) for v in node)
    return node


def _keep_anchors(node: object, seen: set[int] | None = None) -> None:
    """Keep every anchor as written, even one whose last alias the fix replaced."""
    seen = set() if seen is None else seen
    if id(node) in seen or not isinstance(node, (dict, list)):
        return
    seen.add(id(node))
    anchor = getattr(node, "anchor", None)
    if anchor is not None and anchor.value:
        anchor.always_dump = True
    for value in (node.values() if isinstance(node, dict) else node):
        _keep_anchors(value, seen)


def _shared_beyond_depends_on(data: object, node: object) -> bool:
    return any(len(p) != 3 or p[0] != "services" or p[2] != "depends_on" for p in _where(data, node))


@COMPOSE_HEALTHY_DEPS_FIX.applies("Wait for healthy dependencies in {file}",
     compose_keys=(("services", "*", "depends_on"),))
def wait_for_healthy_dependencies(project: Project, task: Task, design: Design) -> dict[str, str]:
    compose = next((c for c in project.composes if c.path == task.file), None)
    if compose is None or compose.error:
        raise FixError(f"{task.file} is missing or no longer parses")
    waits = unhealthy_waits(project, compose)
    if not waits:
        raise AlreadyResolved(f"every dependency in {task.file} on a service with a healthcheck waits for it "
                              "to be healthy: an earlier change resolved it")
    doc = RoundTrip(compose.text)
    services = doc.data["services"]
    healthy: dict[str, set[str]] = {}
    for dep in waits:
        healthy.setdefault(dep.service, set()).add(dep.on)
    done: set[int] = set()
    for name, deps in healthy.items():
        svc = services[name]
        node = svc["depends_on"]
        if id(node) in done:
            continue
        own = any(k == "depends_on" for k, _ in svc.non_merged_items())
        if not own or _shared_beyond_depends_on(doc.data, node):
            # inherited (<<: *defaults) or an alias of a node outside services: this service gets its own
            node = _fresh(node)
            trailer = detach_trailer(svc)
            svc["depends_on"] = node
            owners = [name]
        else:  # one node, maybe aliased by other services' depends_on: rewrite it once for all of them
            owners = [p[1] for p in _where(doc.data, node)]
            trailer = None
        wanted = set().union(*(healthy.get(o, set()) for o in owners))
        if isinstance(node, CommentedSeq):
            replacement = _long_form(node, wanted)
            for owner in owners:
                services[owner]["depends_on"] = replacement
        elif isinstance(node, CommentedMap):
            _wait_healthy(node, wanted)
        else:
            raise FixError(f"depends_on of {name} is neither a list nor a mapping")
        attach_trailer(svc, trailer)
        done.add(id(node))
    _keep_anchors(doc.data)
    return {task.file: doc.dump()}
