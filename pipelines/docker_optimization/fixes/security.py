"""Security fixes: run the final stage as a non-root user that can read what the app needs.

The user gets no more than it needs: the code stays root-owned (it can't
rewrite the app), it can reach packages installed under /root (pip
``--user``, venvs, tools on a PATH under /root), and it owns only the
directories it writes (VOLUMEs, and ``policy.dockerfiles.<file>.writable``
in ``.pipeline.yaml``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization import policy
from pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.fixes.edit import newline_of, replace_lines
from pipelines.docker_optimization.model.image_tools import stage_chain, tools_in_final_stage
from pipelines.docker_optimization.model.project import Project
from pipelines.docker_optimization.rules.security import NON_ROOT_USER_FIX
from pipelines.docker_optimization.rules.layers import segments, workdir_at
from pipelines.docker_optimization.rules.security import runs_as_root

APP_USER = "app"
APP_UID = 10001
# scratch has no /etc/passwd: a numeric user needs none.
NUMERIC_USER = f"{APP_UID}:{APP_UID}"
CREATE_USER = {
    "debian": f"useradd --system --uid {APP_UID} --user-group --no-create-home {APP_USER}",
    "alpine": f"addgroup -S -g {APP_UID} {APP_USER} && adduser -S -D -H -u {APP_UID} -G {APP_USER} {APP_USER}",
}
ROOT_HOME = "/root"           # mode 700 in Debian and Alpine images: other users can't even look inside
DEFAULT_USER_BASE = "/root/.local"   # where root's `pip install --user` puts packages when PYTHONUSERBASE is unset


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _is_pip_install(argv: tuple[str, ...]) -> bool:
    prog = posixpath.basename(argv[0]) if argv else ""
    args = list(argv[1:])
    if prog.startswith("python") and args[:2] == ["-m", "pip"]:
        args = args[2:]
    elif not prog.startswith("pip"):
        return False
    return "install" in args


def _env_pairs(ins: Instruction) -> list[tuple[str, str]]:
    return list(zip(ins.value[::2], ins.value[1::2]))


@dataclass
class NonRootPlan:
    """What the fix will do to one Dockerfile, and why (said in the task and commit message)."""

    user: str                     # the USER it switches to: a user name (never a group) or uid:gid
    owner: str                    # what the writable directories are chowned to
    create: str = ""              # the command that creates the user ("" when it exists)
    root_reasons: list[str] = field(default_factory=list)   # what the app needs from under /root
    user_base: str = ""           # PYTHONUSERBASE to set so the user's Python finds root's --user packages
    writable: list[tuple[str, str]] = field(default_factory=list)   # (directory, why)

    def describe(self) -> str:
        said = [f"adds user {self.user}" if self.create else f"switches to user {self.user}",
                "keeps the code root-owned (read-only to the user)"]
        if self.root_reasons:
            said.append(f"lets the user reach {ROOT_HOME} (chmod o+x; nothing else there changes) because "
                        + "; ".join(self.root_reasons))
        if self.user_base:
            said.append(f"sets PYTHONUSERBASE={self.user_base} so the user's Python finds those packages")
        if self.writable:
            said.append("gives the user only " + ", ".join(f"{d} ({why})" for d, why in self.writable))
        else:
            said.append("gives the user no writable directory (no VOLUME, none in policy.dockerfiles in "
                        ".pipeline.yaml): an app that writes files will fail and must be configured")
        return "; ".join(said)


def _paths_needed(df: Dockerfile, chain: set[int]) -> tuple[list[str], str]:
    """(why the app needs something under /root, the Python user base to set or "")."""
    reasons: list[str] = []
    env: dict[str, str] = {}
    user_base = ""
    for ins in df.instructions:
        if ins.stage not in chain:
            continue
        if ins.cmd == "ENV":
            for name, value in _env_pairs(ins):
                env[name] = value
                if name == "PATH":
                    for entry in value.split(":"):
                        if _under(entry, ROOT_HOME):
                            reasons.append(f"PATH includes {entry} (line {ins.start_line})")
                elif name == "VIRTUAL_ENV" and _under(value, ROOT_HOME):
                    reasons.append(f"VIRTUAL_ENV is {value} (line {ins.start_line})")
        elif ins.cmd == "WORKDIR" and ins.value:
            where = posixpath.normpath(posixpath.join(workdir_at(df, ins), ins.value[0]))
            if _under(where, ROOT_HOME):
                reasons.append(f"WORKDIR {where} (line {ins.start_line})")
        elif ins.cmd in ("COPY", "ADD") and len(ins.value) >= 2 and "$" not in ins.value[-1]:
            dest = posixpath.normpath(posixpath.join(workdir_at(df, ins), ins.value[-1]))
            if _under(dest, ROOT_HOME):
                reasons.append(f"{ins.cmd} writes {dest} (line {ins.start_line})")
            if _under(dest, DEFAULT_USER_BASE):
                user_base = DEFAULT_USER_BASE
        elif ins.cmd == "RUN" and df.user_at(ins) in ("root", "0"):
            for seg in segments(df, ins):
                if _is_pip_install(seg.argv) and ("--user" in seg.argv or env.get("PIP_USER", "").lower() in
                                                  ("1", "true", "yes", "on")):
                    base = env.get("PYTHONUSERBASE", DEFAULT_USER_BASE)
                    user_base = base
                    if _under(base, ROOT_HOME):
                        reasons.append(f"pip install --user (line {ins.start_line}) installs into {base}")
                prog = posixpath.basename(seg.argv[0]) if seg.argv else ""
                venv = [a for a in seg.argv[1:] if not a.startswith("-") and a not in ("-m", "venv")]
                if (("venv" in seg.argv and (prog.startswith("python") or prog == "uv")) or prog == "virtualenv") \
                        and venv:
                    target = posixpath.normpath(posixpath.join(seg.cwd or "/", venv[-1]))
                    if _under(target, ROOT_HOME):
                        reasons.append(f"a virtual environment is made in {target} (line {ins.start_line})")
    if "PYTHONUSERBASE" in env:
        user_base = ""   # already set for every user
    return list(dict.fromkeys(reasons)), user_base


def _writable(df: Dockerfile, chain: set[int], configured: list[str]) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for ins in df.of("VOLUME"):
        if ins.stage in chain:
            for path in ins.value:
                if path.startswith("/") and "$" not in path:
                    found.setdefault(posixpath.normpath(path), f"VOLUME, line {ins.start_line}")
    for path in configured:
        found.setdefault(posixpath.normpath(path), "policy in .pipeline.yaml")
    return list(found.items())


def plan_non_root(project: Project, file: str) -> tuple[Dockerfile, NonRootPlan, list]:
    df = project.dockerfiles.get(file)
    if df is None or df.error:
        raise FixError(f"{file} is missing or no longer parses")
    found = runs_as_root(df)
    if found is None:
        raise AlreadyResolved(f"{file} already runs as a non-root user: an earlier change resolved it")
    _, _, created = found
    chain = set(stage_chain(df, df.final_stage))
    configured = policy.load(project).dockerfiles.get(file, {}).get("writable", [])
    tools = tools_in_final_stage(df)
    if created:
        user = created[-1][1]
        plan = NonRootPlan(user=user, owner=user)
    elif tools.family == "scratch":
        plan = NonRootPlan(user=NUMERIC_USER, owner=NUMERIC_USER)
    else:
        command = CREATE_USER.get(tools.os)
        if command is None:
            raise FixError(f"can't tell how to add a user to {tools.image or 'the base image'} "
                           "(no known shell and package tools); add a non-root USER by hand")
        plan = NonRootPlan(user=APP_USER, owner=f"{APP_USER}:{APP_USER}", create=command)
    plan.root_reasons, plan.user_base = _paths_needed(df, chain)
    plan.writable = _writable(df, chain, configured)
    if tools.family == "scratch" and (plan.root_reasons or plan.writable):
        raise FixError(f"{file} builds FROM scratch (no shell): can't open {ROOT_HOME} or create writable "
                       "directories for the user; add a non-root USER by hand")
    return df, plan, created


def assess_non_root(project: Project, file: str) -> tuple[bool, str]:
    """Always unsafe (a user change changes what the image can do); says what the fix will do and why."""
    _, plan, _ = plan_non_root(project, file)
    return False, f"The fix {plan.describe()}."


def _edit(text: str, edits: dict[int, tuple[list[str], list[str]]], newline: str) -> str:
    """Insert lines before/after the given line numbers, bottom-up, keeping line endings."""
    lines = text.splitlines(keepends=True)
    for number in sorted(edits, reverse=True):
        before, after = edits[number]
        original = lines[number - 1]
        ending = newline_of(original)
        contents = before + [original.rstrip("\r\n")] + after
        new = [c + (ending or newline) for c in contents[:-1]] + [contents[-1] + ending]
        text = replace_lines(text, number, number, new)
    return text


@NON_ROOT_USER_FIX.applies("Run {file} as a non-root user", assess=assess_non_root)
def run_as_non_root(project: Project, task: Task, design: Design) -> dict[str, str]:
    df, plan, created = plan_non_root(project, task.file)
    stage = [i for i in df.instructions if i.stage == df.final_stage]
    newline = "\r\n" if "\r\n" in df.text else "\n"
    edits: dict[int, tuple[list[str], list[str]]] = {}

    def add(number: int, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> None:
        b, a = edits.get(number, ([], []))
        edits[number] = (b + list(before), a + list(after))

    ready = 0   # the line after which the user exists
    if plan.create:
        add(stage[0].end_line, after=(f"RUN {plan.create}",))
        ready = stage[0].end_line
    elif created and created[-1][0].stage == df.final_stage:
        ready = created[-1][0].end_line
    last_root_step = max((i.end_line for i in stage if i.cmd in ("RUN", "USER")), default=stage[0].end_line)
    entry = next((i for i in stage if i.cmd in ("CMD", "ENTRYPOINT") and i.start_line > last_root_step), None)
    switch: list[str] = []
    if plan.root_reasons:
        switch += [f"# the runtime user reads what the app needs under {ROOT_HOME}; its files stay root's",
                   f"RUN chmod o+x {ROOT_HOME}"]
    if plan.user_base:
        switch.append(f"ENV PYTHONUSERBASE={plan.user_base}")
    dirs = " ".join(d for d, _ in plan.writable)
    if dirs:
        writable = f"RUN mkdir -p {dirs} && chown {plan.owner} {dirs}"
        # a RUN after VOLUME can't change the volume's directory (the classic builder discards it): go before
        volume = next((i for i in stage if i.cmd == "VOLUME" and i.start_line > ready
                       and any(posixpath.normpath(p) in dict(plan.writable) for p in i.value)), None)
        if volume is not None:
            add(volume.start_line, before=(writable,))
        else:
            switch.append(writable)
    switch.append(f"USER {plan.user}")
    if entry is not None:
        add(entry.start_line, before=tuple(switch))
    else:
        add(stage[-1].end_line, after=tuple(switch))
    text = _edit(df.text, edits, newline)
    after = Dockerfile.parse(task.file, text)
    if after.error or runs_as_root(after) is not None:
        raise FixError(f"the edited {task.file} still runs as root or doesn't parse: "
                       f"{after.error or 'USER not in effect'}")
    return {task.file: text}
