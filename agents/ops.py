"""Ops: measures what the run changed, comparing the run's base commit with the branch tip."""

from __future__ import annotations

from agent_pipelines.agents.base import Agent, replace_phase
from agent_pipelines.engine.artifacts import RunContext, RunState, Step
from agent_pipelines.engine.spec import Phase
from agent_pipelines.engine.tree import GitTree


class Ops(Agent):
    role = "ops"

    def run(self, phase: Phase, state: RunState, run: RunContext) -> Step:
        # Closed when done: a tree that has read blobs holds a `git cat-file --batch` process.
        with (
            GitTree(self.ctx.worktree, run.base_commit, f"base {run.base_commit[:10]}") as base,
            GitTree(self.ctx.worktree, state.head_commit, f"head {state.head_commit[:10]}") as head,
        ):
            figures = self.ctx.domain.measure(phase.name, base, head, state.design)
            # What the summary counts: the branch head analyzed as `pipeline analyze` would, after this phase.
            head_findings = self.ctx.domain.analyze(head, thorough=True)
            notes = self.ctx.domain.phase_notes(phase.name, head)
        return Step(
            state.model_copy(
                update={
                    "measurements": replace_phase(state.measurements, phase.name, figures),
                    "head_findings": head_findings,
                }
            ),
            f"{len(figures)} figures",
            notes,
        )
