"""What a run paused by ``pipeline run --review`` waits on, as data: one place for `pipeline review` (text and
``--format json``) and the MCP server's ``review_run`` tool.

What: the kept changes of the phase under review that no person has decided on yet, each with its task, commit,
attempt, the reviewer's gates (passed, failed or not verified, with the detail) and the commit's diff.
Why: a CI job or a coding agent decides from the same facts a person reads, without scraping text.
Example: ``pipeline review RUN_ID --format json | jq '.changes[].task_id'``.
"""

from __future__ import annotations

import subprocess

from agent_pipelines.engine.artifacts import ChangeStatus, Gate, RunRecord
from agent_pipelines.engine.gitenv import git_env


def awaiting(record: RunRecord) -> list:
    """The changes of the phase a paused run waits on a person for (in the plan's order)."""
    decided = {*record.approved, *record.rejected}
    return [
        c
        for c in record.changes
        if c.phase == record.review_phase and c.status is ChangeStatus.committed and c.task_id not in decided
    ]


def gate_status(gate: Gate) -> str:
    """``passed``, ``failed``, or ``not verified`` (the check could not run: the change stands unverified)."""
    return "passed" if gate.passed else "not verified" if not gate.verified else "failed"


def commit_diff(repo: str, commit: str) -> tuple[str, str]:
    """The commit's patch (``git show``) and "", or "" and git's one-line reason when ``repo`` can't show it
    (a repository on another machine: `pipeline review --repo CLONE` reads the diffs from a clone here)."""
    shown = subprocess.run(
        ["git", "-C", repo, "show", "--format=", "--no-color", "--no-ext-diff", "--end-of-options", commit],
        capture_output=True,
        text=True,
        env=git_env(),
        check=False,
    )
    if shown.returncode == 0:
        return shown.stdout, ""
    return "", (shown.stderr.strip().splitlines() or [f"git show {commit} failed"])[-1]


def pending_review(record: RunRecord) -> dict:
    """The paused run's awaiting changes as a JSON-ready dict (``pipeline review --format json``)."""
    run = record.run
    tasks = {t.id: t for t in record.plan.tasks}
    verdicts = {(v.task_id, v.attempt): v for v in record.verdicts}
    changes = []
    for change in awaiting(record):
        verdict = verdicts.get((change.task_id, change.attempt))
        diff, unreadable = commit_diff(run.repo, change.commit)
        changes.append(
            {
                "task_id": change.task_id,
                "title": tasks[change.task_id].title if change.task_id in tasks else change.task_id,
                "phase": change.phase,
                "commit": change.commit,
                "attempt": change.attempt,
                "files": list(change.files),
                "gates": [
                    {"name": g.name, "status": gate_status(g), "detail": g.detail}
                    for g in (verdict.gates if verdict else [])
                ],
                "diff": diff,
                **({"diff_error": unreadable} if unreadable else {}),
            }
        )
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "status": record.status,
        "phase": record.review_phase,
        "repo": run.repo,
        "branch": run.branch,
        "changes": changes,
    }
