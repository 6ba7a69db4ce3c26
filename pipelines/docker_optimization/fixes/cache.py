"""Cache fixes: add a BuildKit cache mount to pip installs and drop what defeats it."""

from __future__ import annotations

import re

from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.fixes import fix
from pipelines.docker_optimization.fixes.edit import newline_of, replace_lines
from pipelines.docker_optimization.project import Project
from pipelines.docker_optimization.rules.cache import NO_CACHE_DIR, pip_cache_mount, pip_runs

PIP_MOUNT = "--mount=type=cache,target=/root/.cache/pip"
_KEYWORD = re.compile(r"^(\s*RUN\s+)", re.IGNORECASE)
_FLAG_AND_SPACE = re.compile(r"(?<!\S)--no-cache-dir\b[ \t]*")


def cached_pip_run(df: Dockerfile, ins: Instruction) -> list[str]:
    """The instruction's lines with a pip cache mount and without ``--no-cache-dir``."""
    lines = df.lines[ins.start_line - 1: ins.end_line]
    out = []
    for index, line in enumerate(lines):
        if index == 0 and pip_cache_mount(ins) is None:
            line = _KEYWORD.sub(lambda m: m.group(1) + PIP_MOUNT + " ", line, count=1)
        edited = _FLAG_AND_SPACE.sub("", line)
        if edited != line:
            content = edited.rstrip("\r\n")
            if content.rstrip(" \t") != content and line.rstrip("\r\n").rstrip(" \t") == line.rstrip("\r\n"):
                content = content.rstrip(" \t")  # the flag ended the line: don't leave its space behind
            edited = content + newline_of(line)
            body = edited.strip()
            if body in ("\\", ""):
                continue  # the line held only the flag (and a continuation)
        out.append(edited)
    return out


@fix("pip-cache", "Cache pip downloads with a BuildKit cache mount in {file}")
def add_pip_cache_mount(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = project.dockerfiles.get(task.file)
    if df is None or df.error:
        raise FixError(f"{task.file} is missing or no longer parses")
    targets = [i for i in pip_runs(df) if pip_cache_mount(i) is None or NO_CACHE_DIR.search(i.command)]
    if not targets:
        raise AlreadyResolved(f"{task.file} has no uncached pip install left: an earlier change resolved it")
    text = df.text
    for ins in sorted(targets, key=lambda i: i.start_line, reverse=True):
        user = df.user_at(ins)
        if user not in ("root", "0"):
            raise FixError(f"line {ins.start_line} runs as {user}: pip's cache is not under /root; left for a person")
        text = replace_lines(text, ins.start_line, ins.end_line, cached_pip_run(df, ins))
    return {task.file: text}
