"""Hostile repositories: each one either works or stops with a one-line error and exit 2, and nothing
of the user's is lost (checkout, index, HEAD, untracked files byte-identical; nothing written outside).

The cases are ``bench.reliability.HOSTILE`` (the bench reports the same list); a case's run is shared
by the tests about it.
"""

from __future__ import annotations

import subprocess

import pytest

from agent_pipelines.engine.runs import UsageError, start_run
from bench.reliability import (
    CAFE,
    CRLF_FILES,
    FIXED_RUN_ID,
    HOSTILE,
    checkout_state,
    crlf_problems,
    git,
    run_case,
    state_diff,
)

pytestmark = pytest.mark.slow  # end-to-end runs of the pipeline

CASES = {case.name: case for case in HOSTILE}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Run each case at most once for the whole module: name -> (HostileResult, Outcome)."""
    done = {}

    def get(name: str):
        if name not in done:
            done[name] = run_case(CASES[name], tmp_path_factory.mktemp("hostile"))
        return done[name]

    return get


@pytest.mark.parametrize("name", [case.name for case in HOSTILE])
def test_a_hostile_repository_is_handled(outcomes, name):
    result, _ = outcomes(name)
    assert result.handled, f"{result.how}\n" + "\n".join(result.problems)


def test_detached_head_works_and_leaves_head_detached_where_it_was(outcomes):
    result, outcome = outcomes("detached HEAD")
    assert outcome.code == 0 and outcome.record.status == "completed"
    assert git(outcome.repo, "symbolic-ref", "--quiet", "HEAD", check=False) == ""
    assert git(outcome.repo, "rev-parse", "HEAD") == outcome.record.run.base_commit


def test_staged_changes_stay_staged_and_stay_out_of_the_run(outcomes):
    _, outcome = outcomes("dirty index")
    assert outcome.code == 0
    assert "services/billing/new_module.py" in git(outcome.repo, "diff", "--cached", "--name-only")
    assert "staged rewrite" not in git(outcome.repo, "show", f"{outcome.record.run.branch}:services/billing/Dockerfile")


def test_a_branch_named_pipeline_stops_the_run_with_one_line_and_exit_2(outcomes):
    _, outcome = outcomes("branch named pipeline")
    assert outcome.code == 2
    assert outcome.stderr.strip().startswith("error:") and len(outcome.stderr.strip().splitlines()) == 1
    assert "branch named `pipeline`" in outcome.stderr and "git branch -m pipeline" in outcome.stderr


def test_the_run_branch_already_existing_is_a_clear_error_that_moves_nothing(
    example_repo, reports, docker_pipeline, monkeypatch
):
    git(example_repo, "branch", f"pipeline/{FIXED_RUN_ID}", "HEAD")
    tip = git(example_repo, "rev-parse", f"pipeline/{FIXED_RUN_ID}")
    monkeypatch.setattr("agent_pipelines.engine.runs.new_run_id", lambda: FIXED_RUN_ID)

    with pytest.raises(UsageError, match=f"already has a branch pipeline/{FIXED_RUN_ID}"):
        start_run(docker_pipeline, example_repo, reports)

    assert git(example_repo, "rev-parse", f"pipeline/{FIXED_RUN_ID}") == tip
    assert not (example_repo / ".git" / "pipeline.lock").exists()
    assert not (example_repo / ".git" / "pipeline-worktrees" / FIXED_RUN_ID).exists()


def test_the_run_branch_already_existing_exits_2_from_the_cli_with_one_line(outcomes):
    _, outcome = outcomes("run's branch exists")
    assert outcome.code == 2 and len(outcome.stderr.strip().splitlines()) == 1, outcome.stderr
    assert "already has a branch pipeline/" in outcome.stderr


def test_a_non_ascii_context_name_is_recorded_as_is_and_reviewed(outcomes):
    _, outcome = outcomes("non-ASCII, spaces")
    files = [f for c in outcome.record.changes for f in c.files]
    assert f"{CAFE}/.dockerignore" in files
    assert not [f for f in files if f.startswith('"')]  # not git's C-quoted "services/caf\303\251 api/..."
    assert any(
        g.name == f"COPY sources of {CAFE}/Dockerfile in context {CAFE}" and g.passed
        for v in outcome.record.verdicts
        for g in v.gates
    )


def test_crlf_dockerfiles_keep_crlf_on_every_line_of_the_committed_blob(outcomes):
    _, outcome = outcomes("CRLF")
    problems = crlf_problems(outcome.repo, outcome.record.run.branch, outcome.record.run.base_commit)
    assert [p for p in problems if "Dockerfile" in p] == []


def test_a_crlf_compose_file_keeps_crlf_on_every_line_of_the_committed_blob(outcomes):
    _, outcome = outcomes("CRLF")
    problems = crlf_problems(outcome.repo, outcome.record.run.branch, outcome.record.run.base_commit)
    assert [p for p in problems if CRLF_FILES[2] in p] == []


def test_no_fix_writes_through_a_symlink_out_of_the_repository(outcomes):
    _, outcome = outcomes("symlinks out")
    outside = outcome.extra["outside"]
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == outcome.extra["before"]
    assert not (outside / "not-yet-there").exists()
    links = {".dockerignore", "services/web/.dockerignore", "services/billing/Dockerfile"}
    changes = outcome.record.changes
    assert not [f for c in changes if c.status.value == "committed" for f in c.files if f in links]
    refused = {c.reason for c in changes if c.status.value == "declined"}  # not applicable here: nothing broke
    assert ".dockerignore resolves outside the repository; not written" in refused
    # The links are still links, on the branch too.
    for link in sorted(links):
        assert git(outcome.repo, "ls-tree", outcome.record.run.branch, link).startswith("120000"), link


def test_a_50_mb_binary_in_a_context_is_neither_committed_nor_a_problem(outcomes):
    _, outcome = outcomes("huge and binary")
    assert outcome.code == 0
    assert not [c for c in outcome.record.changes if c.status.value == "failed"]
    assert not [f for c in outcome.record.changes for f in c.files if f.endswith((".bin", ".png", ".pkl"))]


def test_a_fifo_and_dangling_symlinks_neither_hang_nor_break_run_or_analyze(outcomes):
    result, outcome = outcomes("unreadable files")
    assert outcome.code == 0 and result.handled, result.problems
    assert (outcome.repo / "services/billing/events.fifo").is_fifo()


def test_a_submodule_is_left_as_it_is(outcomes):
    _, outcome = outcomes("submodule")
    assert outcome.code == 0
    assert (outcome.repo / "vendor/lib/Dockerfile").read_text() == "FROM alpine:3.19\nCOPY . /lib\n"
    status = git(outcome.repo, "submodule", "status")
    assert status.endswith("vendor/lib (heads/main)") and not status.startswith(("+", "-", "U"))


def test_no_commits_stops_with_one_line_and_exit_2(outcomes):
    _, outcome = outcomes("no commits")
    assert outcome.code == 2 and "has no commits yet" in outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1


def test_checkout_state_sees_what_a_user_would_lose(tmp_path):
    """The probe itself: an edit, a new untracked file, a changed symlink and a moved HEAD all show."""
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "--quiet", "-m", "a")
    before = checkout_state(repo)
    (repo / "a.txt").write_text("b\n")
    (repo / "new.txt").write_text("new\n")
    subprocess.run(["ln", "-s", "/nowhere", str(repo / "link")], check=True)
    assert state_diff(before, checkout_state(repo)) == [
        "status changed",
        "link appeared",
        "new.txt appeared",
        "a.txt changed",
    ]


def deleted_branch_run(repo, reports, pipeline, monkeypatch):
    """A failed run whose worktree and branch the user then removed by hand."""
    monkeypatch.setenv("PIPELINE_CRASH_AT", "compose.implementer:before")
    record = start_run(pipeline, repo, reports)
    monkeypatch.delenv("PIPELINE_CRASH_AT")
    assert record.status == "failed"
    git(repo, "worktree", "remove", "--force", record.run.worktree)
    git(repo, "branch", "-D", record.run.branch)
    return record


def test_resuming_a_run_whose_branch_was_deleted_says_so_and_changes_nothing(
    example_repo, reports, docker_pipeline, monkeypatch
):
    from agent_pipelines.engine.runs import resume_run

    record = deleted_branch_run(example_repo, reports, docker_pipeline, monkeypatch)
    before = checkout_state(example_repo)

    with pytest.raises(UsageError, match=f"branch {record.run.branch} no longer exists"):
        resume_run({docker_pipeline.name: docker_pipeline}, reports, record.run.run_id)

    assert state_diff(before, checkout_state(example_repo)) == []
    assert not (example_repo / ".git" / "pipeline.lock").exists()


def test_resuming_a_run_whose_branch_was_deleted_exits_2_with_one_line(
    example_repo, reports, docker_pipeline, monkeypatch
):
    from tests.conftest import cli

    record = deleted_branch_run(example_repo, reports, docker_pipeline, monkeypatch)

    result = cli("resume", record.run.run_id, "--reports-dir", str(reports), "-q")

    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
