"""Context rules CX001, CX002, CX005: what a build context sends (no .dockerignore, files no build step
uses, its size); with the fix that writes or extends the context's .dockerignore.

COPY sources outside the context (CX003) are in ``context_copies.py``; .dockerignore files git doesn't
keep (CX004) in ``context_git.py``.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.engine.gitenv import git_env
from agent_pipelines.pipelines.docker_optimization.model.context_size import excluded_from, sent_size
from agent_pipelines.pipelines.docker_optimization.model.copies import names, problems, sources
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from agent_pipelines.pipelines.docker_optimization.model.dockerignore import DockerIgnore
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, rule
from agent_pipelines.pipelines.docker_optimization.rules.context_copies import cannot_build, readable_ignore
from agent_pipelines.pipelines.docker_optimization.rules.context_git import gitignore_rules, gitignored
from agent_pipelines.pipelines.docker_optimization.rules.security_secrets import public_env

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

DOCKERIGNORE_FIX = Fix("dockerignore")


# What a build rarely needs: (pattern, probe path for .gitignore, why).
CANDIDATES: tuple[tuple[str, str, str], ...] = (
    (".git", ".git/HEAD", "version control"),
    ("**/.git", "", "version control"),
    ("**/__pycache__", "__pycache__/x.pyc", "bytecode caches"),
    ("**/*.pyc", "x.pyc", "bytecode caches"),
    ("**/.pytest_cache", ".pytest_cache/x", "tool caches"),
    ("**/.mypy_cache", ".mypy_cache/x", "tool caches"),
    ("**/.ruff_cache", ".ruff_cache/x", "tool caches"),
    ("**/node_modules", "node_modules/x", "installed packages"),
    ("**/.venv", ".venv/x", "virtualenvs"),
    ("**/venv", "venv/x", "virtualenvs"),
    ("**/dist", "dist/x", "build outputs"),
    ("**/build", "build/x", "build outputs"),
    ("**/coverage", "coverage/x", "coverage output"),
    ("**/.coverage", ".coverage", "coverage output"),
    ("**/tests", "", "tests"),
    ("**/docs", "", "docs"),
    ("**/reports", "reports/x", "reports"),
    ("**/.env", ".env", "local secrets"),
    ("**/.env.*", ".env.local", "local secrets"),
    ("**/docker-compose*.yml", "", "compose files"),
)
_UNNEEDED = DockerIgnore([pattern for pattern, _, _ in CANDIDATES])
# Candidates that name a directory by a common name only: a dist/ or build/ that git keeps is
# vendored or source (wwwroot/lib/jquery/dist, a CMake build/ of scripts), not a build output.
OUTPUT_DIRS = ("dist", "build")


@rule(
    "CX001",
    "context-without-dockerignore",
    Category.performance,
    Severity.warning,
    "context",
    reads=("context-sizes",),
    fix=DOCKERIGNORE_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def context_without_dockerignore(ctx) -> Iterable[Hit]:
    """A build context with files a build rarely needs has no .dockerignore.

    Fires when neither the context root nor the Dockerfile has an ignore file
    and the context is the repository root (where .git lives) or holds tests,
    docs, caches, virtualenvs, build outputs, .env files or the like. A dist/
    or build/ directory that git keeps (not hidden by .gitignore) is source,
    not a build output (wwwroot/lib/jquery/dist).

    Why: the classic builder sends the whole directory to the engine on every
    build (.git, tests, node_modules, virtualenvs, local .env files), and
    `COPY . .` puts all of it in the image, where any change busts the cache.

    Example:
        services/api/  (Dockerfile, app/, tests/, .venv/, no .dockerignore)

    Use instead:
        a .dockerignore listing what the image doesn't need:
        .git
        **/__pycache__
        tests

    Fix safety: decided per repository. Safe when no COPY/ADD of the
    contexts copies a file the new patterns exclude (a Dockerfile that COPYs
    named paths): then only what is sent to the builder changes, never an
    image; safe too when what leaves the image is inert: bytecode and tool
    caches, coverage output, and tests when no CMD/ENTRYPOINT runs tests.
    When a COPY copies anything else (`COPY . .` with a .env, docs, .git,
    node_modules or build outputs in the context), the app or a build step
    may read it (a .env loaded at start, .git for a version, docs a server
    serves): the task is unsafe and names the files.
    """
    if ctx.ignore_path or all(cannot_build(c) for c in ctx.project.contexts_in(ctx.dir)):
        return
    files = ctx.files()
    if ctx.dir != "." and not any(_UNNEEDED.excluded(p) and not kept_output(ctx, p) for p in files):
        return
    yield Hit(
        0,
        f"build context {ctx.dir} ({', '.join(ctx.services) or 'no compose service'}) has no .dockerignore: "
        f"{len(files)} files, {sum(files.values())} bytes sent",
        f"{ctx.dir}: no .dockerignore",
        file=ctx.default_ignore_path,
    )


# -- what a context may stop sending -------------------------------------------------------

BUILD_STEP_WORDS: dict[str, tuple[str, ...]] = {  # a candidate a RUN uses when it mentions one of these
    "**/tests": ("test",),
    "**/docs": ("docs", "mkdocs", "sphinx"),
}


def used_by_build(dockerfiles: list[Dockerfile]) -> set[str]:
    """CANDIDATES patterns a build step needs: tests when a RUN runs them, docs when one builds them."""
    commands = [ins.command for df in dockerfiles for ins in df.of("RUN")]
    return {
        pattern
        for pattern, words in BUILD_STEP_WORDS.items()
        if any(word in command for command in commands for word in words)
    }


def ignore_users(project, ignore_path: str) -> list:
    """The contexts that build with ``ignore_path`` (or would, once a missing one is written)."""
    return [
        c
        for c in project.contexts
        if c.ignore_path == ignore_path or (not c.ignore_path and c.default_ignore_path == ignore_path)
    ]


def _raw(ignore: DockerIgnore) -> list[str]:
    return [("!" if p.exclusion else "") + p.text for p in ignore.patterns]


def _reincluded(ignore: DockerIgnore, path: str) -> bool:
    """Does a ``!pattern`` of ``ignore`` name ``path`` or a directory above it (a deliberate keep)?"""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(p.exclusion and p.match(prefix) for p in ignore.patterns for prefix in prefixes)


def _broken(contexts: list, ignore: DockerIgnore) -> set[tuple[int, str, str]]:
    found = set()
    for ctx in contexts:
        df = ctx.project.dockerfiles.get(ctx.dockerfile)
        if df is not None and not df.error:
            found |= {(source.ins.start_line, source.path, ctx.dockerfile) for source, _ in problems(ctx, df, ignore)}
    return found


def excludable(
    contexts: list, ignore: DockerIgnore, probes: frozenset[str] | set[str] = frozenset()
) -> list[tuple[str, str, list[str]]]:
    """(pattern, why, files it stops sending) for each CANDIDATES pattern worth adding to ``ignore``.

    ``contexts`` build with ``ignore`` (same directory). A pattern is worth it
    when it excludes a file the context still sends (or hides a ``probes`` path
    that the context would hold in a working copy, e.g. a gitignored .venv),
    doesn't exclude anything a ``!pattern`` keeps on purpose, isn't used by a
    RUN (tests, docs), and breaks no COPY that works now. Chosen greedily in
    CANDIDATES order, each tried on top of the ones before.
    """
    dockerfiles = [c.project.dockerfiles[c.dockerfile] for c in contexts]
    files = contexts[0].files()
    sent = contexts[0].sent() if ignore is contexts[0].ignore else ignore.sent(files)
    base = _raw(ignore)
    baseline = _broken(contexts, ignore)
    skip = used_by_build(dockerfiles) | set(base)
    chosen: list[tuple[str, str, list[str]]] = []
    tried = tuple(pattern for pattern, _, _ in CANDIDATES if pattern not in skip)
    each = excluded_from(contexts[0], tried, sent)
    for pattern, probe, why in CANDIDATES:
        if pattern in skip:
            continue
        newly = each[pattern]
        if pattern.removeprefix("**/") in OUTPUT_DIRS:
            newly = [p for p in newly if not kept_output(contexts[0], p)]
        elif pattern.startswith("**/.env"):  # a build reads public-only .env files (EXPO_PUBLIC_*, VITE_*)
            newly = [p for p in newly if not public_env(contexts[0].project, _in_repo(contexts[0], p))]
        if not newly and not (probe in probes and not ignore.excluded(probe)):
            continue
        if ignore.has_reinclusions and any(_reincluded(ignore, p) for p in newly):
            continue
        trial = DockerIgnore(
            base + [p for p, _, _ in chosen] + [pattern], source=ignore.source or ".dockerignore", flavor=ignore.flavor
        )
        if not _broken(contexts, trial) <= baseline:
            continue
        chosen.append((pattern, why, newly))
    return chosen


def kept_output(ctx, path: str) -> bool:
    """Is ``path`` (context-relative) under a dist/ or build/ directory whose files git keeps?

    Such a directory is part of the source (a vendored library's dist/, a
    committed build/ of scripts): excluding it would change the image. One
    that .gitignore hides is a local build output, worth excluding.
    """
    if not any(part in OUTPUT_DIRS for part in path.split("/")[:-1]):
        return False
    project = ctx.project
    if "gitignore_rules" not in project.memo:
        project.memo["gitignore_rules"] = gitignore_rules(project)
    return gitignored(project.memo["gitignore_rules"], _in_repo(ctx, path)) is None


def _in_repo(ctx, path: str) -> str:
    return path if ctx.dir == "." else f"{ctx.dir}/{path}"


def broad_copies(df: Dockerfile) -> list[Instruction]:
    """COPY/ADD instructions that copy the whole context (``COPY . .``, ``COPY ./ /app``)."""
    return sorted(
        {s.ins for s in sources(df) if posixpath.normpath(s.path.lstrip("/") or ".") == "."}, key=lambda i: i.start_line
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


@rule(
    "CX002",
    "broad-copy-ships-unneeded-files",
    Category.size,
    Severity.warning,
    "context",
    fix=DOCKERIGNORE_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def broad_copy_ships_unneeded_files(ctx) -> Iterable[Hit]:
    """`COPY . .` puts tests, docs, caches, .git or .env files into the image.

    Fires when a Dockerfile copies its whole context and the context (after
    its .dockerignore) still sends files a build rarely needs: the same list
    the .dockerignore fix writes, minus what a RUN uses (tests it runs, docs
    it builds), what a COPY names, dist/ or build/ directories git keeps
    (vendored assets, not build outputs), and .env files with only public
    variables (`EXPO_PUBLIC_*`, `VITE_*`: the build inlines them). The fix writes a .dockerignore, or
    appends the missing patterns to the existing one.

    Why: everything the context sends lands in the layer: the image is larger,
    a local `.env` ships its secrets, and editing a test or a doc rebuilds
    every layer after the COPY.

    Example:
        COPY . .        # context: app/, tests/, docs/, .env; .dockerignore lists only .git

    Use instead:
        a .dockerignore that also lists them:
        .git
        **/tests
        **/docs
        **/.env

    Fix safety: as CX001's: safe only when nothing a COPY/ADD copies
    leaves the image, or only caches, coverage and tests no command runs;
    otherwise unsafe, naming the files that would leave the image.
    """
    groups: dict[str, list] = {}
    for c in ctx.project.contexts_in(ctx.dir):
        if not cannot_build(c):
            groups.setdefault(c.ignore_path or c.default_ignore_path, []).append(c)
    dockerfiles = ctx.project.dockerfiles
    for path, contexts in groups.items():
        if any(
            c.dockerfile not in dockerfiles or dockerfiles[c.dockerfile].error for c in contexts
        ) or not readable_ignore(contexts[0]):
            continue  # what a missing or broken Dockerfile copies is unknown
        copies_all = [(c.dockerfile, ins) for c in contexts for ins in broad_copies(dockerfiles[c.dockerfile])]
        if not copies_all:
            continue
        found = excludable(contexts, contexts[0].ignore)
        if not found:
            continue
        dockerfile, ins = copies_all[0]
        shipped = ", ".join(f"{why} ({_count(len(newly), 'file')})" for _, why, newly in found)
        where = f"{path} doesn't exclude them" if contexts[0].ignore_path else "no .dockerignore excludes them"
        yield Hit(
            0,
            f"{ins.original} ({dockerfile}:{ins.start_line}) copies {shipped} into the image; {where}: "
            f"add {', '.join(p for p, _, _ in found)}",
            f"{dockerfile}:{ins.start_line}: {ins.original}",
            file=path,
        )


# -- size ----------------------------------------------------------------------------------

LARGE_CONTEXT = 50 * 1024 * 1024


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.1f} KiB"


@rule(
    "CX005", "large-build-context", Category.performance, Severity.info, "context", heavy=True, reads=("context-sizes",)
)
def large_build_context(ctx) -> Iterable[Hit]:
    """A build context sends more than 50 MiB after its .dockerignore.

    The message names the biggest top-level directories, the place to look
    for data sets, build outputs or caches to exclude.

    Why: the classic builder uploads the whole context before the first step
    of every build, and BuildKit hashes every file a COPY names: a large
    context makes every build slow, even a cached one.

    Example:
        services/ml/  (Dockerfile, app/, data/ with 2 GB of samples)

    Use instead:
        a .dockerignore with `data` (and a volume or a download step for the data).
    """
    seen = set()
    for c in ctx.project.contexts_in(ctx.dir):
        key = c.ignore_path or c.default_ignore_path
        if key in seen or cannot_build(c):
            continue
        seen.add(key)
        size = sent_size(c)
        if size.bytes <= LARGE_CONTEXT:
            continue
        total = size.bytes
        biggest = sorted(((top, sent) for top, (_, sent) in size.by_top.items()), key=lambda item: (-item[1], item[0]))[
            :3
        ]
        yield Hit(
            0,
            f"build context {c.dir} sends {_mib(total)} in {_count(size.files, 'file')}; biggest: "
            + ", ".join(f"{name} {_mib(size)}" for name, size in biggest),
            f"{c.dir}: {_mib(total)}",
            file=key,
        )


# -- fixes -----------------------------------------------------------------------------------------------
# Context fixes: write or extend a .dockerignore, derived from what the context holds and what COPY needs.


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
    proc = subprocess.run(
        ["git", "-C", str(root), "check-ignore", "--no-index", "-z", "--stdin"],
        input="\0".join(probes) + "\0",
        capture_output=True,
        text=True,
        env=git_env(),
    )
    return {line[len(prefix) :] for line in proc.stdout.split("\0") if line}


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
        raise Declined(f"no build context uses {ignore_path} any more")
    excluded = {f: why for _, why, files in _derive(project, users[0].dir, ignore_path) for f in files}
    copying = [
        (ctx.sent(), [src.path for src in sources(project.dockerfiles[ctx.dockerfile])])
        for ctx in users
        if ctx.dir == users[0].dir
    ]

    def copied(path: str) -> bool:  # is ``path`` among ``matching(sent, src)`` of a COPY: asked of it alone
        return any(path in sent and any(names(src, path) for src in srcs) for sent, srcs in copying)

    return sorted((f, excluded[f]) for f in excluded if copied(f))


def assess_dockerignore(project: Project, ignore_path: str) -> tuple[bool, str]:
    """Safe when what leaves the images is inert (caches, coverage, tests no command runs) or nothing;
    unsafe otherwise, naming the files."""
    gone = leaving_images(project, ignore_path)
    if not gone:
        return True, "No COPY/ADD copies what it excludes: the images stay the same; only what is sent changes."
    commands = " ".join(
        " ".join(i.value)
        for c in ignore_users(project, ignore_path)
        for i in project.dockerfiles[c.dockerfile].of("CMD", "ENTRYPOINT")
    )
    inert = set(INERT) - ({"tests"} if RUNS_TESTS.search(commands) else set())
    risky = [f for f, why in gone if why not in inert]
    if not risky:
        kinds = ", ".join(sorted({why for _, why in gone}))
        return True, (f"Only {kinds} leave the images (no command runs them): what the images do stays the same.")
    more = f" and {len(risky) - 5} more" if len(risky) > 5 else ""
    return False, (
        f"Unsafe: a COPY/ADD copies what it excludes, so these leave the image: {', '.join(risky[:5])}{more} "
        "(the app or a build step may read them)."
    )


def _derive(project: Project, context_dir: str, ignore_path: str = "") -> list[tuple[str, str, list[str]]]:
    if not ignore_path:
        ignore_path = posixpath.join(context_dir, ".dockerignore") if context_dir != "." else ".dockerignore"
    contexts = [c for c in ignore_users(project, ignore_path) if c.dir == context_dir]
    if not contexts:
        raise Declined(f"no build context {context_dir} builds with {ignore_path} any more")
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
        raise Declined(f"no build context uses {task.file} any more")
    context_dir = users[0].dir
    text = project.text(task.file)
    if text is None:
        chosen = derive(project, context_dir, task.file)
        if not chosen:
            raise Declined(f"nothing in build context {context_dir} is worth excluding")
        return {task.file: HEADER + "".join(f"{p}\n" for p, _ in chosen)}
    if "CX002" not in task.rules:
        raise AlreadyResolved(f"{task.file} exists now: an earlier change wrote it")
    chosen = derive(project, context_dir, task.file)
    if not chosen:
        raise AlreadyResolved(f"{task.file} already excludes what COPY . would ship: an earlier change resolved it")
    newline = "\r\n" if "\r\n" in text else "\n"
    separator = "" if not text or text.endswith("\n") else newline
    return {task.file: text + separator + APPENDED + newline + "".join(f"{p}{newline}" for p, _ in chosen)}
