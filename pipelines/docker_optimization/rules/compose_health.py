"""Compose rules CO003 and CO004: dependencies that don't wait for health, and health checks whose program
the image lacks; with the fix that makes dependencies wait for healthy services."""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization.model.compose import ComposeFile, RoundTrip
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from agent_pipelines.pipelines.docker_optimization.model.image_tools import tools_in_final_stage
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, per_file, rule
from agent_pipelines.pipelines.docker_optimization.rules.compose import (
    HEALTHY,
    Dependency,
    _build_of,
    _comment,
    _line,
    _mapping,
    _split_comment,
    attach_trailer,
    dependencies,
    detach_trailer,
)

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

COMPOSE_HEALTHY_DEPS_FIX = Fix("compose-healthy-deps")

# A healthcheck's shell command split into simple commands; the words that are not programs.
_SHELL_SPLIT = re.compile(r"&&|\|\||[;|&()]|\bthen\b|\bdo\b|\belse\b")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SHELL_BUILTINS = frozenset(
    {
        "exit",
        "true",
        "false",
        "test",
        "[",
        "[[",
        "echo",
        "printf",
        "cd",
        "export",
        "set",
        "exec",
        "if",
        "fi",
        "then",
        "else",
        "elif",
        "while",
        "until",
        "for",
        "done",
        "case",
        "esac",
        "!",
        "{",
        "}",
        "read",
        "return",
        "kill",
        "wait",
        ":",
        ".",
        "source",
        "command",
        "type",
        "ulimit",
        "umask",
        "eval",
        "shift",
        "local",
    }
)


# -- health --------------------------------------------------------------------------------


def healthcheck_disabled(healthcheck: object) -> bool:
    hc = _mapping(healthcheck)
    test = hc.get("test")
    return bool(hc.get("disable")) or test == "NONE" or (isinstance(test, list) and test[:1] == ["NONE"])


def _stage_index(df: Dockerfile, target: str) -> int:
    if not target:
        return df.final_stage
    return next((s.index for s in df.stages if s.name.lower() == target.lower()), -1)


def dockerfile_healthcheck(df: Dockerfile, target: str = "") -> bool:
    """Does the image built from ``df`` (stage ``target``, else the last) declare a HEALTHCHECK?

    Follows ``FROM <earlier stage>``; ``HEALTHCHECK NONE`` turns an inherited one off.
    An external base image's own healthcheck is unknown and counts as none.
    """
    index = _stage_index(df, target)
    seen = set()
    while 0 <= index < len(df.stages) and index not in seen:
        seen.add(index)
        checks = [i for i in df.of("HEALTHCHECK") if i.stage == index]
        if checks:
            return checks[-1].value[:1] != ("NONE",)
        stage = df.stages[index]
        index = next((s.index for s in df.stages[:index] if s.name and s.name.lower() == stage.base.lower()), -1)
    return False


def has_healthcheck(project: Project, compose: ComposeFile, name: str) -> bool:
    """Does service ``name`` get a healthcheck: its compose ``healthcheck`` or its built image's HEALTHCHECK."""
    svc = _mapping(compose.services.get(name))
    if "healthcheck" in svc:
        return not healthcheck_disabled(svc["healthcheck"])
    build = _build_of(compose, name)
    df = project.dockerfiles.get(build.dockerfile) if build else None
    return bool(build and df and not df.error and dockerfile_healthcheck(df, build.target))


def unhealthy_waits(project: Project, compose: ComposeFile) -> list[Dependency]:
    """Dependencies that start as soon as a service with a healthcheck has *started*."""
    found = []
    for name in compose.services:
        for dep in dependencies(compose, str(name)):
            if (
                dep.condition in ("", "service_started")
                and dep.on in compose.services
                and has_healthcheck(project, compose, dep.on)
            ):
                found.append(dep)
    return found


@rule(
    "CO003",
    "depends-on-without-healthy-condition",
    Category.reliability,
    Severity.warning,
    "project",
    reads=("composes", "dockerfiles"),
    fix=COMPOSE_HEALTHY_DEPS_FIX,
    safety=Applicability.unsafe,
    phase="compose",
)
def depends_on_without_healthy_condition(project: Project) -> Iterable[Hit]:
    """A service depends on a service that has a healthcheck but only waits for it to start.

    Fires on the short syntax (`depends_on: [redis]`) and on the long one with
    `condition: service_started`, when the dependency has a healthcheck (its
    compose `healthcheck`, or a HEALTHCHECK in the Dockerfile it builds).

    Why: "started" means the container process exists, not that the database
    accepts connections; the dependent service races it at every `up` and
    fails or retries at boot. The healthcheck already says when it is ready.

    Example:
        services:
          api:
            depends_on: [redis]
          redis:
            image: redis:7
            healthcheck: {test: ["CMD", "redis-cli", "ping"]}

    Use instead:
        services:
          api:
            depends_on:
              redis:
                condition: service_healthy

    Fix safety: unsafe. The image is unchanged, but the stack starts
    differently: a dependent now waits for its dependency's health check,
    and when that check never passes (a missing tool, a slow start) the
    dependent never starts where it used to. Check the health checks pass
    (`--verify-builds` starts each changed image) before applying it.
    """
    # A compose file's hits are kept while it and the Dockerfiles its builds name are the same objects.
    yield from per_file(
        project,
        "CO003",
        [c for c in project.composes if not c.error],
        lambda compose: _waits_hits(project, compose),
        lambda compose: tuple(project.dockerfiles.get(b.dockerfile) for b in compose.builds),
    )


