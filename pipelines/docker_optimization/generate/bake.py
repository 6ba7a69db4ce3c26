"""docker-bake.hcl from the compose services that build images and the build graph between them.

One target per built service whose context builds (``targets.buildable``:
the first compose definition of it whose COPY/ADD sources are all sent;
the others are named in a comment at the top, with why), carrying what
compose gives its build (context, Dockerfile relative to the context as
bake expects, target stage, args, secrets, labels, platforms, ssh, tags,
cache_from/cache_to), a ``default`` group with
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

from agent_pipelines.engine.domain import Declined
from agent_pipelines.pipelines.docker_optimization.generate.targets import Build, buildable, interpolate
from agent_pipelines.pipelines.docker_optimization.model.buildgraph import (
    BuildGraph,
    bake_name,
    build_graph,
    context_key,
    primary_compose,
    split_tag,
)
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules.security_secrets import is_secret_name, literal

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_COMPOSE_VAR = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<default>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)
OWN_VARIABLES = ("TAG", "PROJECT", "GITHUB_ACTIONS")


def _escape(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
        .replace("${", "$${")
        .replace("%{", "%%{")
    )


def hcl_string(value: str) -> str:
    """A quoted HCL string whose value is ``value`` exactly (no interpolation)."""
    return f'"{_escape(value)}"'


class Variables(dict):
    """The bake variables the targets read: name -> default (None: no default, its value is a secret's)."""

    def add(self, name: str, default: str, env: dict[str, str], secret: bool = False) -> None:
        if name in OWN_VARIABLES:
            return
        if secret or is_secret_name(name):
            self[name] = None  # its value is not copied into the new file
        elif name not in self:
            self[name] = default or env.get(name, "")


def compose_template(value: str, variables: Variables, env: dict[str, str] | None = None, secret: bool = False) -> str:
    """The inside of an HCL string for a compose value: ``${NAME}``/``${NAME:-default}``/``$NAME``
    become bake variables (recorded in ``variables`` with their default: the one written, else the
    value of the compose project's ``.env``, as compose resolves it; none when ``secret``, or when
    the name looks like a secret's), ``$$`` a literal ``$``."""
    env = env or {}
    out, last = [], 0
    for m in _COMPOSE_VAR.finditer(value):
        out.append(_escape(value[last : m.start()]))
        last = m.end()
        if m.group(0) == "$$":
            out.append("$")
            continue
        name = m.group("braced") or m.group("bare")
        default = m.group("default") if (m.group("op") or "").lstrip(":") == "-" else ""
        variables.add(name, default or "", env, secret)
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


def tag_of(image: str, name: str, variables: Variables, env: dict[str, str]) -> str:
    """The image tag for a service, inside an HCL string.

    The compose ``image:`` with ``latest``, no tag or a digest replaced by
    ``${TAG}`` (an explicit other tag stays); compose variables in it become
    bake variables; ``${PROJECT}/<service>:${TAG}`` when compose names none.
    """
    if not image:
        return f"${{PROJECT}}/{name}:${{TAG}}"
    masked = _COMPOSE_VAR.sub(lambda m: "_" * len(m.group(0)), image)  # no ":", "/" or "@" inside a variable
    ref = masked.split("@", 1)[0]
    repo, tag = split_tag(ref)
    if tag not in ("", "latest"):
        return compose_template(image[: len(ref)], variables, env)
    return compose_template(image[: len(repo)], variables, env) + ":${TAG}"


def _pairs(raw: object) -> list[tuple[str, str | None]]:
    """(name, value) of a compose mapping or ``KEY=value`` list; None for a name given without a value."""
    if isinstance(raw, dict):
        return [
            (str(k), None if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in raw.items()
        ]
    if isinstance(raw, list):
        return [(str(a).split("=", 1)[0], str(a).split("=", 1)[1] if "=" in str(a) else None) for a in raw]
    return []


def _strings(raw: object) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    return [str(v) for v in raw] if isinstance(raw, list) else []


def _quoted(value: str, variables: Variables, env: dict[str, str]) -> str:
    return f'"{compose_template(value, variables, env)}"'


def _args(build: Build, variables: Variables) -> tuple[list[str], list[str]]:
    """Bake ``args`` entries and comments for what compose passes but this file doesn't copy.

    A value is carried as compose writes it (its variables become bake
    variables with the ``.env`` value as default). A name without a value is
    read from the environment by compose: it becomes a variable when ``.env``
    sets it, and is left to the Dockerfile's default when nothing does. A
    secret-looking name never carries its value here: it reads a variable of
    its own name that has no default.
    """
    lines, notes = [], []
    for name, value in sorted(_pairs(build.build.get("args")), key=lambda p: p[0]):
        if value is None and name not in build.env and not is_secret_name(name):
            notes.append(
                f"# {name}: compose reads it from the environment; nothing sets it, so the Dockerfile's default applies"
            )
            continue
        if is_secret_name(name) and value is not None and literal(value):
            notes.append(
                f"# {name}: a secret-looking value in {build.compose}, not copied: export {name} "
                "(better: a build secret)"
            )
            value = None
        if value is None:
            value = f"${{{name}}}"
        secret = is_secret_name(name)  # what a secret's argument reads gets no default either
        lines.append(f'    {hcl_key(name)} = "{compose_template(value, variables, build.env, secret)}"')
    return lines, notes


def _top_level_secrets(project: Project, compose: str) -> dict:
    data = next((c.data for c in project.composes if c.path == compose), None) or {}
    secrets = data.get("secrets")
    return secrets if isinstance(secrets, dict) else {}


def _secrets(project: Project, build: Build) -> tuple[list[str], list[str]]:
    """Bake ``secret`` entries for the build's compose ``secrets`` (a file or an environment variable)."""
    defined = _top_level_secrets(project, build.compose)
    entries, notes = [], []
    raw = build.build.get("secrets")
    for item in raw if isinstance(raw, list) else _strings(raw):
        source = str(item.get("source", "")) if isinstance(item, dict) else str(item)
        ident = str(item.get("target") or source) if isinstance(item, dict) else source
        spec = defined.get(source)
        if isinstance(spec, dict) and spec.get("file"):
            path = posixpath.normpath(
                posixpath.join(posixpath.dirname(build.compose), interpolate(str(spec["file"]), build.env)[0])
            )
            entries.append(f"id={ident},src={path}")
        elif isinstance(spec, dict) and spec.get("environment"):
            entries.append(f"id={ident},env={spec['environment']}")
        else:
            notes.append(f"# secret {source}: {build.compose} defines no file or environment for it; left out")
    return entries, notes


def _contexts(build: Build, name: str, graph: BuildGraph, variables: Variables) -> dict[str, str]:
    found: dict[str, str] = {}
    raw = build.build.get("additional_contexts")
    for key, value in _pairs(raw):
        value = interpolate(value or "", build.env)[0]
        if value.startswith("service:"):
            found[key] = "target:" + bake_name(value[len("service:") :])
        elif "://" in value or value.startswith("git@"):
            found[key] = value
        else:
            found[key] = posixpath.normpath(posixpath.join(posixpath.dirname(build.compose), value))
    for edge in graph.build_deps(name):
        if edge.via != "additional_contexts":
            found.setdefault(context_key(edge.ref), "target:" + bake_name(edge.on))
    return found


def _list(attribute: str, values: list[str], variables: Variables, env: dict[str, str]) -> list[str]:
    return [f"  {attribute} = [{', '.join(_quoted(v, variables, env) for v in values)}]"] if values else []


def _cache(attribute: str, name: str, compose: list[str], variables: Variables, env: dict[str, str]) -> str:
    """The compose cache entries, and GitHub's cache where GitHub Actions runs the build."""
    gha = "type=gha,scope=" + name if attribute == "cache-from" else "type=gha,mode=max,scope=" + name
    mine = [_quoted(v, variables, env) for v in compose]
    return f'  {attribute} = GITHUB_ACTIONS == "true" ? [{", ".join([hcl_string(gha)] + mine)}] : [{", ".join(mine)}]'


def _target(project: Project, name: str, build: Build, graph: BuildGraph, variables: Variables) -> list[str]:
    target = bake_name(name)
    raw, env = build.build, build.env
    dockerfile = build.dockerfile if build.remote else posixpath.relpath(build.dockerfile, build.context)
    out = [
        f"target {hcl_string(target)} {{",
        f"  context = {hcl_string(build.context)}",
        f"  dockerfile = {hcl_string(dockerfile)}",
    ]
    if isinstance(raw.get("dockerfile_inline"), str):
        out.append(f"  dockerfile-inline = {_quoted(raw['dockerfile_inline'], variables, env)}")
    if raw.get("target"):
        out.append(f"  target = {_quoted(str(raw['target']), variables, env)}")
    args, notes = _args(build, variables)
    out += [f"  {note}" for note in notes]
    if args:
        out += ["  args = {", *args, "  }"]
    labels = [(k, v) for k, v in _pairs(raw.get("labels")) if v is not None]
    if labels:
        out += [
            "  labels = {",
            *[f"    {hcl_string(k)} = {_quoted(v, variables, env)}" for k, v in sorted(labels)],
            "  }",
        ]
    contexts = _contexts(build, name, graph, variables)
    if contexts:
        out += [
            "  contexts = {",
            *[f"    {hcl_string(k)} = {hcl_string(v)}" for k, v in sorted(contexts.items())],
            "  }",
        ]
    secrets, notes = _secrets(project, build)
    out += [f"  {note}" for note in notes]
    out += [f"  secret = {hcl_list(secrets)}"] if secrets else []
    ssh = (
        [k if v is None else f"{k}={v}" for k, v in _pairs(raw.get("ssh"))]
        if isinstance(raw.get("ssh"), dict)
        else _strings(raw.get("ssh"))
    )
    out += _list("ssh", ssh, variables, env)
    out += _list("platforms", _strings(raw.get("platforms")), variables, env)
    tags = [tag_of(str(build.data.get("image") or ""), name, variables, env)]
    tags += [compose_template(t, variables, env) for t in _strings(raw.get("tags"))]
    out.append(f"  tags = [{', '.join(f'{chr(34)}{t}{chr(34)}' for t in tags)}]")
    out.append(_cache("cache-from", target, _strings(raw.get("cache_from")), variables, env))
    out.append(_cache("cache-to", target, _strings(raw.get("cache_to")), variables, env))
    for key, attribute in (("network", "network"),):
        if isinstance(raw.get(key), str):
            out.append(f"  {attribute} = {_quoted(raw[key], variables, env)}")
    for key, attribute in (("no_cache", "no-cache"), ("pull", "pull")):
        if isinstance(raw.get(key), bool):
            out.append(f"  {attribute} = {str(raw[key]).lower()}")
    out.append("}")
    return out


def _level_comment(number: int, level: list[str], graph: BuildGraph) -> str:
    if any(set(level) & set(cycle) for cycle in graph.build_cycles):
        return (
            f"# Level {number}: a build cycle ({', '.join(level)} build FROM each other); "
            "bake refuses it until the Dockerfiles break it."
        )
    if number == 1:
        return f"# Level {number} of the build graph: builds FROM no other target's image; all in parallel."
    return f"# Level {number}: builds FROM images of earlier levels; in parallel with each other."


def bake_file(project: Project, graph: BuildGraph | None = None) -> str:
    """The bake file of the compose services whose images build; the others are named in a comment, with why."""
    graph = graph or build_graph(project)
    chosen = buildable(project, graph)
    kept = [n for n in graph.build_order if n in chosen.builds]
    if not kept:
        raise Declined("no compose build's context builds here: " + "; ".join(chosen.notes("the bake file")))
    sources = sorted({chosen.builds[n].compose for n in kept})
    names = sorted(bake_name(n) for n in kept)
    out = [
        f"# The images of {', '.join(sources)}, written by the docker-optimization pipeline.",
        "#   docker buildx bake            builds every target, in parallel where the build graph allows",
        "#   docker buildx bake level-1    builds one level of the build graph (its targets in parallel)",
        "#   TAG=1.4.0 PROJECT=ghcr.io/acme docker buildx bake --push",
        *(["#"] + chosen.comment("this file") if chosen.left_out else []),
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
    variables = Variables()
    targets = []
    for name in sorted(kept, key=bake_name):
        targets += [""] + _target(project, name, chosen.builds[name], graph, variables)
    for name, default in sorted(variables.items()):
        if default is None:
            out += [
                "",
                f"# ${{{name}}} is a secret's value: no default here; bake reads it from the environment.",
                f"variable {hcl_string(name)} {{",
                "}",
            ]
        else:
            out += [
                "",
                f"# Compose reads ${{{name}}} from the environment (or .env); so does bake.",
                f"variable {hcl_string(name)} {{",
                f"  default = {hcl_string(default)}",
                "}",
            ]
    out += ["", 'group "default" {', f"  targets = {hcl_list(names)}", "}"]
    levels = [[n for n in level if n in chosen.builds] for level in graph.levels]
    for number, level in enumerate([lv for lv in levels if lv], 1):
        out += [
            "",
            _level_comment(number, level, graph),
            f"group {hcl_string(f'level-{number}')} {{",
            f"  targets = {hcl_list([bake_name(n) for n in level])}",
            "}",
        ]
    return "\n".join(out + targets) + "\n"
