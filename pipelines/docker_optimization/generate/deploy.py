"""deploy/deploy.sh and deploy/rollback.sh: a health-gated rollout in dependency order, and its undo.

deploy.sh replaces the services of the stack one at a time, dependencies
first (compose ``depends_on``). For each: tag the image its container runs
now as ``<repository>:previous``, ``docker compose up -d --no-deps`` it, and
wait until every container of it is ``healthy`` (a compose healthcheck or a
Dockerfile HEALTHCHECK) or, without a healthcheck, ``running``, for at most
``DEPLOY_TIMEOUT`` seconds (120 by default). A service that doesn't get
there is rolled back: its ``:previous`` image is tagged back under the
reference the container was created from and the service is recreated;
the rollout stops there with a non-zero exit.

rollback.sh puts one service, some, or all (dependents first) back on their
``:previous`` images the same way.

The scripts are bash with ``set -euo pipefail`` and pass ``shellcheck -S
style`` with no finding; the order and the gates are written into them as
comments, read off the build graph when they were generated.
"""

from __future__ import annotations

import posixpath

from engine.domain import FixError
from pipelines.docker_optimization.buildgraph import BuildGraph, build_graph, primary_compose
from pipelines.docker_optimization.compose import COMPOSE_NAMES
from pipelines.docker_optimization.project import Project

COMMON = r"""
DEPLOY_TIMEOUT="${DEPLOY_TIMEOUT:-120}"
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

# wait_ready SERVICE: every container healthy (running, without a healthcheck) within DEPLOY_TIMEOUT.
wait_ready() {
  local service=$1 deadline=$((SECONDS + DEPLOY_TIMEOUT)) ids id state health code ready gated
  while true; do
    mapfile -t ids < <(containers "$service")
    ready=${#ids[@]}
    gated=0
    for id in "${ids[@]}"; do
      state="" code="" health=""
      read -r state code health < <(docker inspect --format \
        '{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id") || true
      if [[ -n $health ]]; then
        gated=1
      fi
      if [[ $state == exited && $code == 0 ]] && is_job "$service"; then
        continue
      fi
      if [[ $state == exited || $state == dead ]]; then
        log "$service: container ${id:0:12} is $state (exit code $code)"
        return 1
      fi
      if [[ $health == unhealthy ]]; then
        log "$service: container ${id:0:12} is unhealthy"
        return 1
      fi
      if [[ $state != running || (-n $health && $health != healthy) ]]; then
        ready=0
      fi
    done
    if ((ready > 0)); then
      if ((gated)); then
        log "$service: healthy"
      elif is_job "$service"; then
        log "$service: completed"
      else
        log "$service: running (it has no healthcheck, so running is all this can wait for)"
      fi
      return 0
    fi
    if ((SECONDS >= deadline)); then
      log "$service: not ready after ${DEPLOY_TIMEOUT}s"
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

selected() {
  local name
  if (($# == 1)); then
    return 0
  fi
  for name in "${@:2}"; do
    if [[ $name == "$1" ]]; then
      return 0
    fi
  done
  return 1
}
"""

DEPLOY = r"""#!/usr/bin/env bash
# Written by the docker-optimization pipeline from {compose}.
# A health-gated rollout, one service at a time, dependencies first. For each service:
# tag the image it runs now as <repository>:previous, `docker compose up -d --no-deps` it,
# and wait until it is healthy (or, without a healthcheck, running). One that isn't within
# DEPLOY_TIMEOUT seconds (default 120) goes back to :previous and the rollout stops (exit 1).
#
#   bash deploy/deploy.sh              every service
#   bash deploy/deploy.sh SERVICE...   only these, still in dependency order
#
# It starts the images that are there: build or pull the new ones first
# (`docker buildx bake`, `docker compose build`, `docker compose pull`).
set -euo pipefail

PROG=deploy
cd "$(dirname "${{BASH_SOURCE[0]}}")/..{cd}"
{compose_file}
# Dependency order (compose depends_on).
ORDER=({order})
# One-shot services others wait for with condition service_completed_successfully: exit 0 is success.
JOBS=({jobs})
# Health gates, as the compose file and Dockerfiles declare them:
{gates}
{common}
# deploy_one SERVICE: roll it out; roll it back and exit 1 when it doesn't get ready.
deploy_one() {{
  local service=$1 ids ref="" image
  mapfile -t ids < <(containers "$service")
  if ((${{#ids[@]}} > 0)); then
    ref=$(docker inspect --format '{{{{.Config.Image}}}}' "${{ids[0]}}")
    image=$(docker inspect --format '{{{{.Image}}}}' "${{ids[0]}}")
  fi
  if [[ $ref == sha256:* ]]; then
    log "$service: its container names its image by id only (an old docker compose?), so no :previous is kept"
    ref=""
  elif [[ -n $ref ]]; then
    docker tag "$image" "$(repository "$ref"):previous"
    log "$service: runs $ref (${{image:7:12}}), kept as $(repository "$ref"):previous"
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
}}

check_services "$@"
for service in "${{ORDER[@]}}"; do
  if selected "$service" "$@"; then
    log "$service: rolling out"
    deploy_one "$service"
  fi
done
log "rolled out: ${{*:-${{ORDER[*]}}}}"
"""

