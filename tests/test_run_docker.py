"""`pipeline run docker-optimization` end to end on the example repo: commits, reports, resume."""

from __future__ import annotations

import json

import jsonschema
import pytest

from agent_pipelines.engine.artifacts import RunRecord
from agent_pipelines.engine.runs import list_records, resume_run, start_run
from tests.conftest import EXAMPLE, child_processes, cli, git, open_fds, snapshot


def trailers(repo, branch, key="Pipeline-Task"):
    out = git(repo, "log", f"--format=%(trailers:key={key},valueonly)", f"main..{branch}")
    return [line for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One completed run on a fresh copy of the example: (repo, reports, record), for tests that only read it."""
    from agent_pipelines.engine.runs import materialize_example
    from agent_pipelines.pipelines.docker_optimization import PIPELINE

    base = tmp_path_factory.mktemp("full-run")
    repo = materialize_example(EXAMPLE, base / "example")
    reports = base / "reports"
    reports.mkdir()
    return repo, reports, start_run(PIPELINE, repo, reports)


def test_a_full_run_commits_each_task_with_trailers_and_writes_every_report(full_run):
    example_repo, reports, record = full_run

    assert record.status == "completed", record.error
    committed = [c for c in record.changes if c.status.value == "committed"]
    assert len(committed) >= 5
    tasks = trailers(example_repo, record.run.branch)
    assert sorted(tasks) == sorted(c.task_id for c in committed)
    assert set(trailers(example_repo, record.run.branch, "Pipeline-Run")) == {record.run.run_id}
    assert set(trailers(example_repo, record.run.branch, "Pipeline-Phase")) == {
        "dockerfiles",
        "compose",
        "build",
        "deploy",
    }
    run_dir = reports / record.run.run_id
    assert sorted(p.name for p in run_dir.glob("*.md")) == [
        "1-analysis.md",
        "2-dockerfiles.md",
        "3-compose.md",
        "4-build.md",
        "5-deploy.md",
        "summary.md",
    ]
    summary = (run_dir / "summary.md").read_text()
    for change in committed:
        assert change.commit[:10] in summary
    compose_report = (run_dir / "3-compose.md").read_text()
    assert "docker-compose.yml" in compose_report and "accepted" in compose_report


def test_run_json_is_valid_against_the_schema_the_models_export(full_run):
    _, reports, record = full_run
    document = json.loads((reports / record.run.run_id / "run.json").read_text())
    jsonschema.validate(document, RunRecord.model_json_schema())
    assert RunRecord.model_validate(document) == record


def test_the_users_checkout_index_and_untracked_files_are_byte_identical_after_a_run(
    example_repo, reports, docker_pipeline
):
    (example_repo / "services/api/Dockerfile").write_text("FROM python:3.12-slim\n# my work in progress\n")
    (example_repo / "notes.txt").write_text("untracked notes\n")
    (example_repo / "services/web/src/server.js").write_text("// staged edit\n")
    git(example_repo, "add", "services/web/src/server.js")
    before_files, before_status = snapshot(example_repo), git(example_repo, "status", "--porcelain")
    before_head, before_index = git(example_repo, "rev-parse", "HEAD"), git(example_repo, "ls-files", "-s")

    record = start_run(docker_pipeline, example_repo, reports)

    assert record.status == "completed"
    assert snapshot(example_repo) == before_files
    assert git(example_repo, "status", "--porcelain") == before_status
    assert git(example_repo, "rev-parse", "HEAD") == before_head
    assert git(example_repo, "ls-files", "-s") == before_index
    assert git(example_repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_no_git_process_or_file_descriptor_outlives_a_run(example_repo, reports, docker_pipeline):
    start_run(docker_pipeline, example_repo, reports)  # warm imports and caches
    fds_before = open_fds()
    record = start_run(docker_pipeline, example_repo, reports)
    assert record.status == "completed"
    assert child_processes("git") == []
    assert open_fds() - fds_before == set()


@pytest.mark.slow
def test_sigkill_in_phase_3_then_resume_gives_the_same_tree_and_no_duplicate_commits(
    example_repo, reports, docker_pipeline
):
    reference = start_run(docker_pipeline, example_repo, reports)
    killed = cli(
        "run",
        "docker-optimization",
        "--repo",
        str(example_repo),
        "--reports-dir",
        str(reports),
        "-q",
        env={"PIPELINE_CRASH_AT": "compose.implementer:after", "PIPELINE_CRASH_MODE": "kill"},
    )
    assert killed.returncode == -9, killed.stderr
    [run_id] = [r.run.run_id for r in list_records(reports) if r.run.run_id != reference.run.run_id]
    assert json.loads((reports / run_id / "run.json").read_text())["status"] == "running"

    resumed = cli("resume", run_id, "--reports-dir", str(reports), "-q")

    assert resumed.returncode == 0, resumed.stderr
    record = RunRecord.model_validate_json((reports / run_id / "run.json").read_text())
    assert record.status == "completed"
    assert record.invocations[1].nodes[0] == "compose.implementer"
    branch = record.run.branch
    assert git(example_repo, "rev-parse", f"{branch}^{{tree}}") == git(
        example_repo, "rev-parse", f"{reference.run.branch}^{{tree}}"
    )
    tasks = trailers(example_repo, branch)
    assert len(tasks) == len(set(tasks)) == len(trailers(example_repo, reference.run.branch))
    compose_change = next(c for c in record.changes if c.phase == "compose")
    assert "recovered from an interrupted attempt" in compose_change.notes


@pytest.mark.slow
def test_resume_from_a_phase_reruns_it_and_later_phases_and_replaces_their_commits(
    example_repo, reports, docker_pipeline
):
    first = start_run(docker_pipeline, example_repo, reports)
    tree = git(example_repo, "rev-parse", f"{first.run.branch}^{{tree}}")
    phases_before = trailers(example_repo, first.run.branch, "Pipeline-Phase")

    record = resume_run({"docker-optimization": docker_pipeline}, reports, first.run.run_id, phase="compose")

    assert record.status == "completed"
    assert {n.split(".")[0] for n in record.invocations[1].nodes} == {"compose", "build", "deploy"}
    assert record.invocations[1].from_phase == "compose"
    assert git(example_repo, "rev-parse", f"{record.run.branch}^{{tree}}") == tree
    phases = trailers(example_repo, record.run.branch, "Pipeline-Phase")
    assert phases == phases_before and phases.count("compose") >= 1
    assert "| compose.implementer | 2 |" in (reports / first.run.run_id / "3-compose.md").read_text()
