"""Reliability rules: health checks that can't pass or don't exist, swallowed errors, builds that drift."""

from __future__ import annotations

import re
from typing import Iterable

from engine.finding import Applicability, Category, Severity
from pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.model.image_tools import (
    Tools, repository_and_tag, resolve, stage_chain, tools_in_final_stage,
)
from pipelines.docker_optimization.rules import Fix, Hit, rule

HEALTHCHECK_TOOL_FIX = Fix("healthcheck-tool")
SYNTAX_DIRECTIVE_FIX = Fix("syntax-directive")
PIN_DIGEST_FIX = Fix("pin-digest")

HTTP_TOOLS = ("curl", "wget")
# curl/wget as a program (also /usr/bin/curl), not inside a word or a URL.
TOOL_WORD = re.compile(r"(?<![\w./-])(?:/[\w./-]*/)?(curl|wget)(?![\w.-])")
# Errors a RUN throws away: (pattern, what it does).
SWALLOWED = (
    (re.compile(r"\|\|\s*(?:true|/bin/true|:|exit\s+0)(?=\s*(?:$|[;&|)}]))"), "ignores the exit status"),
    (re.compile(r"\|\|\s*(?:echo|printf)\b"), "prints a message instead of failing"),
    (re.compile(r";\s*(?:true|:)\s*$"), "ends with `; true`, so the step always succeeds"),
    (re.compile(r"(?<![\w-])set\s+(?:\+e|\+o\s+errexit)\b"), "turns errexit off with `set +e`"),
)
# Commands whose failure is safe to ignore: removing what may not be there, emptying caches, stopping
# what may not run. `rm -f x || true` is a deliberate ignore, not a hidden failure.
CLEANUP = re.compile(
    r"^(?:sudo\s+)?(?:rm|rmdir|unlink|kill|pkill|killall|userdel|groupdel|deluser|delgroup"
    r"|(?:apt-get|apt)\s+(?:-\S+\s+)*(?:clean|autoclean|autoremove|purge|remove)"
    r"|apk\s+(?:-\S+\s+)*del|(?:yum|dnf|microdnf|zypper)\s+(?:-\S+\s+)*clean"
    r"|(?:pip3?|python3?\s+-m\s+pip)\s+cache\s+(?:purge|remove)|(?:npm|yarn|pnpm)\s+cache\s+clean"
    r"|conda\s+clean|go\s+clean|find\s.*(?:-delete|-exec\s+rm))\b")
# Where the command before a `||` starts: after the last operator, separator or opening group.
_COMMAND_START = re.compile(r"(?:&&|\|\||[;|&({\n]|\bthen\b|\bdo\b)\s*")
# $(...) and `...` without nesting: a fallback inside one (`make -j$(nproc || echo 1)`) is a value, not a step.
_SUBSTITUTION = re.compile(r"\$\([^()]*\)|`[^`]*`")
# A parser directive (BuildKit's own pattern); directives are only read before anything else.
DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


def healthcheck(df: Dockerfile) -> Instruction | None:
    """The HEALTHCHECK in effect in the final image: the last one along the final stage's chain."""
    chain = set(stage_chain(df, df.final_stage)) if df.stages else set()
    found = None
    for ins in df.of("HEALTHCHECK"):
        if ins.stage in chain:
            found = ins
    return found


def healthcheck_command(ins: Instruction) -> str:
    """The command a HEALTHCHECK runs ("" for HEALTHCHECK NONE)."""
    return " ".join(ins.value[1:]) if ins.value and ins.value[0].upper() == "CMD" else ""


def missing_healthcheck_tools(df: Dockerfile) -> tuple[Instruction, list[str], Tools] | None:
    """(the HEALTHCHECK, the HTTP tools it runs that the final image lacks, the image's tools), or None."""
    ins = healthcheck(df)
    if ins is None:
        return None
    tools = tools_in_final_stage(df)
    used = sorted({m.group(1) for m in TOOL_WORD.finditer(healthcheck_command(ins))})
    missing = [t for t in used if tools.has(t) is False]
    return (ins, missing, tools) if missing else None


