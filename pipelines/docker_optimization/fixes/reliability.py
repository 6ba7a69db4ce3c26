"""Reliability fixes: health checks that use what the image has, the built-in frontend, pinned digests."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess

from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.fixes import dockerfile_of
from pipelines.docker_optimization.fixes.edit import newline_of, replace_lines
from pipelines.docker_optimization.model.image_tools import Tools, repository_and_tag
from pipelines.docker_optimization.model.project import Project
from pipelines.docker_optimization.rules.reliability import HEALTHCHECK_TOOL_FIX, SYNTAX_DIRECTIVE_FIX, PIN_DIGEST_FIX
from pipelines.docker_optimization.rules.reliability import (
    base_image_floating_tag, base_image_without_digest, directives, external_bases, missing_healthcheck_tools,
)

# -- healthcheck-tool (RL001) ------------------------------------------------
PYTHON_PROBE = ("import urllib.request,sys; "
                "sys.exit(0 if urllib.request.urlopen('{url}', timeout={timeout}).status < 400 else 1)")
NODE_PROBE = ("require('{module}').get('{url}', {{timeout: {ms}}}, "
              "r => process.exit(r.statusCode < 400 ? 0 : 1))"
              ".on('error', () => process.exit(1)).on('timeout', () => process.exit(1))")
DEFAULT_TIMEOUT = "30"   # Docker's own HEALTHCHECK --timeout default: not a figure of ours


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
    "curl": {"-f", "--fail", "-s", "--silent", "-S", "--show-error", "-L", "--location", "-q", "-I", "--head",
             "--fail-with-body"},
    "wget": {"-q", "--quiet", "--spider", "-nv", "--no-verbose", "-S", "--server-response"},
}
VALUE_OPTIONS = {
    "curl": {"-o": "output", "--output": "output", "-m": "timeout", "--max-time": "timeout",
             "--connect-timeout": "timeout", "--retry": "ignore"},
    "wget": {"-O": "output", "--output-document": "output", "-o": "output", "--output-file": "output",
             "-T": "timeout", "--timeout": "timeout", "-t": "ignore", "--tries": "ignore"},
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
        return FixError(f"line {line}: {tool} option {word} has no equivalent in the probe; left for a person")

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
            for index, letter in enumerate(word[1:], 1):   # a cluster: -fsS, -qO-, -sfm 3
                if f"-{letter}" in FLAGS[tool]:
                    continue
                kind = VALUE_OPTIONS[tool].get(f"-{letter}")
                if kind is None:
                    raise unknown(word)
                values.append((kind, word[index + 1:] or next(rest, "")))
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
            raise FixError(f"line {line}: the health check uses shell syntax (variables, pipes, several "
                           "commands); left for a person")
        try:
            words = shlex.split(script)
        except ValueError as err:
            raise FixError(f"line {line}: can't read the health check command ({err})") from err
    if not words or words[0].rsplit("/", 1)[-1] != tool:
        raise FixError(f"line {line}: the health check doesn't start with {tool}; left for a person")
    values, urls = _options(tool, words[1:], line)
    # No timeout of its own: the probe gives up when Docker would stop the check anyway (--timeout, else 30 s).
    timeout = next((_seconds(f.partition("=")[2]) for f in ins.flags if f.startswith("--timeout=")), None) \
        or DEFAULT_TIMEOUT
    for kind, value in values:
        if kind == "timeout" and NUMBER.match(value):
            timeout = value
        elif kind == "output" and value not in DISCARDED_OUTPUT:
            raise FixError(f"line {line}: {tool} writes to {value}; left for a person")
    if len(urls) != 1:
        raise FixError(f"line {line}: the health check requests {len(urls)} URLs; expected one")
    url = urls[0] if "://" in urls[0] or not HOST_ONLY.match(urls[0]) else "http://" + urls[0]
    if not SAFE_URL.match(url):
        raise FixError(f"line {line}: {urls[0]} is not a plain http(s) URL; left for a person")
    return url, timeout


def probe_command(tools: Tools, url: str, timeout: str, tool: str) -> list[str]:
    """The exec-form command that does the same GET with what the image has: python, else node."""
    for python in ("python", "python3"):
        if tools.has(python):
            return [python, "-c", PYTHON_PROBE.format(url=url, timeout=timeout)]
    if tools.has("node"):
        module = "https" if url.startswith("https:") else "http"
        return ["node", "-e", NODE_PROBE.format(module=module, url=url, ms=round(float(timeout) * 1000))]
    raise FixError(f"{tools.image or 'the final image'} has neither {tool} nor python or node to probe with: "
                   f"install {tool} in the final stage")


def healthcheck_line(df: Dockerfile, ins: Instruction, command: list[str]) -> str:
    """The HEALTHCHECK rewritten in exec form, with its options and its first line's indentation and keyword."""
    first = df.lines[ins.start_line - 1]
    keyword = re.match(r"\s*\S+", first).group(0)
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
        raise FixError(f"the rewritten health check in {task.file} doesn't check out: "
                       f"{after.error or 'tool still missing'}")
    return {task.file: text}


