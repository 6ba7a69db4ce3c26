"""deploy/deploy.sh and deploy/rollback.sh: a health-gated rollout in dependency order, and its undo.

deploy.sh replaces the services of the stack one at a time, dependencies
first (compose ``depends_on``). For each: tag the image its container runs
now as ``<repository>:previous``, ``docker compose up -d --no-deps`` it, and
wait until every container of it is ``healthy``, for at most what its
health check allows (``start_period + retries × (interval + timeout)``,
read from the compose healthcheck or the Dockerfile HEALTHCHECK, Docker's
defaults for what neither sets; ``DEPLOY_TIMEOUT`` overrides it). A service
without a health check, or whose check compose disables, is only checked to
be running: no wait is made up for it. A service that doesn't get there is
rolled back: its ``:previous`` image is tagged back under the reference the
container was created from and the service is recreated; the rollout stops
there with a non-zero exit.

Services behind a compose profile are rolled out only when named or when
``COMPOSE_PROFILES`` enables their profile, as ``docker compose up`` does;
services whose image can't be built from the primary compose file (their
COPY sources aren't in the context) are left out and named in a comment.

rollback.sh puts one service, some, or all (dependents first) back on their
``:previous`` images the same way.

The scripts are bash with ``set -euo pipefail`` and pass ``shellcheck -S
style`` with no finding; the order and the gates are written into them as
comments, read off the build graph when they were generated.
"""

from __future__ import annotations

import math
import posixpath
import re
from dataclasses import dataclass

from agent_pipelines.engine.domain import Declined
from agent_pipelines.pipelines.docker_optimization.generate.targets import (
    compose_env,
    deployable,
    interpolate,
    service_build,
)
from agent_pipelines.pipelines.docker_optimization.model.buildgraph import BuildGraph, build_graph, primary_compose
from agent_pipelines.pipelines.docker_optimization.model.compose import COMPOSE_NAMES
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Instruction
from agent_pipelines.pipelines.docker_optimization.model.project import Project

COMMON = r"""
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
"""

DEPLOY = r"""#!/usr/bin/env bash
# Written by the docker-optimization pipeline from {compose}.
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
cd "$(dirname "${{BASH_SOURCE[0]}}")/..{cd}"
{compose_file}
# Dependency order (compose depends_on).
ORDER=({order})
# One-shot services others wait for with condition service_completed_successfully: exit 0 is success;
# each is waited for until it exits (compose gives a job no time limit; DEPLOY_TIMEOUT sets one).
JOBS=({jobs})
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
# Exits 1 when a service couldn't be rolled back or isn't ready within its health check's budget.
set -euo pipefail

PROG=rollback
cd "$(dirname "${{BASH_SOURCE[0]}}")/..{cd}"
{compose_file}
# Dependency order (compose depends_on); rolled back in reverse.
ORDER=({order})
JOBS=({jobs})
{gates}
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


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_UNIT = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
# Docker's defaults for a health check option its definition leaves out (docker run --help, the
# Dockerfile reference): what the engine uses, so what a rollout has to wait for.
DOCKER_DEFAULTS = {"interval": 30.0, "timeout": 30.0, "start_period": 0.0, "retries": 3}


def duration(text: str) -> float | None:
    """Seconds of a compose/Go duration ("1m30s", "500ms", "10s"); None when it isn't one."""
    text = text.strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        return None
    return sum(float(a) * _UNIT[b] for a, b in parts)


@dataclass
class Health:
    """How a rollout waits for one service: ``seconds`` to be healthy, or None with ``why`` it doesn't wait."""

    service: str
    seconds: int | None
    why: str


def _dockerfile_check(project: Project, compose: str, name: str, data: dict) -> Instruction | None:
    """The HEALTHCHECK the built stage (compose ``target`` or the last) ends with, if any."""
    build = service_build(project, compose, name, data)
    if build is None or build.remote:
        return None
    df = project.dockerfiles.get(build.dockerfile)
    if df is None or df.error or not df.stages:
        return None
    target = str(build.build.get("target") or "")
    index = next((st.index for st in df.stages if target and st.name.lower() == target.lower()), df.final_stage)
    checks = [i for i in df.of("HEALTHCHECK") if i.stage == index]
    return checks[-1] if checks else None


