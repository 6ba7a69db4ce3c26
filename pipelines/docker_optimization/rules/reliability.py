"""Reliability rules RL001-RL003: health checks that can't pass or don't exist, swallowed errors; with the
health-check fix. Builds that drift (RL004-RL006: frontends and base images by a name that can change) are
in ``reliability_images.py``."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization.fixes import dockerfile_of
from agent_pipelines.pipelines.docker_optimization.fixes.edit import newline_of, replace_lines
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from agent_pipelines.pipelines.docker_optimization.model.image_tools import (
    Tools,
    stage_chain,
    tools_in_final_stage,
)
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, per_file, rule

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

HEALTHCHECK_TOOL_FIX = Fix("healthcheck-tool")


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
    r"|conda\s+clean|go\s+clean|find\s.*(?:-delete|-exec\s+rm))\b"
)
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


@rule(
    "RL001",
    "healthcheck-tool-not-installed",
    Category.reliability,
    Severity.error,
    "dockerfile",
    fix=HEALTHCHECK_TOOL_FIX,
    safety=Applicability.unsafe,
    phase="dockerfiles",
)
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
    yield Hit(
        ins.start_line,
        f"HEALTHCHECK runs {' and '.join(missing)}, which {tools.image} doesn't have and the final stage "
        f"doesn't install: the check always fails and the container is reported unhealthy",
        ins.original,
        ins.end_line,
    )


def _compose_services(project, df: Dockerfile) -> list[tuple[str, dict]]:
    """(name, data) of the compose services that build ``df``."""
    found: dict[
        tuple[str, str], tuple[str, dict]
    ] = {}  # one per (compose file, service), however many contexts share it
    position = project.memo.get("compose_position")
    if position is None:  # compose file -> its place among the project's (asked for every Dockerfile)
        position = project.memo["compose_position"] = {c.path: (i, c) for i, c in enumerate(project.composes)}
    for ctx in project.contexts_of(df.path):
        for _, compose in sorted(position[p] for p in ctx.compose_files if p in position):  # in project order
            found.update(
                ((compose.path, n), (n, compose.services[n]))
                for n in ctx.services
                if isinstance(compose.services.get(n), dict)
            )
    return list(found.values())


@rule(
    "RL002",
    "no-healthcheck",
    Category.reliability,
    Severity.warning,
    "project",
    reads=("dockerfiles", "composes", "contexts"),
)
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
    parsed = [df for df in project.dockerfiles.values() if not df.error and df.stages]
    services = {df.path: _compose_services(project, df) for df in parsed}
    # Each Dockerfile's hits are kept while it, the services building it and ``unresolved`` are the same.
    yield from per_file(
        project,
        "RL002",
        parsed,
        lambda df: _unchecked_ports(df, services[df.path], unresolved),
        lambda df: (unresolved, *(part for name, data in services[df.path] for part in (name, data))),
    )


def _unchecked_ports(df: Dockerfile, services: list[tuple[str, dict]], unresolved: bool) -> Iterable[Hit]:
    """RL002's hits for one Dockerfile and the compose services that build it."""
    if healthcheck(df) is not None:
        return
    if any("healthcheck" in data for _, data in services) or (unresolved and not services):
        return
    chain = set(stage_chain(df, df.final_stage))
    exposes = [i for i in df.of("EXPOSE") if i.stage in chain]
    published = sorted(name for name, data in services if data.get("ports") or data.get("expose"))
    if exposes:
        ins = exposes[-1]
        yield Hit(
            ins.start_line,
            f"the image exposes {' '.join(ins.value)} but has no HEALTHCHECK"
            + (f" (nor does compose service {', '.join(dict.fromkeys(n for n, _ in services))})" if services else ""),
            ins.original,
            ins.end_line,
            file=df.path,
        )
    elif published:
        stage = df.stages[df.final_stage]
        yield Hit(
            stage.start_line,
            f"compose publishes {', '.join(published)} from this image, "
            "and neither the image nor the service has a health check",
            f"FROM {stage.base}",
            file=df.path,
        )


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
    simple = before[starts[-1].end() if starts else 0 :].strip()
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