# -- syntax-directive (RL004) ------------------------------------------------
OFFICIAL_FRONTEND = re.compile(r"^(?:docker\.io/)?docker/dockerfile(?::(?P<tag>[\w.-]+))?(?:@sha256:[0-9a-f]{64})?$")


@SYNTAX_DIRECTIVE_FIX.applies("Build {file} with BuildKit's built-in Dockerfile frontend")
def drop_syntax_directive(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_of(project, task)
    found = [(number, value) for number, name, value in directives(df) if name == "syntax"]
    if not found:
        raise AlreadyResolved(f"{task.file} has no # syntax= directive left: an earlier change resolved it")
    text = df.text
    for number, value in reversed(found):
        match = OFFICIAL_FRONTEND.match(value)
        if not match:
            raise FixError(f"{value} is not the official Dockerfile frontend: the built-in one can't stand in for it")
        if "labs" in (match.group("tag") or ""):
            raise FixError(f"{value} is the labs channel: its features are not in the built-in frontend")
        text = replace_lines(text, number, number, [])
    return {task.file: text}


# -- pin-digest (RL005, RL006) -----------------------------------------------
INSPECT_TIMEOUT = 30


def local_digest(image: str) -> str:
    """The sha256 digest the Docker engine behind DOCKER_HOST has for ``image``; FixError when unknown."""
    if not os.environ.get("DOCKER_HOST"):
        raise FixError("no Docker engine: DOCKER_HOST is not set, so local digests can't be read")
    docker = shutil.which("docker")
    if docker is None:
        raise FixError("no docker client on PATH to read local digests")
    try:
        proc = subprocess.run([docker, "image", "inspect", "--format", "{{json .RepoDigests}}", image],
                              capture_output=True, text=True, timeout=INSPECT_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise FixError(f"docker image inspect {image} did not answer within {INSPECT_TIMEOUT} s") from err
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        if "no such" in detail[0].lower():
            raise FixError(f"digest not known locally: {image} is not in the engine's image store")
        raise FixError(f"docker image inspect {image} failed: {detail[0][:200]}")
    try:
        digests = json.loads(proc.stdout.strip() or "null") or []
    except json.JSONDecodeError as err:
        raise FixError(f"docker image inspect {image} printed something unexpected: {proc.stdout[:100]!r}") from err
    repo = repository_and_tag(image)[0]
    for entry in digests:
        name, _, digest = str(entry).partition("@")
        if digest.startswith("sha256:") and repository_and_tag(name)[0] == repo:
            return digest
    raise FixError(f"digest not known locally: {image} has no repository digest (built locally, or never pulled)")


@PIN_DIGEST_FIX.applies("Pin the base images of {file} by digest")
def pin_digests(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_of(project, task)
    lines = {h.line for h in [*base_image_floating_tag(df), *base_image_without_digest(df)]}
    targets = [(ins, ref) for ins, ref in external_bases(df) if ins.start_line in lines]
    if not targets:
        raise AlreadyResolved(f"every base image of {task.file} is pinned by digest: an earlier change resolved it")
    text = df.text
    for ins, ref in sorted(targets, key=lambda t: t[0].start_line, reverse=True):
        written = ins.value[0]
        if "$" in written:
            raise FixError(f"line {ins.start_line}: FROM {written} uses build arguments; pin the ARG default by hand")
        digest = local_digest(ref)
        token = re.compile(r"(?<!\S)" + re.escape(written) + r"(?!\S)")
        for number in range(ins.start_line, ins.end_line + 1):
            line = df.lines[number - 1]
            if token.search(line):
                text = replace_lines(text, number, number, [token.sub(f"{written}@{digest}", line, count=1)])
                break
        else:
            raise FixError(f"line {ins.start_line}: can't find {written} in the FROM line")
    return {task.file: text}
