"""Human approval: `pipeline run --review` pauses after each phase's reviewer; `pipeline review` shows what waits,
`pipeline approve` and `pipeline reject` continue the run from its checkpoint, each in a process of its own."""

from __future__ import annotations

import json

from tests.conftest import cli, git, make_repo

PLUGIN = {"PIPELINE_PLUGINS": "tests.fixture_pipelines.whitespace:PIPELINE"}
AWAITING_REVIEW = 5  # README's exit-code table


def paused_run(tmp_path, reports) -> tuple:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a  \n", "b.txt": "b  \n"})
    result = cli(
        "run",
        "text-hygiene",
        "--repo",
        str(repo),
        "--reports-dir",
        str(reports),
        "--review",
        "--format",
        "json",
        env=PLUGIN,
    )
    assert result.returncode == AWAITING_REVIEW, result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == "awaiting review"
    assert record["review_phase"] == "fix"
    tasks = {t["file"]: t["id"] for t in record["plan"]["tasks"]}
    return repo, record["run"]["run_id"], record["run"]["branch"], tasks


def test_a_run_with_review_pauses_and_lists_what_waits(tmp_path, reports):
    repo, run_id, branch, tasks = paused_run(tmp_path, reports)

    listed = cli("list", "--reports-dir", str(reports), env={**PLUGIN, "COLUMNS": "200"})
    assert f"{run_id}  text-hygiene  awaiting review" in listed.stdout
    shown = cli("review", run_id, "--reports-dir", str(reports), env={**PLUGIN, "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert f"== task {tasks['a.txt']}: Strip trailing whitespace in a.txt" in shown.stdout
    assert "passed       targeted findings gone: WS001 cleared in a.txt" in shown.stdout
    assert "-a  \n+a" in shown.stdout  # the diff
    assert git(repo, "rev-list", "--count", f"main..{branch}") == "2"  # the commits stand while it waits


def test_reject_reverts_with_the_reason_and_approve_finishes_the_run(tmp_path, reports):
    repo, run_id, branch, tasks = paused_run(tmp_path, reports)

    rejected = cli(
        "reject",
        run_id,
        "--task",
        tasks["b.txt"],
        "--reason",
        "b.txt is generated",
        "--reports-dir",
        str(reports),
        "--quiet",
        env=PLUGIN,
    )
    assert rejected.returncode == AWAITING_REVIEW, rejected.stderr  # a.txt still waits
    approved = cli("approve", run_id, "--all", "--reports-dir", str(reports), "--format", "json", env=PLUGIN)
    assert approved.returncode == 0, approved.stderr

    record = json.loads(approved.stdout)
    assert record["status"] == "completed"
    change = {c["files"][0]: c for c in record["changes"]}
    assert (change["a.txt"]["status"], change["b.txt"]["status"]) == ("committed", "reverted")
    assert change["b.txt"]["reason"] == "rejected in review: b.txt is generated"
    assert record["approved"] == [tasks["a.txt"]]
    assert git(repo, "diff", "--name-only", "main", branch) == "a.txt"  # b.txt's change is off the branch
    report = (reports / run_id / "2-fix.md").read_text()
    assert "| Strip trailing whitespace in b.txt | human review | NO | b.txt is generated |" in report


def test_approve_refuses_a_task_the_run_does_not_wait_on(tmp_path, reports):
    _, run_id, _, _ = paused_run(tmp_path, reports)
    result = cli("approve", run_id, "--task", "nosuchtask", "--reports-dir", str(reports), env=PLUGIN)
    assert result.returncode == 2
    assert "awaits no decision on nosuchtask" in result.stderr
    done = cli("approve", run_id, "--all", "--reports-dir", str(reports), "--quiet", env=PLUGIN)
    assert done.returncode == 0, done.stderr
    again = cli("approve", run_id, "--all", "--reports-dir", str(reports), env=PLUGIN)
    assert again.returncode == 2
    assert "is not awaiting review (it is completed)" in again.stderr


def test_review_as_json_gives_each_waiting_change_with_its_gates_and_diff(tmp_path, reports):
    """What a CI job or an agent reads to decide: `pipeline review RUN --format json`."""
    repo, run_id, branch, tasks = paused_run(tmp_path, reports)

    shown = cli("review", run_id, "--reports-dir", str(reports), "--format", "json", env=PLUGIN)
    assert shown.returncode == 0, shown.stderr
    review = json.loads(shown.stdout)
    assert (review["run_id"], review["status"], review["phase"], review["branch"]) == (
        run_id,
        "awaiting review",
        "fix",
        branch,
    )
    waiting = {c["files"][0]: c for c in review["changes"]}
    assert sorted(waiting) == ["a.txt", "b.txt"]
    a = waiting["a.txt"]
    assert (a["task_id"], a["title"], a["attempt"]) == (tasks["a.txt"], "Strip trailing whitespace in a.txt", 1)
    assert a["commit"] == git(repo, "log", "-1", "--format=%H", branch, "--", "a.txt")
    assert {"name": "targeted findings gone", "status": "passed", "detail": "WS001 cleared in a.txt"} in a["gates"]
    assert "-a  \n+a\n" in a["diff"] and "b.txt" not in a["diff"]

    # once a person decided on b.txt, only a.txt waits
    rejected = cli("reject", run_id, "--task", tasks["b.txt"], "--reports-dir", str(reports), "-q", env=PLUGIN)
    assert rejected.returncode == AWAITING_REVIEW, rejected.stderr
    again = json.loads(cli("review", run_id, "--reports-dir", str(reports), "--format", "json", env=PLUGIN).stdout)
    assert [c["task_id"] for c in again["changes"]] == [tasks["a.txt"]]

    wrong = cli("review", run_id, "--reports-dir", str(reports), "--format", "yaml", env=PLUGIN)
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "--format must be text or json" in wrong.stderr
