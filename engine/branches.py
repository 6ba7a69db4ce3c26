"""`pipeline apply` and `pipeline rollback`: moving a run's branch into the user's work, or out of it.

``apply`` is the one command that touches the user's checkout, and only
when it is clean: it merges ``pipeline/<run-id>`` into the current branch
(``--no-ff``, so the run stays one revertable merge). ``rollback`` removes
the run's commits (all, or from one phase on) from the run's branch.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine.artifacts import ChangeStatus, RunRecord
from engine.gitenv import git_env
from engine.runs import RunPaths, UsageError, _lock, save_record
from engine.workspace import TRAILER_PHASE, Workspace


def _git(repo: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, env=git_env(), check=check)


def apply_run(record: RunRecord) -> str:
    """Merge the run's branch into the user's current branch; the message says what happened."""
    repo, branch = record.run.repo, record.run.branch
    if _git(repo, "rev-parse", "--verify", "--quiet", branch, check=False).returncode != 0:
        raise UsageError(f"branch {branch} no longer exists in {repo}")
    current = _git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).stdout.strip()
    commands = f"git -C {repo} merge --no-ff {branch}"
    if not current:
        raise UsageError(f"{repo} has a detached HEAD; check out the branch to merge into, then run: {commands}")
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip()
    if dirty:
        raise UsageError(f"{repo} has uncommitted changes ({len(dirty.splitlines())} files), so nothing was merged; "
                         f"commit or stash them, then run: {commands}")
    if _git(repo, "merge-base", "--is-ancestor", branch, "HEAD", check=False).returncode == 0:
        return f"{branch} is already merged into {current}"
    merged = _git(repo, "merge", "--no-ff", "--no-edit", "-m", f"Merge pipeline run {record.run.run_id}", branch,
                  check=False)
    if merged.returncode != 0:
        _git(repo, "merge", "--abort", check=False)
        raise UsageError(f"merging {branch} into {current} conflicts, so nothing was merged; resolve it by hand: {commands}")
    return f"merged {branch} into {current} at {_git(repo, 'rev-parse', '--short', 'HEAD').stdout.strip()}"


def rollback_run(record: RunRecord, paths: RunPaths, phase: str | None = None) -> str:
    """Remove the run's commits (from ``phase`` on, or all) from its branch, and record it."""
    run = record.run
    if phase is not None and phase not in run.phases:
        raise UsageError(f"run {run.run_id} has no phase {phase!r}; its phases are: {', '.join(run.phases)}")
    dropped = run.phases[run.phases.index(phase):] if phase else list(run.phases)
    lock = _lock(Path(run.repo), run.run_id)  # never reset a worktree under an active run
    try:
        return _rollback(record, paths, dropped)
    finally:
        lock.release()


def _rollback(record: RunRecord, paths: RunPaths, dropped: list[str]) -> str:
    run = record.run
    with Workspace.open(Path(run.repo), Path(run.worktree), run.branch) as ws:
        commits = ws.task_commits(since=run.base_commit)
        first = next((c for c in commits if c.phase in dropped), None)
        if first is None:
            return f"no commits of {', '.join(dropped)} on {run.branch}; nothing to roll back"
        target = ws.repo.git.rev_parse(f"{first.sha}^")
        removed = sum(1 for c in commits[commits.index(first):])
        ws.reset_to(target)
        record.head_commit = target
    for change in record.changes:
        if change.phase in dropped and change.status is ChangeStatus.committed:
            change.status, change.reason = ChangeStatus.reverted, "rolled back by `pipeline rollback`"
    for report in record.phases:
        if report.phase in dropped:
            report.notes.append("rolled back by `pipeline rollback`")
    save_record(record, paths.run_json)
    merged = _git(run.repo, "merge-base", "--is-ancestor", first.sha, "HEAD", check=False).returncode == 0
    note = " (already merged into your branch: revert the merge there with `git revert -m 1 <merge>`)" if merged else ""
    return f"removed {removed} commits from {run.branch}; it now ends at {target[:10]}{note}"


__all__ = ["apply_run", "rollback_run", "TRAILER_PHASE"]
