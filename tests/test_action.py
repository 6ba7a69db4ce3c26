"""The GitHub Action (action.yml) and the workflow that uses it, validated with check-jsonschema's vendored
schemas (the real CLI, as a user's CI would run it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.generate.workflow import workflow_file
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from tests.conftest import ROOT
from tests.rulekit import write

COMPOSE = {
    "docker-compose.yml": "services:\n  api:\n    build: ./api\n",
    "api/Dockerfile": "FROM python:3.12-slim\nCOPY app.py /app/\n",
    "api/app.py": "print(1)\n",
}


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run([str(exe), "--builtin-schema", schema, str(path)], capture_output=True, text=True)


def generated(tmp_path: Path, files: dict[str, str]) -> Path:
    text = workflow_file(Project(DirTree(write(tmp_path / "repo", files))))
    out = tmp_path / "docker-build.yml"
    out.write_text(text)
    return out


def test_action_yml_is_a_valid_composite_action_with_path_fail_on_and_version():
    done = check_jsonschema("vendor.github-actions", ROOT / "action.yml")

    assert done.returncode == 0, done.stdout + done.stderr
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert sorted(action["inputs"]) == ["fail-on", "path", "version"]
    steps = action["runs"]["steps"]
    assert any('python -m pip install --quiet "$ACTION_PATH"' in s.get("run", "") for s in steps)
    assert any('pipeline analyze --repo "$TARGET" --format sarif' in s.get("run", "") for s in steps)
    assert any(s.get("uses", "").startswith("github/codeql-action/upload-sarif@") for s in steps)


def test_the_workflow_uses_the_action_named_in_pipeline_yaml_and_is_a_valid_workflow(tmp_path):
    path = generated(tmp_path, {**COMPOSE, ".pipeline.yaml": "ci-action: acme/agent-pipelines@v0.1.0\n"})

    done = check_jsonschema("vendor.github-workflows", path)

    assert done.returncode == 0, done.stdout + done.stderr
    analyze = yaml.safe_load(path.read_text())["jobs"]["analyze"]
    assert analyze["steps"][1] == {
        "name": "Analyze, and upload the findings to code scanning",
        "uses": "acme/agent-pipelines@v0.1.0",
        "with": {"path": ".", "fail-on": "error"},
    }
    assert "if" not in analyze and "PIPELINE_ANALYZER" not in path.read_text()


def test_in_the_analyzers_own_repository_the_workflow_uses_the_action_at_its_root_and_is_valid(tmp_path):
    own = {**COMPOSE, "pyproject.toml": (ROOT / "pyproject.toml").read_text()}
    path = generated(tmp_path, own)

    done = check_jsonschema("vendor.github-workflows", path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert yaml.safe_load(path.read_text())["jobs"]["analyze"]["steps"][1]["uses"] == "./"


def test_without_a_configured_action_the_workflow_is_still_valid_and_says_what_turns_it_on(tmp_path):
    path = generated(tmp_path, COMPOSE)

    done = check_jsonschema("vendor.github-workflows", path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "if: ${{ vars.PIPELINE_ANALYZER != '' }}" in path.read_text()


def test_a_malformed_ci_action_is_a_config_note_and_not_written(tmp_path):
    path = generated(tmp_path, {**COMPOSE, ".pipeline.yaml": "ci-action: 'acme/x@v1; rm -rf /'\n"})

    assert "rm -rf" not in path.read_text() and "vars.PIPELINE_ANALYZER" in path.read_text()
    notes = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent_pipelines.engine.cli",
            "analyze",
            "--repo",
            str(tmp_path / "repo"),
            "--format",
            "json",
            "--no-hadolint",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert "ci-action must be owner/repo@ref" in notes.stdout
