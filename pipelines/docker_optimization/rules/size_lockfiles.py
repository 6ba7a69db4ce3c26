"""Size rule SZ005: npm or yarn installs that ignore the lockfile beside them; with the fix that installs
from the lockfile (npm ci, a frozen yarn install)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization.fixes.edit import apply_edits, dockerfile_now, lines_of
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction, resolve_path
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.model.shell import (
    Segment,
    classify,
    segments,
    shell_words,
)
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, per_file, rule
from agent_pipelines.pipelines.docker_optimization.rules.context_copies import cannot_build
from agent_pipelines.pipelines.docker_optimization.rules.layers import context_copies, delivered_by
from agent_pipelines.pipelines.docker_optimization.rules.size import _CONTINUATION, program, segment_end

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

NPM_CI_FIX = Fix("npm-ci")


# -- npm install / yarn install beside a lockfile --------------------------------------------

LOCKFILES = {"npm": ("package-lock.json", "npm-shrinkwrap.json"), "yarn": ("yarn.lock",)}
FROZEN = ("--frozen-lockfile", "--immutable", "--pure-lockfile")


def unlocked_install(seg: Segment) -> str:
    """ "npm" for `npm install` without packages, "yarn" for `yarn install` without a frozen lockfile, else ""."""
    found = classify(seg)
    if found is None or found.kind != "manifest":
        return ""
    if found.tool == "npm" and seg.args[0] in ("install", "i"):
        return "npm"
    if found.tool == "yarn" and not set(FROZEN) & set(seg.args):
        return "yarn"
    return ""


def lockfile_of(df: Dockerfile, run: Instruction, seg: Segment, contexts: list) -> str:
    """The context path of the lockfile an unlocked install sees, when every build context sends it ("" if not)."""
    tool = unlocked_install(seg)
    if not tool or not contexts:
        return ""
    copies = [c for c in context_copies(df, run.stage) if c.start_line < run.start_line]
    for name in LOCKFILES[tool]:
        image_path = resolve_path(seg.cwd, name)
        source = next((found for c in reversed(copies) if (found := delivered_by(df, c, image_path))), None)
        if source and all(ctx.sends(source) for ctx in contexts):
            return source
    return ""


def unlocked_installs(project, path: str) -> list[tuple[Instruction, Segment, str]]:
    """(RUN, the install, the lockfile's context path) for every unlocked install of a Dockerfile."""
    df = project.dockerfiles[path]
    contexts = project.contexts_of(path)
    if "unlocked_installs" not in df.memo:  # the file's own part, kept with it (across incremental updates too)
        df.memo["unlocked_installs"] = [
            (r, seg) for r in df.of("RUN") for seg in segments(df, r) if unlocked_install(seg)
        ]
    found = []
    for run, seg in df.memo["unlocked_installs"]:
        lock = lockfile_of(df, run, seg, contexts)
        if lock:
            found.append((run, seg, lock))
    return found


@rule(
    "SZ005",
    "install-ignores-lockfile",
    Category.reliability,
    Severity.warning,
    "project",
    fix=NPM_CI_FIX,
    safety=Applicability.unsafe,
    phase="dockerfiles",
)
def install_ignores_lockfile(project) -> Iterable[Hit]:
    """`npm install` (or `yarn install` without `--frozen-lockfile`) where the build has the lockfile.

    Fires when the lockfile the install's directory sees comes from the
    build context (package-lock.json or npm-shrinkwrap.json for npm,
    yarn.lock for yarn) in every context that builds the Dockerfile. Quiet
    when every context that builds it is already reported broken (CX003, CO007).

    Why: `npm install` resolves versions again and may rewrite the lock,
    so two builds of the same commit can install different packages.
    `npm ci` installs exactly what the lockfile says, fails when it doesn't
    match package.json, and starts from a clean node_modules.

    Example:
        COPY package.json package-lock.json ./
        RUN npm install

    Use instead:
        COPY package.json package-lock.json ./
        RUN npm ci

    Fix: replaces `npm install` (only without package arguments) by
    `npm ci`, keeping its options; adds `--frozen-lockfile` to `yarn
    install` (`--immutable` for Yarn 2+, which has a .yarnrc.yml).

    Fix safety: unsafe: `npm install` may resolve versions other than the
    lockfile's (and rewrite it), `npm ci` installs exactly the lockfile (and
    fails when it is out of date): the package set can change.
    """
    # A Dockerfile's hits are kept while it, its contexts and their ignore files are the same, and no file
    # came or went (what a context sends); a context no compose file names is judged from the directories
    # above it too (``copy_problems``): its Dockerfile's hits are made again.
    yield from per_file(
        project,
        "SZ005",
        [df for _, df in sorted(project.dockerfiles.items()) if not df.error],
        lambda df: _lockfile_hits(project, df.path),
        lambda df: _contexts_read(project, df.path),
        listing=True,
    )


def _contexts_read(project, path: str) -> tuple:
    found: list[object] = []
    for c in project.contexts_of(path):
        if c.inferred:
            return (object(),)  # never the same
        found += (c.dir, c.ignore_path, project.parsed_ignore(c.ignore_path) if c.ignore_path else None)
    return tuple(found)


def _lockfile_hits(project, path: str) -> Iterable[Hit]:
    contexts = project.contexts_of(path)
    if contexts and all(cannot_build(c) for c in contexts):
        return  # CX003/CO007 report the build broken: that is the finding to act on
    for run, seg, lock in unlocked_installs(project, path):
        instead = "npm ci" if seg.prog == "npm" else "yarn install --frozen-lockfile"
        yield Hit(
            run.start_line,
            f"{seg.text()} with {lock} in the build context: the install may resolve other "
            f"versions than the lockfile; use {instead}",
            run.original,
            run.end_line,
            file=path,
        )


# -- SZ005: npm ci, frozen yarn lockfile ---------------------------------------------------------

_NPM_INSTALL = re.compile(
    r"(?<![\w.$/-])(?:/[\w./-]*/)?npm(?P<opts>(?:[ \t]+-[^\s\\]+)*)[ \t]+(?P<verb>install|i)"
    r"(?![\w.-])"
)
_YARN = program("yarn")


def _parsed(source: str, start: int) -> Segment:
    """The simple command written at ``start`` of ``source``, read like the rules read it."""
    text = _CONTINUATION.sub(" ", source[start : segment_end(source, start)])
    return Segment(tuple(shell_words(text)), "")


def _lock_fix(project: Project, df: Dockerfile, run: Instruction, wanted: list[tuple[Segment, str]]) -> list[str]:
    source = df.source(run)
    npm = [s for s, _ in wanted if s.prog == "npm"]
    yarn = [(s, lock) for s, lock in wanted if s.prog == "yarn"]
    npm_all = [s for s in segments(df, run) if unlocked_install(s) == "npm"]
    yarn_all = [s for s in segments(df, run) if unlocked_install(s) == "yarn"]
    npm_at = [m for m in _NPM_INSTALL.finditer(source) if unlocked_install(_parsed(source, m.start())) == "npm"]
    yarn_at = [m for m in _YARN.finditer(source) if unlocked_install(_parsed(source, m.start())) == "yarn"]
    if len(npm_at) != len(npm_all) or len(yarn_at) != len(yarn_all):
        raise Declined(f"line {run.start_line}: can't match the installs in the text (a variable or a quoted command?)")
    edits: list[tuple[int, int, str]] = []
    for seg, found in zip(npm_all, npm_at):
        if seg in npm:
            edits.append((found.start("verb"), found.end("verb"), "ci"))
    for seg, found in zip(yarn_all, yarn_at):
        lock = next((lock for s, lock in yarn if s == seg), None)
        if lock is None:
            continue
        context = project.contexts_of(df.path)[0]
        rc = posixpath.join(posixpath.dirname(lock), ".yarnrc.yml") if posixpath.dirname(lock) else ".yarnrc.yml"
        flag = "--immutable" if rc in context.files() else "--frozen-lockfile"
        verb = re.compile(r"[ \t]+install(?![\w.-])").match(source, found.end())
        at = verb.end() if verb else found.end()
        edits.append((at, at, " " + flag))
    for start, end, new in sorted(edits, reverse=True):
        source = source[:start] + new + source[end:]
    return lines_of(source)


@NPM_CI_FIX.applies("Install from the lockfile (npm ci) in {file}")
def npm_ci(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    found = unlocked_installs(project, task.file)
    if not found:
        raise AlreadyResolved(f"{task.file} has no npm/yarn install ignoring a lockfile left")
    by_run: dict[int, tuple[Instruction, list[tuple[Segment, str]]]] = {}
    for run, seg, lock in found:
        if run.json:
            raise Declined(f"line {run.start_line} is a JSON-form RUN; left as is")
        by_run.setdefault(run.start_line, (run, []))[1].append((seg, lock))
    edits = [(run.start_line, run.end_line, _lock_fix(project, df, run, wanted)) for run, wanted in by_run.values()]
    text = apply_edits(df.text, edits)
    after = Dockerfile.parse(task.file, text)
    if after.error:
        raise FixError(f"the edited {task.file} would not parse: {after.error}")
    return {task.file: text}
