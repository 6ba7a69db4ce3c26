"""Ops: measures what the run changed, comparing the run's base commit with the branch tip."""

from __future__ import annotations

from agents.base import Agent, replace_phase
from engine.spec import Phase
from engine.tree import GitTree


class Ops(Agent):
    role = "ops"

    def run(self, phase: Phase, state: dict) -> dict:
        run = state["run"]
        # Closed when done: a tree that has read blobs holds a `git cat-file --batch` process.
        with GitTree(self.ctx.worktree, run.base_commit, f"base {run.base_commit[:10]}") as base, \
                GitTree(self.ctx.worktree, state["head"], f"head {state['head'][:10]}") as head:
            figures = self.ctx.domain.measure(phase.name, base, head, state["design"])
            # What the summary counts: the branch head analyzed as `pipeline analyze` would, after this phase.
            head_findings = self.ctx.domain.analyze(head, thorough=True)
            notes = getattr(self.ctx.domain, "phase_notes", lambda *_: [])(phase.name, head)
        return {
            "measurements": replace_phase(state.get("measurements", []), phase.name, figures),
            "head_findings": head_findings,
            "_summary": f"{len(figures)} figures",
            "_notes": notes,
        }