ROLLBACK = r"""#!/usr/bin/env bash
# Written by the docker-optimization pipeline from {compose}.
# Put services back on the image deploy.sh kept as <repository>:previous, dependents
# first, and wait for each to be healthy (or, without a healthcheck, running) again.
#
#   bash deploy/rollback.sh              every service that has a :previous image
#   bash deploy/rollback.sh SERVICE...   only these
#
# Exits 1 when a service couldn't be rolled back or isn't ready within DEPLOY_TIMEOUT seconds.
set -euo pipefail

PROG=rollback
cd "$(dirname "${{BASH_SOURCE[0]}}")/..{cd}"
{compose_file}
# Dependency order (compose depends_on); rolled back in reverse.
ORDER=({order})
JOBS=({jobs})
{common}
check_services "$@"
failed=()
for ((i = ${{#ORDER[@]}} - 1; i >= 0; i--)); do
  service=${{ORDER[i]}}
  if ! selected "$service" "$@"; then
    continue
  fi
  mapfile -t ids < <(containers "$service")
  if ((${{#ids[@]}} == 0)); then
    log "$service: no container, so nothing tells which image to put back; skipped"
    continue
  fi
  ref=$(docker inspect --format '{{{{.Config.Image}}}}' "${{ids[0]}}")
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
if ((${{#failed[@]}} > 0)); then
  log "not rolled back: ${{failed[*]}}"
  exit 1
fi
log "done"
"""


def _gate_lines(graph: BuildGraph, order: list[str]) -> str:
    kinds = {"compose": "healthy (compose healthcheck)", "Dockerfile": "healthy (Dockerfile HEALTHCHECK)",
             "": "running (no healthcheck)"}
    lines = []
    for kind, label in kinds.items():
        names = [n for n in order if graph.services[n].healthcheck == kind]
        if names:
            lines.append(f"#   {label}: {' '.join(names)}")
    return "\n".join(lines)


def _jobs(project: Project, names: list[str]) -> list[str]:
    jobs = set()
    for compose in project.composes:
        for svc in compose.services.values():
            deps = svc.get("depends_on") if isinstance(svc, dict) else None
            if isinstance(deps, dict):
                jobs |= {str(k) for k, v in deps.items()
                         if isinstance(v, dict) and v.get("condition") == "service_completed_successfully"}
    return [n for n in names if n in jobs]


def _words(names: list[str]) -> str:
    return " ".join(names)


def _settings(project: Project) -> dict[str, str]:
    path = primary_compose(project)
    if not path:
        raise FixError("no valid compose file with services: nothing to deploy")
    folder, name = posixpath.dirname(path), posixpath.basename(path)
    if any(ch in path for ch in "'\"$`\\ "):
        raise FixError(f"{path}: a compose path with quotes, spaces or $ is left for a person")
    return {
        "compose": path,
        "cd": f"/{folder}" if folder else "",
        "compose_file": "" if name in COMPOSE_NAMES else f'export COMPOSE_FILE="${{COMPOSE_FILE:-{name}}}"\n',
    }


def _order(project: Project, graph: BuildGraph) -> list[str]:
    path = primary_compose(project)
    compose = next(c for c in project.composes if c.path == path)
    names = {str(n) for n in compose.services}
    order = [n for n in graph.runtime_order if n in names]
    bad = [n for n in order if not all(ch.isalnum() or ch in "._-" for ch in n)]
    if bad:
        raise FixError(f"service names {', '.join(bad)} need quoting in a script; left for a person")
    return order


def deploy_script(project: Project, graph: BuildGraph | None = None) -> str:
    graph = graph or build_graph(project)
    settings, order = _settings(project), _order(project, graph)
    return DEPLOY.format(**settings, order=_words(order), jobs=_words(_jobs(project, order)),
                         gates=_gate_lines(graph, order), common=COMMON)


def rollback_script(project: Project, graph: BuildGraph | None = None) -> str:
    graph = graph or build_graph(project)
    settings, order = _settings(project), _order(project, graph)
    return ROLLBACK.format(**settings, order=_words(order), jobs=_words(_jobs(project, order)), common=COMMON)
