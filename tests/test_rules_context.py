"""CX001 (context without .dockerignore) and the .dockerignore it writes."""

from __future__ import annotations

from tests.conftest import make_repo
from tests.rulekit import codes, fixed
from pipelines.docker_optimization.fixes.context import HEADER

COMPOSE = "services:\n  app:\n    build: ./app\n"


def test_cx001_triggers_on_a_context_with_tests_and_no_dockerignore(tmp_path):
    files = {"compose.yaml": COMPOSE, "app/Dockerfile": "FROM python:3.12\nCOPY . .\n", "app/tests/t.py": "x\n"}
    assert codes(tmp_path, files, "CX001") == [("app/.dockerignore", 0)]


def test_cx001_is_quiet_with_a_dockerignore_or_one_beside_the_dockerfile(tmp_path):
    files = {"compose.yaml": COMPOSE, "app/Dockerfile": "FROM python:3.12\nCOPY . .\n", "app/tests/t.py": "x\n",
             "app/Dockerfile.dockerignore": "tests\n"}
    assert codes(tmp_path, files, "CX001") == []


def test_cx001_is_quiet_on_a_small_clean_context(tmp_path):
    files = {"compose.yaml": COMPOSE, "app/Dockerfile": "FROM python:3.12\nCOPY main.py .\n", "app/main.py": "x\n"}
    assert codes(tmp_path, files, "CX001") == []


def test_the_written_dockerignore_excludes_tests_and_gitignored_dirs_but_no_copy_source(tmp_path):
    files = {"compose.yaml": COMPOSE, ".gitignore": "node_modules/\n",
             "app/Dockerfile": "FROM node:20\nCOPY package.json .\nCOPY docs/api.md docs/\nCOPY . .\n",
             "app/package.json": "{}\n", "app/tests/t.js": "x\n", "app/docs/api.md": "y\n", "app/docs/other.md": "z\n"}
    make_repo(tmp_path, files)
    assert fixed(tmp_path, {}, "CX001") == {"app/.dockerignore": HEADER + "**/node_modules\n**/tests\n"}


def test_tests_stay_in_the_context_when_the_build_runs_them(tmp_path):
    files = {"compose.yaml": COMPOSE, "app/Dockerfile": "FROM python:3.12\nCOPY . .\nRUN pytest tests\n",
             "app/tests/t.py": "x\n", "app/docs/d.md": "d\n"}
    assert fixed(tmp_path, files, "CX001") == {"app/.dockerignore": HEADER + "**/docs\n"}
