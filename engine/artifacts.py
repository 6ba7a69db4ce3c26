"""Typed artifacts that flow between agents, and the run record built from them.

Every arrow in the pipeline's data flow is one of these models. They are
stored in LangGraph checkpoints (see ``engine.checkpoint``), written to
``run.json`` and rendered into reports, so they must stay importable from
this module and carry only JSON-friendly fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Re-exported: a finding and its enums live in a pydantic-free module (see engine.finding).
from agent_pipelines.engine.finding import Applicability, Category, Finding, Severity, short_hash  # noqa: F401


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Model(BaseModel):
    # Built on first use: a command that reads one artifact doesn't pay for the dozen others.
    model_config = ConfigDict(extra="forbid", use_enum_values=False, defer_build=True)


class Task(Model):
    """A unit of work for the implementer: one fix on one file, one commit."""

    id: str
    phase: str
    title: str
    rationale: str
    fix: str
    file: str
    scope: str = ""
    rules: list[str]
    finding_ids: list[str]
    applicability: Applicability = Applicability.safe
    estimate: str = ""
    files: list[str] = Field(
        default_factory=list,
        description="the only files its commit may change (added or modified); empty: the task's file alone",
    )
    executable: list[str] = Field(
        default_factory=list, description="files of ``files`` it may make executable (generated scripts)"
    )
    needs: list[str] = Field(default_factory=list, description="ids of tasks that must come before it")
    attempt: int = Field(
        default=1, description="which attempt at the task this is (the repair loop's retries: 2, 3...)"
    )
    previous: Verdict | None = Field(
        default=None,
        description="a retry: the reviewer's verdict on the attempt before; "
        "the fix may try another approach, or decline",
    )

    @property
    def allowed_files(self) -> list[str]:
        return self.files or [self.file]


class Plan(Model):
    tasks: list[Task] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list, description="why findings got no task")
    notes: list[str] = Field(default_factory=list)

    def for_phase(self, phase: str) -> list[Task]:
        return [t for t in self.tasks if t.phase == phase]

    def order_problems(self, tasks: list[Task] | None = None) -> list[str]:
        """Where ``tasks`` (default: this plan's order) puts a task before one it needs: "b before a, which it needs"."""
        tasks = self.tasks if tasks is None else tasks
        at = {t.id: i for i, t in enumerate(tasks)}
        return [
            f"{t.id} ({t.title}) before {n}, which it needs"
            for t in tasks
            for n in t.needs
            if n in at and at[n] > at[t.id]
        ]


class Design(Model):
    """What the architect decided: free-form sections plus named policies."""

    notes: list[str] = Field(default_factory=list)
    policies: dict[str, str] = Field(default_factory=dict)
    data: dict[str, object] = Field(default_factory=dict)


class ChangeStatus(str, Enum):
    """What became of a task: committed (kept unless the reviewer reverted it), reverted (a gate failed:
    the verdict says which), declined (the fix does not apply here: ``reason`` says why, ``action`` what a
    person would do), failed (something broke), skipped (an earlier change of the run already resolved it).
    Only ``failed`` fails a phase and the run's exit code."""

    committed = "committed"
    failed = "failed"
    reverted = "reverted"
    declined = "declined"
    skipped = "skipped"  # already resolved by an earlier change of the run


class Change(Model):
    """What the implementer did for one task."""

    task_id: str
    phase: str
    status: ChangeStatus
    commit: str = ""
    files: list[str] = Field(default_factory=list)
    insertions: int = 0
    deletions: int = 0
    message: str = ""
    reason: str = ""
    action: str = Field(default="", description="declined: what a person would do instead")
    notes: list[str] = Field(default_factory=list)
    attempt: int = Field(default=1, description="1, or the repair loop's retry this change is (see ``earlier``)")
    earlier: list[Change] = Field(
        default_factory=list,
        description="the attempts before this one, each reverted by "
        "the reviewer (its verdict has the same attempt number)",
    )

    @property
    def attempts(self) -> list[Change]:
        """Every attempt at the task, first to last (this change is the last)."""
        return [*self.earlier, self]


class Gate(Model):
    """One check of a change. It fails only for what the change introduced (see ``engine.gates``);
    ``already`` lists the problems that were there at the change's parent too: reported, never a revert."""

    name: str
    passed: bool
    detail: str = ""
    already: str = ""
    verified: bool = Field(
        default=True,
        description="False: the check could not run (a tool or engine missing); "
        "the gate is not passed, the change is kept but reported unverified",
    )


class Verdict(Model):
    """The reviewer's decision on one change, gate by gate."""

    task_id: str
    phase: str
    commit: str
    accepted: bool
    gates: list[Gate] = Field(default_factory=list)
    attempt: int = Field(default=1, description="the attempt at the task it judged (see ``Change.attempt``)")

    @property
    def reason(self) -> str:
        failed = [g for g in self.gates if not g.passed and g.verified]
        return "; ".join(f"{g.name}: {g.detail}" for g in failed) or "all gates passed"

    @property
    def unverified(self) -> list[str]:
        """Gates that could not run: the change stands unverified on them."""
        return [f"{g.name}: {g.detail}" for g in self.gates if not g.verified]


class Method(str, Enum):
    """How a figure was obtained. Reports print it beside every number."""

    measured = "measured"
    computed = "computed"
    estimate = "estimate"
    not_measured = "not_measured"


class Measurement(Model):
    name: str
    subject: str
    phase: str
    value: float | None = None
    unit: str = ""
    method: Method
    how: str
    baseline: float | None = None


PhaseStatus = Literal["pending", "running", "completed", "failed", "skipped"]


class NodeRun(Model):
    node: str
    phase: str
    agent: str
    invocation: int
    started: datetime
    finished: datetime | None = None
    status: Literal["ok", "failed"] = "ok"
    summary: str = ""


class Usage(Model):
    """Model calls one node made: tokens and cost are None when the server didn't report them."""

    phase: str
    agent: str
    calls: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    cost: float | None = 0.0

    @property
    def tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


class LLMCall(Model):
    """One model request (each retry is one), or a cached answer replayed: who asked, which model, what it cost."""

    at: datetime
    phase: str
    agent: str
    purpose: str
    model: str
    endpoint: str
    outcome: str = Field(description="answered, cached, or the error that ended the attempt")
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None


class PhaseReport(Model):
    phase: str
    title: str
    status: PhaseStatus = "pending"
    nodes: list[NodeRun] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    report_path: str = ""


DEFAULT_ATTEMPTS = 2  # a rejected change is tried once more, with the reviewer's verdict


class RunContext(Model):
    """Everything a node needs to know about the run it belongs to (never changes)."""

    run_id: str
    pipeline: str
    repo: str
    worktree: str
    branch: str
    base_commit: str
    run_dir: str
    phases: list[str]
    options: dict[str, str] = Field(default_factory=dict)
    uncommitted: list[str] = Field(
        default_factory=list,
        description="tracked files changed in the checkout but not committed at the start: "
        "not part of the analyzed commit",
    )

    @property
    def max_attempts(self) -> int:
        """Attempts a task gets when the reviewer rejects its change (``--attempts``; 1: no repair loop)."""
        try:
            return max(1, int(self.options.get("attempts", DEFAULT_ATTEMPTS)))
        except ValueError:
            return DEFAULT_ATTEMPTS

    @property
    def base_statement(self) -> str:
        """The run's first line: what was analyzed, and what of the user's checkout was not."""
        line = f"analyzed HEAD {self.base_commit[:10]} of {self.repo}"
        if self.uncommitted:
            n = len(self.uncommitted)
            shown = ", ".join(self.uncommitted[:3]) + (", ..." if n > 3 else "")
            line += f"; {n} uncommitted change{'s' if n != 1 else ''} not included ({shown})"
        return line


class Invocation(Model):
    kind: Literal["run", "resume"]
    number: int
    from_phase: str = ""
    started: datetime
    finished: datetime | None = None
    nodes: list[str] = Field(default_factory=list)
    outcome: str = "running"


RunStatus = Literal["running", "completed", "failed", "interrupted", "stopped", "awaiting review"]


class RunState(Model):
    """The run's state, declared once: the graph's channels, what its checkpoints hold, and the part of ``run.json``
    that is a projection of them (``RunRecord`` extends it with what only the record knows).

    Channels hold whole values (no reducers): a node returns the full new value of what it changes.
    """

    phases: list[PhaseReport] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list, description="the analysis of the base commit")
    worktree_findings: list[Finding] = Field(
        default_factory=list,
        description="found only in the checkout's working tree (untracked, ignored or uncommitted "
        "files a build would send); reported, never planned or edited",
    )
    head_findings: list[Finding] | None = Field(
        default=None, description="the analysis of the branch head (None until ops has run): what the summary counts"
    )
    plan: Plan = Field(default_factory=Plan)
    design: Design = Field(default_factory=Design)
    changes: list[Change] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    measurements: list[Measurement] = Field(default_factory=list)
    head_commit: str = Field(default="", description="tip of the run's branch after the last node")
    bases: dict[str, str] = Field(default_factory=dict, description="phase -> branch tip before its implementer ran")
    retry: dict[str, list[str]] = Field(
        default_factory=dict,
        description="phase -> tasks the reviewer sent back to the implementer (the repair loop follows it)",
    )
    retry_base: dict[str, str] = Field(
        default_factory=dict,
        description="phase -> branch tip the phase's current repair "
        "round started from (the reviewer replays that round's attempts from it)",
    )
    approved: list[str] = Field(default_factory=list, description="tasks a person approved (`pipeline approve`)")
    rejected: dict[str, str] = Field(
        default_factory=dict,
        description="task -> why a person rejected its change (`pipeline reject`); the reviewer reverts it",
    )

    def awaiting_approval(self, phase: str) -> list[str]:
        """The phase's kept changes no person has approved or rejected yet (task ids, in order)."""
        decided = {*self.approved, *self.rejected}
        return [
            c.task_id
            for c in self.changes
            if c.phase == phase and c.status is ChangeStatus.committed and c.task_id not in decided
        ]

    def to_revert(self, phase: str) -> list[str]:
        """The phase's changes a person rejected that are still on the branch (the reviewer reverts them)."""
        return [
            c.task_id
            for c in self.changes
            if c.phase == phase and c.status is ChangeStatus.committed and c.task_id in self.rejected
        ]


