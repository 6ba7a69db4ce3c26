""".github/workflows/docker-build.yml: analyze the Docker setup, and build every image with GitHub's cache.

Two jobs. ``analyze`` runs this pipeline's analyzer and uploads its SARIF to
code scanning (``security-events: write``) through the project's GitHub Action
(``action.yml`` at its root): ``uses: ./`` in the analyzer's own repository,
else the reference ``ci-action`` in ``.pipeline.yaml`` names
(``owner/repo@ref``). Without one (the project has no published home to name
by default), the job installs the analyzer from the repository variable
``PIPELINE_ANALYZER`` and is skipped while it is unset. ``build`` builds the images with
BuildKit and the GitHub Actions cache: through ``docker/bake-action`` and the
repository's bake file when there is one (or BP001 writes it), else with
``docker/build-push-action`` for the single image. Images are pushed (to
ghcr.io, under the repository's name) from the default branch only, never
from a pull request. Images whose context can't build are not built (bake
leaves them out; the workflow's header names them), and secret-looking
build args are not written into it.
"""

from __future__ import annotations

import json
import re

from agent_pipelines.engine.domain import Declined
from agent_pipelines.pipelines.docker_optimization.generate.bake import _pairs
from agent_pipelines.pipelines.docker_optimization.generate.targets import Build, buildable, interpolate
from agent_pipelines.pipelines.docker_optimization.model.buildgraph import BuildGraph, build_graph
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules.process import (
    BAKE_FILE,
    BAKE_FILES,
    GHA_CACHE,
    bake_file_missing,
)
from agent_pipelines.pipelines.docker_optimization.rules.security_secrets import is_secret_name

_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_ANALYZER_ENTRY_POINT = re.compile(r"""^\s*\[project\.entry-points\.["']?pipeline\.pipelines["']?\]""", re.MULTILINE)

HEADER = """\
# Written by the docker-optimization pipeline.
#   analyze: the docker-optimization rules over Dockerfiles, compose files and build
#            contexts; findings go to the repository's code scanning alerts.
#   build:   {build}
#            Pushed to ghcr.io from the default branch only, never from a pull request.
name: docker-build

on:
  push:
  pull_request:

permissions:
  contents: read

concurrency:
  group: docker-build-${{{{ github.ref }}}}
  cancel-in-progress: true

jobs:
  analyze:
{analyze_guard}    runs-on: ubuntu-latest
    permissions:
      contents: read
      security-events: write
    steps:
      - uses: actions/checkout@v4
{analyze}

  build:
    runs-on: ubuntu-latest
    permissions:
      contents: read
      packages: write
    env:
      PUSH: ${{{{ github.event_name == 'push' && github.ref_name == github.event.repository.default_branch }}}}
    steps:
      - uses: actions/checkout@v4
      - uses: docker/setup-buildx-action@v3
      - name: Name images after this repository
        run: echo "PROJECT=ghcr.io/${{GITHUB_REPOSITORY,,}}" >> "$GITHUB_ENV"
      - name: Log in to ghcr.io
        if: ${{{{ env.PUSH == 'true' }}}}
        uses: docker/login-action@v3
        with:
          registry: ghcr.io
          username: ${{{{ github.actor }}}}
          password: ${{{{ secrets.GITHUB_TOKEN }}}}
"""

ANALYZE_WITH_ACTION = """\
      - name: Analyze, and upload the findings to code scanning
        uses: {action}
        with:
          path: .
          fail-on: error"""

ANALYZE_CONFIGURED = """\
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - name: Install the docker-optimization analyzer
        run: pip install "$PIPELINE_ANALYZER"
        env:
          PIPELINE_ANALYZER: ${{ vars.PIPELINE_ANALYZER }}
      - name: Analyze
        run: pipeline analyze --format sarif > pipeline.sarif
      - name: Upload the findings to code scanning
        uses: github/codeql-action/upload-sarif@v3
        with:
          sarif_file: pipeline.sarif
          category: docker-optimization"""

ANALYZE_GUARD = """\
    # Turned on by the repository variable PIPELINE_ANALYZER: what pip installs the
    # analyzer from (a path in this repository, a git URL or a package name).
    if: ${{ vars.PIPELINE_ANALYZER != '' }}
"""

BAKE_STEP = """\
      - name: Build the images with bake
        uses: docker/bake-action@v5
        with:
          source: .
          files: {files}
          push: ${{{{ env.PUSH == 'true' }}}}
"""

BUILD_PUSH_STEP = """\
      - name: Build the {service} image
        uses: docker/build-push-action@v6
        with:
          context: {context}
          file: {file}
{extra}          tags: {tags}
          push: ${{{{ env.PUSH == 'true' }}}}
          cache-from: type=gha,scope={scope}
          cache-to: type=gha,mode=max,scope={scope}
"""


