"""PX: input the analysis could not read as it is, as rules (documented, selectable and ignorable like any other).

Broken input never stops the analysis: a Dockerfile the parser rejects, a
compose file that isn't valid YAML, a binary, huge or unreadable file, an
ignore file Docker refuses each becomes a finding here, and every other
file is still analyzed.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent_pipelines.engine.finding import Category, Severity
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules import Hit, rule


@rule("PX001", "dockerfile-parse-error", Category.correctness, Severity.error, "project", reads=("dockerfiles",))
def dockerfile_parse_error(project: Project) -> Iterable[Hit]:
    """BuildKit's Dockerfile parser rejects the file.

    Why: `docker build` uses the same parser, so the image can't be built;
    no other rule looks at this file until it parses.

    Example:
        RUN <<EOF
        echo never terminated

    Use instead:
        RUN <<EOF
        echo terminated
        EOF
    """
    for df in project.dockerfiles.values():
        if df.error and df.path not in project.problems:
            yield Hit(0, f"BuildKit's parser rejects this file: {df.error}", df.error, file=df.path)


@rule("PX002", "compose-parse-error", Category.correctness, Severity.error, "project", reads=("composes",))
def compose_parse_error(project: Project) -> Iterable[Hit]:
    """A compose file is not valid YAML, or not a mapping at its top level.

    A variant file that holds only comments, beside another compose file of
    its directory, is a placeholder stacked with `-f` (a seam for forks to
    fill in): compose merges it as nothing, and it is not reported.

    Why: `docker compose` refuses it; no compose rule looks at it until it loads.

    Example:
        services:
          api:
            image: "unterminated

    Use instead:
        services:
          api:
            image: "api:1.0"
    """
    directories = [c.path.rpartition("/")[0] for c in project.composes]
    for compose in project.composes:
        if not compose.error or compose.path in project.problems:
            continue
        if _only_comments(compose.text) and directories.count(compose.path.rpartition("/")[0]) > 1:
            continue
        yield Hit(0, f"not a valid compose file: {compose.error}", compose.error, file=compose.path)


def _only_comments(text: str) -> bool:
    return all(
        not line.strip() or line.strip().startswith("#") or line.strip() in ("---", "...") for line in text.splitlines()
    )


def _problems(project: Project, code: str) -> Iterable[Hit]:
    for problem in project.problems.values():
        if problem.code == code:
            yield Hit(0, problem.message, problem.message, file=problem.path)


@rule("PX003", "file-not-text", Category.correctness, Severity.warning, "project", reads=("dockerfiles", "composes"))
def file_not_text(project: Project) -> Iterable[Hit]:
    """A Dockerfile, compose or ignore file holds binary content (NUL bytes).

    It is named like one of the files the analysis reads, but it is not
    text, so it is not analyzed.

    Why: `docker build` or `docker compose` would fail on it, or the name is
    misleading (a build artifact named `Dockerfile.bin`, say).

    Example:
        services/api/Dockerfile.cache   (a binary cache file)

    Use instead:
        a name that isn't a Dockerfile name (`api.cache`), or the real Dockerfile
    """
    return _problems(project, "PX003")


@rule("PX004", "file-too-large", Category.correctness, Severity.warning, "project", reads=("dockerfiles", "composes"))
def file_too_large(project: Project) -> Iterable[Hit]:
    """A Dockerfile, compose or ignore file is larger than the analysis reads (4 MiB).

    Why: no real Dockerfile or compose file is that big; it is generated or
    not what its name says, and reading it whole would slow every analysis.

    Example:
        deploy/docker-compose.yml   (40 MiB, generated)

    Use instead:
        generate smaller files, or name the generated file so that it isn't
        taken for a compose file or Dockerfile
    """
    return _problems(project, "PX004")


@rule("PX005", "file-unreadable", Category.correctness, Severity.error, "project", reads=("dockerfiles", "composes"))
def file_unreadable(project: Project) -> Iterable[Hit]:
    """A Dockerfile, compose or ignore file can't be read (permissions, I/O error).

    Why: what can't be read can't be analyzed, and `docker build` will
    most likely fail on it the same way.

    Example:
        services/api/Dockerfile   (mode 000)

    Use instead:
        make it readable: chmod a+r services/api/Dockerfile
    """
    return _problems(project, "PX005")


@rule(
    "PX006",
    "dockerignore-invalid",
    Category.correctness,
    Severity.error,
    "project",
    reads=("dockerignores", "contexts"),
)
def dockerignore_invalid(project: Project) -> Iterable[Hit]:
    """A .dockerignore holds a pattern Docker refuses (`[]a]`, a lone `!`, a trailing `\\`).

    Why: `docker build` fails before sending anything; every service built
    from that context is broken.

    Example:
        [a-]

    Use instead:
        a valid pattern: `[a\\-]` or `a-*`
    """
    seen = set()
    for ctx in project.contexts:
        if ctx.ignore_error and ctx.ignore_path not in seen:
            seen.add(ctx.ignore_path)
            yield Hit(0, f"Docker refuses this ignore file: {ctx.ignore_error}", ctx.ignore_error, file=ctx.ignore_path)


@rule("PX007", "hadolint-not-applied", Category.correctness, Severity.warning, "project", reads=("dockerfiles",))
def hadolint_not_applied(project: Project) -> Iterable[Hit]:
    """hadolint's rules were not applied to a Dockerfile: hadolint did not finish within its time budget.

    The analysis gives hadolint `hadolint-timeout` seconds (`.pipeline.yaml`,
    default 30) for one run over every Dockerfile; the files of a run it did
    not finish are reported here, with our own rules' findings intact. This
    finding comes from the hadolint step (with hadolint on); the check of
    its own finds nothing.

    Why: hadolint lints about 370 lines a second; a generated Dockerfile of
    50,000 lines would hold every analysis for over two minutes, and a
    silent gap would read as "hadolint found nothing".

    Example:
        services/gen/Dockerfile   (50,000 lines, generated)

    Use instead:
        a larger budget in .pipeline.yaml, if the wait is acceptable:
        hadolint-timeout: 300
    """
    return ()
