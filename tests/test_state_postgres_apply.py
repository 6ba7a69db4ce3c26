"""`pipeline apply`, `rollback`, `prune`, `review` and `approve` on a run whose state is in a real PostgreSQL
(`--state`), from another clone: a CI runner ran the pipeline and pushed the run's branch, then went away; a person works on the run from
a laptop (another clone, another reports directory), with nothing shared but the database and the git remote.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.reliability import example, tree_of
from tests.conftest import cli, git, make_repo
from tests.test_state_postgres import rows, run

pytestmark = pytest.mark.slow  # end-to-end runs of the pipeline


def ci_run(tmp_path: Path, state_url: str) -> tuple[Path, str]:
    """A finished run made on a CI runner's clone, its branch pushed, the runner's clone removed: (origin, run id)."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(example(tmp_path / "seed")), str(origin)], check=True)
    runner = tmp_path / "ci-runner"
    subprocess.run(["git", "clone", "--quiet", str(origin), str(runner)], check=True)
    done = run(runner, tmp_path / "ci-reports", state_url)
    assert done.returncode == 0, done.stderr[-2000:]
    [row] = rows(state_url, "SELECT run_id FROM pipeline_runs")
    git(runner, "push", "--quiet", "origin", f"pipeline/{row['run_id']}")
    shutil.rmtree(runner)  # the job's workspace is gone; the branch and the state are not
    shutil.rmtree(tmp_path / "ci-reports")
    return origin, row["run_id"]


