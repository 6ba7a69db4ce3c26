"""Architect: the policies and structure the implementer and reviewer follow."""

from __future__ import annotations

from agents.base import Agent
from engine.spec import Phase


class Architect(Agent):
    role = "architect"

    def run(self, phase: Phase, state: dict) -> dict:
        design = self.ctx.domain.design(self.ctx.worktree, state["findings"], state["plan"])
        return {"design": design, "_summary": f"{len(design.policies)} policies, {len(design.notes)} notes"}
