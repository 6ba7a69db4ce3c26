"""Crash safety as a measured property: a crash anywhere, then `pipeline resume`, gives the run an
uninterrupted one would have given; Ctrl-C stops resumably; the repository lock never sticks.

The crash matrix is the one `python -m bench.reliability` reports: every node of the
docker-optimization graph, before its work and after it (before its checkpoint), the run SIGKILLing
itself there (``PIPELINE_CRASH_AT=<node>:<moment>``, ``PIPELINE_CRASH_MODE=kill``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from agent_pipelines.engine.runs import list_records
from bench.reliability import (
    branch_problems,
    checkout_state,
    crash_inside_git,
    crash_matrix,
    crash_points,
    node_points,
    reference_run,
    state_diff,
    user_edits,
)
from tests.conftest import ROOT, cli

WORKERS = max(1, min(4, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory) -> str:
    """The branch tree of one uninterrupted run on the example: what every recovered run must end with."""
    return reference_run(tmp_path_factory.mktemp("reference"))


def report(results) -> str:
    return "\n".join(
        f"{r.point} ({r.mode}): crash exit {r.crashed}, resume exit {r.resumed}: {'; '.join(r.problems)}"
        for r in results
        if not r.recovered
    )


def test_the_matrix_covers_every_node_of_the_graph_before_and_after(docker_pipeline):
    nodes = [phase.node(agent) for phase in docker_pipeline.phases for agent in phase.agents]
    assert node_points() == nodes and len(nodes) == 16
    assert crash_points() == [f"{n}:{m}" for n in nodes for m in ("before", "after")]


# One test per node (its before and after points), not one for the whole matrix: 16 tests a parallel
# run (pytest-xdist) spreads over its workers, where the matrix alone took ~9 minutes of one.
@pytest.mark.slow
@pytest.mark.parametrize("node", node_points())
def test_a_sigkill_before_or_after_any_node_is_recovered_by_resume(tmp_path, reference_tree, node):
    points = [p for p in crash_points() if p.rsplit(":", 1)[0] == node]
    results = crash_matrix(tmp_path, points, ("kill",), WORKERS, reference_tree)

    assert len(results) == 2
    assert [r for r in results if r.crashed != -signal.SIGKILL] == []
    assert all(r.recovered for r in results), report(results)


@pytest.mark.parametrize(
    "point",
    [
        "analysis.analyst:before",
        "analysis.planner:after",
        "dockerfiles.implementer:after",
        "dockerfiles.reviewer:before",
        "compose.reviewer:after",
        "deploy.ops:after",
    ],
)
@pytest.mark.slow
def test_an_exception_at_a_node_fails_the_run_and_resume_completes_it(tmp_path, reference_tree, point):
    [result] = crash_matrix(tmp_path, [point], ("raise",), 1, reference_tree)

    assert result.crashed == 1  # the run failed, the record says why
    assert result.recovered, report([result])


@pytest.mark.slow
def test_a_sigkill_inside_a_git_command_leaving_its_lock_files_is_recovered_by_resume(tmp_path, reference_tree):
    result = crash_inside_git(tmp_path, reference_tree)

    assert result.crashed == -signal.SIGKILL
    assert result.recovered, report([result])


def wait_for_node(reports, node: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        records = list_records(reports)
        if records and any(n.node == node for p in records[0].phases for n in p.nodes):
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.2)
    raise AssertionError(f"the run never finished {node}")


@pytest.mark.slow
def test_ctrl_c_mid_run_exits_130_marks_the_run_interrupted_releases_the_lock_and_resume_completes_it(
    example_repo, reports, tmp_path, reference_tree
):
    user_edits(example_repo)
    before = checkout_state(example_repo)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_PAUSE_AT": "compose.implementer:60"}
    env.pop("DOCKER_HOST", None)
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
    try:
        wait_for_node(reports, "dockerfiles.ops", proc)
        [record] = list_records(reports)
        # While it runs, a second run on the same repository is refused (the live holder, not a fake pid).
        second = cli(
            "run",
            "docker-optimization",
            "--repo",
            str(example_repo),
            "--reports-dir",
            str(tmp_path / "other"),
            "-q",
            "--builds",
            "off",
        )
        assert second.returncode == 2
        assert f"run {record.run.run_id} (pid {proc.pid}) is active" in second.stderr
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 130, stderr
    [record] = list_records(reports)
    assert f"`pipeline resume {record.run.run_id}` continues it" in stderr and "Traceback" not in stderr
    assert record.status == "interrupted" and record.invocations[0].outcome == "interrupted"
    assert not (example_repo / ".git" / "pipeline.lock").exists()

    resumed = cli("resume", record.run.run_id, "--reports-dir", str(reports), "-q")

    assert resumed.returncode == 0, resumed.stderr
    assert branch_problems(example_repo, reports, record.run.run_id, reference_tree) == []
    assert state_diff(before, checkout_state(example_repo)) == []


@pytest.mark.parametrize(
    "content", ["not json {", "", "[1, 2]", '{"pid": "abc"}'], ids=["garbage", "empty", "list", "bad-pid"]
)
def test_a_lock_file_that_is_not_a_lock_record_is_taken_over_not_stuck(example_repo, tmp_path, content):
    lock = example_repo / ".git" / "pipeline.lock"
    lock.write_text(content)

    result = cli(
        "run",
        "docker-optimization",
        "--repo",
        str(example_repo),
        "--reports-dir",
        str(tmp_path / "r"),
        "-q",
        "--builds",
        "off",
    )

    assert result.returncode == 0, result.stderr
    assert not lock.exists()


def test_a_lock_left_by_a_killed_run_whose_pid_was_reused_is_taken_over(example_repo, tmp_path):
    """The flock died with its run; that the pid now names another live process must not keep the lock."""
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        (example_repo / ".git" / "pipeline.lock").write_text(
            json.dumps({"pid": unrelated.pid, "run_id": "killed-run", "flock": True})
        )
        result = cli(
            "run",
            "docker-optimization",
            "--repo",
            str(example_repo),
            "--reports-dir",
            str(tmp_path / "r"),
            "-q",
            "--builds",
            "off",
        )
        assert result.returncode == 0, result.stderr
    finally:
        unrelated.kill()
        unrelated.wait()


RACER = """
import json, sys, time
from pathlib import Path
from agent_pipelines.engine.lock import Locked, RepoLock
if sys.argv[2] == "slow":  # pause between creating the lock and writing its record: the racy window
    for name in ("dump", "dumps"):
        real = getattr(json, name)
        setattr(json, name, lambda *a, _real=real, **k: (time.sleep(3), _real(*a, **k))[1])
