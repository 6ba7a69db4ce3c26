"""`pipeline prune`: remove finished runs: their worktree, their branch and their reports directory.

What: a run that completed or failed (not one still running, and a resumable one only with ``--force``),
older than ``--older-than`` when given, loses its worktree (``<git-dir>/pipeline-worktrees/<run-id>``),
its branch ``pipeline/<run-id>``, its reports directory and its entry in the run index.
Why: every run leaves a worktree and a branch in the repository and a directory of reports; nothing else
ever removes them. Never an unmerged branch without ``--force``: a branch whose commits your HEAD does not
contain may be the only copy of work you meant to apply, so such a run is kept, and the line says why.
Example: ``pipeline prune --older-than 7d`` removes runs last updated more than a week ago.
The worktree and branch removed are those the run id names in the repository, never paths read from
run.json (which is not trusted: see ``engine.workspace.verify_own_worktree``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent_pipelines.engine.gitenv import git_env

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``1d12h``, ``30m``, ``90s``, ``2w`` as a timedelta; ValueError otherwise."""
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"--older-than takes a duration such as 7d, 12h, 1d12h, 30m or 2w, not {text!r}")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


@dataclass
class Outcome:
    run_id: str
    removed: bool
    message: str


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=git_env())


def _unmerged(repo: Path, branch: str) -> int | None:
    """Commits of ``branch`` that the repository's HEAD does not contain (None: no such branch)."""
    if _git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}").returncode != 0:
        return None
    counted = _git(repo, "rev-list", "--count", f"HEAD..refs/heads/{branch}")
    return int(counted.stdout.strip()) if counted.returncode == 0 else None


def prune_run(record, run_dir: Path, status: str, force: bool, dry_run: bool = False, store=None) -> Outcome:
    """Remove one run (see the module's docstring); ``status`` is the status `pipeline list` shows.
    ``store``: a shared store (engine.store) the run's record and checkpoints are removed from too."""
    from agent_pipelines.engine.places import unindex
    from agent_pipelines.engine.workspace import RUN_ID, RepoError, Workspace, validate_repo

    run_id = record.run.run_id
    if run_id != run_dir.name or not RUN_ID.fullmatch(run_id):
        return Outcome(
            run_id,
            False,
            f"kept {run_dir}: its run.json names run {run_id!r}; the record was altered, so nothing was touched",
        )
    if status == "running":
        return Outcome(run_id, False, f"kept {run_id}: it is running")
    if status.partition(",")[0] not in ("completed", "failed") and not force:  # "completed, 2 failed" too
        return Outcome(
            run_id, False, f"kept {run_id}: {status}, `pipeline resume {run_id}` continues it (--force removes it)"
        )
    repo = Path(record.run.repo)
    try:
        root = validate_repo(repo) if repo.is_dir() else None
    except RepoError:
        root = None
    inside = root is not None and root.resolve().is_relative_to(run_dir.resolve())  # the bundled example's copy
    shared = store is not None and store.remote
    if root is None and not force:
        where = "is not on this machine" if shared else "is gone (moved or deleted)"
        forgets = "its record in the state database and its reports" if shared else "its reports"
        return Outcome(
            run_id,
            False,
            f"kept {run_id}: its repository {repo} {where}, so its branch can't be checked (--force removes {forgets})",
        )
    if root is not None and not inside:
        worktree, branch = Workspace.location(root, run_id)
        ahead = _unmerged(root, branch)
        if ahead and not force:
            return Outcome(
                run_id,
                False,
                f"kept {run_id}: branch {branch} has {ahead} commit(s) not merged into "
                f"HEAD of {root} (`pipeline apply {run_id}` merges them; --force "
                "removes them)",
            )
        parts = ["its worktree"] * worktree.exists() + [f"branch {branch}"] * (ahead is not None)
        if not dry_run:
            if worktree.exists():
                _git(root, "worktree", "remove", "--force", str(worktree))
            _git(root, "worktree", "prune")
            if ahead is not None:
                _git(root, "branch", "-D", branch)
    else:
        parts = []
    if shared:
        parts.append("its record and checkpoints in the state database")
    if not dry_run:
        shutil.rmtree(run_dir, ignore_errors=True)
        unindex(run_id)
        if shared:
            store.delete(run_id)
    verb = "would remove" if dry_run else "removed"
    return Outcome(run_id, True, f"{verb} {run_id}: {', '.join([*parts, f'reports {run_dir}'])}")


def prune(
    reports_dir: Path | None,
    older_than: timedelta | None,
    force: bool,
    run_ids: list[str] | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    store=None,
) -> list[Outcome]:
    """Prune every listed run (or those named) last updated before ``now - older_than``.

    With a shared ``store`` (``--state``), the runs are those it holds; each run's reports are this machine's
    copy (the run index, or ``reports_dir``), never the directory the record names on the machine that ran it."""
    from agent_pipelines.engine.places import find_run_dir
    from agent_pipelines.engine.runs import list_records, shown_status

    now = now or datetime.now(UTC)
    shared = store is not None and store.remote
    outcomes = []
    for record in list_records(reports_dir, store):
        if run_ids and record.run.run_id not in run_ids:
            continue
        updated = record.updated if record.updated.tzinfo else record.updated.replace(tzinfo=UTC)
        if older_than is not None and now - updated < older_than:
            continue
        run_dir = find_run_dir(record.run.run_id, reports_dir)[0] if shared else Path(record.run.run_dir)
        outcomes.append(prune_run(record, run_dir, shown_status(record), force, dry_run, store))
    return outcomes
