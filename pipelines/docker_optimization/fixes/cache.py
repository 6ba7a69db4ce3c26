"""Cache fixes: add BuildKit cache mounts to package installs (cache-mounts), repair the ones that are defeated
(cache-repair).

Both re-parse the current file and edit only the lines of the instructions
they change, in place: a mount goes right after ``RUN`` on the instruction's
first line, the docker-clean removal right before the command, a defeating
command goes with its ``&&`` (or ``;``), a flag with the whitespace before it.
A line continuation that would be left dangling goes too; every other byte
(comments, indentation, CRLF, the final-newline state) stays.

cache-mounts changes a RUN only as far as its new mounts need: it adds them
and removes what would defeat them; a defeat that was already there is
cache-repair's (so each change fixes what its task is about). A heredoc RUN
gets mounts, but a fix that would have to edit its script raises FixError.
"""

from __future__ import annotations

import re

from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.fixes import dockerfile_of
from pipelines.docker_optimization.fixes.edit import replace_lines
from pipelines.docker_optimization.model.project import Project
from pipelines.docker_optimization.rules.cache import CACHE_MOUNTS_FIX, CACHE_REPAIR_FIX
from pipelines.docker_optimization.rules import load_all
from pipelines.docker_optimization.rules.cache import (
    APK, APK_ADD, APK_UPDATED, HOOK, PIP, PIP_INSTALL, W0, Cache, Defeat, Run, apt_problems, cache_mounts, covers,
    defeats, missing, preceding, resolve, run_of, target_of,
)

HOOK_RM = f"rm -f {HOOK} && "
_KEYWORD = re.compile(r"[ \t]*RUN[ \t]+", re.IGNORECASE)
_COMMENT_LINES = re.compile(r"(?<=\n)[ \t]*#[^\r\n]*")
_CONTINUATION_BEFORE = re.compile(r"\\[ \t]*\r?\n(?:[ \t]*\r?\n)*\Z")
_GAP_AFTER = re.compile(W0)
_BLANKS = re.compile(r"[ \t]*")
_CONTINUATION_AT = re.compile(r"\\[ \t]*\r?\n")
_ESCAPE_DIRECTIVE = re.compile(r"^#\s*escape\s*=\s*`", re.IGNORECASE | re.MULTILINE)

Edit = tuple[int, int, str]   # (start, end, replacement) in an instruction's source


def mount_flag(cache: Cache, path: str) -> str:
    return f"--mount=type=cache,target={path}" + (",sharing=locked" if cache.locked else "")


def locked(flag: str) -> str:
    if re.search(r"(?<=[=,])sharing=", flag):
        return re.sub(r"(?<=[=,])sharing=[^,]*", "sharing=locked", flag)
    return flag + ",sharing=locked"


def _back(text: str, i: int) -> int:
    """Start of the blanks (spaces, continuations) that end at ``i``."""
    while i > 0:
        if text[i - 1] in " \t":
            i -= 1
            continue
        m = _CONTINUATION_BEFORE.search(text, 0, i)
        if m is None:
            return i
        i = m.start()
    return i


class Source:
    """One RUN's raw text, comment lines blanked (same length) so patterns don't match inside them."""

    def __init__(self, df: Dockerfile, ins: Instruction) -> None:
        self.ins = ins
        self.raw = df.source(ins)
        self.text = _COMMENT_LINES.sub(lambda m: " " * len(m.group()), self.raw)
        keyword = _KEYWORD.match(self.text)
        if keyword is None:
            raise FixError(f"line {ins.start_line}: can't find the RUN keyword")
        self.keyword_end = keyword.end()

    def flag_at(self, flag: str) -> int:
        at = self.text.find(flag, self.keyword_end)
        if at < 0:
            raise FixError(f"line {self.ins.start_line}: can't find {flag} as written")
        return at

    @property
    def head(self) -> int:
        """Where the command starts, after the flags."""
        pos = self.keyword_end
        for flag in self.ins.flags:
            pos = self.flag_at(flag) + len(flag)
        return _GAP_AFTER.match(self.text, pos).end()

    def removal(self, defeat: Defeat) -> Edit:
        s, e = defeat.start, defeat.end
        if defeat.action == "replace":
            return s, e, defeat.replacement
        if defeat.action == "token":
            before = _back(self.text, s)
            if before < self.head:   # it starts the command: take the blanks after it instead
                return s, _GAP_AFTER.match(self.text, e).end(), ""
            return before, e, ""
        before = _back(self.text, s)
        if self.text.endswith(("&&", ";"), 0, before) and not self.text.endswith(("\\;", "\\&&"), 0, before):
            connector = before - (2 if self.text.endswith("&&", 0, before) else 1)
            return _back(self.text, connector), e, ""
        after = _GAP_AFTER.match(self.text, e).end()
        if before <= self.head and self.text.startswith(("&&", ";"), after) and not self.text.startswith("&&&", after):
            end = _BLANKS.match(self.text, after + (2 if self.text.startswith("&&", after) else 1)).end()
            line_start = self.text.rfind("\n", 0, s) + 1
            continued = _CONTINUATION_AT.match(self.text, end)
            if continued and not self.text[line_start:s].strip():
                return line_start, continued.end(), ""   # the line held only this command: it goes whole
            return s, end, ""
        raise FixError(f"line {self.ins.start_line}: can't remove `{self.text[s:e].strip()}` "
                       "without changing what else the command does")

    def apply(self, edits: list[Edit]) -> list[str]:
        text = self.raw
        last = len(text) + 1
        unique = list(dict.fromkeys(edits))   # at one position, the earlier edit's text comes first
        for _, (start, end, new) in sorted(enumerate(unique), key=lambda x: (x[1][0], x[1][1], x[0]), reverse=True):
            if end > last:
                raise FixError(f"line {self.ins.start_line}: the edits overlap; left for a person")
            text = text[:start] + new + text[end:]
            last = start
        return text.splitlines(keepends=True)


