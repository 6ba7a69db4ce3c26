"""Implementer: applies each task of the phase and commits it, one commit per task.

Idempotent: commits already on the branch for a task (found by their
``Pipeline-Task`` trailer, e.g. left by an interrupted attempt) are reused,
not redone. A fix that writes nothing is a failed task, never a success; a fix that
does not apply here (``Declined``) is a declined task, with why and what a person would do.

The repair loop: when the reviewer sends tasks back (``RunState.retry``), the implementer runs
again for those tasks only, on the branch as the reviewer left it. Each retry is the task with its
attempt number and the verdict that rejected the last attempt (``Task.previous``): a deterministic
fix may try another approach or decline, a model edit sees the failed gates and the rejected diff.
A retry that makes nothing new (the same change again, a decline, an error) leaves the rejected
attempt standing, with a note saying why; it is not sent back again.
"""

from __future__ import annotations

from git import GitCommandError

from agent_pipelines.agents.base import Agent, replace_phase
from agent_pipelines.engine.artifacts import (
    Applicability,
    Change,
    ChangeStatus,
    RunContext,
    RunState,
    Step,
    Task,
    Verdict,
)
from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.edits import confinement_problems
from agent_pipelines.engine.spec import Phase
from agent_pipelines.engine.tools import tools_note
from agent_pipelines.engine.workspace import TRAILER_FINDINGS, TRAILER_PHASE, TRAILER_RUN, TRAILER_TASK

DIFF_CHARS = 6000  # of a rejected attempt's diff shown to the model: enough for one file's edit


def retry_task(task: Task, rejected: Change, verdicts: list[Verdict]) -> Task:
    """``task`` as its next attempt sees it: the attempt number, and the verdict that rejected ``rejected``."""
    verdict = next((v for v in reversed(verdicts) if v.task_id == task.id and v.attempt == rejected.attempt), None)
    return task.model_copy(update={"attempt": rejected.attempt + 1, "previous": verdict})


def task_of(task: Task, change: Change, verdicts: list[Verdict]) -> Task:
    """The task as the attempt ``change`` was made (a retry carries the verdict on the attempt before)."""
    return retry_task(task, change.earlier[-1], verdicts) if change.earlier else task


