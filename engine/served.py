"""The pipeline graph as a LangGraph server hosts it (``langgraph.json`` names :func:`make_graph`).

The server calls the factory for each run with the run's config; the run context comes from it, per run:

    configurable = {"repo": "/srv/checkouts/shop",          # a git checkout the server can write to
                    "pipeline": "NAME",                     # default: the one installed
                    "phases": ["analysis", "..."],          # default: all
                    "options": {"builds": "off"}}           # the CLI's run options, as strings
    thread_id (the server's thread) = the run id: branch pipeline/<thread_id>, worktree under the repository's git dir

The graph is the one ``pipeline run`` builds (``engine.graph.wire``: one node per phase and agent, the repair
loop, the approval nodes) after a ``start`` node that fills the run's first state; the server's checkpointer
(PostgreSQL in a deployment) holds its checkpoints. Each node opens its agent and the pipeline's domain for its
own step and closes them after, so nothing stays open between the server's steps.

Approval, two ways:

- ``"options": {"review": "1"}`` (as ``pipeline run --review``): after each phase's reviewer the run pauses in
  ``<phase>.approval`` (LangGraph ``interrupt()``, its value ``{"phase": ..., "tasks": [task ids]}``); a run on the
  same thread with ``command={"resume": {"approve": [ids], "reject": {id: reason}}}`` continues it. Rejected
  changes are reverted by the reviewer with the reason; tasks left undecided make it pause again.
- a phase boundary: create the run with ``interrupt_after`` set to each phase's last node (:func:`phase_ends`);
  a new run on the same thread with no input continues it.

What the server path does not do (yet): the reports folder and run.json (the thread's state is the record), the
model (``llm`` runs need the CLI), and the repository lock (one thread per repository at a time is the caller's).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from langgraph.graph import START, StateGraph

from agent_pipelines.engine.artifacts import PhaseReport, RunContext, RunState, Step
from agent_pipelines.engine.gitenv import git_env
from agent_pipelines.engine.graph import _node, wire
from agent_pipelines.engine.spec import PipelineSpec, find_pipeline, loaded_pipelines
from agent_pipelines.engine.workspace import RUN_ID, Workspace, _branch_exists, git_common_dir, validate_repo


class ServedRunError(ValueError):
    """A run's config the server can't start from (no repo, a thread id that is not a run id)."""


def run_context(spec: PipelineSpec, configurable: dict) -> RunContext:
    """The run context of the server's thread; makes the run's worktree and branch on the thread's first step."""
    run_id, repo = str(configurable.get("thread_id", "")), configurable.get("repo")
    if not RUN_ID.fullmatch(run_id):
        raise ServedRunError(f"thread id {run_id!r} can't name a run (letters, digits, . _ -)")
    if not repo:
        raise ServedRunError('the run\'s config needs "repo": the git checkout to optimize')
    root = validate_repo(Path(repo))
    worktree, branch = Workspace.location(root, run_id)
    base = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True, env=git_env()
    ).stdout.strip()
    if not _branch_exists(root, branch):
        Workspace.create(root, run_id, base).close()
    else:
        base = subprocess.run(
            ["git", "-C", str(root), "merge-base", "HEAD", branch],
            check=True,
            capture_output=True,
            text=True,
            env=git_env(),
        ).stdout.strip()
        Workspace.open(root, worktree, branch).close()  # re-made from the branch if it was removed
    phases = list(configurable.get("phases") or spec.phase_names)
    return RunContext(
        run_id=run_id,
        pipeline=spec.name,
        repo=str(root),
        worktree=str(worktree),
        branch=branch,
        base_commit=base,
        run_dir=str(git_common_dir(root) / "pipeline-served" / run_id),
        phases=phases,
        options={str(k): str(v) for k, v in (configurable.get("options") or {}).items()},
    )


class _PerStep:
    """An agent opened for one node's step and closed after it (the server keeps nothing open between steps)."""

    def __init__(self, spec: PipelineSpec, role: str) -> None:
        self.spec, self.role = spec, role

    def run(self, phase, state: RunState, run: RunContext) -> Step:
        from agent_pipelines.agents import AGENTS
        from agent_pipelines.agents.base import AgentContext

        domain = self.spec.domain(run)
        try:
            with AGENTS[self.role](AgentContext(run, domain, None)) as agent:
                return agent.run(phase, state, run)
        finally:
            domain.close()


def phase_ends(spec: PipelineSpec, phases: list[str] | None = None) -> list[str]:
    """The last node of each phase: ``interrupt_after`` these to approve the run phase by phase."""
    return [p.node(p.agents[-1]) for p in spec.phases if p.name in (phases or spec.phase_names)]


def _pipeline(name: str | None):
    """The pipeline ``name`` names, or the only one installed (the engine knows no pipeline by name)."""
    if name is not None:
        return find_pipeline(name)
    installed = loaded_pipelines()
    if len(installed) != 1:
        raise ServedRunError(
            f"{len(installed)} pipelines are installed ({', '.join(sorted(installed))}); give configurable.pipeline"
        )
    return next(iter(installed.values()))


class _Runtime:
    """What a node reads of LangGraph's runtime: the run context, fixed here per run (the server's client
    sends only the thread's config)."""

    def __init__(self, context: RunContext) -> None:
        self.context = context


def _given(run: RunContext, node):
    def step(state: RunState) -> dict:
        return node(state, _Runtime(run))

    step.__name__ = node.__name__
    return step


def make_graph(config: dict | None = None):
    """The graph factory ``langgraph.json`` names: the pipeline's graph for the run in ``config``, uncompiled
    checkpointer left to the server."""
    configurable = dict((config or {}).get("configurable") or {})
    spec = _pipeline(configurable.get("pipeline"))
    run = run_context(spec, configurable)
    if run.options.get("llm") == "1":
        raise ServedRunError("runs with the model (llm=1) are started with `pipeline run --llm` for now")

    def start(state: RunState) -> dict:
        if state.phases:  # the thread's state is under way: nothing to fill
            return {}
        return {
            "head_commit": run.base_commit,
            "phases": [PhaseReport(phase=p.name, title=p.title) for p in spec.phases if p.name in run.phases],
        }

    def make(phase, role: str, last: bool):
        return _given(run, _node(phase, role, _PerStep(spec, role), 1, last, None, None))

    graph = StateGraph(RunState)
    graph.add_node("start", start)
    graph.add_edge(START, "start")
    wire(graph, spec, run.phases, make, review=run.options.get("review") == "1", first="start")
    return graph.compile()
