"""Layers rules: instructions in an order or a split that rebuilds or stores more than it needs to.

The module also holds the small shell reading the layers and size rules
share: a RUN's command split into simple commands (``Segment``), the
directory each runs in, and what a package-manager command installs
(``Install``). The Dockerfile itself is read by BuildKit's parser
(``dockerfile.py``); only the shell inside RUN is tokenized here.
"""

from __future__ import annotations

import bisect
import fnmatch
import posixpath
import re
import shlex
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Callable
import json

from engine.finding import Applicability, Category, Severity
from engine.artifacts import Design, Task
from engine.domain import AlreadyResolved, FixError
from pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.rules import Fix, Hit, rule
from pipelines.docker_optimization.fixes import dockerfile_of
from pipelines.docker_optimization.fixes.edit import newline_of
from pipelines.docker_optimization.model.project import Context, Project

MANIFESTS_FIRST_FIX = Fix("manifests-first")
BUNDLE_PACKAGE_RUNS_FIX = Fix("bundle-package-runs")
COPY_CHOWN_FIX = Fix("copy-chown")
FOLD_PIP_UPGRADE_FIX = Fix("fold-pip-upgrade")

# -- shell reading ------------------------------------------------------------

SEPARATORS = frozenset({"&&", "||", ";", "|", "&", "|&", ";;"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Words in front of the command proper: wrappers, and shell keywords (`if x; then apt-get ...; fi`).
_WRAPPERS = frozenset({"sudo", "exec", "time", "nohup", "command", "env", "(", "{", "!", "if", "then", "else", "elif",
                       "do", "while", "until", "fi", "done", ")", "}"})
_PYTHON = re.compile(r"^python(?:\d(?:\.\d+)?)?$")
# Instructions that don't change what a later RUN sees (everything else does: ENV, ARG, USER, WORKDIR...).
INERT = frozenset({"EXPOSE", "LABEL", "CMD", "ENTRYPOINT", "HEALTHCHECK", "STOPSIGNAL", "MAINTAINER"})


@dataclass(frozen=True)
class Segment:
    """One simple command of a RUN (``a && b`` has two), without env assignments and sudo."""

    argv: tuple[str, ...]
    cwd: str            # the image directory it runs in ("" when a variable makes it unknown)

    @property
    def prog(self) -> str:
        return posixpath.basename(self.argv[0]) if self.argv else ""

    @property
    def args(self) -> tuple[str, ...]:
        return self.argv[1:]

    def text(self, limit: int = 60) -> str:
        joined = " ".join(self.argv)
        return joined if len(joined) <= limit else joined[: limit - 3] + "..."


def shell_words(command: str) -> list[str]:
    """Shell words with the list operators (&&, ||, ;, |, &) as their own words."""
    return list(_shell_words(command))


@lru_cache(maxsize=4096)
def _shell_words(command: str) -> tuple[str, ...]:
    """Cached: a dozen rules split each RUN, and shlex is the slowest step of the Dockerfile rules."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError:  # unbalanced quotes: fall back to whitespace
        words = command.split()
    out: list[str] = []
    for word in words:  # re-join redirections the lexer split: 2>&1, >&2
        if word == "&" and out and out[-1].endswith((">", "<")):
            out[-1] += word
        elif out and out[-1].endswith((">&", "<&")):
            out[-1] += word
        else:
            out.append(word)
    return tuple(out)


def resolve(cwd: str, path: str) -> str:
    """``path`` as an absolute image path seen from ``cwd`` ("" when a variable makes it unknown)."""
    if "$" in path or (not path.startswith("/") and (not cwd or "$" in cwd)):
        return ""
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(cwd, path))


def under(path: str, directory: str) -> bool:
    return bool(path and directory) and (path == directory or path.startswith(directory.rstrip("/") + "/"))


def is_heredoc(ins: Instruction) -> bool:
    return any(v.startswith("<<") for v in ins.value)


def _workdir(df: Dockerfile, stage: int, before: int | None = None) -> str:
    """The working directory of ``stage`` before line ``before`` (its last one when None).

    Each stage's WORKDIRs are resolved once per file and looked up by bisection.
    """
    memo = df.memo.setdefault("workdirs", {})
    steps = memo.get(stage)
    if steps is None:
        first = df.stages[stage]
        parent = next((s for s in df.stages[:stage] if s.name and s.name.lower() == first.base.lower()), None)
        cwd = _workdir(df, parent.index) if parent is not None else "/"
        lines, cwds = [], [cwd]
        for other in df.in_stage(stage):
            if other.cmd == "WORKDIR" and other.value:
                cwd = resolve(cwd, other.value[0])
                lines.append(other.start_line)
                cwds.append(cwd)
        steps = memo[stage] = (lines, cwds)
    lines, cwds = steps
    return cwds[-1] if before is None else cwds[bisect.bisect_left(lines, before)]


def workdir_at(df: Dockerfile, ins: Instruction) -> str:
    """The WORKDIR in effect when ``ins`` runs ("/" by default; a stage built FROM another inherits it)."""
    return _workdir(df, ins.stage, ins.start_line) if ins.stage >= 0 else "/"


def _split(words: list[str], cwd: str, depth: int = 0) -> list[Segment]:
    found: list[Segment] = []
    current: list[str] = []
    for word in words + [";"]:
        if word not in SEPARATORS:
            current.append(word)
            continue
        argv = current
        current = []
        while argv and (_ASSIGNMENT.match(argv[0]) or argv[0] in _WRAPPERS):
            argv = argv[1:]
        if not argv:
            continue
        if posixpath.basename(argv[0]) in ("sh", "bash", "ash", "dash") and len(argv) >= 3 and argv[1] == "-c" \
                and depth < 2:
            found += _split(shell_words(argv[2]), cwd, depth + 1)
            continue
        found.append(Segment(tuple(argv), cwd))
        if argv[0] == "cd":
            cwd = resolve(cwd, argv[1]) if len(argv) > 1 else "/root"
    return found


def segments(df: Dockerfile, ins: Instruction) -> list[Segment]:
    """The simple commands of a RUN, each with the directory it runs in (none for heredocs)."""
    if ins.cmd != "RUN" or is_heredoc(ins) or not ins.value:
        return []
    cwd = workdir_at(df, ins)
    if ins.json:
        return [Segment(tuple(ins.value), cwd)]
    return _split(shell_words(ins.command), cwd)


def verb(seg: Segment, value_options: frozenset[str] = frozenset()) -> str:
    """The first word after the program that is not an option (or an option's value)."""
    skip = False
    for arg in seg.args:
        if skip:
            skip = False
        elif arg in value_options:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return ""


def positionals(args: Iterable[str], value_options: frozenset[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in value_options:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


# -- what a command installs ---------------------------------------------------

TOOLING = frozenset({"pip", "setuptools", "wheel"})
PIP_VALUE_OPTIONS = frozenset({
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix", "--root",
    "--platform", "--python-version", "--implementation", "--abi", "--only-binary", "--no-binary",
    "--progress-bar", "--trusted-host", "--cache-dir", "--src", "--upgrade-strategy", "-C", "--config-settings",
    "--global-option", "--log", "--timeout", "--retries", "--proxy", "--cert", "--client-cert", "--exists-action",
    "--report", "--python", "--root-user-action", "--keyring-provider", "--use-feature", "--use-deprecated",
    "--index-strategy", "-p",
})
NPM_VALUE_OPTIONS = frozenset({"--omit", "--include", "--registry", "--prefix", "--cache", "--loglevel", "-w",
                               "--workspace", "--only", "--also", "--userconfig", "--install-strategy"})
# Each tool's main manifest, read from the directory the install runs in.
MAIN_MANIFEST = {"npm": "package.json", "yarn": "package.json", "pnpm": "package.json", "poetry": "pyproject.toml",
                 "uv": "pyproject.toml", "go": "go.mod", "cargo": "Cargo.toml"}
MANIFEST_NAMES = ("requirements*.txt", "constraints*.txt", "requirements", "pyproject.toml", "poetry.lock",
                  "poetry.toml", "uv.lock", ".python-version", "setup.cfg", "Pipfile", "Pipfile.lock",
                  "package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml",
                  "pnpm-workspace.yaml", ".npmrc", ".yarnrc", ".yarnrc.yml", "go.mod", "go.sum", "Cargo.toml",
                  "Cargo.lock", "recipe.json")


@dataclass(frozen=True)
class Install:
    """A package-manager command that installs something.

    kind: "manifest" (installs what manifest files list: `pip install -r`, `npm ci`),
    "source" (builds the project itself and needs its source: `pip install .`, `cargo build`),
    "tooling" (upgrades pip/setuptools/wheel), "packages" (named packages only).
    """

    tool: str
    kind: str
    segment: Segment
    files: tuple[str, ...] = ()     # manifest files named on the command line (pip -r/-c), as written

    @property
    def text(self) -> str:
        return self.segment.text()

    def manifest_paths(self) -> list[str]:
        """Image paths of the manifests it reads ("" for one a variable hides)."""
        if self.files:
            return [resolve(self.segment.cwd, f) for f in self.files]
        main = MAIN_MANIFEST.get(self.tool)
        return [resolve(self.segment.cwd, main)] if main else []


def _pip_args(seg: Segment) -> tuple[str, ...] | None:
    argv = seg.argv
    prog = seg.prog
    if re.fullmatch(r"pip\d?(?:\.\d+)?", prog) and len(argv) > 1 and argv[1] == "install":
        return argv[2:]
    if _PYTHON.match(prog) and argv[1:4] == ("-m", "pip", "install"):
        return argv[4:]
    if prog == "uv" and argv[1:3] == ("pip", "install"):
        return argv[3:]
    return None


def _is_local(arg: str) -> bool:
    if "://" in arg or arg.startswith(("git+", "$")):
        return False
    return arg.startswith((".", "/", "~")) or "/" in arg or arg.endswith((".whl", ".tar.gz", ".zip"))


def _pip(seg: Segment, args: tuple[str, ...]) -> Install | None:
    files: list[str] = []
    names: list[str] = []
    local = upgrade = False
    i = 0
    while i < len(args):
        arg = args[i]
        value = args[i + 1] if i + 1 < len(args) else ""
        if arg in ("-r", "--requirement", "-c", "--constraint"):
            files.append(value)
            i += 2
            continue
        if arg.startswith(("--requirement=", "--constraint=")):
            files.append(arg.split("=", 1)[1])
        elif arg.startswith(("-r", "-c")) and not arg.startswith("--") and len(arg) > 2:
            files.append(arg[2:])
        elif arg in ("-e", "--editable"):
            local = local or _is_local(value)
            i += 2
            continue
        elif arg in ("-U", "--upgrade"):
            upgrade = True
        elif arg in PIP_VALUE_OPTIONS:
            if arg in ("-f", "--find-links") and _is_local(value):
                local = True
            i += 2
            continue
        elif not arg.startswith("-"):
            if _is_local(arg):
                local = True
            else:
                names.append(arg)
        i += 1
    if local and "--no-deps" not in args:
        return Install("pip", "source", seg)
    if local:
        return None  # the project alone, its dependencies installed before: what the rules recommend
    if files:
        return Install("pip", "manifest", seg, tuple(files))
    if names and upgrade and all(re.split(r"[<>=!~;\[ ]", n)[0].lower() in TOOLING for n in names):
        return Install("pip", "tooling", seg)
    return Install("pip", "packages", seg) if names else None


def classify(seg: Segment) -> Install | None:
    """What the simple command installs, or None when it installs nothing this module knows."""
    pip_args = _pip_args(seg)
    if pip_args is not None:
        return _pip(seg, pip_args)
    prog, args = seg.prog, seg.args
    sub = args[0] if args else ""
    if prog == "uv" and args[:2] == ("pip", "sync"):
        files = tuple(a for a in args[2:] if not a.startswith("-"))
        return Install("pip", "manifest", seg, files) if files else None
    if prog == "uv" and sub == "sync":
        manifest_only = {"--no-install-project", "--no-install-workspace"} & set(args)
        return Install("uv", "manifest" if manifest_only else "source", seg)
    if prog == "poetry" and sub in ("install", "sync"):
        if "--only-root" in args:
            return None
        return Install("poetry", "manifest" if "--no-root" in args else "source", seg)
    if prog == "npm" and sub == "ci":
        return Install("npm", "manifest", seg)
    if prog == "npm" and sub in ("install", "i", "add"):
        named = positionals(args[1:], NPM_VALUE_OPTIONS)
        if named or {"-g", "--global"} & set(args):
            return Install("npm", "packages", seg)
        return Install("npm", "manifest", seg)
    if prog == "yarn" and (not sub or sub.startswith("-") or sub == "install"):
        return Install("yarn", "manifest", seg)
    if prog == "yarn" and sub in ("add", "global"):
        return Install("yarn", "packages", seg)
    if prog == "pnpm" and sub in ("install", "i", "fetch"):
        return Install("pnpm", "packages" if positionals(args[1:], NPM_VALUE_OPTIONS) else "manifest", seg)
    if prog == "go" and args[:2] == ("mod", "download"):
        return Install("go", "manifest", seg)
    if prog == "cargo" and sub == "chef" and "cook" in args:
        return Install("cargo", "manifest", seg, ("recipe.json",))
    if prog == "cargo" and sub in ("build", "fetch"):
        return Install("cargo", "source", seg)
    if prog == "cargo" and sub == "install":
        return Install("cargo", "source" if "--path" in args else "packages", seg)
    return None


def installs(df: Dockerfile, ins: Instruction) -> list[Install]:
    return [found for seg in segments(df, ins) if (found := classify(seg)) is not None]


# -- COPY sources -----------------------------------------------------------------

ROOT_SOURCES = frozenset({".", "./", "*", "./*", "/", "./."})


def context_copies(df: Dockerfile, stage: int) -> list[Instruction]:
    """COPY/ADD of the build context (not --from another stage or image, not heredocs) in a stage."""
    return [i for i in df.of("COPY", "ADD")
            if i.stage == stage and not i.flag("from") and len(i.value) >= 2 and not is_heredoc(i)]


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
    return resolve(workdir_at(df, copy), copy.value[-1])


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
            if any(delivered_by(df, copy, path) for path in install.manifest_paths()
                   if any(_dir_like(src) for src in copy.value[:-1])):
                return copy
    return None


@dataclass(frozen=True)
class LateInstall:
    run: Instruction
    copy: Instruction               # the COPY of the source that comes before it
    installs: tuple[Install, ...]   # what the source COPY makes rerun


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
                if any(line < copy.start_line and earlier.tool == inst.tool and earlier.kind in ("manifest", "source")
                       for line, earlier in history):
                    continue  # the tool installed from the manifests before the COPY: the heavy layer stays cached
                late.append((copy, inst))
            if late:
                first = min((c for c, _ in late), key=lambda c: c.start_line)
                found.append(LateInstall(run, first, tuple(i for _, i in late)))
            history += [(run.start_line, i) for i in mine]
    return found


@rule("LY001", "manifests-copied-after-source", Category.performance, Severity.warning, "dockerfile",
      fix=MANIFESTS_FIRST_FIX, safety=Applicability.safe, phase="dockerfiles")
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
        yield Hit(late.run.start_line,
                  f"{what} runs after COPY {' '.join(copy.value)} (line {copy.start_line}): any change to the "
                  "copied source redoes the whole install", late.run.original, late.run.end_line)


# -- consecutive RUNs of one system package manager -------------------------------------

SYSTEM_MANAGERS = {"apt-get": "apt-get", "apt": "apt-get", "apk": "apk", "dnf": "dnf", "yum": "yum",
                   "microdnf": "microdnf", "zypper": "zypper"}
APT_VALUE_OPTIONS = frozenset({"-o", "-t", "-c", "--option", "--target-release", "--config-file"})
# What a package-manager RUN may delete besides installing: caches, lists, logs, apt's docker-clean hook, docs.
_CLEAN_PREFIXES = ("/var/lib/apt/", "/var/cache/", "/var/log/", "/tmp/", "/root/.cache", "/etc/apt/apt.conf.d/",
                   "/usr/share/doc/", "/usr/share/man/")


def neutral(seg: Segment) -> bool:
    """A simple command that can sit in a package-manager RUN without reading or changing the project."""
    if seg.prog in ("set", "true", ":", "export"):
        return True
    if seg.prog == "rm":
        targets = [a for a in seg.args if not a.startswith("-")]
        return bool(targets) and all(t.startswith(_CLEAN_PREFIXES) for t in targets)
    return False


def manager_of(df: Dockerfile, ins: Instruction) -> str:
    """The system package manager a shell-form RUN runs and nothing else ("" when it runs anything more)."""
    if ins.cmd != "RUN" or ins.json or is_heredoc(ins):
        return ""
    segs = segments(df, ins)
    found = {SYSTEM_MANAGERS[s.prog] for s in segs if s.prog in SYSTEM_MANAGERS}
    if len(found) != 1 or not all(s.prog in SYSTEM_MANAGERS or neutral(s) for s in segs):
        return ""
    return found.pop()


def manager_verbs(df: Dockerfile, ins: Instruction) -> set[str]:
    return {verb(s, APT_VALUE_OPTIONS) for s in segments(df, ins) if s.prog in SYSTEM_MANAGERS}


def _update_only(df: Dockerfile, ins: Instruction) -> bool:
    verbs = manager_verbs(df, ins)
    return bool(manager_of(df, ins)) and "update" in verbs and not verbs & {"install", "add", "upgrade",
                                                                             "dist-upgrade"}


def installs_with(df: Dockerfile, ins: Instruction, manager: str) -> bool:
    return any(SYSTEM_MANAGERS.get(s.prog) == manager and verb(s, APT_VALUE_OPTIONS) in ("install", "add")
               for s in segments(df, ins))


def manager_groups(df: Dockerfile) -> list[list[Instruction]]:
    """Runs of adjacent RUNs that belong together.

    Each RUN of a run runs only the same system package manager; an
    update-only RUN also takes the RUN right after it when that one
    installs with the same manager, whatever else it runs (and ends the run).
    """
    groups: list[list[Instruction]] = []
    current: list[Instruction] = []
    manager = ""
    for ins in df.instructions:
        joins = bool(current) and ins.stage == current[-1].stage and ins.cmd == "RUN"
        if joins and manager_of(df, ins) == manager and manager_of(df, current[-1]):
            current.append(ins)
            continue
        if joins and _update_only(df, current[-1]) and not ins.json and not is_heredoc(ins) \
                and installs_with(df, ins, manager):
            current.append(ins)
            groups.append(current)
            current, manager = [], ""
            continue
        if len(current) >= 2:
            groups.append(current)
        manager = manager_of(df, ins)
        current = [ins] if manager else []
    if len(current) >= 2:
        groups.append(current)
    return groups


def split_update(df: Dockerfile, group: list[Instruction]) -> tuple[Instruction, Instruction] | None:
    """(an update-only RUN, the install RUN after it) in a group: the stale-package-list bug."""
    for first, second in zip(group, group[1:]):
        if _update_only(df, first) and installs_with(df, second, manager_of(df, first)):
            return first, second
    return None


@rule("LY002", "split-package-manager-runs", Category.reliability, Severity.warning, "dockerfile",
      fix=BUNDLE_PACKAGE_RUNS_FIX, safety=Applicability.safe, phase="dockerfiles")
def split_package_manager_runs(df: Dockerfile) -> Iterable[Hit]:
    """Consecutive RUNs each run only the same system package manager (apt-get, apk, dnf, yum...).

    Also fires on an `apt-get update` (or `apk update`) RUN followed by a
    RUN that installs with the same manager, whatever else that RUN does.
    The worst case is `RUN apt-get update` followed by `RUN apt-get install`:
    the install layer is cached separately from the update, so it can run
    with a package list from an old build (versions that are gone, missing
    security updates), and removing the lists in the install layer no
    longer saves anything. Language package managers (pip, npm) in a row are
    not flagged: a layer for the dependencies and one for the project is a
    deliberate caching choice.

    Why: every RUN is a layer. Package-manager work split across layers
    stores the package index and the caches several times and caches steps
    that only make sense together.

    Example:
        RUN apt-get update
        RUN apt-get install -y curl

    Use instead:
        RUN apt-get update && apt-get install -y curl

    Fix: merges each run of RUNs into one, joining the commands with `&&`
    in their order (the same commands in the same shell, one layer).

    Fix safety: safe: the same commands run in the same order with the
    same environment, in one RUN instead of several; a failing command still
    fails the build.
    """
    for group in manager_groups(df):
        first, last = group[0], group[-1]
        split = split_update(df, group)
        if split:
            message = (f"{split[0].command.strip()} runs in its own layer (line {split[0].start_line}): the install at "
                       f"line {split[1].start_line} can use a package list cached from an older build")
        else:
            message = (f"{len(group)} consecutive RUNs of {manager_of(df, first)} (lines {first.start_line}-"
                       f"{last.end_line}): one RUN makes one layer and one consistent package list")
        yield Hit(first.start_line, message, "\n".join(i.original for i in group), last.end_line)


# -- chown/chmod -R after COPY ------------------------------------------------------

_RECURSIVE = re.compile(r"^-[A-Za-z]*R[A-Za-z]*$")


@dataclass(frozen=True)
class Recursive:
    """A `chown -R spec path...` or `chmod -R mode path...` simple command."""

    prog: str
    spec: str
    paths: tuple[str, ...]
    plain: bool      # only -R (and -f/-v): nothing a COPY flag can't express


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
            target = resolve(seg.cwd, path)
            lines, copies = _copies_by_dest(df, run.stage).get(target, ((), ())) if target else ((), ())
            before = bisect.bisect_left(lines, run.start_line)  # the last COPY to target above the RUN
            if before:
                found.append((change, target, copies[before - 1]))
    return found


def _copies_by_dest(df: Dockerfile, stage: int) -> dict[str, tuple[list[int], list[Instruction]]]:
    """The stage's COPY/ADD (not heredocs) by destination, with their lines: built once per file and stage
    (a scan of the stage for every ``chown -R`` is quadratic in a long Dockerfile)."""
    memo = df.memo.setdefault("copies_by_dest", {})
    found = memo.get(stage)
    if found is None:
        found = memo[stage] = {}
        for c in df.in_stage(stage):
            if c.cmd in ("COPY", "ADD") and not is_heredoc(c) and len(c.value) >= 2:
                lines, copies = found.setdefault(copy_dest(df, c), ([], []))
                lines.append(c.start_line)
                copies.append(c)
    return found


@rule("LY003", "recursive-chown-after-copy", Category.size, Severity.warning, "dockerfile",
      fix=COPY_CHOWN_FIX, safety=Applicability.unsafe, phase="dockerfiles")
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
            yield Hit(run.start_line,
                      f"{change.prog} -R {change.spec} {target} rewrites every file COPY (line {copy.start_line}) "
                      f"added: they are stored twice; use COPY --{change.prog}", run.original, run.end_line)


# -- pip upgrade in its own layer -----------------------------------------------------


def pip_upgrade_only(df: Dockerfile, ins: Instruction) -> bool:
    """A shell-form RUN that only upgrades pip (and setuptools/wheel)."""
    if ins.cmd != "RUN" or ins.json or is_heredoc(ins):
        return False
    segs = segments(df, ins)
    kinds = [classify(s) for s in segs]
    return bool(segs) and all(k is not None and k.tool == "pip" and k.kind == "tooling" for k in kinds)


def pip_installs(df: Dockerfile, ins: Instruction) -> bool:
    return any(i.tool == "pip" and i.segment.prog != "uv" for i in installs(df, ins))


@rule("LY004", "pip-upgrade-layer", Category.performance, Severity.info, "dockerfile",
      fix=FOLD_PIP_UPGRADE_FIX, safety=Applicability.safe, phase="dockerfiles")
def pip_upgrade_layer(df: Dockerfile) -> Iterable[Hit]:
    """`RUN pip install --upgrade pip` is a layer of its own.

    Why: the upgrade layer is cached on its own, apart from the installs it
    is meant for, and adds a layer that only replaces pip's files. Upgrading
    pip in the same RUN as the install keeps the two together.

    Example:
        RUN pip install --upgrade pip
        RUN pip install -r requirements.txt

    Use instead:
        RUN pip install --upgrade pip && pip install -r requirements.txt

    Fix: folds the upgrade into the next pip install RUN of the stage (its
    cache mounts stay on that RUN; no USER, ENV, ARG or SHELL may sit
    between them). When no pip install follows in the stage, the upgrade
    serves no install of the build and the fix drops the RUN.

    Fix safety: decided per repository. Folding runs the same commands in
    the same order in one RUN: safe. Dropping an upgrade that no pip
    install follows leaves the base image's pip in the image: unsafe, and
    the task says which line it drops.
    """
    for ins in df.of("RUN"):
        if pip_upgrade_only(df, ins):
            yield Hit(ins.start_line, f"{ins.command.strip()} is a layer of its own: fold it into the pip install "
                                      "that follows", ins.original, ins.end_line)


# -- fixes -----------------------------------------------------------------------------------------------
# Layers fixes: manifests before the source, merged package-manager RUNs, COPY --chown, folded pip upgrade.
#
# Each fix re-reads the Dockerfile as it is now and edits only the lines of
# the instructions it changes (or moves); moved instructions keep their exact
# text, and comments directly above an instruction move with it.


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
