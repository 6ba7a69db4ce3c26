"""Static figures: what each build context sends, computed from a commit's tree.

Computed, not measured: the files of a commit are listed with git, the
context's .dockerignore (from the same commit) is applied with Docker's
matching rules, and the sizes are summed. The classic builder sends every
file that survives the .dockerignore; BuildKit transfers only what COPY/ADD
name, which is the second figure.
"""

from __future__ import annotations

import posixpath

from agent_pipelines.engine.artifacts import Measurement, Method
from agent_pipelines.engine.tree import Tree
from agent_pipelines.pipelines.docker_optimization.model.copies import matching, sources
from agent_pipelines.pipelines.docker_optimization.model.project import Context, Project


def buildkit_bytes(ctx: Context) -> tuple[int, int]:
    """(files, bytes) COPY/ADD reference in this context, after the .dockerignore."""
    df = ctx.project.dockerfiles.get(ctx.dockerfile)
    sent = ctx.sent()
    if df is None or df.error:
        return len(sent), sum(sent.values())
    paths = [src.path for src in sources(df)]
    if any(_whole(path) for path in paths):  # `COPY . .` names every file sent: no set of 200,000 paths
        return len(sent), sum(sent.values())
    named: set[str] = set()
    for path in paths:
        named.update(matching(sent, path))
    return len(named), sum(map(sent.__getitem__, named))


def _whole(src: str) -> bool:
    """Does a COPY source name the whole context (``matching`` answers every file for it)?"""
    return not src.strip("/") or posixpath.normpath(src.lstrip("/")) == "."


def context_figures(project: Project) -> dict[str, dict[str, int]]:
    """Per context directory: classic files/bytes and BuildKit files/bytes."""
    out: dict[str, dict[str, int]] = {}
    for ctx in project.contexts:
        bk_files, bk_bytes = buildkit_bytes(ctx)
        entry = out.get(ctx.dir)
        if entry is None:  # the first context of a directory gives its classic figures (summed once, not per context)
            sent = ctx.sent()
            entry = out[ctx.dir] = {
                "files": len(sent),
                "bytes": sum(sent.values()),
                "buildkit_files": 0,
                "buildkit_bytes": 0,
            }
        entry["buildkit_files"] = max(entry["buildkit_files"], bk_files)
        entry["buildkit_bytes"] = max(entry["buildkit_bytes"], bk_bytes)
    return out


_BY_COMMIT: dict[str, dict[str, dict[str, int]]] = {}


def _figures(project: Project) -> dict[str, dict[str, int]]:
    """``context_figures``, once per commit: ops measures the run's base at every phase (read-only result)."""
    commit = getattr(project.tree, "commit", "")
    if not commit or len(commit) not in (40, 64) or not hasattr(project.tree, "repo"):
        return context_figures(project)
    if commit not in _BY_COMMIT:
        if len(_BY_COMMIT) >= 8:
            _BY_COMMIT.pop(next(iter(_BY_COMMIT)))
        _BY_COMMIT[commit] = context_figures(project)
    return _BY_COMMIT[commit]


FIGURES = (
    ("files", "context files sent (classic builder)", "files"),
    ("bytes", "context bytes sent (classic builder)", "bytes"),
    ("buildkit_bytes", "bytes COPY/ADD transfer (BuildKit)", "bytes"),
)


def measure_contexts(phase: str, base: Tree, head: Tree | None, project=Project) -> list[Measurement]:
    """Each context's figures at ``base`` and ``head``; ``project`` loads a tree (the caller's may reuse one)."""
    before = _figures(project(base))
    after = _figures(project(head)) if head is not None else {}
    how = (
        "computed: git ls-tree of {trees}, the context's .dockerignore applied with Docker's "
        "matching rules, sizes summed"
    )
    out = []
    for ctx_dir in sorted(set(before) | set(after)):
        for key, name, unit in FIGURES:
            b = before.get(ctx_dir, {}).get(key)
            if head is None:
                out.append(
                    Measurement(
                        name=name,
                        subject=ctx_dir,
                        phase=phase,
                        value=b,
                        unit=unit,
                        method=Method.computed,
                        how=how.format(trees=base.label),
                    )
                )
            else:
                a = after.get(ctx_dir, {}).get(key)
                out.append(
                    Measurement(
                        name=name,
                        subject=ctx_dir,
                        phase=phase,
                        value=a,
                        baseline=b,
                        unit=unit,
                        method=Method.computed,
                        how=how.format(trees=f"{base.label} and {head.label}"),
                    )
                )
    return out
