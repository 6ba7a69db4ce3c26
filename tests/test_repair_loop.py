"""The repair loop: a change the reviewer rejects goes back to the implementer with its verdict, a bounded number
of times; every attempt is recorded with its verdict, and a resume repeats none of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_pipelines.engine.runs import resume_run, start_run
from tests.conftest import cli, git, make_repo
from tests.fixture_pipelines import whitespace

PLUGIN = {"PIPELINE_PLUGINS": "tests.fixture_pipelines.whitespace:PIPELINE"}


def task_log(repo, branch: str) -> list[str]:
    """The Pipeline-Task trailer of each commit the run's branch adds, oldest first."""
    out = git(repo, "log", "--reverse", "--format=%(trailers:key=Pipeline-Task,valueonly)", f"main..{branch}")
    return out.split()


def test_a_change_rejected_on_the_first_attempt_is_kept_after_a_repair(tmp_path, reports):
    # The first attempt at a.retry.txt strips one line of two: the reviewer's "targeted findings gone" gate rejects
    # it; the retry sees that verdict and strips both.
    repo = make_repo(tmp_path / "repo", {"a.retry.txt": "one  \ntwo  \n", "b.txt": "x  \n"})
    record = start_run(whitespace.PIPELINE, repo, reports)

    assert record.status == "completed"
    change = next(c for c in record.changes if c.files == ["a.retry.txt"])
    assert (change.status.value, change.attempt) == ("committed", 2)
    [first] = change.earlier
    assert (first.attempt, first.status.value) == (1, "reverted")
    assert "still there: WS001 at a.retry.txt:2" in first.reason
    verdicts = [(v.attempt, v.accepted) for v in record.verdicts if v.task_id == change.task_id]
    assert verdicts == [(1, False), (2, True)]
    assert git(repo, "show", f"{record.run.branch}:a.retry.txt") == "one\ntwo"
    # the rejected attempt is not on the branch: one commit per task
    assert sorted(task_log(repo, record.run.branch)) == sorted(t.id for t in record.plan.tasks)
    report = (Path(record.run.run_dir) / "2-fix.md").read_text()
    assert "### Repair attempts" in report
    assert f"attempt 1 `{first.commit[:10]}` reverted (targeted findings gone" in report
    assert f"attempt 2 `{change.commit[:10]}` committed" in report
    summary = (Path(record.run.run_dir) / "summary.md").read_text()
    assert "kept on the first attempt 1, kept after a repair 1, reverted 0" in summary


def test_the_loop_stops_after_the_attempts_allowed(tmp_path, reports):
    # Attempt k at b.stubborn.txt strips only its k-th line: rejected every time, a different change each time.
    repo = make_repo(tmp_path / "repo", {"b.stubborn.txt": "1 \n2 \n3 \n4 \n5 \n"})
    record = start_run(whitespace.PIPELINE, repo, reports, None, {"attempts": "3"})

    [change] = record.changes
    assert (change.status.value, change.attempt) == ("reverted", 3)
    assert [a.attempt for a in change.attempts] == [1, 2, 3]
    assert len({a.commit for a in change.attempts}) == 3
    assert [v.attempt for v in record.verdicts] == [1, 2, 3]
    nodes = [n.node for n in record.phase("fix").nodes]
    assert nodes == ["fix.implementer", "fix.reviewer"] * 3 + ["fix.ops"]
    assert task_log(repo, record.run.branch) == []


def test_one_attempt_means_no_loop(tmp_path, reports):
    repo = make_repo(tmp_path / "repo", {"a.retry.txt": "one  \ntwo  \n"})
    result = cli(
        "run",
        "text-hygiene",
        "--repo",
        str(repo),
        "--reports-dir",
        str(reports),
        "--attempts",
        "1",
        "--format",
        "json",
        "--quiet",
        env=PLUGIN,
    )
    assert result.returncode == 0, result.stderr
    assert '"attempt": 2' not in result.stdout
    [fix] = [p for p in json.loads(result.stdout)["phases"] if p["phase"] == "fix"]
    assert [n["node"] for n in fix["nodes"]] == ["fix.implementer", "fix.reviewer", "fix.ops"]


def test_a_retry_that_makes_the_same_change_again_is_not_an_attempt(tmp_path, reports):
    # A deterministic fix with no other approach writes the same lines again: the first verdict stands.
    repo = make_repo(tmp_path / "repo", {"a.partial.txt": "one  \ntwo  \n"})
    record = start_run(whitespace.PIPELINE, repo, reports, None, {"attempts": "3"})

    [change] = record.changes
    assert (change.status.value, change.attempt, change.earlier) == ("reverted", 1, [])
    assert "attempt 2 not made: the fix made the same change again: it has no other approach" in change.notes
    assert [v.attempt for v in record.verdicts] == [1]  # not sent back a third time
    assert [n.node for n in record.phase("fix").nodes] == ["fix.implementer", "fix.reviewer"] * 2 + ["fix.ops"]
    assert "attempt 2 not made" in (Path(record.run.run_dir) / "2-fix.md").read_text()


def test_a_fix_that_declines_a_retry_leaves_the_rejected_attempt(tmp_path, reports):
    repo = make_repo(tmp_path / "repo", {"b.stubborn.txt": "1 \n2 \n3\n"})
    record = start_run(whitespace.PIPELINE, repo, reports, None, {"attempts": "5"})

    [change] = record.changes
    assert (change.status.value, change.attempt) == ("reverted", 2)
    assert "attempt 3 not made: declined: attempt 3: no other line to try" in change.notes