@rule("RL001", "healthcheck-tool-not-installed", Category.reliability, Severity.error, "dockerfile",
      fix=HEALTHCHECK_TOOL_FIX, safety=Applicability.unsafe, phase="dockerfiles")
def healthcheck_tool_missing(df: Dockerfile) -> Iterable[Hit]:
    """A HEALTHCHECK runs curl or wget, and the final image doesn't have it.

    The image's programs come from its base image's family (python:*-slim and
    debian have neither curl nor wget, alpine has busybox's wget but no curl)
    plus what the final stage installs or copies in. Unknown base images are
    not flagged.

    Why: the check fails on every run with "not found", so the container is
    reported unhealthy forever; anything gated on health (compose
    `depends_on: condition: service_healthy`, rollouts) never starts, while
    the service itself works.

    Example:
        FROM python:3.12-slim
        HEALTHCHECK CMD curl -f http://localhost:8000/health || exit 1

    Use instead:
        FROM python:3.12-slim
        HEALTHCHECK CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://localhost:8000/health', timeout=30).status < 400 else 1)"]

    Fix safety: unsafe: the container's health status changes (from
    always unhealthy to what the probe finds), and restarts, rollouts and
    `depends_on: service_healthy` act on it. The probe makes the same GET;
    its timeout is curl's or wget's, else the HEALTHCHECK's `--timeout`,
    else Docker's default (30 s): never a figure of ours. With
    `--verify-builds` the image must start and pass the new check.
    """
    found = missing_healthcheck_tools(df)
    if found is None:
        return
    ins, missing, tools = found
    yield Hit(ins.start_line,
              f"HEALTHCHECK runs {' and '.join(missing)}, which {tools.image} doesn't have and the final stage "
              f"doesn't install: the check always fails and the container is reported unhealthy",
              ins.original, ins.end_line)


def _compose_services(project, df: Dockerfile) -> list[tuple[str, dict]]:
    """(name, data) of the compose services that build ``df``."""
    found = {}   # one entry per (compose file, service), however many contexts share them
    for ctx in project.contexts_of(df.path):
        for compose in project.composes:
            if compose.path in ctx.compose_files:
                found.update(((compose.path, n), (n, compose.services[n])) for n in ctx.services
                             if isinstance(compose.services.get(n), dict))
    return list(found.values())


@rule("RL002", "no-healthcheck", Category.reliability, Severity.warning, "project",
      reads=("dockerfiles", "composes", "contexts"))
def no_healthcheck(project) -> Iterable[Hit]:
    """An image that serves a port has no HEALTHCHECK, and no compose service that builds it defines one.

    Fires on the final stage of a Dockerfile that EXPOSEs a port, or that a
    compose service publishes (`ports`/`expose`), when neither the image
    (HEALTHCHECK, including one inherited from an earlier stage) nor any
    compose service building it has a health check. `HEALTHCHECK NONE` and
    a compose `healthcheck: {disable: true}` count as a decision, not a gap.
    A Dockerfile no compose build names is not judged when a compose build's
    path is a variable (`dockerfile: ${AD_DOCKERFILE}`): that service may
    build it, with a health check of its own.
    Warning, not info: without a health check nothing can wait for the
    service to be ready.

    Why: Docker only knows the process is running, not that it answers. A
    hung server stays "up", `depends_on: condition: service_healthy` can't
    be used, and rollouts can't tell a good release from a broken one.

    Example:
        FROM python:3.12-slim
        EXPOSE 8000
        CMD ["python", "-m", "app"]

    Use instead:
        FROM python:3.12-slim
        EXPOSE 8000
        HEALTHCHECK CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://localhost:8000/')"]
        CMD ["python", "-m", "app"]
    """
    # A build whose path is a variable nothing resolves (`dockerfile: ${AD_DOCKERFILE}` with no .env setting
    # it: CO010) may build any Dockerfile: one that no resolved build names may get its health check there,
    # so it is not judged.
    unresolved = bool(project.compose_unresolved)
    for df in project.dockerfiles.values():
        if df.error or not df.stages or healthcheck(df) is not None:
            continue
        services = _compose_services(project, df)
        if any("healthcheck" in data for _, data in services) or (unresolved and not services):
            continue
        chain = set(stage_chain(df, df.final_stage))
        exposes = [i for i in df.of("EXPOSE") if i.stage in chain]
        published = sorted(name for name, data in services if data.get("ports") or data.get("expose"))
        if exposes:
            ins = exposes[-1]
            yield Hit(ins.start_line, f"the image exposes {' '.join(ins.value)} but has no HEALTHCHECK"
                      + (f" (nor does compose service {', '.join(dict.fromkeys(n for n, _ in services))})"
                         if services else ""),
                      ins.original, ins.end_line, file=df.path)
        elif published:
            stage = df.stages[df.final_stage]
            yield Hit(stage.start_line, f"compose publishes {', '.join(published)} from this image, "
                      "and neither the image nor the service has a health check",
                      f"FROM {stage.base}", file=df.path)


