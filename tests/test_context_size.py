"""A context's size counted from index ranges is the size of what ``Context.sent()`` lists."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.model.context_size import (
    TOP_FILES,
    SentSize,
    _from_listing,
    sent_size,
)
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from tests.rulekit import write

_SEGMENTS = st.sampled_from(["a", "b", "src", "node_modules", "tests", "x.pyc", ".env", "keep", "docs", "a.md"])
_FILES = st.dictionaries(
    st.lists(_SEGMENTS, min_size=1, max_size=4).map("/".join), st.integers(0, 50), min_size=1, max_size=25
)
_PATTERNS = st.lists(
    st.sampled_from(
        [
            "node_modules",
            "**/node_modules",
            "*.pyc",
            "**/*.pyc",
            "src",
            "src/a",
            "tests",
            "**/tests",
            "a/**/b",
            ".env",
            "docs/*.md",
            "*.md",
            "b/*/keep",
            "[^a]*",
            "!src/keep",
            "!**/keep",
            "a",
            "./src/../docs",
            "nothing/here",
        ]
    ),
    max_size=6,
)


def project_with(files: dict[str, int], ignore: list[str], root) -> Project:
    tree = {
        f"svc/{path}": "x" * size
        for path, size in files.items()
        if not any(f"svc/{path}".startswith(f"svc/{other}/") for other in files)
    }  # no file is also a directory
    tree["svc/Dockerfile"] = "FROM alpine:3.20\n"
    tree["svc/.dockerignore"] = "\n".join(ignore) + "\n"
    tree["compose.yaml"] = (
        "services:\n  a:\n    build: ./svc\n  b:\n    build: {context: ., dockerfile: svc/Dockerfile}\n"
    )
    return Project(DirTree(write(root, tree)))


@given(files=_FILES, ignore=_PATTERNS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_counted_size_is_the_listed_size(tmp_path_factory, files, ignore):
    project = project_with(files, ignore, tmp_path_factory.mktemp("repo"))
    for ctx in project.contexts:
        assert sent_size(ctx) == _from_listing(ctx.sent()), (ctx.dir, ignore)


def test_what_a_context_sends_by_top_level_entry(tmp_path):
    project = project_with(
        {"src/app.py": 10, "src/app.pyc": 7, "tests/t.py": 5, "README.md": 3, "a.txt": 2},
        ["**/*.pyc", "tests", "*.md"],
        tmp_path,
    )
    (svc,) = [c for c in project.contexts if c.dir == "svc"]
    dockerignore = len("**/*.pyc\ntests\n*.md\n")
    assert sent_size(svc) == SentSize(
        files=4, bytes=10 + 2 + dockerignore + 17, by_top={"src/": (1, 10), TOP_FILES: (3, 2 + dockerignore + 17)}
    )
