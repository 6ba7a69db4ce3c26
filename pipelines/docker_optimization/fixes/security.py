"""Security fixes: run the final stage as a non-root user."""

from __future__ import annotations

import posixpath
import re

from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.fixes import dockerfile_of, fix
from pipelines.docker_optimization.fixes.edit import newline_of, replace_lines
from pipelines.docker_optimization.image_tools import stage_chain, tools_in_final_stage
from pipelines.docker_optimization.project import Project
from pipelines.docker_optimization.rules.security import runs_as_root

APP_USER = "app"
APP_UID = 10001
# scratch has no /etc/passwd: a numeric user needs none.
NUMERIC_USER = f"{APP_UID}:{APP_UID}"
CREATE_USER = {
    "debian": f"useradd --system --uid {APP_UID} --user-group --no-create-home {APP_USER}",
    "alpine": f"addgroup -S -g {APP_UID} {APP_USER} && adduser -S -D -H -u {APP_UID} -G {APP_USER} {APP_USER}",
}
# Destinations that are the system's, not the app's: a COPY there stays root-owned.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt", "/var", "/root")
_COPY_KEYWORD = re.compile(r"^(\s*(?:COPY|ADD))(?=\s)", re.IGNORECASE)


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def app_copies(df: Dockerfile, after_line: int) -> list[Instruction]:
    """The final stage's COPY/ADD without --chown (after ``after_line``) that write into the app's directories.

    The app's directories are the WORKDIRs along the final stage's chain; without
    one, any destination outside the system directories.
    """
    chain, final = set(stage_chain(df, df.final_stage)), df.final_stage
    workdir, workdirs, found = "/", [], []
    for ins in df.instructions:
        if ins.stage not in chain:
            continue
        if ins.cmd == "WORKDIR" and ins.value:
            workdir = posixpath.normpath(posixpath.join(workdir, ins.value[0]))
            if workdir != "/":
                workdirs.append(workdir)
        elif (ins.stage == final and ins.cmd in ("COPY", "ADD") and len(ins.value) >= 2 and not ins.flag("chown")
              and ins.start_line > after_line and "$" not in ins.value[-1]):
            dest = posixpath.normpath(posixpath.join(workdir, ins.value[-1]))
            if any(_under(dest, w) for w in workdirs) if workdirs else not any(_under(dest, s) for s in SYSTEM_DIRS):
                found.append(ins)
    return found


def _edit(text: str, edits: dict[int, tuple[list[str], str | None, list[str]]], newline: str) -> str:
    """Apply (lines before, replacement or None, lines after) per line number, bottom-up, keeping line endings."""
    lines = text.splitlines(keepends=True)
    for number in sorted(edits, reverse=True):
        before, replacement, after = edits[number]
        original = lines[number - 1]
        ending = newline_of(original)
        contents = before + [replacement if replacement is not None else original.rstrip("\r\n")] + after
        new = [c + (ending or newline) for c in contents[:-1]] + [contents[-1] + ending]
        text = replace_lines(text, number, number, new)
    return text


@fix("non-root-user", "Run {file} as a non-root user")
def run_as_non_root(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_of(project, task)
    found = runs_as_root(df)
    if found is None:
        raise AlreadyResolved(f"{task.file} already runs as a non-root user: an earlier change resolved it")
    _, _, created = found
    final = df.final_stage
    stage = [i for i in df.instructions if i.stage == final]
    newline = "\r\n" if "\r\n" in df.text else "\n"
    edits: dict[int, tuple[list[str], str | None, list[str]]] = {}

    def add(number: int, before: tuple[str, ...] = (), replacement: str | None = None,
            after: tuple[str, ...] = ()) -> None:
        b, r, a = edits.get(number, ([], None, []))
        edits[number] = (b + list(before), replacement if replacement is not None else r, a + list(after))

    if created:
        creator, user = created[-1]
        chown, after_line = user, (creator.end_line if creator.stage == final else 0)
    elif (tools := tools_in_final_stage(df)).family == "scratch":
        user = chown = NUMERIC_USER
        after_line = 0
    else:
        command = CREATE_USER.get(tools.os)
        if command is None:
            raise FixError(f"can't tell how to add a user to {tools.image or 'the base image'} "
                           "(no known shell and package tools); add a non-root USER by hand")
        user, chown = APP_USER, f"{APP_USER}:{APP_USER}"
        add(stage[0].end_line, after=(f"RUN {command}",))
        after_line = stage[0].end_line
    for ins in app_copies(df, after_line):
        first = df.lines[ins.start_line - 1].rstrip("\r\n")
        add(ins.start_line, replacement=_COPY_KEYWORD.sub(lambda m: f"{m.group(1)} --chown={chown}", first, count=1))
    last_root_step = max((i.end_line for i in stage if i.cmd in ("RUN", "USER")), default=stage[0].end_line)
    entry = next((i for i in stage if i.cmd in ("CMD", "ENTRYPOINT") and i.start_line > last_root_step), None)
    if entry is not None:
        add(entry.start_line, before=(f"USER {user}",))
    else:
        add(stage[-1].end_line, after=(f"USER {user}",))
    text = _edit(df.text, edits, newline)
    after = Dockerfile.parse(task.file, text)
    if after.error or runs_as_root(after) is not None:
        raise FixError(f"the edited {task.file} still runs as root or doesn't parse: "
                       f"{after.error or 'USER not in effect'}")
    return {task.file: text}
