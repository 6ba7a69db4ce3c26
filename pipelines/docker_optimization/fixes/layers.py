"""Layers fixes: manifests before the source, merged package-manager RUNs, COPY --chown, folded pip upgrade.

Each fix re-reads the Dockerfile as it is now and edits only the lines of
the instructions it changes (or moves); moved instructions keep their exact
text, and comments directly above an instruction move with it.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Callable, Iterable

from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.fixes import dockerfile_of
from pipelines.docker_optimization.fixes.edit import newline_of
from pipelines.docker_optimization.model.project import Context, Project
from pipelines.docker_optimization.rules.layers import MANIFESTS_FIRST_FIX, BUNDLE_PACKAGE_RUNS_FIX, COPY_CHOWN_FIX, FOLD_PIP_UPGRADE_FIX
from pipelines.docker_optimization.rules import Hit
from pipelines.docker_optimization.rules.layers import (
    INERT, SYSTEM_MANAGERS, Install, LateInstall, neutral, chown_after_copy, classify, context_copies, copy_dest,
    copies_root, delivered_by, is_heredoc, late_installs, manager_groups, manifests_copied_after_source,
    pip_installs, pip_upgrade_only, pip_upgrade_layer, recursive_change, recursive_chown_after_copy, resolve,
    segments, split_package_manager_runs, under, workdir_at,
)

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
            raise FixError(f"{task.file} sets the escape character to {found.group(1)}; line edits assume a backslash")
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
        raise FixError(f"line {ins.start_line}: can't find where its arguments start")
    return source[: found.end()], source[found.end():]


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


# -- LY001: manifests before the source ------------------------------------------------------

# (manifest, required) beside the install, per tool; pip's come from its -r/-c options.
MANIFESTS = {
    "npm": (("package.json", True), ("package-lock.json", False), ("npm-shrinkwrap.json", False), (".npmrc", False)),
    "yarn": (("package.json", True), ("yarn.lock", False), (".npmrc", False), (".yarnrc", False)),
    "pnpm": (("package.json", True), ("pnpm-lock.yaml", False), (".npmrc", False), (".pnpmfile.cjs", False)),
    "poetry": (("pyproject.toml", True), ("poetry.lock", False), ("poetry.toml", False)),
    "uv": (("pyproject.toml", True), ("uv.lock", False), (".python-version", False), ("uv.toml", False)),
    "go": (("go.mod", True), ("go.sum", False)),
}
# Where the install puts its packages, inside the project directory the source COPY also fills.
INSTALLED_INTO = {"npm": "node_modules", "yarn": "node_modules", "pnpm": "node_modules", "uv": ".venv"}
LIFECYCLE = ("preinstall", "install", "postinstall", "prepare", "prepublish")
_LOCAL_REQUIREMENT = re.compile(r"^(?:-e|--editable)\s+(?!\S*://|git\+)|^(?:\.|/|~|file:)|\s@\s*file:"
                                r"|^(?:-f|--find-links)\s+[./]")
_NESTED = re.compile(r"^(?:-r|--requirement|-c|--constraint)[\s=]+(\S+)")
_LOCAL_PATH_DEP = re.compile(r"\bpath\s*=|\[tool\.uv\.workspace\]|\beditable\s*=\s*true")


def _not_movable(df: Dockerfile, ins: Instruction) -> str:
    """Why a RUN can't move above the source COPY ("" when it can: installs and package managers only)."""
    if ins.json or is_heredoc(ins):
        return "a JSON-form or heredoc RUN"
    for seg in segments(df, ins):
        found = classify(seg)
        if found is not None:
            if found.kind == "source":
                return f"{seg.text()} builds the project itself and needs its source"
            continue
        if seg.prog in SYSTEM_MANAGERS or seg.prog == "cd" or neutral(seg):
            continue
        return f"`{seg.text()}` may use the source"
    return ""