def _waits_hits(project: Project, compose: ComposeFile) -> Iterable[Hit]:
    for dep in unhealthy_waits(project, compose):
        how = "depends_on" if not dep.condition else f"condition {dep.condition}"
        yield Hit(
            dep.line,
            f"service {dep.service} waits only for {dep.on} to start ({how}), "
            f"though {dep.on} has a healthcheck: use condition: service_healthy",
            f"{dep.service}: depends_on {dep.on}",
            file=compose.path,
        )


# -- healthcheck tools ---------------------------------------------------------------------


def healthcheck_programs(test: object) -> list[str]:
    """The programs a compose healthcheck ``test`` runs (basenames; shell builtins left out)."""
    if isinstance(test, list) and test:
        kind = str(test[0]).upper()
        if kind == "CMD":
            return [posixpath.basename(str(test[1]))] if len(test) > 1 else []
        if kind != "CMD-SHELL":
            return []
        command = " ".join(map(str, test[1:]))
    elif isinstance(test, str) and test.strip():
        command = test
    else:
        return []
    programs = []
    for part in _SHELL_SPLIT.split(command):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        words = [w for w in words if not _ASSIGNMENT.match(w)]
        if words and words[0] not in SHELL_BUILTINS and "$" not in words[0]:
            programs.append(posixpath.basename(words[0]))
    return programs


@rule(
    "CO004",
    "healthcheck-tool-missing",
    Category.reliability,
    Severity.error,
    "project",
    reads=("composes", "dockerfiles"),
)
def healthcheck_tool_missing(project: Project) -> Iterable[Hit]:
    """A compose healthcheck runs a program the service's image doesn't have.

    Fires when the service builds a Dockerfile of the repository whose final
    stage (or build target) is known not to have the program: e.g. `curl`
    on a `python:*-slim` base that never installs it. Unknown base images
    stay quiet.

    Why: the check fails with "executable file not found" forever, so the
    service is never healthy: everything that waits for it with
    `condition: service_healthy` never starts, and orchestrators restart it.

    Example:
        healthcheck:
          test: ["CMD", "curl", "-f", "http://localhost:8000/health"]
        # built FROM python:3.12-slim, which has no curl

    Use instead:
        healthcheck:
          test: ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8000/health')"]
    """
    for compose in project.composes:
        if compose.error:
            continue
        for name, svc in compose.services.items():
            hc = _mapping(_mapping(svc).get("healthcheck"))
            build = _build_of(compose, str(name))
            if not hc or healthcheck_disabled(hc) or build is None:
                continue
            df = project.dockerfiles.get(build.dockerfile)
            if df is None or df.error or _stage_index(df, build.target) != df.final_stage:
                continue  # only the final stage's programs are known
            tools = tools_in_final_stage(df)
            missing = [p for p in healthcheck_programs(hc.get("test")) if tools.has(p) is False]
            if missing:
                yield Hit(
                    _line(hc, "test", compose.line_of(str(name))),
                    f"service {name}'s healthcheck runs {', '.join(missing)}, which the image built from "
                    f"{build.dockerfile} doesn't have: the service never becomes healthy",
                    f"{name}: healthcheck {' '.join(missing)}",
                    file=compose.path,
                )


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
    for value in node.values() if isinstance(node, dict) else node:
        _keep_anchors(value, seen)


def _shared_beyond_depends_on(data: object, node: object) -> bool:
    return any(len(p) != 3 or p[0] != "services" or p[2] != "depends_on" for p in _where(data, node))


@COMPOSE_HEALTHY_DEPS_FIX.applies(
    "Wait for healthy dependencies in {file}", compose_keys=(("services", "*", "depends_on"),)
)
def wait_for_healthy_dependencies(project: Project, task: Task, design: Design) -> dict[str, str]:
    compose = next((c for c in project.composes if c.path == task.file), None)
    if compose is None or compose.error:
        raise FixError(f"{task.file} is missing or no longer parses")
    waits = unhealthy_waits(project, compose)
    if not waits:
        raise AlreadyResolved(
            f"every dependency in {task.file} on a service with a healthcheck waits for it "
            "to be healthy: an earlier change resolved it"
        )
    doc = RoundTrip(compose.text)
    services = doc.data["services"]
    healthy: dict[str, set[str]] = {}
    for dep in waits:
        healthy.setdefault(dep.service, set()).add(dep.on)
    done: set[int] = set()
    for name in healthy:
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
            raise Declined(f"depends_on of {name} is neither a list nor a mapping")
        attach_trailer(svc, trailer)
        done.add(id(node))
    _keep_anchors(doc.data)
    return {task.file: doc.dump()}
