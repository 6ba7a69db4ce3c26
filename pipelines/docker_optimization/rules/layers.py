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
from typing import Iterable

from engine.finding import Applicability, Category, Severity
from pipelines.docker_optimization.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.rules import Hit, rule

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
    # Once per RUN and file: a dozen rules ask, and shell_words' LRU cache can't hold a huge file's RUNs.
    memo = df.memo.setdefault("segments", {})
    found = memo.get(ins.start_line)
    if found is None:
        cwd = workdir_at(df, ins)
        found = [Segment(tuple(ins.value), cwd)] if ins.json else _split(shell_words(ins.command), cwd)
        memo[ins.start_line] = found
    return list(found)


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
      fix=Applicability.safe, fix_group="manifests-first", phase="dockerfiles")
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
      fix=Applicability.safe, fix_group="bundle-package-runs", phase="dockerfiles")
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
      fix=Applicability.unsafe, fix_group="copy-chown", phase="dockerfiles")
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
      fix=Applicability.safe, fix_group="fold-pip-upgrade", phase="dockerfiles")
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
