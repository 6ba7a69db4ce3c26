"""The `pipeline` command behaves as a platform engineer's other tools do.

--version; exit codes as the README's table says; one line (exit 2) for every unusable argument or state;
JSON output and full run ids for list/pipelines/show; runs kept outside the checkout and found from any
directory; prune; no debris from a refused run; an interrupt that says how to resume; a heartbeat off a
terminal; NO_COLOR. Every test runs the real command in a child process on real git repositories.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, ROOT, cli, git, make_repo


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def example_copy(path: Path) -> Path:
    """The bundled example as a git checkout of its own."""
    shutil.copytree(EXAMPLE, path, ignore=shutil.ignore_patterns("__pycache__"))
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "add", "--all", "--force")
    git(path, "commit", "--quiet", "-m", "example")
    return path


def quick_run(repo: Path, *more: str, cwd: Path | None = None) -> str:
    """A short offline run (analysis and compose) on ``repo``; its run id."""
    done = cli(
        "run",
        "docker-optimization",
        "--repo",
        str(repo),
        "--builds",
        "off",
        "--phases",
        "compose",
        "--quiet",
        "--format",
        "json",
        *more,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["run"]["run_id"]


def listed(*more: str) -> list[dict]:
    done = cli("list", "--format", "json", *more)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    done = cli("--version")
    assert done.returncode == 0 and done.stdout == f"pipeline {version('agent-pipelines')}\n"


def test_analyze_fails_on_errors_by_default_and_exit_zero_opts_out(example_repo, tmp_path):
    found = cli("analyze", "--repo", str(example_repo), "--format", "json", "--no-hadolint")
    assert found.returncode == 1  # the example's .env sent in a build context: error-level SE006
    assert "error" in {f["severity"] for f in json.loads(found.stdout)["findings"]}
    assert cli("analyze", "--repo", str(example_repo), "--no-hadolint", "--exit-zero").returncode == 0
    warned = make_repo(tmp_path / "warned", {"Dockerfile": "FROM python:3.12\nRUN pip install flask\nUSER nobody\n"})
    below = cli("analyze", "--repo", str(warned), "--format", "json", "--no-hadolint")
    assert below.returncode == 0, below.stderr
    assert {f["severity"] for f in json.loads(below.stdout)["findings"]} <= {"info", "warning"}
    assert cli("analyze", "--repo", str(warned), "--no-hadolint", "--fail-on", "warning").returncode == 1


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "docker-optimization", "--bogus"], "No such option: --bogus"),
        (["run", "docker-optimization", "--build-repeats", "0"], "--build-repeats must be at least 1, not 0"),
        (["run", "docker-optimization", "--build-repeats", "many"], "--build-repeats takes int values, not 'many'"),
        (["run", "docker-optimization", "--builds", "sometimes"], "--builds must be auto or off, not 'sometimes'"),
        (["run"], "Missing argument"),
        (["list", "--format", "xml"], "--format must be text or json, not 'xml'"),
        (["prune", "--older-than", "a week"], "--older-than takes a duration such as 7d"),
        (["show", "../etc"], "is not a run id"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2_and_leave_nothing(tmp_path, own_state_dir, args, expected):
    line = one_line_error(cli(*args))
    assert expected in line
    assert not (own_state_dir / "agent-pipelines" / "runs").exists()


def test_runs_live_outside_the_checkout_and_are_listed_from_anywhere(tmp_path, own_state_dir):
    """Run from inside the repository without --reports-dir: nothing appears in the checkout; `list`, `show`
    and `summary` find the run by its id from another directory, with runs of other repositories too."""
    first = example_copy(tmp_path / "first")
    before = git(first, "status", "--porcelain", "--ignored")
    run_id = quick_run(first, cwd=first)
    assert git(first, "status", "--porcelain", "--ignored") == before == ""
    run_dir = own_state_dir / "agent-pipelines" / "runs" / run_id
    assert (run_dir / "run.json").is_file()

    elsewhere = tmp_path / "elsewhere"
    second = example_copy(tmp_path / "second")
    other_id = quick_run(second, "--reports-dir", str(elsewhere))  # tests and benches choose their own
    rows = {row["run_id"]: row for row in listed()}
    assert rows[run_id]["repo"] == str(first) and rows[run_id]["run_dir"] == str(run_dir)
    assert rows[other_id]["repo"] == str(second) and rows[other_id]["run_dir"] == str(elsewhere / other_id)
    assert [row["run_id"] for row in listed("--reports-dir", str(elsewhere))] == [other_id]

    text = cli("list", cwd=tmp_path, env={"COLUMNS": "40"})
    assert run_id in text.stdout and other_id in text.stdout and str(second) in text.stdout  # never cut
    shown = cli("show", other_id, "--format", "json", cwd=tmp_path)
    assert shown.returncode == 0 and json.loads(shown.stdout)["run"]["run_id"] == other_id
    assert cli("summary", other_id).stdout.startswith("# Execution summary")


def test_the_bundled_example_run_says_where_its_run_and_branch_are(own_state_dir, tmp_path):
    done = cli("run", "docker-optimization", "--builds", "off", "--phases", "compose", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [run_id] = [row["run_id"] for row in listed()]
    run_dir = own_state_dir / "agent-pipelines" / "runs" / run_id
    assert f"copied to {run_dir / 'example-repo'}" in done.stderr.replace("\n", "")
    assert f"run {run_id}: {run_dir}" in done.stderr
    assert f"Branch:  git -C {run_dir / 'example-repo'} log pipeline/{run_id}" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_pipelines_json_lists_phases_and_the_options_each_declares():
    done = cli("pipelines", "--format", "json")
    assert done.returncode == 0, done.stderr
    [docker] = [p for p in json.loads(done.stdout) if p["name"] == "docker-optimization"]
    assert [p["name"] for p in docker["phases"]] == ["analysis", "dockerfiles", "compose", "build", "deploy"]
    assert {o["flag"] for o in docker["run_options"]} >= {"--builds", "--build-repeats", "--verify-builds"}
    assert [o["flag"] for o in docker["analyze_options"]] == ["--hadolint"]


def test_rollback_with_its_branch_deleted_and_resume_with_the_repository_moved_are_one_line(tmp_path):
    repo = example_copy(tmp_path / "repo")
    run_id = quick_run(repo)
    git(repo, "worktree", "remove", "--force", str(repo / ".git" / "pipeline-worktrees" / run_id))
    git(repo, "branch", "-D", f"pipeline/{run_id}")
    assert f"branch pipeline/{run_id} no longer exists" in one_line_error(cli("rollback", run_id))

    moved = tmp_path / "moved"
    repo.rename(moved)
    for command in ("resume", "rollback", "apply"):
        line = one_line_error(cli(command, run_id))
        assert f"repository {repo} is gone (moved or deleted)" in line, line


def test_prune_removes_finished_runs_but_never_an_unmerged_branch_without_force(tmp_path):
    repo = example_copy(tmp_path / "repo")
    run_id = quick_run(repo)
    worktree = repo / ".git" / "pipeline-worktrees" / run_id
    kept = cli("prune")
    assert kept.returncode == 0 and f"kept {run_id}: branch pipeline/{run_id} has 1 commit(s) not merged" in kept.stderr
    assert worktree.is_dir() and [row["run_id"] for row in listed()] == [run_id]

    assert "nothing to prune" in cli("prune", "--older-than", "1d").stderr  # the run is minutes old
    gone = cli("prune", "--force")
    assert gone.returncode == 0 and f"removed {run_id}: its worktree, branch pipeline/{run_id}" in gone.stderr
    assert not worktree.exists() and git(repo, "branch", "--list", "pipeline/*") == "" and listed() == []


def test_prune_removes_a_merged_run_without_force(tmp_path):
    repo = example_copy(tmp_path / "repo")
    run_id = quick_run(repo)
    git(repo, "merge", "--quiet", "--no-edit", f"pipeline/{run_id}")
    done = cli("prune", run_id)
    assert done.returncode == 0 and f"removed {run_id}" in done.stderr, done.stderr
    assert git(repo, "branch", "--list", "pipeline/*") == "" and listed() == []


def test_a_refused_llm_run_leaves_no_branch_worktree_or_run(tmp_path, own_state_dir):
    repo = example_copy(tmp_path / "repo")
    env = {k: "" for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    line = one_line_error(cli("run", "docker-optimization", "--repo", str(repo), "--llm", env=env))
    assert "OPENAI_API_KEY" in line
    assert git(repo, "branch", "--list", "pipeline/*") == "" and git(repo, "worktree", "list").count("\n") == 0
    assert listed() == [] and not (own_state_dir / "agent-pipelines" / "runs").exists()


def test_an_interrupt_leaves_the_run_interrupted_with_its_exact_resume_command(tmp_path):
    repo = example_copy(tmp_path / "repo")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_PAUSE_AT": "analysis.planner:60"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent_pipelines.engine.cli",
            "run",
            "docker-optimization",
            "--repo",
            str(repo),
            "--builds",
            "off",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(r["status"] == "running" for r in listed()):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    [row] = listed()
    assert proc.returncode == 130
    assert row["status"] == "interrupted"
    assert f"`pipeline resume {row['run_id']}` continues it" in stderr


def test_a_heartbeat_line_off_a_terminal_and_no_color_with_no_color(tmp_path):
    repo = example_copy(tmp_path / "repo")
    done = cli(
        "run",
        "docker-optimization",
        "--repo",
        str(repo),
        "--builds",
        "off",
        "--phases",
        "compose",
        env={"PIPELINE_HEARTBEAT": "0.05", "FORCE_COLOR": "1", "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^  analyst still working \(step 1 of 7\): \d+ s$", done.stderr, re.MULTILINE), done.stderr
    assert not re.search(r"\x1b\[(3|9)\dm", done.stderr)  # bold, maybe; no colour
    coloured = cli(
        "run",
        "docker-optimization",
        "--repo",
        str(repo),
        "--builds",
        "off",
        "--phases",
        "compose",
        env={"PIPELINE_HEARTBEAT": "0", "FORCE_COLOR": "1"},
    )
    assert re.search(r"\x1b\[(3|9)\dm", coloured.stderr) and "still working" not in coloured.stderr


def test_on_a_terminal_a_bar_counts_the_steps(tmp_path):
    """stderr a pseudo-terminal, as in an interactive shell: the bar shows steps done of the run's total."""
    import pty

    repo = example_copy(tmp_path / "repo")
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    env.pop("DOCKER_HOST", None)
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent_pipelines.engine.cli",
            "run",
            "docker-optimization",
            "--repo",
            str(repo),
            "--builds",
            "off",
            "--phases",
            "compose",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    ) as proc:
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        proc.wait(timeout=120)
    os.close(leader)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))  # the terminal's escapes
    assert proc.returncode == 0, text[-2000:]
    assert re.search(r"analyst working….*0/7 steps", text) and re.search(r"ops working….*6/7 steps", text), text
