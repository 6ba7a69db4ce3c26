"""Unsafe fixes proven on a real engine: the non-root fix's output for a pip --user app builds and starts.

The app's only package is installed with `pip install --user` as root (into
/root/.local, mode 700 above it), as in the images that broke with
`ModuleNotFoundError: uvicorn`. The wheel is made here (no registry needed).
"""

from __future__ import annotations

import zipfile

import pytest

from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.ops.builds import probe, verify_start
from tests.rulekit import fixed, write

pytestmark = pytest.mark.docker

PIP_USER_APP = (
    "FROM python:3.12-slim\n"
    "WORKDIR /app\n"
    "COPY wheels/ /wheels/\n"
    "RUN pip install --user --no-index /wheels/greet-1.0-py3-none-any.whl\n"
    "COPY main.py .\n"
    'HEALTHCHECK --interval=2s CMD ["python", "-c", "import greet"]\n'
    'CMD ["python", "main.py"]\n'
)
MAIN = "import time\nimport greet\nprint(greet.hello(), flush=True)\ntime.sleep(120)\n"


def engine_or_skip():
    engine = probe()
    if not engine.ok:
        pytest.skip(engine.reason)


def wheel(path):
    """A minimal pure-Python wheel of a package `greet` (what pip installs from an index, offline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("greet/__init__.py", "def hello():\n    return 'hello from greet'\n")
        whl.writestr("greet-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: greet\nVersion: 1.0\n")
        whl.writestr(
            "greet-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        whl.writestr(
            "greet-1.0.dist-info/RECORD",
            "greet/__init__.py,,\ngreet-1.0.dist-info/METADATA,,\n"
            "greet-1.0.dist-info/WHEEL,,\ngreet-1.0.dist-info/RECORD,,\n",
        )


def context(root):
    [ctx] = Project(DirTree(root)).contexts
    return ctx


def test_the_non_root_fix_of_a_pip_user_app_builds_starts_and_imports_its_package(tmp_path):
    engine_or_skip()
    wheel(tmp_path / "wheels" / "greet-1.0-py3-none-any.whl")
    text = fixed(tmp_path, {"Dockerfile": PIP_USER_APP, "main.py": MAIN}, "SE001")["Dockerfile"]
    assert "USER app\n" in text and "RUN chmod o+x /root\nENV PYTHONUSERBASE=/root/.local\n" in text

    problem, how = verify_start(tmp_path, context(tmp_path))

    assert (problem, how) == ("", "running, and its HEALTHCHECK (python -c import greet) passes")


def test_switching_user_without_opening_root_is_what_broke_and_the_check_sees_it(tmp_path):
    engine_or_skip()
    wheel(tmp_path / "wheels" / "greet-1.0-py3-none-any.whl")
    # what the old fix wrote: a user, USER app, and nothing about /root/.local
    broken = PIP_USER_APP.replace("\nCMD [", "\nRUN useradd --system --uid 10001 --user-group app\nUSER app\nCMD [")
    write(tmp_path, {"Dockerfile": broken, "main.py": MAIN})

    problem, how = verify_start(tmp_path, context(tmp_path))

    assert problem == "the container exits with an error"
    assert "ModuleNotFoundError: No module named 'greet'" in how


def run_non_root(tmp_path, reports, docker_pipeline, main, extra=None):
    from agent_pipelines.engine.runs import start_run
    from tests.conftest import git, make_repo

    repo = make_repo(
        tmp_path / "repo", {"Dockerfile": PIP_USER_APP, "main.py": main, ".dockerignore": ".git\n", **(extra or {})}
    )
    wheel(repo / "wheels" / "greet-1.0-py3-none-any.whl")
    git(repo, "add", "wheels")
    git(repo, "commit", "--quiet", "-m", "the wheel")
    record = start_run(
        docker_pipeline, repo, reports, ["dockerfiles"], {"builds": "off", "unsafe_fixes": "1", "verify_builds": "1"}
    )
    tasks = {t.id for t in record.plan.tasks if t.fix == "non-root-user"}
    [verdict] = [v for v in record.verdicts if v.task_id in tasks]
    [gate] = [g for g in verdict.gates if "builds and starts" in g.name]
    return verdict, gate


def test_with_verify_builds_the_unsafe_non_root_change_is_kept_once_the_image_starts(
    tmp_path, reports, docker_pipeline
):
    engine_or_skip()
    verdict, gate = run_non_root(tmp_path, reports, docker_pipeline, MAIN)
    assert verdict.accepted, verdict.reason
    assert gate.passed and gate.detail.startswith("running, and its HEALTHCHECK (python -c import greet) passes; ")


def test_with_verify_builds_a_non_root_change_the_app_cannot_run_under_is_reverted(tmp_path, reports, docker_pipeline):
    engine_or_skip()
    # the app writes into its code directory at start: root could, the new user can't (the code stays root's)
    writes = "import time\nimport greet\nopen('/app/state.txt', 'w').write('up')\ntime.sleep(120)\n"
    verdict, gate = run_non_root(tmp_path, reports, docker_pipeline, writes)
    assert not verdict.accepted and not gate.passed
    assert gate.detail.startswith("the container exits with an error: exit 1")
    assert "PermissionError" in gate.detail


def test_a_probe_configured_in_pipeline_yaml_decides_whether_the_image_starts(tmp_path, reports, docker_pipeline):
    engine_or_skip()
    config = (
        'policy:\n  dockerfiles:\n    Dockerfile:\n      probe: [python, -c, "import greet; print(greet.hello())"]\n'
    )
    verdict, gate = run_non_root(tmp_path, reports, docker_pipeline, MAIN, {".pipeline.yaml": config})
    assert verdict.accepted, verdict.reason
    assert gate.detail.startswith("probe python -c import greet; print(greet.hello()) passed; ")


def test_an_image_that_never_started_does_not_make_the_change_revert(tmp_path, reports, docker_pipeline):
    engine_or_skip()
    # the app fails the same way before and after the change: the change did not cause it (a delta gate)
    crashes = "import greet\nraise SystemExit('no config: ' + greet.hello())\n"
    verdict, gate = run_non_root(tmp_path, reports, docker_pipeline, crashes)
    assert verdict.accepted and gate.passed, verdict.reason
    assert gate.already == "already present before this change: the container exits with an error"
