"""Security rules SE001 and SE003: containers that run as root, and remote ADDs; with the non-root fix.

SE002 and SE006 (secrets) are in ``security_secrets.py``; SE004, SE005, SE010 and SE011 (access to
the host) in ``security_host.py``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization import policy
from agent_pipelines.pipelines.docker_optimization.fixes.edit import newline_of, replace_lines
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from agent_pipelines.pipelines.docker_optimization.model.image_tools import stage_chain, tools_in_final_stage
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.model.shell import segments, workdir_at
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, rule

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

NON_ROOT_USER_FIX = Fix("non-root-user")

ROOT_USERS = ("root", "0")
# Base images that already run as a non-root user: by tag or vendor, and well-known images whose own
# Dockerfile ends with USER (grafana/k6: k6, prom/*: nobody, the collector: 10001, Elastic: 1000...).
NON_ROOT_BASES = re.compile(
    r"nonroot|unprivileged|rootless|^cgr\.dev/chainguard/|^(?:docker\.io/)?bitnami/"
    r"|^(?:docker\.io/)?(?:grafana/(?:k6|grafana)|prom/|otel/opentelemetry-collector|jaegertracing/|apache/kafka"
    r"|confluentinc/|opensearchproject/|jenkins/jenkins|sonarqube)|^quay\.io/prometheus/|^docker\.elastic\.co/"
)
REMOTE = re.compile(r"^(?:https?|git|ssh)://|^git@", re.IGNORECASE)


# -- SE001 -------------------------------------------------------------------
# Options of useradd, Debian's adduser and busybox's adduser that take a value (the value is not the name).
_USER_VALUE_OPTIONS = frozenset(
    {
        "-b",
        "-c",
        "-d",
        "-e",
        "-f",
        "-g",
        "-G",
        "-k",
        "-K",
        "-p",
        "-R",
        "-P",
        "-s",
        "-u",
        "-h",
        "--base-dir",
        "--comment",
        "--home-dir",
        "--home",
        "--expiredate",
        "--inactive",
        "--gid",
        "--groups",
        "--skel",
        "--key",
        "--password",
        "--root",
        "--prefix",
        "--shell",
        "--uid",
        "--selinux-user",
        "--ingroup",
        "--gecos",
        "--firstuid",
        "--lastuid",
        "--firstgid",
        "--lastgid",
        "--conf",
    }
)


def user_created(argv: tuple[str, ...]) -> str:
    """The user a useradd/adduser command creates ("" when it creates none: a group, or a user added to a group).

    ``useradd [options] NAME``; ``adduser [options] NAME``. ``adduser NAME GROUP`` (Debian and
    busybox) adds an existing user to a group, and Debian's ``adduser --group NAME`` without
    ``--system`` creates a group: neither names a user one can switch to.
    """
    if not argv or posixpath.basename(argv[0]) not in ("useradd", "adduser"):
        return ""
    names, options, skip = [], set(), False
    for word in argv[1:]:
        if skip:
            skip = False
            continue
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            options.add(name)
            skip = name in _USER_VALUE_OPTIONS and "=" not in word
        elif word.startswith("-") and len(word) > 1:
            options.add(word[:2])
            skip = word[:2] in _USER_VALUE_OPTIONS and len(word) == 2  # "-u1000" carries its value
        else:
            names.append(word)
    if len(names) != 1 or "$" in names[0]:
        return ""
    if posixpath.basename(argv[0]) == "adduser" and "--group" in options and "--system" not in options:
        return ""
    return names[0]


_GROUP_VALUE_OPTIONS = frozenset({"-g", "--gid", "-K", "--key", "-p", "--password", "-R", "--root", "-P", "--prefix"})


def _group_created(argv: tuple[str, ...]) -> str:
    """The group a groupadd/addgroup (or Debian's ``adduser --group`` without ``--system``) creates, or ""."""
    prog = posixpath.basename(argv[0]) if argv else ""
    if prog == "adduser" and "--group" in argv and "--system" not in argv:
        words = [w for w in argv[1:] if not w.startswith("-")]
        return words[-1] if len(words) == 1 else ""
    if prog not in ("groupadd", "addgroup"):
        return ""
    names, skip = [], False
    for word in argv[1:]:
        if skip:
            skip = False
        elif word.startswith("-") and len(word) > 1:
            skip = word in _GROUP_VALUE_OPTIONS  # "-g 1000"; "--gid=1000" and "-g1000" carry their value
        else:
            names.append(word)
    # Debian's `addgroup USER GROUP` is not a form; busybox's `addgroup USER GROUP` adds a user to a group
    return names[0] if len(names) == 1 and "$" not in names[0] else ""


def users_naming_groups(df: Dockerfile) -> list[str]:
    """Each USER that names a group the Dockerfile creates and no user of that name: the switch fails or
    means something else (problems worded without line numbers, for delta gates)."""
    groups, users = set(), set()
    for ins in df.of("RUN"):
        for seg in segments(df, ins):
            users.add(user_created(seg.argv))
            groups.add(_group_created(seg.argv))
    found = []
    for ins in df.of("USER"):
        name = ins.value[0].split(":")[0] if ins.value else ""
        if name and name in groups and name not in users:
            found.append(f"USER {name} names a group the Dockerfile creates, not a user")
    return found


def created_users(df: Dockerfile, stages: set[int]) -> list[tuple[Instruction, str]]:
    """(RUN, user name) for each useradd/adduser in the given stages that creates a user (never a group)."""
    found = []
    for ins in df.of("RUN"):
        if ins.stage not in stages:
            continue
        for seg in segments(df, ins):
            name = user_created(seg.argv)
            if name:
                found.append((ins, name))
    return found


def final_user(df: Dockerfile) -> tuple[Instruction | None, str]:
    """The last USER along the final stage's chain and its user ("root" when there is none)."""
    chain = set(stage_chain(df, df.final_stage))
    last = None
    for ins in df.of("USER"):
        if ins.stage in chain and ins.value:
            last = ins
    return last, (last.value[0].split(":")[0] if last else "root")


def runs_as_root(df: Dockerfile) -> tuple[str, Instruction | None, list[tuple[Instruction, str]]] | None:
    """Why the final stage runs as root (a message), the USER it's due to, and the users it creates; None if not."""
    if not df.stages:
        return None
    chain = stage_chain(df, df.final_stage)
    ins, user = final_user(df)
    if user.startswith("$"):
        return None
    if user not in ROOT_USERS:
        return None
    created = created_users(df, set(chain))
    if ins is None and NON_ROOT_BASES.search(df.stages[chain[0]].base):
        return None
    if ins is not None:
        why = f"USER {ins.value[0]} is the last USER: the container runs as root"
    else:
        why = "no USER instruction: the container runs as root"
    if created:
        names = ", ".join(sorted({name for _, name in created}))
        why += f"; user {names} is created (line {created[0][0].start_line}) but never switched to"
    return why, ins, created


@rule(
    "SE001",
    "runs-as-root",
    Category.security,
    Severity.warning,
    "dockerfile",
    fix=NON_ROOT_USER_FIX,
    safety=Applicability.unsafe,
    phase="dockerfiles",
)
def container_runs_as_root(df: Dockerfile) -> Iterable[Hit]:
    """The final stage runs as root: no USER, `USER root`/`USER 0`, or a user created and never switched to.

    Base images that already run as non-root (`*nonroot*`, `*unprivileged*`,
    Chainguard, Bitnami, and well-known images whose own Dockerfile ends
    with USER: grafana/k6, grafana/grafana, prom/*, the OpenTelemetry
    collector, Jaeger, apache/kafka, Confluent, Elastic, OpenSearch,
    Jenkins, SonarQube) are not flagged when the Dockerfile sets no USER.

    Why: a process that escapes its application (a deserialization bug, a
    template injection) is root in the container: it can rewrite the app,
    read every mounted secret, and is one kernel or runtime bug away from
    root on the host.

    The fix adds a system user `app` (uid 10001) right after the final FROM
    (`useradd` on Debian/Ubuntu-based images, busybox `adduser -S` on
    Alpine; plain `10001:10001` on scratch, which has no /etc/passwd), or
    reuses the user the Dockerfile creates, and switches to it after the
    last RUN, before CMD/ENTRYPOINT. Other base images are left for a person.

    Example:
        FROM python:3.12-slim
        WORKDIR /app
        COPY requirements.txt .
        RUN pip install --user -r requirements.txt
        COPY . .
        CMD ["python", "-m", "uvicorn", "main:app"]

    Use instead:
        FROM python:3.12-slim
        RUN useradd --system --uid 10001 --user-group --no-create-home app
        WORKDIR /app
        COPY requirements.txt .
        RUN pip install --user -r requirements.txt
        COPY . .
        # the runtime user reads what the app needs under /root; its files stay root's
        RUN chmod o+x /root
        ENV PYTHONUSERBASE=/root/.local
        USER app
        CMD ["python", "-m", "uvicorn", "main:app"]

    Fix safety: unsafe: the user changes what the process may read and
    write. The fix therefore looks for what the app needs from root: pip
    `--user` packages (root's are under /root/.local, and /root is mode
    700), a PYTHONUSERBASE or VIRTUAL_ENV, a PATH entry, WORKDIR or COPY
    under /root; it then makes /root traversable (`chmod o+x /root`, its
    files untouched) and sets `PYTHONUSERBASE` so the user's Python finds
    those packages. The code stays root-owned (no `COPY --chown`): the user
    can run it, not rewrite it. The user owns only the directories it
    writes: each VOLUME, and those listed in `.pipeline.yaml`
    (`policy: dockerfiles: {path: {writable: [/app/data]}}`). It switches to
    a user, never a group (`adduser app appgroup` adds a user to a group;
    `adduser --group` makes a group). With `--verify-builds` the image must
    build and start (its HEALTHCHECK, or `probe:` from `.pipeline.yaml`).
    """
    found = runs_as_root(df)
    if found is None:
        return
    why, ins, _ = found
    if ins is not None:
        yield Hit(ins.start_line, why, ins.original, ins.end_line)
    else:
        stage = df.stages[df.final_stage]
        yield Hit(stage.start_line, why, f"FROM {stage.base}")


# -- SE003 -------------------------------------------------------------------
@rule("SE003", "add-remote-url", Category.security, Severity.warning, "dockerfile")
def add_remote_url(df: Dockerfile) -> Iterable[Hit]:
    """`ADD` fetches a remote URL without `--checksum`.

    Why: whatever the server returns goes into the image, unverified: a
    compromised or hijacked host, or a silently changed release asset,
    changes the image without any change to the Dockerfile.

    Example:
        ADD https://example.com/tool-1.2.tar.gz /tmp/

    Use instead:
        ADD --checksum=sha256:<digest> https://example.com/tool-1.2.tar.gz /tmp/
        # or: RUN curl -fsSLo /tmp/t.tgz https://... && echo "<digest>  /tmp/t.tgz" | sha256sum -c -
    """
    for ins in df.of("ADD"):
        if ins.flag("checksum"):
            continue
        urls = [src for src in ins.value[:-1] if REMOTE.match(src)]
        if urls:
            yield Hit(
                ins.start_line,
                f"ADD downloads {', '.join(urls)} without verifying a checksum",
                ins.original,
                ins.end_line,
            )


# -- fixes -----------------------------------------------------------------------------------------------
# Security fixes: run the final stage as a non-root user that can read what the app needs.
#
# The user gets no more than it needs: the code stays root-owned (it can't
# rewrite the app), it can reach packages installed under /root (pip
# ``--user``, venvs, tools on a PATH under /root), and it owns only the
# directories it writes (VOLUMEs, and ``policy.dockerfiles.<file>.writable``
# in ``.pipeline.yaml``).


APP_USER = "app"
APP_UID = 10001
# scratch has no /etc/passwd: a numeric user needs none.
NUMERIC_USER = f"{APP_UID}:{APP_UID}"
CREATE_USER = {
    "debian": f"useradd --system --uid {APP_UID} --user-group --no-create-home {APP_USER}",
    "alpine": f"addgroup -S -g {APP_UID} {APP_USER} && adduser -S -D -H -u {APP_UID} -G {APP_USER} {APP_USER}",
}
ROOT_HOME = "/root"  # mode 700 in Debian and Alpine images: other users can't even look inside
DEFAULT_USER_BASE = "/root/.local"  # where root's `pip install --user` puts packages when PYTHONUSERBASE is unset


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

    user: str  # the USER it switches to: a user name (never a group) or uid:gid
    owner: str  # what the writable directories are chowned to
    create: str = ""  # the command that creates the user ("" when it exists)
    root_reasons: list[str] = field(default_factory=list)  # what the app needs from under /root
    user_base: str = ""  # PYTHONUSERBASE to set so the user's Python finds root's --user packages
    writable: list[tuple[str, str]] = field(default_factory=list)  # (directory, why)

    def describe(self) -> str:
        said = [
            f"adds user {self.user}" if self.create else f"switches to user {self.user}",
            "keeps the code root-owned (read-only to the user)",
        ]
        if self.root_reasons:
            said.append(
                f"lets the user reach {ROOT_HOME} (chmod o+x; nothing else there changes) because "
                + "; ".join(self.root_reasons)
            )
        if self.user_base:
            said.append(f"sets PYTHONUSERBASE={self.user_base} so the user's Python finds those packages")
        if self.writable:
            said.append("gives the user only " + ", ".join(f"{d} ({why})" for d, why in self.writable))
        else:
            said.append(
                "gives the user no writable directory (no VOLUME, none in policy.dockerfiles in "
                ".pipeline.yaml): an app that writes files will fail and must be configured"
            )
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
                if _is_pip_install(seg.argv) and (
                    "--user" in seg.argv or env.get("PIP_USER", "").lower() in ("1", "true", "yes", "on")
                ):
                    base = env.get("PYTHONUSERBASE", DEFAULT_USER_BASE)
                    user_base = base
                    if _under(base, ROOT_HOME):
                        reasons.append(f"pip install --user (line {ins.start_line}) installs into {base}")
                prog = posixpath.basename(seg.argv[0]) if seg.argv else ""
                venv = [a for a in seg.argv[1:] if not a.startswith("-") and a not in ("-m", "venv")]
                if (
                    ("venv" in seg.argv and (prog.startswith("python") or prog == "uv")) or prog == "virtualenv"
                ) and venv:
                    target = posixpath.normpath(posixpath.join(seg.cwd or "/", venv[-1]))
                    if _under(target, ROOT_HOME):
                        reasons.append(f"a virtual environment is made in {target} (line {ins.start_line})")
    if "PYTHONUSERBASE" in env:
        user_base = ""  # already set for every user
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
            raise Declined(
                f"can't tell how to add a user to {tools.image or 'the base image'} "
                "(no known shell and package tools); add a non-root USER by hand"
            )
        plan = NonRootPlan(user=APP_USER, owner=f"{APP_USER}:{APP_USER}", create=command)
    plan.root_reasons, plan.user_base = _paths_needed(df, chain)
    plan.writable = _writable(df, chain, configured)
    if tools.family == "scratch" and (plan.root_reasons or plan.writable):
        raise Declined(
            f"{file} builds FROM scratch (no shell): can't open {ROOT_HOME} or create writable "
            "directories for the user; add a non-root USER by hand"
        )
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

    ready = 0  # the line after which the user exists
    if plan.create:
        add(stage[0].end_line, after=(f"RUN {plan.create}",))
        ready = stage[0].end_line
    elif created and created[-1][0].stage == df.final_stage:
        ready = created[-1][0].end_line
    last_root_step = max((i.end_line for i in stage if i.cmd in ("RUN", "USER")), default=stage[0].end_line)
    entry = next((i for i in stage if i.cmd in ("CMD", "ENTRYPOINT") and i.start_line > last_root_step), None)
    switch: list[str] = []
    if plan.root_reasons:
        switch += [
            f"# the runtime user reads what the app needs under {ROOT_HOME}; its files stay root's",
            f"RUN chmod o+x {ROOT_HOME}",
        ]
    if plan.user_base:
        switch.append(f"ENV PYTHONUSERBASE={plan.user_base}")
    dirs = " ".join(d for d, _ in plan.writable)
    if dirs:
        writable = f"RUN mkdir -p {dirs} && chown {plan.owner} {dirs}"
        # a RUN after VOLUME can't change the volume's directory (the classic builder discards it): go before
        volume = next(
            (
                i
                for i in stage
                if i.cmd == "VOLUME"
                and i.start_line > ready
                and any(posixpath.normpath(p) in dict(plan.writable) for p in i.value)
            ),
            None,
        )
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
        raise FixError(
            f"the edited {task.file} still runs as root or doesn't parse: {after.error or 'USER not in effect'}"
        )
    return {task.file: text}
