"""The build graph of a compose project: which images build on which, in what order, and how to roll out.

Two graphs, both over compose services:

- the *build* graph: service A depends on service B when A's Dockerfile
  builds ``FROM`` (or ``COPY --from=``, or ``RUN --mount=from=``) the image B
  tags with ``image:``, or when A's compose ``additional_contexts`` names
  ``service:B``. Its topological levels are the groups that can build in
  parallel; a bake file gets the dependency through ``contexts`` so bake
  builds B first and feeds it to A instead of pulling a stale tag.
- the *runtime* graph: compose ``depends_on``. Its topological order is the
  order a rollout replaces services in, dependencies first.

A cycle never raises: its services are reported in ``cycles`` and placed,
sorted, in one last level so every service still appears exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent_pipelines.pipelines.docker_optimization.model.compose import BuildSpec
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from agent_pipelines.pipelines.docker_optimization.model.project import Project

_ARG_REF = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?[-+](?P<default>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_DEFAULT_REGISTRIES = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")


def normalize_image(ref: str) -> str:
    """A comparable image reference: Docker Hub prefixes dropped, ``:latest`` made explicit."""
    ref = ref.strip()
    name, at, digest = ref.partition("@")
    for prefix in _DEFAULT_REGISTRIES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/") :]
    if ":" not in name.rsplit("/", 1)[-1] and not at:
        name += ":latest"
    return name + (at + digest if at else "")


def context_key(ref: str) -> str:
    """The name BuildKit looks a FROM image up under among named contexts: familiar, without ``:latest``."""
    name = normalize_image(ref)
    return name if "@" in name else name.removesuffix(":latest")


def split_tag(ref: str) -> tuple[str, str]:
    """(repository, tag) of an image reference; the tag is "" when none (or a digest) is written."""
    if "@" in ref:
        return ref, ""
    repo, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return repo, tag
    return ref, ""


def expand_args(text: str, values: dict[str, str]) -> str:
    """``$NAME``/``${NAME}``/``${NAME:-default}`` replaced the way BuildKit expands FROM lines."""

    def one(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("bare")
        if name in values and values[name] != "":
            return values[name]
        return m.group("default") or ""

    return _ARG_REF.sub(one, text)


@dataclass(frozen=True)
class Service:
    """A compose service as the build graph sees it."""

    name: str
    compose: str
    image: str = ""  # compose ``image:`` as written
    build: BuildSpec | None = None
    build_data: dict = field(default_factory=dict, hash=False, compare=False)  # the raw ``build:`` mapping
    depends_on: tuple[str, ...] = ()
    healthcheck: str = ""  # "compose", "Dockerfile" or "" (none, or disabled)


@dataclass(frozen=True)
class Edge:
    """``service`` builds on the image ``on`` builds: ``ref`` as written, at ``line`` of ``file``."""

    service: str
    on: str
    ref: str
    via: str  # "FROM", "COPY --from", "RUN --mount from", "additional_contexts"
    file: str
    line: int


@dataclass
class BuildGraph:
    services: dict[str, Service]
    edges: list[Edge]
    depends_on: dict[str, tuple[str, ...]]  # runtime edges, unknown names dropped
    levels: list[list[str]]  # built services: each level builds in parallel
    build_cycles: list[list[str]]
    runtime_order: list[str]  # every service, dependencies first
    runtime_cycles: list[list[str]]

    @property
    def built(self) -> list[str]:
        return sorted(n for n, s in self.services.items() if s.build is not None)

    @property
    def build_order(self) -> list[str]:
        return [name for level in self.levels for name in level]

    def build_deps(self, service: str) -> list[Edge]:
        return [e for e in self.edges if e.service == service]


def _depends_on(data: dict) -> tuple[str, ...]:
    raw = data.get("depends_on")
    if isinstance(raw, dict):
        return tuple(str(k) for k in raw)
    if isinstance(raw, list):
        return tuple(str(v) for v in raw if isinstance(v, (str, int)))
    return ()


def _compose_healthcheck(data: dict) -> bool:
    check = data.get("healthcheck")
    if not isinstance(check, dict) or check.get("disable") is True:
        return False
    test = check.get("test")
    return not (test == ["NONE"] or test == "NONE")


def _compose_disables(data: dict) -> bool:
    """compose turns the image's HEALTHCHECK off (``disable: true`` or test ``NONE``)."""
    check = data.get("healthcheck")
    return isinstance(check, dict) and (check.get("disable") is True or check.get("test") in (["NONE"], "NONE"))


