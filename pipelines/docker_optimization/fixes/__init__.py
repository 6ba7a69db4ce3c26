"""Fixes: one function per fix group, turning the current files into the fixed files.

A fix receives the project as it is *now* (re-loaded from the worktree,
after earlier tasks' commits) and re-locates its findings there, so line
numbers that moved don't matter. It returns ``{path: new text}`` and
touches nothing else. When the findings it should fix are gone (an earlier
task of the run cleared them) it raises AlreadyResolved; when the fix does
not apply here (a case it must not guess at), Declined with why and, when
there is more to say than the rule's docs, what a person would do; when
something went wrong (its edit no longer parses), FixError with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine.artifacts import Design, Task
from engine.domain import FixError
from pipelines.docker_optimization.dockerfile import Dockerfile
from pipelines.docker_optimization.project import Project


@dataclass(frozen=True)
class Fix:
    group: str
    title: str                      # "{file}" is replaced by the task's file
    apply: Callable[[Project, Task, Design], dict[str, str]]
    compose_keys: tuple[tuple[str, ...], ...] = ()   # key paths a compose fix may change ("*" = any key)
    writes: tuple[str, ...] = ()      # the files it writes besides the task's file (its commit may change no other)
    executable: tuple[str, ...] = ()  # which of those it makes executable (generated scripts)
    # For a fix whose safety depends on the repository (values from .pipeline.yaml or a guess):
    # (project, file) -> (safe?, what it would write and why). The planner uses it for the task.
    assess: Callable[[Project, str], tuple[bool, str]] | None = None


FIXES: dict[str, Fix] = {}


def dockerfile_of(project: Project, task: Task) -> Dockerfile:
    """The task's Dockerfile as it is now; FixError when it is gone or no longer parses."""
    df = project.dockerfiles.get(task.file)
    if df is None or df.error:
        raise FixError(f"{task.file} is missing or no longer parses")
    return df


def fix(group: str, title: str, compose_keys: tuple[tuple[str, ...], ...] = (), writes: tuple[str, ...] = (),
        executable: tuple[str, ...] = (), assess: Callable[[Project, str], tuple[bool, str]] | None = None):
    def register(func):
        FIXES[group] = Fix(group, title, func, compose_keys, writes, executable, assess)
        return func
    return register


def load_all() -> dict[str, Fix]:
    from pipelines.docker_optimization.fixes import (  # noqa: F401
        cache, compose, context, layers, process, reliability, security, size,
    )
    from pipelines.docker_optimization.rules import multistage  # noqa: F401  (rule and fix in one module)

    return FIXES
