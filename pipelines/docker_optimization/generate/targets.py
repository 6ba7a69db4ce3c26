"""Which compose builds the generated files may name: the ones whose context builds, each with why not.

The bake file, the CI workflow and the deploy script are derived from the
compose files. A build whose context can't build (a COPY/ADD source missing
from the context or dropped by its .dockerignore, a Dockerfile that is gone
or doesn't parse) would only carry the failure into the new file, so it is
left out and listed with the reason, as CX003 reports it.

Compose values are read as compose resolves them: ``${VAR}``,
``${VAR:-default}`` and ``${VAR-default}`` from the ``.env`` file of the
compose file's directory (the project directory), then the default.

Example: compose.yaml builds ``api`` from ``.`` with ``api/Dockerfile``,
whose ``COPY shared /shared`` finds no ``shared`` at the root: ``api`` is
left out ("api/Dockerfile line 3: shared does not exist in the build
context .") and every other target is generated as usual.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from agent_pipelines.pipelines.docker_optimization.model import copies
from agent_pipelines.pipelines.docker_optimization.model.buildgraph import BuildGraph, primary_compose
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from agent_pipelines.pipelines.docker_optimization.model.project import Context, Project

_VAR = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<default>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(?P<value>.*)$")
_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://|^git@", re.IGNORECASE)


def dotenv(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a compose ``.env`` file: quotes removed, ``#`` comments and blank lines skipped."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        m = _ENV_LINE.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        value = m.group("value").strip()
        if value[:1] in "\"'" and value.endswith(value[:1]) and len(value) > 1:
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        found[m.group("key")] = value
    return found


def compose_env(project: Project, compose_path: str) -> dict[str, str]:
    """The ``.env`` beside a compose file (compose's project directory), its values interpolated in order."""
    folder = posixpath.dirname(compose_path)
    path = posixpath.join(folder, ".env") if folder else ".env"
    key = f"generate.env:{path}"
    if key not in project.memo:
        raw = dotenv(project.text(path) or "") if path in project.files else {}
        env: dict[str, str] = {}
        for name, value in raw.items():
            env[name] = interpolate(value, env)[0]
        project.memo[key] = env
    return project.memo[key]


def interpolate(value: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """``value`` with compose's interpolation applied; also the names it read that nothing sets."""
    unset: list[str] = []

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, default = m.group("op") or "", m.group("default") or ""
        present = name in env and (env[name] != "" or not op.startswith(":"))
        if op.endswith("-"):
            return env[name] if present else default
        if op.endswith("+"):
            return default if present else ""
        if name not in env:
            unset.append(name)
        return env.get(name, "")

    return _VAR.sub(one, value), unset


@dataclass
class Build:
    """One service's build as one compose file defines it, with paths resolved as compose resolves them."""

    service: str
    compose: str
    data: dict  # the compose service mapping
    build: dict  # its ``build:`` mapping
    env: dict[str, str]
    context: str = ""  # repo-relative, or a remote URL
    dockerfile: str = ""  # repo-relative (for a remote context: as written)
    problems: list[str] = field(default_factory=list)

    @property
    def remote(self) -> bool:
        return bool(_REMOTE.search(self.context))


def _join(base: str, rel: str) -> str:
    if _REMOTE.search(rel):
        return rel
    return posixpath.normpath(posixpath.join(base, rel)) if base else posixpath.normpath(rel)


def build_problems(
    project: Project, context: str, dockerfile: str, inline: str | None = None, lines: bool = True
) -> list[str]:
    """Why a build of ``dockerfile`` in ``context`` (repo-relative) fails here; [] when every COPY source is sent.

    The same check as CX003: each COPY/ADD source from the context must
    exist in it and not be dropped by its .dockerignore. ``lines=False``
    leaves out the Dockerfile's line numbers (for comparing with a parent).
    """
    if _REMOTE.search(context):
        return []
    if context != "." and not project.files_under(context):
        return [f"the context {context} is not a directory here"]
    df: Dockerfile | None
    if inline is not None:
        df = Dockerfile.parse(dockerfile or "dockerfile_inline", inline)
    else:
        df = project.dockerfiles.get(dockerfile)
        if df is None:
            if dockerfile not in project.files:
                return [f"{dockerfile} does not exist"]
            df = Dockerfile.parse(dockerfile, project.text(dockerfile) or "")
    if df.error:
        return [f"{dockerfile} does not parse: {df.error}"]
    ctx = next((c for c in project.contexts_in(context) if c.dockerfile == dockerfile), None)
    ctx = ctx or Context(project, context, dockerfile)
    return [
        f"{dockerfile}" + (f" line {s.ins.start_line}" if lines else "") + f": {why}"
        for s, why in copies.problems(ctx, df)
    ]


def service_build(project: Project, compose: str, service: str, data: dict) -> Build | None:
    """The service's build in ``compose`` resolved (context, Dockerfile, why it can't build); None without one."""
    key = f"generate.build:{compose}:{service}"
    if key not in project.memo:
        project.memo[key] = _resolve(project, compose, service, data)
    return project.memo[key]


def _resolve(project: Project, compose: str, service: str, data: dict) -> Build | None:
    raw = data.get("build")
    if isinstance(raw, str):
        raw = {"context": raw}
    if not isinstance(raw, dict):
        return None
    env = compose_env(project, compose)
    out = Build(service, compose, data, raw, env)
    context, unset = interpolate(str(raw.get("context", ".") or "."), env)
    out.context = _join(posixpath.dirname(compose), context)
    inline = raw.get("dockerfile_inline")
    name, more = interpolate(str(raw.get("dockerfile", "Dockerfile") or "Dockerfile"), env)
    unset += more
    if out.remote:
        out.dockerfile = name
        return out
    out.dockerfile = name.lstrip("/") if name.startswith("/") else _join(out.context, name)
    if unset:
        out.problems = [
            f"{', '.join(sorted(set(unset)))} is set neither in {compose_env_path(compose)} nor by a "
            "default, so compose's context or Dockerfile for it is unknown"
        ]
        return out
    out.problems = build_problems(
        project, out.context, out.dockerfile, str(inline) if isinstance(inline, str) else None
    )
    return out


def compose_env_path(compose: str) -> str:
    folder = posixpath.dirname(compose)
    return posixpath.join(folder, ".env") if folder else ".env"


@dataclass
class Targets:
    """The builds the generated files name (service -> Build) and the ones left out (service -> why)."""

    builds: dict[str, Build]
    left_out: dict[str, str]

    def comment(self, what: str) -> list[str]:
        """Comment lines naming what was left out of ``what`` and why ([] when nothing was)."""
        if not self.left_out:
            return []
        out = [f"# Left out of {what}: these services' images can't be built from the repository as it is"]
        out += [f"#   {name}: {why}" for name, why in sorted(self.left_out.items())]
        return out

    def notes(self, what: str) -> list[str]:
        return [f"{name} is left out of {what}: {why}" for name, why in sorted(self.left_out.items())]


def _definitions(project: Project, name: str) -> list[tuple[str, dict]]:
    """(compose path, service mapping) for every compose file that defines ``name``, the primary one first."""
    primary = primary_compose(project)
    found = []
    for compose in sorted(project.composes, key=lambda c: (c.path != primary, c.path)):
        if compose.error:
            continue
        data = compose.services.get(name)
        if isinstance(data, dict):
            found.append((compose.path, data))
    return found


def buildable(project: Project, graph: BuildGraph) -> Targets:
    """Per built service, the first definition (primary compose file first) whose context builds.

    A service no definition of which builds is left out with the reason of
    its first; so is one that builds FROM a left-out service's image (bake
    would have no target to hand it over).
    """
    key = f"generate.buildable:{id(graph)}"
    if key in project.memo and project.memo[key][0] is graph:
        return project.memo[key][1]
    builds: dict[str, Build] = {}
    left: dict[str, str] = {}
    for name in graph.built:
        first = None
        for compose, data in _definitions(project, name):
            build = service_build(project, compose, name, data)
            if build is None:
                continue
            first = first or build
            if not build.problems:
                builds[name] = build
                break
        if name not in builds and first is not None:
            left[name] = f"{first.compose}: " + "; ".join(first.problems)
    changed = True
    while changed:  # a dependency left out takes its dependents with it
        changed = False
        for name in sorted(builds):
            gone = sorted({e.on for e in graph.build_deps(name) if e.on in left})
            if gone:
                del builds[name]
                left[name] = f"builds on the image of {', '.join(gone)}, which is left out"
                changed = True
    result = Targets(builds, left)
    project.memo[key] = (graph, result)
    return result


def deployable(project: Project) -> dict[str, str]:
    """Services of the primary compose file whose own build can't build there: service -> why."""
    path = primary_compose(project)
    compose = next((c for c in project.composes if c.path == path), None)
    if compose is None:
        return {}
    out = {}
    for name, data in compose.services.items():
        if isinstance(data, dict):
            build = service_build(project, path, str(name), data)
            if build is not None and build.problems:
                out[str(name)] = "; ".join(build.problems)
    return out


def phase_notes(project: Project, phase: str) -> list[str]:
    """For the build and deploy phase reports: what the generated files leave out, and why."""
    from agent_pipelines.pipelines.docker_optimization.model.buildgraph import build_graph

    if phase == "build":
        return buildable(project, build_graph(project)).notes("the bake file and the CI build")
    if phase == "deploy":
        path = primary_compose(project)
        compose = next((c for c in project.composes if c.path == path), None)
        out = [
            f"{name} is left out of deploy/deploy.sh: its image can't be built from {path}: {why}"
            for name, why in sorted(deployable(project).items())
        ]
        for name, data in sorted((compose.services if compose else {}).items()):
            profiles = data.get("profiles") if isinstance(data, dict) else None
            if isinstance(profiles, list) and profiles:
                out.append(
                    f"{name} is behind the compose profile {', '.join(map(str, profiles))}: deploy.sh rolls "
                    f"it out only when named or with COMPOSE_PROFILES={profiles[0]}"
                )
        return out
    return []
