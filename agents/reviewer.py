"""Reviewer: verifies every change before it stays, and removes the ones that fail.

It replays the phase's commits one at a time on the phase's base: each is
re-analyzed and passed through the gates (the generic ones here, the
file-type ones from the pipeline's domain). A change that fails any gate is
dropped from the branch; its verdict says which gate and why. Replaying from
the implementer's recorded commits makes the node idempotent.
"""

from __future__ import annotations

from collections import Counter

from agents.base import Agent, replace_phase
from engine.artifacts import Change, ChangeStatus, Finding, Gate, Severity, Task, Verdict
from engine.spec import Phase
from engine.tree import GitTree


def targeted_findings_gone(task: Task, after: list[Finding]) -> Gate:
    """Every finding of the task's rules in the task's file is gone after the change."""
    left = [f for f in after if f.file == task.file and f.rule in task.rules]
    if left:
        return Gate(name="targeted findings gone", passed=False,
                    detail="still there: " + ", ".join(f"{f.rule} at {f.location}" for f in left))
    return Gate(name="targeted findings gone", passed=True, detail=f"{', '.join(task.rules)} cleared in {task.file}")


def no_new_findings(before: list[Finding], after: list[Finding], files: list[str]) -> Gate:
    """No rule fires more often (warning or above) in the changed files than before."""
    def count(items: list[Finding]) -> Counter:
        return Counter((f.rule, f.file) for f in items if f.file in files and f.severity.rank >= Severity.warning.rank)

    grown = count(after) - count(before)
    if grown:
        return Gate(name="no new findings", passed=False,
                    detail="new: " + ", ".join(f"{rule} in {file}" for rule, file in sorted(grown)))
    return Gate(name="no new findings", passed=True, detail="re-analysis found nothing new at warning or above")


class Reviewer(Agent):
    role = "reviewer"
    needs_workspace = True

    def run(self, phase: Phase, state: dict) -> dict:
        ws, domain = self.ws, self.ctx.domain
        base = state.get("bases", {}).get(phase.name, state["head"])
        tasks = {t.id: t for t in state["plan"].tasks}
        ws.reset_to(base)
        before = domain.analyze(ws.path)
        verdicts, changes = [], []
        for change in (c for c in state.get("changes", []) if c.phase == phase.name):
            if change.status is not ChangeStatus.committed:
                changes.append(change)
                continue
            previous = ws.head()
            verdict, after = self._review(tasks[change.task_id], change, previous, before, state)
            verdicts.append(verdict)
            if verdict.accepted:
                before = after
                changes.append(change.model_copy(update={"commit": ws.head()}))
            else:
                ws.reset_to(previous)
                changes.append(change.model_copy(update={"status": ChangeStatus.reverted, "reason": verdict.reason}))
        accepted = sum(v.accepted for v in verdicts)
        return {
            "verdicts": replace_phase(state.get("verdicts", []), phase.name, verdicts),
            "changes": replace_phase(state.get("changes", []), phase.name, changes),
            "head": ws.head(),
            "_summary": f"{accepted} accepted, {len(verdicts) - accepted} reverted",
        }

    def _review(self, task: Task, change: Change, previous: str, before: list[Finding], state: dict):
        ws = self.ws
        if ws.repo.git.rev_parse(f"{change.commit}^") == previous:
            ws.reset_to(change.commit)
        elif not ws.cherry_pick(change.commit):
            gate = Gate(name="applies cleanly", passed=False, detail="conflicts once an earlier change was removed")
            return Verdict(task_id=task.id, phase=task.phase, commit=change.commit, accepted=False, gates=[gate]), before
        after = self.ctx.domain.analyze(ws.path)
        gates = [targeted_findings_gone(task, after), no_new_findings(before, after, change.files)]
        gates += self.ctx.domain.review(task, change, ws.path, GitTree(ws.path, previous, "before"), state["design"])
        accepted = all(g.passed for g in gates)
        return Verdict(task_id=task.id, phase=task.phase, commit=ws.head(), accepted=accepted, gates=gates), after
