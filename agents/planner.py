"""Planner: groups fixable findings into tasks, each assigned to a phase, in a stable order.

In LLM mode it also plans model edits for findings no deterministic fix
covers (they go through the same review; each may change only its file,
needs the deterministic tasks of that file first and is as unsafe as the
strictest rule it addresses), and asks the model for a rationale and an
order, which is used only if it names every task once and puts no task
before one it needs. At most ``MAX_MODEL_TASKS`` model edits are planned,
the ones of the highest ``expected_gain``; the plan (and the report) says
which were left out.
"""

from __future__ import annotations

from agent_pipelines.agents.base import Agent
from agent_pipelines.engine.artifacts import Applicability, Plan, RunContext, RunState, Step, Task, short_hash
from agent_pipelines.engine.spec import Phase

# At most this many model edits per run: each is a model call (or several, with tools) and a commit to review.
MAX_MODEL_TASKS = 5


def expected_gain(findings) -> tuple[int, int]:
    """How much one model edit of these findings (one rule, one file) is expected to gain: the strictest
    severity first (an error before a warning before an info), then how many findings it closes. Candidates
    over the cap are chosen by this, highest first, never by their rule's name."""
    return max(f.severity.rank for f in findings), len(findings)


def _strictest(findings) -> str:
    return max(findings, key=lambda f: f.severity.rank).severity.value


class Planner(Agent):
    role = "planner"
    needs_workspace = True  # for the checkout's kept listing (``Workspace.tree``), not to write

    def run(self, phase: Phase, state: RunState, run: RunContext) -> Step:
        plan = self.ctx.domain.plan(state.findings, run.phases, run.options.get("unsafe_fixes") == "1", self.ws.tree())
        notes = []
        if self.ctx.llm is not None:
            plan = self.with_model_tasks(plan, state.findings, run.phases)
            plan, note = self.model_advice(phase, plan)
            notes.append(note)
        per_phase = {p: len(plan.for_phase(p)) for p in run.phases}
        summary = f"{len(plan.tasks)} tasks: " + ", ".join(f"{p} {n}" for p, n in per_phase.items() if n)
        return Step(state.model_copy(update={"plan": plan}), summary, notes)

    def with_model_tasks(self, plan: Plan, findings, phases: list[str]) -> Plan:
        phase_for = self.ctx.domain.phase_for
        planned = {fid for t in plan.tasks for fid in t.finding_ids}
        groups: dict[tuple[str, str], list] = {}
        phase_of: dict[str, str] = {}
        for f in findings:
            at = phase_for(f.file)
            if (
                f.id in planned
                or f.fix is not Applicability.none
                or f.severity.rank < 1
                or at is None
                or at not in phases
            ):
                continue
            groups.setdefault((f.rule, f.file), []).append(f)
            phase_of[f.file] = at
        may_edit, strictest = self.ctx.domain.model_may_edit, self.ctx.domain.applicability_of
        candidates = sorted(((rule, file), items) for (rule, file), items in groups.items() if may_edit(file))
        candidates.sort(key=lambda c: expected_gain(c[1]), reverse=True)  # stable: rule, file among equals
        chosen, left = candidates[:MAX_MODEL_TASKS], candidates[MAX_MODEL_TASKS:]
        # A model edit works on the file as the deterministic fixes leave it: it needs them first.
        extra = [
            Task(
                id=short_hash("llm", rule, file),
                phase=phase_of[file],
                title=f"Model edit for {rule} in {file}",
                rationale=items[0].message,
                fix="llm",
                file=file,
                rules=[rule],
                finding_ids=[f.id for f in items],
                files=[file],
                applicability=strictest([rule]),
                needs=[t.id for t in plan.tasks if t.file == file],
            )
            for (rule, file), items in chosen
        ]
        order = {p: i for i, p in enumerate(phases)}
        tasks = sorted(plan.tasks + extra, key=lambda t: order[t.phase])  # stable: keeps the domain's order per phase
        skipped = list(plan.skipped)  # the report's plan lists these: the cap and what it left out
        if candidates:
            skipped.append(
                f"model edits: {len(chosen)} of {len(candidates)} candidates planned, by severity then "
                f"findings addressed (at most {MAX_MODEL_TASKS}, MAX_MODEL_TASKS in agents/planner.py)"
                + (
                    "; left out: "
                    + ", ".join(
                        f"{rule} in {file} ({_strictest(items)}, {len(items)} findings)" for (rule, file), items in left
                    )
                    if left
                    else ""
                )
            )
        return plan.model_copy(update={"tasks": tasks, "skipped": skipped})

    def model_advice(self, phase: Phase, plan: Plan) -> tuple[Plan, str]:
        from agent_pipelines.engine.llm import PlanAdvice

        assert self.ctx.llm is not None  # asked in LLM mode only
        answer, why = self.ctx.llm.ask(phase.name, self.role, "advice", {"tasks": plan.tasks}, PlanAdvice)
        if answer is None:
            return plan, f"model: the planner's part failed ({why}); the deterministic order stands"
        notes = plan.notes + [f"model: {answer.rationale}"]
        if sorted(answer.order) != sorted(t.id for t in plan.tasks):
            return plan.model_copy(update={"notes": notes}), "model: its order did not name every task once; not used"
        rank = {tid: i for i, tid in enumerate(answer.order)}
        phases = {p: i for i, p in enumerate(dict.fromkeys(t.phase for t in plan.tasks))}
        tasks = sorted(plan.tasks, key=lambda t: (phases[t.phase], rank[t.id]))
        broken = plan.order_problems(tasks)
        if broken:
            return (
                plan.model_copy(update={"notes": notes + ["model's order refused: it puts " + "; ".join(broken)]}),
                "model: its order puts a task before one it needs; refused, the deterministic order stands",
            )
        return plan.model_copy(update={"tasks": tasks, "notes": notes}), "model: rationale and order used"
