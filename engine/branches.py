"""`pipeline apply` and `pipeline rollback`: moving a run's branch into the user's work, or out of it.

``apply`` is the one command that touches the user's checkout, and only
when it is clean: it merges ``pipeline/<run-id>`` into the current branch
(``--no-ff``, so the run stays one revertable merge) after proving the merge
loses nothing of the user's (see ``apply_run``). ``rollback`` removes
the run's commits (all, or from one phase on) from the run's branch.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from agent_pipelines.engine.artifacts import ChangeStatus, RunRecord, RunState
from agent_pipelines.engine.gitenv import git_env
from agent_pipelines.engine.runs import (
    RunPaths,
    UsageError,
    _lock,
    check_schema,
    load_record,
    verify_record,
    write_through,
)
from agent_pipelines.engine.workspace import TRAILER_PHASE, Workspace


def _git(repo: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, env=git_env(), check=check)


def apply_run(
    record: RunRecord, paths: RunPaths, spec, phases: list[str] | None = None, force: bool = False, store=None
) -> str:
    """Merge a finished run (or its named finished phases) into the user's current branch, losing nothing.

    Under the repository lock (never while the run is active), only for the run's own worktree and branch
    (``verify_record``), only into a clean checkout, never over a file on disk git does not track, with the
    user's identity and hooks (a plain ``git merge``), and only when the merged tree has no error finding the
    user's head did not have (``force``: merged anyway, with a warning). The message says what happened.
    ``store``: where the run's record lives (engine.store); a run from a shared store may have been pointed at a
    clone on this machine (``engine.runs.adopt``): that location, proven above, is kept.
    """
    root = verify_record(record, paths)
    lock = _lock(root, record.run.run_id)  # refused while the run (or any other) is active on the repository
    try:
        # as the run left it, now that it can't move; in the repository proven above
        fresh, _ = load_record(paths.root.parent, paths.root.name, store)
        fresh.run = fresh.run.model_copy(update={"repo": record.run.repo, "worktree": record.run.worktree})
        verify_record(fresh, paths)
        return _apply(fresh, str(root), spec, phases, force)
    finally:
        lock.release()


def _apply(record: RunRecord, repo: str, spec, phases: list[str] | None, force: bool) -> str:
    run, branch = record.run, record.run.branch
    if _git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False).returncode != 0:
        raise UsageError(f"branch {branch} no longer exists in {repo}")
    target, what = _target(record, repo, phases)
    current = _git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).stdout.strip()
    commands = f"git -C {repo} merge --no-ff {branch if what == 'the run' else target[:10]}"
    if not current:
        raise UsageError(f"{repo} has a detached HEAD; check out the branch to merge into, then run: {commands}")
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip()
    if dirty:
        raise UsageError(
            f"{repo} has uncommitted changes ({len(dirty.splitlines())} files), so nothing was merged; "
            f"commit or stash them, then run: {commands}"
        )
    if _git(repo, "merge-base", "--is-ancestor", target, "HEAD", check=False).returncode == 0:
        return f"{what} of {branch} is already merged into {current}"
    merged = _git(repo, "merge-tree", "--write-tree", "--no-messages", "HEAD", target, check=False)
    if merged.returncode > 1:  # 1 is a conflict; more is git itself (older than 2.38: no --write-tree)
        reason = (merged.stderr.strip().splitlines() or ["git merge-tree failed"])[0]
        raise UsageError(
            f"apply needs git 2.38 or later to check the merge before making it ({reason}); "
            f"nothing was merged: {commands}"
        )
    if merged.returncode != 0:
        raise UsageError(
            f"merging {branch} into {current} conflicts, so nothing was merged; resolve it by hand: {commands}"
        )
    tree = merged.stdout.split()[0]
    in_the_way = untracked_in_the_way(repo, tree)
    if in_the_way:
        shown = ", ".join(in_the_way[:10]) + (f" and {len(in_the_way) - 10} more" if len(in_the_way) > 10 else "")
        raise UsageError(
            f"the merge would overwrite {len(in_the_way)} files on disk that git does not track "
            f"(untracked or ignored): {shown}; move them aside, then retry; nothing was merged"
        )
    new_errors = _new_errors(repo, spec, run, tree, target)
    warning = ""
    if new_errors:
        shown = "; ".join(new_errors[:5]) + (f"; and {len(new_errors) - 5} more" if len(new_errors) > 5 else "")
        if not force:
            raise UsageError(
                f"the merged tree has {len(new_errors)} error findings your {current} does not: {shown}; "
                f"nothing was merged (--force merges anyway)"
            )
        warning = f"; warning: the merge added {len(new_errors)} error findings: {shown}"
    # The user's own merge: their identity, config and hooks (not the run's git environment).
    done = subprocess.run(
        [
            "git",
            "-C",
            repo,
            "merge",
            "--no-ff",
            "--no-edit",
            "-m",
            f"Merge pipeline run {run.run_id}" + ("" if what == "the run" else f": {what}"),
            target,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if _git(repo, "rev-parse", "--verify", "--quiet", "MERGE_HEAD", check=False).returncode == 0:
            _git(repo, "merge", "--abort", check=False)
        reason = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["git merge failed"])[-1]
        raise UsageError(f"git merge of {branch} into {current} failed ({reason}); nothing was merged")
    merged_what = branch if what == "the run" else f"{what} of {branch}"
    return (
        f"merged {merged_what} into {current} at {_git(repo, 'rev-parse', '--short', 'HEAD').stdout.strip()}{warning}"
    )


def _target(record: RunRecord, repo: str, phases: list[str] | None) -> tuple[str, str]:
    """The commit to merge: the branch of a completed run, or the last commit of the named finished phases."""
    run = record.run
    if not phases:
        if record.status != "completed":
            state = "was stopped before it finished" if record.status == "running" else f"is {record.status}"
            raise UsageError(
                f"run {run.run_id} {state}; `pipeline resume {run.run_id}` finishes it, or name its "
                f"finished phases with --phases; nothing was merged"
            )
        return _git(repo, "rev-parse", f"refs/heads/{run.branch}").stdout.strip(), "the run"
    unknown = [p for p in phases if p not in run.phases]
    if unknown:
        raise UsageError(f"run {run.run_id} has no phase {', '.join(unknown)}; its phases are: {', '.join(run.phases)}")
    status = {p.phase: p.status for p in record.phases}
    unfinished = [p for p in phases if status.get(p) != "completed"]
    if unfinished:
        raise UsageError(f"phase {', '.join(unfinished)} of run {run.run_id} did not finish; nothing was merged")
    fmt = f"%H%x1f%(trailers:key={TRAILER_PHASE},valueonly,separator=)%x1e"
    log = _git(repo, "log", "--reverse", f"--format={fmt}", f"{run.base_commit}..refs/heads/{run.branch}").stdout
    commits = [tuple(part.strip() for part in rec.split("\x1f")) for rec in log.split("\x1e") if rec.strip()]
    last = max((i for i, (_, phase) in enumerate(commits) if phase in phases), default=None)
    if last is None:
        raise UsageError(f"phase {', '.join(phases)} of run {run.run_id} made no commits; nothing to merge")
    before = sorted({phase for _, phase in commits[:last] if phase not in phases})
    if before:
        raise UsageError(
            f"the commits of phase {', '.join(before)} come before those of {', '.join(phases)} "
            f"on {run.branch}; name them too (--phases {','.join([*before, *phases])})"
        )
    return commits[last][0], f"phase {', '.join(phases)}"


def untracked_in_the_way(repo: str, tree: str) -> list[str]:
    """Paths the merged ``tree`` adds that exist on disk untracked or ignored (a merge would overwrite them).

    git refuses to overwrite an untracked file, but replaces an ignored one (a local ``deploy/`` or
    a file the pipeline generates) without a word; both are the user's, so both are named and nothing is merged.
    """
    out = _git(repo, "diff", "--name-status", "-z", "--no-renames", "HEAD", tree).stdout.split("\0")
    added = [path for status, path in zip(out[::2], out[1::2]) if status == "A"]
    root, found = Path(repo), []
    for path in added:
        parts = Path(path).parts
        for depth in range(1, len(parts) + 1):
            on_disk = root.joinpath(*parts[:depth])
            if depth == len(parts) and (on_disk.exists() or on_disk.is_symlink()):
                found.append(path)
            elif depth < len(parts) and (on_disk.is_symlink() or on_disk.is_file()):
                found.append("/".join(parts[:depth]))
                break
    return sorted(set(found))


def _new_errors(repo: str, spec, run, tree: str, target: str) -> list[str]:
    """Error findings of the merged tree (the pipeline's own analysis) that the user's HEAD did not have."""
    from agent_pipelines.engine.tree import GitTree

    # A dangling commit of the merged tree, so the analysis reads it through git like any commit.
    merged = subprocess.run(
        ["git", "-C", repo, "commit-tree", tree, "-p", "HEAD", "-p", target, "-m", "pipeline apply check"],
        capture_output=True,
        text=True,
        env=git_env(),
        check=True,
    ).stdout.strip()
    head = _git(repo, "rev-parse", "HEAD").stdout.strip()
    domain = spec.domain(run)
    trees = [GitTree(Path(repo), head), GitTree(Path(repo), merged)]
    try:
        before, after = (domain.analyze(t) for t in trees)
    finally:
        for t in trees:
            t.close()
        domain.close()
    had = {f.fingerprint for f in before if f.severity.value == "error"}
    return [
        f"{f.rule} {f.file}:{f.line} {f.message}"
        for f in after
        if f.severity.value == "error" and f.fingerprint not in had
    ]


def rollback_run(record: RunRecord, paths: RunPaths, spec, phase: str | None = None, store=None) -> str:
    """Remove the run's commits (from ``phase`` on, or all) from its branch, and record it in the run's state
    (its checkpoints, then run.json, the reports and summary.md), where ``resume`` and ``show`` read it.
    ``store``: where the run's checkpoints and record live (engine.store; default the run's SQLite file)."""
    check_schema(record)
    run = record.run
    if phase is not None and phase not in run.phases:
        raise UsageError(f"run {run.run_id} has no phase {phase!r}; its phases are: {', '.join(run.phases)}")
    dropped = run.phases[run.phases.index(phase) :] if phase else list(run.phases)
    verify_record(record, paths)  # never reset a path the record merely names
    run = record.run
    lock = _lock(Path(run.repo), run.run_id)  # never reset a worktree under an active run
    try:
        paths.root.mkdir(parents=True, exist_ok=True)  # a run from a shared store gets its reports here
        return _rollback(record, paths, spec, dropped, store)
    finally:
        lock.release()


def _rollback(record: RunRecord, paths: RunPaths, spec, dropped: list[str], store=None) -> str:
    run = record.run
    with Workspace.open(Path(run.repo), Path(run.worktree), run.branch) as ws:
        commits = ws.task_commits(since=run.base_commit)
        first = next((c for c in commits if c.phase in dropped), None)
        if first is None:
            return f"no commits of {', '.join(dropped)} on {run.branch}; nothing to roll back"
        target = ws.repo.git.rev_parse(f"{first.sha}^")
        removed = sum(1 for c in commits[commits.index(first) :])
        ws.reset_to(target)
    write_through(spec, record, paths, lambda state: _rolled_back(state, dropped, target, spec, run), store)
    merged = _git(run.repo, "merge-base", "--is-ancestor", first.sha, "HEAD", check=False).returncode == 0
    note = " (already merged into your branch: revert the merge there with `git revert -m 1 <merge>`)" if merged else ""
    return f"removed {removed} commits from {run.branch}; it now ends at {target[:10]}{note}"


def _rolled_back(state: RunState, dropped: list[str], target: str, spec, run) -> dict:
    """The state's fields after the commits of ``dropped`` phases left the branch, which now ends at ``target``:
    their changes reverted, and the head's analysis (what the summary counts) redone on ``target`` as ops does it."""
    why = "rolled back by `pipeline rollback`"
    changes = [
        c.model_copy(update={"status": ChangeStatus.reverted, "reason": why})
        if c.phase in dropped and c.status is ChangeStatus.committed
        else c
        for c in state.changes
    ]
    phases = [p.model_copy(update={"notes": [*p.notes, why]}) if p.phase in dropped else p for p in state.phases]
    # A dropped phase that resumes (the run had stopped in it) starts again from ``target``, not from its old base.
    bases = {p: base for p, base in state.bases.items() if p not in dropped}
    update = {"changes": changes, "phases": phases, "head_commit": target, "bases": bases}
    if state.head_findings is not None:
        from agent_pipelines.engine.tree import GitTree

        domain = spec.domain(run)
        try:
            with GitTree(Path(run.repo), target) as head:
                update["head_findings"] = domain.analyze(head, thorough=True)
        finally:
            domain.close()
    return update


__all__ = ["apply_run", "rollback_run", "TRAILER_PHASE"]