class _Manifests:
    """The manifests the moved installs read, as context paths grouped by image directory."""

    def __init__(self, df: Dockerfile, copy: Instruction, contexts: list[Context], project: Project) -> None:
        self.df, self.copy, self.contexts, self.project = df, copy, contexts, project
        self.earlier = [c for c in context_copies(df, copy.stage) if c.start_line < copy.start_line]
        self.by_dir: dict[str, list[str]] = {}

    def read(self, context_path: str) -> str:
        ctx = self.contexts[0]
        path = context_path if ctx.dir == "." else posixpath.join(ctx.dir, context_path)
        return self.project.text(path) or ""

    def want(self, image_path: str, required: bool) -> str:
        """Record a manifest to copy first; its context path ("" when optional and absent).

        One an earlier COPY already put in place is not copied again (its path is still returned, to read it).
        """
        if not image_path:
            raise FixError(f"a manifest path depends on a variable; can't tell what to copy before line "
                           f"{self.copy.start_line}")
        copied = next((found for c in reversed(self.earlier) if (found := delivered_by(self.df, c, image_path))), "")
        if copied:
            return copied
        source = delivered_by(self.df, self.copy, image_path)
        if source is None:
            if required:
                raise FixError(f"{image_path} doesn't come from COPY {' '.join(self.copy.value)} (line "
                               f"{self.copy.start_line}); can't tell where it comes from")
            return ""
        present = [ctx.sends(source) for ctx in self.contexts]
        if not any(present):
            if required:
                raise FixError(f"{source} is not sent in build context {self.contexts[0].dir}")
            return ""
        if not all(present):
            raise FixError(f"{source} is in some build contexts of {self.df.path} and not in others")
        if any(ch.isspace() for ch in source):
            raise FixError(f"{source} has whitespace in its name; left for a person")
        directory = posixpath.dirname(image_path)
        if source not in self.by_dir.setdefault(directory, []):
            self.by_dir[directory].append(source)
        return source

    def add(self, inst: Install) -> None:
        cwd = inst.segment.cwd
        if inst.tool == "pip":
            queue = [resolve(cwd, f) for f in inst.files]
            seen: set[str] = set()
            while queue:
                image_path = queue.pop(0)
                if image_path in seen:
                    continue
                seen.add(image_path)
                source = self.want(image_path, True)
                for line in self.read(source).splitlines() if source else ():
                    line = re.sub(r"(^|\s)#.*$", "", line).strip()
                    if _LOCAL_REQUIREMENT.search(line):
                        raise FixError(f"{source} installs a local path ({line}), which needs the source")
                    nested = _NESTED.match(line)
                    if nested:
                        queue.append(resolve(posixpath.dirname(image_path), nested.group(1)))
            return
        if inst.tool not in MANIFESTS:
            raise FixError(f"{inst.text}: {inst.tool} needs more than its manifests; left for a person")
        found = {name: self.want(resolve(cwd, name), required) for name, required in MANIFESTS[inst.tool]}
        if inst.tool in ("npm", "yarn", "pnpm"):
            self._check_package_json(found["package.json"], cwd)
        if inst.tool in ("poetry", "uv") and found["pyproject.toml"] \
                and _LOCAL_PATH_DEP.search(self.read(found["pyproject.toml"])):
            raise FixError(f"{found['pyproject.toml']} has path dependencies or a workspace, which need the source")
        installed = INSTALLED_INTO.get(inst.tool, "")
        probe = delivered_by(self.df, self.copy, resolve(cwd, installed + "/x")) if installed else None
        if probe and not all(ctx.ignore.excluded(probe) for ctx in self.contexts):
            raise FixError(f"COPY {' '.join(self.copy.value)} would then copy a local {installed} over the one "
                           f"{inst.tool} installs; exclude {posixpath.dirname(probe)} in .dockerignore first")
        if inst.tool == "go" and found["go.mod"] and re.search(r"=>\s*\.{1,2}/", self.read(found["go.mod"])):
            raise FixError(f"{found['go.mod']} replaces modules with local directories, which need the source")

    def _check_package_json(self, source: str, cwd: str) -> None:
        if not source:
            return
        try:
            data = json.loads(self.read(source) or "{}")
        except ValueError:
            raise FixError(f"{source} is not valid JSON") from None
        if not isinstance(data, dict):
            return
        scripts = data.get("scripts") if isinstance(data.get("scripts"), dict) else {}
        hooks = [s for s in LIFECYCLE if s in scripts]
        if hooks:
            raise FixError(f"{source} runs {', '.join(hooks)} scripts on install, which may need the source")
        if data.get("workspaces"):
            raise FixError(f"{source} declares workspaces, whose packages are part of the source")
        deps = [v for key in ("dependencies", "devDependencies", "optionalDependencies")
                if isinstance(data.get(key), dict) for v in data[key].values()]
        pnpm = data.get("pnpm") if isinstance(data.get("pnpm"), dict) else {}
        if pnpm.get("patchedDependencies"):
            raise FixError(f"{source} patches dependencies from files of the source (pnpm patchedDependencies)")
        if any(isinstance(v, str) and v.startswith(("file:", "link:", "workspace:")) for v in deps):
            raise FixError(f"{source} has local (file:/link:) dependencies, which need the source")
        for name in (".yarnrc.yml", "pnpm-workspace.yaml"):
            image_path = resolve(cwd, name)
            other = delivered_by(self.df, self.copy, image_path)
            if other and any(ctx.sends(other) for ctx in self.contexts):
                raise FixError(f"{other} is in the build context: a Yarn 2+ or pnpm workspace setup needs more "
                               "than the manifests")

    def copy_lines(self, nl: str) -> list[str]:
        flags = [f for f in self.copy.flags if f.startswith(("--chown=", "--chmod=", "--link"))]
        written = self.copy.value[-1]
        base = workdir_at(self.df, self.copy)
        out = []
        for directory, sources in self.by_dir.items():
            relative = posixpath.relpath(directory, base) if base else ""
            if written.startswith("/") or not base or relative.startswith(".."):
                dest = directory.rstrip("/") + "/"
            else:
                dest = "./" if relative == "." else relative + "/"
            out.append("COPY " + " ".join(flags + sources + [dest]) + nl)
        return out


