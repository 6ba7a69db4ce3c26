"""Which fixes are safe, and why: a fix is safe only where it cannot change what the image does.

Each test plans the fix on a small repository and reads the task's
applicability and the reason it gives (the planner puts it in the task's
rationale, which the commit message carries).
"""

from __future__ import annotations

import pytest

from agent_pipelines.engine.artifacts import Applicability
from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain
from agent_pipelines.pipelines.docker_optimization.rules import load_all
from tests.rulekit import write

PHASES = ["analysis", "dockerfiles", "compose", "build", "deploy"]


def task_for(root, files, fix):
    write(root, files)
    domain = DockerDomain()
    [task] = [t for t in domain.plan(domain.analyze(root), PHASES, True, root).tasks if t.fix == fix]
    return task


@pytest.mark.parametrize(
    "code, why",
    [
        ("SZ002", "`gcc` without recommends drops `libc6-dev`"),
        ("LY003", "it changes file ownership"),
        ("SZ005", "the package set can change"),
        ("CO003", "the dependent never starts where it used to"),
        ("RL001", "the container's health status changes"),
        ("SE001", "the user changes what the process may read"),
        ("RL005", "it chooses the exact base image"),
    ],
)
def test_fixes_that_can_change_what_the_image_does_are_unsafe_and_their_docs_say_why(code, why):
    rule = load_all()[code]
    assert rule.safety is Applicability.unsafe
    assert why in " ".join(rule.doc.split())


def test_no_install_recommends_is_unsafe_even_for_a_single_package(tmp_path):
    text = "FROM debian:12\nRUN apt-get update && apt-get install -y gcc && rm -rf /var/lib/apt/lists/*\n"
    task = task_for(tmp_path, {"Dockerfile": text}, "apt-no-recommends")
    assert task.applicability is Applicability.unsafe


def test_a_dockerignore_is_safe_when_no_copy_takes_what_it_excludes(tmp_path):
    files = {
        "Dockerfile": 'FROM python:3.12-slim\nCOPY app.py /app/\nCMD ["python", "/app/app.py"]\n',
        "app.py": "print(1)\n",
        "tests/test_app.py": "def test(): pass\n",
    }
    task = task_for(tmp_path, files, "dockerignore")
    assert task.applicability is Applicability.safe
    assert task.rationale.endswith(
        "No COPY/ADD copies what it excludes: the images stay the same; only what is sent changes."
    )


def test_a_dockerignore_is_unsafe_when_copy_dot_would_lose_files_the_app_may_read_and_it_names_them(tmp_path):
    files = {
        "Dockerfile": 'FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nCMD ["python", "app.py"]\n',
        "app.py": "print(1)\n",
        ".env": "MODE=dev\n",
        "tests/test_app.py": "def test(): pass\n",
    }
    task = task_for(tmp_path, files, "dockerignore")
    assert task.applicability is Applicability.unsafe
    assert task.rationale.endswith(
        "Unsafe: a COPY/ADD copies what it excludes, so these leave the image: .env "
        "(the app or a build step may read them)."
    )


def test_tests_and_caches_leaving_an_image_are_safe_unless_its_command_runs_the_tests(tmp_path):
    files = {
        "Dockerfile": 'FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nCMD ["python", "app.py"]\n',
        "app.py": "print(1)\n",
        "tests/test_app.py": "def test(): pass\n",
        "__pycache__/app.cpython-312.pyc": "",
    }
    task = task_for(tmp_path / "a", files, "dockerignore")
    assert task.applicability is Applicability.safe
    assert task.rationale.endswith(
        "Only bytecode caches, tests leave the images (no command runs them): what the images do stays the same."
    )
    runs_tests = {**files, "Dockerfile": files["Dockerfile"].replace('["python", "app.py"]', '["pytest"]')}
    assert task_for(tmp_path / "b", runs_tests, "dockerignore").applicability is Applicability.unsafe


