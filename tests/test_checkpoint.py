"""Every artifact type goes into a LangGraph SQLite checkpoint and comes back as the same model."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

from agent_pipelines.engine.artifacts import (
    ARTIFACT_TYPES,
    ENUM_TYPES,
    Applicability,
    Category,
    Change,
    ChangeStatus,
    Design,
    Finding,
    Gate,
    Invocation,
    Measurement,
    Method,
    NodeRun,
    PhaseReport,
    Plan,
    RunContext,
    RunRecord,
    RunState,
    Severity,
    Task,
    Verdict,
)
from agent_pipelines.engine.checkpoint import Checkpoints, serializer

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def one_of_each() -> dict[str, BaseModel]:
    finding = Finding.make(
        rule="CA001",
        name="n",
        category=Category.performance,
        severity=Severity.warning,
        message="m",
        file="Dockerfile",
        line=3,
        evidence="RUN pip install x",
        fix=Applicability.safe,
    )
    task = Task(
        id="t1",
        phase="p",
        title="t",
        rationale="r",
        fix="f",
        file="Dockerfile",
        rules=["CA001"],
        finding_ids=[finding.id],
    )
    ctx = RunContext(
        run_id="r", pipeline="p", repo="/r", worktree="/w", branch="b", base_commit="c", run_dir="/d", phases=["p"]
    )
    verdict = Verdict(
        task_id="t1", phase="p", commit="abc", accepted=False, gates=[Gate(name="g", passed=False, detail="d")]
    )
    node = NodeRun(node="p.a", phase="p", agent="a", invocation=1, started=T0, finished=T0)
    return {
        "finding": finding,
        "task": task,
        "plan": Plan(tasks=[task]),
        "design": Design(policies={"a": "b"}, data={"k": [1]}),
        "change": Change(task_id="t1", phase="p", status=ChangeStatus.committed, commit="abc", files=["Dockerfile"]),
        "gate": Gate(name="g", passed=True),
        "verdict": verdict,
        "measurement": Measurement(
            name="n", subject="s", phase="p", value=1.5, baseline=2.0, unit="s", method=Method.measured, how="timed"
        ),
        "node": node,
        "phase": PhaseReport(phase="p", title="P", status="completed", nodes=[node]),
        "context": ctx,
        "invocation": Invocation(kind="run", number=1, started=T0),
        "record": RunRecord(run=ctx, created=T0, updated=T0, findings=[finding], verdicts=[verdict]),
        "state": RunState(findings=[finding], plan=Plan(tasks=[task]), head_commit="abc", bases={"p": "c"}),
    }


class State(TypedDict, total=False):
    items: dict


def test_every_artifact_round_trips_through_the_sqlite_checkpointer(tmp_path):
    items = one_of_each()
    graph = StateGraph(State)
    graph.add_node("produce", lambda state: {"items": items})
    graph.add_edge(START, "produce")
    graph.add_edge("produce", END)
    config = {"configurable": {"thread_id": "t"}}
    with Checkpoints(tmp_path / "state.sqlite") as cp:
        graph.compile(checkpointer=cp.saver).invoke({}, config)

    with Checkpoints(tmp_path / "state.sqlite") as cp:  # a fresh connection: nothing cached in memory
        restored = graph.compile(checkpointer=cp.saver).get_state(config).values["items"]

    assert restored.keys() == items.keys()
    for key, original in items.items():
        assert type(restored[key]) is type(original), key
        assert restored[key] == original, key
    assert isinstance(restored["record"].findings[0], Finding)
    assert restored["finding"].severity is Severity.warning


class NotRegistered(BaseModel):
    x: int = 1


def test_the_checkpointer_does_not_revive_unregistered_types(tmp_path):
    graph = StateGraph(State)
    graph.add_node("produce", lambda state: {"items": {"stranger": NotRegistered()}})
    graph.add_edge(START, "produce")
    graph.add_edge("produce", END)
    config = {"configurable": {"thread_id": "t"}}
    with Checkpoints(tmp_path / "s.sqlite") as cp:
        graph.compile(checkpointer=cp.saver).invoke({}, config)
    with Checkpoints(tmp_path / "s.sqlite") as cp:
        restored = graph.compile(checkpointer=cp.saver).get_state(config).values["items"]["stranger"]
    assert not isinstance(restored, NotRegistered)
    assert restored == {"x": 1}


def test_the_serializer_writes_the_bytes_langgraph_s_own_writes():
    """The run's serializer encodes its artifact types by a lookup of their type, not LangGraph's chain of
    questions; what it writes is what LangGraph writes, byte for byte, so either reads the other's."""
    items = one_of_each()
    langgraph_s = JsonPlusSerializer(allowed_msgpack_modules=[*ARTIFACT_TYPES, *ENUM_TYPES])
    ours = serializer()
    values = [*items.values(), list(items.values()), {"nested": [items["finding"], Severity.error]}, None, b"raw"]
    values.append({"a path": Path("/tmp/x"), "when": T0, "a set": {1, 2}})  # types of LangGraph's own chain
    for value in values:
        written = ours.dumps_typed(value)
        assert written == langgraph_s.dumps_typed(value), value
        assert langgraph_s.loads_typed(written) == ours.loads_typed(written) == value