def _move_stage(df: Dockerfile, text: str, lates: list[LateInstall], contexts: list[Context],
                project: Project) -> str:
    copy = min((late.copy for late in lates), key=lambda c: c.start_line)
    last = max((late.run for late in lates), key=lambda r: r.start_line)
    if len(copy.value) != 2 and not copies_root(copy):
        raise FixError(f"COPY at line {copy.start_line} has several sources; can't tell where each manifest "
                       "comes from")
    moved = []
    for ins in df.instructions:
        if ins.stage != copy.stage or not copy.start_line < ins.start_line <= last.start_line:
            continue
        if ins.cmd in INERT:
            continue
        if ins.cmd != "RUN":
            raise FixError(f"line {ins.start_line}: {ins.cmd} sits between COPY (line {copy.start_line}) and the "
                           f"install at line {last.start_line}; moving the install above it could change its result")
        why = _not_movable(df, ins)
        if why:
            raise FixError(f"line {ins.start_line}: {why}; it can't move above COPY {' '.join(copy.value)}")
        moved.append(ins)
    manifests = _Manifests(df, copy, contexts, project)
    for ins in moved:
        for seg in segments(df, ins):
            found = classify(seg)
            if found is not None and found.kind == "manifest":
                manifests.add(found)
    lines = lines_of(text)
    nl = newline_of(lines[copy.start_line - 1]) or "\n"
    region_start, region_end = comment_start(df, copy), last.end_line
    taken = {n for ins in moved for n in range(comment_start(df, ins), ins.end_line + 1)}
    out = manifests.copy_lines(nl)
    out += [lines[n - 1] for ins in moved for n in range(comment_start(df, ins), ins.end_line + 1)]
    out += [lines[n - 1] for n in range(region_start, region_end + 1) if n not in taken]
    return splice(text, region_start, region_end, out)


# Directories an install writes into the working directory: a source COPY after the install would overwrite them.
INSTALL_OUTPUTS = ("node_modules", ".venv", "venv", "__pypackages__", "vendor")


def assess_manifests_first(project: Project, file: str) -> tuple[bool, str]:
    """Safe when the source COPY, which now comes after the install, can't overwrite what the install wrote
    (no node_modules/.venv/... in what it copies); unsafe otherwise, naming them."""
    from pipelines.docker_optimization.model.copies import matching, sources

    df = project.dockerfiles.get(file)
    if df is None or df.error:
        raise FixError(f"{file} is missing or no longer parses")
    clash: set[str] = set()
    for ctx in project.contexts_of(file):
        sent = ctx.sent()
        for src in sources(df):
            clash.update(p for p in matching(sent, src.path) if set(p.split("/")[:-1]) & set(INSTALL_OUTPUTS))
    if clash:
        shown = ", ".join(sorted(clash)[:3]) + (f" and {len(clash) - 3} more" if len(clash) > 3 else "")
        return False, ("Unsafe: the source COPY, now after the install, would overwrite what it installed with "
                       f"the context's {shown}.")
    return True, "The image gets the same files; only the order of the layers changes."