def dockerfile_healthcheck(df: Dockerfile | None, target: str) -> bool:
    """The built stage (``target`` or the last) ends with a HEALTHCHECK other than NONE (kept with the parsed file)."""
    if df is None or df.error or not df.stages:
        return False
    key = ("healthcheck", target)
    if key not in df.memo:
        df.memo[key] = _dockerfile_healthcheck(df, target)
    return df.memo[key]


def _dockerfile_healthcheck(df: Dockerfile, target: str) -> bool:
    index = next((s.index for s in df.stages if target and s.name.lower() == target.lower()), df.final_stage)
    checks = [i for i in df.of("HEALTHCHECK") if i.stage == index]
    return bool(checks) and not (checks[-1].value and checks[-1].value[0].upper() == "NONE")


def services_of(project: Project) -> dict[str, Service]:
    """Every compose service of the project; a name in several compose files merges (first file wins)."""
    builds = {(c.path, b.service): b for c in project.composes for b in c.builds}
    found: dict[str, Service] = {}
    for compose in project.composes:
        if compose.error:
            continue
        for name, data in compose.services.items():
            if not isinstance(data, dict):
                continue
            name = str(name)
            build = builds.get((compose.path, name))
            raw_build = data.get("build") if isinstance(data.get("build"), dict) else {}
            health = "compose" if _compose_healthcheck(data) else ""
            if (
                not health
                and build is not None
                and not _compose_disables(data)
                and dockerfile_healthcheck(project.dockerfiles.get(build.dockerfile), build.target)
            ):
                health = "Dockerfile"
            svc = Service(
                name=name,
                compose=compose.path,
                image=str(data.get("image") or ""),
                build=build,
                build_data=dict(raw_build or {}),
                depends_on=_depends_on(data),
                healthcheck=health,
            )
            old = found.get(name)
            if old is None:
                found[name] = svc
            else:
                found[name] = Service(
                    name=name,
                    compose=old.compose,
                    image=old.image or svc.image,
                    build=old.build or svc.build,
                    build_data=old.build_data or svc.build_data,
                    depends_on=tuple(dict.fromkeys(old.depends_on + svc.depends_on)),
                    healthcheck=old.healthcheck or svc.healthcheck,
                )
    return found


def image_refs(df: Dockerfile, args: dict[str, str]) -> list[tuple[str, str, int]]:
    """(reference, via, line) for every external image a Dockerfile reads: FROM, COPY --from, RUN --mount from."""
    values = {}
    for ins in df.instructions:
        if ins.stage >= 0:
            break
        if ins.cmd == "ARG":
            for decl in ins.value:
                key, _, default = decl.partition("=")
                values[key] = default.strip("\"'")
    values.update(args)
    stage_names: set[str] = set()
    found = []
    for stage in df.stages:
        base = expand_args(stage.base, values)
        if base.lower() not in stage_names and base.lower() != "scratch":
            found.append((base, "FROM", stage.start_line))
        if stage.name:
            stage_names.add(stage.name.lower())
    names = {s.name.lower() for s in df.stages if s.name}
    for ins in df.of("COPY"):
        for src in ins.flag("from"):
            src = expand_args(src, values)
            if src.lower() not in names and not src.isdigit():
                found.append((src, "COPY --from", ins.start_line))
    for ins in df.of("RUN"):
        for mount in ins.mounts():
            src = expand_args(mount.get("from", ""), values)
            if src and src.lower() not in names and not src.isdigit():
                found.append((src, "RUN --mount from", ins.start_line))
    return found


def _build_edges(project: Project, services: dict[str, Service]) -> list[Edge]:
    by_image = {
        normalize_image(s.image): s.name
        for s in sorted(services.values(), key=lambda s: s.name)
        if s.build is not None and s.image
    }
    edges: list[Edge] = []
    for svc in sorted(services.values(), key=lambda s: s.name):
        if svc.build is None:
            continue
        for key, value in sorted(svc.build.additional_contexts.items()):
            if value.startswith("service:") and value[len("service:") :] in services:
                edges.append(Edge(svc.name, value[len("service:") :], key, "additional_contexts", svc.compose, 0))
        df = project.dockerfiles.get(svc.build.dockerfile)
        if df is None or df.error:
            continue
        for ref, via, line in image_refs(df, svc.build.args):
            builder = by_image.get(normalize_image(ref))
            if builder is not None:
                edges.append(Edge(svc.name, builder, ref, via, df.path, line))
    return list(dict.fromkeys(edges))


