"""Reviewer: verifies every change before it stays, and removes the ones that fail.

It replays the phase's commits one at a time on the phase's base: each is
re-analyzed and passed through the gates (the generic ones here, the
file-type ones from the pipeline's domain). The commits are read from git
objects (a ``GitTree`` of each, derived from its parent's listing): the
implementer made them in a line on the branch, so when every change stays
the checkout is already where the review ends, and it is moved only to redo
a change (a fix writes files) or, at the end, to the last change kept. A
domain whose gates read the checkout (``reviews_commits`` False) gets the
checkout moved to each change instead. Every gate judges what the change
did against its parent: a problem that was already there is recorded in the
verdict, never a reason to revert. A change that fails any gate is dropped
from the branch; its verdict says which gate and why.

Reverts don't cascade: once a change is dropped, the later ones no longer
sit on the head they were made on, so their fix is run again on the new
head (fixes are deterministic) rather than cherry-picked; a model edit is
cherry-picked when it still applies, else the model is asked again on the
file as it is now (the implementer's prompt). Replaying from the
implementer's recorded commits makes the node idempotent.

The repair loop: a change the reviewer reverts goes back to the implementer (``RunState.retry``;
the graph's conditional edge follows it) while its task has attempts left (``--attempts``, default
2). In a repair round the reviewer judges only the new attempts, replayed from where the round
started; the changes it accepted before stay as they are. Every verdict keeps its attempt number.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack

from agent_pipelines.agents.base import replace_phase
from agent_pipelines.agents.implementer import TaskCommitter, task_of
from agent_pipelines.engine.artifacts import (
    Change,
    ChangeStatus,
    Finding,
    Gate,
    RunContext,
    RunState,
    Severity,
    Step,
    Task,
    Verdict,
)
from agent_pipelines.engine.spec import Phase
from agent_pipelines.engine.telemetry import span
from agent_pipelines.engine.tree import DirTree, GitTree


def no_new_findings(before: list[Finding], after: list[Finding], files: list[str]) -> Gate:
    """No rule fires more often (warning or above) in the changed files than before."""

    def count(items: list[Finding]) -> Counter:
        return Counter((f.rule, f.file) for f in items if f.file in files and f.severity.rank >= Severity.warning.rank)

    grown = count(after) - count(before)
    if grown:
        return Gate(
            name="no new findings",
            passed=False,
            detail="new: " + ", ".join(f"{rule} in {file}" for rule, file in sorted(grown)),
        )
    return Gate(name="no new findings", passed=True, detail="re-analysis found nothing new at warning or above")


class Reviewer(TaskCommitter):
    role = "reviewer"

    def run(self, phase: Phase, state: RunState, run: RunContext) -> Step:
        ws = self.ws
        repair = set(state.retry.get(phase.name, ()))  # a repair round: only these tasks have new attempts
        self._human = {t: state.rejected[t] for t in state.to_revert(phase.name)}  # a person rejected them
        if self._human:  # the phase is replayed from its base without them
            repair = set()
        base = (
            state.retry_base.get(phase.name, state.head_commit)
            if repair
            else state.bases.get(phase.name, state.head_commit)
        )
        tasks = {t.id: t for t in state.plan.tasks}
        self._by_commit = self.ctx.domain.reviews_commits()
        if not self._by_commit:
            ws.reset_to(base)
        with ExitStack() as stack:
            self._trees = stack.enter_context(_Trees(ws.path, base))
            self._findings_at = self._analysis(stack, base)
            return self._replay(phase, state, run, tasks, repair, base)

    def _analysis(self, stack: ExitStack, base: str):
        """How the reviewer analyzes a commit: incrementally from git objects when the domain can (only what
        each commit changed is re-run), else a full analysis of the change's tree."""
        ws, domain = self.ws, self.ctx.domain
        incremental = domain.incremental_analysis(ws.path, base)
        if incremental is None:
            return lambda commit: domain.analyze(self._tree(commit))
        inc = stack.enter_context(incremental)
        return lambda commit: inc.to_commit(commit).findings

    def _tree(self, commit: str) -> GitTree | DirTree:
        """What the gates read of ``commit``: its GitTree, or the checkout moved there (``reviews_commits``)."""
        if self._by_commit:
            return self._trees.at(commit)
        self._checkout(commit)
        return self.ws.tree()

    def _checkout(self, commit: str) -> None:
        """The checkout at ``commit``: moved only when it is elsewhere (what the implementer committed is
        clean; a redo's ``reset_to`` makes sure of it)."""
        if self.ws.head() != commit:
            self.ws.reset_to(commit)

    def _parent(self, commit: str) -> str:
        """The commit's first parent, read from the commit object (GitPython's `git cat-file --batch`)."""
        parents = self.ws.repo.commit(commit).parents
        return parents[0].hexsha if parents else ""

    def _replay(self, phase: Phase, state: RunState, run: RunContext, tasks: dict, repair: set[str], base: str) -> Step:
        ws = self.ws
        head = base  # the last change kept: the branch's head once the review ends
        before = self._findings_at(head)
        verdicts, changes, rejected = [], [], []
        judged = {(v.task_id, v.attempt) for v in state.verdicts if v.phase == phase.name} if repair else set()
        self.ctx.domain.review_ahead(  # the commits about to be judged, as the implementer made them
            ws.path,
            [
                c
                for c in state.changes
                if c.phase == phase.name
                and c.status is ChangeStatus.committed
                and not (repair and c.task_id not in repair)
                and (c.task_id, c.attempt) not in judged
                and c.task_id not in self._human
            ],
        )
        for change in (c for c in state.changes if c.phase == phase.name):
            if (
                change.status is not ChangeStatus.committed
                or repair
                and change.task_id not in repair
                or (change.task_id, change.attempt) in judged
            ):  # judged in an earlier round
                changes.append(change)
                continue
            if change.task_id in self._human:  # reverted like a failed gate, with the person's reason
                why = self._human[change.task_id]
                verdicts.append(
                    Verdict(
                        task_id=change.task_id,
                        phase=change.phase,
                        commit=change.commit,
                        accepted=False,
                        gates=[Gate(name="human review", passed=False, detail=why)],
                        attempt=change.attempt,
                    )
                )
                changes.append(
                    change.model_copy(update={"status": ChangeStatus.reverted, "reason": f"rejected in review: {why}"})
                )
                continue
            previous = head
            task = task_of(tasks[change.task_id], change, state.verdicts)
            if self._parent(change.commit) != previous:  # made on a head an earlier revert removed
                ws.reset_to(previous)  # the fix writes on the checkout
                change = self._redo(task, change, previous, state, run).model_copy(
                    update={"attempt": change.attempt, "earlier": change.earlier}
                )
                if change.status is not ChangeStatus.committed:
                    changes.append(change)
                    continue
            verdict, after = self._review(task, change, previous, before, state)
            verdicts.append(verdict)
            if verdict.accepted:
                before, head = after, change.commit
                changes.append(change)
            else:
                changes.append(change.model_copy(update={"status": ChangeStatus.reverted, "reason": verdict.reason}))
                rejected.append(changes[-1])
        self._checkout(head)  # a no-op when every change stayed: the implementer left the branch there
        accepted = sum(v.accepted for v in verdicts)
        retry = [c.task_id for c in rejected if c.attempt < run.max_attempts]
        if repair or self._human:  # the verdicts of earlier rounds stay, but for the ones judged again
            judged_now = {(v.task_id, v.attempt) for v in verdicts}
            all_verdicts = [v for v in state.verdicts if (v.task_id, v.attempt) not in judged_now] + verdicts
        else:
            all_verdicts = replace_phase(state.verdicts, phase.name, verdicts)
        after = {
            "verdicts": all_verdicts,
            "changes": replace_phase(state.changes, phase.name, changes),
            "head_commit": ws.head(),
            "retry": {
                **{k: v for k, v in state.retry.items() if k != phase.name},
                **({phase.name: retry} if retry else {}),
            },
        }
        summary = f"{accepted} accepted, {len(verdicts) - accepted} reverted" + (
            f", {len(retry)} sent back for another attempt" if retry else ""
        )
        return Step(state.model_copy(update=after), ("repair: " if repair else "") + summary)

    def _redo(self, task: Task, change: Change, previous: str, state: RunState, run: RunContext) -> Change:
        """The change made again on ``previous`` (an earlier change of the phase was reverted)."""
        why = f"made again on {previous[:10]} after an earlier change of the phase was reverted"
        if task.fix != "llm":
            return self.apply_and_commit(task, state, run, notes=(f"fix re-run: {why}",))
        if self.ws.cherry_pick(change.commit):
            return self._committed(task, self.ws.head(), [f"model edit cherry-picked: {why}"])
        # It no longer applies: ask the model again, on the file as it is now (the same gates follow).
        return self.apply_and_commit(task, state, run, notes=(f"model edit asked again: {why}",))

    def _review(self, task: Task, change: Change, previous: str, before: list[Finding], state: RunState):
        after = self._findings_at(change.commit)
        base = self._trees.at(previous)
        tree = self._tree(change.commit)
        gates = [
            self.ctx.domain.targeted_gate(
                task, change, tree, base, after, [f for f in state.findings if f.id in task.finding_ids]
            ),
            no_new_findings(before, after, change.files),
        ]
        gates += self.ctx.domain.review(task, change, tree, base, state.design)
        accepted = all(g.passed or not g.verified for g in gates)  # a gate that could not run: kept, unverified
        for g in gates:  # judged together above; one span each says its outcome
            with span(
                "gate",
                **{
                    "pipeline.task": task.id,
                    "pipeline.gate": g.name,
                    "pipeline.gate.passed": g.passed,
                    "pipeline.gate.verified": g.verified,
                    "pipeline.gate.detail": g.detail[:500],
                },
            ):
                pass
        return Verdict(
            task_id=task.id,
            phase=task.phase,
            commit=change.commit,
            accepted=accepted,
            gates=gates,
            attempt=change.attempt,
        ), after


class _Trees:
    """The trees of the commits a review reads (``GitTree.at``): each listing kept from the incremental
    analysis's or derived from a near commit's, blobs read through one `git cat-file --batch`, stopped at
    the end."""

    KEEP = 3  # a change's parent and head, and the head a revert left behind

    def __init__(self, repo, commit: str) -> None:
        self._first = GitTree(repo, commit)  # its process serves every tree of the review
        self._kept: dict[str, GitTree] = {}

    def at(self, commit: str) -> GitTree:
        found = self._kept.pop(commit, None) or self._first.at(commit)
        found.files()  # listed now, so that a read needs no `git ls-tree` of its own
        self._kept[commit] = found
        while len(self._kept) > self.KEEP:
            del self._kept[next(iter(self._kept))]
        return found

    def close(self) -> None:
        self._first.close()

    def __enter__(self) -> _Trees:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
