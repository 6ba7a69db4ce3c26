"""The `pipeline` command: clear one-line errors with exit 2, and the run/list/show/summary flow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import cli, git


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_directory_that_is_not_a_git_repository_is_refused_with_what_to_do(tmp_path):
    line = one_line_error(
        cli("run", "docker-optimization", "--repo", str(tmp_path), "--reports-dir", str(tmp_path / "r"))
    )
    assert "is not a git repository" in line and "git init" in line


def test_a_bare_repository_is_refused_with_what_to_do(tmp_path):
    subprocess.run(["git", "init", "--bare", "-q", str(tmp_path / "bare.git")], check=True)
    line = one_line_error(
        cli("run", "docker-optimization", "--repo", str(tmp_path / "bare.git"), "--reports-dir", str(tmp_path / "r"))
    )
    assert "bare repository" in line and "git clone" in line


def test_a_repository_without_commits_is_refused_with_what_to_do(tmp_path):
    git(tmp_path, "init", "-q")
    line = one_line_error(
        cli("run", "docker-optimization", "--repo", str(tmp_path), "--reports-dir", str(tmp_path / "r"))
    )
    assert "no commits" in line and "git commit" in line


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "no-such-pipeline"], "no pipeline named 'no-such-pipeline'"),
        (["run", "docker-optimization", "--phases", "dockerfiles,paint"], "unknown phase(s) paint"),
        (["resume", "no-such-run"], "no run 'no-such-run'"),
        (["summary", "no-such-run"], "no run 'no-such-run'"),
        (["analyze", "--format", "xml"], "--format must be md, json or sarif"),
        (["analyze", "--fail-on", "fatal"], "--fail-on must be one of"),
    ],
)
def test_unusable_arguments_exit_2_with_one_line(tmp_path, args, expected):
    line = one_line_error(
        cli(*args, "--reports-dir", str(tmp_path)) if args[0] in ("run", "resume", "summary") else cli(*args)
    )
    assert expected in line


@pytest.mark.slow
def test_run_list_show_summary_on_the_bundled_example(tmp_path):
    reports = tmp_path / "reports"
    result = cli("run", "docker-optimization", "--reports-dir", str(reports), "--format", "json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    run_id = record["run"]["run_id"]
    assert record["status"] == "completed"
    assert "No --repo given" in result.stderr and "▶ compose" in result.stderr
    repo = record["run"]["repo"]
    assert git(repo, "rev-list", "--count", f"main..pipeline/{run_id}") == str(
        sum(c["status"] == "committed" for c in record["changes"])
    )

    listed = cli("list", "--reports-dir", str(reports), env={"COLUMNS": "200"})
    assert run_id in listed.stdout and "completed" in listed.stdout
    shown = cli("show", run_id, "--reports-dir", str(reports), env={"COLUMNS": "200"})
    assert "docker-compose.yml" in shown.stdout

    (reports / run_id / "summary.md").unlink()
    summary = cli("summary", run_id, "--reports-dir", str(reports))
    assert summary.returncode == 0
    assert summary.stdout.startswith("# Execution summary: docker-optimization")
    assert (reports / run_id / "summary.md").read_text() == summary.stdout


def test_phases_option_runs_the_analysis_and_the_chosen_phase_only(example_repo, tmp_path):
    result = cli(
        "run",
        "docker-optimization",
        "--repo",
        str(example_repo),
        "--phases",
        "compose",
        "--reports-dir",
        str(tmp_path),
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert [p["phase"] for p in record["phases"]] == ["analysis", "compose"]
    assert {c["phase"] for c in record["changes"]} == {"compose"}


def test_analyze_does_not_import_langgraph_or_openai(example_repo):
    code = (
        "import sys; from typer.testing import CliRunner; from agent_pipelines.engine.cli import app; "
        f"r = CliRunner().invoke(app, ['analyze', '--repo', {str(example_repo)!r}, '--format', 'json', "
        "'--exit-zero']); "
        "assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('langgraph', 'openai', 'git')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_analyze_command_starts_without_typer_rich_pydantic_or_the_agents(example_repo):
    """`pipeline analyze` is dispatched before the typer app and makes no pydantic models: a linter's start-up
    pays for the analysis only (jsonschema, too, waits for a compose file that fails the fast check)."""
    code = (
        "import sys; from agent_pipelines.engine.cli import main; sys.argv = ['pipeline', 'analyze', '--repo', "
        f"{str(example_repo)!r}, '--format', 'json', '--no-hadolint']\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert done.code == 1, done.code\n"
        "heavy = ('typer', 'rich', 'click', 'pydantic', 'jsonschema', 'langgraph', 'openai', 'git', 'agents',"
        " 'jinja2')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["summary"]["findings"] > 0
    assert done.stderr.splitlines()[-1] == "[]"


def test_analyze_knows_the_severities_without_importing_the_models():
    from agent_pipelines.engine.analyze_cli import SEVERITIES
    from agent_pipelines.engine.artifacts import Severity

    assert SEVERITIES == tuple(Severity.__members__)
    assert [Severity[s].rank for s in SEVERITIES] == [0, 1, 2]
