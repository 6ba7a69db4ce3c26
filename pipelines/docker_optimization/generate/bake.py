"""docker-bake.hcl from the compose services that build images and the build graph between them.

One target per built service (context, Dockerfile relative to the context
as bake expects, target stage, build args, tags), a ``default`` group with
every target, one group per level of the build graph, and a GitHub Actions
cache per target. A target that builds FROM another service's image gets
that image through ``contexts = {"<image>" = "target:<service>"}`` (the image
named the way BuildKit looks it up: familiar, without ``:latest``): bake then
builds the dependency first and hands it over instead of pulling a stale tag.

The cache is used where GitHub Actions runs the build (bake reads the
``GITHUB_ACTIONS`` variable from the environment, and the runner sets it to
``true``); locally there is none, because the default docker driver can't
export a cache and ``cache-to`` would fail the build.
"""

from __future__ import annotations

import posixpath
import re

from pipelines.docker_optimization.buildgraph import (
    BuildGraph, Service, bake_name, build_graph, context_key, primary_compose, relative_dockerfile, split_tag,
)
from pipelines.docker_optimization.project import Project

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_COMPOSE_VAR = re.compile(r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<default>[^}]*))?\}"
                          r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")
OWN_VARIABLES = ("TAG", "PROJECT", "GITHUB_ACTIONS")


def _escape(value: str) -> str:
    return (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
            .replace("\t", "\\t").replace("${", "$${").replace("%{", "%%{"))


def hcl_string(value: str) -> str:
    """A quoted HCL string whose value is ``value`` exactly (no interpolation)."""
    return f'"{_escape(value)}"'


def compose_template(value: str, variables: dict[str, str]) -> str:
    """The inside of an HCL string for a compose value: ``${NAME}``/``${NAME:-default}``/``$NAME``
    become bake variables (recorded in ``variables`` with their default), ``$$`` a literal ``$``."""
    out, last = [], 0
    for m in _COMPOSE_VAR.finditer(value):
        out.append(_escape(value[last:m.start()]))
        last = m.end()
        if m.group(0) == "$$":
            out.append("$")
            continue
        name = m.group("braced") or m.group("bare")
        default = m.group("default") if (m.group("op") or "").lstrip(":") == "-" else ""
        if name not in OWN_VARIABLES:
            variables.setdefault(name, default or "")
        out.append(f"${{{name}}}")
    out.append(_escape(value[last:]))
    return "".join(out)


def hcl_key(key: str) -> str:
    return key if _IDENTIFIER.match(key) else hcl_string(key)


def hcl_list(values: list[str]) -> str:
    return "[" + ", ".join(hcl_string(v) for v in values) + "]"


def project_name(project: Project, graph: BuildGraph) -> str:
    """The default image namespace: compose's ``name:``, else the one every ``image:`` shares, else ``app``."""
    primary = next((c for c in project.composes if c.path == primary_compose(project)), None)
    name = (primary.data or {}).get("name") if primary is not None else None
    if isinstance(name, str) and name.strip() and "$" not in name:
        return name.strip()
    spaces = {s.image.rsplit("/", 1)[0] for s in graph.services.values() if s.build is not None and "/" in s.image}
    return spaces.pop() if len(spaces) == 1 and "$" not in next(iter(spaces)) else "app"


def tag_of(svc: Service, variables: dict[str, str]) -> str:
    """The image tag for a service, inside an HCL string.

    The compose ``image:`` with ``latest``, no tag or a digest replaced by
    ``${TAG}`` (an explicit other tag stays); compose variables in it become
    bake variables; ``${PROJECT}/<service>:${TAG}`` when compose names none.
    """
    if not svc.image:
        return f"${{PROJECT}}/{svc.name}:${{TAG}}"
    masked = _COMPOSE_VAR.sub(lambda m: "_" * len(m.group(0)), svc.image)   # no ":", "/" or "@" inside a variable
    name = masked.split("@", 1)[0]
    repo, tag = split_tag(name)
    if tag not in ("", "latest"):
        return compose_template(svc.image[:len(name)], variables)
    return compose_template(svc.image[:len(repo)], variables) + ":${TAG}"


def _args(svc: Service) -> dict[str, str]:
    """Build args with a value, as compose writes them (an arg without one is read from compose's environment)."""
    raw = svc.build_data.get("args") or {}
    if isinstance(raw, list):
        pairs = [str(a).split("=", 1) for a in raw if "=" in str(a)]
        return {k: v for k, v in pairs}
    if isinstance(raw, dict):
        return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in raw.items() if v is not None}
    return {}


