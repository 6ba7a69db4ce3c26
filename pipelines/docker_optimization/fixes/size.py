"""Size fixes: package-manager flags that keep caches and extras out of the image, npm ci, apt list cleanup.

They edit only the RUNs their rule flags, in place: a flag inserted after
the command's verb, `npm install` replaced by `npm ci`, a cleanup appended
to the RUN's last line.
"""

from __future__ import annotations

import posixpath
import re
from typing import Callable

from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.fixes.edit import newline_of
from pipelines.docker_optimization.fixes.layers import apply_edits, dockerfile_now, lines_of, merge_runs, verify
from pipelines.docker_optimization.model.project import Project
from pipelines.docker_optimization.rules.size import APT_NO_RECOMMENDS_FIX, NO_APK_CACHE_FIX, NPM_CI_FIX, PURGE_APT_LISTS_FIX
from pipelines.docker_optimization.rules.layers import (
    Segment, installs_with, manager_groups, segments, shell_words,
)
from pipelines.docker_optimization.rules.size import (
    apk_add_without_no_cache, apk_adds_with_cache, apt_install_recommends, apt_installs_with_recommends,
    apt_lists_left, apt_lists_not_cleaned, mount_targets, unlocked_install, unlocked_installs,
)

_SEGMENT_END = re.compile(r"&&|\|\||;|\|")
_CONTINUATION = re.compile(r"\\[ \t]*(?:\r\n|\n|\r)")


def program(name: str) -> re.Pattern[str]:
    """A program word (also /usr/bin/name), at the end of a word."""
    return re.compile(rf"(?<![\w.$/-])(?:/[\w./-]*/)?{name}(?=[\s\\;&|)]|$)")


def segment_end(source: str, start: int) -> int:
    found = _SEGMENT_END.search(source, start)
    return found.start() if found else len(source.rstrip("\r\n"))


def add_after_verb(source: str, prog: re.Pattern[str], verb: str, present: re.Pattern[str], flag: str) -> str:
    """``source`` with ``flag`` after ``verb`` in each ``prog`` command that lacks it."""
    verb_pattern = re.compile(rf"(?<![\w.-]){verb}(?![\w.-])")
    out = source
    for found in reversed(list(prog.finditer(source))):
        end = segment_end(source, found.end())
        at = verb_pattern.search(source, found.end(), end)
        if at is None or present.search(source, found.start(), end):
            continue
        out = out[: at.end()] + " " + flag + out[at.end():]
    return out


def flag_fix(df: Dockerfile, runs: list[Instruction], prog: re.Pattern[str], verb: str,
             present: re.Pattern[str], flag: str) -> str:
    edits = []
    for run in runs:
        source = df.source(run)
        edited = add_after_verb(source, prog, verb, present, flag)
        if edited == source:
            raise FixError(f"line {run.start_line}: can't find where to add {flag} (a variable or a quoted command?)")
        edits.append((run.start_line, run.end_line, lines_of(edited)))
    return apply_edits(df.text, edits)


def _runs(df: Dockerfile, test: Callable[[Dockerfile, Instruction], bool]) -> list[Instruction]:
    found = [run for run in df.of("RUN") if test(df, run)]
    for run in found:
        if run.json:
            raise FixError(f"line {run.start_line} is a JSON-form RUN; left as is")
    return found