def health(project: Project, compose: str, name: str, data: dict) -> Health:
    """The longest Docker takes to call the service healthy or unhealthy, from its definition.

    ``start_period + retries × (interval + timeout)``: failures in the start
    period don't count, then ``retries`` probes in a row must fail, each
    started ``interval`` after the last one ended and taking up to
    ``timeout``. The compose healthcheck's options, else the Dockerfile
    HEALTHCHECK's (the engine merges them the same way), else Docker's
    defaults. No health check, ``disable: true`` or test ``NONE``: not waited on.
    """
    env = compose_env(project, compose)
    check = data.get("healthcheck")
    check = check if isinstance(check, dict) else {}
    if check.get("disable") is True or str(check.get("disable", "")).lower() == "true":
        return Health(name, None, f"healthcheck disabled in {compose} (disable: true)")
    test = check.get("test")
    if test in (["NONE"], "NONE"):
        return Health(name, None, f"healthcheck test NONE in {compose}")
    instruction = _dockerfile_check(project, compose, name, data)
    if instruction is not None and instruction.value and instruction.value[0].upper() == "NONE":
        instruction = None
    if not test and instruction is None:
        return Health(name, None, "no healthcheck")
    values: dict[str, float] = {}
    origin: dict[str, str] = {}
    for key in DOCKER_DEFAULTS:
        written = check.get(key)
        if written is not None:
            source = "compose"
        elif instruction is not None and instruction.flag(key.replace("_", "-")):
            written, source = instruction.flag(key.replace("_", "-"))[-1], "Dockerfile"
        else:
            values[key], origin[key] = DOCKER_DEFAULTS[key], "Docker's default"
            continue
        text = interpolate(str(written), env)[0]
        number = (float(text) if text.isdigit() else None) if key == "retries" else duration(text)
        if number is None:
            return Health(
                name,
                None,
                f"its healthcheck {key} {written!r} is not a duration this can read; "
                "not waited on (set DEPLOY_TIMEOUT to wait)",
            )
        values[key], origin[key] = number, source
    seconds = values["start_period"] + values["retries"] * (values["interval"] + values["timeout"])
    where = (
        "compose healthcheck"
        if test or instruction is None
        else f"Dockerfile HEALTHCHECK, line {instruction.start_line}"
    )
    defaults = [k for k, v in origin.items() if v == "Docker's default"]
    shown = (
        f"{_secs(values['start_period'])} + {int(values['retries'])} × ({_secs(values['interval'])} + "
        f"{_secs(values['timeout'])}) = {math.ceil(seconds)}s ({where}"
        + (f"; Docker's default {', '.join(defaults)}" if defaults else "")
        + ")"
    )
    return Health(name, math.ceil(seconds), shown)


def _secs(value: float) -> str:
    return f"{value:g}s"


def _profiles(data: dict) -> list[str]:
    raw = data.get("profiles")
    return [str(p) for p in raw] if isinstance(raw, list) else []


