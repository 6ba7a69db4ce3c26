"""No leaks: a run, however it ends, leaves no child process, open file descriptor, open sqlite
connection or running thread behind (in-process; the suite runs with ``-W error::ResourceWarning``).

``bench.reliability.measure_leaks`` runs the action with every ``sqlite3.connect`` tracked, then
compares the process's children, ``/proc/self/fd`` and threads with what was there before.
"""

from __future__ import annotations

import pytest

from agent_pipelines.engine import graph
from agent_pipelines.engine.runs import resume_run, start_run
from bench.reliability import example, measure_leaks


@pytest.fixture(scope="module", autouse=True)
def warm(tmp_path_factory):
    """One run first: imports, caches and lazily created pools are not leaks."""
    from agent_pipelines.pipelines.docker_optimization import PIPELINE

    work = tmp_path_factory.mktemp("warm")
    start_run(PIPELINE, example(work / "repo"), work / "reports")


def assert_clean(leaks) -> None:
    assert leaks.children == []
    assert leaks.fds == set()
    assert leaks.sqlite_open == 0
    assert leaks.threads == []


def test_a_complete_run_leaves_nothing_behind(tmp_path, docker_pipeline):
    repo, box = example(tmp_path / "repo"), {}

    leaks = measure_leaks("complete", lambda: box.update(record=start_run(docker_pipeline, repo, tmp_path / "r")))

    assert box["record"].status == "completed"
    assert_clean(leaks)


def test_a_run_failed_by_an_exception_in_a_node_leaves_nothing_behind(tmp_path, docker_pipeline, monkeypatch):
    repo, box = example(tmp_path / "repo"), {}
    monkeypatch.setenv("PIPELINE_CRASH_AT", "compose.reviewer:after")

    leaks = measure_leaks("failed", lambda: box.update(record=start_run(docker_pipeline, repo, tmp_path / "r")))

    assert box["record"].status == "failed" and "InjectedCrash" in box["record"].error
    assert_clean(leaks)


def test_resuming_a_failed_run_leaves_nothing_behind(tmp_path, docker_pipeline, monkeypatch):
    repo = example(tmp_path / "repo")
    monkeypatch.setenv("PIPELINE_CRASH_AT", "dockerfiles.implementer:after")
    failed = start_run(docker_pipeline, repo, tmp_path / "r")
    monkeypatch.delenv("PIPELINE_CRASH_AT")
    box = {}

    leaks = measure_leaks(
        "resume",
        lambda: box.update(
            record=resume_run({docker_pipeline.name: docker_pipeline}, tmp_path / "r", failed.run.run_id)
        ),
    )

    assert failed.status == "failed" and box["record"].status == "completed"
    assert_clean(leaks)


def test_a_run_stopped_by_ctrl_c_leaves_nothing_behind(tmp_path, docker_pipeline, monkeypatch):
    repo = example(tmp_path / "repo")
    real = graph.crash_point

    def ctrl_c(node: str, when: str, visit: int = 1) -> None:
        if (node, when) == ("dockerfiles.reviewer", "before"):
            raise KeyboardInterrupt
        real(node, when, visit)

    monkeypatch.setattr(graph, "crash_point", ctrl_c)

    def interrupted() -> None:
        with pytest.raises(KeyboardInterrupt):
            start_run(docker_pipeline, repo, tmp_path / "r")

    assert_clean(measure_leaks("ctrl-c", interrupted))
    assert not (repo / ".git" / "pipeline.lock").exists()


def test_a_refused_start_leaves_nothing_behind(tmp_path, docker_pipeline):
    """A usage error (here: no commits) is raised after nothing was opened, or after all was closed."""
    from agent_pipelines.engine.runs import UsageError
    from bench.reliability import git

    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "--quiet")

    def refused() -> None:
        with pytest.raises(UsageError):
            start_run(docker_pipeline, repo, tmp_path / "r")

    assert_clean(measure_leaks("refused", refused))


def test_the_probe_sees_each_kind_of_leak(tmp_path):
    import sqlite3
    import subprocess
    import threading

    held = {}

    def leaky() -> None:
        held["fh"] = open(tmp_path / "f", "w")
        held["db"] = sqlite3.connect(str(tmp_path / "db.sqlite"))
        held["proc"] = subprocess.Popen(["sleep", "30"])
        held["stop"] = threading.Event()
        held["thread"] = threading.Thread(target=held["stop"].wait, name="leaky-thread")
        held["thread"].start()

    try:
        leaks = measure_leaks("leaky", leaky)
        assert str(tmp_path / "f") in leaks.fds and str(tmp_path / "db.sqlite") in leaks.fds
        assert leaks.sqlite_open == 1
        assert leaks.children == ["sleep 30 "]
        assert leaks.threads == ["leaky-thread"]
    finally:
        held["stop"].set()
        held["thread"].join()
        held["proc"].kill()
        held["proc"].wait()
        held["db"].close()
        held["fh"].close()
