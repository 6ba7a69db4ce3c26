"""Minimal line edits: replace only the lines of the instructions a fix changes.

Everything else in the file (comments, blank lines, continuations, line
endings, the final-newline state) stays byte-identical.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import Declined, FixError
from agent_pipelines.pipelines.docker_optimization.fixes import dockerfile_of
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules import Hit

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Task


def replace_lines(text: str, start: int, end: int, new_lines: list[str]) -> str:
    """``text`` with lines ``start..end`` (1-based, inclusive) replaced by ``new_lines`` (with their endings)."""
    lines = text.splitlines(keepends=True)
    return "".join(lines[: start - 1] + new_lines + lines[end:])


def newline_of(line: str) -> str:
    for ending in ("\r\n", "\n", "\r"):
        if line.endswith(ending):
            return ending
    return ""


# -- text helpers shared by the layers and size fixes ------------------------------------------

_WS = r"(?:[ \t]+|\\[ \t]*(?:\r\n|\n|\r)[ \t]*)+"
_ESCAPE = re.compile(r"^#\s*escape\s*=\s*(\S)", re.IGNORECASE)


def prefix_pattern(keyword: str) -> re.Pattern[str]:
    """The keyword, its --flags and the whitespace (continuations too) before the first argument."""
    return re.compile(rf"^[ \t]*{keyword}(?:{_WS}--[^\s\\]+)*{_WS}", re.IGNORECASE)


RUN_PREFIX = prefix_pattern("RUN")
COPY_PREFIX = prefix_pattern("(?:COPY|ADD)")


def dockerfile_now(project: Project, task: Task) -> Dockerfile:
    """The task's Dockerfile as it is now; refuses files it can't edit line by line safely."""
    df = dockerfile_of(project, task)
    first = df.instructions[0].start_line if df.instructions else len(df.lines) + 1
    for line in df.lines[: first - 1]:
        found = _ESCAPE.match(line.strip())
        if found and found.group(1) != "\\":
            raise Declined(f"{task.file} sets the escape character to {found.group(1)}; line edits assume a backslash")
    return df


def lines_of(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def splice(text: str, start: int, end: int, new_lines: list[str]) -> str:
    """Lines ``start..end`` (1-based, inclusive) replaced, keeping the file's final-newline state."""
    lines = lines_of(text)
    nl = next((newline_of(line) for line in lines if newline_of(line)), "\n")
    new_lines = [line if newline_of(line) else line + nl for line in new_lines]
    out = lines[: start - 1] + new_lines + lines[end:]
    if lines and end >= len(lines) and not newline_of(lines[-1]) and out:
        out[-1] = out[-1][: len(out[-1]) - len(newline_of(out[-1]))]
    return "".join(out)


def apply_edits(text: str, edits: Iterable[tuple[int, int, list[str]]]) -> str:
    """Several non-overlapping line edits, applied bottom-up so line numbers stay valid."""
    for start, end, new_lines in sorted(edits, key=lambda e: e[0], reverse=True):
        text = splice(text, start, end, new_lines)
    return text


def split_prefix(df: Dockerfile, ins: Instruction, pattern: re.Pattern[str] = RUN_PREFIX) -> tuple[str, str]:
    """(the keyword and flags as written, the rest) of an instruction's source."""
    source = df.source(ins)
    found = pattern.match(source)
    if found is None:
        raise Declined(f"line {ins.start_line}: can't find where its arguments start")
    return source[: found.end()], source[found.end() :]


def add_flags(prefix: str, flags: list[str]) -> str:
    """``prefix`` (``RUN --x ...``) with ``flags`` inserted right after the keyword."""
    if not flags:
        return prefix
    return re.sub(r"^([ \t]*\w+)", lambda m: m.group(1) + " " + " ".join(flags), prefix, count=1)


def verify(path: str, text: str, check: Callable[[Dockerfile], Iterable[Hit]], what: str) -> str:
    """``text`` when it parses and ``check`` finds nothing in it; FixError otherwise."""
    after = Dockerfile.parse(path, text)
    if after.error:
        raise FixError(f"the edited {path} would not parse: {after.error}")
    left = list(check(after))
    if left:
        raise FixError(f"{what} still found after the edit at line {left[0].line}: {left[0].message}")
    return text


def comment_start(df: Dockerfile, ins: Instruction) -> int:
    """The first line of the comment block directly above ``ins`` (its own start when there is none)."""
    previous_end = max((i.end_line for i in df.instructions if i.end_line < ins.start_line), default=0)
    start = ins.start_line
    while start - 1 > previous_end and df.lines[start - 2].lstrip().startswith("#"):
        start -= 1
    return start
