"""Build the LangGraph StateGraph of a pipeline from its declaration.

One node per (phase, agent), in declaration order. The state is
``engine.artifacts.RunState``; the run's ``RunContext`` reaches every node as
LangGraph's run context (``context_schema``), never as a state key, so the
options a resume overrides are the ones the nodes see. Channels hold whole
values (no reducers): every node returns the full new value of what it
changes and replaces its own phase's entries, so re-running a node from a
checkpoint gives the same state instead of appending duplicates.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agent_pipelines.engine.artifacts import NodeRun, RunContext, RunState, Step, now
from agent_pipelines.engine.llm_budget import BudgetExhausted
from agent_pipelines.engine.spec import Phase, PipelineSpec
from agent_pipelines.engine.telemetry import span


class InjectedCrash(RuntimeError):
    """Raised by the fault-injection hook (PIPELINE_CRASH_AT=node[:after])."""


def crash_point(node: str, when: str, visit: int = 1) -> None:
    """Test hooks: crash at ``node`` before its work or after it (before the checkpoint),
    or pause there (``PIPELINE_PAUSE_AT=node:seconds``) so a test can signal the run.
    ``PIPELINE_CRASH_AT=node:after@2`` crashes at the node's second run in the run (a repair round)."""
    pause, _, seconds = os.environ.get("PIPELINE_PAUSE_AT", "").partition(":")
    if pause == node and when == "before":
        time.sleep(float(seconds or 5))
    target = os.environ.get("PIPELINE_CRASH_AT", "")
    if not target:
        return
    target, _, nth = target.partition("@")
    name, _, moment = target.partition(":")
    if name == node and (moment or "before") == when and int(nth or visit) == visit:
        if os.environ.get("PIPELINE_CRASH_MODE") == "kill":
            os.kill(os.getpid(), 9)
        raise InjectedCrash(f"injected crash at {node} ({when})")


@contextmanager
def tracing(redactor=None):
    """Tracing of the graph's state: off, unless PIPELINE_TRACING=1 asks for it; then redacted.

    LangGraph uploads every node's input and output state to LangSmith as
    soon as LANGSMITH_TRACING (or LANGCHAIN_TRACING_V2) is set in the
    environment, and the state holds the repository's text. A run turns that
    off for its graph; with PIPELINE_TRACING=1 it traces through a LangSmith
    client whose inputs and outputs go through the run's redactor first.
    Yields the callbacks to pass in the graph's config.
    """
    from langsmith.run_helpers import tracing_context

    if os.environ.get("PIPELINE_TRACING") != "1":
        with tracing_context(enabled=False):
            yield []
        return
    import json

    from langchain_core.tracers.langchain import LangChainTracer
    from langsmith import Client

    def hide(data):
        plain = json.loads(
            json.dumps(data, default=lambda o: o.model_dump(mode="json") if hasattr(o, "model_dump") else str(o))
        )
        return redactor.scrub(plain) if redactor is not None else {}

    tracer = LangChainTracer(client=Client(hide_inputs=hide, hide_outputs=hide))
    try:
        with tracing_context(enabled=True):
            yield [tracer]
    finally:
        tracer.wait_for_futures()  # the uploads happen in a thread: send them before the run ends


def node_names(spec: PipelineSpec, phases: list[str]) -> list[tuple[Phase, str]]:
    return [(p, a) for p in spec.phases if p.name in phases for a in p.agents]


def build_graph(
    spec: PipelineSpec,
    phases: list[str],
    agents: dict,
    invocation: int,
    on_event: Callable[..., None] | None = None,
    checkpointer=None,
    llm=None,
    review: bool = False,
):
    """The compiled graph for ``phases`` of ``spec``; ``agents`` maps role -> open agent.

    A phase's reviewer leads back to its implementer while it sends tasks back (the repair loop). With
    ``review`` (``pipeline run --review``) a phase's accepted changes then wait for a person (``<phase>.approval``).
    Without ``agents`` (``{}``) the graph only reads and writes its checkpoints (``pipeline rollback``):
    its nodes would fail if run.
    """
    graph = StateGraph(RunState, context_schema=RunContext)

    def make(phase: Phase, role: str, last_of_phase: bool):
        return _node(phase, role, agents.get(role), invocation, last_of_phase, on_event, llm)

    wire(graph, spec, phases, make, review)
    return graph.compile(checkpointer=checkpointer)


def wire(
    graph: StateGraph[Any, Any, Any, Any],
    spec: PipelineSpec,
    phases: list[str],
    make_node,
    review: bool,
    first: str = START,
) -> None:
    """Add the nodes of ``phases`` to ``graph`` and their edges, from ``first`` to END: one node per (phase, agent)
    made by ``make_node(phase, role, last_of_phase)``, the repair loop from each phase's reviewer back to its
    implementer, and with ``review`` each phase's approval node (``interrupt()``) after its reviewer. Shared by
    ``pipeline run`` (:func:`build_graph`) and the graph a LangGraph server hosts (``engine.served``)."""
    order = node_names(spec, phases)
    names = [first]
    for index, (phase, role) in enumerate(order):
        last_of_phase = index + 1 == len(order) or order[index + 1][0] is not phase
        names.append(phase.node(role))
        graph.add_node(names[-1], make_node(phase, role, last_of_phase))
        if review and _loops_back((phase, role)):
            names.append(phase.node(APPROVAL))
            graph.add_node(names[-1], _approval(phase))
    names.append(END)
    for index in range(len(names) - 1):
        source, onward = names[index], names[index + 1]
        found = next((p for p, _ in order if source.startswith(p.name + ".")), None)
        if found is not None and source == found.node(APPROVAL):
            graph.add_conditional_edges(
                source, _approval_route(found, onward), [found.node("reviewer"), source, onward]
            )
        elif found is not None and source == found.node("reviewer") and _loops_back((found, "reviewer")):
            graph.add_conditional_edges(source, _repair_route(found, onward), [found.node("implementer"), onward])
        else:
            graph.add_edge(source, onward)