class TaskCommitter(Agent):
    """Runs one task's fix on the workspace's head and commits it (the implementer's work; the reviewer's redo)."""

    needs_workspace = True
    _tools_used = ""  # what the model's last edit looked at through the tools (model_edit)

    def apply_and_commit(self, task: Task, state: RunState, run: RunContext, notes: tuple[str, ...] = ()) -> Change:
        """Run the task's fix on the current head and commit what it wrote (also how the reviewer re-applies)."""
        ws = self.ws
        ws.writing()
        try:
            files = (
                self.model_edit(task, state, run)
                if task.fix == "llm"
                else self.ctx.domain.apply(task, ws.tree(), state.design)
            )
        except AlreadyResolved as err:
            self._nothing_written(task)
            return Change(task_id=task.id, phase=task.phase, status=ChangeStatus.skipped, reason=str(err))
        except Declined as err:
            self._nothing_written(task)
            return Change(
                task_id=task.id,
                phase=task.phase,
                status=ChangeStatus.declined,
                reason=str(err),
                action=err.action or self._by_hand(task),
            )
        except FixError as err:
            self._nothing_written(task)
            return Change(task_id=task.id, phase=task.phase, status=ChangeStatus.failed, reason=str(err))
        staged = ws.stage(files, only=task.fix != "llm")  # a domain's fix returns every file it wrote
        refused = confinement_problems(staged, task.allowed_files, task.executable)
        if refused:  # checked on what the commit would record, before it is made
            ws.reset_to(ws.head())
            return Change(
                task_id=task.id,
                phase=task.phase,
                status=ChangeStatus.failed,
                reason="refused before commit: " + "; ".join(refused),
                files=sorted(set(files)),
            )
        noted = [
            *notes,
            *(
                f"{f} is ignored by the repository's .gitignore; committed with --force so the build sees it"
                for f in ws.ignored(files)
            ),
        ]
        if task.fix == "llm" and self._tools_used:
            noted.append(self._tools_used)
        message, trailers = self._message(task), self._trailers(task, run.run_id)
        if task.fix == "llm" and self.ctx.llm is not None:
            from agent_pipelines.engine.edits import provenance

            message, trailers = provenance(self.ctx.llm, message, trailers, self._rationale)
        sha = ws.commit(files, message, trailers, staged=staged)
        if sha is None and task.fix == "llm":  # the model wrote the file back as it was: its answer, not a break
            return Change(
                task_id=task.id,
                phase=task.phase,
                status=ChangeStatus.declined,
                reason="the model's edit changes nothing",
                action=self._by_hand(task),
                notes=noted,
            )
        if sha is None:  # a deterministic fix that writes nothing is a bug
            return Change(
                task_id=task.id,
                phase=task.phase,
                status=ChangeStatus.failed,
                reason="the fix produced no change",
                notes=noted,
            )
        return self._committed(task, sha, noted)

    def _nothing_written(self, task: Task) -> None:
        """Back to the head after a fix that stopped: a domain's fix raises before it writes a file (its
        contract), so the checkout is as it was; a model's edit may have written some, so it is reset."""
        if task.fix != "llm":
            self.ws.unwritten()
        self.ws.reset_to(self.ws.head())

    def model_edit(self, task: Task, state: RunState, run: RunContext) -> list[str]:
        """Ask the model for an edit of the task's file; write it only inside the repository, only to the
        files the task names, and only files the pipeline lets a model edit (never application code).

        What the edit changes can make it unsafe (the domain's ``edit_risks``: a USER, a base image, a
        removed package): then it is refused unless the run allows unsafe fixes.
        """
        from agent_pipelines.engine.edits import apply_edit
        from agent_pipelines.engine.llm import ModelEdit

        if self.ctx.llm is None:
            raise Declined(
                "this task is a model edit and the run has no model",
                f"resume with --llm to let the model write it, or edit {task.file} by hand",
            )
        barred = [f for f in task.allowed_files if not self.ctx.domain.model_may_edit(f)]
        if barred:
            raise FixError(
                f"refused: a model may not edit {', '.join(barred)} (only the build, compose, ignore, "
                f"bake, workflow and deploy files its task names)"
            )
        path = self.ws.path / task.file
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() and not path.is_symlink() else ""
        finding = next(f for f in state.findings if f.id in task.finding_ids)
        tools = self.ctx.domain.llm_tools(self.ws.path, state.findings)
        variables = {"finding": finding, "text": text, "tools": bool(tools)}
        if task.previous is not None:  # a retry: why the last attempt was reverted (absent, the prompt is as before)
            variables["previous"] = self._rejection(task.previous)
        answer, why = self.ctx.llm.ask(task.phase, self.role, "edit", variables, ModelEdit, tools=tools)
        self._tools_used = tools_note(self.ctx.llm.toolbox)
        if answer is None:
            raise FixError(f"the model's part failed: {why}")
        self._rationale = answer.rationale
        written = apply_edit(
            self.ws.path,
            answer.file,
            answer.content,
            answer.diff,
            redactor=self.ctx.llm.redact,
            allowed=task.allowed_files,
        )
        risks = [r for f in written for r in self.ctx.domain.edit_risks(f, self._at_head(f), self._now(f))]
        if risks and run.options.get("unsafe_fixes") != "1":
            raise FixError("refused: the model's edit is unsafe (" + "; ".join(risks) + "); only with --unsafe-fixes")
        return written

    def _rejection(self, verdict: Verdict) -> dict:
        """What the prompt says of a rejected attempt: its number, the gates it failed, its diff."""
        try:
            diff = self.ws.repo.git.show("--format=", "--no-color", verdict.commit)
        except GitCommandError:  # the reverted commit is gone (a gc): the gates still say why
            diff = ""
        if len(diff) > DIFF_CHARS:
            diff = diff[:DIFF_CHARS] + "\n[diff truncated]"
        failed = [f"{g.name}: {g.detail}" for g in verdict.gates if not g.passed and g.verified]
        return {"attempt": verdict.attempt, "failed": failed, "diff": diff}

    def _at_head(self, rel: str) -> str | None:
        try:
            return self.ws.repo.git.show(f"HEAD:{rel}", strip_newline_in_stdout=False)
        except Exception:  # GitCommandError: the file is new
            return None

    def _now(self, rel: str) -> str:
        path = self.ws.path / rel
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""

    def _committed(self, task: Task, sha: str, notes: list[str]) -> Change:
        files, ins, dels = self.ws.numstat(sha)
        return Change(
            task_id=task.id,
            phase=task.phase,
            status=ChangeStatus.committed,
            commit=sha,
            files=files,
            insertions=ins,
            deletions=dels,
            message=task.title,
            notes=notes,
            attempt=task.attempt,
        )

    @staticmethod
    def _by_hand(task: Task) -> str:
        """What a person would do when the fix declines and said nothing more: the rules' own advice."""
        rules = ", ".join(task.rules)
        return f"fix {task.file} by hand ({rules}): each rule's documentation says what to write instead"

    @staticmethod
    def _message(task: Task) -> str:
        return f"{task.title}\n\n{task.rationale}\n\nRules: {', '.join(task.rules)}"

    @staticmethod
    def _trailers(task: Task, run_id: str) -> dict[str, str]:
        return {
            TRAILER_RUN: run_id,
            TRAILER_PHASE: task.phase,
            TRAILER_TASK: task.id,
            TRAILER_FINDINGS: ",".join(task.finding_ids),
        }


