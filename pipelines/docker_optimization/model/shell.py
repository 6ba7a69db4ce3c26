"""The shell inside RUN: a command split into simple commands, where each runs, what it installs.

A RUN's command is split into simple commands (``Segment``: its words and
the directory it runs in, following ``cd`` and WORKDIR), and a
package-manager command is read as an ``Install`` (which manager, what it
installs, from which manifests). The Dockerfile itself is read by
BuildKit's parser (``dockerfile.py``); only the shell inside RUN is
tokenized here. Rules and fixes ask ``segments(df, run)`` and
``installs(df, run)`` instead of reading the shell themselves.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction, resolve_path

# -- shell reading ------------------------------------------------------------

SEPARATORS = frozenset({"&&", "||", ";", "|", "&", "|&", ";;"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Words in front of the command proper: wrappers, and shell keywords (`if x; then apt-get ...; fi`).
_WRAPPERS = frozenset(
    {
        "sudo",
        "exec",
        "time",
        "nohup",
        "command",
        "env",
        "(",
        "{",
        "!",
        "if",
        "then",
        "else",
        "elif",
        "do",
        "while",
        "until",
        "fi",
        "done",
        ")",
        "}",
    }
)
_PYTHON = re.compile(r"^python(?:\d(?:\.\d+)?)?$")
# Instructions that don't change what a later RUN sees (everything else does: ENV, ARG, USER, WORKDIR...).
INERT = frozenset({"EXPOSE", "LABEL", "CMD", "ENTRYPOINT", "HEALTHCHECK", "STOPSIGNAL", "MAINTAINER"})


@dataclass(frozen=True)
class Segment:
    """One simple command of a RUN (``a && b`` has two), without env assignments and sudo."""

    argv: tuple[str, ...]
    cwd: str  # the image directory it runs in ("" when a variable makes it unknown)

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


def is_heredoc(ins: Instruction) -> bool:
    return any(v.startswith("<<") for v in ins.value)


def workdir_at(df: Dockerfile, ins: Instruction) -> str:
    """The WORKDIR in effect when ``ins`` runs (``Dockerfile.workdir_at``)."""
    return df.workdir_at(ins)


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
        if (
            posixpath.basename(argv[0]) in ("sh", "bash", "ash", "dash")
            and len(argv) >= 3
            and argv[1] == "-c"
            and depth < 2
        ):
            found += _split(shell_words(argv[2]), cwd, depth + 1)
            continue
        found.append(Segment(tuple(argv), cwd))
        if argv[0] == "cd":
            cwd = resolve_path(cwd, argv[1]) if len(argv) > 1 else "/root"
    return found


def segments(df: Dockerfile, ins: Instruction) -> list[Segment]:
    """The simple commands of a RUN, each with the directory it runs in (none for heredocs).

    Parsed once per RUN of a file (every rule and fix asks): a new list of the same frozen segments.
    """
    memo = df.memo.setdefault("segments", {})
    key = (ins.start_line, ins.original)
    found = memo.get(key)
    if found is None:
        found = memo[key] = tuple(_segments(df, ins))
    return list(found)


def _segments(df: Dockerfile, ins: Instruction) -> list[Segment]:
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
PIP_VALUE_OPTIONS = frozenset(
    {
        "-i",
        "--index-url",
        "--extra-index-url",
        "-f",
        "--find-links",
        "-t",
        "--target",
        "--prefix",
        "--root",
        "--platform",
        "--python-version",
        "--implementation",
        "--abi",
        "--only-binary",
        "--no-binary",
        "--progress-bar",
        "--trusted-host",
        "--cache-dir",
        "--src",
        "--upgrade-strategy",
        "-C",
        "--config-settings",
        "--global-option",
        "--log",
        "--timeout",
        "--retries",
        "--proxy",
        "--cert",
        "--client-cert",
        "--exists-action",
        "--report",
        "--python",
        "--root-user-action",
        "--keyring-provider",
        "--use-feature",
        "--use-deprecated",
        "--index-strategy",
        "-p",
    }
)
NPM_VALUE_OPTIONS = frozenset(
    {
        "--omit",
        "--include",
        "--registry",
        "--prefix",
        "--cache",
        "--loglevel",
        "-w",
        "--workspace",
        "--only",
        "--also",
        "--userconfig",
        "--install-strategy",
    }
)
# Each tool's main manifest, read from the directory the install runs in.
MAIN_MANIFEST = {
    "npm": "package.json",
    "yarn": "package.json",
    "pnpm": "package.json",
    "poetry": "pyproject.toml",
    "uv": "pyproject.toml",
    "go": "go.mod",
    "cargo": "Cargo.toml",
}
MANIFEST_NAMES = (
    "requirements*.txt",
    "constraints*.txt",
    "requirements",
    "pyproject.toml",
    "poetry.lock",
    "poetry.toml",
    "uv.lock",
    ".python-version",
    "setup.cfg",
    "Pipfile",
    "Pipfile.lock",
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "pnpm-workspace.yaml",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    "go.mod",
    "go.sum",
    "Cargo.toml",
    "Cargo.lock",
    "recipe.json",
)


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
    files: tuple[str, ...] = ()  # manifest files named on the command line (pip -r/-c), as written

    @property
    def text(self) -> str:
        return self.segment.text()

    def manifest_paths(self) -> list[str]:
        """Image paths of the manifests it reads ("" for one a variable hides)."""
        if self.files:
            return [resolve_path(self.segment.cwd, f) for f in self.files]
        main = MAIN_MANIFEST.get(self.tool)
        return [resolve_path(self.segment.cwd, main)] if main else []


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
    """What the package-manager commands of a RUN install (read once per RUN, like its segments)."""
    memo = df.memo.setdefault("installs", {})
    key = (ins.start_line, ins.original)
    if key not in memo:
        memo[key] = tuple(found for seg in segments(df, ins) if (found := classify(seg)) is not None)
    return list(memo[key])


# -- system package managers ------------------------------------------------------------

SYSTEM_MANAGERS = {
    "apt-get": "apt-get",
    "apt": "apt-get",
    "apk": "apk",
    "dnf": "dnf",
    "yum": "yum",
    "microdnf": "microdnf",
    "zypper": "zypper",
}
APT_VALUE_OPTIONS = frozenset({"-o", "-t", "-c", "--option", "--target-release", "--config-file"})
# What a package-manager RUN may delete besides installing: caches, lists, logs, apt's docker-clean hook, docs.
_CLEAN_PREFIXES = (
    "/var/lib/apt/",
    "/var/cache/",
    "/var/log/",
    "/tmp/",
    "/root/.cache",
    "/etc/apt/apt.conf.d/",
    "/usr/share/doc/",
    "/usr/share/man/",
)


def neutral(seg: Segment) -> bool:
    """A simple command that can sit in a package-manager RUN without reading or changing the project."""
    if seg.prog in ("set", "true", ":", "export"):
        return True
    if seg.prog == "rm":
        targets = [a for a in seg.args if not a.startswith("-")]
        return bool(targets) and all(t.startswith(_CLEAN_PREFIXES) for t in targets)
    return False