MANIFESTS = {
    "Dockerfile": ('FROM node:20-slim\nWORKDIR /app\nCOPY . .\nRUN npm ci\nCMD ["node", "server.js"]\n'),
    "package.json": '{"name": "web"}\n',
    "package-lock.json": "{}\n",
    "server.js": "1\n",
    ".dockerignore": "tests\n",
}


def test_manifests_first_is_safe_when_the_source_copy_cannot_overwrite_the_install(tmp_path):
    task = task_for(tmp_path, MANIFESTS, "manifests-first")
    assert task.applicability is Applicability.safe


def test_manifests_first_is_unsafe_when_the_context_ships_node_modules_over_the_install(tmp_path):
    task = task_for(tmp_path, {**MANIFESTS, "node_modules/left-pad/index.js": "1\n"}, "manifests-first")
    assert task.applicability is Applicability.unsafe
    assert task.rationale.endswith(
        "Unsafe: the source COPY, now after the install, would overwrite what it "
        "installed with the context's node_modules/left-pad/index.js."
    )


def test_folding_a_pip_upgrade_is_safe_and_dropping_one_is_not(tmp_path):
    fold = "FROM python:3.12-slim\nRUN pip install --upgrade pip\nRUN pip install -r requirements.txt\n"
    files = {"Dockerfile": fold, "requirements.txt": "six\n"}
    assert task_for(tmp_path / "a", files, "fold-pip-upgrade").applicability is Applicability.safe
    drop = 'FROM python:3.12-slim\nRUN pip install --upgrade pip\nCMD ["python"]\n'
    task = task_for(tmp_path / "b", {"Dockerfile": drop}, "fold-pip-upgrade")
    assert task.applicability is Applicability.unsafe
    assert task.rationale.endswith(
        "Unsafe: drops the pip upgrade at line 2, which no pip install follows: the image keeps the base image's pip."
    )


def test_a_change_that_switches_to_a_group_is_reverted_by_the_reviewer(tmp_path, reports, docker_pipeline, monkeypatch):
    from agent_pipelines.engine.runs import start_run
    from agent_pipelines.pipelines.docker_optimization.rules import pack
    from tests.conftest import make_repo

    def to_the_group(project, task, design):  # what a careless edit wrote: the group's name after USER
        text = project.text(task.file)
        return {
            task.file: text.replace(
                "CMD",
                "RUN addgroup --system appgroup && adduser --system --ingroup appgroup appuser\nUSER appgroup\nCMD",
            )
        }

    monkeypatch.setattr(pack().fixes()["non-root-user"], "apply", to_the_group)
    repo = make_repo(tmp_path / "repo", {"Dockerfile": 'FROM python:3.12-slim\nCMD ["python"]\n'})
    record = start_run(docker_pipeline, repo, reports, ["dockerfiles"], {"unsafe_fixes": "1"})
    tasks = {t.id for t in record.plan.tasks if t.fix == "non-root-user"}
    [verdict] = [v for v in record.verdicts if v.task_id in tasks]
    assert not verdict.accepted
    assert verdict.reason == (
        "Dockerfile switches to users, never to groups: USER appgroup names a group the Dockerfile creates, not a user"
    )


def test_the_analysis_report_shows_the_values_an_unsafe_fix_would_use_and_why(tmp_path, reports, docker_pipeline):
    from agent_pipelines.engine.runs import start_run
    from tests.conftest import make_repo

    compose = (
        "services:\n  api:\n    image: api:1\n    deploy:\n      resources:\n        limits:\n          memory: 512M\n"
    )
    repo = make_repo(tmp_path / "repo", {"compose.yaml": compose})
    record = start_run(docker_pipeline, repo, reports, ["compose"])
    assert [c for c in record.changes if c.status.value == "committed"] == []  # unsafe: waits for the flag
    report = (reports / record.run.run_id / "1-analysis.md").read_text()
    assert (
        "- Set CPU limits and reservations for the services in compose.yaml: A compose service has no CPU limit. "
        "CPU limits to write (unsafe: values not all configured): api: cpus 0.5, reservation 0.25 "
        "(derived from its memory limit 512M (1 CPU per GiB, reservation half))."
    ) in report