def installs_itself(project: Project) -> bool:
    """The repository is the analyzer's own (its pyproject declares the pipeline entry point)."""
    if "pyproject.toml" not in project.files:
        return False
    return bool(_ANALYZER_ENTRY_POINT.search(project.text("pyproject.toml") or ""))


def analyzer_action(project: Project) -> str:
    """The ``uses:`` of the analyze job's action: ``./`` in the analyzer's own repository, else ``ci-action``
    of ``.pipeline.yaml``; "" when neither says (then the job installs the analyzer from a variable)."""
    if installs_itself(project):
        return "./"
    from agent_pipelines.pipelines.docker_optimization.ignores import CONFIG_NAMES, load_config

    path = next((c for c in CONFIG_NAMES if c in project.files), "")
    return load_config(path, project.text(path)).ci_action if path else ""


def bake_files(project: Project) -> list[str]:
    """The bake files the workflow builds with: the existing ones, or the one BP001 writes; [] for none."""
    present = [f for f in BAKE_FILES if f in project.files]
    if present:
        if not any(GHA_CACHE.search(project.text(f) or "") for f in present):
            raise Declined(
                f"{', '.join(present)} has no type=gha cache: a bake step would build cold; "
                "left for a person (add cache-from/cache-to per target)"
            )
        return present
    return [BAKE_FILE] if bake_file_missing(project) else []


def _q(value: str) -> str:
    return json.dumps(value)


def _build_args(build: Build) -> tuple[list[str], list[str]]:
    """``NAME=value`` as compose resolves them, and the names not copied (secret-looking, or set by nothing)."""
    args, skipped = [], []
    for name, value in sorted(_pairs(build.build.get("args")), key=lambda p: p[0]):
        if value is None:
            value = build.env.get(name)
        if value is None:
            continue  # compose passes nothing either: the Dockerfile's default applies
        resolved, _ = interpolate(value, build.env)
        if is_secret_name(name) or any(is_secret_name(v) for v in _VARIABLE.findall(value)):
            skipped.append(name)
            continue
        args.append(f"{name}={resolved}")
    return args, skipped


def _build_push_step(project: Project, graph: BuildGraph) -> str:
    if len(graph.built) != 1:
        raise Declined(f"{len(graph.built)} services build images and no bake file will build them")
    name = graph.built[0]
    chosen = buildable(project, graph)
    if name not in chosen.builds:
        raise Declined(f"the one image can't be built: {chosen.left_out.get(name, 'no build')}")
    build, svc = chosen.builds[name], graph.services[name]
    target = str(build.build.get("target") or "")
    extra = f"          target: {_q(target)}\n" if target else ""
    args, skipped = _build_args(build)
    if skipped:
        extra += (
            f"          # not copied from {build.compose} (secret-looking): {', '.join(skipped)}; "
            "pass them as build secrets\n"
        )
    if args:
        extra += "          build-args: |\n" + "".join(f"            {a}\n" for a in args)
    tags = _q(svc.image) if svc.image and "$" not in svc.image else f"${{{{ env.PROJECT }}}}/{svc.name}:latest"
    return BUILD_PUSH_STEP.format(
        service=svc.name, context=_q(build.context), file=_q(build.dockerfile), extra=extra, tags=tags, scope=svc.name
    )


def workflow_file(project: Project, graph: BuildGraph | None = None) -> str:
    graph = graph or build_graph(project)
    if not graph.built:
        raise Declined("no compose service builds an image: nothing for CI to build")
    files = bake_files(project)
    if files:
        build = (
            f"every image with `docker buildx bake` ({', '.join(files)}): in parallel where\n"
            "#            the build graph allows, each target cached in GitHub's cache (type=gha)."
        )
        if BAKE_FILE in files and BAKE_FILE not in project.files:  # the one BP001 writes: say what it leaves out
            left_out = buildable(project, graph).comment("the bake file")
            build += "".join("\n#            " + line[2:] for line in left_out)
        step = BAKE_STEP.format(
            files=_q(files[0]) if len(files) == 1 else "|\n" + "".join(f"            {f}\n" for f in files).rstrip("\n")
        )
    else:
        build = f"the {graph.built[0]} image with BuildKit, cached in GitHub's cache (type=gha)."
        step = _build_push_step(project, graph)
    action = analyzer_action(project)
    return (
        HEADER.format(
            build=build,
            analyze_guard="" if action else ANALYZE_GUARD,
            analyze=ANALYZE_WITH_ACTION.format(action=action) if action else ANALYZE_CONFIGURED,
        )
        + step
    )
