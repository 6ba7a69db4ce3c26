"""Build-process and deployment rules: a bake file, a cached CI build, a health-gated rollout."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import yaml

from agent_pipelines.engine.domain import AlreadyResolved, Declined
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization.model import yaml_lines
from agent_pipelines.pipelines.docker_optimization.model.buildgraph import build_graph, dockerfile_healthcheck
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, rule

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

BAKE_FILE_FIX = Fix("bake-file")
CI_WORKFLOW_FIX = Fix("ci-workflow")
DEPLOY_SCRIPTS_FIX = Fix("deploy-scripts")

BAKE_FILE = "docker-bake.hcl"
BAKE_FILES = ("docker-bake.hcl", "docker-bake.json", "docker-bake.override.hcl", "docker-bake.override.json")
WORKFLOW = ".github/workflows/docker-build.yml"
DEPLOY_SCRIPT = "deploy/deploy.sh"
ROLLBACK_SCRIPT = "deploy/rollback.sh"
WORKFLOW_PATH = re.compile(r"^\.github/workflows/[^/]+\.ya?ml$")
BAKE_COMMAND = re.compile(r"\bbuildx\s+bake\b|\bdocker\s+bake\b")
GHA_CACHE = re.compile(r"\btype=gha\b")


def built_services(project: Project) -> list[str]:
    """The compose services that build an image, sorted: ``build_graph(project).built``, made from the compose
    files alone (not the whole graph, which reads every Dockerfile built) and kept across incremental updates
    while the compose files are the same objects (``Project.updated`` makes new ones when a file or the
    resolution of their builds changed). BP001 and BP002 run again after most commits (they read every Dockerfile, the whole tree)."""
    composes = tuple(project.composes)
    was: Any = project.names_memo.get("built_services")
    if was is None or len(was[0]) != len(composes) or any(a is not b for a, b in zip(was[0], composes)):
        builds = {(c.path, b.service) for c in composes for b in c.builds}
        names = {
            str(name)
            for c in composes
            if not c.error
            for name, data in c.services.items()
            if isinstance(data, dict) and (c.path, str(name)) in builds
        }
        was = project.names_memo["built_services"] = _KeptBuilt((composes, sorted(names)))
    return list(was[1])


def _health_checked(project: Project) -> list[str]:
    """The services with a health check, in rollout order (from ``build_graph``), kept across incremental updates
    while the compose files are the same objects and each build's image answers the same about its HEALTHCHECK
    (all the graph reads of a Dockerfile for it): most commits edit a Dockerfile, and DP001 runs after each."""
    composes = tuple(project.composes)
    answers = tuple(
        dockerfile_healthcheck(project.dockerfiles.get(b.dockerfile), b.target) for c in composes for b in c.builds
    )
    was: Any = project.names_memo.get("health_checked")
    if was is None or len(was[0]) != len(composes) or any(a is not b for a, b in zip(was[0], composes)):
        was = None
    if was is None or was[1] != answers:
        graph = build_graph(project)
        checked = [n for n in graph.runtime_order if graph.services[n].healthcheck]
        was = project.names_memo["health_checked"] = _KeptBuilt((composes, answers, checked))
    return list(was[2])


class _KeptBuilt(tuple):
    """What is kept with the compose files it was made from (``built_services``, ``_health_checked``), across
    added and removed files."""

    def follow(self, old: list[str], new: list[str], added: list[str], removed: list[str]) -> _KeptBuilt:
        return self


def workflow_steps(text: str) -> list[dict]:
    """The steps of every job of a workflow (an empty list when it doesn't parse)."""
    try:
        data = yaml_lines.load(text)  # YAML 1.2, as GitHub reads it: `on:` stays a key named "on"
    except yaml.YAMLError:
        return []
    jobs = data.get("jobs") if isinstance(data, dict) else None
    steps = []
    for job in jobs.values() if isinstance(jobs, dict) else ():
        for step in (job.get("steps") or []) if isinstance(job, dict) else ():
            if isinstance(step, dict):
                steps.append(step)
    return steps


def _bake_files(step: dict, project: Project) -> list[str]:
    """The definitions a bake step reads: its ``files`` input, else bake's default lookup."""
    files = str((step.get("with") or {}).get("files") or "")
    named = [f.strip().removeprefix("./") for f in re.split(r"[\n,]", files) if f.strip()]
    return named or [*BAKE_FILES, *(c.path for c in project.composes if "/" not in c.path)]


def step_builds_with_cache(step: dict, project: Project) -> bool:
    """A build-push-action step with a GHA cache, or a bake step whose inputs or definition hold one.

    A bake step reading a ``docker-bake.hcl`` that doesn't exist yet counts
    as cached when BP001 reports the missing file: its fix writes the file
    with the cache, and the missing file is reported once, by BP001.
    """
    uses = str(step.get("uses") or "")
    inputs = got if isinstance(got := step.get("with"), dict) else {}
    if uses.startswith("docker/build-push-action@"):
        return bool(GHA_CACHE.search(str(inputs.get("cache-from") or "")))
    if not (uses.startswith("docker/bake-action@") or BAKE_COMMAND.search(str(step.get("run") or ""))):
        return False
    if GHA_CACHE.search(str(inputs.get("set") or "")):
        return True
    for path in _bake_files(step, project):
        text = project.text(path) if path in project.files else None
        if text is not None and GHA_CACHE.search(text):
            return True
        if text is None and path == BAKE_FILE and bake_file_missing(project):
            return True
    return False


def bake_file_missing(project: Project) -> bool:
    return len(built_services(project)) >= 2 and not any(f in project.files for f in BAKE_FILES)


@rule(
    "BP001",
    "monorepo-without-bake-file",
    Category.performance,
    Severity.info,
    "project",
    reads=("composes", "dockerfiles", "docker-bake.*"),
    fix=BAKE_FILE_FIX,
    safety=Applicability.safe,
    phase="build",
)
def monorepo_without_bake_file(project: Project) -> Iterable[Hit]:
    """A repository that builds two or more images has no `docker-bake.hcl`.

    Why: without a bake file every image is built by its own `docker build`
    (or `docker compose build`, one after another), the order between images
    that build FROM each other is left to whoever runs the commands, and CI
    can't share a cache scope per image. `docker buildx bake` reads one file,
    builds independent images in parallel, builds an image another one uses
    first (through `contexts`), and caches each target separately.

    Example:
        docker-compose.yml with services api, worker and web, each with `build:`,
        and no docker-bake.hcl

    Use instead:
        group "default" {
          targets = ["api", "web", "worker"]
        }
        target "api" {
          context    = "."
          dockerfile = "services/api/Dockerfile"
          cache-from = GITHUB_ACTIONS == "true" ? ["type=gha,scope=api"] : []
          cache-to   = GITHUB_ACTIONS == "true" ? ["type=gha,mode=max,scope=api"] : []
        }
        (the GitHub Actions cache in CI only: the local docker driver can't export one)

    The fix writes one target per compose build whose context builds (every
    COPY/ADD source present and sent), with the build's args, secrets,
    target, platforms, labels and caches; a build that can't build is left
    out and named, with why, in a comment. A secret-looking value is never
    copied: its target reads a bake variable without a default.

    Fix safety: safe: it writes a new file (`docker-bake.hcl`) that only
    `docker buildx bake` reads; no image, Dockerfile or compose file changes.
    """
    if bake_file_missing(project):
        names = built_services(project)
        yield Hit(
            0,
            f"{len(names)} services build images ({', '.join(names)}) and there is no {BAKE_FILE}: "
            "they build one by one, in no declared order, without a per-image CI cache",
            f"no {BAKE_FILE}; built: {', '.join(names)}",
            file=BAKE_FILE,
        )


@rule(
    "BP002",
    "ci-build-without-cache",
    Category.performance,
    Severity.info,
    "project",
    fix=CI_WORKFLOW_FIX,
    safety=Applicability.safe,
    phase="build",
)
def ci_build_without_cache(project: Project) -> Iterable[Hit]:
    """No GitHub Actions workflow builds the images with a build cache.

    Fires when compose services build images and no `.github/workflows/*.yml`
    has a step that builds them with GitHub's cache: `docker/build-push-action`
    with `cache-from: type=gha`, or `docker/bake-action` (or `docker buildx
    bake`) whose `set` input or bake file holds `type=gha` caches.

    Why: a CI runner starts empty. Without an exported cache every pull
    request rebuilds every layer of every image from scratch: the pip and
    npm installs that take minutes locally take them on every push.

    Example:
        - run: docker compose build

    Use instead:
        - uses: docker/setup-buildx-action@v3
        - uses: docker/bake-action@v5
          with:
            source: .
            push: false
        (with `cache-from`/`cache-to` `type=gha` per target in docker-bake.hcl)

    Fix safety: safe: a new workflow file; the images, Dockerfiles and
    compose files are unchanged (the workflow builds without pushing).
    """
    names = built_services(project)
    if not names:
        return
    workflows = (".github/workflows/" + p for p in project.files_under(".github/workflows"))  # not every path
    for path in sorted(p for p in workflows if WORKFLOW_PATH.match(p)):
        if any(step_builds_with_cache(step, project) for step in workflow_steps(project.text(path) or "")):
            return
    yield Hit(
        0,
        f"no CI workflow builds the images ({', '.join(names)}) with a cache: every CI build starts cold",
        f"no workflow with a type=gha build cache; built: {', '.join(names)}",
        file=WORKFLOW,
    )


@rule(
    "DP001",
    "no-health-gated-deploy",
    Category.reliability,
    Severity.info,
    "project",
    reads=("composes", "dockerfiles", "deploy/deploy.sh"),
    fix=DEPLOY_SCRIPTS_FIX,
    safety=Applicability.safe,
    phase="deploy",
)
def no_health_gated_deploy(project: Project) -> Iterable[Hit]:
    """A compose stack with healthchecks has no health-gated deploy script (`deploy/deploy.sh`).

    Why: `docker compose up -d` replaces every container at once and returns
    as soon as they are started, healthy or not. A service that comes up
    broken takes its dependents down with it, and nothing puts the previous
    image back. Rolling services out one at a time in dependency order,
    waiting for each to report healthy and rolling it back when it doesn't,
    stops a bad image at the first service it breaks.

    Example:
        services:
          redis:
            image: redis:7
            healthcheck: {test: ["CMD", "redis-cli", "ping"]}
          api:
            build: ./api
            depends_on: [redis]
        (deployed with `docker compose up -d`)

    Use instead:
        deploy/deploy.sh: for each service in depends_on order, tag the running
        image :previous, `docker compose up -d --no-deps <service>`, wait for
        `healthy`, and on a timeout retag :previous and stop with an error.

    The fix's script waits for each service what its health check allows
    (start_period + retries × (interval + timeout)), doesn't wait on a
    service without one or whose check compose disables, and starts a
    service behind a compose profile only when that profile is enabled.

    Fix safety: safe: new scripts that run only when someone runs them; no
    image or compose file changes. Their waits come from each service's
    own health check settings, never from a figure of ours.
    """
    if DEPLOY_SCRIPT in project.files:
        return
    checked = _health_checked(project)
    if checked:
        yield Hit(
            0,
            f"the compose stack has healthchecks ({', '.join(checked)}) but no {DEPLOY_SCRIPT}: "
            "a rollout doesn't wait for them and can't roll back",
            f"no {DEPLOY_SCRIPT}; healthchecks: {', '.join(checked)}",
            file=DEPLOY_SCRIPT,
        )


# -- fixes -----------------------------------------------------------------------------------------------
# Build-process and deployment fixes: write the bake file, the CI workflow, the deploy scripts.
#
# Each writes new files only, generated from the build graph of the project
# as it is now; a file that exists already is never overwritten (the task
# is then AlreadyResolved: an earlier change, or a person, wrote it).


def _absent(project: Project, path: str) -> None:
    if path in project.files:
        raise AlreadyResolved(f"{path} exists now: an earlier change wrote it")


@BAKE_FILE_FIX.applies(
    "Build every image with one docker-bake.hcl: parallel levels, build order, per-image CI cache", writes=(BAKE_FILE,)
)
def write_bake_file(project: Project, task: Task, design: Design) -> dict[str, str]:
    from agent_pipelines.pipelines.docker_optimization.generate.bake import (
        bake_file,
    )  # generate/ reads this module's names

    for path in BAKE_FILES:
        _absent(project, path)
    graph = build_graph(project)
    if len(graph.built) < 2:
        raise AlreadyResolved(f"only {len(graph.built)} service builds an image now: no bake file needed")
    return {BAKE_FILE: bake_file(project, graph)}


@CI_WORKFLOW_FIX.applies(
    "Build the images in GitHub Actions with a cache, and report findings to code scanning", writes=(WORKFLOW,)
)
def write_ci_workflow(project: Project, task: Task, design: Design) -> dict[str, str]:
    from agent_pipelines.pipelines.docker_optimization.generate.workflow import (
        workflow_file,
    )  # it reads this module's names

    _absent(project, WORKFLOW)
    return {WORKFLOW: workflow_file(project)}


@DEPLOY_SCRIPTS_FIX.applies(
    "Roll out in dependency order, gated on health, with rollback: deploy/deploy.sh",
    writes=(DEPLOY_SCRIPT, ROLLBACK_SCRIPT),
    executable=(DEPLOY_SCRIPT, ROLLBACK_SCRIPT),
)
def write_deploy_scripts(project: Project, task: Task, design: Design) -> dict[str, str]:
    from agent_pipelines.pipelines.docker_optimization.generate.deploy import deploy_script, rollback_script

    _absent(project, DEPLOY_SCRIPT)
    graph = build_graph(project)
    if not any(s.healthcheck for s in graph.services.values()):
        raise Declined("no service has a healthcheck any more: nothing to gate a rollout on")
    written = {DEPLOY_SCRIPT: deploy_script(project, graph)}
    if ROLLBACK_SCRIPT not in project.files:  # a rollback.sh someone wrote stays theirs
        written[ROLLBACK_SCRIPT] = rollback_script(project, graph)
    return written
