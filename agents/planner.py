"""Planner: groups fixable findings into tasks, each assigned to a phase, in a stable order."""

from __future__ import annotations

from agents.base import Agent
from engine.spec import Phase


class Planner(Agent):
    role = "planner"

    def run(self, phase: Phase, state: dict) -> dict:
        run = state["run"]
        plan = self.ctx.domain.plan(state["findings"], run.phases, run.options.get("unsafe_fixes") == "1",
                                      self.ctx.worktree)
        per_phase = {p: len(plan.for_phase(p)) for p in run.phases}
        summary = f"{len(plan.tasks)} tasks: " + ", ".join(f"{p} {n}" for p, n in per_phase.items() if n)
        return {"plan": plan, "_summary": summary}
