"""A build sends what is on disk, not what git tracks: `pipeline run` says what only the working tree has.

A git-ignored `.env` that `COPY . .` puts into the image is reported by the
run (as `pipeline analyze` reports it), but the run's fixes never edit it;
a dirty checkout is stated, since the run works on HEAD.
"""

from __future__ import annotations

from agent_pipelines.engine.runs import start_run
from tests.conftest import cli, git, make_repo, snapshot

REPO = {
    ".gitignore": ".env\n",
    "compose.yaml": "services:\n  app:\n    build: .\n    image: shop/app:1\n",
    "Dockerfile": 'FROM python:3.12-slim\nWORKDIR /srv\nCOPY . .\nUSER nobody\nCMD ["python", "app.py"]\n',
    "app.py": "print('app')\n",
    "README.md": "# app\n",
}


def checkout(tmp_path):
    repo = make_repo(tmp_path / "repo", REPO)
    (repo / ".env").write_text("DB_PASSWORD=hunter2-not-committed\n")
    (repo / "README.md").write_text("# app, edited but not committed\n")
    return repo


def test_a_git_ignored_env_file_a_build_would_send_is_reported_not_edited(tmp_path, reports, docker_pipeline):
    repo = checkout(tmp_path)
    before = snapshot(repo)
    record = start_run(docker_pipeline, repo, reports, ["analysis"])
    [env] = [f for f in record.worktree_findings if f.file == ".env"]
    assert env.rule == "SE006" and env.severity.value == "error" and env.source == "worktree"
    assert not [f for f in record.findings if f.file == ".env"]  # the committed tree has no .env
    report = (reports / record.run.run_id / "1-analysis.md").read_text()
    assert "## Only in the working tree" in report and "| SE006 | error | .env |" in report
    assert snapshot(repo) == before  # reported, never touched


def test_a_dirty_checkout_is_stated_in_the_first_line_and_the_reports(tmp_path, reports):
    repo = checkout(tmp_path)
    head = git(repo, "rev-parse", "HEAD")
    done = cli(
        "run",
        "docker-optimization",
        "--repo",
        str(repo),
        "--phases",
        "analysis",
        "--builds",
        "off",
        "--reports-dir",
        str(reports),
    )
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert first == f"analyzed HEAD {head[:10]} of {repo}; 1 uncommitted change not included (README.md)"
    [run_dir] = [p for p in reports.iterdir() if p.is_dir()]
    assert "1 uncommitted change not included (README.md)" in (run_dir / "summary.md").read_text()
    assert "1 uncommitted change not included" in (run_dir / "1-analysis.md").read_text()


def test_a_clean_checkout_says_only_what_was_analyzed(tmp_path, reports, docker_pipeline):
    repo = make_repo(tmp_path / "repo", REPO)
    record = start_run(docker_pipeline, repo, reports, ["analysis"])
    assert record.run.uncommitted == [] and record.worktree_findings == []
    assert record.run.base_statement == f"analyzed HEAD {record.run.base_commit[:10]} of {repo}"
