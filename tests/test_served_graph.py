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
