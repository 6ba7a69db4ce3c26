"""Reliability rules RL004, RL005, RL006: base images and frontends a build pulls by a name that can change
(a remote `# syntax=`, a floating tag, a tag without a digest); with the fixes that pin them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization.fixes import dockerfile_of
from agent_pipelines.pipelines.docker_optimization.fixes.edit import replace_lines
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from agent_pipelines.pipelines.docker_optimization.model.image_tools import (
    base_image,
    repository_and_tag,
)
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, rule
from agent_pipelines.pipelines.docker_optimization.rules.reliability import directives

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

SYNTAX_DIRECTIVE_FIX = Fix("syntax-directive")
PIN_DIGEST_FIX = Fix("pin-digest")


@rule(
    "RL004",
    "remote-syntax-frontend",
    Category.reliability,
    Severity.info,
    "dockerfile",
    fix=SYNTAX_DIRECTIVE_FIX,
    safety=Applicability.unsafe,
    phase="dockerfiles",
)
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
            yield Hit(
                number,
                f"the build pulls the Dockerfile frontend {value} from a registry before it starts",
                df.lines[number - 1].rstrip("\r\n"),
            )


def external_bases(df: Dockerfile) -> list[tuple[Instruction, str]]:
    """(FROM, reference with global ARG defaults applied) for every FROM of a registry image.

    Skips `scratch`, earlier stages, and references whose build arguments have no default.
    """
    found, froms = [], df.of("FROM")
    for stage, ins in zip(df.stages, froms):
        earlier = {s.name.lower() for s in df.stages[: stage.index] if s.name}
        if stage.base.lower() in earlier or stage.base.lower() == "scratch":
            continue
        ref = base_image(df, stage.base)
        if ref and ref.lower() != "scratch":
            found.append((ins, ref))
    return found


@rule(
    "RL005",
    "base-image-floating-tag",
    Category.reliability,
    Severity.warning,
    "dockerfile",
    fix=PIN_DIGEST_FIX,
    safety=Applicability.unsafe,
    phase="dockerfiles",
)
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
            yield Hit(
                ins.start_line,
                f"base image {ref} floats ({why}): each build may get a different image",
                ins.original,
                ins.end_line,
            )


@rule(
    "RL006",
    "base-image-without-digest",
    Category.reliability,
    Severity.info,
    "dockerfile",
    fix=PIN_DIGEST_FIX,
    safety=Applicability.unsafe,
    phase="dockerfiles",
)
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
            yield Hit(
                ins.start_line,
                f"base image {ref} is pinned by tag only: the tag can be re-pushed",
                ins.original,
                ins.end_line,
            )


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
            raise Declined(f"{value} is not the official Dockerfile frontend: the built-in one can't stand in for it")
        if "labs" in (match.group("tag") or ""):
            raise Declined(f"{value} is the labs channel: its features are not in the built-in frontend")
        text = replace_lines(text, number, number, [])
    return {task.file: text}


# -- pin-digest (RL005, RL006) -----------------------------------------------
INSPECT_TIMEOUT = 30


def local_digest(image: str) -> str:
    """The sha256 digest the Docker engine behind DOCKER_HOST has for ``image``; FixError when unknown."""
    if not os.environ.get("DOCKER_HOST"):
        raise Declined(
            "no Docker engine: DOCKER_HOST is not set, so local digests can't be read",
            "pull the image and pin it by hand (`docker buildx imagetools inspect IMAGE` prints its "
            "digest), or run again with DOCKER_HOST set",
        )
    docker = shutil.which("docker")
    if docker is None:
        raise Declined(
            "no docker client on PATH to read local digests",
            "pin it by hand (`docker buildx imagetools inspect IMAGE` prints its digest)",
        )
    try:
        proc = subprocess.run(
            [docker, "image", "inspect", "--format", "{{json .RepoDigests}}", image],
            capture_output=True,
            text=True,
            timeout=INSPECT_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as err:
        raise FixError(f"docker image inspect {image} did not answer within {INSPECT_TIMEOUT} s") from err
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        if "no such" in detail[0].lower():
            raise Declined(
                f"digest not known locally: {image} is not in the engine's image store",
                f"`docker pull {image}` and run again, or pin it by hand",
            )
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
    raise Declined(f"digest not known locally: {image} has no repository digest (built locally, or never pulled)")


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
            raise Declined(
                f"line {ins.start_line}: FROM {written} uses build arguments", "pin the ARG default by digest by hand"
            )
        digest = local_digest(ref)
        token = re.compile(r"(?<!\S)" + re.escape(written) + r"(?!\S)")
        for number in range(ins.start_line, ins.end_line + 1):
            line = df.lines[number - 1]
            if token.search(line):
                text = replace_lines(text, number, number, [token.sub(f"{written}@{digest}", line, count=1)])
                break
        else:
            raise Declined(f"line {ins.start_line}: can't find {written} in the FROM line")
    return {task.file: text}