def _current(project: Project, task: Task) -> Dockerfile:
    df = dockerfile_of(project, task)
    if _ESCAPE_DIRECTIVE.search(df.text):
        raise FixError(f"{task.file} sets `# escape=`: its continuations are not edited automatically")
    return df


def _plan_run(df: Dockerfile, run: Run, add: list[tuple[Cache, str]], repair: bool) -> tuple[list[Edit], list[Defeat]]:
    """The edits for one RUN, and the ENV defeats left to the caller.

    ``add``: mounts to add, and only what they need (new defeats, their docker-clean hook).
    ``repair``: every defeat and apt problem of the mounts it has.
    """
    ins = run.ins
    if add and not run.root:
        raise FixError(f"line {ins.start_line} runs as {df.user_at(ins)}: its caches are not under /root "
                       "and a cache mount is root-owned; left for a person")
    mounts = cache_mounts(ins)
    before = [target_of(o) for _, o in mounts]
    after = before + [path for _, path in add]
    new_mounts = [(mount_flag(c, p), {"type": "cache", "target": p, **({"sharing": "locked"} if c.locked else {})})
                  for c, p in add]
    problems = apt_problems(run, mounts + new_mounts)
    if not repair:
        problems = [p for p in problems if p not in apt_problems(run, mounts)]
    scripted = run.heredoc or ins.json
    source = None if scripted else Source(df, ins)
    text, pos = (run.text, 0) if source is None else (source.text, source.head)
    found = defeats(run, text, pos, after)
    if not repair:
        found = [d for d in found if d not in defeats(run, text, pos, before)]
    spans = [d for d in found if d.action != "env"]
    hook = any(not p.flag for p in problems)
    # the apk mount starts empty: apk must fetch its index (a replaced --no-cache already says so)
    update_apk = (any(c is APK for c, _ in add) and not APK_UPDATED.search(text, pos)
                  and not any(d.action == "replace" for d in spans))
    if scripted and (spans or hook or update_apk):
        form = "a heredoc" if run.heredoc else "an exec-form (JSON)"
        what = (f"remove {HOOK}" if hook else "add --update-cache to apk add" if update_apk
                else "remove " + "; ".join(d.message for d in spans))
        raise FixError(f"line {ins.start_line} is {form} RUN: its script is not edited automatically ({what}); "
                       "left for a person")
    if hook and not run.root:
        raise FixError(f"line {ins.start_line} runs as {df.user_at(ins)}: it can't remove {HOOK}; left for a person")
    source = source or Source(df, ins)
    edits: list[Edit] = []
    if add:
        edits.append((source.keyword_end, source.keyword_end, " ".join(f for f, _ in new_mounts) + " "))
    for p in problems:
        if p.flag:
            at = source.flag_at(p.flag)
            edits.append((at, at + len(p.flag), locked(p.flag)))
    if hook:
        edits.append((source.head, source.head, HOOK_RM))
    if update_apk:
        edits += [(m.end(), m.end(), " --update-cache") for m in APK_ADD.finditer(source.text, source.head)]
    edits += [source.removal(d) for d in spans]
    return edits, [d for d in found if d.action == "env"]


