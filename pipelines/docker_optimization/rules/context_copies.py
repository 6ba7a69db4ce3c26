"""Context rule CX003: a COPY source outside the build context (or that the context's .dockerignore leaves
out), so the build fails."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from agent_pipelines.engine.finding import Category, Severity
from agent_pipelines.pipelines.docker_optimization.model.copies import problems
from agent_pipelines.pipelines.docker_optimization.model.project import Context, within
from agent_pipelines.pipelines.docker_optimization.rules import Hit, rule


def readable_ignore(ctx) -> bool:
    """False when the context's ignore file has a pattern Docker rejects (the build fails before any COPY)."""
    try:
        _ = ctx.ignore  # parsed on first use: raises ValueError on a pattern Docker rejects
    except ValueError:
        return False
    return True


# -- COPY sources --------------------------------------------------------------------------


def resolvable(ctx) -> bool:
    """A context inside the repository (not a URL, not ``../elsewhere``)."""
    return not ("://" in ctx.dir or ctx.dir.startswith("git@") or ctx.dir == ".." or ctx.dir.startswith("../"))


def built_from(project, dockerfile: str) -> list:
    """The contexts compose builds ``dockerfile`` from that lie in the repository (CO007 looks at several)."""
    return [c for c in project.contexts_of(dockerfile) if not c.inferred and resolvable(c)]


def _ancestors(directory: str) -> list[str]:
    out = [directory]
    while directory not in ("", "."):
        directory = posixpath.dirname(directory) or "."
        out.append(directory)
    return out


@rule("CX003", "copy-source-outside-context", Category.correctness, Severity.error, "context")
def copy_source_outside_context(ctx) -> Iterable[Hit]:
    """A COPY/ADD source doesn't exist in the build context, reaches outside it, or isn't sent.

    For Dockerfiles built from one context (CO007 reports those built from
    several). A Dockerfile no compose file builds is assumed to be built from
    its own directory or, if that is where its sources are, a directory
    above it; it is reported only when no such directory has them all.
    The other context findings (CX001, CX002, CX004, CX005) are left out
    for a context this rule or CO007 reports: it cannot build anyway.

    Why: the build fails with "not found" at that line. `COPY ../shared .`
    can never work: a build sees nothing outside its context.

    Example:
        # compose: build: {context: ., dockerfile: services/api/Dockerfile}
        COPY ../../libs/common /srv/libs/common

    Use instead:
        COPY libs/common /srv/libs/common
    """
    project = ctx.project
    for c in project.contexts_in(ctx.dir):
        if len(built_from(project, c.dockerfile)) > 1:
            continue
        found, note = copy_problems(c)
        for source, why in found:
            yield Hit(source.ins.start_line, why + note, source.ins.original, source.ins.end_line, file=c.dockerfile)


def copy_problems(c) -> tuple[list, str]:
    """(the COPY sources that break the build of ``c``, a note on the context assumed), computed once.

    Empty when the Dockerfile is missing or doesn't parse, the context is
    outside the repository or its ignore file is invalid: then nothing is
    known. A context no compose file names is judged from the best of its
    directory and the ones above it (as CX003 reports it).
    """
    project = c.project
    key = ("copy_problems", c.dir, c.dockerfile, c.inferred)
    if key not in project.memo:
        df = project.dockerfiles.get(c.dockerfile)
        readable = readable_ignore(c)
        kept = project.names_memo.setdefault("copy_problems", _KeptProblems())
        was = kept.get(key)
        if was is not None and was[0] is df and was[1] == (c.ignore.source, c.ignore.key):
            project.memo[key] = was[2]
            return was[2]
        found, note, tried = [], "", False
        if resolvable(c) and readable and df is not None and not df.error:
            found = problems(c, df)
            if c.inferred and found:
                tried = True
                trials = [
                    (problems(t, df), t.dir)
                    for t in (Context(project, d, c.dockerfile, inferred=True) for d in _ancestors(c.dir))
                ]
                found, best = min(trials, key=lambda t: len(t[0]))
                note = f" (no compose service builds {c.dockerfile}: context {best} assumed)"
        project.memo[key] = (found, note)
        if not tried:  # an answer from the directories above also read their ignore files: not kept
            kept[key] = (df, (c.ignore.source, c.ignore.key), project.memo[key])
    return project.memo[key]


class _KeptProblems(dict):
    """``copy_problems`` answers kept across updates (``Project.names_memo``): key -> (the parsed Dockerfile,
    the ignore file and its patterns, the answer). An answer stands while its Dockerfile object (kept by
    ``Project.updated`` while unchanged) and ignore patterns are the same and no file went from its
    directory (nor came, for an answer with problems)."""

    def follow(self, old: list[str], new: list[str], added: list[str], removed: list[str]) -> _KeptProblems:
        # An added file can't break a COPY that worked (each source names as many files or more): a context
        # without problems keeps its answer; one with problems, or that lost a file, is judged again.
        return _KeptProblems(
            (key, value)
            for key, value in self.items()
            if not any(within(p, key[1]) for p in removed)
            and not (value[2][0] and any(within(p, key[1]) for p in added))
        )


def cannot_build(c) -> bool:
    """Is ``c`` already reported unbuildable (CX003 or CO007: a COPY source it lacks)?

    The context rules (CX001, CX002, CX004, CX005) and SZ005 stay quiet on
    such a context: what it sends or how large it is matters once it builds,
    and the broken COPY is the finding to act on. A directory that some
    Dockerfile does build from is still judged.
    """
    return bool(copy_problems(c)[0])
