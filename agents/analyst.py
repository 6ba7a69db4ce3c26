"""Analyst: reads the checkout and turns it into findings (the pipeline's rules do the work)."""

from __future__ import annotations

from collections import Counter

from agents.base import Agent
from engine.spec import Phase


class Analyst(Agent):
    role = "analyst"
    needs_workspace = True

    def run(self, phase: Phase, state: dict) -> dict:
        self.ws.reset_to(state["head"])
        findings = self.ctx.domain.analyze(self.ws.path)
        by_sev = Counter(f.severity.value for f in findings)
        summary = f"{len(findings)} findings (" + ", ".join(f"{n} {s}" for s, n in sorted(by_sev.items())) + ")"
        return {"findings": findings, "_summary": summary}