def _contexts(svc: Service, graph: BuildGraph) -> dict[str, str]:
    found: dict[str, str] = {}
    base = posixpath.dirname(svc.compose)
    for key, value in svc.build.additional_contexts.items():
        if value.startswith("service:"):
            found[key] = "target:" + bake_name(value[len("service:"):])
        elif "://" in value or value.startswith("git@"):
            found[key] = value
        else:
            found[key] = posixpath.normpath(posixpath.join(base, value))
    for edge in graph.build_deps(svc.name):
        if edge.via != "additional_contexts":
            found.setdefault(context_key(edge.ref), "target:" + bake_name(edge.on))
    return found


def _target(svc: Service, graph: BuildGraph, variables: dict[str, str]) -> list[str]:
    name = bake_name(svc.name)
    build = svc.build
    out = [f"target {hcl_string(name)} {{", f"  context = {hcl_string(build.context)}",
           f"  dockerfile = {hcl_string(relative_dockerfile(build))}"]
    if build.target:
        out.append(f"  target = {hcl_string(build.target)}")
    for attribute, values in (("args", _args(svc)), ("contexts", _contexts(svc, graph))):
        if values:
            out.append(f"  {attribute} = {{")
            out += [f"    {hcl_key(k)} = \"{compose_template(v, variables)}\"" if attribute == "args" else
                    f"    {hcl_string(k)} = {hcl_string(v)}" for k, v in sorted(values.items())]
            out.append("  }")
    out.append(f'  tags = ["{tag_of(svc, variables)}"]')
    out.append(f'  cache-from = GITHUB_ACTIONS == "true" ? {hcl_list([f"type=gha,scope={name}"])} : []')
    out.append(f'  cache-to = GITHUB_ACTIONS == "true" ? {hcl_list([f"type=gha,mode=max,scope={name}"])} : []')
    out.append("}")
    return out


def _level_comment(number: int, level: list[str], graph: BuildGraph) -> str:
    if any(set(level) & set(cycle) for cycle in graph.build_cycles):
        return (f"# Level {number}: a build cycle ({', '.join(level)} build FROM each other); "
                "bake refuses it until the Dockerfiles break it.")
    if number == 1:
        return f"# Level {number} of the build graph: builds FROM no other target's image; all in parallel."
    return f"# Level {number}: builds FROM images of earlier levels; in parallel with each other."


def bake_file(project: Project, graph: BuildGraph | None = None) -> str:
    graph = graph or build_graph(project)
    built = [graph.services[n] for n in graph.build_order]
    sources = sorted({s.compose for s in built})
    names = sorted(bake_name(s.name) for s in built)
    out = [
        f"# The images of {', '.join(sources)}, written by the docker-optimization pipeline.",
        "#   docker buildx bake            builds every target, in parallel where the build graph allows",
        "#   docker buildx bake level-1    builds one level of the build graph (its targets in parallel)",
        "#   TAG=1.4.0 PROJECT=ghcr.io/acme docker buildx bake --push",
        "",
        'variable "TAG" {',
        '  default = "latest"',
        "}",
        "",
        "# The namespace of images whose compose service names no image.",
        'variable "PROJECT" {',
        f"  default = {hcl_string(project_name(project, graph))}",
        "}",
        "",
        "# GitHub Actions sets GITHUB_ACTIONS=true: targets read and write its cache there. Locally",
        "# there is no cache (the default docker driver can't export one).",
        'variable "GITHUB_ACTIONS" {',
        '  default = "false"',
        "}",
    ]
    variables: dict[str, str] = {}
    targets = []
    for svc in sorted(built, key=lambda s: bake_name(s.name)):
        targets += [""] + _target(svc, graph, variables)
    for name, default in sorted(variables.items()):
        out += ["", f"# Compose reads ${{{name}}} from the environment; so does bake.", f"variable {hcl_string(name)} {{",
                f"  default = {hcl_string(default)}", "}"]
    out += ["", 'group "default" {', f"  targets = {hcl_list(names)}", "}"]
    for number, level in enumerate(graph.levels, 1):
        out += ["", _level_comment(number, level, graph), f"group {hcl_string(f'level-{number}')} {{",
                f"  targets = {hcl_list([bake_name(n) for n in level])}", "}"]
    return "\n".join(out + targets) + "\n"
