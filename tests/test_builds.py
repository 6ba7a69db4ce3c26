"""Real builds: measured before/after figures through a Docker engine, and honest gaps without one."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from agent_pipelines.engine.artifacts import Method
from agent_pipelines.engine.runs import start_run
from agent_pipelines.engine.tree import DirTree, GitTree
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.ops.builds import (
    SCENARIOS,
    _append_line,
    build,
    changed_builds,
    changed_paths,
    docker,
    measure_services,
    probe,
    touch_targets,
    unique_blank_line,
    verify_build,
)
from tests.conftest import child_processes, cli, git, make_repo

SERVICE = {
    "compose.yaml": "services:\n  worker:\n    build: ./worker\n    deploy:\n      resources:\n        limits:\n          cpus: '0.5'\n",
    "worker/Dockerfile": (
        "FROM python:3.12-slim\nWORKDIR /app\nCOPY requirements.txt .\n"
        'RUN pip install --no-cache-dir -r requirements.txt\nCOPY app.py .\nCMD ["python", "app.py"]\n'
    ),
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
    monkeypatch.setattr("agent_pipelines.pipelines.docker_optimization.ops.builds.DEFAULT_SOCKET", tmp_path / "no.sock")
    repo = make_repo(tmp_path / "repo", SERVICE)
    record = start_run(docker_pipeline, repo, reports, ["dockerfiles"], {"builds": "auto"})
    gaps = [m for m in record.measurements if m.method is Method.not_measured]
    assert {m.name for m in gaps} == {name for _, name in SCENARIOS}
    assert all(m.value is None and "no Docker engine" in m.how for m in gaps)
    summary = (reports / record.run.run_id / "summary.md").read_text()
    assert "not measured (no Docker engine" in summary


@pytest.mark.docker
def test_a_real_measurement_times_base_and_head_for_the_changed_service(tmp_path, reports, docker_pipeline):
    engine_or_skip()
    repo = make_repo(tmp_path / "repo", SERVICE)
    record = start_run(docker_pipeline, repo, reports, ["dockerfiles"], {"builds": "auto", "build_repeats": "1"})
    measured = {m.name: m for m in record.measurements if m.method is Method.measured and m.subject == "worker"}
    assert set(measured) >= {name for _, name in SCENARIOS} | {"image size", "image layers"}, [
        m.how for m in record.measurements
    ]
    for figure in measured.values():
        assert figure.value is not None and figure.value > 0 and figure.baseline is not None and figure.baseline > 0
    assert "a unique blank line appended to requirements.txt" in measured["rebuild after a dependency change"].how
    assert "a unique blank line appended to app.py" in measured["rebuild after a source change"].how
    assert (
        "--no-cache: no layer cache, and BuildKit cache mounts start empty too" in measured["build with no cache"].how
    )
    summary = (reports / record.run.run_id / "summary.md").read_text()
    assert "| rebuild after a dependency change | worker |" in summary and "| measured |" in summary


@pytest.mark.docker
def test_a_service_whose_base_image_cannot_be_pulled_is_not_measured(tmp_path, reports, docker_pipeline):
    engine_or_skip()
    files = {
        **SERVICE,
        "worker/Dockerfile": SERVICE["worker/Dockerfile"].replace(
            "python:3.12-slim", "registry.invalid/nothing/here:1"
        ),
    }
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
    record = start_run(
        docker_pipeline, example_repo, reports, ["dockerfiles"], {"builds": "auto", "build_repeats": "1"}
    )
    assert record.status == "completed", record.error
    for service in ("api", "worker", "billing"):
        figures = {m.name: m for m in record.measurements if m.subject == service}
        for _, name in SCENARIOS:
            assert figures[name].method is Method.measured, figures[name].how
            assert figures[name].value > 0 and figures[name].baseline > 0
    web = [m for m in record.measurements if m.subject == "web" and m.name == "build with no cache"]
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
        (repo / "worker" / "app.py").write_bytes(original)  # the same starting point both times
        assert build(repo, ctx, "pipeline-test/append:1")[0] is not None
        _append_line(repo, ctx, "app.py")
        assert build(repo, ctx, "pipeline-test/append:1")[0] is not None
        images.append(docker("image", "inspect", "--format", "{{.Id}}", "pipeline-test/append:1").stdout.strip())
    docker("image", "rm", "-f", "pipeline-test/append:1", timeout=60)
    assert images[0] != images[1]


def test_the_changed_files_are_the_services_own_when_its_context_is_the_repository(tmp_path):
    repo = make_repo(
        tmp_path / "repo",
        {
            "compose.yaml": "services:\n  api:\n    build: {context: ., dockerfile: services/api/Dockerfile}\n",
            "services/api/Dockerfile": "FROM python:3.12-slim\nCOPY . /src\nRUN pip install -r /src/services/api/requirements.txt\n",
            "services/api/requirements.txt": "six\n",
            "services/api/app.py": "",
            "libs/common/pyproject.toml": "[project]\nname = 'common'\n",
            "libs/common/common.py": "",
        },
    )
    (ctx,) = Project(DirTree(repo)).contexts
    assert touch_targets(ctx) == ("services/api/app.py", "services/api/requirements.txt")


# -- which builds a change touched: real git repositories, no engine needed --------------------------------------

SHOP = {
    "compose.yaml": (
        "services:\n"
        "  api:\n    build: {context: ., dockerfile: services/api/Dockerfile}\n"
        "  web:\n    build: ./services/web\n"
        "  docs:\n    build: {context: ./site, dockerfile: ../docker/docs.Dockerfile}\n"
    ),
    ".dockerignore": "**/node_modules\n*.md\n",
    "services/api/Dockerfile": "FROM python:3.12-slim\nCOPY . /src\n",
    "services/api/app.py": "print('api')\n",
    "services/web/Dockerfile": "FROM python:3.12-slim\nCOPY . /web\n",
    "services/web/Dockerfile.dockerignore": "node_modules\nnotes.txt\n.dockerignore\n",
    "services/web/.dockerignore": "*.py\n",
    "services/web/server.py": "print('web')\n",
    "services/web/notes.txt": "todo\n",
    "services/web/node_modules/left-pad/index.js": "module.exports = 1\n",
    "docker/docs.Dockerfile": "FROM python:3.12-slim\nCOPY . /site\n",
    "site/index.html": "<h1>docs</h1>\n",
    "README.md": "# shop\n",
}


def rebuilt_by(tmp_path: Path, edits: dict[str, str | None], files: dict[str, str] = SHOP) -> dict[str, list[str]]:
    """Commit ``files``, then ``edits`` (None deletes a file); the services whose build the second commit touched,
    each with the changed paths that count for it."""
    repo = make_repo(tmp_path / "repo", files)
    base = git(repo, "rev-parse", "HEAD")
    for rel, text in edits.items():
        if text is None:
            (repo / rel).unlink()
        else:
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text, encoding="utf-8")
    git(repo, "add", "--all", "--force")
    git(repo, "commit", "--quiet", "-m", "change")
    head = git(repo, "rev-parse", "HEAD")
    found = changed_builds(Project(GitTree(repo, base)), Project(GitTree(repo, head)), changed_paths(repo, base, head))
    return {", ".join(b.head.services): list(b.paths) for b in found}


def test_a_source_change_rebuilds_only_the_services_whose_context_sends_it(tmp_path):
    assert rebuilt_by(tmp_path, {"services/web/server.py": "print('web 2')\n"}) == {
        "api": ["services/web/server.py"],
        "web": ["services/web/server.py"],
    }  # web's own ignore file wins
    assert rebuilt_by(tmp_path / "2", {"site/index.html": "<h1>docs 2</h1>\n"}) == {
        "api": ["site/index.html"],
        "docs": ["site/index.html"],
    }


def test_a_change_to_a_file_the_ignore_file_excludes_rebuilds_nothing(tmp_path):
    edits = {"services/web/node_modules/left-pad/index.js": "module.exports = 2\n", "README.md": "# shop 2\n"}
    assert rebuilt_by(tmp_path, edits) == {}


def test_only_the_ignore_file_buildkit_uses_counts(tmp_path):
    # web builds with services/web/Dockerfile.dockerignore, so services/web/.dockerignore is neither read for it
    # nor sent (the one in use excludes it); it lies inside api's context (the root), whose .dockerignore sends it.
    assert rebuilt_by(tmp_path, {"services/web/.dockerignore": "*.py\n*.txt\n"}) == {
        "api": ["services/web/.dockerignore"]
    }
    assert rebuilt_by(tmp_path / "2", {"services/web/Dockerfile.dockerignore": "node_modules\n"}) == {
        "api": ["services/web/Dockerfile.dockerignore"],
        "web": ["services/web/Dockerfile.dockerignore"],
    }


def test_a_dockerfile_outside_its_context_directory_counts(tmp_path):
    assert rebuilt_by(tmp_path, {"docker/docs.Dockerfile": "FROM python:3.12-slim\nCOPY index.html /site/\n"}) == {
        "api": ["docker/docs.Dockerfile"],
        "docs": ["docker/docs.Dockerfile"],
    }


def test_a_file_that_stops_being_sent_or_starts_being_sent_counts(tmp_path):
    # notes.txt was excluded by web's ignore file; once the ignore file no longer names it, web sends it.
    assert "web" in rebuilt_by(
        tmp_path, {"services/web/Dockerfile.dockerignore": "node_modules\n", "services/web/notes.txt": "done\n"}
    )
    # a deleted file was sent at base: the build changes.
    assert rebuilt_by(tmp_path / "2", {"site/index.html": None}) == {
        "api": ["site/index.html"],
        "docs": ["site/index.html"],
    }


def test_a_renamed_file_counts_where_it_was_and_where_it_is(tmp_path):
    files = {**SHOP, "site/old.html": "<p>old</p>\n"}
    moved = {"site/old.html": None, "services/web/page.html": "<p>old</p>\n"}
    assert rebuilt_by(tmp_path, moved, files) == {
        "api": ["services/web/page.html", "site/old.html"],
        "docs": ["site/old.html"],
        "web": ["services/web/page.html"],
    }


def test_the_build_budget_reaches_the_run_options(tmp_path, reports):
    repo = make_repo(tmp_path / "repo", SERVICE)
    done = cli(
        "run",
        "docker-optimization",
        "--repo",
        str(repo),
        "--reports-dir",
        str(reports),
        "--quiet",
        "--phases",
        "dockerfiles",
        "--builds",
        "off",
        "--build-budget",
        "90",
        "--build-jobs",
        "1",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    options = json.loads(done.stdout)["run"]["options"]
    assert options["build_budget"] == "90.0" and options["build_jobs"] == "1"
    refused = cli("run", "docker-optimization", "--repo", str(repo), "--build-budget", "-1")
    assert refused.returncode == 2 and "--build-budget" in refused.stderr


# -- parallel builds and the budget (a real engine) ---------------------------------------------------------------


def sleepers(seconds: int) -> dict[str, str]:
    """Two services whose build sleeps ``seconds`` (a number no other process on the machine sleeps)."""
    files = {"compose.yaml": "services:\n  one:\n    build: ./one\n  two:\n    build: ./two\n"}
    for name in ("one", "two"):
        files[f"{name}/Dockerfile"] = f"FROM debian:bookworm-slim\nCOPY run.sh /\nRUN sleep {seconds}\n"
        files[f"{name}/run.sh"] = "echo hi\n"
    return files


def measured_change(tmp_path: Path, files: dict[str, str]):
    """A repo with ``files`` and a second commit touching both services; (repo, base, head, changed builds)."""
    repo = make_repo(tmp_path / "repo", files)
    base = git(repo, "rev-parse", "HEAD")
    for name in ("one", "two"):
        (repo / name / "run.sh").write_text("echo hello\n", encoding="utf-8")
    git(repo, "commit", "--quiet", "-am", "change")
    head = git(repo, "rev-parse", "HEAD")
    changed = changed_builds(
        Project(GitTree(repo, base)), Project(GitTree(repo, head)), changed_paths(repo, base, head)
    )
    return repo, base, head, changed


def sleeping(seconds: int) -> list[str]:
    """Processes on this machine running ``sleep <seconds>`` (a build's RUN step)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd[:2] == [b"sleep", str(seconds).encode()]:
            found.append(pid)
    return found


@pytest.mark.docker
def test_two_services_build_at_once_when_the_engine_has_two_cpus(tmp_path):
    engine = engine_or_skip()
    if engine.cpus < 2:
        pytest.skip(f"the engine reports {engine.cpus} CPU: it builds one service at a time")
    repo, base, head, changed = measured_change(tmp_path, sleepers(3))
    assert [b.head.services for b in changed] == [["one"], ["two"]]
    started = time.perf_counter()
    figures = measure_services("build", repo, base, head, changed, repeats=1)
    wall = time.perf_counter() - started
    builds = [m for m in figures if m.name == "build with no cache"]
    assert [m.method for m in builds] == [Method.measured] * 2, [m.how for m in figures]
    # Four builds of at least 3 s each (two services, base and head) took less than their sum: they overlapped.
    assert wall < sum(m.value + m.baseline for m in builds)
    assert all("2 services built at once" in m.how for m in builds)


@pytest.mark.docker
def test_a_spent_budget_stops_every_build_and_says_so(tmp_path):
    engine_or_skip()
    seconds = 3917  # far longer than the budget: only a stopped build ends in time
    repo, base, head, changed = measured_change(tmp_path, sleepers(seconds))
    started = time.perf_counter()
    figures = measure_services("build", repo, base, head, changed, repeats=1, budget=8)
    assert time.perf_counter() - started < seconds
    assert {m.subject for m in figures} == {"one", "two"}
    assert all(
        m.method is Method.not_measured and m.how == "not measured (build budget of 8 s spent)" for m in figures
    ), [m.how for m in figures]
    assert child_processes("docker") == []
    deadline = time.monotonic() + 30  # the engine cancels a build whose client is gone; give it a moment to do so
    while sleeping(seconds) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sleeping(seconds) == []


@pytest.mark.docker
def test_no_cache_empties_buildkit_cache_mounts_as_the_label_says(tmp_path):
    """The label of "build with no cache" rests on this: --no-cache starts RUN --mount=type=cache empty."""
    engine_or_skip()
    mount = f"pipeline-test-{time.time_ns()}"  # a cache mount no earlier build used (the engine keeps them)
    repo = make_repo(
        tmp_path / "repo",
        {
            "compose.yaml": "services:\n  counter:\n    build: .\n",
            "Dockerfile": (
                "FROM debian:bookworm-slim\nARG RUN_ID\n"
                f"RUN --mount=type=cache,id={mount},target=/cache "
                "echo $RUN_ID >> /cache/runs && wc -l < /cache/runs > /count\n"
                'RUN test "$(cat /count)" = 1\n'
            ),
        },
    )
    (ctx,) = Project(DirTree(repo)).contexts
    tag = "pipeline-test/cache-mount:1"
    try:
        # A first build fills the mount; a layer-cached rebuild with a new RUN_ID finds it full (the test line fails).
        assert (
            docker(
                "build",
                "--network",
                "host",
                "-q",
                "--build-arg",
                f"RUN_ID={time.time()}",
                "-t",
                tag,
                str(repo),
                timeout=300,
            ).returncode
            == 0
        )
        again = docker(
            "build",
            "--network",
            "host",
            "-q",
            "--build-arg",
            f"RUN_ID={time.time()}",
            "-t",
            tag,
            str(repo),
            timeout=300,
        )
        assert again.returncode != 0, "the cache mount kept nothing between builds"
        assert build(repo, ctx, tag, no_cache=True)[0] is not None  # --no-cache: the mount starts empty
    finally:
        docker("image", "rm", "-f", tag, timeout=60)
