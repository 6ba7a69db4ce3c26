"""What a model may edit in this pipeline, and what makes its edit unsafe.

A model edits build configuration only: Dockerfiles, compose files,
``.dockerignore`` files, bake files, GitHub workflows and the deploy
scripts. Never application code (``services/api/app/main.py``), never a
file Python or a shell would run on its own (``sitecustomize.py``).

A model edit inherits the safety of what it changes: a change to a USER, a
base image (FROM) or a compose ``user:``/``image:``, or an install command
that no longer installs a package it installed before, can change what the
image does, so the edit is unsafe and kept only with ``--unsafe-fixes``
(as the deterministic non-root and pinning fixes are).

Example: a model rewrite of ``FROM python:3.12-slim`` that adds ``USER app``
is refused with "adds or changes USER app" unless the run allows unsafe fixes.
"""

from __future__ import annotations

import posixpath
import re

from agent_pipelines.pipelines.docker_optimization.model.compose import is_compose_file
from agent_pipelines.pipelines.docker_optimization.model.compose import load as load_compose
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from agent_pipelines.pipelines.docker_optimization.model.project import is_dockerfile
from agent_pipelines.pipelines.docker_optimization.rules.process import (
    BAKE_FILES,
    DEPLOY_SCRIPT,
    ROLLBACK_SCRIPT,
    WORKFLOW_PATH,
)

_INSTALL = re.compile(
    r"\b(?:apt-get|apt|yum|dnf|microdnf|zypper)\s+(?:-\S+\s+)*install\b(.*?)(?:&&|\|\||;|$)"
    r"|\bapk\s+(?:-\S+\s+)*add\b(.*?)(?:&&|\|\||;|$)"
    r"|\bpip3?\s+(?:-\S+\s+)*install\b(.*?)(?:&&|\|\||;|$)"
    r"|\b(?:npm|pnpm|yarn)\s+(?:-\S+\s+)*(?:install|add|i)\b(.*?)(?:&&|\|\||;|$)",
    re.DOTALL,
)
_VERSION = re.compile(r"(?:==|>=|<=|~=|!=|[=<>@]).*$")


def model_may_edit(path: str) -> bool:
    """Whether a model edit may write ``path``: build configuration only, never application code."""
    name = posixpath.basename(path)
    return (
        is_dockerfile(path)
        or name.endswith(".dockerignore")
        or is_compose_file(path)
        or name in BAKE_FILES
        or bool(WORKFLOW_PATH.search(path))
        or path in (DEPLOY_SCRIPT, ROLLBACK_SCRIPT)
    )


def edit_risks(path: str, before: str | None, after: str) -> list[str]:
    """What in the change from ``before`` to ``after`` can change what the image does ([] when nothing)."""
    if is_dockerfile(path):
        return _dockerfile_risks(before or "", after)
    if is_compose_file(path) and before is not None:
        return _compose_risks(path, before, after)
    return []


def _dockerfile_risks(before: str, after: str) -> list[str]:
    from agent_pipelines.pipelines.docker_optimization.review.validate import instruction_problems

    old, new = Dockerfile.parse("Dockerfile", before), Dockerfile.parse("Dockerfile", after)
    if new.error or set(instruction_problems(new)) - set(instruction_problems(old)):
        return []  # broken: the reviewer's parse and instruction gates revert it, saying why
    risks = []
    users = lambda df: [" ".join(i.value) for i in df.of("USER")]  # noqa: E731
    if users(old) != users(new):
        risks.append("adds or changes USER " + ", ".join(sorted(set(users(new)) - set(users(old))) or ["(removed)"]))
    bases = lambda df: [s.base for s in df.stages]  # noqa: E731
    if bases(old) != bases(new):
        risks.append("changes the base image (" + ", ".join(bases(old)) + " -> " + ", ".join(bases(new)) + ")")
    gone = sorted(_packages(old) - _packages(new))
    if gone:
        risks.append("no longer installs " + ", ".join(gone[:5]))
    return risks


def _packages(df: Dockerfile) -> set[str]:
    """Package names the RUN instructions install (versions and flags left out)."""
    found = set()
    for ins in df.of("RUN"):
        for match in _INSTALL.finditer(ins.command.replace("\\\n", " ")):
            args = next(g for g in match.groups() if g is not None)
            for word in args.split():
                if not word.startswith(("-", "$", "/", ".")) and "=" not in word[:1]:
                    found.add(_VERSION.sub("", word.strip("'\"")).lower())
    found.discard("")
    return found


def _compose_risks(path: str, before: str, after: str) -> list[str]:
    old, new = load_compose(path, before), load_compose(path, after)
    if old.error or new.error or not isinstance(old.data, dict) or not isinstance(new.data, dict):
        return []
    risks = []
    services = lambda c: c.data.get("services") if isinstance(c.data.get("services"), dict) else {}  # noqa: E731
    for name, svc in services(new).items():
        was = services(old).get(name) or {}
        for key in ("user", "image", "privileged", "cap_add", "security_opt"):
            if isinstance(svc, dict) and isinstance(was, dict) and svc.get(key) != was.get(key):
                risks.append(f"changes {key} of service {name}")
    return risks
