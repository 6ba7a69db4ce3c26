"""Pipelines are data: a second pipeline runs on the unchanged engine."""

from __future__ import annotations

import pytest

from agent_pipelines.engine.runs import resume_run, start_run
from agent_pipelines.engine.spec import Phase, PipelineSpec
from tests.conftest import cli, git, make_repo
from tests.fixture_pipelines import whitespace

PLUGIN = {"PIPELINE_PLUGINS": "tests.fixture_pipelines.whitespace:PIPELINE"}


def test_docker_optimization_declares_five_phases_in_working_order(docker_pipeline):
    assert docker_pipeline.phase_names == ["analysis", "dockerfiles", "compose", "build", "deploy"]
    assert docker_pipeline.phase("analysis").agents == ("analyst", "planner", "architect", "ops")


def test_a_phase_naming_an_unknown_agent_is_refused():
    with pytest.raises(ValueError, match="unknown agents"):
        PipelineSpec(name="x", description="", phases=(Phase("a", "A", ("wizard",)),), domain=lambda run: None)


def test_pipeline_pipelines_lists_installed_and_plugged_in_pipelines():
    result = cli("pipelines", env={**PLUGIN, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "docker-optimization" in result.stdout
    assert "text-hygiene" in result.stdout


def test_a_second_pipeline_runs_end_to_end_on_the_same_engine(tmp_path, reports):
    repo = make_repo(tmp_path / "repo", {"a.txt": "one  \ntwo\n", "b.txt": "clean\n", "c.md": "x  \n"})
    record = start_run(whitespace.PIPELINE, repo, reports)
    assert record.status == "completed"
    assert [p.status for p in record.phases] == ["completed", "completed"]
    assert git(repo, "show", f"{record.run.branch}:a.txt") == "one\ntwo"
    log = git(repo, "log", "--format=%(trailers:key=Pipeline-Task,valueonly)", f"main..{record.run.branch}")
    assert log.split() == [record.plan.tasks[0].id]
    assert (repo / "a.txt").read_text() == "one  \ntwo\n"  # the user's checkout is untouched


def test_a_fix_that_writes_nothing_is_a_failed_task_not_a_success(tmp_path, reports):
    repo = make_repo(tmp_path / "repo", {"same.noop.txt": "x  \n"})
    record = start_run(whitespace.PIPELINE, repo, reports)
    [change] = record.changes
    assert change.status.value == "failed"
    assert change.reason == "the fix produced no change"
    assert record.phase("fix").status == "failed"
    assert git(repo, "rev-list", "--count", f"main..{record.run.branch}") == "0"


def test_agents_and_domain_are_closed_when_a_node_raises(tmp_path, reports, monkeypatch):
    from agent_pipelines.agents.base import Agent

    opened = []
    original = Agent.__enter__

    def spy(self):
        opened.append(self)
        return original(self)

    monkeypatch.setattr(Agent, "__enter__", spy)
    whitespace.CLOSED.clear()
    repo = make_repo(tmp_path / "repo", {"a.txt": "BOOM  \n"})
    record = start_run(whitespace.PIPELINE, repo, reports)
    assert record.status == "failed"
    assert "analysis exploded" in record.error
    assert opened and all(agent.closed for agent in opened)
    assert whitespace.CLOSED == ["domain"]


def test_a_run_that_failed_at_a_node_resumes_from_that_node(tmp_path, reports, monkeypatch):
    repo = make_repo(tmp_path / "repo", {"a.txt": "one  \n"})
    monkeypatch.setenv("PIPELINE_CRASH_AT", "fix.reviewer")
    record = start_run(whitespace.PIPELINE, repo, reports)
    assert record.status == "failed"
    assert "injected crash at fix.reviewer" in record.error
    monkeypatch.delenv("PIPELINE_CRASH_AT")

    again = resume_run({"text-hygiene": whitespace.PIPELINE}, reports, record.run.run_id)

    assert again.status == "completed"
    assert again.invocations[1].nodes == ["fix.reviewer", "fix.ops"]
    assert git(repo, "rev-list", "--count", f"main..{record.run.branch}") == "1"


def test_pipeline_list_says_how_many_tasks_of_a_completed_run_failed(tmp_path, reports):
    repo = make_repo(tmp_path / "repo", {"a.txt": "one  \n", "same.noop.txt": "x  \n"})
    record = start_run(whitespace.PIPELINE, repo, reports)
    assert record.status == "completed" and [c.status.value for c in record.changes] == ["committed", "failed"]
    listed = cli("list", "--reports-dir", str(reports), env={**PLUGIN, "COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if line.startswith(record.run.run_id)]
    assert "completed, 1 failed" in row
