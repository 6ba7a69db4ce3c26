"""The habits CI keeps: formatted, linted and type-checked code (ruff format, ruff check, mypy).

They run here, in the suite the README's test command runs, so a change that breaks one fails CI like a
failing test, and a contributor runs the same three commands (printed in each failure) before pushing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "agents", "pipelines")
CHECKED = (*PACKAGES, "tests", "bench", "setup.py")


def _run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


def test_code_is_formatted_as_ruff_format_writes_it():
    done = _run("ruff", "format", "--check", *CHECKED)
    assert done.returncode == 0, f"run `ruff format {' '.join(CHECKED)}`:\n{done.stdout}{done.stderr}"


def test_ruff_check_finds_nothing_with_the_projects_rule_set():
    done = _run("ruff", "check", *CHECKED)
    assert done.returncode == 0, f"`ruff check {' '.join(CHECKED)}`:\n{done.stdout}{done.stderr}"


def test_mypy_finds_no_type_error_in_the_package_code(tmp_path):
    # The folders install as agent_pipelines.engine, ...: mypy reads them under those names through a tree of
    # links (it can't follow the editable install's import hook).
    (tmp_path / "agent_pipelines").mkdir()
    for name in PACKAGES:
        (tmp_path / "agent_pipelines" / name).symlink_to(ROOT / name, target_is_directory=True)
    packages = [arg for name in PACKAGES for arg in ("-p", f"agent_pipelines.{name}")]
    done = _run(
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(tmp_path / "cache"),
        *packages,
        cwd=tmp_path,
        env={"MYPYPATH": str(tmp_path)},
    )
    assert done.returncode == 0, f"mypy:\n{done.stdout}{done.stderr}"
