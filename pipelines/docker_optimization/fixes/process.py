"""Build-process and deployment fixes: write the bake file, the CI workflow, the deploy scripts.

Each writes new files only, generated from the build graph of the project
as it is now; a file that exists already is never overwritten (the task
is then AlreadyResolved: an earlier change, or a person, wrote it).
"""

from __future__ import annotations

from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization.model.buildgraph import build_graph
from pipelines.docker_optimization.generate.bake import bake_file
from pipelines.docker_optimization.generate.deploy import deploy_script, rollback_script
from pipelines.docker_optimization.generate.workflow import workflow_file
from pipelines.docker_optimization.model.project import Project
from pipelines.docker_optimization.rules.process import BAKE_FILE_FIX, CI_WORKFLOW_FIX, DEPLOY_SCRIPTS_FIX
from pipelines.docker_optimization.rules.process import (
    BAKE_FILE, BAKE_FILES, DEPLOY_SCRIPT, ROLLBACK_SCRIPT, WORKFLOW,
)


def _absent(project: Project, path: str) -> None:
    if path in project.files:
        raise AlreadyResolved(f"{path} exists now: an earlier change wrote it")


@BAKE_FILE_FIX.applies("Build every image with one docker-bake.hcl: parallel levels, build order, per-image CI cache",
     writes=(BAKE_FILE,))
def write_bake_file(project: Project, task: Task, design: Design) -> dict[str, str]:
    for path in BAKE_FILES:
        _absent(project, path)
    graph = build_graph(project)
    if len(graph.built) < 2:
        raise AlreadyResolved(f"only {len(graph.built)} service builds an image now: no bake file needed")
    return {BAKE_FILE: bake_file(project, graph)}


@CI_WORKFLOW_FIX.applies("Build the images in GitHub Actions with a cache, and report findings to code scanning",
     writes=(WORKFLOW,))
def write_ci_workflow(project: Project, task: Task, design: Design) -> dict[str, str]:
    _absent(project, WORKFLOW)
    return {WORKFLOW: workflow_file(project)}


@DEPLOY_SCRIPTS_FIX.applies("Roll out in dependency order, gated on health, with rollback: deploy/deploy.sh",
     writes=(DEPLOY_SCRIPT, ROLLBACK_SCRIPT), executable=(DEPLOY_SCRIPT, ROLLBACK_SCRIPT))
def write_deploy_scripts(project: Project, task: Task, design: Design) -> dict[str, str]:
    _absent(project, DEPLOY_SCRIPT)
    graph = build_graph(project)
    if not any(s.healthcheck for s in graph.services.values()):
        raise FixError("no service has a healthcheck any more: nothing to gate a rollout on")
    written = {DEPLOY_SCRIPT: deploy_script(project, graph)}
    if ROLLBACK_SCRIPT not in project.files:   # a rollback.sh someone wrote stays theirs
        written[ROLLBACK_SCRIPT] = rollback_script(project, graph)
    return written