# -- fixes -----------------------------------------------------------------------------------------------
# Reliability fixes: health checks that use what the image has, the built-in frontend, pinned digests.


# -- healthcheck-tool (RL001) ------------------------------------------------
PYTHON_PROBE = (
    "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('{url}', timeout={timeout}).status < 400 else 1)"
)
NODE_PROBE = (
    "require('{module}').get('{url}', {{timeout: {ms}}}, "
    "r => process.exit(r.statusCode < 400 ? 0 : 1))"
    ".on('error', () => process.exit(1)).on('timeout', () => process.exit(1))"
)
DEFAULT_TIMEOUT = "30"  # Docker's own HEALTHCHECK --timeout default: not a figure of ours


def _seconds(duration: str) -> str | None:
    """A HEALTHCHECK duration ("5s", "1m30s", "500ms") in seconds, as a string; None if unreadable."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration.strip():
        return None
    total = sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)
    return f"{total:g}"


# curl/wget options the probe can stand in for. Flags that only change what is printed, or mean
# "fail on HTTP errors" (the probe always does), are dropped; options with a value are kinds:
# "timeout" (carried over), "output" (must be discarded: /dev/null or -), "ignore" (retries).
FLAGS = {
    "curl": {
        "-f",
        "--fail",
        "-s",
        "--silent",
        "-S",
        "--show-error",
        "-L",
        "--location",
        "-q",
        "-I",
        "--head",
        "--fail-with-body",
    },
    "wget": {"-q", "--quiet", "--spider", "-nv", "--no-verbose", "-S", "--server-response"},
}
VALUE_OPTIONS = {
    "curl": {
        "-o": "output",
        "--output": "output",
        "-m": "timeout",
        "--max-time": "timeout",
        "--connect-timeout": "timeout",
        "--retry": "ignore",
    },
    "wget": {
        "-O": "output",
        "--output-document": "output",
        "-o": "output",
        "--output-file": "output",
        "-T": "timeout",
        "--timeout": "timeout",
        "-t": "ignore",
        "--tries": "ignore",
    },
}
DISCARDED_OUTPUT = {"/dev/null", "-"}
EXIT_ONE = re.compile(r"\s*\|\|\s*exit(?:\s+1)?\s*$")
SHELL_SYNTAX = re.compile(r"[;&|<>`$()]")
SAFE_URL = re.compile(r"^https?://[A-Za-z0-9\-._~:/?#\[\]@!&*+,;=%]+$")
HOST_ONLY = re.compile(r"^[A-Za-z0-9.\-\[\]:]+(?:/\S*)?$")
NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def _options(tool: str, words: list[str], line: int) -> tuple[list[tuple[str, str]], list[str]]:
    """((kind, value) of the value options, positional words) of a curl/wget call; FixError on others."""

    def unknown(word: str) -> FixError:
        return Declined(f"line {line}: {tool} option {word} has no equivalent in the probe; left for a person")

    values, positional, rest = [], [], iter(words)
    for word in rest:
        name, eq, inline = word.partition("=")
        if word in FLAGS[tool]:
            continue
        if word.startswith("--") and name in VALUE_OPTIONS[tool]:
            values.append((VALUE_OPTIONS[tool][name], inline if eq else next(rest, "")))
        elif word.startswith("--"):
            raise unknown(word)
        elif word.startswith("-") and len(word) > 1:
            for index, letter in enumerate(word[1:], 1):  # a cluster: -fsS, -qO-, -sfm 3
                if f"-{letter}" in FLAGS[tool]:
                    continue
                kind = VALUE_OPTIONS[tool].get(f"-{letter}")
                if kind is None:
                    raise unknown(word)
                values.append((kind, word[index + 1 :] or next(rest, "")))
                break
        else:
            positional.append(word)
    return values, positional


def probe_request(ins: Instruction, tool: str) -> tuple[str, str]:
    """(url, timeout in seconds) of a curl/wget health check; FixError if it does more than one GET."""
    line = ins.start_line
    if ins.json:
        words = list(ins.value[1:])
    else:
        script = EXIT_ONE.sub("", " ".join(ins.value[1:]))
        if SHELL_SYNTAX.search(script):
            raise Declined(
                f"line {line}: the health check uses shell syntax (variables, pipes, several "
                "commands); left for a person"
            )
        try:
            words = shlex.split(script)
        except ValueError as err:
            raise Declined(f"line {line}: can't read the health check command ({err})") from err
    if not words or words[0].rsplit("/", 1)[-1] != tool:
        raise Declined(f"line {line}: the health check doesn't start with {tool}; left for a person")
    values, urls = _options(tool, words[1:], line)
    # No timeout of its own: the probe gives up when Docker would stop the check anyway (--timeout, else 30 s).
    timeout = (
        next((_seconds(f.partition("=")[2]) for f in ins.flags if f.startswith("--timeout=")), None) or DEFAULT_TIMEOUT
    )
    for kind, value in values:
        if kind == "timeout" and NUMBER.match(value):
            timeout = value
        elif kind == "output" and value not in DISCARDED_OUTPUT:
            raise Declined(f"line {line}: {tool} writes to {value}; left for a person")
    if len(urls) != 1:
        raise Declined(f"line {line}: the health check requests {len(urls)} URLs; expected one")
    url = urls[0] if "://" in urls[0] or not HOST_ONLY.match(urls[0]) else "http://" + urls[0]
    if not SAFE_URL.match(url):
        raise Declined(f"line {line}: {urls[0]} is not a plain http(s) URL; left for a person")
    return url, timeout


def probe_command(tools: Tools, url: str, timeout: str, tool: str) -> list[str]:
    """The exec-form command that does the same GET with what the image has: python, else node."""
    for python in ("python", "python3"):
        if tools.has(python):
            return [python, "-c", PYTHON_PROBE.format(url=url, timeout=timeout)]
    if tools.has("node"):
        module = "https" if url.startswith("https:") else "http"
        return ["node", "-e", NODE_PROBE.format(module=module, url=url, ms=round(float(timeout) * 1000))]
    raise Declined(
        f"{tools.image or 'the final image'} has neither {tool} nor python or node to probe with",
        f"install {tool} in the final stage, or write a probe the image can run",
    )


def healthcheck_line(df: Dockerfile, ins: Instruction, command: list[str]) -> str:
    """The HEALTHCHECK rewritten in exec form, with its options and its first line's indentation and keyword."""
    first = df.lines[ins.start_line - 1]
    found = re.match(r"\s*\S+", first)
    assert found is not None  # the instruction's first line holds its keyword
    keyword = found.group(0)
    options = "".join(f" {flag}" for flag in ins.flags)
    return f"{keyword}{options} CMD {json.dumps(command, ensure_ascii=False)}{newline_of(df.lines[ins.end_line - 1])}"


@HEALTHCHECK_TOOL_FIX.applies("Probe the health check with a program the image has in {file}")
def rewrite_healthcheck(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_of(project, task)
    found = missing_healthcheck_tools(df)
    if found is None:
        raise AlreadyResolved(f"the health check in {task.file} uses what the image has: an earlier change resolved it")
    ins, missing, tools = found
    url, timeout = probe_request(ins, missing[0])
    line = healthcheck_line(df, ins, probe_command(tools, url, timeout, missing[0]))
    text = replace_lines(df.text, ins.start_line, ins.end_line, [line])
    after = Dockerfile.parse(task.file, text)
    if after.error or missing_healthcheck_tools(after) is not None:
        raise FixError(
            f"the rewritten health check in {task.file} doesn't check out: {after.error or 'tool still missing'}"
        )
    return {task.file: text}
