"""Records are not trusted, apply loses nothing of the user's, OS errors stop cleanly and resume repairs.

Every test works on a real run of the bundled example (a real git repository in a temp dir) and the real
`pipeline` command; the user's work is an uncommitted edit, an untracked file and an ignored file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent_pipelines.engine.lock import RepoLock
from agent_pipelines.engine.runs import start_run
from agent_pipelines.engine.workspace import registered_worktrees
from tests.conftest import cli, git, make_repo, snapshot


@pytest.fixture
def finished(example_repo, reports, docker_pipeline):
    """A completed run of the first two phases (no builds): fast, and it adds and edits files."""
    return start_run(docker_pipeline, example_repo, reports, ["dockerfiles"], {"builds": "off"})


def add_users_work(repo: Path) -> None:
    """What a user has besides commits: an uncommitted edit, an untracked file, an ignored local database."""
    (repo / "README.md").write_text("my uncommitted edit\n")
    (repo / "notes.txt").write_text("my untracked notes\n")
    (repo / ".git" / "info" / "exclude").write_text("local.db\n")
    (repo / "local.db").write_bytes(b"\x00my ignored data")


def users_state(repo: Path) -> tuple:
    """Everything of the user's a command could destroy: the checkout's bytes, HEAD, index, every ref."""
    return (
        snapshot(repo),
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain", "--ignored"),
        git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
    )


def tamper(reports: Path, name: str, **fields: str) -> None:
    path = reports / name / "run.json"
    data = json.loads(path.read_text())
    data["run"].update(fields)
    path.write_text(json.dumps(data))


def one_line_error(result) -> bool:
    lines = result.stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("error:")


@pytest.mark.slow
def test_a_tampered_record_is_refused_and_the_users_checkout_survives(finished, example_repo, reports, tmp_path):
    run_id = finished.run.run_id
    own = Path(finished.run.worktree)
    other_repo = make_repo(tmp_path / "other", {"README.md": "another repository\n"})
    original = (reports / run_id / "run.json").read_text()
    add_users_work(example_repo)
    before = users_state(example_repo)
    tampered = {
        "worktree is the user's checkout": {"worktree": str(example_repo)},
        "worktree is relative": {"worktree": "."},
        "worktree is another run's": {"worktree": str(own.parent / "20990101-000000-beef")},
        "worktree inside the user's checkout": {"worktree": str(example_repo / "services")},
        "branch is the user's": {"branch": "main"},
        "repo is another repository": {"repo": str(other_repo)},
        "repo is not a repository": {"repo": str(tmp_path / "nowhere")},
        "run id names another run": {"run_id": "20990101-000000-beef"},
        "run id climbs out": {"run_id": "../../example"},
        "everything names the checkout": {"repo": str(example_repo), "worktree": str(example_repo), "branch": "main"},
    }
    for case, fields in tampered.items():
        (reports / run_id / "run.json").write_text(original)
        tamper(reports, run_id, **fields)
        for command in ("rollback", "resume", "apply"):
            result = cli(command, run_id, "--reports-dir", str(reports), cwd=example_repo)
            assert result.returncode == 2, f"{case}: {command}: {result.stderr}"
            assert one_line_error(result), f"{case}: {command}: {result.stderr}"
            assert "uncommitted changes" not in result.stderr, f"{case}: {command} got as far as the checkout"
            assert users_state(example_repo) == before, f"{case}: {command} changed the user's work"
    assert (example_repo / "local.db").read_bytes() == b"\x00my ignored data"


def test_a_tampered_run_dir_is_not_followed(finished, example_repo, reports):
    add_users_work(example_repo)
    before = users_state(example_repo)
    tamper(reports, finished.run.run_id, run_dir=str(example_repo))
    for command in ("resume", "summary", "show"):
        result = cli(command, finished.run.run_id, "--reports-dir", str(reports), cwd=example_repo)
        assert result.returncode == 0, f"{command}: {result.stderr}"
    assert users_state(example_repo) == before
    assert (reports / finished.run.run_id / "summary.md").is_file()


def test_apply_is_refused_while_the_run_is_active_and_for_an_unfinished_run(finished, example_repo, reports):
    run_id, head = finished.run.run_id, git(example_repo, "rev-parse", "HEAD")
    with RepoLock(example_repo / ".git" / "pipeline.lock", run_id):
        active = cli("apply", run_id, "--reports-dir", str(reports))
    assert active.returncode == 2 and one_line_error(active)
    assert f"run {run_id} (pid" in active.stderr and "is active" in active.stderr
    # A run killed mid-way stays "running" in its record: it did not finish, so it is not merged.
    data = json.loads((reports / run_id / "run.json").read_text())
    data["status"] = "running"
    data["phases"][-1]["status"] = "running"
    (reports / run_id / "run.json").write_text(json.dumps(data))
    killed = cli("apply", run_id, "--reports-dir", str(reports))
    assert killed.returncode == 2 and "was stopped before it finished" in killed.stderr
    unfinished = cli("apply", run_id, "--phases", "dockerfiles", "--reports-dir", str(reports))
    assert unfinished.returncode == 2 and "phase dockerfiles of run" in unfinished.stderr
    assert git(example_repo, "rev-parse", "HEAD") == head


def test_apply_names_the_untracked_and_ignored_files_it_would_overwrite(finished, example_repo, reports):
    added = [
        line.split("\t")[1]
        for line in git(example_repo, "diff", "--name-status", "main", finished.run.branch).splitlines()
        if line.startswith("A\t")
    ]
    assert len(added) >= 2, "the run adds files (the example's contexts have no .dockerignore)"
    ignored, untracked = added[0], added[1]
    (example_repo / ".git" / "info" / "exclude").write_text(f"/{ignored}\n")
    (example_repo / ignored).write_text("my local, ignored version\n")
    (example_repo / untracked).write_text("my untracked version\n")
    head = git(example_repo, "rev-parse", "HEAD")
    result = cli("apply", finished.run.run_id, "--reports-dir", str(reports))
    assert result.returncode == 2 and one_line_error(result)
    assert "would overwrite 2 files" in result.stderr and ignored in result.stderr and untracked in result.stderr
    assert (example_repo / ignored).read_text() == "my local, ignored version\n"
    assert (example_repo / untracked).read_text() == "my untracked version\n"
    assert git(example_repo, "rev-parse", "HEAD") == head


def test_apply_merges_as_the_user_with_their_hooks_and_refuses_new_errors_unless_forced(
    finished, example_repo, reports, tmp_path
):
    git(example_repo, "config", "user.name", "Ada Lovelace")
    git(example_repo, "config", "user.email", "ada@example.org")
    marker = tmp_path / "hook-ran"
    hook = example_repo / ".git" / "hooks" / "pre-merge-commit"
    hook.write_text(f"#!/bin/sh\necho ran > '{marker}'\n")
    hook.chmod(0o755)
    # Meanwhile the user adds an image of the docs; the run's root .dockerignore excludes **/docs.
    (example_repo / "Dockerfile").write_text("FROM python:3.12-slim\nCOPY docs/ /srv/docs/\n")
    git(example_repo, "add", "Dockerfile")
    git(example_repo, "-c", "user.name=Ada Lovelace", "-c", "user.email=ada@example.org", "commit", "-qm", "docs image")
    head = git(example_repo, "rev-parse", "HEAD")
    refused = cli("apply", finished.run.run_id, "--reports-dir", str(reports))
    assert refused.returncode == 2 and one_line_error(refused)
    assert "1 error findings your main does not: CX003 Dockerfile:2" in refused.stderr
    assert git(example_repo, "rev-parse", "HEAD") == head and not marker.exists()

    forced = cli("apply", finished.run.run_id, "--force", "--reports-dir", str(reports))
    assert forced.returncode == 0, forced.stderr
    assert "warning: the merge added 1 error findings: CX003" in forced.stderr
    author = git(example_repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s")
    assert (
        author
        == f"Ada Lovelace <ada@example.org>|Ada Lovelace <ada@example.org>|Merge pipeline run {finished.run.run_id}"
    )
    assert marker.read_text() == "ran\n"
    assert git(example_repo, "rev-parse", "HEAD^2") == git(example_repo, "rev-parse", finished.run.branch)


def test_apply_of_named_phases_merges_only_their_commits(example_repo, reports, docker_pipeline):
    record = start_run(docker_pipeline, example_repo, reports, ["dockerfiles", "compose"], {"builds": "off"})
    phases = git(example_repo, "log", "--format=%(trailers:key=Pipeline-Phase,valueonly)", f"main..{record.run.branch}")
    assert "compose" in phases and "dockerfiles" in phases
    later = cli("apply", record.run.run_id, "--phases", "compose", "--reports-dir", str(reports))
    assert later.returncode == 2 and "name them too (--phases dockerfiles,compose)" in later.stderr
    result = cli("apply", record.run.run_id, "--phases", "dockerfiles", "--reports-dir", str(reports))
    assert result.returncode == 0, result.stderr
    merged = git(example_repo, "log", "--format=%(trailers:key=Pipeline-Phase,valueonly)", "HEAD^1..HEAD")
    assert "dockerfiles" in merged and "compose" not in merged
    assert git(example_repo, "log", "-1", "--format=%s") == f"Merge pipeline run {record.run.run_id}: phase dockerfiles"


def test_a_full_disk_gives_one_line_leaves_no_partial_file_and_the_run_resumes(finished, reports):
    run_dir = reports / finished.run.run_id
    before = (run_dir / "run.json").read_text()
    (run_dir / "run.json.tmp").symlink_to("/dev/full")  # every write there fails with ENOSPC, as on a full disk
    result = cli("resume", finished.run.run_id, "--phase", "dockerfiles", "-q", "--reports-dir", str(reports))
    assert result.returncode == 1 and one_line_error(result), result.stderr
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    assert not (run_dir / "run.json.tmp").is_symlink() and not (run_dir / "run.json.tmp").exists()
    assert (run_dir / "run.json").read_text() == before
    again = cli("resume", finished.run.run_id, "--phase", "dockerfiles", "-q", "--reports-dir", str(reports))
    assert again.returncode == 0, again.stderr
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"


def test_resume_repairs_a_worktree_left_locked_initializing_and_half_checked_out(finished, example_repo, reports):
    worktree = Path(finished.run.worktree)
    admin = Path(git(worktree, "rev-parse", "--absolute-git-dir"))
    (admin / "locked").write_text("initializing")  # what a kill during `git worktree add` leaves
    os.remove(worktree / "services" / "api" / "Dockerfile")
    assert "locked" in registered_worktrees(example_repo)[worktree.resolve()]
    result = cli("resume", finished.run.run_id, "--phase", "dockerfiles", "-q", "--reports-dir", str(reports))
    assert result.returncode == 0, result.stderr
    assert "locked" not in registered_worktrees(example_repo)[worktree.resolve()]
    assert (worktree / "services" / "api" / "Dockerfile").is_file()
    assert git(worktree, "status", "--porcelain") == ""


def test_resume_remakes_a_worktree_whose_git_file_was_never_written(finished, example_repo, reports):
    worktree = Path(finished.run.worktree)
    (worktree / ".git").unlink()
    result = cli("resume", finished.run.run_id, "--phase", "dockerfiles", "-q", "--reports-dir", str(reports))
    assert result.returncode == 0, result.stderr
    assert git(worktree, "rev-parse", "--abbrev-ref", "HEAD") == finished.run.branch
    assert git(worktree, "status", "--porcelain") == ""