@dataclass(frozen=True)
class Step:
    """What an agent's turn at a node returns: the run's state after it, and what the phase report says of it.

    Example: ``Step(state.model_copy(update={"plan": plan}), summary="12 tasks", notes=["model: rationale used"])``.
    The node writes the fields of ``state`` that are not the objects it was given, so a step that changes only the
    plan writes only the plan.
    """

    state: RunState
    summary: str = ""
    notes: list[str] = field(default_factory=list)


# run.json as this code writes it; a record (and its checkpoints) of an older layout can't be resumed or rolled back.
RECORD_SCHEMA = 2


class RunHeader(Model):
    """What ``run.json`` says of the run beside its state: who runs it, how it went, its invocations."""

    schema_version: int = RECORD_SCHEMA
    run: RunContext
    status: RunStatus = "running"
    error: str = ""
    pid: int = Field(default=0, description="the process running (or last running) the run")
    pid_started: str = Field(
        default="",
        description="that process's start (boot id and ticks, from /proc): a reused pid does not read as the run alive",
    )
    created: datetime = Field(default_factory=now)
    updated: datetime = Field(default_factory=now)
    invocations: list[Invocation] = Field(default_factory=list)
    review_phase: str = Field(
        default="",
        description="awaiting review: the phase whose accepted changes wait for "
        "`pipeline approve` or `pipeline reject`",
    )


