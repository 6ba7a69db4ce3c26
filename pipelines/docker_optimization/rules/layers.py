"""Layers rules, LY001: dependency manifests copied after the source, so every source change reinstalls.

Also what the layers rules share about COPY sources (which COPY delivers a
path, whether it copies the whole context). LY002 and LY004 (package
manager RUNs) are in ``layers_runs.py``, LY003 (chown after COPY) in
``layers_chown.py``; the shell reading is ``model/shell.py``.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization.fixes.edit import (
    comment_start,
    dockerfile_now,
    lines_of,
    newline_of,
    splice,
    verify,
)
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction, resolve_path, under
from agent_pipelines.pipelines.docker_optimization.model.project import Context, Project
from agent_pipelines.pipelines.docker_optimization.model.shell import (
    INERT,
    MANIFEST_NAMES,
    SYSTEM_MANAGERS,
    Install,
    classify,
    installs,
    is_heredoc,
    neutral,
    segments,
    workdir_at,
)
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, rule

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

MANIFESTS_FIRST_FIX = Fix("manifests-first")


# -- COPY sources -----------------------------------------------------------------

ROOT_SOURCES = frozenset({".", "./", "*", "./*", "/", "./."})


def context_copies(df: Dockerfile, stage: int) -> list[Instruction]:
    """COPY/ADD of the build context (not --from another stage or image, not heredocs) in a stage."""
    return [
        i
        for i in df.of("COPY", "ADD")
        if i.stage == stage and not i.flag("from") and len(i.value) >= 2 and not is_heredoc(i)
    ]


def is_manifest(path: str) -> bool:
    name = posixpath.basename(path.rstrip("/"))
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in MANIFEST_NAMES)


def manifest_only(copy: Instruction) -> bool:
    return all(is_manifest(src) for src in copy.value[:-1])


def copies_root(copy: Instruction) -> bool:
    return any(src in ROOT_SOURCES for src in copy.value[:-1])


def _dir_like(src: str) -> bool:
    name = posixpath.basename(src.rstrip("/"))
    plain = "://" not in src and not any(ch in src for ch in "*?[")
    return plain and (src.endswith("/") or "." not in name.lstrip("."))


def copy_dest(df: Dockerfile, copy: Instruction) -> str:
    return resolve_path(workdir_at(df, copy), copy.value[-1])


def delivered_by(df: Dockerfile, copy: Instruction, image_path: str) -> str | None:
    """The context path ``copy`` puts at ``image_path``, or None when it doesn't (or can't be told)."""
    dest = copy_dest(df, copy)
    if not dest or not image_path:
        return None
    srcs = copy.value[:-1]
    into_dir = copy.value[-1].endswith("/") or len(srcs) > 1 or copy.value[-1] in (".", "./")
    for src in srcs:
        if "$" in src or "://" in src or src.startswith("git@"):
            continue
        clean = posixpath.normpath(src.lstrip("/")) if src.strip("/") else "."
        if src in ROOT_SOURCES or _dir_like(src):
            if under(image_path, dest) and image_path != dest:
                rel = posixpath.relpath(image_path, dest)
                return rel if clean in (".", "*") else posixpath.join(clean, rel)
            continue
        name = posixpath.basename(image_path)
        if posixpath.dirname(image_path) == dest and fnmatch.fnmatchcase(name, posixpath.basename(clean)):
            return posixpath.join(posixpath.dirname(clean), name) if posixpath.dirname(clean) else name
        if not into_dir and image_path == dest and not any(ch in clean for ch in "*?["):
            return clean
    return None


def source_copy_for(df: Dockerfile, copies: list[Instruction], install: Install) -> Instruction | None:
    """The first COPY of the stage (before the install) that brings the project's source with it.

    That is a COPY of the whole context (`COPY . .`) or, for installs from
    manifests, a directory COPY that also delivers the manifests the install
    reads (`COPY app/ /app/` before `pip install -r /app/requirements.txt`).
    """
    for copy in copies:
        if copies_root(copy):
            return copy
        if install.kind == "manifest" and not manifest_only(copy):
            if any(
                delivered_by(df, copy, path)
                for path in install.manifest_paths()
                if any(_dir_like(src) for src in copy.value[:-1])
            ):
                return copy
    return None


@dataclass(frozen=True)
class LateInstall:
    run: Instruction
    copy: Instruction  # the COPY of the source that comes before it
    installs: tuple[Install, ...]  # what the source COPY makes rerun


def late_installs(df: Dockerfile) -> list[LateInstall]:
    """Dependency installs that run after the source is copied in their stage."""
    found = []
    for stage in range(len(df.stages)):
        copies = context_copies(df, stage)
        history: list[tuple[int, Install]] = []
        for run in (i for i in df.in_stage(stage) if i.cmd == "RUN"):
            before = None  # the COPYs above this RUN, listed only for a RUN that installs from them
            late: list[tuple[Instruction, Install]] = []
            mine = installs(df, run)
            for inst in (i for i in mine if i.kind in ("manifest", "source")):
                if before is None:
                    before = [c for c in copies if c.start_line < run.start_line]
                copy = source_copy_for(df, before, inst)
                if copy is None:
                    continue
                if any(
                    line < copy.start_line and earlier.tool == inst.tool and earlier.kind in ("manifest", "source")
                    for line, earlier in history
                ):
                    continue  # the tool installed from the manifests before the COPY: the heavy layer stays cached
                late.append((copy, inst))
            if late:
                first = min((c for c, _ in late), key=lambda c: c.start_line)
                found.append(LateInstall(run, first, tuple(i for _, i in late)))
            history += [(run.start_line, i) for i in mine]
    return found


@rule(
    "LY001",
    "manifests-copied-after-source",
    Category.performance,
    Severity.warning,
    "dockerfile",
    fix=MANIFESTS_FIRST_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def manifests_copied_after_source(df: Dockerfile) -> Iterable[Hit]:
    """A dependency install runs after the source is copied, so any source change reinstalls everything.

    Fires on `pip install -r`, `pip install .`, `poetry install`, `uv sync`,
    `npm ci`/`npm install`, `yarn`, `pnpm install`, `go mod download` and
    `cargo build` when a `COPY . .` (or a COPY of a directory that brings
    the manifests with the source) comes before them in the same stage. Not
    flagged when the same tool already installed from the manifests before
    that COPY (`pip install --no-deps .` after `pip install -r`, `pnpm
    install --offline` after `pnpm fetch`, `cargo build` after `cargo chef
    cook`): the heavy layer is cached already.

    Why: a layer is rebuilt when anything copied before it changes. With the
    whole source copied first, editing one line of code downloads and
    installs every dependency again; with only the manifests copied first,
    the install layer stays cached until the dependencies change.

    Example:
        COPY . .
        RUN pip install -r requirements.txt

    Use instead:
        COPY requirements.txt ./
        RUN pip install -r requirements.txt
        COPY . .

    Fix: inserts a COPY of the manifests the install reads (requirements
    files, pyproject.toml with poetry.lock or uv.lock, package.json with the
    lockfile present, go.mod with go.sum) before the source COPY and moves
    the install RUN, unchanged, above it. Only when that is clearly the same
    build: the manifests are in every build context of the Dockerfile, the
    install reads nothing else (no `pip install .`, no `-e .` in a
    requirements file, no npm lifecycle scripts, no workspaces), and what
    lies between the COPY and the install is package installs (moved along)
    or instructions that don't affect a RUN.

    Fix safety: decided per repository. Safe when the source COPY, which
    now comes after the install, copies nothing into what the install
    writes (no node_modules/, .venv/, venv/, vendor/ in what it sends): the
    image then holds the same files and only the layer order changes.
    Otherwise unsafe: the context's copies would overwrite the installed
    ones (host binaries in node_modules), and the task names them.
    """
    for late in late_installs(df):
        copy = late.copy
        what = ", ".join(sorted({i.text for i in late.installs}))
        yield Hit(
            late.run.start_line,
            f"{what} runs after COPY {' '.join(copy.value)} (line {copy.start_line}): any change to the "
            "copied source redoes the whole install",
            late.run.original,
            late.run.end_line,
        )


# -- fixes -----------------------------------------------------------------------------------------------
# Layers fixes: manifests before the source, merged package-manager RUNs, COPY --chown, folded pip upgrade.
#
# Each fix re-reads the Dockerfile as it is now and edits only the lines of
# the instructions it changes (or moves); moved instructions keep their exact
# text, and comments directly above an instruction move with it.


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
_LOCAL_REQUIREMENT = re.compile(
    r"^(?:-e|--editable)\s+(?!\S*://|git\+)|^(?:\.|/|~|file:)|\s@\s*file:"
    r"|^(?:-f|--find-links)\s+[./]"
)
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
            raise Declined(
                f"a manifest path depends on a variable; can't tell what to copy before line {self.copy.start_line}"
            )
        copied = next((found for c in reversed(self.earlier) if (found := delivered_by(self.df, c, image_path))), "")
        if copied:
            return copied
        source = delivered_by(self.df, self.copy, image_path)
        if source is None:
            if required:
                raise Declined(
                    f"{image_path} doesn't come from COPY {' '.join(self.copy.value)} (line "
                    f"{self.copy.start_line}); can't tell where it comes from"
                )
            return ""
        present = [ctx.sends(source) for ctx in self.contexts]
        if not any(present):
            if required:
                raise Declined(f"{source} is not sent in build context {self.contexts[0].dir}")
            return ""
        if not all(present):
            raise Declined(f"{source} is in some build contexts of {self.df.path} and not in others")
        if any(ch.isspace() for ch in source):
            raise Declined(f"{source} has whitespace in its name; left for a person")
        directory = posixpath.dirname(image_path)
        if source not in self.by_dir.setdefault(directory, []):
            self.by_dir[directory].append(source)
        return source

    def add(self, inst: Install) -> None:
        cwd = inst.segment.cwd
        if inst.tool == "pip":
            queue = [resolve_path(cwd, f) for f in inst.files]
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
                        raise Declined(f"{source} installs a local path ({line}), which needs the source")
                    nested = _NESTED.match(line)
                    if nested:
                        queue.append(resolve_path(posixpath.dirname(image_path), nested.group(1)))
            return
        if inst.tool not in MANIFESTS:
            raise Declined(f"{inst.text}: {inst.tool} needs more than its manifests; left for a person")
        found = {name: self.want(resolve_path(cwd, name), required) for name, required in MANIFESTS[inst.tool]}
        if inst.tool in ("npm", "yarn", "pnpm"):
            self._check_package_json(found["package.json"], cwd)
        if (
            inst.tool in ("poetry", "uv")
            and found["pyproject.toml"]
            and _LOCAL_PATH_DEP.search(self.read(found["pyproject.toml"]))
        ):
            raise Declined(f"{found['pyproject.toml']} has path dependencies or a workspace, which need the source")
        installed = INSTALLED_INTO.get(inst.tool, "")
        probe = delivered_by(self.df, self.copy, resolve_path(cwd, installed + "/x")) if installed else None
        if probe and not all(ctx.ignore.excluded(probe) for ctx in self.contexts):
            raise Declined(
                f"COPY {' '.join(self.copy.value)} would then copy a local {installed} over the one "
                f"{inst.tool} installs; exclude {posixpath.dirname(probe)} in .dockerignore first"
            )
        if inst.tool == "go" and found["go.mod"] and re.search(r"=>\s*\.{1,2}/", self.read(found["go.mod"])):
            raise Declined(f"{found['go.mod']} replaces modules with local directories, which need the source")

    def _check_package_json(self, source: str, cwd: str) -> None:
        if not source:
            return
        try:
            data = json.loads(self.read(source) or "{}")
        except ValueError:
            raise Declined(f"{source} is not valid JSON") from None
        if not isinstance(data, dict):
            return
        scripts = got if isinstance(got := data.get("scripts"), dict) else {}
        hooks = [s for s in LIFECYCLE if s in scripts]
        if hooks:
            raise Declined(f"{source} runs {', '.join(hooks)} scripts on install, which may need the source")
        if data.get("workspaces"):
            raise Declined(f"{source} declares workspaces, whose packages are part of the source")
        deps = [
            v
            for key in ("dependencies", "devDependencies", "optionalDependencies")
            if isinstance(data.get(key), dict)
            for v in data[key].values()
        ]
        pnpm = got if isinstance(got := data.get("pnpm"), dict) else {}
        if pnpm.get("patchedDependencies"):
            raise Declined(f"{source} patches dependencies from files of the source (pnpm patchedDependencies)")
        if any(isinstance(v, str) and v.startswith(("file:", "link:", "workspace:")) for v in deps):
            raise Declined(f"{source} has local (file:/link:) dependencies, which need the source")
        for name in (".yarnrc.yml", "pnpm-workspace.yaml"):
            image_path = resolve_path(cwd, name)
            other = delivered_by(self.df, self.copy, image_path)
            if other and any(ctx.sends(other) for ctx in self.contexts):
                raise Declined(
                    f"{other} is in the build context: a Yarn 2+ or pnpm workspace setup needs more than the manifests"
                )

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


def _move_stage(df: Dockerfile, text: str, lates: list[LateInstall], contexts: list[Context], project: Project) -> str:
    copy = min((late.copy for late in lates), key=lambda c: c.start_line)
    last = max((late.run for late in lates), key=lambda r: r.start_line)
    if len(copy.value) != 2 and not copies_root(copy):
        raise Declined(f"COPY at line {copy.start_line} has several sources; can't tell where each manifest comes from")
    moved = []
    for ins in df.instructions:
        if ins.stage != copy.stage or not copy.start_line < ins.start_line <= last.start_line:
            continue
        if ins.cmd in INERT:
            continue
        if ins.cmd != "RUN":
            raise Declined(
                f"line {ins.start_line}: {ins.cmd} sits between COPY (line {copy.start_line}) and the "
                f"install at line {last.start_line}; moving the install above it could change its result"
            )
        why = _not_movable(df, ins)
        if why:
            raise Declined(f"line {ins.start_line}: {why}; it can't move above COPY {' '.join(copy.value)}")
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
    from agent_pipelines.pipelines.docker_optimization.model.copies import matching, sources

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
        return False, (
            "Unsafe: the source COPY, now after the install, would overwrite what it installed with "
            f"the context's {shown}."
        )
    return True, "The image gets the same files; only the order of the layers changes."


@MANIFESTS_FIRST_FIX.applies("Copy dependency manifests before the source in {file}", assess=assess_manifests_first)
def manifests_first(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    lates = late_installs(df)
    if not lates:
        raise AlreadyResolved(f"{task.file} installs no dependencies after copying the source any more")
    contexts = project.contexts_of(task.file)
    if not contexts:
        raise Declined(f"no build context builds {task.file}; can't check the manifests exist")
    text = df.text
    for stage in sorted({late.run.stage for late in lates}, reverse=True):
        text = _move_stage(df, text, [late for late in lates if late.run.stage == stage], contexts, project)
    return {task.file: verify(task.file, text, manifests_copied_after_source, "LY001")}
