"""Work done aside in a forked child: the same answer as doing it here, and nothing left behind."""

from __future__ import annotations

import dataclasses
import os
import threading

import pytest

from agent_pipelines.engine import aside
from agent_pipelines.engine.aside import Aside
from agent_pipelines.engine.lint import runner
from agent_pipelines.pipelines.docker_optimization import analysis
from agent_pipelines.pipelines.docker_optimization.rules import load_all
from tests.conftest import EXAMPLE
from tests.rulekit import write

pytestmark = pytest.mark.skipif(not aside.ENABLED, reason="work runs aside only where fork exists")
load_all()


def test_the_childs_answer_comes_back_and_the_child_is_reaped():
    with Aside(lambda: {"pid": os.getpid(), "items": [1, "two", (3.0,)]}) as child:
        pid = child._child[0]
        answer = child.result()
    assert answer["items"] == [1, "two", (3.0,)] and answer["pid"] == pid != os.getpid()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@pytest.mark.parametrize("work", [lambda: 1 / 0, lambda: object()], ids=["raises", "not marshal-able"])
def test_a_child_that_fails_gives_no_answer(work):
    child = Aside(work)
    assert child.running and child.result() is None and not child.running


def test_no_child_while_threads_run():
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert not Aside(lambda: 1).running
    finally:
        stop.set()
        worker.join()


def _result(monkeypatch, repo, enabled: bool):
    forked: list[bool] = []

    class Recorded(Aside):
        def __init__(self, work):
            super().__init__(work)
            forked.append(self.running)

    monkeypatch.setattr(aside, "ENABLED", enabled)
    monkeypatch.setattr(runner, "Aside", Recorded)
    result = analysis.run_analysis(repo)
    assert forked == [enabled]  # the heavy rules ran in a child exactly when allowed
    return result


def test_the_analysis_is_the_same_with_its_heavy_rules_aside(monkeypatch):
    assert {code for code, r in load_all().items() if r.heavy} == {"CX005", "CO008"}
    alone, split = _result(monkeypatch, EXAMPLE, False), _result(monkeypatch, EXAMPLE, True)
    assert split.findings == alone.findings and split.notes == alone.notes


def test_findings_of_the_heavy_rules_come_back_from_the_child(monkeypatch, tmp_path):
    repo = write(
        tmp_path,
        {
            "compose.yaml": "services:\n  api:\n    build: ./api\n    imagee: typo\n",
            "api/Dockerfile": "FROM python:3.12-slim\n",
        },
    )
    alone, split = _result(monkeypatch, repo, False), _result(monkeypatch, repo, True)
    assert split.findings == alone.findings
    [co008] = [f.message for f in split.findings if f.rule == "CO008"]
    assert co008.startswith("services/api: ") and "'imagee'" in co008


def test_a_rule_that_fails_in_the_child_is_a_note_in_the_same_place(monkeypatch):
    def broken(ctx):
        raise KeyError("boom")
        yield  # pragma: no cover

    monkeypatch.setitem(load_all(), "CX005", dataclasses.replace(load_all()["CX005"], check=broken))
    alone, split = _result(monkeypatch, EXAMPLE, False), _result(monkeypatch, EXAMPLE, True)
    assert split.notes == alone.notes
    assert any(n.kind == "rule-error" and "CX005" in n.message and "KeyError" in n.message for n in split.notes)


def test_a_fork_that_fails_leaves_the_work_to_the_caller_and_no_pipe_open(monkeypatch):
    def no_fork():
        raise BlockingIOError("Resource temporarily unavailable")

    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    monkeypatch.setattr(os, "fork", no_fork)
    child = Aside(lambda: 1)
    assert not child.running and child.result() is None
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before
