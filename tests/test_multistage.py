"""SZ001's multi-stage fix: the exact two-stage text for Python (venv) and Node (npm ci --omit=dev), what it declines.

The engine tests (marked docker) build a Python service that installs gcc
and a requirement from PyPI, apply the fix with --unsafe-fixes
--verify-builds, and read the image size before and after from the gate.
"""

from __future__ import annotations

import re

import pytest

from agent_pipelines.engine.domain import Declined
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from agent_pipelines.pipelines.docker_optimization.rules import load_all
from agent_pipelines.pipelines.docker_optimization.rules.multistage import rewrite
from tests.rulekit import codes, fixed

load_all()

PYTHON = """# A service that compiles its wheels.
FROM python:3.12-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app.py .
HEALTHCHECK --interval=1s --timeout=5s --retries=3 CMD ["python", "-c", "import six"]
CMD ["python", "app.py"]
"""

PYTHON_FIXED = """# A service that compiles its wheels.
FROM python:3.12-slim AS builder
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

FROM python:3.12-slim
COPY --from=builder /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"
WORKDIR /app
COPY app.py .
HEALTHCHECK --interval=1s --timeout=5s --retries=3 CMD ["python", "-c", "import six"]
CMD ["python", "app.py"]
"""

NODE = """FROM node:20-slim
WORKDIR /app
RUN apt-get update && apt-get install -y python3 make g++
COPY package.json package-lock.json ./
RUN npm ci
COPY src ./src
CMD ["node", "src/server.js"]
"""

NODE_FIXED = """FROM node:20-slim AS builder
WORKDIR /app
RUN apt-get update && apt-get install -y python3 make g++
COPY package.json package-lock.json ./
RUN npm ci --omit=dev

FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json ./
COPY --from=builder /app/node_modules /app/node_modules
COPY src ./src
CMD ["node", "src/server.js"]
"""

APP = "import time\nimport six\nprint('up', six.__version__, flush=True)\ntime.sleep(600)\n"


def test_sz001_flags_a_toolchain_in_a_single_stage_and_the_fix_moves_it_to_a_builder_stage(tmp_path):
    assert codes(tmp_path, {"Dockerfile": PYTHON}, "SZ001") == [("Dockerfile", 4)]
    assert fixed(tmp_path, {"Dockerfile": PYTHON}, "SZ001") == {"Dockerfile": PYTHON_FIXED}
    assert codes(tmp_path, {"Dockerfile": PYTHON_FIXED}, "SZ001") == []  # two stages: nothing left to flag


def test_the_cache_mount_recipe_of_an_earlier_fix_stays_with_the_toolchain_in_the_builder():
    cached = PYTHON.replace(
        "RUN apt-get update",
        "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked "
        "rm -f /etc/apt/apt.conf.d/docker-clean && apt-get update",
    )
    text = rewrite(Dockerfile.parse("Dockerfile", cached))
    builder, runtime = text.split("\n\nFROM ")
    assert "docker-clean" in builder and "gcc" in builder and "gcc" not in runtime


def test_node_builds_with_npm_ci_production_only_and_the_runtime_copies_node_modules():
    assert rewrite(Dockerfile.parse("Dockerfile", NODE)) == NODE_FIXED


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (PYTHON.replace("libc6-dev", "libpq-dev"), "installs libpq-dev: the program may need it"),
        (PYTHON.replace("-r requirements.txt", "-e ."), "`pip install -e` installs outside the environment"),
        (
            PYTHON.replace("COPY requirements.txt .\n", "COPY requirements.txt .\nRUN ./configure.sh\n"),
            "runs something before the dependency install",
        ),
        (PYTHON.replace('CMD ["python"', 'CMD ["/usr/local/bin/python"'), "runs Python by absolute path"),
        (PYTHON.replace("python:3.12-slim", "debian:bookworm"), "neither a python nor a node image"),
        (NODE.replace("COPY src ./src\n", "COPY src ./src\nRUN npm run build\n"), "may need the dev dependencies"),
    ],
)
def test_the_fix_declines_where_the_pattern_is_not_certain_and_says_why(text, why):
    with pytest.raises(Declined, match=why.replace("(", r"\(").replace(")", r"\)")):
        rewrite(Dockerfile.parse("Dockerfile", text))


def test_the_fix_is_unsafe_and_waits_for_unsafe_fixes(tmp_path):
    from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain

    (tmp_path / "Dockerfile").write_text(PYTHON)
    domain = DockerDomain()
    findings = [f for f in domain.analyze(tmp_path) if f.rule == "SZ001"]
    assert [f.fix.value for f in findings] == ["unsafe"]
    [task] = domain.plan(findings, ["analysis", "dockerfiles"], unsafe=True, root=tmp_path).tasks
    assert (task.fix, task.applicability.value) == ("multistage", "unsafe")


@pytest.mark.docker
def test_with_verify_builds_the_rewrite_builds_reports_healthy_and_the_image_shrinks(
    tmp_path, reports, docker_pipeline
):
    from agent_pipelines.pipelines.docker_optimization.ops.builds import probe

    engine = probe()
    if not engine.ok:
        pytest.skip(engine.reason)
    from agent_pipelines.engine.runs import start_run
    from tests.conftest import make_repo

    repo = make_repo(
        tmp_path / "repo",
        {"Dockerfile": PYTHON, "app.py": APP, "requirements.txt": "six==1.17.0\n", ".dockerignore": ".git\n"},
    )
    record = start_run(
        docker_pipeline, repo, reports, ["dockerfiles"], {"builds": "off", "unsafe_fixes": "1", "verify_builds": "1"}
    )
    tasks = {t.id for t in record.plan.tasks if t.fix == "multistage"}
    [verdict] = [v for v in record.verdicts if v.task_id in tasks]
    [gate] = [g for g in verdict.gates if "builds and starts" in g.name]
    assert verdict.accepted and gate.passed, gate.detail
    assert gate.detail.startswith("running, and its HEALTHCHECK (python -c import six) passes; image size "), (
        gate.detail
    )
    before, after = (float(mb) for mb in re.findall(r"([\d.]+) MB (?:before|after)", gate.detail))
    assert after < before, gate.detail  # the toolchain stayed in the builder