class RunRecord(RunState, RunHeader):
    """The complete record of a run: what ``run.json`` holds. Its ``RunState`` fields are copied from the
    checkpointed state (``RunRecord.project``), never edited on their own."""

    usage: list[Usage] = Field(default_factory=list)
    llm_calls: list[LLMCall] = Field(
        default_factory=list, description="every model request, in order (llm-calls.jsonl)"
    )
    narrative: str = ""

    def phase(self, name: str) -> PhaseReport:
        return next(p for p in self.phases if p.phase == name)

    def phase_status(self, name: str) -> str:
        """The phase's status as reports print it: "completed, 2 declined" when fixes did not apply."""
        status = self.phase(name).status
        declined = sum(c.phase == name and c.status is ChangeStatus.declined for c in self.changes)
        return f"{status}, {declined} declined" if declined else status

    @property
    def failures(self) -> list[str]:
        """What broke: failed phases and failed tasks (declined and reverted tasks are not failures)."""
        return [f"phase {p.phase}" for p in self.phases if p.status == "failed"] + [
            f"task {c.task_id}" for c in self.changes if c.status is ChangeStatus.failed
        ]

    def project(self, values: dict) -> None:
        """Take the run's state from the graph's checkpointed ``values`` (a channel not written keeps its default)."""
        state = RunState.model_validate(values)
        for name in RunState.model_fields:
            setattr(self, name, getattr(state, name))


ARTIFACT_TYPES: tuple[type, ...] = (
    Finding,
    Task,
    Plan,
    Design,
    Change,
    Gate,
    Verdict,
    Measurement,
    NodeRun,
    Usage,
    PhaseReport,
    RunContext,
    Invocation,
    RunState,
    RunHeader,
    RunRecord,
)
ENUM_TYPES: tuple[type[Enum], ...] = (Severity, Category, Applicability, ChangeStatus, Method)
