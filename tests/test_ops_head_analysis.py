"""Ops analyzes each phase's head as `pipeline analyze` does; where the reviewer's incremental analysis was left
at that head, its rules' findings are reused and only hadolint's are added (``analysis.with_hadolint``)."""

from __future__ import annotations

from agent_pipelines.engine.tree import GitTree
from agent_pipelines.pipelines.docker_optimization import analysis
from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain
from agent_pipelines.pipelines.docker_optimization.incremental import Incremental
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from tests.conftest import git


def test_the_incremental_analysis_plus_hadolint_is_the_full_thorough_analysis(example_repo):
    base = git(example_repo, "rev-parse", "HEAD")
    dockerfile = next(p for p in sorted(example_repo.rglob("Dockerfile")) if ".git" not in p.parts)
    dockerfile.write_text(dockerfile.read_text() + "RUN apt-get update && apt-get install -y curl\n")
    (example_repo / ".dockerignore").write_text("node_modules\n*.log\n")
    git(example_repo, "add", "-A")
    git(example_repo, "commit", "-qm", "edit a Dockerfile, add an ignore file")
    head = git(example_repo, "rev-parse", "HEAD")
    assert head != base

    with Incremental.at_commit(example_repo, base) as inc:
        inc.to_commit(head)
        reused = analysis.with_hadolint(inc.project, *inc.raw)
    with GitTree(example_repo, head) as tree:
        full = analysis.examine(Project(tree), hadolint=True)

    assert reused.findings == full.findings
    assert reused.notes == full.notes
    assert reused.tools == full.tools
    assert any(f.source == "hadolint" for f in reused.findings)


def test_the_base_analysis_is_the_one_the_reviewer_started_from(example_repo):
    """Ops' first figures analyze the run's base; the reviewer's analysis started there (and moved on), so its
    first result serves, plus hadolint, and equals a full thorough analysis of the base."""
    base = git(example_repo, "rev-parse", "HEAD")
    dockerfile = next(p for p in sorted(example_repo.rglob("Dockerfile")) if ".git" not in p.parts)
    dockerfile.write_text(dockerfile.read_text() + "USER nobody\n")
    git(example_repo, "commit", "-qam", "edit a Dockerfile")
    head = git(example_repo, "rev-parse", "HEAD")

    domain = DockerDomain()
    try:
        domain.incremental_analysis(example_repo, base).to_commit(head)
        with GitTree(example_repo, base) as tree:
            found = domain.analyze(tree, thorough=True)
            assert base not in domain._started  # used once, then let go
            full = analysis.examine(Project(tree), hadolint=True)
    finally:
        domain.close()
    assert found == full.findings
    assert any(f.source == "hadolint" for f in found)
