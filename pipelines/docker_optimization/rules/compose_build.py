"""Compose rules CO006, CO007, CO008, CO010: build caches, contexts a Dockerfile breaks in, the compose
schema, and builds compose can't resolve."""

from __future__ import annotations

from collections.abc import Iterable

from agent_pipelines.engine.finding import Category, Severity
from agent_pipelines.pipelines.docker_optimization.model import compose as compose_mod
from agent_pipelines.pipelines.docker_optimization.model.compose import ComposeFile
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules import Hit, rule
from agent_pipelines.pipelines.docker_optimization.rules.compose import _REGISTRY_HOST, _line, _mapping
from agent_pipelines.pipelines.docker_optimization.rules.context_copies import (
    built_from,
    copy_problems,
    readable_ignore,
)

# -- build caches --------------------------------------------------------------------------


def _with_tag(ref: str) -> str:
    name = ref.split("@", 1)[0]
    return ref if "@" in ref or ":" in name.rsplit("/", 1)[-1] else ref + ":latest"


def built_images(project: Project) -> set[str]:
    """``image:`` names of services that also ``build:`` (compose tags the build with them)."""
    return {
        _with_tag(str(svc["image"]))
        for c in project.composes
        for svc in c.services.values()
        if isinstance(svc, dict) and "build" in svc and svc.get("image")
    }


def is_registry_cache(entry: str) -> bool:
    """A cache_from entry that names its backend (``type=registry,ref=...``, gha, local, s3...)
    or an image on an explicit registry host (``ghcr.io/org/app:cache``, ``localhost:5000/x``)."""
    return entry.startswith("type=") or "," in entry or bool(_REGISTRY_HOST.match(entry))


@rule("CO006", "cache-from-unknown-image", Category.performance, Severity.warning, "project", reads=("composes",))
def cache_from_unknown_image(project: Project) -> Iterable[Hit]:
    """`build.cache_from` names an image nothing in the repository builds.

    An entry counts when it is a plain image name (no `type=` backend and no
    registry host) and no compose service with `build:` tags that `image:`.

    Why: a cache source that doesn't exist is skipped silently: every build
    starts cold, while the file suggests it is cached. Plain names are usually
    left over from a renamed service, or meant a registry cache.

    Example:
        build:
          context: .
          cache_from: [shop_api]        # the service is tagged shop/api:dev

    Use instead:
        build:
          context: .
          cache_from:
            - type=registry,ref=ghcr.io/shop/api:buildcache
    """
    images = built_images(project)
    for compose in project.composes:
        if compose.error:
            continue
        for name, svc in compose.services.items():
            build = _mapping(_mapping(svc).get("build"))
            entries = build.get("cache_from")
            if not isinstance(entries, list):
                continue
            for index, entry in enumerate(entries):
                ref = str(entry).strip()
                if not ref or "$" in ref or is_registry_cache(ref) or _with_tag(ref) in images:
                    continue
                yield Hit(
                    _line(entries, index, compose.line_of(str(name))),
                    f"service {name} takes its build cache from {ref}, which no service here builds and "
                    "no registry is named for: the cache is likely missing",
                    f"{name}: cache_from {ref}",
                    file=compose.path,
                )


# -- contexts and schema -------------------------------------------------------------------


@rule("CO007", "dockerfile-breaks-in-another-context", Category.correctness, Severity.error, "project")
def dockerfile_breaks_in_another_context(project: Project) -> Iterable[Hit]:
    """A Dockerfile built from several contexts has COPY sources that break in one of them.

    Points at the compose service whose build fails; CX003 reports Dockerfiles
    built from a single context.

    Why: the COPY paths of a Dockerfile are relative to the context, so the
    same file can't be built both from the repository root and from its own
    directory unless every source exists (and is sent) in both. One of the
    builds fails with "not found", usually the one nobody ran locally.

    Example:
        services:
          api:  {build: {context: ., dockerfile: services/api/Dockerfile}}
          api-dev: {build: ./services/api}      # COPY services/api/... fails here

    Use instead:
        build every service of one Dockerfile from the same context
        (or give the other one its own Dockerfile).
    """
    for dockerfile, df in project.dockerfiles.items():
        built = built_from(project, dockerfile)
        if len(built) < 2 or df.error:  # most Dockerfiles: one context, CX003's to judge
            continue
        contexts = [c for c in built if readable_ignore(c)]
        broken = {c.dir: copy_problems(c)[0] for c in contexts}  # problems(c, df), kept across updates
        working = [c.dir for c in contexts if not broken[c.dir]]
        for ctx in contexts:
            if not broken[ctx.dir]:
                continue
            source, why = broken[ctx.dir][0]
            elsewhere = f"; it builds from {', '.join(working)}" if working else ""
            more = f" (and {len(broken[ctx.dir]) - 1} more)" if len(broken[ctx.dir]) > 1 else ""
            for build in ctx.builds:  # at the compose file that wrote the build (an override, an included file...)
                yield Hit(
                    build.line,
                    f"service {build.service} builds {dockerfile} from context {ctx.dir}, "
                    f"where line {source.ins.start_line} breaks: {why}{more}{elsewhere}",
                    f"{build.service}: {source.ins.original}",
                    file=build.file,
                )


@rule("CO008", "compose-schema-violation", Category.correctness, Severity.error, "compose", heavy=True)
def compose_schema_violation(compose: ComposeFile) -> Iterable[Hit]:
    """A compose file doesn't follow the compose-spec schema.

    One finding per violation, at the line of the offending key. A file that
    isn't YAML at all is PX002, not this.

    Why: `docker compose` refuses the file (or, for older versions, silently
    ignores the key), and nothing in it runs as written.

    Example:
        services:
          api:
            depends_on:
              redis: {restart: true}     # the long syntax requires a condition

    Use instead:
        services:
          api:
            depends_on:
              redis: {condition: service_started, restart: true}
    """
    for path, message in compose_mod.schema_violations(compose.data):
        where = "/".join(path) or "(top)"
        yield Hit(compose_mod.line_at(compose.data, path), f"{where}: {message}", f"{where}: {message}")


@rule("CO010", "compose-build-unresolved", Category.correctness, Severity.warning, "project")
def compose_build_unresolved(project: Project) -> Iterable[Hit]:
    """A compose build (or include, or extends) can't be resolved from what the repository holds.

    Compose fills `${VAR}` from the `.env` file in the project directory (the
    shell's environment is not read here, so the answer is the same on every
    machine). A build context or Dockerfile that uses a variable no `.env`
    sets and that has no default, a `${VAR:?message}` that fires, or an
    `include`/`extends` that names a missing file or service leaves the build
    unknown: it is reported here and left out of the analysis, not guessed.

    Why: compose substitutes an empty string (with a warning) or refuses to
    start; either way the image built is not the one the file seems to say,
    and no rule can check a context nobody can name.

    Example:
        services:
          api:
            build: {context: "${API_DIR}"}      # API_DIR is set in no .env

    Use instead:
        services:
          api:
            build: {context: "${API_DIR:-./api}"}   # or set API_DIR in .env beside the compose file
    """
    for each in project.compose_unresolved:
        yield Hit(each.line, each.message, each.message, file=each.file)
