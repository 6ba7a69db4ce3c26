"""apply merges a run into the user's branch only when it's clean; rollback removes a run's commits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from agent_pipelines.engine.runs import list_records, start_run
from tests.conftest import ROOT, cli, git


@pytest.mark.slow
def test_apply_merges_the_run_into_a_clean_checkout(example_repo, reports, docker_pipeline):
    record = start_run(docker_pipeline, example_repo, reports)
    result = cli("apply", record.run.run_id, "--reports-dir", str(reports))
    assert result.returncode == 0, result.stderr
    assert "merged pipeline/" in result.stderr
    assert git(example_repo, "rev-parse", "HEAD^{tree}") == git(
        example_repo, "rev-parse", f"{record.run.branch}^{{tree}}"
    )
    assert (example_repo / ".dockerignore").exists()


def test_apply_refuses_a_dirty_checkout_and_says_what_to_run(example_repo, reports, docker_pipeline):
    record = start_run(docker_pipeline, example_repo, reports)
    (example_repo / "README.md").write_text("my edit\n")
    head = git(example_repo, "rev-parse", "HEAD")
    result = cli("apply", record.run.run_id, "--reports-dir", str(reports))
    assert result.returncode == 2
    assert "uncommitted changes" in result.stderr and f"merge --no-ff {record.run.branch}" in result.stderr
    assert git(example_repo, "rev-parse", "HEAD") == head
    assert (example_repo / "README.md").read_text() == "my edit\n"


def test_rollback_of_one_phase_removes_its_commits_and_later_ones(example_repo, reports, docker_pipeline):
    record = start_run(docker_pipeline, example_repo, reports)
    result = cli("rollback", record.run.run_id, "--phase", "compose", "--reports-dir", str(reports))
    assert result.returncode == 0, result.stderr
    phases = git(example_repo, "log", "--format=%(trailers:key=Pipeline-Phase,valueonly)", f"main..{record.run.branch}")
    assert "compose" not in phases and "dockerfiles" in phases
    saved = json.loads((reports / record.run.run_id / "run.json").read_text())
    assert {c["status"] for c in saved["changes"] if c["phase"] == "compose"} == {"reverted"}


def test_rollback_of_the_whole_run_returns_the_branch_to_its_base(example_repo, reports, docker_pipeline):
    record = start_run(docker_pipeline, example_repo, reports)
    assert cli("rollback", record.run.run_id, "--reports-dir", str(reports)).returncode == 0
    assert git(example_repo, "rev-parse", record.run.branch) == record.run.base_commit


def test_a_second_run_on_a_repository_with_an_active_run_is_refused(example_repo, tmp_path):
    holder = subprocess.Popen(["sleep", "30"])
    try:
        lock = example_repo / ".git" / "pipeline.lock"
        lock.write_text(json.dumps({"pid": holder.pid, "run_id": "other-run"}))
        result = cli("run", "docker-optimization", "--repo", str(example_repo), "--reports-dir", str(tmp_path))
        assert result.returncode == 2
        assert "run other-run (pid" in result.stderr and "is active" in result.stderr
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_lock_left_by_a_dead_run_does_not_block(example_repo, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (example_repo / ".git" / "pipeline.lock").write_text(json.dumps({"pid": dead.pid, "run_id": "crashed"}))
    result = cli("run", "docker-optimization", "--repo", str(example_repo), "--reports-dir", str(tmp_path), "-q")
    assert result.returncode == 0, result.stderr
    assert not (example_repo / ".git" / "pipeline.lock").exists()


@pytest.mark.slow
def test_sigterm_stops_the_run_resumably(example_repo, reports):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_PAUSE_AT": "compose.implementer:30"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent_pipelines.engine.cli",
            "run",
            "docker-optimization",
            "--repo",
            str(example_repo),
            "--reports-dir",
            str(reports),
            "-q",
            "--builds",
            "off",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        records = list_records(reports)
        if records and any(n.node == "dockerfiles.ops" for p in records[0].phases for n in p.nodes):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    [record] = list_records(reports)
    assert record.status == "interrupted"
    assert not (example_repo / ".git" / "pipeline.lock").exists()
    resumed = cli("resume", record.run.run_id, "--reports-dir", str(reports), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert list_records(reports)[0].status == "completed"