def _gate_lines(project: Project, order: list[str], profiled: dict[str, list[str]], left: dict[str, str]) -> str:
    compose = primary_compose(project)
    services = next(c for c in project.composes if c.path == compose).services
    checks = [health(project, compose, n, services[n]) for n in order + sorted(profiled)]
    waited = [h for h in checks if h.seconds is not None]
    lines = []
    if waited:
        lines += [
            "# Health gates, from the compose file and Dockerfiles: each service is waited for at most",
            "# start_period + retries × (interval + timeout), the longest Docker takes to call it unhealthy:",
        ]
        lines += [f"#   {h.service}: {h.why}" for h in waited]
    unwaited = [h for h in checks if h.seconds is None]
    if unwaited:
        lines.append("# Not waited on for health (running is checked once, right after it starts):")
        lines += [f"#   {h.service}: {h.why}" for h in unwaited]
    lines.append("declare -A WAIT=(" + " ".join(f"[{h.service}]={h.seconds}" for h in waited) + ")")
    if profiled:
        lines += [
            "# Behind a compose profile, so not rolled out by default (`docker compose up` doesn't start them",
            "# either): name them, or set COMPOSE_PROFILES (e.g. COMPOSE_PROFILES="
            + ",".join(sorted({p for ps in profiled.values() for p in ps}))
            + " bash deploy/deploy.sh).",
        ]
        lines += [f"#   {n}: profile {', '.join(ps)}" for n, ps in sorted(profiled.items())]
    lines.append(
        "declare -A PROFILES=(" + " ".join(f'[{n}]="{" ".join(ps)}"' for n, ps in sorted(profiled.items())) + ")"
    )
    if left:
        lines.append(f"# Left out: their images can't be built from {compose} as the repository is:")
        lines += [f"#   {n}: {why}" for n, why in sorted(left.items())]
    return "\n".join(lines)


def _jobs(project: Project, names: list[str]) -> list[str]:
    jobs = set()
    for compose in project.composes:
        for svc in compose.services.values():
            deps = svc.get("depends_on") if isinstance(svc, dict) else None
            if isinstance(deps, dict):
                jobs |= {
                    str(k)
                    for k, v in deps.items()
                    if isinstance(v, dict) and v.get("condition") == "service_completed_successfully"
                }
    return [n for n in names if n in jobs]


def _words(names: list[str]) -> str:
    return " ".join(names)


def _settings(project: Project) -> dict[str, str]:
    path = primary_compose(project)
    if not path:
        raise Declined("no valid compose file with services: nothing to deploy")
    folder, name = posixpath.dirname(path), posixpath.basename(path)
    if any(ch in path for ch in "'\"$`\\ "):
        raise Declined(f"{path}: a compose path with quotes, spaces or $ is left for a person")
    return {
        "compose": path,
        "cd": f"/{folder}" if folder else "",
        "compose_file": "" if name in COMPOSE_NAMES else f'export COMPOSE_FILE="${{COMPOSE_FILE:-{name}}}"\n',
    }


def _order(project: Project, graph: BuildGraph) -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """(the rollout order, profiled services -> their profiles, services left out -> why)."""
    path = primary_compose(project)
    compose = next(c for c in project.composes if c.path == path)
    names = {str(n) for n in compose.services}
    order = [n for n in graph.runtime_order if n in names]
    bad = [n for n in order if not all(ch.isalnum() or ch in "._-" for ch in n)]
    if bad:
        raise Declined(f"service names {', '.join(bad)} need quoting in a script; left for a person")
    left = deployable(project)
    profiled = {
        n: _profiles(compose.services[n])
        for n in order
        if n not in left and isinstance(compose.services[n], dict) and _profiles(compose.services[n])
    }
    return [n for n in order if n not in left], profiled, left


def _scripts(project: Project, graph: BuildGraph | None) -> dict[str, str]:
    graph = graph or build_graph(project)
    order, profiled, left = _order(project, graph)
    if not order:
        raise Declined(
            "no service of the primary compose file can be rolled out: "
            + "; ".join(f"{n}: {why}" for n, why in sorted(left.items()))
        )
    return {
        **_settings(project),
        "order": _words(order),
        "jobs": _words(_jobs(project, order)),
        "gates": _gate_lines(project, [n for n in order if n not in profiled], profiled, left),
        "common": COMMON,
    }


def deploy_script(project: Project, graph: BuildGraph | None = None) -> str:
    return DEPLOY.format(**_scripts(project, graph))


def rollback_script(project: Project, graph: BuildGraph | None = None) -> str:
    return ROLLBACK.format(**_scripts(project, graph))
