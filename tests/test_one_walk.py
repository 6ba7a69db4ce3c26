"""A run lists its checkout once: the agents share the workspace's listing and the domain's project.

On a 200,000-file monorepo one walk of the checkout (a stat per file) takes
over a second, and parsing every Dockerfile and compose file as long again.
The analyst, planner, architect and implementer each made their own; now the
first one lists the checkout and parses it, and the others reuse that,
updated for the paths each commit changed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from agent_pipelines.engine.runs import start_run
from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.model.project import Project


def test_a_run_walks_and_parses_its_checkout_once(example_repo, reports, docker_pipeline, monkeypatch):
    walked: Counter[str] = Counter()
    loaded: Counter[str] = Counter()
    walk, load = DirTree._walk, Project.__init__

    def counted_walk(self):
        walked[str(self.root)] += 1
        return walk(self)

    def counted_load(self, tree, *args, **kwargs):
        loaded[str(getattr(tree, "root", ""))] += 1
        return load(self, tree, *args, **kwargs)

    monkeypatch.setattr(DirTree, "_walk", counted_walk)
    monkeypatch.setattr(Project, "__init__", counted_load)
    record = start_run(docker_pipeline, example_repo, reports, options={"builds": "off"})

    assert record.status == "completed"
    worktree = str(Path(record.run.worktree))
    assert walked[worktree] == 1, walked
    assert loaded[worktree] == 1, loaded  # later commits update that project (Project.updated)
