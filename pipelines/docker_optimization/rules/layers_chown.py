"""Layers rule LY003: a recursive chown/chmod after COPY, which stores every file twice."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import AlreadyResolved, Declined
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization.fixes.edit import (
    COPY_PREFIX,
    add_flags,
    apply_edits,
    dockerfile_now,
    lines_of,
    newline_of,
    split_prefix,
    verify,
)
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction, resolve_path, under
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.model.shell import (
    INERT,
    Segment,
    is_heredoc,
    segments,
    workdir_at,
)
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, rule
from agent_pipelines.pipelines.docker_optimization.rules.layers import copy_dest

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

COPY_CHOWN_FIX = Fix("copy-chown")


# -- chown/chmod -R after COPY ------------------------------------------------------

_RECURSIVE = re.compile(r"^-[A-Za-z]*R[A-Za-z]*$")


@dataclass(frozen=True)
class Recursive:
    """A `chown -R spec path...` or `chmod -R mode path...` simple command."""

    prog: str
    spec: str
    paths: tuple[str, ...]
    plain: bool  # only -R (and -f/-v): nothing a COPY flag can't express


def recursive_change(seg: Segment) -> Recursive | None:
    if seg.prog not in ("chown", "chmod"):
        return None
    flags = [a for a in seg.args if a.startswith("-")]
    rest = [a for a in seg.args if not a.startswith("-")]
    if not any(_RECURSIVE.match(f) or f == "--recursive" for f in flags) or len(rest) < 2:
        return None
    plain = all(f == "--recursive" or re.fullmatch(r"-[Rfv]+", f) for f in flags)
    return Recursive(seg.prog, rest[0], tuple(rest[1:]), plain)


def chown_after_copy(df: Dockerfile, run: Instruction) -> list[tuple[Recursive, str, Instruction]]:
    """(the chown/chmod -R, its resolved path, the earlier COPY of that path in the stage)."""
    found = []
    for seg in segments(df, run):
        change = recursive_change(seg)
        if change is None:
            continue
        for path in change.paths:
            target = resolve_path(seg.cwd, path)
            lines, copies = _copies_by_dest(df, run.stage).get(target, ((), ())) if target else ((), ())
            before = bisect.bisect_left(lines, run.start_line)  # the last COPY to target above the RUN
            if before:
                found.append((change, target, copies[before - 1]))
    return found


def _copies_by_dest(df: Dockerfile, stage: int) -> dict[str, tuple[list[int], list[Instruction]]]:
    """The stage's COPY/ADD (not heredocs) by destination, with their lines: built once per file and stage
    (a scan of the stage for every ``chown -R`` is quadratic in a long Dockerfile)."""
    memo = df.memo.setdefault("copies_by_dest", {})
    found: dict[str, tuple[list[int], list[Instruction]]] | None = memo.get(stage)
    if found is None:
        found = {}
        memo[stage] = found
        for c in df.in_stage(stage):
            if c.cmd in ("COPY", "ADD") and not is_heredoc(c) and len(c.value) >= 2:
                lines, copies = found.setdefault(copy_dest(df, c), ([], []))
                lines.append(c.start_line)
                copies.append(c)
    return found


@rule(
    "LY003",
    "recursive-chown-after-copy",
    Category.size,
    Severity.warning,
    "dockerfile",
    fix=COPY_CHOWN_FIX,
    safety=Applicability.unsafe,
    phase="dockerfiles",
)
def recursive_chown_after_copy(df: Dockerfile) -> Iterable[Hit]:
    """`RUN chown -R` (or `chmod -R`) on the path an earlier COPY of the stage wrote.

    Why: a layer stores every file a step changes, and changing the owner or
    the mode is a change: the RUN stores a second copy of everything the
    COPY added. `COPY --chown` (and `--chmod`) set them while copying, in
    one layer.

    Example:
        COPY . /app
        RUN chown -R app:app /app

    Use instead:
        COPY --chown=app:app . /app

    Fix: adds `--chown=user:group` (or `--chmod=mode`, octal modes only) to
    the COPY and drops the RUN, when the RUN does nothing else, comes right
    after the COPY, and nothing earlier in the stage wrote under that path
    (a RUN there, like `npm ci`, makes files `chown -R` would change too).
    COPY --chown only owns what it creates: when WORKDIR (or an earlier
    COPY) already made the directory, the fix keeps a non-recursive
    `RUN chown user:group dir` for the directory itself, one entry instead
    of a copy of every file.

    Fix safety: unsafe: it changes file ownership. `COPY --chown` owns the
    copied files, while `chown -R` also owned the directory itself and
    anything an earlier step put there; a process that writes there may
    lose that right. Check the image still starts and writes what it
    writes.
    """
    for run in df.of("RUN"):
        found = chown_after_copy(df, run)
        if found:
            change, target, copy = found[0]
            yield Hit(
                run.start_line,
                f"{change.prog} -R {change.spec} {target} rewrites every file COPY (line {copy.start_line}) "
                f"added: they are stored twice; use COPY --{change.prog}",
                run.original,
                run.end_line,
            )


# -- fixes -----------------------------------------------------------------------------------------------


# -- LY003: COPY --chown instead of chown -R --------------------------------------------------

_OCTAL = re.compile(r"^[0-7]{3,4}$")


def _set_flags(prefix: str, flags: list[tuple[str, str]]) -> str:
    """``prefix`` with each --name=value set: replaced where the flag is written, otherwise added in order."""
    added = []
    for name, value in flags:
        pattern = re.compile(rf"(?<!\S)--{name}=\S+")
        if pattern.search(prefix):
            # a function, not a template: the value is taken literally; called here, within the iteration
            prefix = pattern.sub(lambda m: f"--{name}={value}", prefix, count=1)  # noqa: B023
        else:
            added.append(f"--{name}={value}")
    return add_flags(prefix, added)


def _chown_edits(df: Dockerfile, run: Instruction) -> list[tuple[int, int, list[str]]]:
    found = chown_after_copy(df, run)
    segs = segments(df, run)
    recognized = [recursive_change(s) for s in segs]
    if any(c is None for c in recognized) or len(found) != len(segs):
        raise Declined(f"line {run.start_line} does more than chown/chmod -R the copied path; left as is")
    changes = [c for c in recognized if c is not None]
    _, target, copy = found[0]
    if any(t != target or c is not copy for _, t, c in found) or any(len(c.paths) != 1 for c in changes):
        raise Declined(f"line {run.start_line} changes several paths; left as is")
    if any(not c.plain for c in changes):
        raise Declined(f"line {run.start_line} uses options COPY --chown/--chmod can't express")
    stage = [i for i in df.instructions if i.stage == run.stage]
    if df.stages[run.stage].base.lower() in {s.name.lower() for s in df.stages if s.name}:
        raise Declined(f"the stage builds on another stage, which may have written under {target}")
    for ins in stage:
        if copy.start_line < ins.start_line < run.start_line and ins.cmd not in INERT:
            raise Declined(
                f"line {ins.start_line} sits between the COPY (line {copy.start_line}) and the "
                f"{changes[0].prog} -R; it may write files the RUN changes too"
            )
        if ins.start_line >= copy.start_line:
            continue
        if ins.cmd in ("COPY", "ADD") and len(ins.value) >= 2 and under(copy_dest(df, ins), target):
            raise Declined(f"line {ins.start_line} copied files under {target} before; chown -R changes those too")
        if ins.cmd == "RUN" and (under(workdir_at(df, ins), target) or target in ins.command):
            raise Declined(
                f"line {ins.start_line} runs in or on {target} before the COPY and may have written "
                f"files there; chown -R changes those too"
            )
    prefix, rest = split_prefix(df, copy, COPY_PREFIX)
    kept = []
    for change in changes:
        if change.prog == "chmod" and not _OCTAL.match(change.spec):
            raise Declined(f"COPY --chmod takes an octal mode, not {change.spec}")
        kept.append(f"{change.prog} {change.spec} {change.paths[0]}")
    prefix = _set_flags(prefix, [(change.prog, change.spec) for change in changes])
    edits = [(copy.start_line, copy.end_line, lines_of(prefix + rest))]
    made_earlier = any(
        i.cmd == "WORKDIR"
        and i.start_line < copy.start_line
        and i.value
        and under(resolve_path(workdir_at(df, i), i.value[0]), target)
        for i in stage
    )
    nl = newline_of(df.lines[run.start_line - 1]) or "\n"
    edits.append((run.start_line, run.end_line, ["RUN " + " && ".join(kept) + nl] if made_earlier else []))
    return edits


@COPY_CHOWN_FIX.applies("Set ownership and mode in COPY instead of a chown -R layer in {file}")
def copy_chown(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    runs = [run for run in df.of("RUN") if chown_after_copy(df, run)]
    if not runs:
        raise AlreadyResolved(f"{task.file} has no chown -R after a COPY left")
    edits = [edit for run in runs for edit in _chown_edits(df, run)]
    starts = [e[0] for e in edits]
    if len(starts) != len(set(starts)):
        raise Declined("two chown/chmod -R RUNs change the same COPY; left for a person")
    text = apply_edits(df.text, edits)
    return {task.file: verify(task.file, text, recursive_chown_after_copy, "LY003")}
