"""The project's indexes and shortcuts give what the plain definitions give."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.model.compose import is_compose_file
from agent_pipelines.pipelines.docker_optimization.model.paths import span
from agent_pipelines.pipelines.docker_optimization.model.project import _MAYBE_BUILD_FILE, Project, is_dockerfile
from tests.rulekit import write

_PARTS = st.sampled_from(
    [
        "Dockerfile",
        "dockerfile",
        "DOCKERFILE",
        "DockerFile",
        "compose",
        "Compose",
        "docker-",
        ".",
        "yml",
        "yaml",
        "dev",
        "api",
        "/",
        "x",
        ".dockerignore",
        "-",
    ]
)


@given(st.lists(_PARTS, min_size=1, max_size=6).map("".join))
@settings(max_examples=500, deadline=None)
def test_the_quick_filter_never_drops_a_dockerfile_or_a_compose_file(path):
    if is_dockerfile(path) or is_compose_file(path):
        assert _MAYBE_BUILD_FILE.search(path)


def test_contexts_are_indexed_by_directory_and_by_dockerfile(tmp_path):
    repo = write(
        tmp_path,
        {
            "compose.yaml": "services:\n  api:\n    build: ./api\n  api-test:\n    build: {context: ., dockerfile: api/Dockerfile}\n",
            "api/Dockerfile": "FROM python:3.12-slim\n",
            "tools/Dockerfile": "FROM alpine:3.20\n",
        },
    )
    project = Project(DirTree(repo))
    assert [(c.dir, c.dockerfile) for c in project.contexts_of("api/Dockerfile")] == [
        ("api", "api/Dockerfile"),
        (".", "api/Dockerfile"),
    ]
    assert [c.dockerfile for c in project.contexts_in(".")] == ["api/Dockerfile"]
    assert [(c.dockerfile, c.inferred) for c in project.contexts_in("tools")] == [("tools/Dockerfile", True)]
    assert project.contexts_in("nowhere") == [] and project.contexts_of("nowhere/Dockerfile") == []
    assert list(project.files_under(".")) == sorted(project.files)


def test_sends_answers_as_sent_does_without_listing(tmp_path):
    repo = write(
        tmp_path,
        {
            "compose.yaml": "services:\n  api:\n    build: ./api\n",
            "api/Dockerfile": "FROM python:3.12-slim\n",
            "api/.dockerignore": "**/*.pyc\ntests\n!tests/keep.py\n",
            "api/app.py": "",
            "api/app.pyc": "",
            "api/tests/t.py": "",
            "api/tests/keep.py": "",
        },
    )
    (ctx,) = Project(DirTree(repo)).contexts
    asked = ["app.py", "app.pyc", "tests/t.py", "tests/keep.py", "Dockerfile", "missing.py"]
    answers = [ctx.sends(p) for p in asked]  # before anything lists the context
    assert answers == [p in ctx.sent() for p in asked] == [True, False, False, True, True, False]
    assert [ctx.sends(p) for p in asked] == answers  # and after


@given(st.lists(st.lists(_PARTS, min_size=1, max_size=4).map("".join), max_size=30), _PARTS)
@settings(max_examples=300, deadline=None)
def test_span_is_exactly_the_run_of_paths_with_the_prefix(paths, prefix):
    paths = sorted(set(paths) | {prefix + "\U0010ffff", prefix + "\U0010ffff/x"})
    lo, hi = span(paths, prefix)
    assert paths[lo:hi] == [p for p in paths if p.startswith(prefix)]
    assert span(paths, "") == (0, len(paths)) and span(paths, prefix, hi) == (hi, hi)
