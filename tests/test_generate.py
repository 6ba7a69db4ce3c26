"""The build and deploy generators (bake file, CI workflow, deploy/rollback scripts), their rules and gates.

Each generator's exact output for a small three-service repository is
spelled out here; the scripts are also run against a stand-in docker CLI
to show the rollout order, the health gate and the rollback.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent_pipelines.engine.artifacts import Design
from agent_pipelines.engine.domain import AlreadyResolved, FixError
from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization import PIPELINE
from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain
from agent_pipelines.pipelines.docker_optimization.generate.bake import bake_file
from agent_pipelines.pipelines.docker_optimization.generate.deploy import deploy_script, rollback_script
from agent_pipelines.pipelines.docker_optimization.generate.workflow import workflow_file
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.review.validate import gates_for, parse_bake
from agent_pipelines.pipelines.docker_optimization.rules import pack
from tests.rulekit import codes, write

SMALL = {
    "docker-compose.yml": """\
services:
  base:
    build: ./base
    image: shop/base:latest
  app:
    build:
      context: .
      dockerfile: app/Dockerfile
      target: runtime
      args:
        PYTHON: "3.12"
    depends_on:
      cache:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "python", "-c", "print(1)"]
  cache:
    image: redis:7
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
""",
    "base/Dockerfile": "FROM python:3.12-slim\nRUN pip install flask\n",
    "app/Dockerfile": (
        'ARG PYTHON=3.11\nFROM shop/base:latest AS runtime\nCOPY app /app\nCMD ["python", "/app/main.py"]\n'
    ),
}

BAKE = r"""# The images of docker-compose.yml, written by the docker-optimization pipeline.
#   docker buildx bake            builds every target, in parallel where the build graph allows
#   docker buildx bake level-1    builds one level of the build graph (its targets in parallel)
#   TAG=1.4.0 PROJECT=ghcr.io/acme docker buildx bake --push

variable "TAG" {
  default = "latest"
}

# The namespace of images whose compose service names no image.
variable "PROJECT" {
  default = "shop"
}

# GitHub Actions sets GITHUB_ACTIONS=true: targets read and write its cache there. Locally
# there is no cache (the default docker driver can't export one).
variable "GITHUB_ACTIONS" {
  default = "false"
}

group "default" {
  targets = ["app", "base"]
}

# Level 1 of the build graph: builds FROM no other target's image; all in parallel.
group "level-1" {
  targets = ["base"]
}

# Level 2: builds FROM images of earlier levels; in parallel with each other.
group "level-2" {
  targets = ["app"]
}

target "app" {
  context = "."
  dockerfile = "app/Dockerfile"
  target = "runtime"
  args = {
    PYTHON = "3.12"
  }
  contexts = {
    "shop/base" = "target:base"
  }
  tags = ["${PROJECT}/app:${TAG}"]
  cache-from = GITHUB_ACTIONS == "true" ? ["type=gha,scope=app"] : []
  cache-to = GITHUB_ACTIONS == "true" ? ["type=gha,mode=max,scope=app"] : []
}

target "base" {
  context = "base"
  dockerfile = "Dockerfile"
  tags = ["shop/base:${TAG}"]
  cache-from = GITHUB_ACTIONS == "true" ? ["type=gha,scope=base"] : []
  cache-to = GITHUB_ACTIONS == "true" ? ["type=gha,mode=max,scope=base"] : []
}
"""

WORKFLOW = r"""# Written by the docker-optimization pipeline.
#   analyze: the docker-optimization rules over Dockerfiles, compose files and build
#            contexts; findings go to the repository's code scanning alerts.
#   build:   every image with `docker buildx bake` (docker-bake.hcl): in parallel where
#            the build graph allows, each target cached in GitHub's cache (type=gha).
#            Pushed to ghcr.io from the default branch only, never from a pull request.
name: docker-build

on:
  push:
  pull_request:

permissions:
  contents: read

concurrency:
  group: docker-build-${{ github.ref }}
  cancel-in-progress: true

jobs:
  analyze:
    # Turned on by the repository variable PIPELINE_ANALYZER: what pip installs the
    # analyzer from (a path in this repository, a git URL or a package name).
    if: ${{ vars.PIPELINE_ANALYZER != '' }}
    runs-on: ubuntu-latest
    permissions:
      contents: read
      security-events: write
    steps:
      - uses: actions/checkout@v4
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
          category: docker-optimization

  build:
    runs-on: ubuntu-latest
    permissions:
      contents: read
      packages: write
    env:
      PUSH: ${{ github.event_name == 'push' && github.ref_name == github.event.repository.default_branch }}
    steps:
      - uses: actions/checkout@v4
      - uses: docker/setup-buildx-action@v3
      - name: Name images after this repository
        run: echo "PROJECT=ghcr.io/${GITHUB_REPOSITORY,,}" >> "$GITHUB_ENV"
      - name: Log in to ghcr.io
        if: ${{ env.PUSH == 'true' }}
        uses: docker/login-action@v3
        with:
          registry: ghcr.io
          username: ${{ github.actor }}
          password: ${{ secrets.GITHUB_TOKEN }}
      - name: Build the images with bake
        uses: docker/bake-action@v5
        with:
          source: .
          files: "docker-bake.hcl"
          push: ${{ env.PUSH == 'true' }}
"""

SINGLE = {
    "compose.yaml": """\
services:
  api:
    build:
      context: ./svc
      target: prod
      args:
        MODE: fast
    image: ghcr.io/acme/api:latest
""",
    "svc/Dockerfile": "FROM python:3.12-slim AS prod\n",
}

SINGLE_BUILD_STEP = r"""      - name: Build the api image
        uses: docker/build-push-action@v6
        with:
          context: "svc"
          file: "svc/Dockerfile"
          target: "prod"
          build-args: |
            MODE=fast
          tags: "ghcr.io/acme/api:latest"
          push: ${{ env.PUSH == 'true' }}
          cache-from: type=gha,scope=api
          cache-to: type=gha,mode=max,scope=api
"""

DEPLOY = r"""#!/usr/bin/env bash
# Written by the docker-optimization pipeline from docker-compose.yml.
# A health-gated rollout, one service at a time, dependencies first. For each service:
# tag the image it runs now as <repository>:previous, `docker compose up -d --no-deps` it,
# and wait until it is healthy (or, without a healthcheck, running). One that isn't healthy
# within its health check's budget (below) goes back to :previous and the rollout stops (exit 1).
#
#   bash deploy/deploy.sh                    every service that compose starts by default
#   bash deploy/deploy.sh SERVICE...         only these, still in dependency order
#   COMPOSE_PROFILES=p bash deploy/deploy.sh also the services of profile p
#   DEPLOY_TIMEOUT=N bash deploy/deploy.sh   wait N seconds for every service instead
#
# It starts the images that are there: build or pull the new ones first
# (`docker buildx bake`, `docker compose build`, `docker compose pull`).
set -euo pipefail

PROG=deploy
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Dependency order (compose depends_on).
ORDER=(base cache app)
# One-shot services others wait for with condition service_completed_successfully: exit 0 is success;
# each is waited for until it exits (compose gives a job no time limit; DEPLOY_TIMEOUT sets one).
JOBS=()
# Health gates, from the compose file and Dockerfiles: each service is waited for at most
# start_period + retries × (interval + timeout), the longest Docker takes to call it unhealthy:
#   cache: 0s + 3 × (30s + 30s) = 180s (compose healthcheck; Docker's default interval, timeout, start_period, retries)
#   app: 0s + 3 × (30s + 30s) = 180s (compose healthcheck; Docker's default interval, timeout, start_period, retries)
# Not waited on for health (running is checked once, right after it starts):
#   base: no healthcheck
declare -A WAIT=([cache]=180 [app]=180)
declare -A PROFILES=()

