"""How the project installs: under one namespace, so nothing it ships collides with another project's names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("engine", "agents", "pipelines", "prompts")
BARE = re.compile(r"^\s*(?:from|import)\s+(?:" + "|".join(FOLDERS) + r")(?:\.|\s|$)", re.M)


def test_code_imports_the_folders_only_by_their_installed_names():
    # `python -m pytest` puts the checkout on sys.path, where `import engine` would still work and load
    # a second copy of every module; only the installed name `agent_pipelines.engine` is right.
    offenders = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}"
        for top in (*FOLDERS, "tests", "bench")
        for path in (ROOT / top).rglob("*.py")
        for text in [path.read_text(encoding="utf-8")]
        for m in BARE.finditer(text)
    ]
    assert offenders == []


def test_a_non_editable_install_runs_the_bundled_example_and_ships_no_top_level_folders(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-compile",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) == ["agent_pipelines", "bin"]
    assert sorted(p.name for p in (target / "agent_pipelines").iterdir()) == [*sorted((*FOLDERS, "examples"))]

    # From a directory outside the checkout, with the installed copy first on the path: the README's
    # first command (the bundled example) and a lint of a copy of it.
    env = {**os.environ, "PYTHONPATH": str(target)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = "import sys; from agent_pipelines.engine.cli import main; sys.argv = ['pipeline', *sys.argv[1:]]; main()"
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "run",
            "docker-optimization",
            "--builds",
            "off",
            "--quiet",
            "--reports-dir",
            str(tmp_path / "reports"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    (repo,) = (tmp_path / "reports").glob("*/example-repo")
    assert (repo / "services" / "billing" / ".env").is_file()  # dotfiles of the example ship too
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import agent_pipelines.engine.cli as c, sys; print(c.__file__);"
            f"print(any(m.split('.')[0] in {FOLDERS!r} for m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        check=True,
    ).stdout.split()
    assert loaded == [str(target / "agent_pipelines" / "engine" / "cli.py"), "False"]
