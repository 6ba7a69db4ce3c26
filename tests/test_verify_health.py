"""--verify-builds on a real engine: the image's own HEALTHCHECK decides, within its own bounds, and nothing is left.

Each image here is built from the local python:3.12-slim stand-in with no
network access needed. The wait is read from the HEALTHCHECK (start period,
interval, timeout, retries); Docker's defaults fill what it leaves unset.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.ops.builds import (
    LABEL,
    compose_options,
    docker,
    healthcheck,
    probe,
    verify_image,
)
from tests.rulekit import write

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"


def engine_or_skip():
    engine = probe()
    if not engine.ok:
        pytest.skip(engine.reason)


def service(root, healthcheck_line: str = ""):
    write(
        root,
        {
            "Dockerfile": "FROM python:3.12-slim\nWORKDIR /app\nCOPY app.py .\n"
            + healthcheck_line
            + 'CMD ["python", "app.py"]\n',
            "app.py": SLEEPER,
            ".dockerignore": ".git\n",
        },
    )
    [ctx] = Project(DirTree(root)).contexts
    return ctx


def leftovers() -> list[str]:
    """Containers and images any verification left behind (they all carry the label)."""
    return (
        docker("ps", "-a", "-q", "--filter", f"label={LABEL}").stdout.split()
        + docker("images", "-q", "--filter", f"label={LABEL}").stdout.split()
    )


@pytest.mark.docker
def test_a_passing_healthcheck_is_what_the_engine_reports_healthy(tmp_path):
    engine_or_skip()
    found = verify_image(
        tmp_path,
        service(
            tmp_path,
            'HEALTHCHECK --interval=1s --timeout=5s CMD ["python", "-c", "import os; os.stat(\'/app/app.py\')"]\n',
        ),
    )
    assert found.problem == "" and found.verified
    assert found.detail.startswith("running, and its HEALTHCHECK (python -c import os;")
    assert found.size and found.size > 0 and found.seconds > 0


@pytest.mark.docker
def test_a_failing_healthcheck_fails_with_its_own_log_and_the_wait_its_options_allow(tmp_path):
    engine_or_skip()
    found = verify_image(
        tmp_path,
        service(
            tmp_path,
            "HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD python -c \"raise SystemExit('db unreachable')\"\n",
        ),
    )
    assert found.problem == "the health check fails"
    assert "db unreachable" in found.detail
    # 1 s before the first check, then 2 checks of at most 1 s + 2 s: the engine calls it within 7 s
    assert "the engine waited up to 7 s" in found.detail


@pytest.mark.docker
def test_without_a_healthcheck_or_probe_the_start_is_not_verified_never_passed(tmp_path):
    engine_or_skip()
    found = verify_image(tmp_path, service(tmp_path))
    assert (found.problem, found.verified) == ("", False)
    assert "no HEALTHCHECK" in found.detail and "no probe" in found.detail


@pytest.mark.docker
def test_docker_defaults_fill_what_the_healthcheck_leaves_unset(tmp_path):
    engine_or_skip()
    tag = "pipeline-test/health-defaults:1"
    root = tmp_path
    service(root, "HEALTHCHECK CMD true\n")
    built = docker("build", "-q", "-t", tag, str(root), timeout=300)
    assert built.returncode == 0, built.stderr
    try:
        health = healthcheck(tag)
    finally:
        docker("image", "rm", "-f", tag)
    assert (health.interval, health.timeout, health.start_period, health.retries) == (30.0, 30.0, 0.0, 3)
    assert health.bound == 30 + 3 * 60


@pytest.mark.docker
def test_an_interrupted_check_leaves_no_container_and_no_image(tmp_path):
    engine_or_skip()
    service(tmp_path, "HEALTHCHECK --interval=60s --start-period=60s CMD true\n")  # a long wait to interrupt
    script = (
        "import sys\nfrom pathlib import Path\nfrom agent_pipelines.engine.tree import DirTree\nfrom agent_pipelines.pipelines.docker_optimization.model.project import Project\n"
        "from agent_pipelines.pipelines.docker_optimization.ops.builds import verify_image\n"
        "[ctx] = Project(DirTree(sys.argv[1])).contexts\nverify_image(Path(sys.argv[1]), ctx)\n"
    )
    before = set(leftovers())
    with subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=os.getcwd(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            deadline = time.monotonic() + 300
            while not docker("ps", "-q", "--filter", f"label={LABEL}").stdout.split():  # the container is up
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
                time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert "KeyboardInterrupt" in err
    assert set(leftovers()) - before == set()


def test_each_way_compose_builds_a_context_is_verified_with_its_target_and_build_args(tmp_path):
    compose = (
        "services:\n  app:\n    build: {context: ., target: runtime, args: {PY: '3.12'}}\n"
        "  tests:\n    build: {context: ., target: test}\n  again:\n    build: {context: ., target: test}\n"
    )
    write(
        tmp_path,
        {
            "compose.yaml": compose,
            "Dockerfile": 'FROM python:3.12-slim AS runtime\nCMD ["python"]\nFROM runtime AS test\n',
        },
    )
    [ctx] = Project(DirTree(tmp_path)).contexts
    assert compose_options(ctx) == [("--target", "runtime", "--build-arg", "PY=3.12"), ("--target", "test")]


@pytest.mark.docker
def test_a_probe_runs_within_its_configured_probe_timeout(tmp_path):
    engine_or_skip()
    before = set(leftovers())
    found = verify_image(tmp_path, service(tmp_path), ["python", "-c", "import time; time.sleep(60)"], timeout=3)
    assert found.problem == "the probe did not finish"
    assert found.detail == "python -c import time; time.sleep(60) ran longer than 3 s"
    assert set(leftovers()) - before == set()


def test_probe_timeout_in_pipeline_yaml_is_a_positive_number_of_seconds_or_a_note():
    from agent_pipelines.pipelines.docker_optimization.ignores import load_config

    text = (
        "policy:\n  dockerfiles:\n    Dockerfile: {probe: ['true'], probe_timeout: 20}\n"
        "    other/Dockerfile: {probe_timeout: soon}\n"
    )
    config = load_config(".pipeline.yaml", text)
    assert config.policy.dockerfiles["Dockerfile"] == {"probe": ["true"], "probe_timeout": 20}
    assert any("probe_timeout must be a positive number of seconds, got 'soon'" in p for p in config.problems)