@rule("RL003", "run-swallows-errors", Category.reliability, Severity.warning, "dockerfile")
def run_swallows_errors(df: Dockerfile) -> Iterable[Hit]:
    """A RUN throws its errors away (`|| true`, `|| echo ...`, `|| :`, a trailing `; true`, `set +e`).

    Not flagged, because they hide no failure that matters: an ignore after
    a cleanup command (`rm -rf /tmp/x || true`, `apt-get clean || :`,
    `pip cache purge || true`, `pkill x || true`: removing what may not be
    there, emptying caches, stopping what may not run) when the ignore
    applies to that command alone (`make && rm x || true` ignores make's
    failure too, and is flagged), and a fallback inside
    a command substitution (`make -j$(nproc || echo 1)`: a default value,
    not a step). An install, download, build or test followed by `|| true`
    is still flagged.

    Why: the build succeeds with a step that failed: a package that didn't
    install, a download that 404'd, a migration that crashed. The image
    ships broken and the failure surfaces at runtime, far from its cause.
    If a command may legitimately fail, test for the condition instead.

    Example:
        RUN apt-get install -y libpq5 || true

    Use instead:
        RUN apt-get install -y libpq5
    """
    for ins in df.of("RUN"):
        command = _SUBSTITUTION.sub("x", ins.command)
        for pattern, what in SWALLOWED:
            if any(not _ignores_cleanup(command, m.start()) for m in pattern.finditer(command)):
                yield Hit(ins.start_line, f"RUN {what}: a failing step still builds", ins.original, ins.end_line)
                break


def _ignores_cleanup(command: str, at: int) -> bool:
    """Is the command that the swallowing at ``at`` applies to a cleanup (CLEANUP), whose failure is safe?"""
    before = command[:at].rstrip()
    starts = list(_COMMAND_START.finditer(before))
    if starts and starts[-1].group().strip() in ("&&", "||", "|"):
        return False  # `make && rm x || true` ignores make's failure too
    simple = before[starts[-1].end() if starts else 0:].strip()
    return bool(simple) and bool(CLEANUP.match(simple))


def directives(df: Dockerfile) -> list[tuple[int, str, str]]:
    """(line, name in lower case, value) of the parser directives at the top of the file."""
    found = []
    for number, raw in enumerate(df.lines, 1):
        line = raw.rstrip("\r\n")
        match = DIRECTIVE.match(line.lstrip("\ufeff") if number == 1 else line)
        if not match:
            break
        found.append((number, match.group(1).lower(), match.group(2)))
    return found


@rule("RL004", "remote-syntax-frontend", Category.reliability, Severity.info, "dockerfile",
      fix=SYNTAX_DIRECTIVE_FIX, safety=Applicability.unsafe, phase="dockerfiles")
