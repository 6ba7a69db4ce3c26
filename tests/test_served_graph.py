"""The graph `langgraph.json` names, loaded the way a LangGraph server loads it (the file path it gives) and run
in-process with a checkpointer, as the server would: approval at each phase boundary, then to the end.

What this can't test here: langgraph-cli's server itself (it needs network access or Docker); its HTTP API
drives the same graph with the same config.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent_pipelines.engine.checkpoint import serializer
from bench.reliability import example, reference_run, tree_of
from tests.conftest import ROOT


def load_factory():
    """What `langgraph dev/up` does with the "graphs" entry: import the file by its path, take the attribute."""
    config = json.loads((ROOT / "langgraph.json").read_text())
    path, _, attribute = config["graphs"]["docker-optimization"].partition(":")
    spec = importlib.util.spec_from_file_location("served_graph", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute), module


@pytest.mark.slow
def test_the_served_graph_pauses_at_each_phase_boundary_and_ends_like_pipeline_run(tmp_path):
    make_graph, module = load_factory()
    repo = example(tmp_path / "repo")
    run_config = {"configurable": {"thread_id": "served-1", "repo": str(repo), "options": {"builds": "off"}}}
    graph = make_graph(run_config)
    graph.checkpointer = InMemorySaver(serde=serializer())  # the server sets its own checkpointer the same way
    from agent_pipelines.pipelines.docker_optimization import PIPELINE

    boundaries = module.phase_ends(PIPELINE)
    graph.invoke({}, run_config, interrupt_after=boundaries)
    paused = graph.get_state(run_config)
    assert paused.next == ("dockerfiles.implementer",)  # the analysis is done; the person approves what follows
    assert [p.status for p in paused.values["phases"]][:2] == ["completed", "pending"]

    for _ in PIPELINE.phase_names[1:]:  # approve each phase: continue the thread with no input
        graph.invoke(None, run_config, interrupt_after=boundaries)
    done = graph.get_state(run_config)
    assert done.next == ()
    assert [p.status for p in done.values["phases"]] == ["completed"] * len(PIPELINE.phase_names)
    assert tree_of(repo, "pipeline/served-1") == reference_run(tmp_path / "reference")


def test_a_served_run_without_a_repository_is_refused_with_the_reason(tmp_path):
    make_graph, module = load_factory()
    with pytest.raises(module.ServedRunError, match='needs "repo"'):
        make_graph({"configurable": {"thread_id": "served-2"}})


def test_a_served_run_with_review_pauses_in_interrupt_and_resumes_with_a_command(tmp_path, monkeypatch):
    """`"review": "1"` in the run's options: the served graph pauses at the phase's approval (LangGraph interrupt);
    `Command(resume=...)` (the server's `command={"resume": ...}`) approves and rejects, as `pipeline approve/reject`.
    Each step gets a graph fresh from the factory, as the server builds one per run on the thread."""
    from langgraph.types import Command

    from tests.conftest import git, make_repo

    monkeypatch.setenv("PIPELINE_PLUGINS", "tests.fixture_pipelines.whitespace:PIPELINE")
    make_graph, _ = load_factory()
    repo = make_repo(tmp_path / "repo", {"a.txt": "a  \n", "b.txt": "b  \n"})
    config = {
        "configurable": {
            "thread_id": "served-review",
            "repo": str(repo),
            "pipeline": "text-hygiene",
            "options": {"review": "1"},
        }
    }
    saver = InMemorySaver(serde=serializer())  # the server's checkpointer, one for the thread's every step

    def graph():
        built = make_graph(config)
        built.checkpointer = saver
        return built

    graph().invoke({}, config)
    paused = graph().get_state(config)
    [waiting] = paused.interrupts
    assert paused.next == ("fix.approval",) and waiting.value["phase"] == "fix"
    tasks = {c.files[0]: c.task_id for c in paused.values["changes"]}
    assert sorted(waiting.value["tasks"]) == sorted(tasks.values())
    assert git(repo, "rev-list", "--count", "main..pipeline/served-review") == "2"  # the commits stand meanwhile

    decision = {"approve": [tasks["a.txt"]], "reject": {tasks["b.txt"]: "b.txt is generated"}}
    graph().invoke(Command(resume=decision), config)
    done = graph().get_state(config)
    assert done.next == () and not done.interrupts
    change = {c.files[0]: c for c in done.values["changes"]}
    assert (change["a.txt"].status.value, change["b.txt"].status.value) == ("committed", "reverted")
    assert change["b.txt"].reason == "rejected in review: b.txt is generated"
    assert git(repo, "diff", "--name-only", "main", "pipeline/served-review") == "a.txt"
