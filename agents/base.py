"""What every agent is: a context manager holding its resources, and ``run(phase, state, run) -> Step``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_pipelines.engine.artifacts import RunContext, RunState, Step
from agent_pipelines.engine.domain import Domain
from agent_pipelines.engine.spec import Phase
from agent_pipelines.engine.workspace import Workspace

if TYPE_CHECKING:
    from agent_pipelines.engine.llm import LLM


@dataclass
class AgentContext:
    """What an agent holds open for an invocation: the run it opens its workspace for (the same ``RunContext``
    the graph passes its nodes), the domain and, in LLM mode, the model."""

    run: RunContext
    domain: Domain
    llm: LLM | None = None  # in LLM mode; never built offline

    @property
    def worktree(self) -> Path:
        return Path(self.run.worktree)


class Agent:
    """Base class: subclasses open what they need in ``open`` and release it in ``close``."""

    role = "agent"
    needs_workspace = False

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.workspace: Workspace | None = None
        self.closed = False

    def open(self) -> None:
        if self.needs_workspace:
            self.workspace = Workspace(self.ctx.worktree, self.ctx.run.branch)

    def close(self) -> None:
        if self.workspace is not None:
            self.workspace.close()
            self.workspace = None
        self.closed = True

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ws(self) -> Workspace:
        if self.workspace is None:
            raise RuntimeError(f"{self.role} used outside its context manager")
        return self.workspace

    def run(self, phase: Phase, state: RunState, run: RunContext) -> Step:
        """The agent's turn at ``phase``: the run's state after it, with a summary and notes for the phase report."""
        raise NotImplementedError


def replace_phase(items: list, phase: str, new: list) -> list:
    """``items`` with this phase's entries replaced by ``new`` (re-running a node never duplicates)."""
    return [i for i in items if i.phase != phase] + list(new)
