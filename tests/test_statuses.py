"""Honest statuses: a task is committed, reverted, declined (the fix does not apply here) or failed (something
broke). Declines say why and what a person would do; only failures mark a phase failed, print ✗ and fail
the exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_pipelines.engine.artifacts import ChangeStatus
from agent_pipelines.engine.commands import EXIT_TASKS_FAILED
from agent_pipelines.engine.runs import start_run
from tests.conftest import cli, git, make_repo
from tests.fixture_pipelines import whitespace

PLUGIN = {"PIPELINE_PLUGINS": "tests.fixture_pipelines.whitespace:PIPELINE", "COLUMNS": "200", "NO_COLOR": "1"}
WHY = "third_party/lib.vendored.txt is vendored: a copy of another project's file"
INSTEAD = "strip the whitespace upstream and vendor the file again"


def test_a_declined_fix_is_not_a_failure_and_says_why_and_what_to_do(tmp_path, reports):
    repo = make_repo(tmp_path / "repo", {"a.txt": "one  \n", "third_party/lib.vendored.txt": "two  \n"})
    record = start_run(whitespace.PIPELINE, repo, reports)

    by_file = {t.file: t.id for t in record.plan.tasks}
    status = {c.task_id: c for c in record.changes}
    assert status[by_file["a.txt"]].status is ChangeStatus.committed
    declined = status[by_file["third_party/lib.vendored.txt"]]
    assert (declined.status, declined.reason, declined.action) == (ChangeStatus.declined, WHY, INSTEAD)
    assert record.status == "completed" and record.failures == []
    assert record.phase("fix").status == "completed"
    assert record.phase_status("fix") == "completed, 1 declined"
    assert git(repo, "rev-list", "--count", f"main..{record.run.branch}") == "1"

    run_dir = Path(record.run.run_dir)
    saved = json.loads((run_dir / "run.json").read_text())
    assert [(c["status"], c["reason"], c["action"]) for c in saved["changes"] if c["status"] == "declined"] == [
        ("declined", WHY, INSTEAD)
    ]
    summary = (run_dir / "summary.md").read_text()
    phase_md = (run_dir / record.phase("fix").report_path).read_text() if record.phase("fix").report_path else ""
    for text in (summary, phase_md):
        assert f"| Strip trailing whitespace in third_party/lib.vendored.txt | {WHY} | {INSTEAD} |" in text
    assert "| Fix | completed, 1 declined | implementer, ops, reviewer | 1 | 0 | 1 | 0 |" in summary
    assert "**Status:** completed, 1 declined" in phase_md


def row(table: str, phase: str) -> list[str]:
    """The cells after the phase name in the final table's row for ``phase``."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells[0] == phase:
            return cells[1:]
    raise AssertionError(f"no row for {phase} in:\n{table}")


@pytest.mark.slow
def test_the_cli_exits_0_with_declines_and_4_with_a_failed_task(tmp_path):
    declines = make_repo(tmp_path / "declines", {"a.txt": "one  \n", "third_party/lib.vendored.txt": "two  \n"})
    ok = cli("run", "text-hygiene", "--repo", str(declines), "--reports-dir", str(tmp_path / "r1"), env=PLUGIN)
    assert ok.returncode == 0, ok.stderr
    assert "✗" not in ok.stderr and "✓ implementer  1 commits, 1 declined" in ok.stderr
    assert row(ok.stderr, "Fix") == ["completed, 1 declined", "1", "0", "1", "0"]
    assert "completed with" not in ok.stderr

    broken = make_repo(tmp_path / "broken", {"a.txt": "one  \n", "same.noop.txt": "x  \n"})  # writes nothing
    bad = cli("run", "text-hygiene", "--repo", str(broken), "--reports-dir", str(tmp_path / "r2"), env=PLUGIN)
    assert bad.returncode == EXIT_TASKS_FAILED == 4, bad.stderr
    assert "✗ implementer  1 commits, 1 failed" in bad.stderr
    assert row(bad.stderr, "Fix") == ["failed", "1", "0", "0", "1"]
    assert "completed with 1 failed task" in bad.stderr
    assert "✗ failed: phase fix, task " in bad.stderr
