"""The reviewer judges what a change did, against its parent, and one revert doesn't take later changes with it.

Real monorepos build a Dockerfile under several contexts, some of them
broken long before the run: a production compose file that builds the
services from their own directory while the main one builds them from the
root. A change to such a Dockerfile is kept when it breaks nothing that
built before; what was already broken is reported in its verdict.
"""

from __future__ import annotations

from agent_pipelines.engine.artifacts import ChangeStatus, Gate
from agent_pipelines.engine.gates import ALREADY, delta_gate
from agent_pipelines.engine.runs import start_run
from tests.conftest import git, make_repo
from tests.test_reviewer_rejects import REPO, misbehave

# compose.prod.yaml builds the same Dockerfile from services/api, where "shared/lib.py" and
# "services/api/..." don't exist: that context never built.
TWO_CONTEXTS = {
    **REPO,
    "compose.prod.yaml": ("services:\n  api:\n    build:\n      context: services/api\n    image: shop/api:1\n"),
    "services/api/Dockerfile": REPO["services/api/Dockerfile"],
}


def verdict_for(record, group: str):
    tasks = {t.id for t in record.plan.tasks if t.fix == group}
    [verdict] = [v for v in record.verdicts if v.task_id in tasks]
    [change] = [c for c in record.changes if c.task_id in tasks]
    return change, verdict


def test_a_delta_gate_fails_only_for_new_problems():
    gate = delta_gate("COPY sources", ["a is missing", "b is missing"], lambda: ["a is missing"])
    assert gate == Gate(name="COPY sources", passed=False, detail="b is missing", already=ALREADY + "a is missing")
    kept = delta_gate("COPY sources", ["a is missing"], lambda: ["a is missing"], ok="all present")
    assert kept.passed and kept.detail == "all present" and kept.already == ALREADY + "a is missing"


def test_a_delta_gate_with_no_problems_never_looks_at_the_parent():
    def parent():
        raise AssertionError("the parent is read only when the change's head has problems")

    assert delta_gate("parses", [], parent, ok="parses").passed


def test_a_context_that_was_already_broken_does_not_revert_the_change(tmp_path, reports, docker_pipeline):
    repo = make_repo(tmp_path / "repo", TWO_CONTEXTS)
    record = start_run(docker_pipeline, repo, reports, ["dockerfiles"])
    change, verdict = verdict_for(record, "cache-mounts")
    assert change.status is ChangeStatus.committed and verdict.accepted
    gates = {g.name: g for g in verdict.gates}
    root = gates["COPY sources of services/api/Dockerfile in context ."]
    prod = gates["COPY sources of services/api/Dockerfile in context services/api"]
    assert root.passed and not root.already
    assert prod.passed and prod.already.startswith(ALREADY)
    assert "shared/lib.py does not exist in the build context services/api" in prod.already
    assert prod.already.endswith("(context services/api set by compose.prod.yaml)")
    assert "--mount=type=cache" in git(repo, "show", f"{record.run.branch}:services/api/Dockerfile")
    report = (reports / record.run.run_id / "2-dockerfiles.md").read_text()
    assert "Already broken before this run's changes" in report and "context services/api" in report


def test_breaking_a_context_that_built_is_still_reverted(tmp_path, reports, docker_pipeline, monkeypatch):
    def rename_source(project, task):
        return {task.file: project.text(task.file).replace("COPY services/api/app.py", "COPY services/api/main.py")}

    misbehave(monkeypatch, "cache-mounts", rename_source)
    repo = make_repo(tmp_path / "repo", TWO_CONTEXTS)
    record = start_run(docker_pipeline, repo, reports, ["dockerfiles"])
    change, verdict = verdict_for(record, "cache-mounts")
    assert change.status is ChangeStatus.reverted
    root = next(g for g in verdict.gates if g.name == "COPY sources of services/api/Dockerfile in context .")
    assert not root.passed and "services/api/main.py does not exist in the build context ." in root.detail


APT = {
    **REPO,
    "services/api/Dockerfile": (
        "FROM python:3.12-slim\nWORKDIR /srv\n"
        "RUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\n"
        "COPY shared/lib.py /srv/lib.py\n"
        "COPY services/api/requirements.txt /srv/requirements.txt\n"
        "RUN pip install --no-cache-dir -r /srv/requirements.txt\n"
        'COPY services/api/app.py /srv/app.py\nUSER nobody\nCMD ["python", "/srv/app.py"]\n'
    ),
}


def test_a_revert_does_not_cascade_to_later_changes_of_the_same_file(tmp_path, reports, docker_pipeline, monkeypatch):
    # apt-no-recommends runs first and rewrites the apt line that cache-mounts edits too: cherry-picking
    # cache-mounts' commit onto the head without it would conflict. Its fix is run again instead.
    def no_recommends_and_a_broken_copy(project, task):
        text = project.text(task.file).replace("install -y curl", "install -y --no-install-recommends curl")
        return {task.file: text.replace("COPY shared/lib.py", "COPY ../shared/lib.py")}

    misbehave(monkeypatch, "apt-no-recommends", no_recommends_and_a_broken_copy)
    repo = make_repo(tmp_path / "repo", APT)
    # apt-no-recommends is unsafe; one attempt: this is about the first round's replay, not the repair loop
    record = start_run(docker_pipeline, repo, reports, ["dockerfiles"], {"unsafe_fixes": "1", "attempts": "1"})
    bad, _ = verdict_for(record, "apt-no-recommends")
    good, verdict = verdict_for(record, "cache-mounts")
    assert bad.status is ChangeStatus.reverted
    assert good.status is ChangeStatus.committed and verdict.accepted
    assert any(n.startswith("fix re-run: made again on") for n in good.notes)
    dockerfile = git(repo, "show", f"{record.run.branch}:services/api/Dockerfile")
    assert "--mount=type=cache" in dockerfile and "COPY shared/lib.py" in dockerfile
    assert "--no-install-recommends" not in dockerfile
    assert git(repo, "rev-parse", record.run.branch) == good.commit
