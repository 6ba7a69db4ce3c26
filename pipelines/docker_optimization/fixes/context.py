"""Context fixes: write a .dockerignore derived from what the context holds and what COPY needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from engine.gitenv import git_env
from pipelines.docker_optimization.copies import problems
from pipelines.docker_optimization.dockerignore import DockerIgnore
from pipelines.docker_optimization.fixes import fix
from pipelines.docker_optimization.project import Context, Project
from pipelines.docker_optimization.rules.context import CANDIDATES

HEADER = "# Written by the docker-optimization pipeline; every COPY still finds its sources.\n"


def gitignored_probes(root: Path | None, context_dir: str) -> set[str]:
    """Probe paths (context-relative) that the repository's ignore rules hide.

    A pattern is written when it matches a file in the context, or when
    .gitignore hides its probe: then the thing exists in working copies,
    where `docker build` runs, though git never shows it.
    """
    if root is None or not (root / ".git").exists():
        return set()
    prefix = "" if context_dir == "." else context_dir + "/"
    probes = [prefix + probe for _, probe, _ in CANDIDATES if probe]
    proc = subprocess.run(["git", "-C", str(root), "check-ignore", "--no-index", "--stdin"],
                          input="\n".join(probes) + "\n", capture_output=True, text=True, env=git_env())
    return {line[len(prefix):] for line in proc.stdout.splitlines()}


def _runs_mention(contexts: list[Context], *words: str) -> bool:
    return any(word in ins.command for ctx in contexts for ins in ctx.project.dockerfiles[ctx.dockerfile].of("RUN")
               for word in words)


def derive(project: Project, context_dir: str) -> list[tuple[str, str]]:
    """(pattern, why) for the context: each excludes something and breaks no COPY."""
    contexts = [c for c in project.contexts if c.dir == context_dir]
    if not contexts:
        raise FixError(f"no build context {context_dir} in the project any more")
    for ctx in contexts:
        df = project.dockerfiles.get(ctx.dockerfile)
        if df is None or df.error:
            raise FixError(f"{ctx.dockerfile} is missing or doesn't parse; can't tell what it COPYs")
    files = contexts[0].files()
    ignored = gitignored_probes(getattr(project.tree, "root", None), context_dir)
    if context_dir == ".":
        ignored.add(".git/HEAD")  # a working copy's root always holds .git
    skip = {"**/tests"} if _runs_mention(contexts, "test") else set()
    skip |= {"**/docs"} if _runs_mention(contexts, "docs", "mkdocs", "sphinx") else set()
    chosen: list[tuple[str, str]] = []
    for pattern, probe, why in CANDIDATES:
        if pattern in skip:
            continue
        alone = DockerIgnore([pattern])
        if not (probe in ignored or any(alone.excluded(p) for p in files)):
            continue
        trial = DockerIgnore([p for p, _ in chosen] + [pattern], source=".dockerignore")
        if any(problems(ctx, project.dockerfiles[ctx.dockerfile], trial) for ctx in contexts):
            continue
        chosen.append((pattern, why))
    return chosen


@fix("dockerignore", "Add a .dockerignore to build context {dir}")
def write_dockerignore(project: Project, task: Task, design: Design) -> dict[str, str]:
    if task.file in project.files:
        raise AlreadyResolved(f"{task.file} exists now: an earlier change wrote it")
    context_dir = task.file.rsplit("/", 1)[0] if "/" in task.file else "."
    chosen = derive(project, context_dir)
    if not chosen:
        raise FixError(f"nothing in build context {context_dir} is worth excluding")
    return {task.file: HEADER + "".join(f"{p}\n" for p, _ in chosen)}