@APT_NO_RECOMMENDS_FIX.applies("Install apt packages without recommends in {file}")
def apt_no_recommends(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    runs = _runs(df, apt_installs_with_recommends)
    if not runs:
        raise AlreadyResolved(f"{task.file} has no apt-get install with recommends left")
    text = flag_fix(df, runs, program(r"apt(?:-get)?"), "install",
                    re.compile(r"--no-install-recommends|Install-Recommends"), "--no-install-recommends")
    return {task.file: verify(task.file, text, apt_install_recommends, "SZ002")}


@NO_APK_CACHE_FIX.applies("Add packages with apk --no-cache in {file}")
def apk_no_cache(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    runs = _runs(df, apk_adds_with_cache)
    if not runs:
        raise AlreadyResolved(f"{task.file} has no apk add without --no-cache left")
    text = flag_fix(df, runs, program("apk"), "add", re.compile(r"--no-cache\b"), "--no-cache")
    return {task.file: verify(task.file, text, apk_add_without_no_cache, "SZ003")}


# -- SZ005: npm ci, frozen yarn lockfile ---------------------------------------------------------

_NPM_INSTALL = re.compile(r"(?<![\w.$/-])(?:/[\w./-]*/)?npm(?P<opts>(?:[ \t]+-[^\s\\]+)*)[ \t]+(?P<verb>install|i)"
                          r"(?![\w.-])")
_YARN = program("yarn")


def _parsed(source: str, start: int) -> Segment:
    """The simple command written at ``start`` of ``source``, read like the rules read it."""
    text = _CONTINUATION.sub(" ", source[start: segment_end(source, start)])
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
        raise FixError(f"line {run.start_line}: can't match the installs in the text (a variable or a quoted command?)")
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
            raise FixError(f"line {run.start_line} is a JSON-form RUN; left as is")
        by_run.setdefault(run.start_line, (run, []))[1].append((seg, lock))
    edits = [(run.start_line, run.end_line, _lock_fix(project, df, run, wanted)) for run, wanted in by_run.values()]
    text = apply_edits(df.text, edits)
    after = Dockerfile.parse(task.file, text)
    if after.error:
        raise FixError(f"the edited {task.file} would not parse: {after.error}")
    return {task.file: text}


# -- SZ006: remove the apt lists in the RUN that downloads them ------------------------------------

CLEANUP = " && rm -rf /var/lib/apt/lists/*"


def with_cleanup(lines: list[str]) -> list[str]:
    last = lines[-1]
    nl = newline_of(last)
    return lines[:-1] + [last[: len(last) - len(nl)].rstrip(" \t") + CLEANUP + nl]


def _relies_on_lists(df: Dockerfile, run: Instruction) -> bool:
    """A RUN that installs with apt from lists an earlier RUN downloaded."""
    updates = any(s.prog in ("apt-get", "apt") and "update" in s.args for s in segments(df, run))
    cached = any(t.startswith("/var/lib/apt") for t in mount_targets(run))
    return installs_with(df, run, "apt-get") and not updates and not cached


@PURGE_APT_LISTS_FIX.applies("Remove the apt package lists in the RUN that downloads them in {file}")
def apt_lists_cleanup(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    targets = [run for run in df.of("RUN") if apt_lists_left(df, run)]
    if not targets:
        raise AlreadyResolved(f"{task.file} has no apt-get update without cleanup left")
    groups = manager_groups(df)
    merged: dict[int, list[Instruction]] = {}
    alone: list[Instruction] = []
    for run in targets:
        if run.json:
            raise FixError(f"line {run.start_line} is a JSON-form RUN; left as is")
        later = [r for r in df.of("RUN") if r.stage == run.stage and r.start_line > run.start_line]
        relying = [r for r in later if _relies_on_lists(df, r)]
        if not relying:
            alone.append(run)
            continue
        group = next((g for g in groups if run in g), [])
        if not group or any(r not in group for r in relying):
            raise FixError(f"cleaning the lists at line {run.start_line} would break the apt-get install at line "
                           f"{relying[0].start_line}, which relies on them; merge the update into that RUN first")
        merged[group[0].start_line] = group
    covered = [(g[0].start_line, g[-1].end_line, with_cleanup(merge_runs(df, g))) for g in merged.values()]
    covered += [(run.start_line, run.end_line, with_cleanup(lines_of(df.source(run)))) for run in alone
                if not any(g[0].start_line <= run.start_line <= g[-1].end_line for g in merged.values())]
    text = apply_edits(df.text, covered)
    return {task.file: verify(task.file, text, apt_lists_not_cleaned, "SZ006")}