def clone(origin: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", str(origin), str(dest)], check=True)
    return dest


def test_a_run_from_ci_is_applied_from_a_laptop_clone(tmp_path, state_url):
    origin, run_id = ci_run(tmp_path, state_url)
    laptop, reports = clone(origin, tmp_path / "laptop"), tmp_path / "laptop-reports"
    main_before = git(laptop, "rev-parse", "main")

    # the run's repository was the runner's: without --repo, one line says what to give
    nowhere = cli("apply", run_id, "--reports-dir", str(reports), "--state", state_url)
    assert nowhere.returncode == 2, nowhere.stderr
    assert nowhere.stderr.count("\n") == 1 and "is not on this machine; give --repo" in nowhere.stderr

    applied = cli("apply", run_id, "--reports-dir", str(reports), "--state", state_url, "--repo", str(laptop))
    assert applied.returncode == 0, applied.stderr
    assert f"merged pipeline/{run_id} into main" in applied.stderr
    branch = f"pipeline/{run_id}"  # fetched from origin into the laptop's clone
    assert git(laptop, "rev-parse", "HEAD^1") == main_before
    assert git(laptop, "rev-parse", "HEAD^2") == git(origin, "rev-parse", branch)
    assert tree_of(laptop, "HEAD") == tree_of(origin, branch)
    assert git(laptop, "log", "-1", "--format=%s") == f"Merge pipeline run {run_id}"
    assert git(laptop, "status", "--porcelain") == ""
    # apply changes no run state: the record in the database is as CI left it
    [row] = rows(state_url, "SELECT status, record FROM pipeline_runs")
    assert row["status"] == "completed" and row["record"]["run"]["repo"].endswith("ci-runner")

    again = cli("apply", run_id, "--reports-dir", str(reports), "--state", state_url, "--repo", str(laptop))
    assert again.returncode == 0 and "is already merged into main" in again.stderr


def test_a_run_from_ci_is_rolled_back_and_pruned_from_a_laptop_clone(tmp_path, state_url):
    origin, run_id = ci_run(tmp_path, state_url)
    laptop, reports = clone(origin, tmp_path / "laptop"), tmp_path / "laptop-reports"
    branch = f"pipeline/{run_id}"
    here = ["--reports-dir", str(reports), "--state", state_url]

    wrong = cli("rollback", run_id, "--phase", "nosuch", *here, "--repo", str(laptop))
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "has no phase nosuch" in wrong.stderr
    assert git(laptop, "branch", "--list", branch) == ""  # refused before anything was fetched
    assert not reports.exists()

    before = json.loads(cli("show", run_id, "--format", "json", *here).stdout)
    kept_before = {c["task_id"] for c in before["changes"] if c["status"] == "committed"}
    later = {"compose", "build", "deploy"}
    assert {c["phase"] for c in before["changes"] if c["task_id"] in kept_before} & later, "nothing to roll back"

    rolled = cli("rollback", run_id, "--phase", "compose", *here, "--repo", str(laptop))
    assert rolled.returncode == 0, rolled.stderr
    assert f"from {branch}; it now ends at" in rolled.stderr

    # the branch: no commit of compose or later is left on it
    phases = git(laptop, "log", "--format=%(trailers:key=Pipeline-Phase,valueonly,separator=)", branch).split()
    assert phases and not set(phases) & later
    head = git(laptop, "rev-parse", branch)
    # the record, in the database and as `show --state` gives it: the same head, those changes reverted
    record = json.loads(cli("show", run_id, "--format", "json", *here).stdout)
    [row] = rows(state_url, "SELECT status, record FROM pipeline_runs")
    assert row["record"] == record and row["status"] == record["status"] == "completed"
    assert record["head_commit"] == head and record["run"]["repo"] == str(laptop.resolve())
    for change in record["changes"]:
        if change["task_id"] in kept_before and change["phase"] in later:
            assert (change["status"], change["reason"]) == ("reverted", "rolled back by `pipeline rollback`")
        elif change["task_id"] in kept_before:
            assert change["status"] == "committed"
    # the summary says the same, here and in the database's record
    summary = cli("summary", run_id, *here)
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout == (reports / run_id / "summary.md").read_text()
    assert f"- **Branch:** `{branch}` at `{head[:10]}` (worktree `{laptop.resolve()}/.git/pipeline-worktrees" in (
        summary.stdout
    )
    assert "rolled back by `pipeline rollback`" in summary.stdout

    # prune: the laptop's branch is not merged, so the run is kept; --force removes it here and in the database
    kept = cli("prune", run_id, *here)
    assert kept.returncode == 0 and f"kept {run_id}: branch {branch} has" in kept.stderr
    gone = cli("prune", run_id, "--force", *here)
    assert gone.returncode == 0, gone.stderr
    assert "its record and checkpoints in the state database" in gone.stderr
    assert git(laptop, "branch", "--list", branch) == "" and not (reports / run_id).exists()
    assert rows(state_url, "SELECT run_id FROM pipeline_runs") == []
    assert rows(state_url, "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", run_id)[0]["n"] == 0
    assert run_id not in cli("list", *here).stdout


@pytest.mark.parametrize(
    "command", [["apply", "20261207-101500-ab12"], ["rollback", "20261207-101500-ab12"], ["prune"]]
)
def test_a_state_url_apply_rollback_or_prune_cant_use_is_one_line_exit_2_and_nothing_made(
    tmp_path, postgres_server, command
):
    reports = tmp_path / "reports"
    wrong = cli(*command, "--reports-dir", str(reports), "--state", "mysql://db/runs")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "postgresql://" in wrong.stderr
    url = f"postgresql://ci:hunter2@/nosuchdb?host={tmp_path}&connect_timeout=2"
    down = cli(*command, "--reports-dir", str(reports), env={"PIPELINE_STATE_URL": url})
    assert down.returncode == 2 and down.stderr.count("\n") == 1
    assert "can't reach the state database" in down.stderr and "hunter2" not in down.stderr
    assert not reports.exists()


def test_a_run_paused_for_review_in_ci_is_reviewed_and_approved_from_a_laptop_clone(tmp_path, state_url):
    plugin = {"PIPELINE_PLUGINS": "tests.fixture_pipelines.whitespace:PIPELINE", "PIPELINE_STATE_URL": state_url}
    origin = tmp_path / "origin.git"
    seed = make_repo(tmp_path / "seed", {"a.txt": "a  \n", "b.txt": "b  \n"})
    subprocess.run(["git", "clone", "--quiet", "--bare", str(seed), str(origin)], check=True)
    runner = clone(origin, tmp_path / "ci-runner")
    paused = cli(
        "run",
        "text-hygiene",
        "--repo",
        str(runner),
        "--reports-dir",
        str(tmp_path / "ci"),
        "--review",
        "-q",
        env=plugin,
    )
    assert paused.returncode == 5, paused.stderr  # awaiting review
    [row] = rows(state_url, "SELECT run_id, status FROM pipeline_runs")
    run_id, branch = row["run_id"], f"pipeline/{row['run_id']}"
    assert row["status"] == "awaiting review"
    git(runner, "push", "--quiet", "origin", branch)
    shutil.rmtree(runner)

    laptop, here = clone(origin, tmp_path / "laptop"), ["--reports-dir", str(tmp_path / "laptop-reports")]
    nowhere = cli("review", run_id, *here, "--format", "json", env=plugin)  # the diffs are in the runner's repo
    assert nowhere.returncode == 2 and "is not on this machine; give --repo" in nowhere.stderr
    review = cli("review", run_id, *here, "--format", "json", "--repo", str(laptop), env=plugin)
    assert review.returncode == 0, review.stderr
    waiting = {c["files"][0]: c for c in json.loads(review.stdout)["changes"]}
    assert "-a  \n+a\n" in waiting["a.txt"]["diff"]  # read from the laptop's clone
    refused = cli("approve", run_id, "--all", *here, env=plugin)
    assert refused.returncode == 2 and "is not on this machine; give --repo" in refused.stderr
    assert refused.stderr.count("\n") == 1 and not (tmp_path / "laptop-reports").exists()  # refused: nothing made

    rejected = cli(
        "reject",
        run_id,
        "--task",
        waiting["b.txt"]["task_id"],
        "--reason",
        "generated",
        *here,
        "--repo",
        str(laptop),
        "-q",
        env=plugin,
    )
    assert rejected.returncode == 5, rejected.stderr  # a.txt still waits
    approved = cli("approve", run_id, "--all", *here, "--repo", str(laptop), "--format", "json", env=plugin)
    assert approved.returncode == 0, approved.stderr
    record = json.loads(approved.stdout)
    [row] = rows(state_url, "SELECT status, record FROM pipeline_runs")
    assert row["status"] == record["status"] == "completed" and row["record"] == record
    assert record["run"]["repo"] == str(laptop.resolve())
    assert git(laptop, "diff", "--name-only", "main", branch) == "a.txt"  # b.txt's change was reverted
