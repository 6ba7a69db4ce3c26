"""Context fixes: write or extend a .dockerignore, derived from what the context holds and what COPY needs."""

from __future__ import annotations

import posixpath
import re
import subprocess
from pathlib import Path

from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from engine.gitenv import git_env
from pipelines.docker_optimization.model.copies import matching, sources
from pipelines.docker_optimization.model.project import Project
from pipelines.docker_optimization.rules.context import DOCKERIGNORE_FIX
from pipelines.docker_optimization.rules.context import CANDIDATES, excludable, ignore_users

HEADER = "# Written by the docker-optimization pipeline; every COPY still finds its sources.\n"
APPENDED = "# Added by the docker-optimization pipeline: what COPY . shipped and no build step uses."


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
    # -z: paths with spaces or non-ASCII characters come back unquoted
    proc = subprocess.run(["git", "-C", str(root), "check-ignore", "--no-index", "-z", "--stdin"],
                          input="\0".join(probes) + "\0", capture_output=True, text=True, env=git_env())
    return {line[len(prefix):] for line in proc.stdout.split("\0") if line}


def derive(project: Project, context_dir: str, ignore_path: str = "") -> list[tuple[str, str]]:
    """(pattern, why) to add to the ignore file ``ignore_path`` of the context: each excludes something
    and breaks no COPY (see ``rules.context.excludable``); for a missing file, the whole file."""
    return [(pattern, why) for pattern, why, _ in _derive(project, context_dir, ignore_path)]


# What leaves an image without changing what it does: caches and coverage nobody runs from, and tests
# (unless the image's command runs them). Anything else (.env, .git, docs, installed packages, build
# outputs) may be read by the app or a build step.
INERT = ("bytecode caches", "tool caches", "coverage output", "tests")
RUNS_TESTS = re.compile(r"\btest|pytest|jest|mocha|vitest|unittest", re.IGNORECASE)


def leaving_images(project: Project, ignore_path: str) -> list[tuple[str, str]]:
    """(file, why it was excluded) for each file the new patterns stop sending that a COPY/ADD of some
    stage copies now (context-relative): what the images would lose. Empty: only what is sent changes."""
    users = ignore_users(project, ignore_path)
    if not users:
        raise FixError(f"no build context uses {ignore_path} any more")
    excluded = {f: why for _, why, files in _derive(project, users[0].dir, ignore_path) for f in files}
    copied: set[str] = set()
    for ctx in (c for c in users if c.dir == users[0].dir):
        sent = ctx.sent()
        for src in sources(project.dockerfiles[ctx.dockerfile]):
            copied.update(matching(sent, src.path))
    return sorted((f, excluded[f]) for f in excluded if f in copied)


def assess_dockerignore(project: Project, ignore_path: str) -> tuple[bool, str]:
    """Safe when what leaves the images is inert (caches, coverage, tests no command runs) or nothing;
    unsafe otherwise, naming the files."""
    gone = leaving_images(project, ignore_path)
    if not gone:
        return True, "No COPY/ADD copies what it excludes: the images stay the same; only what is sent changes."
    commands = " ".join(" ".join(i.value) for c in ignore_users(project, ignore_path)
                        for i in project.dockerfiles[c.dockerfile].of("CMD", "ENTRYPOINT"))
    inert = set(INERT) - ({"tests"} if RUNS_TESTS.search(commands) else set())
    risky = [f for f, why in gone if why not in inert]
    if not risky:
        kinds = ", ".join(sorted({why for _, why in gone}))
        return True, (f"Only {kinds} leave the images (no command runs them): what the images do stays the same.")
    more = f" and {len(risky) - 5} more" if len(risky) > 5 else ""
    return False, (f"Unsafe: a COPY/ADD copies what it excludes, so these leave the image: {', '.join(risky[:5])}{more} "
                   "(the app or a build step may read them).")


def _derive(project: Project, context_dir: str, ignore_path: str = "") -> list[tuple[str, str, list[str]]]:
    if not ignore_path:
        ignore_path = posixpath.join(context_dir, ".dockerignore") if context_dir != "." else ".dockerignore"
    contexts = [c for c in ignore_users(project, ignore_path) if c.dir == context_dir]
    if not contexts:
        raise FixError(f"no build context {context_dir} builds with {ignore_path} any more")
    for ctx in contexts:
        df = project.dockerfiles.get(ctx.dockerfile)
        if df is None or df.error:
            raise FixError(f"{ctx.dockerfile} is missing or doesn't parse; can't tell what it COPYs")
    ignored = gitignored_probes(getattr(project.tree, "root", None), context_dir)
    if context_dir == ".":
        ignored.add(".git/HEAD")  # a working copy's root always holds .git
    return excludable(contexts, contexts[0].ignore, ignored)


@DOCKERIGNORE_FIX.applies("Exclude what builds don't need with {file}", assess=assess_dockerignore)
def write_dockerignore(project: Project, task: Task, design: Design) -> dict[str, str]:
    """Write a .dockerignore for the context, or append what an existing one misses (CX001, CX002)."""
    users = ignore_users(project, task.file)
    if not users:
        raise FixError(f"no build context uses {task.file} any more")
    context_dir = users[0].dir
    text = project.text(task.file)
    if text is None:
        chosen = derive(project, context_dir, task.file)
        if not chosen:
            raise FixError(f"nothing in build context {context_dir} is worth excluding")
        return {task.file: HEADER + "".join(f"{p}\n" for p, _ in chosen)}
    if "CX002" not in task.rules:
        raise AlreadyResolved(f"{task.file} exists now: an earlier change wrote it")
    chosen = derive(project, context_dir, task.file)
    if not chosen:
        raise AlreadyResolved(f"{task.file} already excludes what COPY . would ship: an earlier change resolved it")
    newline = "\r\n" if "\r\n" in text else "\n"
    separator = "" if not text or text.endswith("\n") else newline
    return {task.file: text + separator + APPENDED + newline + "".join(f"{p}{newline}" for p, _ in chosen)}
