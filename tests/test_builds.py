"""Real builds: measured before/after figures through a Docker engine, and honest gaps without one."""

from __future__ import annotations

import pytest

from engine.artifacts import Method
from engine.runs import start_run
from engine.tree import DirTree
from pipelines.docker_optimization.builds import (
    _append_line, build, docker, probe, touch_targets, unique_blank_line, verify_build,
)
from pipelines.docker_optimization.project import Project
from tests.conftest import make_repo

SERVICE = {
    "compose.yaml": "services:\n  worker:\n    build: ./worker\n    deploy:\n      resources:\n        limits:\n          cpus: '0.5'\n",
    "worker/Dockerfile": ("FROM python:3.12-slim\nWORKDIR /app\nCOPY requirements.txt .\n"
                          "RUN pip install --no-cache-dir -r requirements.txt\nCOPY app.py .\nCMD [\"python\", \"app.py\"]\n"),
    "worker/requirements.txt": "six==1.16.0\n",
    "worker/app.py": "print('hi')\n",
}


def engine_or_skip():
    engine = probe()
    if not engine.ok:
        pytest.skip(engine.reason)
    return engine


def test_without_an_engine_the_figures_say_not_measured_and_why(tmp_path, reports, docker_pipeline, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr("pipelines.docker_optimization.builds.DEFAULT_SOCKET", tmp_path / "no.sock")
    repo = make_repo(tmp_path / "repo", SERVICE)
    record = start_run(docker_pipeline, repo, reports, ["dockerfiles"], {"builds": "auto"})
    gaps = [m for m in record.measurements if m.method is Method.not_measured]
    assert {m.name for m in gaps} == {"cold build", "rebuild after a source change", "rebuild after a dependency change"}
    assert all(m.value is None and "no Docker engine" in m.how for m in gaps)
    summary = (reports / record.run.run_id / "summary.md").read_text()
    assert "not measured (no Docker engine" in summary


@pytest.mark.docker
def test_a_real_measurement_times_base_and_head_for_the_changed_service(tmp_path, reports, docker_pipeline):
    engine_or_skip()
    repo = make_repo(tmp_path / "repo", SERVICE)
    record = start_run(docker_pipeline, repo, reports, ["dockerfiles"], {"builds": "auto", "build_repeats": "1"})
    measured = {m.name: m for m in record.measurements if m.method is Method.measured and m.subject == "worker"}
    assert set(measured) >= {"cold build", "rebuild after a source change", "rebuild after a dependency change",
                             "image size", "image layers"}, [m.how for m in record.measurements]
    for figure in measured.values():
        assert figure.value is not None and figure.value > 0 and figure.baseline is not None and figure.baseline > 0
    assert "a unique blank line appended to requirements.txt" in measured["rebuild after a dependency change"].how
    assert "a unique blank line appended to app.py" in measured["rebuild after a source change"].how
    summary = (reports / record.run.run_id / "summary.md").read_text()
    assert "| rebuild after a dependency change | worker |" in summary and "| measured |" in summary


@pytest.mark.docker
def test_a_service_whose_base_image_cannot_be_pulled_is_not_measured(tmp_path, reports, docker_pipeline):
    engine_or_skip()
    files = {**SERVICE, "worker/Dockerfile": SERVICE["worker/Dockerfile"].replace(
        "python:3.12-slim", "registry.invalid/nothing/here:1")}
    repo = make_repo(tmp_path / "repo", files)
    record = start_run(docker_pipeline, repo, reports, ["dockerfiles"], {"builds": "auto", "build_repeats": "1"})
    assert record.status == "completed"
    gaps = [m for m in record.measurements if m.subject == "worker" and m.method is Method.not_measured]
    assert len(gaps) == 3
    assert all("registry.invalid/nothing/here:1 is not present and can't be pulled" in m.how for m in gaps)


@pytest.mark.docker
def test_verify_build_passes_a_good_context_and_fails_a_broken_one(tmp_path):
    engine_or_skip()
    good = make_repo(tmp_path / "good", SERVICE)
    [ctx] = Project(DirTree(good)).contexts
    assert verify_build(good, ctx)[0] is True
    broken = make_repo(tmp_path / "broken", {**SERVICE, "worker/Dockerfile": "FROM python:3.12-slim\nRUN exit 3\n"})
    [ctx] = Project(DirTree(broken)).contexts
    passed, detail = verify_build(broken, ctx)
    assert passed is False and "exit" in detail.lower()


@pytest.mark.docker
def test_the_example_repo_gets_measured_rebuild_times_for_each_python_service(example_repo, reports, docker_pipeline):
    engine_or_skip()
    record = start_run(docker_pipeline, example_repo, reports, ["dockerfiles"], {"builds": "auto", "build_repeats": "1"})
    assert record.status == "completed", record.error
    for service in ("api", "worker", "billing"):
        figures = {m.name: m for m in record.measurements if m.subject == service}
        for name in ("cold build", "rebuild after a source change", "rebuild after a dependency change"):
            assert figures[name].method is Method.measured, figures[name].how
            assert figures[name].value > 0 and figures[name].baseline > 0
    web = [m for m in record.measurements if m.subject == "web" and m.name == "cold build"]
    assert web and web[0].method is Method.not_measured and "node:20-slim" in web[0].how
    summary = (reports / record.run.run_id / "summary.md").read_text()
    assert "| rebuild after a dependency change | billing |" in summary


def test_each_appended_line_is_new_and_only_whitespace():
    lines = {unique_blank_line() for _ in range(1000)}
    assert len(lines) == 1000
    assert all(line.strip() == b"" and line.startswith(b"\n") and line.endswith(b"\n") for line in lines)


@pytest.mark.docker
def test_a_changed_file_is_rebuilt_even_when_an_earlier_run_made_the_same_change(tmp_path):
    """The layer cache must not answer for a "source change": the same scenario run twice on the same
    content (as every CI run does) builds a new image each time."""
    engine_or_skip()
    repo = make_repo(tmp_path / "repo", SERVICE)
    (ctx,) = Project(DirTree(repo)).contexts
    original = (repo / "worker" / "app.py").read_bytes()
    images = []
    for _ in range(2):
        (repo / "worker" / "app.py").write_bytes(original)   # the same starting point both times
        assert build(repo, ctx, "pipeline-test/append:1")[0] is not None
        _append_line(repo, ctx, "app.py")
        assert build(repo, ctx, "pipeline-test/append:1")[0] is not None
        images.append(docker("image", "inspect", "--format", "{{.Id}}", "pipeline-test/append:1").stdout.strip())
    docker("image", "rm", "-f", "pipeline-test/append:1", timeout=60)
    assert images[0] != images[1]


def test_the_changed_files_are_the_services_own_when_its_context_is_the_repository(tmp_path):
    repo = make_repo(tmp_path / "repo", {
        "compose.yaml": "services:\n  api:\n    build: {context: ., dockerfile: services/api/Dockerfile}\n",
        "services/api/Dockerfile": "FROM python:3.12-slim\nCOPY . /src\nRUN pip install -r /src/services/api/requirements.txt\n",
        "services/api/requirements.txt": "six\n", "services/api/app.py": "",
        "libs/common/pyproject.toml": "[project]\nname = 'common'\n", "libs/common/common.py": "",
    })
    (ctx,) = Project(DirTree(repo)).contexts
    assert touch_targets(ctx) == ("services/api/app.py", "services/api/requirements.txt")
