"""Helpers for rule tests: analyze a few files, apply one fix group, read back exact text."""

from __future__ import annotations

from pathlib import Path

from agent_pipelines.engine.artifacts import Design
from agent_pipelines.pipelines.docker_optimization.analysis import analyze
from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain

# The example's billing Dockerfile as found (the reliability and security tests start from it).
BILLING = (
    "FROM python:3.11-slim\n"
    "WORKDIR /app\n"
    "COPY . .\n"
    "RUN pip install --upgrade pip\n"
    "RUN pip install -r requirements.txt\n"
    "EXPOSE 8100\n"
    "HEALTHCHECK CMD curl -f http://localhost:8100/health || exit 1\n"
    'CMD ["python", "-m", "billing.server"]\n'
)


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode())
    return root


def codes(root: Path, files: dict[str, str], rule: str) -> list[tuple[str, int]]:
    """(file, line) of every finding of ``rule`` in a tree made of ``files``."""
    write(root, files)
    return [(f.file, f.line) for f in analyze(root) if f.rule == rule]


def fixed(root: Path, files: dict[str, str], rule: str, design: Design | None = None) -> dict[str, str]:
    """Plan and apply the fix for ``rule``'s findings; return the files it wrote, as text."""
    write(root, files)
    domain = DockerDomain()
    findings = [f for f in domain.analyze(root) if f.rule == rule]
    plan = domain.plan(findings, ["analysis", "dockerfiles", "compose"], unsafe=False, root=root)
    design = design or Design()
    out = {}
    for task in plan.tasks:
        for path in domain.apply(task, root, design):
            out[path] = (root / path).read_bytes().decode()
    return out


def edit_and_follow(root: Path, tree, project, path: str, text: str | None):
    """Write ``text`` to ``path`` under ``root`` (None: delete it), then the tree and project that follow it
    (``DirTree.updated``, ``Project.updated``), as the reviewer follows a commit."""
    if text is None:
        (root / path).unlink()
    else:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    tree = tree.updated([path])
    return tree, project.updated(tree, [path])
