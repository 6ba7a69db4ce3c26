"""Architect: the policies and structure the implementer and reviewer follow (plus model notes in LLM mode)."""

from __future__ import annotations

from agent_pipelines.agents.base import Agent
from agent_pipelines.engine.artifacts import RunContext, RunState, Step
from agent_pipelines.engine.spec import Phase


class Architect(Agent):
    role = "architect"
    needs_workspace = True  # for the checkout's kept listing (``Workspace.tree``), not to write

    def run(self, phase: Phase, state: RunState, run: RunContext) -> Step:
        design = self.ctx.domain.design(self.ws.tree(), state.findings, state.plan)
        notes = []
        if self.ctx.llm is not None:
            from agent_pipelines.engine.llm import DesignAdvice

            answer, why = self.ctx.llm.ask(
                phase.name, self.role, "advice", {"policies": design.policies, "tasks": state.plan.tasks}, DesignAdvice
            )
            if answer is None:
                notes.append(f"model: the architect's part failed ({why})")
            else:
                design = design.model_copy(update={"notes": design.notes + [f"model: {n}" for n in answer.notes[:5]]})
        return Step(
            state.model_copy(update={"design": design}),
            f"{len(design.policies)} policies, {len(design.notes)} notes",
            notes,
        )
