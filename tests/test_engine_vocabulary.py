"""The engine speaks no Docker: a pipeline brings the domain, the engine names none of its words.

Every line of engine/*.py counts, comments and docstrings included: a comment that says "hadolint" is how
a Docker assumption starts living in the framework. What a pipeline needs from the CLI it declares
(``PipelineSpec.options``, ``analyze_options``); see tests/test_cli_options.py.
"""

from __future__ import annotations

import re
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"
DOCKER_WORDS = re.compile(r"docker|hadolint|\bcompose\b|\bbake\b|buildkit|buildx|\bmoby\b", re.IGNORECASE)


def docker_lines() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(ENGINE.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if DOCKER_WORDS.search(line):
                found.setdefault(str(path.relative_to(ENGINE)), []).append(f"{number}: {line.strip()}")
    return found


def test_the_engine_names_no_docker_word():
    found = docker_lines()
    assert found == {}


def test_the_vocabulary_check_finds_a_docker_word_where_there_is_one(tmp_path):
    assert DOCKER_WORDS.search("    # run hadolint on the Dockerfile")
    assert DOCKER_WORDS.search("compose files") and DOCKER_WORDS.search("docker-bake.hcl")
    assert not DOCKER_WORDS.search("the composed summary of a baked-in option")