try:
    RepoLock(Path(sys.argv[1]), sys.argv[2]).acquire()
    print("won", flush=True)
except Locked as err:
    print("refused", err, flush=True)
time.sleep(1)
"""


def racer(lock, kind: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RACER, str(lock), kind],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("stale", [False, True], ids=["no-lock", "stale-lock"])
def test_a_run_starting_while_another_is_still_writing_its_lock_is_refused(tmp_path, stale):
    """Taking the lock used to be create-then-write: a starter that read the still-empty file took it as
    garbage, deleted it and took the lock too. Two runs, one repository."""
    lock = tmp_path / "pipeline.lock"
    if stale:
        lock.write_text(json.dumps({"pid": 2**22 + 7, "run_id": "dead"}))
    slow = racer(lock, "slow")
    deadline = time.time() + 30
    while time.time() < deadline and not (lock.exists() and lock.stat().st_size == 0):
        time.sleep(0.01)  # the slow starter has created (or truncated) the file, and is not done writing
    fast = racer(lock, "fast")

    assert fast.communicate(timeout=60)[0].startswith("refused")
    assert slow.communicate(timeout=60)[0].strip() == "won"


@pytest.mark.slow
def test_a_sigkill_between_the_run_record_and_its_worktree_is_listed_and_resumed(tmp_path, reference_tree):
    """The record is written before the worktree and branch exist: a run killed in between is listed
    (`pipeline list`), and resume makes its branch at the base commit and runs it from the start."""
    from agent_pipelines.engine.runs import START_POINT
    from bench.reliability import crash_and_resume

    result = crash_and_resume(tmp_path, f"{START_POINT}:before", "kill", reference_tree)
    assert result.crashed == -signal.SIGKILL and result.recovered, report([result])
