"""Analyst: reads the checkout and turns it into findings (the pipeline's rules do the work).

In LLM mode the model may add findings the rules don't cover; each must cite
a file and line that exist and whose text contains the cited evidence, or it
is dropped (and counted in the phase report).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from agents.base import Agent
from engine.artifacts import Finding
from engine.spec import Phase


class Analyst(Agent):
    role = "analyst"
    needs_workspace = True

    def run(self, phase: Phase, state: dict) -> dict:
        self.ws.reset_to(state["head"])
        findings = self.ctx.domain.analyze(self.ws.path, thorough=True)
        notes = []
        if self.ctx.llm is not None:
            extra, note = self.model_findings(phase, findings)
            findings, notes = findings + extra, [note]
        by_sev = Counter(f.severity.value for f in findings)
        summary = f"{len(findings)} findings (" + ", ".join(f"{n} {s}" for s, n in sorted(by_sev.items())) + ")"
        worktree = self.worktree_findings(findings)
        if worktree:
            summary += f"; {len(worktree)} more only in the working tree"
        return {"findings": findings, "worktree_findings": worktree, "_summary": summary, "_notes": notes}

    def worktree_findings(self, committed: list[Finding]) -> list[Finding]:
        """What the user's checkout adds to the committed tree: untracked, ignored and uncommitted files.

        A build sends what is on disk, not what git tracks (a git-ignored `.env`
        copied by `COPY . .`). The fixes edit committed files only, so these are
        reported, not planned: findings of the checkout's analysis that the
        committed tree's analysis doesn't have (by fingerprint).
        """
        seen = {f.fingerprint for f in committed}
        found = self.ctx.domain.analyze(Path(self.ctx.run.repo))
        return [replace(f, source="worktree") for f in found if f.fingerprint not in seen]

    def model_findings(self, phase: Phase, findings: list[Finding]) -> tuple[list[Finding], str]:
        from engine.llm import ModelFindings

        files = getattr(self.ctx.domain, "llm_context", lambda root: {})(self.ws.path)
        answer, why = self.ctx.llm.ask(phase.name, self.role, "findings", {"files": files, "findings": findings},
                                       ModelFindings)
        if answer is None:
            return [], f"model: the analyst's part failed ({why}); the rules' findings stand alone"
        kept, dropped = [], 0
        for mf in answer.findings:
            lines = files[mf.file].splitlines() if mf.file in files else []
            evidence = mf.evidence.strip()
            if not (1 <= mf.line <= len(lines)) or not evidence or evidence not in lines[mf.line - 1]:
                dropped += 1
                continue
            kept.append(Finding.make(rule="LLM001", name="model-finding", category=mf.category, severity=mf.severity,
                                     message=mf.message, file=mf.file, line=mf.line, evidence=evidence, source="llm"))
        return kept, (f"model: {len(kept)} findings added; {dropped} dropped because the cited text is not at the "
                      f"cited file and line")
