"""PX006: a .dockerignore Docker refuses is a finding, and the context's other rules read it as empty."""

from __future__ import annotations

from agent_pipelines.pipelines.docker_optimization.analysis import analyze
from tests.rulekit import codes, write

APP = {"api/Dockerfile": "FROM python:3.12-slim\nCOPY app.py .\n", "api/app.py": ""}


def test_px006_triggers_on_a_pattern_docker_refuses(tmp_path):
    write(tmp_path, APP | {"api/.dockerignore": "[a-]\n"})
    assert [(f.file, f.line, f.message) for f in analyze(tmp_path) if f.rule == "PX006"] == [
        (
            "api/.dockerignore",
            0,
            "Docker refuses this ignore file: invalid .dockerignore pattern '[a-]': bad character class",
        )
    ]


def test_px006_is_quiet_on_the_escaped_pattern(tmp_path):
    assert codes(tmp_path, APP | {"api/.dockerignore": "[a\\-]\n"}, "PX006") == []


def test_px006_reports_an_ignore_file_once_though_two_contexts_read_it(tmp_path):
    compose = (
        "services:\n  api:\n    build: ./api\n  api-debug:\n    build: {context: ./api, dockerfile: Dockerfile.debug}\n"
    )
    files = APP | {
        "compose.yaml": compose,
        "api/Dockerfile.debug": "FROM python:3.12\nCOPY app.py .\n",
        "api/.dockerignore": "[a-]\n",
    }
    assert codes(tmp_path, files, "PX006") == [("api/.dockerignore", 0)]


def test_a_refused_dockerignore_excludes_nothing(tmp_path):
    # Docker fails the build on it, so the rules read it as no ignore file: the .env it meant to keep out is sent.
    files = APP | {"api/.dockerignore": "[a-]\n**/.env\n", "api/.env": "KEY=1\n"}
    assert codes(tmp_path, files, "SE006") == [("api/.env", 0)]
    assert codes(tmp_path, {"api/.dockerignore": "[a\\-]\n**/.env\n"}, "SE006") == []