APPROVAL = "approval"  # the node where a phase's accepted changes wait for a person (``--review``)


def _loops_back(node: tuple[Phase, str]) -> bool:
    """The repair loop leaves from a phase's reviewer when the phase has an implementer before it."""
    phase, role = node
    return role == "reviewer" and "implementer" in phase.agents[: phase.agents.index(role)]


def _repair_route(phase: Phase, onward: str):
    """After the reviewer: back to the implementer while it sent tasks back (``RunState.retry``), else onward."""
    back = phase.node("implementer")

    def route(state: RunState) -> str:
        return back if state.retry.get(phase.name) else onward

    route.__name__ = f"{phase.name}.repair"
    return route


def _approval(phase: Phase):
    """Pause the run (LangGraph ``interrupt``) until a person approves or rejects the phase's kept changes.

    The run resumes with ``Command(resume={"approve": [task ids], "reject": {task id: reason}})``; tasks
    left undecided make it pause again. The node only records the decisions: the reviewer reverts.
    """
    name = phase.node(APPROVAL)

    def approve(state: RunState) -> dict:
        pending = state.awaiting_approval(phase.name)
        if not pending:
            return {}
        from langgraph.types import interrupt

        answer = interrupt({"phase": phase.name, "tasks": pending}) or {}
        approved = [t for t in answer.get("approve", []) if t in pending]
        rejected = {t: str(why) for t, why in answer.get("reject", {}).items() if t in pending}
        return {"approved": [*state.approved, *approved], "rejected": {**state.rejected, **rejected}}

    approve.__name__ = name
    return approve


def _approval_route(phase: Phase, onward: str):
    """After a person's decisions: to the reviewer to revert the rejected, back to wait for the rest, else onward."""
    name = phase.node(APPROVAL)

    def route(state: RunState) -> str:
        if state.to_revert(phase.name):
            return phase.node("reviewer")
        return name if state.awaiting_approval(phase.name) else onward

    route.__name__ = f"{name}.route"
    return route


@contextmanager
def _older_objects_set_aside():
    """Cyclic garbage collection looks only at the objects a node makes: the ones made before it (the run's
    state, the domain's kept analyses and listings: millions on a large monorepo) are set aside
    (``gc.freeze``) while it runs, and given back after.

    Why: a node that makes many commits sets off dozens of full collections, and each walked every one of
    those objects: 23 full collections took 10.9 s of a 200,000-file run. Nothing is leaked: an older
    object that became garbage meanwhile is collected once it is given back.
    """
    if not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _node(phase: Phase, role: str, agent, invocation: int, last: bool, on_event, llm):
    name = phase.node(role)

    def run(state: RunState, runtime: Runtime[RunContext]) -> dict:
        if llm is not None and phase.agents.index(role) == 0:
            llm.check_budget()  # stop at a phase boundary, before any of its work (and before every call)
        if on_event:
            on_event("node_start", node=name, phase=phase.name, agent=role)
        visit = 1 + sum(n.node == name for p in state.phases if p.phase == phase.name for n in p.nodes)
        crash_point(name, "before", visit)
        if llm is not None:
            llm.node_started()
        try:
            with (
                span(f"node {name}", **{"pipeline.node": name, "pipeline.phase": phase.name, "pipeline.agent": role}),
                _older_objects_set_aside(),
            ):
                return body(state, runtime.context, visit)
        except Exception as err:
            # A node that didn't finish must not replay the answers it got (one may be what crashed it):
            # they are set aside and a resume asks again.
            if llm is not None and not isinstance(err, BudgetExhausted):
                llm.drop_fresh()
            raise

    def body(state: RunState, context: RunContext, visit: int) -> dict:
        started = now()
        step: Step = agent.run(phase, state, context)
        after = step.state
        # Only what the agent changed is written: a field it left alone is the very object it was given.
        update = {
            key: value for key in RunState.model_fields if (value := getattr(after, key)) is not getattr(state, key)
        }
        reports = [p.model_copy(deep=True) for p in after.phases]
        report = next(p for p in reports if p.phase == phase.name)
        report.nodes.append(
            NodeRun(
                node=name,
                phase=phase.name,
                agent=role,
                invocation=invocation,
                started=started,
                finished=now(),
                summary=step.summary,
            )
        )
        report.notes = [n for n in report.notes if not n.startswith(f"{role}: ")] + [f"{role}: {n}" for n in step.notes]
        report.status = "completed" if last else "running"
        # Only a task that broke fails its phase; a declined one (the fix does not apply) does not.
        if last and any(c.phase == phase.name and c.status.value == "failed" for c in after.changes):
            report.status = "failed"
        before = {c.task_id for c in state.changes if c.status.value == "failed"}
        broke = any(
            c.phase == phase.name and c.status.value == "failed" and c.task_id not in before
            for c in update.get("changes", [])
        )  # this node's own failures mark it ✗
        crash_point(name, "after", visit)
        if on_event:
            on_event("node_end", node=name, phase=phase.name, agent=role, summary=step.summary, failed=broke)
        return {**update, "phases": reports}

    run.__name__ = name
    return run
