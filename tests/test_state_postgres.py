"""Run state in a real PostgreSQL (`--state postgresql://...`): checkpoints, the run record and the index of runs
in one database, seen from any machine; a run killed on one clone continues in another.

The server is started by the tests (the `postgres_server` fixture, from the pgserver package); every test gets
its own database. "Another machine" is another clone and another reports directory: nothing is shared but
the database and the git remote.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from bench.reliability import example, reference_run, tree_of
from tests.conftest import cli, git

pytestmark = pytest.mark.slow  # end-to-end runs of the pipeline


def run(repo: Path, reports: Path, state: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return cli(
        "run",
        "docker-optimization",
        "--repo",
        str(repo),
        "--reports-dir",
        str(reports),
        "-q",
        "--builds",
        "off",
        "--state",
        state,
        env=env,
        timeout=300,
    )


def rows(url: str, sql: str, *params) -> list[dict]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory) -> str:
    """The branch tree of one uninterrupted run on the example, with the local SQLite state."""
    return reference_run(tmp_path_factory.mktemp("reference"))


def test_a_run_with_postgres_state_is_listed_shown_and_summarized_from_another_machine(
    tmp_path, state_url, reference_tree
):
    repo = example(tmp_path / "repo")
    done = run(repo, tmp_path / "reports", state_url)
    assert done.returncode == 0, done.stderr[-2000:]
    [row] = rows(state_url, "SELECT run_id, status, pipeline FROM pipeline_runs")
    run_id = row["run_id"]
    assert (row["status"], row["pipeline"]) == ("completed", "docker-optimization")
    # the checkpoints are in the database too, under the run's thread; no SQLite file was made
    assert rows(state_url, "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", run_id)[0]["n"] > 0
    assert not (tmp_path / "reports" / run_id / "state.sqlite").exists()
    assert tree_of(repo, f"pipeline/{run_id}") == reference_tree

    elsewhere = tmp_path / "elsewhere-reports"  # another machine: an empty reports directory
    listed = cli("list", "--reports-dir", str(elsewhere), env={"PIPELINE_STATE_URL": state_url, "COLUMNS": "200"})
    assert listed.returncode == 0 and run_id in listed.stdout and "completed" in listed.stdout
    shown = cli("show", run_id, "--reports-dir", str(elsewhere), "--format", "json", "--state", state_url)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["status"] == "completed" and record["run"]["run_id"] == run_id
    assert record == json.loads((tmp_path / "reports" / run_id / "run.json").read_text())
    summary = cli("summary", run_id, "--reports-dir", str(elsewhere), "--state", state_url)
    assert summary.returncode == 0 and run_id in summary.stdout
    assert (elsewhere / run_id / "summary.md").read_text() == summary.stdout

    # without --state, the local reports directory is the index again: the other machine has no run there
    assert run_id not in cli("list", "--reports-dir", str(elsewhere), env={"COLUMNS": "200"}).stdout


def test_a_run_killed_on_one_clone_continues_in_a_fresh_clone_without_redoing_its_commits(
    tmp_path, state_url, reference_tree
):
    """Two clones of one bare remote and one database: the first run is SIGKILLed right after the dockerfiles
    implementer committed (before its checkpoint); its branch is pushed, as a CI job's last step would; a fresh
    clone resumes it. The commits already on the branch are reused (their Pipeline-Task trailers), not redone."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(example(tmp_path / "seed")), str(origin)], check=True)
    first = tmp_path / "ci-runner"
    subprocess.run(["git", "clone", "--quiet", str(origin), str(first)], check=True)

    killed = run(
        first,
        tmp_path / "ci-reports",
        state_url,
        env={"PIPELINE_CRASH_AT": "dockerfiles.implementer:after", "PIPELINE_CRASH_MODE": "kill"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    [row] = rows(state_url, "SELECT run_id, status FROM pipeline_runs")
    run_id, branch = row["run_id"], f"pipeline/{row['run_id']}"
    done_before = git(first, "log", "--format=%H %(trailers:key=Pipeline-Task,valueonly,separator=)", branch)
    kept = [line.split()[0] for line in done_before.splitlines() if len(line.split()) == 2]
    assert kept, "the killed phase had committed nothing: the test would prove nothing"
    git(first, "push", "--quiet", "origin", branch)

    laptop = tmp_path / "laptop"
    subprocess.run(["git", "clone", "--quiet", str(origin), str(laptop)], check=True)
    resumed = cli(
        "resume",
        run_id,
        "--reports-dir",
        str(tmp_path / "laptop-reports"),
        "-q",
        "--state",
        state_url,
        "--repo",
        str(laptop),
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    assert tree_of(laptop, branch) == reference_tree
    head = git(laptop, "rev-parse", branch)
    for commit in kept:  # the commits made before the kill are in the finished branch, as they were
        assert (
            subprocess.run(
                ["git", "-C", str(laptop), "merge-base", "--is-ancestor", commit, head], check=False
            ).returncode
            == 0
        )
    tasks = git(laptop, "log", "--format=%(trailers:key=Pipeline-Task,valueonly,separator=)", branch).split()
    assert len(tasks) == len(set(tasks)), "a task was committed twice"
    [row] = rows(state_url, "SELECT status, record FROM pipeline_runs")
    assert row["status"] == "completed"
    assert row["record"]["run"]["repo"] == str(laptop.resolve())
    assert (laptop / ".git" / "pipeline-worktrees" / run_id).is_dir()


def test_a_state_url_that_cant_be_used_is_one_line_and_exit_2(tmp_path, postgres_server):
    wrong = cli("list", "--reports-dir", str(tmp_path), "--state", "mysql://db/runs")
    assert wrong.returncode == 2 and "postgresql://" in wrong.stderr and "Traceback" not in wrong.stderr
    down = cli(
        "list",
        "--reports-dir",
        str(tmp_path),
        "--state",
        f"postgresql://ci:hunter2@/nosuchdb?host={tmp_path}&connect_timeout=2",
    )
    assert down.returncode == 2 and "can't reach the state database" in down.stderr
    assert "hunter2" not in down.stderr and "Traceback" not in down.stderr


def test_stores_opened_at_once_on_a_new_database_all_set_it_up(state_url):
    """Four processes starting runs together against a new database: each makes the tables or finds them made.
    Waiting in pg_advisory_lock here once deadlocked LangGraph's CREATE INDEX CONCURRENTLY (bench/parallel_runs.py)."""
    from concurrent.futures import ThreadPoolExecutor

    from agent_pipelines.engine.store import PostgresStore

    def open_and_count(_):
        with PostgresStore(state_url) as store:
            return len(store.records())

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(open_and_count, range(4))) == [0, 0, 0, 0]
    tables = {r["tablename"] for r in rows(state_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"pipeline_runs", "checkpoints", "checkpoint_blobs", "checkpoint_writes"} <= tables


def test_a_run_id_is_taken_once_in_a_shared_database(state_url):
    from agent_pipelines.engine.store import PostgresStore

    with PostgresStore(state_url) as here, PostgresStore(state_url) as there:
        assert here.reserve("20261207-101500-ab12", "docker-optimization")
        assert not there.reserve("20261207-101500-ab12", "docker-optimization")  # another machine, same second
        assert here.records() == []  # a reservation is not a run: lists skip it
        there.release("20261207-101500-ab12")
        assert there.reserve("20261207-101500-ab12", "docker-optimization")