@MANIFESTS_FIRST_FIX.applies("Copy dependency manifests before the source in {file}", assess=assess_manifests_first)
def manifests_first(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    lates = late_installs(df)
    if not lates:
        raise AlreadyResolved(f"{task.file} installs no dependencies after copying the source any more")
    contexts = project.contexts_of(task.file)
    if not contexts:
        raise FixError(f"no build context builds {task.file}; can't check the manifests exist")
    text = df.text
    for stage in sorted({late.run.stage for late in lates}, reverse=True):
        text = _move_stage(df, text, [late for late in lates if late.run.stage == stage], contexts, project)
    return {task.file: verify(task.file, text, manifests_copied_after_source, "LY001")}


# -- LY002: merge consecutive package-manager RUNs ------------------------------------------


def _merge_flags(into: list[str], extra: Iterable[str], line: int) -> list[str]:
    """Flags of a later RUN that the merged RUN must add; FixError when they contradict."""
    added = []
    for flag in extra:
        if flag in into or flag in added:
            continue
        name = flag.split("=", 1)[0]
        if name != "--mount" and any(f.split("=", 1)[0] == name for f in into + added):
            raise FixError(f"line {line} runs with {flag}, which contradicts the RUN it would merge into")
        target = re.search(r"(?:target|dst|destination)=([^,]+)", flag)
        if name == "--mount" and target and any(target.group(0) in f for f in into + added):
            raise FixError(f"line {line} mounts {target.group(1)} differently from the RUN it would merge into")
        added.append(flag)
    return added


def merge_runs(df: Dockerfile, group: list[Instruction]) -> list[str]:
    """The lines replacing ``group`` (adjacent RUNs): comments between them first, then one RUN."""
    first = group[0]
    prefix, command = split_prefix(df, first)
    nl = newline_of(df.lines[first.start_line - 1]) or "\n"
    above: list[str] = []
    flags: list[str] = []
    text = command
    previous = first
    for ins in group[1:]:
        above += df.lines[previous.end_line: ins.start_line - 1]
        flags += _merge_flags(list(first.flags) + flags, ins.flags, ins.start_line)
        _, rest = split_prefix(df, ins)
        body = text[: len(text) - len(newline_of(text))].rstrip(" \t")
        text = body + " \\" + nl + "    && " + rest
        previous = ins
    return above + lines_of(add_flags(prefix, flags) + text)


@BUNDLE_PACKAGE_RUNS_FIX.applies("Merge consecutive package-manager RUNs in {file}")
def merge_package_runs(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    groups = manager_groups(df)
    if not groups:
        raise AlreadyResolved(f"{task.file} has no consecutive package-manager RUNs left")
    text = apply_edits(df.text, [(g[0].start_line, g[-1].end_line, merge_runs(df, g)) for g in groups])
    return {task.file: verify(task.file, text, split_package_manager_runs, "LY002")}


# -- LY003: COPY --chown instead of chown -R --------------------------------------------------

_OCTAL = re.compile(r"^[0-7]{3,4}$")
_NO_CACHE_DIR = re.compile(r"\s*(?<!\S)--no-cache-dir(?![^\s;&|)])")


def _set_flags(prefix: str, flags: list[tuple[str, str]]) -> str:
    """``prefix`` with each --name=value set: replaced where the flag is written, otherwise added in order."""
    added = []
    for name, value in flags:
        pattern = re.compile(rf"(?<!\S)--{name}=\S+")
        if pattern.search(prefix):
            prefix = pattern.sub(lambda m: f"--{name}={value}", prefix, count=1)
        else:
            added.append(f"--{name}={value}")
    return add_flags(prefix, added)


def _chown_edits(df: Dockerfile, run: Instruction) -> list[tuple[int, int, list[str]]]:
    found = chown_after_copy(df, run)
    segs = segments(df, run)
    changes = [recursive_change(s) for s in segs]
    if any(c is None for c in changes) or len(found) != len(segs):
        raise FixError(f"line {run.start_line} does more than chown/chmod -R the copied path; left as is")
    _, target, copy = found[0]
    if any(t != target or c is not copy for _, t, c in found) or any(len(c.paths) != 1 for c in changes):
        raise FixError(f"line {run.start_line} changes several paths; left as is")
    if any(not c.plain for c in changes):
        raise FixError(f"line {run.start_line} uses options COPY --chown/--chmod can't express")
    stage = [i for i in df.instructions if i.stage == run.stage]
    if df.stages[run.stage].base.lower() in {s.name.lower() for s in df.stages if s.name}:
        raise FixError(f"the stage builds on another stage, which may have written under {target}")
    for ins in stage:
        if copy.start_line < ins.start_line < run.start_line and ins.cmd not in INERT:
            raise FixError(f"line {ins.start_line} sits between the COPY (line {copy.start_line}) and the "
                           f"{changes[0].prog} -R; it may write files the RUN changes too")
        if ins.start_line >= copy.start_line:
            continue
        if ins.cmd in ("COPY", "ADD") and len(ins.value) >= 2 and under(copy_dest(df, ins), target):
            raise FixError(f"line {ins.start_line} copied files under {target} before; chown -R changes those too")
        if ins.cmd == "RUN" and (under(workdir_at(df, ins), target) or target in ins.command):
            raise FixError(f"line {ins.start_line} runs in or on {target} before the COPY and may have written "
                           f"files there; chown -R changes those too")
    prefix, rest = split_prefix(df, copy, COPY_PREFIX)
    kept = []
    for change in changes:
        if change.prog == "chmod" and not _OCTAL.match(change.spec):
            raise FixError(f"COPY --chmod takes an octal mode, not {change.spec}")
        kept.append(f"{change.prog} {change.spec} {change.paths[0]}")
    prefix = _set_flags(prefix, [(change.prog, change.spec) for change in changes])
    edits = [(copy.start_line, copy.end_line, lines_of(prefix + rest))]
    made_earlier = any(i.cmd == "WORKDIR" and i.start_line < copy.start_line and i.value
                       and under(resolve(workdir_at(df, i), i.value[0]), target) for i in stage)
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
        raise FixError("two chown/chmod -R RUNs change the same COPY; left for a person")
    text = apply_edits(df.text, edits)
    return {task.file: verify(task.file, text, recursive_chown_after_copy, "LY003")}


# -- LY004: fold the pip upgrade into the install -------------------------------------------------


def _fold_target(df: Dockerfile, upgrade: Instruction) -> Instruction | None:
    blocker = None
    for ins in df.instructions:
        if ins.stage != upgrade.stage or ins.start_line <= upgrade.start_line:
            continue
        if ins.cmd in ("USER", "ENV", "ARG", "SHELL") and blocker is None:
            blocker = ins
        if ins.cmd == "RUN" and not pip_upgrade_only(df, ins) and pip_installs(df, ins):
            if blocker is not None:
                raise FixError(f"{blocker.cmd} at line {blocker.start_line} sits between the pip upgrade (line "
                               f"{upgrade.start_line}) and the install (line {ins.start_line}); folding would "
                               "change how the upgrade runs")
            if ins.json or is_heredoc(ins):
                raise FixError(f"line {ins.start_line} is a JSON-form or heredoc RUN; can't fold into it")
            return ins
    return None


def assess_fold(project: Project, file: str) -> tuple[bool, str]:
    """Folding runs the same commands in one RUN (safe); dropping an upgrade no install follows changes the
    image's pip (unsafe)."""
    df = project.dockerfiles.get(file)
    if df is None or df.error:
        raise FixError(f"{file} is missing or no longer parses")
    try:
        dropped = [u.start_line for u in df.of("RUN") if pip_upgrade_only(df, u) and _fold_target(df, u) is None]
    except FixError as err:
        return False, f"Unsafe: {err}."
    if dropped:
        return False, ("Unsafe: drops the pip upgrade at line " + ", ".join(map(str, dropped)) + ", which no pip "
                       "install follows: the image keeps the base image's pip.")
    return True, "Folds the upgrade into the install: the same commands, in the same order, in one RUN."


@FOLD_PIP_UPGRADE_FIX.applies("Fold the separate pip upgrade into the pip install in {file}", assess=assess_fold)
def fold_pip_upgrade(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    upgrades = [ins for ins in df.of("RUN") if pip_upgrade_only(df, ins)]
    if not upgrades:
        raise AlreadyResolved(f"{task.file} has no separate pip upgrade left")
    into: dict[int, tuple[Instruction, list[Instruction]]] = {}
    edits: list[tuple[int, int, list[str]]] = []
    for upgrade in upgrades:
        target = _fold_target(df, upgrade)
        if target is not None:
            into.setdefault(target.start_line, (target, []))[1].append(upgrade)
        edits.append((upgrade.start_line, upgrade.end_line, []))
    for target, folded in into.values():
        cached = any(m.get("type") == "cache" and "/.cache" in m.get("target", m.get("dst", ""))
                     for m in target.mounts())
        commands = []
        for upgrade in folded:
            for flag in upgrade.flags:
                if flag not in target.flags and "type=cache" not in flag:
                    raise FixError(f"the pip upgrade at line {upgrade.start_line} runs with {flag}, which the "
                                   f"install at line {target.start_line} doesn't")
            command = " ".join(upgrade.command.split())
            commands.append(_NO_CACHE_DIR.sub("", command) if cached else command)
        prefix, rest = split_prefix(df, target)
        edits.append((target.start_line, target.end_line, lines_of(prefix + " && ".join(commands) + " && " + rest)))
    text = apply_edits(df.text, edits)
    return {task.file: verify(task.file, text, pip_upgrade_layer, "LY004")}
