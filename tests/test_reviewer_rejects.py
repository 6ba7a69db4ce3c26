"""The reviewer rejects the real failures this project exists to avoid, and removes them from the branch.

Each test makes a fix misbehave the way the report's "optimization" did and
checks the change is reverted with the gate that caught it.
"""

from __future__ import annotations

import pytest

from agent_pipelines.engine.artifacts import ChangeStatus
from agent_pipelines.engine.runs import start_run
from agent_pipelines.pipelines.docker_optimization.rules import pack
from tests.conftest import git, make_repo

REPO = {
    "compose.yaml": (
        "services:\n  api:\n    build:\n      context: .\n      dockerfile: services/api/Dockerfile\n"
        "    image: shop/api:1\n    deploy:\n      resources:\n        limits:\n          memory: 512M\n"
    ),
    "services/api/Dockerfile": (
        "FROM python:3.12-slim\nWORKDIR /srv\nCOPY shared/lib.py /srv/lib.py\n"
        "COPY services/api/requirements.txt /srv/requirements.txt\n"
        "RUN pip install --no-cache-dir -r /srv/requirements.txt\n"
        'COPY services/api/app.py /srv/app.py\nUSER nobody\nCMD ["python", "/srv/app.py"]\n'
    ),
    "services/api/requirements.txt": "six==1.16.0\n",
    "services/api/app.py": "print('api')\n",
    "services/api/tests/test_app.py": "def test(): pass\n",
    "shared/lib.py": "X = 1\n",
    ".pipeline.yaml": "policy:\n  services:\n    api: {cpus: '0.5'}\n",  # so compose-cpu is safe
}


def misbehave(monkeypatch, group: str, edit) -> None:
    """Replace one fix's function by ``edit(project, task) -> {path: text}``."""
    monkeypatch.setattr(pack().fixes()[group], "apply", lambda project, task, design: edit(project, task))


def run(tmp_path, reports, docker_pipeline):
    repo = make_repo(tmp_path / "repo", REPO)
    return repo, start_run(docker_pipeline, repo, reports, ["dockerfiles", "compose"])


def rejected(record, group: str):
    tasks = {t.id: t for t in record.plan.tasks if t.fix == group}
    [change] = [c for c in record.changes if c.task_id in tasks]
    [verdict] = [v for v in record.verdicts if v.task_id == change.task_id]
    assert change.status is ChangeStatus.reverted and not verdict.accepted
    return verdict


def test_copy_paths_rewritten_to_leave_the_context_are_reverted(tmp_path, reports, docker_pipeline, monkeypatch):
    def to_shared(project, task):
        text = project.text(task.file).replace("COPY shared/lib.py", "COPY ../shared/lib.py")
        return {
            task.file: text.replace("RUN pip", "RUN --mount=type=cache,target=/root/.cache/pip pip").replace(
                " --no-cache-dir", ""
            )
        }

    misbehave(monkeypatch, "cache-mounts", to_shared)
    repo, record = run(tmp_path, reports, docker_pipeline)
    verdict = rejected(record, "cache-mounts")
    assert "../shared/lib.py leaves the build context ." in verdict.reason
    assert "COPY shared/lib.py" in git(repo, "show", f"{record.run.branch}:services/api/Dockerfile")


def test_a_cache_mount_beside_no_cache_dir_is_reverted(tmp_path, reports, docker_pipeline, monkeypatch):
    def mount_only(project, task):
        return {
            task.file: project.text(task.file).replace("RUN pip", "RUN --mount=type=cache,target=/root/.cache/pip pip")
        }

    misbehave(monkeypatch, "cache-mounts", mount_only)
    repo, record = run(tmp_path, reports, docker_pipeline)
    verdict = rejected(record, "cache-mounts")
    assert "no new findings: new: CA002 in services/api/Dockerfile" in verdict.reason
    assert "--mount=type=cache" not in git(repo, "show", f"{record.run.branch}:services/api/Dockerfile")


def test_a_dockerignore_that_excludes_a_copied_file_is_reverted(tmp_path, reports, docker_pipeline, monkeypatch):
    misbehave(monkeypatch, "dockerignore", lambda project, task: {task.file: "**/tests\nshared\n"})
    repo, record = run(tmp_path, reports, docker_pipeline)
    verdict = rejected(record, "dockerignore")
    assert "shared/lib.py is excluded by .dockerignore" in verdict.reason
    assert ".dockerignore" not in git(repo, "ls-tree", "--name-only", record.run.branch)


def test_a_compose_edit_that_changes_another_key_is_reverted(tmp_path, reports, docker_pipeline, monkeypatch):
    def limits_and_image(project, task):
        text = project.text(task.file).replace("memory: 512M\n", "memory: 512M\n          cpus: '0.5'\n")
        return {task.file: text.replace("image: shop/api:1", "image: shop/api:2")}

    misbehave(monkeypatch, "compose-cpu", limits_and_image)
    repo, record = run(tmp_path, reports, docker_pipeline)
    verdict = rejected(record, "compose-cpu")
    assert "changed only the intended keys" in verdict.reason and "services/api/image" in verdict.reason
    assert "shop/api:1" in git(repo, "show", f"{record.run.branch}:compose.yaml")


@pytest.mark.parametrize("group", ["cache-mounts", "dockerignore", "compose-cpu"])
def test_the_same_fixes_unbroken_are_accepted(tmp_path, reports, docker_pipeline, group):
    repo, record = run(tmp_path, reports, docker_pipeline)
    tasks = {t.id for t in record.plan.tasks if t.fix == group}
    assert tasks and all(v.accepted for v in record.verdicts if v.task_id in tasks)