class Implementer(TaskCommitter):
    role = "implementer"

    def run(self, phase: Phase, state: RunState, run: RunContext) -> Step:
        if state.retry.get(phase.name):
            return self._repair(phase, state, run)
        head = state.head_commit
        ws = self.ws
        earlier = {c.task: c.sha for c in ws.task_commits(since=head) if c.phase == phase.name}
        ws.reset_to(head)
        unsafe = run.options.get("unsafe_fixes") == "1"
        changes = []
        for task in state.plan.for_phase(phase.name):
            if task.applicability is Applicability.unsafe and not unsafe:
                continue
            if task.id in earlier:
                changes.append(self._reuse(task, earlier[task.id]))
            else:
                changes.append(self.apply_and_commit(task, state, run))
        done = sum(c.status is ChangeStatus.committed for c in changes)
        failed = sum(c.status is ChangeStatus.failed for c in changes)
        declined = sum(c.status is ChangeStatus.declined for c in changes)
        after = {
            "changes": replace_phase(state.changes, phase.name, changes),
            "head_commit": ws.head(),
            "bases": {**state.bases, phase.name: head},
        }
        if phase.name in state.retry_base:  # the phase runs afresh: no repair round of an earlier run is open
            after["retry_base"] = {k: v for k, v in state.retry_base.items() if k != phase.name}
        return Step(
            state.model_copy(update=after),
            f"{done} commits"
            + (f", {declined} declined" if declined else "")
            + (f", {failed} failed" if failed else ""),
        )

    def _repair(self, phase: Phase, state: RunState, run: RunContext) -> Step:
        """A repair round: the tasks the reviewer sent back, tried again on the branch's head."""
        head = state.head_commit
        ws = self.ws
        earlier = {c.task: c.sha for c in ws.task_commits(since=head) if c.phase == phase.name}
        ws.reset_to(head)
        tasks = {t.id: t for t in state.plan.tasks}
        wanted = set(state.retry[phase.name])
        changes, made, notes = [], 0, []
        for change in (c for c in state.changes if c.phase == phase.name):
            if change.task_id not in wanted or change.task_id not in tasks:
                changes.append(change)
                continue
            task = retry_task(tasks[change.task_id], change, state.verdicts)
            before = ws.head()
            after_what = task.previous.reason if task.previous else change.reason
            new = (
                self._reuse(task, earlier[task.id])
                if task.id in earlier
                else self.apply_and_commit(task, state, run, notes=(f"attempt {task.attempt}, after: {after_what}",))
            )
            why = self._no_new_attempt(change, new)
            if why:
                ws.reset_to(before)
                notes.append(f"{task.title}: attempt {task.attempt} not made ({why})")
                changes.append(
                    change.model_copy(update={"notes": [*change.notes, f"attempt {task.attempt} not made: {why}"]})
                )
            else:
                made += 1
                changes.append(new.model_copy(update={"attempt": task.attempt, "earlier": [*change.earlier, change]}))
        after = {
            "changes": replace_phase(state.changes, phase.name, changes),
            "head_commit": ws.head(),
            "retry_base": {**state.retry_base, phase.name: head},
        }
        return Step(state.model_copy(update=after), f"repair: {made} of {len(wanted)} tried again", notes)

    def _no_new_attempt(self, rejected: Change, new: Change) -> str:
        """Why the retry ``new`` is no new attempt at the task ("": it is one)."""
        if new.status is not ChangeStatus.committed:
            return f"{new.status.value}: {new.reason}" if new.reason else new.status.value
        try:  # exit 0: the files hold what the rejected attempt wrote
            self.ws.repo.git.diff("--quiet", rejected.commit, new.commit, "--", *sorted({*rejected.files, *new.files}))
        except GitCommandError:  # they differ (or the rejected commit is gone)
            return ""
        return "the fix made the same change again: it has no other approach"

    def _reuse(self, task: Task, sha: str) -> Change:
        ws = self.ws
        if ws.parent(sha) == ws.head():
            ws.reset_to(sha)
        elif not ws.cherry_pick(sha):
            return Change(
                task_id=task.id,
                phase=task.phase,
                status=ChangeStatus.failed,
                reason=f"an earlier attempt's commit {sha[:10]} no longer applies",
            )
        return self._committed(task, ws.head(), notes=["recovered from an interrupted attempt"])