def levels(nodes: list[str], deps: dict[str, set[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """Kahn's algorithm by levels: (levels, cycles). Services left in a cycle make one last level."""
    remaining = {n: {d for d in deps.get(n, set()) if d in nodes} for n in nodes}
    out: list[list[str]] = []
    while True:
        ready = sorted(n for n, d in remaining.items() if not d)
        if not ready:
            break
        out.append(ready)
        for n in ready:
            del remaining[n]
        for d in remaining.values():
            d.difference_update(ready)
    cycles = strongly_connected(remaining)
    if remaining:
        out.append(sorted(remaining))
    return out, cycles


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components that are cycles (more than one node, or a self-loop), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def build_graph(project: Project) -> BuildGraph:
    """The services, their build edges and run-time order (made once per project: three rules ask)."""
    if "build_graph" not in project.memo:
        project.memo["build_graph"] = _build_graph(project)
    return project.memo["build_graph"]


def _build_graph(project: Project) -> BuildGraph:
    services = services_of(project)
    edges = _build_edges(project, services)
    built = sorted(n for n, s in services.items() if s.build is not None)
    build_deps: dict[str, set[str]] = {n: set() for n in built}
    for e in edges:
        build_deps[e.service].add(e.on)
    build_levels, build_cycles = levels(built, build_deps)
    runtime = {n: tuple(d for d in s.depends_on if d in services) for n, s in services.items()}
    runtime_levels, runtime_cycles = levels(sorted(services), {n: set(d) for n, d in runtime.items()})
    return BuildGraph(
        services=services,
        edges=edges,
        depends_on=runtime,
        levels=build_levels,
        build_cycles=build_cycles,
        runtime_order=[n for level in runtime_levels for n in level],
        runtime_cycles=runtime_cycles,
    )


def primary_compose(project: Project) -> str:
    """The compose file a rollout drives: the shallowest valid one with the most services."""
    valid = [c for c in project.composes if not c.error and c.services]
    if not valid:
        return ""
    best = min(valid, key=lambda c: (c.path.count("/"), -len(c.services), "override" in c.path, c.path))
    return best.path


def bake_name(service: str) -> str:
    """A bake target name for a compose service (bake allows letters, digits, ``_`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", service)


def build_order_summary(project: Project) -> list[str]:
    """Lines for the ops phase report: the build order, its parallel groups, the rollout order and its health gates."""
    graph = build_graph(project)
    lines = []
    if graph.built:
        lines.append(
            f"{len(graph.built)} services build images, in {len(graph.levels)} "
            f"level{'s' if len(graph.levels) != 1 else ''} of the build graph:"
        )
        for number, level in enumerate(graph.levels, 1):
            cyclic = any(set(level) & set(c) for c in graph.build_cycles)
            why = []
            for name in level:
                why += [
                    f"{e.service} builds {e.via} {e.ref} (built by {e.on}, {e.file}"
                    + (f":{e.line}" if e.line else "")
                    + ")"
                    for e in graph.build_deps(name)
                ]
            head = (
                f"level {number} (a build cycle, no order works)"
                if cyclic
                else f"level {number}, in parallel"
                if len(level) > 1
                else f"level {number}"
            )
            lines.append(f"- {head}: {', '.join(level)}" + (f"; {'; '.join(why)}" if why else ""))
        if not graph.edges:
            lines.append("- no service builds FROM another service's image: everything builds in parallel")
        for cycle in graph.build_cycles:
            lines.append(
                f"- build cycle: {' -> '.join(cycle + cycle[:1])}: these images can't be built; "
                "break the cycle in their Dockerfiles"
            )
    if graph.services:
        lines.append(
            "rollout order (compose depends_on, dependencies first, one service at a time): "
            + " -> ".join(graph.runtime_order)
        )
        for cycle in graph.runtime_cycles:
            lines.append(f"- depends_on cycle: {' -> '.join(cycle + cycle[:1])}: compose refuses to start these")
        gated: dict[str, list[str]] = {"compose": [], "Dockerfile": [], "": []}
        for name in graph.runtime_order:
            gated[graph.services[name].healthcheck].append(name)
        if gated["compose"]:
            lines.append(f"- waits for healthy (compose healthcheck): {', '.join(gated['compose'])}")
        if gated["Dockerfile"]:
            lines.append(f"- waits for healthy (Dockerfile HEALTHCHECK): {', '.join(gated['Dockerfile'])}")
        if gated[""]:
            lines.append(f"- no healthcheck, waits only for running: {', '.join(gated[''])}")
        lines.append(
            "- a service that isn't healthy in time is rolled back to its :previous image and the rollout stops there"
        )
    return lines