def test_a_crash_in_a_repair_round_resumes_without_repeating_an_attempt(tmp_path, reports, monkeypatch):
    repo = make_repo(tmp_path / "repo", {"a.retry.txt": "one  \ntwo  \n"})
    # The second implementer run (the repair round) commits attempt 2, then the process dies before its checkpoint.
    monkeypatch.setenv("PIPELINE_CRASH_AT", "fix.implementer:after@2")
    record = start_run(whitespace.PIPELINE, repo, reports)
    assert record.status == "failed"
    assert "injected crash at fix.implementer" in record.error
    made = git(repo, "rev-parse", record.run.branch)  # attempt 2's commit, on the branch, not checkpointed
    monkeypatch.delenv("PIPELINE_CRASH_AT")

    again = resume_run({"text-hygiene": whitespace.PIPELINE}, reports, record.run.run_id)

    assert again.status == "completed"
    assert again.invocations[1].nodes == ["fix.implementer", "fix.reviewer", "fix.ops"]
    [change] = again.changes
    assert (change.status.value, change.attempt, change.commit) == ("committed", 2, made)
    assert "recovered from an interrupted attempt" in change.notes
    assert [v.attempt for v in again.verdicts] == [1, 2]  # attempt 1 was judged once, before the crash


def test_a_crash_before_the_repair_review_resumes_at_the_reviewer(tmp_path, reports, monkeypatch):
    repo = make_repo(tmp_path / "repo", {"a.retry.txt": "one  \ntwo  \n"})
    monkeypatch.setenv("PIPELINE_CRASH_AT", "fix.reviewer:before@2")
    record = start_run(whitespace.PIPELINE, repo, reports)
    assert record.status == "failed"
    monkeypatch.delenv("PIPELINE_CRASH_AT")

    again = resume_run({"text-hygiene": whitespace.PIPELINE}, reports, record.run.run_id)

    assert again.invocations[1].nodes == ["fix.reviewer", "fix.ops"]  # the repair attempt is not made again
    [change] = again.changes
    assert (change.status.value, change.attempt) == ("committed", 2)


@pytest.fixture
def llm_env(monkeypatch):
    """LLM mode against the mocked endpoint of tests/test_llm.py."""
    from tests.test_llm import BASE

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-not-real-000000")
    monkeypatch.setenv("OPENAI_BASE_URL", BASE)


def shown(user: str) -> str:
    """The file as the edit prompt shows it (without the rejected attempt the retry's prompt adds after it)."""
    return user.split(" ===\n", 1)[1].split("\n\nYour attempt", 1)[0].rstrip("\n") + "\n"


def scripted_edit(body: dict) -> dict:
    """A model that first moves the ADD's source out of its context, and, shown why that was reverted, writes a COPY
    of the local file; for the other findings it only pins pip's package."""
    user = body["messages"][1]["content"]
    text = shown(user)
    if "Finding LLM001" not in user:
        return {
            "file": "app/Dockerfile",
            "content": text.replace("pip install six\n", "pip install six==1.16.0\n"),
            "diff": "",
            "rationale": "pinned",
        }
    if "was reverted by the reviewer" not in user:
        broken = text.replace("ADD app.py", "COPY ../shared/app.py")
        return {"file": "app/Dockerfile", "content": broken, "diff": "", "rationale": "shared"}
    return {
        "file": "app/Dockerfile",
        "content": text.replace("ADD app.py", "COPY app.py"),
        "diff": "",
        "rationale": "a local file",
    }


def edit_prompts(model) -> list[str]:
    return [
        b["messages"][1]["content"] for b in model.bodies if "=== app/Dockerfile ===" in b["messages"][1]["content"]
    ]


def test_a_model_edit_is_retried_with_the_failed_gates_and_its_diff(tmp_path, reports, docker_pipeline, llm_env):
    from tests.test_llm import REPO, FakeModel, model_edits, run_llm

    repo = make_repo(tmp_path / "repo", REPO)
    model = FakeModel(ModelEdit=scripted_edit)
    record, _ = run_llm(repo, reports, docker_pipeline, model)

    [change] = model_edits(record)
    assert (change.status.value, change.attempt) == ("committed", 2), (change.reason, change.earlier, record.verdicts)
    assert "leaves the build context app" in change.earlier[0].reason
    [retry] = [p for p in edit_prompts(model) if "was reverted by the reviewer" in p and "Finding LLM001" in p]
    assert "leaves the build context app" in retry  # the failed gate
    assert "+COPY ../shared/app.py /srv/app.py" in retry  # the rejected diff
    assert "COPY app.py /srv/app.py" in git(repo, "show", f"{record.run.branch}:app/Dockerfile")


def test_a_crash_mid_loop_in_llm_mode_makes_no_model_call_again(
    tmp_path, reports, docker_pipeline, llm_env, monkeypatch
):
    import respx

    from tests.test_llm import BASE, REPO, FakeModel, run_llm

    repo = make_repo(tmp_path / "repo", REPO)
    monkeypatch.setenv("PIPELINE_CRASH_AT", "dockerfiles.reviewer:before@2")  # the repair round's attempts made
    model = FakeModel(ModelEdit=scripted_edit)
    record, _ = run_llm(repo, reports, docker_pipeline, model)
    assert record.status == "failed"
    asked = len(edit_prompts(model))
    monkeypatch.delenv("PIPELINE_CRASH_AT")

    with respx.mock() as mock:
        mock.post(f"{BASE}/chat/completions").mock(side_effect=model)
        again = resume_run({"docker-optimization": docker_pipeline}, reports, record.run.run_id)

    assert again.status == "completed", again.error
    assert again.invocations[1].nodes[0] == "dockerfiles.reviewer"
    assert len(edit_prompts(model)) == asked  # no edit asked again