DEPLOY_INTERVAL="${DEPLOY_INTERVAL:-2}"

log() {
  printf '%s: %s\n' "$PROG" "$*" >&2
}

# The ids of a service's containers, one a line.
containers() {
  docker compose ps --all -q "$1"
}

# An image reference without its tag or digest: registry:5000/shop/api:1 -> registry:5000/shop/api
repository() {
  local ref=${1%@*}
  if [[ ${ref##*/} == *:* ]]; then
    ref=${ref%:*}
  fi
  printf '%s\n' "$ref"
}

is_job() {
  local job
  for job in "${JOBS[@]}"; do
    if [[ $job == "$1" ]]; then
      return 0
    fi
  done
  return 1
}

# wait_ready SERVICE: every container running and, when WAIT gives the service a health budget,
# healthy within it (a one-shot job: exited 0). DEPLOY_TIMEOUT, when set, replaces every budget.
wait_ready() {
  local service=$1 budget gated=0 deadline ids id state health code ready
  budget=${WAIT[$service]:-0}
  if [[ -n ${WAIT[$service]:-} ]]; then
    gated=1
  fi
  if [[ -n ${DEPLOY_TIMEOUT:-} ]]; then
    budget=$DEPLOY_TIMEOUT
  elif is_job "$service"; then
    budget=-1
  fi
  deadline=$((SECONDS + budget))
  while true; do
    mapfile -t ids < <(containers "$service")
    ready=${#ids[@]}
    for id in "${ids[@]}"; do
      state="" code="" health=""
      read -r state code health < <(docker inspect --format \
        '{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id") || true
      if [[ $state == exited && $code == 0 ]] && is_job "$service"; then
        continue
      fi
      if [[ $state == exited || $state == dead ]]; then
        log "$service: container ${id:0:12} is $state (exit code $code)"
        return 1
      fi
      if ((gated)) && [[ $health == unhealthy ]]; then
        log "$service: container ${id:0:12} is unhealthy"
        return 1
      fi
      if [[ $state != running ]] || is_job "$service" || { ((gated)) && [[ $health != healthy ]]; }; then
        ready=0
      fi
    done
    if ((ready > 0)); then
      if ((gated)); then
        log "$service: healthy"
      elif is_job "$service"; then
        log "$service: completed"
      else
        log "$service: running (no health check to wait for)"
      fi
      return 0
    fi
    if ((budget >= 0 && SECONDS >= deadline)); then
      log "$service: not ready after ${budget}s"
      return 1
    fi
    sleep "$DEPLOY_INTERVAL"
  done
}

# restore SERVICE REFERENCE: point REFERENCE back at <repository>:previous and recreate the service.
restore() {
  local service=$1 ref=$2 previous
  previous="$(repository "$ref"):previous"
  if ! docker image inspect "$previous" >/dev/null 2>&1; then
    log "$service: no $previous image to go back to"
    return 1
  fi
  log "$service: rolling back to $previous"
  docker tag "$previous" "$ref"
  docker compose up -d --no-deps --no-build --force-recreate "$service"
  wait_ready "$service"
}

check_services() {
  local name known service
  for name in "$@"; do
    known=0
    for service in "${ORDER[@]}"; do
      if [[ $service == "$name" ]]; then
        known=1
      fi
    done
    if ((known == 0)); then
      log "unknown service $name (services: ${ORDER[*]})"
      exit 2
    fi
  done
}

# active SERVICE: it has no compose profile, or one of its profiles is in COMPOSE_PROFILES.
active() {
  local profile profiles
  if [[ -z ${PROFILES[$1]:-} ]]; then
    return 0
  fi
  read -ra profiles <<<"${PROFILES[$1]}"
  for profile in "${profiles[@]}"; do
    if [[ ${COMPOSE_PROFILES:-} == "*" || ,${COMPOSE_PROFILES:-}, == *",$profile,"* ]]; then
      return 0
    fi
  done
  return 1
}

# selected SERVICE [NAME...]: named on the command line, or (with no names) active.
selected() {
  local name
  if (($# == 1)); then
    active "$1"
    return
  fi
  for name in "${@:2}"; do
    if [[ $name == "$1" ]]; then
      return 0
    fi
  done
  return 1
}

# deploy_one SERVICE: roll it out; roll it back and exit 1 when it doesn't get ready.
deploy_one() {
  local service=$1 ids ref="" image
  mapfile -t ids < <(containers "$service")
  if ((${#ids[@]} > 0)); then
    ref=$(docker inspect --format '{{.Config.Image}}' "${ids[0]}")
    image=$(docker inspect --format '{{.Image}}' "${ids[0]}")
  fi
  if [[ $ref == sha256:* ]]; then
    log "$service: its container names its image by id only (an old docker compose?), so no :previous is kept"
    ref=""
  elif [[ -n $ref ]]; then
    docker tag "$image" "$(repository "$ref"):previous"
    log "$service: runs $ref (${image:7:12}), kept as $(repository "$ref"):previous"
  else
    log "$service: not running yet, so there is nothing to roll back to"
  fi
  docker compose up -d --no-deps "$service"
  if wait_ready "$service"; then
    return 0
  fi
  if [[ -z $ref ]]; then
    log "$service: failed on its first rollout; stopping here"
  elif restore "$service" "$ref"; then
    log "$service: back on its previous image; stopping here"
  else
    log "$service: the rollback didn't get it ready either; stopping here"
  fi
  exit 1
}

check_services "$@"
for service in "${ORDER[@]}"; do
  if selected "$service" "$@"; then
    log "$service: rolling out"
    deploy_one "$service"
  fi
done
log "rolled out: ${*:-${ORDER[*]}}"
"""

ROLLBACK = r"""#!/usr/bin/env bash
# Written by the docker-optimization pipeline from docker-compose.yml.
# Put services back on the image deploy.sh kept as <repository>:previous, dependents
# first, and wait for each to be healthy (or, without a healthcheck, running) again.
#
#   bash deploy/rollback.sh              every service that has a :previous image
#   bash deploy/rollback.sh SERVICE...   only these
#
# Exits 1 when a service couldn't be rolled back or isn't ready within its health check's budget.
set -euo pipefail

PROG=rollback
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Dependency order (compose depends_on); rolled back in reverse.
ORDER=(base cache app)
JOBS=()
# Health gates, from the compose file and Dockerfiles: each service is waited for at most
# start_period + retries × (interval + timeout), the longest Docker takes to call it unhealthy:
#   cache: 0s + 3 × (30s + 30s) = 180s (compose healthcheck; Docker's default interval, timeout, start_period, retries)
#   app: 0s + 3 × (30s + 30s) = 180s (compose healthcheck; Docker's default interval, timeout, start_period, retries)
# Not waited on for health (running is checked once, right after it starts):
#   base: no healthcheck
declare -A WAIT=([cache]=180 [app]=180)
declare -A PROFILES=()

DEPLOY_INTERVAL="${DEPLOY_INTERVAL:-2}"

log() {
  printf '%s: %s\n' "$PROG" "$*" >&2
}

# The ids of a service's containers, one a line.
containers() {
  docker compose ps --all -q "$1"
}

# An image reference without its tag or digest: registry:5000/shop/api:1 -> registry:5000/shop/api
repository() {
  local ref=${1%@*}
  if [[ ${ref##*/} == *:* ]]; then
    ref=${ref%:*}
  fi
  printf '%s\n' "$ref"
}

is_job() {
  local job
  for job in "${JOBS[@]}"; do
    if [[ $job == "$1" ]]; then
      return 0
    fi
  done
  return 1
}

# wait_ready SERVICE: every container running and, when WAIT gives the service a health budget,
# healthy within it (a one-shot job: exited 0). DEPLOY_TIMEOUT, when set, replaces every budget.
wait_ready() {
  local service=$1 budget gated=0 deadline ids id state health code ready
  budget=${WAIT[$service]:-0}
  if [[ -n ${WAIT[$service]:-} ]]; then
    gated=1
  fi
  if [[ -n ${DEPLOY_TIMEOUT:-} ]]; then
    budget=$DEPLOY_TIMEOUT
  elif is_job "$service"; then
    budget=-1
  fi
  deadline=$((SECONDS + budget))
  while true; do
    mapfile -t ids < <(containers "$service")
    ready=${#ids[@]}
    for id in "${ids[@]}"; do
      state="" code="" health=""
      read -r state code health < <(docker inspect --format \
        '{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id") || true
      if [[ $state == exited && $code == 0 ]] && is_job "$service"; then
        continue
      fi
      if [[ $state == exited || $state == dead ]]; then
        log "$service: container ${id:0:12} is $state (exit code $code)"
        return 1
      fi
      if ((gated)) && [[ $health == unhealthy ]]; then
        log "$service: container ${id:0:12} is unhealthy"
        return 1
      fi
      if [[ $state != running ]] || is_job "$service" || { ((gated)) && [[ $health != healthy ]]; }; then
        ready=0
      fi
    done
    if ((ready > 0)); then
      if ((gated)); then
        log "$service: healthy"
      elif is_job "$service"; then
        log "$service: completed"
      else
        log "$service: running (no health check to wait for)"
      fi
      return 0
    fi
    if ((budget >= 0 && SECONDS >= deadline)); then
      log "$service: not ready after ${budget}s"
      return 1
    fi
    sleep "$DEPLOY_INTERVAL"
  done
}

# restore SERVICE REFERENCE: point REFERENCE back at <repository>:previous and recreate the service.
restore() {
  local service=$1 ref=$2 previous
  previous="$(repository "$ref"):previous"
  if ! docker image inspect "$previous" >/dev/null 2>&1; then
    log "$service: no $previous image to go back to"
    return 1
  fi
  log "$service: rolling back to $previous"
  docker tag "$previous" "$ref"
  docker compose up -d --no-deps --no-build --force-recreate "$service"
  wait_ready "$service"
}

check_services() {
  local name known service
  for name in "$@"; do
    known=0
    for service in "${ORDER[@]}"; do
      if [[ $service == "$name" ]]; then
        known=1
      fi
    done
    if ((known == 0)); then
      log "unknown service $name (services: ${ORDER[*]})"
      exit 2
    fi
  done
}

# active SERVICE: it has no compose profile, or one of its profiles is in COMPOSE_PROFILES.
active() {
  local profile profiles
  if [[ -z ${PROFILES[$1]:-} ]]; then
    return 0
  fi
  read -ra profiles <<<"${PROFILES[$1]}"
  for profile in "${profiles[@]}"; do
    if [[ ${COMPOSE_PROFILES:-} == "*" || ,${COMPOSE_PROFILES:-}, == *",$profile,"* ]]; then
      return 0
    fi
  done
  return 1
}

# selected SERVICE [NAME...]: named on the command line, or (with no names) active.
selected() {
  local name
  if (($# == 1)); then
    active "$1"
    return
  fi
  for name in "${@:2}"; do
    if [[ $name == "$1" ]]; then
      return 0
    fi
  done
  return 1
}

check_services "$@"
failed=()
for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
  service=${ORDER[i]}
  if ! selected "$service" "$@"; then
    continue
  fi
  mapfile -t ids < <(containers "$service")
  if ((${#ids[@]} == 0)); then
    log "$service: no container, so nothing tells which image to put back; skipped"
    continue
  fi
  ref=$(docker inspect --format '{{.Config.Image}}' "${ids[0]}")
  if [[ $ref == sha256:* ]]; then
    log "$service: its container names its image by id only, so there is no :previous to go back to"
    if (($# > 0)); then
      failed+=("$service")
    fi
    continue
  fi
  if (($# == 0)) && ! docker image inspect "$(repository "$ref"):previous" >/dev/null 2>&1; then
    log "$service: no previous image; left as it is"
    continue
  fi
  if ! restore "$service" "$ref"; then
    failed+=("$service")
  fi
done
if ((${#failed[@]} > 0)); then
  log "not rolled back: ${failed[*]}"
  exit 1
fi
log "done"
"""


def project(tmp_path: Path, files: dict[str, str]) -> Project:
    return Project(DirTree(write(tmp_path, files)))


def fixed(root: Path, files: dict[str, str], rule: str) -> dict[str, str]:
    """Plan and apply the build/deploy fix for ``rule``'s findings; the files it wrote, as text."""
    write(root, files)
    domain = DockerDomain()
    findings = [f for f in domain.analyze(root) if f.rule == rule]
    plan = domain.plan(findings, ["build", "deploy"], unsafe=False, root=root)
    out = {}
    for task in plan.tasks:
        for path in domain.apply(task, root, Design()):
            out[path] = (root / path).read_bytes().decode()
    return out


def failed(gates) -> list[tuple[str, str]]:
    return [(g.name, g.detail) for g in gates if not g.passed]


# -- generators: exact output ---------------------------------------------------


def test_bake_file_has_a_target_per_built_service_level_groups_and_a_gha_cache_per_target(tmp_path):
    assert bake_file(project(tmp_path, SMALL)) == BAKE


def test_the_workflow_analyzes_to_code_scanning_and_bakes_with_the_cache(tmp_path):
    assert workflow_file(project(tmp_path, SMALL)) == WORKFLOW


def test_the_workflow_for_a_single_image_uses_build_push_action_with_the_cache(tmp_path):
    text = workflow_file(project(tmp_path, SINGLE))
    assert text.endswith(SINGLE_BUILD_STEP)
    head = WORKFLOW[: WORKFLOW.index("      - name: Build the images with bake")].replace(
        "every image with `docker buildx bake` (docker-bake.hcl): in parallel where\n"
        "#            the build graph allows, each target cached in GitHub's cache (type=gha).",
        "the api image with BuildKit, cached in GitHub's cache (type=gha).",
    )
    assert text[: -len(SINGLE_BUILD_STEP)] == head
    assert "bake" not in text.split("  build:\n")[1]


def test_in_the_analyzers_own_repository_the_workflow_analyzes_with_its_action_from_the_checkout(tmp_path):
    text = workflow_file(
        project(
            tmp_path,
            {
                **SMALL,
                "pyproject.toml": ('[project]\nname = "x"\n\n[project.entry-points."pipeline.pipelines"]\nx = "y:Z"\n'),
            },
        )
    )
    assert "        uses: ./\n" in text and "vars.PIPELINE_ANALYZER" not in text and "pip install" not in text


def test_deploy_script_rolls_out_in_dependency_order_with_health_gates(tmp_path):
    assert deploy_script(project(tmp_path, SMALL)) == DEPLOY


def test_rollback_script_restores_previous_images_dependents_first(tmp_path):
    assert rollback_script(project(tmp_path, SMALL)) == ROLLBACK


def test_a_compose_file_with_another_name_is_named_for_docker_compose(tmp_path):
    files = {
        "ops/compose.prod.yml": SMALL["docker-compose.yml"]
        .replace("./base", "../base")
        .replace("context: .", "context: .."),
        **{k: v for k, v in SMALL.items() if k != "docker-compose.yml"},
    }
    text = deploy_script(project(tmp_path, files))
    assert (
        'cd "$(dirname "${BASH_SOURCE[0]}")/../ops"\nexport COMPOSE_FILE="${COMPOSE_FILE:-compose.prod.yml}"\n'
    ) in text


def test_one_shot_services_others_wait_to_complete_count_as_done_when_they_exit_0(tmp_path):
    files = {
        **SMALL,
        "docker-compose.yml": SMALL["docker-compose.yml"].replace(
            "      cache:\n        condition: service_healthy\n",
            "      cache:\n        condition: service_healthy\n      migrate:\n"
            "        condition: service_completed_successfully\n",
        )
        + "  migrate:\n    image: shop/base:latest\n",
    }
    text = deploy_script(project(tmp_path, files))
    assert "\nORDER=(base cache migrate app)\n" in text and "\nJOBS=(migrate)\n" in text


def test_compose_values_are_escaped_for_hcl_and_compose_variables_become_bake_variables(tmp_path):
    files = {
        **SMALL,
        "docker-compose.yml": SMALL["docker-compose.yml"]
        .replace('PYTHON: "3.12"', 'PYTHON: "3.12"\n        GREETING: "say \\"hi\\" to ${USER}, %{x} costs $$5"')
        .replace("image: shop/base:latest", "image: ${REGISTRY:-ghcr.io/shop}/base@sha256:0123"),
    }
    text = bake_file(project(tmp_path, files))

    assert '    GREETING = "say \\"hi\\" to ${USER}, %%{x} costs $5"\n' in text
    assert '  tags = ["${REGISTRY}/base:${TAG}"]\n' in text
    assert (
        '# Compose reads ${REGISTRY} from the environment (or .env); so does bake.\nvariable "REGISTRY" {\n'
        '  default = "ghcr.io/shop"\n}\n'
    ) in text
    assert 'variable "USER" {\n  default = ""\n}\n' in text
    parsed = parse_bake(text)
    assert parsed["target"]["app"]["args"]["GREETING"] == 'say "hi" to ${USER}, %%{x} costs $5'
    assert sorted(parsed["variable"]) == ["GITHUB_ACTIONS", "PROJECT", "REGISTRY", "TAG", "USER"]


# -- generated from what builds -------------------------------------------------------

# A shop whose api can't build from the root (its COPY shared finds no shared/ there), whose worker
# build carries args, a secret, platforms, labels and a cache, whose e2e runs only under the test
# profile, and whose db healthcheck is disabled.
SHOP = {
    "docker-compose.yml": """\
services:
  api:
    build:
      context: .
      dockerfile: api/Dockerfile
    image: shop/api:latest
  worker:
    build:
      context: ./worker
      target: runtime
      args:
        PYTHON: ${PYTHON_VERSION}
        MODE:
        LOCALE:
        API_TOKEN: s3cr3t-value
        DSN: postgres://app:${DB_PASSWORD}@db/app
        NPM_TOKEN: ${NPM_AUTH}
      secrets:
        - npmrc
      platforms: [linux/amd64, linux/arm64]
      labels:
        org.opencontainers.image.source: https://example.com/shop
      cache_from: [shop/worker:cache]
    image: shop/worker:1.2
    depends_on: [db]
    healthcheck:
      test: ["CMD", "python", "-c", "print(1)"]
      start_period: 300s
      interval: 10s
      timeout: 5s
      retries: 3
  e2e:
    image: shop/e2e:1
    profiles: [test]
    depends_on: [worker]
  db:
    image: postgres:16
    healthcheck:
      disable: true
secrets:
  npmrc:
    file: ./ci/npmrc
""",
    ".env": "PYTHON_VERSION=3.12\nDB_PASSWORD=hunter2\nMODE=fast\nNPM_AUTH=npm-xyz\n",
    "api/Dockerfile": "FROM python:3.12-slim\nCOPY shared /shared\nCOPY api /app\n",
    "api/main.py": "print('api')\n",
    "worker/Dockerfile": "FROM python:3.12-slim AS runtime\nCOPY app.py /app/\n",
    "worker/app.py": "print('worker')\n",
}

WORKER_TARGET = r"""target "worker" {
  context = "worker"
  dockerfile = "Dockerfile"
  target = "runtime"
  # API_TOKEN: a secret-looking value in docker-compose.yml, not copied: export API_TOKEN (better: a build secret)
  # LOCALE: compose reads it from the environment; nothing sets it, so the Dockerfile's default applies
  args = {
    API_TOKEN = "${API_TOKEN}"
    DSN = "postgres://app:${DB_PASSWORD}@db/app"
    MODE = "${MODE}"
    NPM_TOKEN = "${NPM_AUTH}"
    PYTHON = "${PYTHON_VERSION}"
  }
  labels = {
    "org.opencontainers.image.source" = "https://example.com/shop"
  }
  secret = ["id=npmrc,src=ci/npmrc"]
  platforms = ["linux/amd64", "linux/arm64"]
  tags = ["shop/worker:1.2"]
  cache-from = GITHUB_ACTIONS == "true" ? ["type=gha,scope=worker", "shop/worker:cache"] : ["shop/worker:cache"]
  cache-to = GITHUB_ACTIONS == "true" ? ["type=gha,mode=max,scope=worker"] : []
}
"""

API_LEFT_OUT = "api: docker-compose.yml: api/Dockerfile line 2: shared does not exist in the build context ."


def test_a_target_whose_context_cannot_build_is_left_out_of_every_generated_file_and_listed_with_why(tmp_path):
    shop = project(tmp_path, SHOP)
    bake, workflow, deploy = bake_file(shop), workflow_file(shop), deploy_script(shop)

    assert (
        "#\n# Left out of this file: these services' images can't be built from the repository as it is\n"
        f"#   {API_LEFT_OUT}\n"
    ) in bake
    assert list(parse_bake(bake)["target"]) == ["worker"]
    assert 'group "default" {\n  targets = ["worker"]\n}\n' in bake
    assert f"#              {API_LEFT_OUT}\n" in workflow
    assert "\nORDER=(db worker e2e)\n" in deploy
    assert (
        "# Left out: their images can't be built from docker-compose.yml as the repository is:\n"
        "#   api: api/Dockerfile line 2: shared does not exist in the build context .\n"
    ) in deploy


def test_the_build_and_deploy_phase_reports_name_what_the_generated_files_left_out(tmp_path):
    tree = DirTree(write(tmp_path, SHOP))
    assert DockerDomain().phase_notes("build", tree)[-1] == (
        "api is left out of the bake file and the CI build: docker-compose.yml: "
        "api/Dockerfile line 2: shared does not exist in the build context ."
    )
    assert DockerDomain().phase_notes("deploy", tree)[-2:] == [
        "api is left out of deploy/deploy.sh: its image can't be built from docker-compose.yml: "
        "api/Dockerfile line 2: shared does not exist in the build context .",
        "e2e is behind the compose profile test: deploy.sh rolls it out only when named or with COMPOSE_PROFILES=test",
    ]


def test_a_source_the_dockerignore_drops_leaves_the_target_out_too(tmp_path):
    files = {**SHOP, "shared/lib.py": "x = 1\n", ".dockerignore": "shared\n"}
    assert (
        "#   api: docker-compose.yml: api/Dockerfile line 2: shared is excluded by .dockerignore "
        "in the build context .\n"
    ) in bake_file(project(tmp_path, files))
    assert list(parse_bake(bake_file(project(tmp_path / "sent", {**SHOP, "shared/lib.py": "x = 1\n"})))["target"]) == [
        "api",
        "worker",
    ]


def test_a_dockerfile_that_does_not_parse_leaves_its_target_out(tmp_path):
    files = {**SHOP, "worker/Dockerfile": "FROM python:3.12-slim AS runtime\nRUN <<EOF\necho never closed\n"}
    bake = bake_file(project(tmp_path, {**files, "shared/lib.py": ""}))
    assert "#   worker: docker-compose.yml: worker/Dockerfile does not parse: unterminated heredoc\n" in bake
    assert list(parse_bake(bake)["target"]) == ["api"]


def test_a_service_built_by_two_compose_files_gets_the_definition_whose_context_builds(tmp_path):
    files = {
        **SHOP,
        "api/Dockerfile": "FROM python:3.12-slim\nCOPY shared /shared\nCOPY main.py /app/\n",
        "api/shared/util.py": "y = 2\n",
        "deploy/compose.prod.yml": ("services:\n  api:\n    build: ../api\n    image: shop/api:latest\n"),
    }
    bake = bake_file(project(tmp_path, files))
    assert parse_bake(bake)["target"]["api"]["context"] == "api"  # deploy/compose.prod.yml's, not the root's
    assert "Left out" not in bake


def test_a_target_that_builds_from_a_left_out_image_is_left_out_with_it(tmp_path):
    files = {**SHOP, "worker/Dockerfile": "FROM shop/api:latest AS runtime\nCOPY app.py /app/\n"}
    with pytest.raises(FixError) as nothing_builds:
        bake_file(project(tmp_path, files))
    assert str(nothing_builds.value) == (
        "no compose build's context builds here: api is left out of the bake file: docker-compose.yml: "
        "api/Dockerfile line 2: shared does not exist in the build context .; "
        "worker is left out of the bake file: builds on the image of api, which is left out"
    )


def test_build_args_secret_target_platforms_labels_and_cache_of_compose_are_carried(tmp_path):
    bake = bake_file(project(tmp_path, SHOP))
    assert bake.endswith("\n" + WORKER_TARGET)


def test_a_secret_looking_value_is_never_copied_into_the_bake_file(tmp_path):
    bake = bake_file(project(tmp_path, SHOP))
    assert "s3cr3t-value" not in bake and "hunter2" not in bake and "npm-xyz" not in bake
    assert (
        "# ${API_TOKEN} is a secret's value: no default here; bake reads it from the environment.\n"
        'variable "API_TOKEN" {\n}\n'
    ) in bake
    assert 'variable "DB_PASSWORD" {\n}\n' in bake and 'variable "NPM_AUTH" {\n}\n' in bake
    assert 'variable "MODE" {\n  default = "fast"\n}\n' in bake  # .env, as compose reads it
    assert parse_bake(bake)["variable"]["API_TOKEN"] == {}


def test_a_secret_looking_build_arg_is_not_written_into_the_workflow_either(tmp_path):
    files = {
        "compose.yaml": "services:\n  api:\n    build:\n      context: ./svc\n      args:\n"
        "        NPM_TOKEN: abc123\n        MODE: fast\n",
        "svc/Dockerfile": "FROM python:3.12-slim\n",
    }
    workflow = workflow_file(project(tmp_path, files))
    assert "abc123" not in workflow
    assert (
        "          # not copied from compose.yaml (secret-looking): NPM_TOKEN; pass them as build secrets\n"
        "          build-args: |\n            MODE=fast\n"
    ) in workflow


def test_a_service_behind_a_profile_is_not_started_by_default_and_says_how_to_include_it(tmp_path):
    deploy = deploy_script(project(tmp_path, SHOP))
    assert (
        "# Behind a compose profile, so not rolled out by default (`docker compose up` doesn't start them\n"
        "# either): name them, or set COMPOSE_PROFILES (e.g. COMPOSE_PROFILES=test bash deploy/deploy.sh).\n"
        "#   e2e: profile test\n"
        'declare -A PROFILES=([e2e]="test")\n'
    ) in deploy


def test_deploy_waits_start_period_plus_retries_times_interval_and_timeout_and_not_on_a_disabled_check(tmp_path):
    deploy = deploy_script(project(tmp_path, SHOP))
    assert (
        "# Health gates, from the compose file and Dockerfiles: each service is waited for at most\n"
        "# start_period + retries × (interval + timeout), the longest Docker takes to call it unhealthy:\n"
        "#   worker: 300s + 3 × (10s + 5s) = 345s (compose healthcheck)\n"
        "# Not waited on for health (running is checked once, right after it starts):\n"
        "#   db: healthcheck disabled in docker-compose.yml (disable: true)\n"
        "#   e2e: no healthcheck\n"
        "declare -A WAIT=([worker]=345)\n"
    ) in deploy


def test_a_compose_healthcheck_takes_what_it_leaves_out_from_the_dockerfile_then_from_docker(tmp_path):
    files = {
        "compose.yaml": (
            "services:\n  api:\n    build: ./api\n    healthcheck:\n      retries: 5\n"
            "  cache:\n    image: redis:7\n    healthcheck:\n      test: [CMD, redis-cli, ping]\n"
            "  off:\n    build: ./api\n    healthcheck:\n      test: [NONE]\n"
        ),
        "api/Dockerfile": "FROM python:3.12-slim\nHEALTHCHECK --interval=1m --start-period=90s CMD true\n",
    }
    deploy = deploy_script(project(tmp_path, files))
    assert (
        "#   api: 90s + 5 × (60s + 30s) = 540s (Dockerfile HEALTHCHECK, line 2; Docker's default timeout)\n" in deploy
    )
    assert (
        "#   cache: 0s + 3 × (30s + 30s) = 180s (compose healthcheck; Docker's default interval, timeout, "
        "start_period, retries)\n"
    ) in deploy
    assert "#   off: healthcheck test NONE in compose.yaml\n" in deploy
    assert "declare -A WAIT=([api]=540 [cache]=180)\n" in deploy


def test_the_bake_gate_fails_a_target_the_change_brought_broken_and_not_one_the_file_already_had(tmp_path):
    write(tmp_path, SHOP)
    broken = bake_file(project(tmp_path / "ok", {**SHOP, "shared/x.py": ""}))  # api's target, as if it built
    name = "docker-bake.hcl: every target's COPY/ADD sources are sent by its context"

    new = gates_for("docker-bake.hcl", broken, tmp_path)  # the change wrote the file
    assert failed(new) == [(name, "target api: api/Dockerfile: shared does not exist in the build context .")]

    kept = gates_for("docker-bake.hcl", broken + "\n", tmp_path, before=broken)  # the parent's file had it too
    assert failed(kept) == []
    assert [g.already for g in kept if g.name == name] == [
        "already present before this change: target api: api/Dockerfile: shared does not exist in the build context ."
    ]


# -- rules ------------------------------------------------------------------------


def test_bp001_fires_for_two_built_services_without_a_bake_file(tmp_path):
    assert codes(tmp_path, SMALL, "BP001") == [("docker-bake.hcl", 0)]


def test_bp001_is_quiet_with_one_built_service_or_a_bake_file(tmp_path):
    assert codes(tmp_path / "one", SINGLE, "BP001") == []
    assert codes(tmp_path / "baked", {**SMALL, "docker-bake.json": "{}"}, "BP001") == []


def test_bp002_fires_without_a_workflow_or_with_one_that_builds_cold(tmp_path):
    assert codes(tmp_path / "none", SINGLE, "BP002") == [(".github/workflows/docker-build.yml", 0)]
    cold = """\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: docker/build-push-action@v6
        with:
          context: svc
"""
    assert codes(tmp_path / "cold", {**SINGLE, ".github/workflows/ci.yml": cold}, "BP002") == [
        (".github/workflows/docker-build.yml", 0)
    ]


def test_bp002_is_quiet_with_a_cached_build_push_or_a_bake_whose_file_caches(tmp_path):
    cached = """\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: docker/build-push-action@v6
        with:
          cache-from: type=gha,scope=api
"""
    baked = """\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: docker buildx bake
"""
    assert codes(tmp_path / "a", {**SINGLE, ".github/workflows/ci.yaml": cached}, "BP002") == []
    assert (
        codes(
            tmp_path / "b",
            {
                **SMALL,
                ".github/workflows/ci.yml": baked,
                "docker-bake.hcl": 'target "a" {\n  cache-to = ["type=gha"]\n}\n',
            },
            "BP002",
        )
        == []
    )
    assert codes(
        tmp_path / "c", {**SMALL, ".github/workflows/ci.yml": baked, "docker-bake.hcl": 'target "a" {\n}\n'}, "BP002"
    ) == [(".github/workflows/docker-build.yml", 0)]


def test_bp002_leaves_a_bake_step_on_a_missing_bake_file_to_bp001(tmp_path):
    files = {**SMALL, ".github/workflows/docker-build.yml": WORKFLOW}
    assert codes(tmp_path, files, "BP002") == [] and codes(tmp_path, files, "BP001") == [("docker-bake.hcl", 0)]


def test_dp001_fires_for_a_stack_with_healthchecks_and_no_deploy_script(tmp_path):
    assert codes(tmp_path / "a", SMALL, "DP001") == [("deploy/deploy.sh", 0)]
    assert codes(tmp_path / "b", {**SMALL, "deploy/deploy.sh": "#!/bin/sh\n"}, "DP001") == []
    assert codes(tmp_path / "c", SINGLE, "DP001") == []


# -- fixes ------------------------------------------------------------------------


def test_the_fixes_write_the_generated_files(tmp_path):
    assert fixed(tmp_path / "bake", SMALL, "BP001") == {"docker-bake.hcl": BAKE}
    assert fixed(tmp_path / "ci", SMALL, "BP002") == {".github/workflows/docker-build.yml": WORKFLOW}
    assert fixed(tmp_path / "deploy", SMALL, "DP001") == {"deploy/deploy.sh": DEPLOY, "deploy/rollback.sh": ROLLBACK}


def test_a_deploy_fix_keeps_a_rollback_script_someone_wrote(tmp_path):
    out = fixed(tmp_path, {**SMALL, "deploy/rollback.sh": "#!/bin/sh\n# mine\n"}, "DP001")
    assert out == {"deploy/deploy.sh": DEPLOY}
    assert (tmp_path / "deploy/rollback.sh").read_text() == "#!/bin/sh\n# mine\n"


def test_a_fix_whose_file_exists_now_is_already_resolved(tmp_path):
    domain = DockerDomain()
    write(tmp_path, SMALL)
    plan = domain.plan(domain.analyze(tmp_path), ["build", "deploy"], unsafe=False, root=tmp_path)
    assert sorted(t.fix for t in plan.tasks) == ["bake-file", "ci-workflow", "deploy-scripts"]
    write(tmp_path, {"docker-bake.hcl": "", ".github/workflows/docker-build.yml": "", "deploy/deploy.sh": ""})
    for task in plan.tasks:
        with pytest.raises(AlreadyResolved):
            pack().fixes()[task.fix].apply(Project(DirTree(tmp_path)), task, Design())


# -- reviewer gates -------------------------------------------------------------------


def test_the_generated_files_of_the_small_repo_pass_every_gate(tmp_path):
    write(tmp_path, SMALL)
    for path, text in {
        "docker-bake.hcl": BAKE,
        ".github/workflows/docker-build.yml": WORKFLOW,
        "deploy/deploy.sh": DEPLOY,
        "deploy/rollback.sh": ROLLBACK,
    }.items():
        gates = gates_for(path, text, tmp_path)
        assert gates and failed(gates) == [], path


def test_the_generated_files_of_the_example_monorepo_pass_every_gate_and_bash_n():
    root = PIPELINE.example
    example = Project(DirTree(root))
    generated = {
        "docker-bake.hcl": bake_file(example),
        ".github/workflows/docker-build.yml": workflow_file(example),
        "deploy/deploy.sh": deploy_script(example),
        "deploy/rollback.sh": rollback_script(example),
    }
    for path, text in generated.items():
        gates = gates_for(path, text, root)
        assert len(gates) in (2, 4) and failed(gates) == [], path
    for path in ("deploy/deploy.sh", "deploy/rollback.sh"):
        assert subprocess.run(["bash", "-n"], input=generated[path], text=True).returncode == 0


def test_a_shellcheck_warning_fails_the_shell_gate_with_the_finding():
    unquoted = DEPLOY.replace('docker compose ps --all -q "$1"', "docker compose ps --all -q $1")
    gates = gates_for("deploy/deploy.sh", unquoted)
    assert failed(gates) == [
        (
            "deploy/deploy.sh shellcheck-clean (-S style)",
            "line 42 SC2086 (info): Double quote to prevent globbing and word splitting.",
        )
    ]


def test_a_syntax_error_fails_bash_n():
    gates = gates_for("deploy/rollback.sh", ROLLBACK.replace("done\nif ((", "if (("))
    assert [name for name, _ in failed(gates)] == [
        "deploy/rollback.sh parses (bash -n)",
        "deploy/rollback.sh shellcheck-clean (-S style)",
    ]
    assert "syntax error" in failed(gates)[0][1]


def test_a_schema_invalid_workflow_fails_the_schema_gate_with_the_path():
    broken = WORKFLOW.replace(
        "    runs-on: ubuntu-latest\n    permissions:\n      contents: read\n      packages",
        "    runs_on: ubuntu-latest\n    permissions:\n      contents: read\n      packages",
    )
    assert failed(gates_for(".github/workflows/docker-build.yml", broken)) == [
        (
            ".github/workflows/docker-build.yml valid against the GitHub workflow schema",
            "jobs/build: 'runs-on' is a required property",
        )
    ]


def test_a_workflow_that_is_not_yaml_fails_the_parse_gate():
    gates = gates_for(".github/workflows/docker-build.yml", "jobs: [\n")
    assert [g.name for g in gates] == [".github/workflows/docker-build.yml parses (YAML)"] and not gates[0].passed


def test_an_unparsable_bake_file_fails_the_parse_gate(tmp_path):
    gates = gates_for("docker-bake.hcl", BAKE.replace('  context = "base"\n', "  context = \n"), tmp_path)
    assert [g.name for g in gates] == ["docker-bake.hcl parses (HCL)"] and not gates[0].passed
    assert "line" in gates[0].detail


def test_a_bake_target_whose_context_or_dockerfile_is_gone_fails_with_which(tmp_path):
    write(tmp_path, SMALL)
    broken = BAKE.replace('context = "base"', 'context = "bass"').replace('"app/Dockerfile"', '"app/Dockerfile.dev"')
    broken = broken.replace('"target:base"', '"target:bass"')
    assert failed(gates_for("docker-bake.hcl", broken, tmp_path)) == [
        (
            "docker-bake.hcl: groups and target: contexts name targets of the file",
            "unknown: target app context shop/base = target:bass",
        ),
        (
            "docker-bake.hcl: every target's context and Dockerfile exist",
            "target app: no app/Dockerfile.dev in context .; target base: context bass is not a directory",
        ),
    ]


def test_other_files_get_no_gates():
    assert gates_for("README.md", "# hi\n") == [] and gates_for("services/api/Dockerfile", "FROM x\n") == []


# -- the scripts, run against a stand-in docker CLI --------------------------------------------

FAKE_DOCKER = r'''"""A stand-in for the docker CLI, enough for deploy.sh and rollback.sh; state in $FAKE_DOCKER_STATE.

State: "images" (reference -> image id), "refs" (service -> the image reference compose
runs it from), "containers" (service -> {id, ref, image}), "behaviour" (image id ->
{"state", "health", "code"}: what a container of that image reports), "log" (calls).
"""

import json
import os
import sys

path = os.environ["FAKE_DOCKER_STATE"]
with open(path) as fh:
    state = json.load(fh)
args = sys.argv[1:]


def save():
    with open(path, "w") as fh:
        json.dump(state, fh)


def container(cid):
    return next(c for c in state["containers"].values() if c["id"] == cid)


def report(cid, fmt):
    c = container(cid)
    seen = state["behaviour"].get(c["image"], {})
    return (fmt.replace("{{.Config.Image}}", c["ref"]).replace("{{.Image}}", c["image"])
            .replace("{{.State.Status}}", seen.get("state", "running"))
            .replace("{{.State.ExitCode}}", str(seen.get("code", 0)))
            .replace("{{if .State.Health}}{{.State.Health.Status}}{{end}}", seen.get("health", "")))


if args[:2] == ["compose", "ps"]:
    c = state["containers"].get(args[-1])
    if c:
        print(c["id"])
elif args[:2] == ["compose", "up"]:
    service = args[-1]
    ref = state["refs"][service]
    if ref not in state["images"]:
        sys.exit(f"no image {ref}")
    state["count"] = state.get("count", 0) + 1
    state["containers"][service] = {"id": f"c{state['count']:02d}", "ref": ref, "image": state["images"][ref]}
    state["log"].append(" ".join(["up", *[a for a in args[2:-1] if a != "-d"], service, state["images"][ref]]))
elif args[0] == "inspect":
    print(report(args[-1], args[2]))
elif args[0] == "tag":
    state["images"][args[2]] = state["images"].get(args[1], args[1])
    state["log"].append(f"tag {args[1]} {args[2]}")
elif args[:2] == ["image", "inspect"]:
    sys.exit(0 if args[2] in state["images"] else 1)
else:
    sys.exit(f"fake docker: unexpected {args}")
save()
'''


@pytest.fixture
def stack(tmp_path):
    """The small repo with its deploy scripts, a fake `docker` first on PATH, and three running services."""
    write(tmp_path, {**SMALL, "deploy/deploy.sh": DEPLOY, "deploy/rollback.sh": ROLLBACK})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!{sys.executable} -S\n" + FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    state_file = tmp_path / "docker-state.json"
    old = {
        "shop/base:latest": "sha256:base-old000000",
        "redis:7": "sha256:redis-old00000",
        "small-app": "sha256:app-old0000000",
    }
    state = {
        "images": dict(old),
        "refs": {"base": "shop/base:latest", "cache": "redis:7", "app": "small-app"},
        "containers": {
            s: {"id": f"old-{s}", "ref": ref, "image": old[ref]}
            for s, ref in {"base": "shop/base:latest", "cache": "redis:7", "app": "small-app"}.items()
        },
        "behaviour": {"sha256:redis-old00000": {"health": "healthy"}, "sha256:app-old0000000": {"health": "healthy"}},
        "log": [],
    }

    class Stack:
        root = tmp_path

        def new_images(self, **health):
            """Images built for a release: base, cache and app each get a new id; app's health as given."""
            for ref, image in {
                "shop/base:latest": "sha256:base-new000000",
                "redis:7": "sha256:redis-new00000",
                "small-app": "sha256:app-new0000000",
            }.items():
                state["images"][ref] = image
            state["behaviour"]["sha256:redis-new00000"] = {"health": "healthy"}
            state["behaviour"]["sha256:app-new0000000"] = {"health": health.get("app", "healthy")}

        def run(self, script, *args, timeout="2", **more):
            """Run a script; ``timeout=None`` leaves DEPLOY_TIMEOUT unset (the script's own budgets apply)."""
            state_file.write_text(json.dumps(state))
            env = {
                **{k: v for k, v in os.environ.items() if k not in ("DEPLOY_TIMEOUT", "COMPOSE_PROFILES")},
                "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                "FAKE_DOCKER_STATE": str(state_file),
                "DEPLOY_INTERVAL": "0.1",
                **more,
            }
            if timeout is not None:
                env["DEPLOY_TIMEOUT"] = timeout
            proc = subprocess.run(
                ["bash", str(tmp_path / "deploy" / script), *args], env=env, capture_output=True, text=True, cwd="/"
            )
            state.update(json.loads(state_file.read_text()))
            return proc

        @property
        def state(self):
            return state

    return Stack()


def test_deploy_replaces_services_one_at_a_time_in_dependency_order_keeping_previous(stack):
    stack.new_images()
    proc = stack.run("deploy.sh")

    assert proc.returncode == 0, proc.stderr
    assert stack.state["log"] == [
        "tag sha256:base-old000000 shop/base:previous",
        "up --no-deps base sha256:base-new000000",
        "tag sha256:redis-old00000 redis:previous",
        "up --no-deps cache sha256:redis-new00000",
        "tag sha256:app-old0000000 small-app:previous",
        "up --no-deps app sha256:app-new0000000",
    ]
    assert "deploy: base: running (no health check to wait for)" in proc.stderr
    assert "deploy: cache: healthy" in proc.stderr and "deploy: app: healthy" in proc.stderr


def test_an_unhealthy_service_is_rolled_back_to_previous_and_the_rollout_stops(stack):
    stack.new_images(app="unhealthy")
    proc = stack.run("deploy.sh")

    assert proc.returncode == 1
    assert stack.state["log"][-3:] == [
        "up --no-deps app sha256:app-new0000000",
        "tag small-app:previous small-app",
        "up --no-deps --no-build --force-recreate app sha256:app-old0000000",
    ]
    assert stack.state["containers"]["app"]["image"] == "sha256:app-old0000000"
    assert "deploy: app: container c03 is unhealthy" in proc.stderr
    assert "deploy: app: back on its previous image; stopping here" in proc.stderr


def test_a_service_that_never_gets_healthy_times_out_and_is_rolled_back(stack):
    stack.new_images(app="starting")
    proc = stack.run("deploy.sh", "app", timeout="1")

    assert proc.returncode == 1
    assert stack.state["log"] == [
        "tag sha256:app-old0000000 small-app:previous",
        "up --no-deps app sha256:app-new0000000",
        "tag small-app:previous small-app",
        "up --no-deps --no-build --force-recreate app sha256:app-old0000000",
    ]
    assert "deploy: app: not ready after 1s" in proc.stderr


def test_a_first_rollout_that_fails_has_nothing_to_roll_back_to(stack):
    del stack.state["containers"]["app"]
    stack.new_images(app="unhealthy")
    proc = stack.run("deploy.sh", "app")

    assert proc.returncode == 1
    assert "deploy: app: failed on its first rollout; stopping here" in proc.stderr


def test_deploy_refuses_an_unknown_service(stack):
    proc = stack.run("deploy.sh", "nope")
    assert proc.returncode == 2 and "unknown service nope (services: base cache app)" in proc.stderr


def test_rollback_restores_one_service_or_every_one_with_a_previous_image(stack):
    stack.new_images()
    assert stack.run("deploy.sh").returncode == 0
    stack.state["log"].clear()

    proc = stack.run("rollback.sh", "app")
    assert proc.returncode == 0, proc.stderr
    assert stack.state["log"] == [
        "tag small-app:previous small-app",
        "up --no-deps --no-build --force-recreate app sha256:app-old0000000",
    ]

    stack.state["log"].clear()
    proc = stack.run("rollback.sh")
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[-2] for line in stack.state["log"] if line.startswith("up")] == ["app", "cache", "base"]


def test_rollback_of_a_service_without_a_previous_image_fails(stack):
    proc = stack.run("rollback.sh", "cache")
    assert proc.returncode == 1
    assert "rollback: cache: no redis:previous image to go back to" in proc.stderr
    assert "rollback: not rolled back: cache" in proc.stderr


def test_a_container_that_names_its_image_by_id_keeps_no_previous_and_the_rollout_goes_on(stack):
    stack.state["containers"]["base"]["ref"] = "sha256:base-old000000"
    stack.new_images()
    proc = stack.run("deploy.sh", "base")

    assert proc.returncode == 0, proc.stderr
    assert stack.state["log"] == ["up --no-deps base sha256:base-new000000"]
    assert "deploy: base: its container names its image by id only" in proc.stderr


def test_a_one_shot_job_that_exits_0_is_done_and_one_that_fails_stops_the_rollout(stack):
    files = {
        "docker-compose.yml": SMALL["docker-compose.yml"].replace(
            "      cache:\n        condition: service_healthy\n",
            "      cache:\n        condition: service_healthy\n      migrate:\n"
            "        condition: service_completed_successfully\n",
        )
        + "  migrate:\n    image: shop/migrate:1\n"
    }
    write(stack.root, files)
    write(stack.root, {"deploy/deploy.sh": deploy_script(Project(DirTree(stack.root)))})
    stack.state["refs"]["migrate"] = "shop/migrate:1"
    stack.state["images"]["shop/migrate:1"] = "sha256:migrate-ok00000"
    stack.state["behaviour"]["sha256:migrate-ok00000"] = {"state": "exited", "code": 0}

    proc = stack.run("deploy.sh", "migrate")
    assert proc.returncode == 0, proc.stderr
    assert "deploy: migrate: completed" in proc.stderr

    stack.state["behaviour"]["sha256:migrate-ok00000"] = {"state": "exited", "code": 3}
    proc = stack.run("deploy.sh", "migrate")
    assert proc.returncode == 1
    assert "deploy: migrate: container c02 is exited (exit code 3)" in proc.stderr


def redeploy(stack, compose: str) -> None:
    """Replace the stack's compose file and regenerate deploy.sh from it."""
    write(stack.root, {"docker-compose.yml": compose})
    write(stack.root, {"deploy/deploy.sh": deploy_script(Project(DirTree(stack.root)))})


def test_a_service_behind_a_profile_is_rolled_out_only_when_its_profile_is_enabled_or_it_is_named(stack):
    redeploy(
        stack,
        SMALL["docker-compose.yml"] + "  e2e:\n    image: shop/e2e:1\n    profiles: [test]\n    depends_on: [app]\n",
    )
    stack.state["refs"]["e2e"] = "shop/e2e:1"
    stack.state["images"]["shop/e2e:1"] = "sha256:e2e-new00000000"
    stack.new_images()

    assert stack.run("deploy.sh").returncode == 0
    assert [line.split()[2] for line in stack.state["log"] if line.startswith("up")] == ["base", "cache", "app"]

    stack.state["log"].clear()
    assert stack.run("deploy.sh", COMPOSE_PROFILES="test").returncode == 0
    assert [line.split()[2] for line in stack.state["log"] if line.startswith("up")] == ["base", "cache", "app", "e2e"]

    stack.state["log"].clear()
    assert stack.run("deploy.sh", "e2e").returncode == 0
    assert [line.split()[2] for line in stack.state["log"] if line.startswith("up")] == ["e2e"]


def test_a_service_whose_check_compose_disables_is_not_waited_on_while_its_image_says_starting(stack):
    redeploy(
        stack, SMALL["docker-compose.yml"].replace('      test: ["CMD", "redis-cli", "ping"]', "      disable: true")
    )
    stack.new_images()
    stack.state["behaviour"]["sha256:redis-new00000"] = {"health": "starting"}

    proc = stack.run("deploy.sh", "cache", timeout=None)
    assert proc.returncode == 0, proc.stderr
    assert "deploy: cache: running (no health check to wait for)" in proc.stderr


def test_without_deploy_timeout_a_service_gets_the_budget_its_health_check_gives(stack):
    redeploy(
        stack,
        SMALL["docker-compose.yml"].replace(
            '      test: ["CMD", "python", "-c", "print(1)"]',
            '      test: ["CMD", "python", "-c", "print(1)"]\n      interval: 300ms\n      timeout: 200ms\n'
            "      retries: 1\n      start_period: 1s",
        ),
    )
    script = (stack.root / "deploy/deploy.sh").read_text()
    assert "#   app: 1s + 1 × (0.3s + 0.2s) = 2s (compose healthcheck)\n" in script
    stack.new_images(app="starting")

    proc = stack.run("deploy.sh", "app", timeout=None)
    assert proc.returncode == 1
    assert "deploy: app: not ready after 2s" in proc.stderr


@pytest.mark.docker
def test_with_an_engine_the_kept_target_builds_as_bake_describes_it_and_the_left_out_one_does_not(tmp_path):
    from agent_pipelines.pipelines.docker_optimization.ops.builds import probe

    if not probe().ok:
        pytest.skip(probe().reason)
    root = write(tmp_path, SHOP)
    targets = parse_bake(bake_file(project(tmp_path / "p", SHOP)))["target"]
    worker = targets["worker"]

    def build(context: str, dockerfile: str, *more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "build", "-q", "--rm", "-f", str(root / context / dockerfile), *more, str(root / context)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
        )

    built = build(worker["context"], worker["dockerfile"], "--target", worker["target"])
    assert built.returncode == 0, built.stderr
    subprocess.run(["docker", "rmi", "-f", built.stdout.strip()], capture_output=True)
    api = build(".", "api/Dockerfile")  # what compose asks for, left out of the bake file
    assert api.returncode != 0 and "shared" in api.stderr