def remote_syntax_frontend(df: Dockerfile) -> Iterable[Hit]:
    """A `# syntax=` directive makes every build pull its Dockerfile frontend from a registry.

    Info, not warning: Docker's docs recommend the directive to get the
    newest Dockerfile features. It matters where builds have no registry
    access (air-gapped or offline CI) or must be reproducible.

    Why: before reading the Dockerfile, BuildKit resolves and pulls the
    frontend image (docker/dockerfile:1 from Docker Hub). Offline the build
    fails before its first step; on a cold builder it adds a pull; and a
    floating tag like `:1` changes the parser under you. BuildKit's built-in
    frontend already handles RUN --mount, heredocs and COPY --link.

    The fix (unsafe) deletes the directive line for docker/dockerfile
    channels other than -labs: an older engine's built-in frontend may lack
    a feature the file uses, so the build should be tried once.

    Example:
        # syntax=docker/dockerfile:1
        FROM python:3.12-slim

    Use instead:
        FROM python:3.12-slim

    Fix safety: unsafe: another frontend parses the Dockerfile, and syntax
    that only a newer frontend knows changes meaning or fails.
    """
    for number, name, value in directives(df):
        if name == "syntax":
            yield Hit(number, f"the build pulls the Dockerfile frontend {value} from a registry before it starts",
                      df.lines[number - 1].rstrip("\r\n"))


def external_bases(df: Dockerfile) -> list[tuple[Instruction, str]]:
    """(FROM, reference with global ARG defaults applied) for every FROM of a registry image.

    Skips `scratch`, earlier stages, and references whose build arguments have no default.
    """
    found, froms = [], df.of("FROM")
    for stage, ins in zip(df.stages, froms):
        earlier = {s.name.lower() for s in df.stages[:stage.index] if s.name}
        if stage.base.lower() in earlier or stage.base.lower() == "scratch":
            continue
        ref = resolve(df, stage.base)
        if ref and ref.lower() != "scratch":
            found.append((ins, ref))
    return found


@rule("RL005", "base-image-floating-tag", Category.reliability, Severity.warning, "dockerfile",
      fix=PIN_DIGEST_FIX, safety=Applicability.unsafe, phase="dockerfiles")
def base_image_floating_tag(df: Dockerfile) -> Iterable[Hit]:
    """A base image is named without a tag, or by `latest`.

    Why: `latest` is whatever was pushed last. The same Dockerfile builds a
    different OS or language version from one day to the next, and a build
    that passed yesterday fails (or, worse, behaves differently) today.

    The fix (unsafe) pins the digest the local Docker engine has for the
    image (`docker image inspect`, needs DOCKER_HOST); it fails when no
    digest is known locally (never pulled, or built locally).

    Example:
        FROM python

    Use instead:
        FROM python:3.12-slim@sha256:<digest>

    Fix safety: unsafe: it chooses the exact base image (the digest the
    local engine has, which may not be the tag's newest), so the image's
    whole base changes to that one.
    """
    for ins, ref in external_bases(df):
        _, tag, digest = repository_and_tag(ref)
        if not digest and tag in ("", "latest"):
            why = "no tag means latest" if not tag else "latest"
            yield Hit(ins.start_line, f"base image {ref} floats ({why}): each build may get a different image",
                      ins.original, ins.end_line)


@rule("RL006", "base-image-without-digest", Category.reliability, Severity.info, "dockerfile",
      fix=PIN_DIGEST_FIX, safety=Applicability.unsafe, phase="dockerfiles")
def base_image_without_digest(df: Dockerfile) -> Iterable[Hit]:
    """A base image is pinned by tag only, not by digest.

    Info: a version tag like 3.12-slim is a reasonable choice; the digest
    is for builds that must be reproducible bit for bit.

    Why: tags are re-pushed (security rebuilds of python:3.12-slim happen
    every few weeks), so two builds of the same commit can differ. A digest
    names exactly one image; keep the tag beside it for readers.

    The fix (unsafe) pins the digest the local Docker engine has for the
    image, like RL005's.

    Example:
        FROM python:3.12-slim

    Use instead:
        FROM python:3.12-slim@sha256:<digest>

    Fix safety: unsafe: it chooses the exact base image (the digest the
    local engine has), as RL005's fix does.
    """
    for ins, ref in external_bases(df):
        _, tag, digest = repository_and_tag(ref)
        if not digest and tag not in ("", "latest"):
            yield Hit(ins.start_line, f"base image {ref} is pinned by tag only: the tag can be re-pushed",
                      ins.original, ins.end_line)
