"""Compose rules: resource limits, service health, restarts and logs, build caches, schema validity."""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Iterable
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.tokens import CommentToken

from engine.finding import Applicability, Category, Severity
from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization.model import compose as compose_mod, variants
from pipelines.docker_optimization.model.compose import BuildSpec, ComposeFile, RoundTrip
from pipelines.docker_optimization.model.copies import problems
from pipelines.docker_optimization.model.dockerfile import Dockerfile
from pipelines.docker_optimization.model.project import Project
from pipelines.docker_optimization.rules import Fix, Hit, rule
from pipelines.docker_optimization.rules.context import built_from, readable_ignore
from pipelines.docker_optimization import policy

COMPOSE_CPU_FIX = Fix("compose-cpu")
COMPOSE_HEALTHY_DEPS_FIX = Fix("compose-healthy-deps")

try:  # written by another family; without it CO004 has nothing to ask and stays quiet
    from pipelines.docker_optimization.model.image_tools import tools_in_final_stage
except ImportError:  # pragma: no cover - depends on the tree
    tools_in_final_stage = None

# A healthcheck's shell command split into simple commands; the words that are not programs.
_SHELL_SPLIT = re.compile(r"&&|\|\||[;|&()]|\bthen\b|\bdo\b|\belse\b")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SHELL_BUILTINS = frozenset({
    "exit", "true", "false", "test", "[", "[[", "echo", "printf", "cd", "export", "set", "exec", "if", "fi",
    "then", "else", "elif", "while", "until", "for", "done", "case", "esac", "!", "{", "}", "read", "return",
    "kill", "wait", ":", ".", "source", "command", "type", "ulimit", "umask", "eval", "shift", "local",
})
HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"
# Log drivers that rotate by default (local) or don't keep the logs on the host's disk.
LOG_DRIVERS_BOUNDED = frozenset({"local", "none", "syslog", "journald", "gelf", "fluentd", "awslogs", "splunk",
                                 "etwlogs", "gcplogs", "logentries"})
# A registry host is the first path component of a reference when it has a "." or ":" or is localhost.
_REGISTRY_HOST = re.compile(r"^(?:localhost|[^/]*[.:][^/]*)/")


def limits(service: dict) -> dict:
    deploy = service.get("deploy") if isinstance(service.get("deploy"), dict) else {}
    resources = deploy.get("resources") if isinstance(deploy.get("resources"), dict) else {}
    found = resources.get("limits") if isinstance(resources.get("limits"), dict) else {}
    return found


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _line(node: object, key: object, default: int) -> int:
    """The 1-based line of ``key`` (a mapping key or a list index) in a round-trip node."""
    try:
        found = node.lc.item(key) if isinstance(node, list) else node.lc.key(key)
        return found[0] + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return default


def _build_of(compose: ComposeFile, name: str) -> BuildSpec | None:
    return next((b for b in compose.builds if b.service == name), None)


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
    return bool(df and not df.error and dockerfile_healthcheck(df, build.target))


@dataclass(frozen=True)
class Dependency:
    service: str
    on: str
    condition: str      # "" for the short syntax (which means service_started)
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
    return [Dependency(name, str(d), str(_mapping(v).get("condition") or ""), line(d))
            for d, v in _mapping(deps).items()]


def unhealthy_waits(project: Project, compose: ComposeFile) -> list[Dependency]:
    """Dependencies that start as soon as a service with a healthcheck has *started*."""
    found = []
    for name in compose.services:
        for dep in dependencies(compose, str(name)):
            if dep.condition in ("", "service_started") and dep.on in compose.services \
                    and has_healthcheck(project, compose, dep.on):
                found.append(dep)
    return found


@rule("CO001", "service-without-cpu-limit", Category.reliability, Severity.warning, "service",
      fix=COMPOSE_CPU_FIX, safety=Applicability.unsafe, phase="compose")
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
    data = svc.effective   # a variant file's patch gets its limits from the service it patches
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


@rule("CO003", "depends-on-without-healthy-condition", Category.reliability, Severity.warning, "project",
      reads=("composes", "dockerfiles"),
      fix=COMPOSE_HEALTHY_DEPS_FIX, safety=Applicability.unsafe, phase="compose")
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
    for compose in project.composes:
        if compose.error:
            continue
        for dep in unhealthy_waits(project, compose):
            how = "depends_on" if not dep.condition else f"condition {dep.condition}"
            yield Hit(dep.line, f"service {dep.service} waits only for {dep.on} to start ({how}), "
                                f"though {dep.on} has a healthcheck: use condition: service_healthy",
                      f"{dep.service}: depends_on {dep.on}", file=compose.path)


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


@rule("CO004", "healthcheck-tool-missing", Category.reliability, Severity.error, "project",
      reads=("composes", "dockerfiles"))
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
    if tools_in_final_stage is None:
        return
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
                yield Hit(_line(hc, "test", compose.line_of(str(name))),
                          f"service {name}'s healthcheck runs {', '.join(missing)}, which the image built from "
                          f"{build.dockerfile} doesn't have: the service never becomes healthy",
                          f"{name}: healthcheck {' '.join(missing)}", file=compose.path)


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
    yield Hit(svc.line, f"service {svc.name} logs to json-file without max-size: its logs grow until the disk is full",
              f"{svc.name}: logging")


# -- build caches --------------------------------------------------------------------------


def _with_tag(ref: str) -> str:
    name = ref.split("@", 1)[0]
    return ref if "@" in ref or ":" in name.rsplit("/", 1)[-1] else ref + ":latest"


def built_images(project: Project) -> set[str]:
    """``image:`` names of services that also ``build:`` (compose tags the build with them)."""
    return {_with_tag(str(svc["image"])) for c in project.composes for svc in c.services.values()
            if isinstance(svc, dict) and "build" in svc and svc.get("image")}


def is_registry_cache(entry: str) -> bool:
    """A cache_from entry that names its backend (``type=registry,ref=...``, gha, local, s3...)
    or an image on an explicit registry host (``ghcr.io/org/app:cache``, ``localhost:5000/x``)."""
    return entry.startswith("type=") or "," in entry or bool(_REGISTRY_HOST.match(entry))


@rule("CO006", "cache-from-unknown-image", Category.performance, Severity.warning, "project",
      reads=("composes",))
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
                yield Hit(_line(entries, index, compose.line_of(str(name))),
                          f"service {name} takes its build cache from {ref}, which no service here builds and "
                          "no registry is named for: the cache is likely missing", f"{name}: cache_from {ref}",
                          file=compose.path)


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
        contexts = [c for c in built_from(project, dockerfile) if readable_ignore(c)]
        if len(built_from(project, dockerfile)) < 2 or df.error:
            continue
        broken = {c.dir: problems(c, df) for c in contexts}
        working = [c.dir for c in contexts if not broken[c.dir]]
        for ctx in contexts:
            if not broken[ctx.dir]:
                continue
            source, why = broken[ctx.dir][0]
            elsewhere = f"; it builds from {', '.join(working)}" if working else ""
            more = f" (and {len(broken[ctx.dir]) - 1} more)" if len(broken[ctx.dir]) > 1 else ""
            for build in ctx.builds:   # at the compose file that wrote the build (an override, an included file...)
                yield Hit(build.line, f"service {build.service} builds {dockerfile} from context {ctx.dir}, "
                                      f"where line {source.ins.start_line} breaks: {why}{more}{elsewhere}",
                          f"{build.service}: {source.ins.original}", file=build.file)


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
