"""The checkpoints are the run's one source of state: rollback writes through them, and resume, show and the
summary all read what it wrote; a resume-time option reaches the nodes; a run of an older layout is refused."""

from __future__ import annotations

import json

from agent_pipelines.engine.artifacts import ChangeStatus, RunRecord, RunState
from agent_pipelines.engine.checkpoint import Checkpoints
from agent_pipelines.engine.runs import resume_run, start_run
from tests.conftest import cli, git
from tests.test_summary_truth import assert_summary_is_the_branch, table_rows

LATER = ("compose", "build", "deploy")


def statuses(record: RunRecord) -> dict[str, set[str]]:
    return {p: {c.status.value for c in record.changes if c.phase == p} for p in record.run.phases}


def test_a_rolled_back_phase_stays_rolled_back_after_resume(example_repo, reports, docker_pipeline, tmp_path):
    record = start_run(docker_pipeline, example_repo, reports)
    run_id, run_dir = record.run.run_id, reports / record.run.run_id
    assert all(statuses(record)[p] == {"committed"} for p in LATER)

    rolled = cli("rollback", run_id, "--phase", "compose", "--reports-dir", str(reports))
    assert rolled.returncode == 0, rolled.stderr
    resumed = cli("resume", run_id, "--reports-dir", str(reports), "--quiet")
    assert resumed.returncode == 0, resumed.stderr

    saved = RunRecord.model_validate_json((run_dir / "run.json").read_text())
    assert saved.invocations[-1].outcome == "nothing to do: the run had finished"
    assert saved.head_commit == git(example_repo, "rev-parse", record.run.branch)
    assert statuses(saved)["dockerfiles"] == {"committed"}
    assert all(statuses(saved)[p] == {"reverted"} for p in LATER)
    assert {c.reason for c in saved.changes if c.phase in LATER} == {"rolled back by `pipeline rollback`"}
    # show reads the same record; the summary counts what run.json says and what the branch head holds.
    shown = json.loads(cli("show", run_id, "--format", "json", "--reports-dir", str(reports)).stdout)
    assert {c["status"] for c in shown["changes"] if c["phase"] in LATER} == {"reverted"}
    summary = (run_dir / "summary.md").read_text()
    for title, _status, _agents, kept, reverted, declined, failed, _report in table_rows(summary, "Phases"):
        phase = next(p.phase for p in saved.phases if p.title == title)
        counts = [
            sum(c.phase == phase and c.status is s for c in saved.changes)
            for s in (ChangeStatus.committed, ChangeStatus.reverted, ChangeStatus.declined, ChangeStatus.failed)
        ]
        assert [int(kept), int(reverted), int(declined), int(failed)] == counts
    assert_summary_is_the_branch(example_repo, reports, tmp_path)


def test_a_rollback_of_a_failed_run_lets_it_resume_where_it_stopped(
    example_repo, reports, docker_pipeline, monkeypatch
):
    monkeypatch.setenv("PIPELINE_CRASH_AT", "build.reviewer")
    record = start_run(docker_pipeline, example_repo, reports)
    assert record.status == "failed"
    monkeypatch.delenv("PIPELINE_CRASH_AT")
    rolled = cli("rollback", record.run.run_id, "--phase", "compose", "--reports-dir", str(reports))
    assert rolled.returncode == 0, rolled.stderr

    again = resume_run({docker_pipeline.name: docker_pipeline}, reports, record.run.run_id)

    assert again.status == "completed"
    assert again.invocations[-1].nodes[:2] == ["build.reviewer", "build.ops"]
    assert statuses(again)["compose"] == statuses(again)["build"] == {"reverted"}
    assert statuses(again)["deploy"] == {"committed"}
    phases = git(example_repo, "log", "--format=%(trailers:key=Pipeline-Phase,valueonly)", f"main..{record.run.branch}")
    assert "compose" not in phases and "build" not in phases and "deploy" in phases


def test_an_option_given_to_resume_reaches_the_nodes(example_repo, reports, docker_pipeline, monkeypatch):
    monkeypatch.setenv("PIPELINE_CRASH_AT", "dockerfiles.implementer")
    record = start_run(docker_pipeline, example_repo, reports, options={"unsafe_fixes": "0"})
    monkeypatch.delenv("PIPELINE_CRASH_AT")
    unsafe = {t.id for t in record.plan.for_phase("dockerfiles") if t.applicability.value == "unsafe"}
    assert unsafe and not record.changes

    again = resume_run(
        {docker_pipeline.name: docker_pipeline}, reports, record.run.run_id, options={"unsafe_fixes": "1"}
    )

    assert again.run.options["unsafe_fixes"] == "1"
    assert unsafe <= {c.task_id for c in again.changes if c.phase == "dockerfiles"}
    # The run's context is the graph's run context, not a channel: the checkpoints hold the run's state alone.
    with Checkpoints(reports / record.run.run_id / "state.sqlite") as checkpoints:
        saved = checkpoints.saver.get_tuple({"configurable": {"thread_id": record.run.run_id}})
    channels = {key for key in saved.checkpoint["channel_values"] if not key.startswith(("branch:", "__"))}
    assert channels == set(RunState.model_fields)


def test_a_run_recorded_by_an_older_layout_is_refused_in_one_line(example_repo, reports, docker_pipeline):
    record = start_run(docker_pipeline, example_repo, reports)
    run_json = reports / record.run.run_id / "run.json"
    old = json.loads(run_json.read_text())
    old["schema_version"] = 1  # what the previous layout (run and head as state keys) wrote
    run_json.write_text(json.dumps(old))

    for command in (["resume", record.run.run_id], ["rollback", record.run.run_id, "--phase", "compose"]):
        done = cli(*command, "--reports-dir", str(reports))
        assert done.returncode == 2
        assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
        assert "recorded by another version of the pipeline" in done.stderr and "start a new run" in done.stderr
    assert cli("show", record.run.run_id, "--reports-dir", str(reports)).returncode == 0
