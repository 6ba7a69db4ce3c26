"""Fixes: one function per fix (``rules.Fix``, declared beside its rules), turning the current files into fixed ones.

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

from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import FixError
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from agent_pipelines.pipelines.docker_optimization.model.project import Project

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Task


def dockerfile_of(project: Project, task: Task) -> Dockerfile:
    """The task's Dockerfile as it is now; FixError when it is gone or no longer parses."""
    df = project.dockerfiles.get(task.file)
    if df is None or df.error:
        raise FixError(f"{task.file} is missing or no longer parses")
    return df
