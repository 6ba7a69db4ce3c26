"""The pre-commit hook (.pre-commit-hooks.yaml) run by the real `pre-commit try-repo`.

pre-commit builds the hook's virtualenv by installing this repository with pip (its dependencies come from
the package index, or pip's cache), so the first run takes a minute or more: the test is marked ``slow``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def hooks_repository(dest: Path) -> Path:
    """A clone of this checkout with its working tree as it is now (tracked and new files), committed:
    pre-commit installs a hook repository from a commit."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    listed = (
        subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"], check=True, capture_output=True
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        source = ROOT / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "--allow-empty", "-m", "the working tree under test")
    return dest


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
    )


def project(dest: Path, dockerfile: str) -> Path:
    """A user's repository: a service whose Dockerfile is ``dockerfile``, staged as for a commit."""
    (dest / "api").mkdir(parents=True)
    (dest / "api" / "app.py").write_text("print('hi')\n")
    (dest / "api" / "Dockerfile").write_text(dockerfile)
    (dest / "README.md").write_text("# a project\n")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    return dest


def try_repo(hooks: Path, repo: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "PRE_COMMIT_COLOR": "never"}
    env.pop("DOCKER_HOST", None)
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(hooks), "pipeline-analyze", "--all-files"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_hook_fails_on_a_broken_dockerfile_with_the_finding_and_passes_a_clean_one(tmp_path):
    hooks = hooks_repository(tmp_path / "hooks")
    home = tmp_path / "pre-commit-home"  # one virtualenv for both runs
    broken = project(tmp_path / "broken", "FROM python:3.12-slim\nCOPY missing.py /app/\nUSER 1000\n")
    clean = project(
        tmp_path / "clean", 'FROM python:3.12-slim\nCOPY app.py /app/\nUSER 1000\nCMD ["python", "/app/app.py"]\n'
    )

    failed = try_repo(hooks, broken, home)
    passed = try_repo(hooks, clean, home)

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "pipeline analyze" in failed.stdout and "Failed" in failed.stdout
    assert "**CX003** copy-source-outside-context — error" in failed.stdout
    assert "missing.py does not exist in the build context api" in failed.stdout
    assert "README.md" not in failed.stdout.split("Failed", 1)[1]  # only the files pre-commit passed
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Passed" in passed.stdout