def _pip_envs(df: Dockerfile, ins: Instruction) -> list[Instruction]:
    """Every ENV that sets PIP_NO_CACHE_DIR for ``ins`` (the last one wins, but the others would take over)."""
    return [e for e in preceding(df, ins) if e.cmd == "ENV" and "PIP_NO_CACHE_DIR" in e.value[::2]]


def _env_edit(df: Dockerfile, env: Instruction, covered: dict[int, list[str]]) -> tuple[int, int, list[str]]:
    """Drop PIP_NO_CACHE_DIR from ``env``, if every pip install it reaches will have a pip cache mount."""
    for ins in df.of("RUN"):
        run = run_of(df, ins)
        if env in _pip_envs(df, ins) and PIP_INSTALL.search(run.text):
            path = resolve(PIP, run)
            if not path or not any(covers(t, path) for t in covered[ins.start_line]):
                raise FixError(f"ENV PIP_NO_CACHE_DIR at line {env.start_line} also governs the pip install at "
                               f"line {ins.start_line}, which has no pip cache mount; left for a person")
    if len(env.value) == 2:
        return env.start_line, env.end_line, []
    text = "".join(df.lines[env.start_line - 1: env.end_line])
    masked = _COMMENT_LINES.sub(lambda m: " " * len(m.group()), text)
    m = re.search(r"(?<![^\s])PIP_NO_CACHE_DIR=(?:\"[^\"]*\"|'[^']*'|\S*)", masked)
    if m is None:
        raise FixError(f"line {env.start_line}: can't find PIP_NO_CACHE_DIR as written")
    text = text[:_back(masked, m.start())] + text[m.end():]
    return env.start_line, env.end_line, text.splitlines(keepends=True)


def _rewrite(df: Dockerfile, task: Task, plans: dict[int, tuple[Run, list[tuple[Cache, str]], bool]]) -> str:
    """Apply the per-RUN plans (start line -> run, mounts to add, repair?) and the ENV edits they need."""
    changes: dict[int, tuple[int, list[str]]] = {}
    envs: dict[int, Instruction] = {}
    covered = {i.start_line: [target_of(o) for _, o in cache_mounts(i)] for i in df.of("RUN")}
    for line, (run, add, repair) in plans.items():
        edits, env_defeats = _plan_run(df, run, add, repair)
        covered[line] += [p for _, p in add]
        envs.update({e.start_line: e for d in env_defeats for e in _pip_envs(df, run.ins)})
        if edits:
            changes[line] = (run.ins.end_line, Source(df, run.ins).apply(edits))
    for env in envs.values():
        start, end, lines = _env_edit(df, env, covered)
        changes[start] = (end, lines)
    text = df.text
    for start in sorted(changes, reverse=True):
        end, lines = changes[start]
        text = replace_lines(text, start, end, lines)
    _check(df, Dockerfile.parse(df.path, text), task)
    return text


def _check(before: Dockerfile, after: Dockerfile, task: Task) -> None:
    """The fixed file parses, the task's findings are gone, and no cache rule fires more often."""
    if after.error:
        raise FixError(f"the edit would not parse ({after.error}); left for a person")
    rules = load_all()
    for code in (c for c in rules if c.startswith("CA")):
        old = list(rules[code].check(before))
        new = list(rules[code].check(after))
        if code in task.rules and new:
            raise FixError(f"{code} would remain at line {new[0].line}: {new[0].message}")
        if len(new) > len(old):
            raise FixError(f"the edit would add {code} at line {new[-1].line}: {new[-1].message}")


@CACHE_MOUNTS_FIX.applies("Add BuildKit cache mounts to package installs in {file}")
def add_cache_mounts(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = _current(project, task)
    plans = {}
    for ins in df.of("RUN"):
        run = run_of(df, ins)
        add = [pair for _, caches in missing(run, [target_of(o) for _, o in cache_mounts(ins)]) for pair in caches]
        if add:
            plans[ins.start_line] = (run, list(dict.fromkeys(add)), False)
    if not plans:
        raise AlreadyResolved(f"every package install in {task.file} has its cache mounts: "
                              "an earlier change added them")
    return {task.file: _rewrite(df, task, plans)}


@CACHE_REPAIR_FIX.applies("Repair defeated BuildKit cache mounts in {file}")
def repair_cache_mounts(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = _current(project, task)
    plans = {}
    for ins in df.of("RUN"):
        run = run_of(df, ins)
        mounts = cache_mounts(ins)
        if defeats(run, run.text, 0, [target_of(o) for _, o in mounts]) or apt_problems(run, mounts):
            plans[ins.start_line] = (run, [], True)
    if not plans:
        raise AlreadyResolved(f"no cache mount in {task.file} is defeated any more: an earlier change repaired them")
    return {task.file: _rewrite(df, task, plans)}
