"""Ignoring findings: inline pragmas and the repository's ``.pipeline.yaml``.

Three ways, mirroring hadolint's ``# hadolint ignore=DL3008``:

- In a Dockerfile, ``# pipeline ignore=CA001,LY002`` on a comment line
  directly above an instruction (in the block of comment lines that ends
  right above it) ignores those codes for that instruction.
- In a compose file (or a ``.dockerignore``), the same comment at the end of
  the finding's line (a service's key line, for service findings) or on the
  comment lines directly above it.
- ``.pipeline.yaml`` (or ``[tool.pipeline]`` in ``pyproject.toml``, same keys), found as ruff finds
  its configuration: in the analyzed directory or the nearest directory above it, up to the
  repository root (the directory holding ``.git``). Paths and globs in it are relative to the
  directory of the file that holds them, so analyzing ``services/`` applies the root's
  ``"services/legacy/**"`` as analyzing the root does. When one directory has both,
  ``.pipeline.yaml`` wins and a note says the ``[tool.pipeline]`` table was not read::

      ignored: [CO001]                  # everywhere
      per-file-ignores:
        "services/legacy/**": [CA001]   # glob on the repo-relative path
        "Dockerfile.dev": [SZ]          # no "/": matches the file name at any depth

The same file carries the ``policy:`` the fixes take their numbers and
facts from (``policy.py`` reads it; see ``Policy``)::

      policy:
        services:
          api: {cpus: "0.5", cpus_reservation: "0.25"}   # compose-cpu writes these
        dockerfiles:
          services/api/Dockerfile:
            writable: [/app/data]                   # non-root-user gives its user only these
            probe: ["python", "-c", "import app"]   # --verify-builds runs this in the image
            probe_timeout: 20                       # seconds the probe may take (else the HEALTHCHECK's bound)

A code also matches by prefix (``SZ`` covers every SZ rule, ``DL`` every
hadolint rule). Ignored findings are not dropped silently: ``apply`` returns
them with what ignored them, so ``pipeline analyze`` can count them.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from engine.finding import Finding
from pipelines.docker_optimization import linear

CONFIG_NAMES = (".pipeline.yaml", ".pipeline.yml")
PYPROJECT = "pyproject.toml"
PRAGMA = re.compile(r"#\s*pipeline\s+ignore\s*=\s*([A-Za-z]+[0-9]*(?:\s*,\s*[A-Za-z]+[0-9]*)*)")
CODE = re.compile(r"^[A-Z]+[0-9]*$")


def codes_in(line: str) -> set[str]:
    """Codes named by ``# pipeline ignore=...`` pragmas on one raw line."""
    found: set[str] = set()
    for match in PRAGMA.finditer(line):
        found.update(c.strip().upper() for c in match.group(1).split(","))
    return found


def matches(code: str, patterns: Iterable[str]) -> bool:
    return any(code == p or code.startswith(p) for p in patterns)


def glob_regex(pattern: str) -> re.Pattern[str] | linear.Re2Pattern:
    """A gitignore-like glob: ``**`` spans directories, ``*`` and ``?`` stay in one path segment.

    Matched in time linear in the path (a ``*a*a*a*b`` glob must not backtrack).
    """
    out, i = [], 0
    pattern = pattern.lstrip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            body = body.replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return linear.compile("".join(out) + "(?:/.*)?")


@dataclass
class Policy:
    """``policy:`` in ``.pipeline.yaml``: values a person chose, which fixes use instead of inventing them.

    ``services[name]`` holds ``cpus`` and ``cpus_reservation`` (compose strings, e.g. ``"0.5"``);
    ``dockerfiles[path]`` holds ``writable`` (directories the runtime user writes) and ``probe``
    (a command, as a list, that must succeed in a container of the built image) and ``probe_timeout``
    (seconds it may take).
    """

    services: dict[str, dict[str, str]] = field(default_factory=dict)
    dockerfiles: dict[str, dict[str, object]] = field(default_factory=dict)


SERVICE_KEYS = ("cpus", "cpus_reservation")
DOCKERFILE_KEYS = ("writable", "probe", "probe_timeout")
CPUS = re.compile(r"^\d+(?:\.\d+)?$")


def _policy(data: object, path: str, problems: list[str]) -> Policy:
    """The ``policy:`` section; a wrong entry is a problem (a note) and is left out, never guessed."""
    policy = Policy()
    if data is None:
        return policy
    if not isinstance(data, dict):
        problems.append(f"{path}: policy must be a mapping (services:, dockerfiles:)")
        return policy
    for key in data:
        if key not in ("services", "dockerfiles"):
            problems.append(f"{path}: policy: unknown key {key!r} (known: services, dockerfiles)")
    for kind, known, target in (("services", SERVICE_KEYS, policy.services),
                                ("dockerfiles", DOCKERFILE_KEYS, policy.dockerfiles)):
        entries = data.get(kind) or {}
        if not isinstance(entries, dict):
            problems.append(f"{path}: policy.{kind} must map names to settings")
            continue
        for name, settings in entries.items():
            where = f"{path}: policy.{kind}[{str(name)!r}]"
            if not isinstance(settings, dict):
                problems.append(f"{where} must be a mapping ({', '.join(known)})")
                continue
            kept: dict = {}
            for key, value in settings.items():
                if key not in known:
                    problems.append(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
                elif key in SERVICE_KEYS:
                    if isinstance(value, bool) or not CPUS.match(str(value).strip()) or float(value) <= 0:
                        problems.append(f"{where}: {key} must be a positive number of CPUs, got {value!r}")
                    else:
                        kept[key] = str(value).strip()
                elif key == "writable":
                    dirs = [value] if isinstance(value, str) else value
                    if not isinstance(dirs, list) or not all(isinstance(d, str) and d.startswith("/") for d in dirs):
                        problems.append(f"{where}: writable must be a list of absolute directories, got {value!r}")
                    else:
                        kept[key] = list(dirs)
                elif key == "probe":
                    if not (isinstance(value, list) and value and all(isinstance(w, str) for w in value)):
                        problems.append(f"{where}: probe must be a command as a list of strings, got {value!r}")
                    else:
                        kept[key] = list(value)
                elif key == "probe_timeout":
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                        problems.append(f"{where}: probe_timeout must be a positive number of seconds, got {value!r}")
                    else:
                        kept[key] = value
            target[str(name)] = kept
    return policy


@dataclass
class Config:
    """What ``.pipeline.yaml`` says, plus the problems found reading it (shown as notes)."""

    path: str = ""
    ignored: list[str] = field(default_factory=list)
    prefix: str = ""   # the analyzed directory, relative to the config's directory ("" when they are the same)
    per_file: list[tuple[str, re.Pattern[str], list[str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    policy: "Policy" = field(default_factory=lambda: Policy())

    def ignores(self, finding: Finding) -> bool:
        if matches(finding.rule, self.ignored):
            return True
        name = posixpath.basename(finding.file)
        where = posixpath.join(self.prefix, finding.file) if self.prefix else finding.file
        for glob, regex, codes in self.per_file:
            target = where if "/" in glob.strip("/") else name
            if regex.fullmatch(target) and matches(finding.rule, codes):
                return True
        return False


def _codes(value: object, where: str, problems: list[str]) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        problems.append(f"{where}: expected a list of rule codes, got {type(value).__name__}")
        return []
    out = []
    for item in value:
        code = str(item).strip().upper()
        if CODE.match(code):
            out.append(code)
        else:
            problems.append(f"{where}: {item!r} is not a rule code")
    return out


def load_config(path: str, text: str | None, prefix: str = "") -> Config:
    """Parse ``.pipeline.yaml`` (or ``[tool.pipeline]`` of a ``pyproject.toml``); anything wrong becomes a
    problem (a note), never an exception. ``prefix``: the analyzed directory relative to the file's."""
    config = Config(path=path, prefix=prefix)
    if text is None:
        return config
    if posixpath.basename(path) == PYPROJECT:
        data = _tool_table(path, text, config.problems)
    else:
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        try:
            data = YAML(typ="safe", pure=True).load(text)
        except (YAMLError, ValueError, TypeError) as err:
            config.problems.append(f"{path} is not valid YAML, so it was not applied: {' '.join(str(err).split())}")
            return config
    config = _from_data(config, data)
    if prefix:   # policy paths are the config directory's; the analysis names files from the analyzed one
        inside = prefix.rstrip("/") + "/"
        config.policy.dockerfiles = {k[len(inside):]: v for k, v in config.policy.dockerfiles.items()
                                     if k.startswith(inside)}
    return config


def _tool_table(path: str, text: str, problems: list[str]) -> object:
    """``[tool.pipeline]`` of a pyproject.toml (None without one)."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        problems.append(f"{path} is not valid TOML, so [tool.pipeline] was not applied: {err}")
        return None
    return (data.get("tool") or {}).get("pipeline") if isinstance(data.get("tool"), dict) else None


def has_tool_table(text: str | None) -> bool:
    """Whether a pyproject.toml's text has a ``[tool.pipeline]`` table (cheap check before parsing)."""
    return text is not None and re.search(r"^\s*\[\s*tool\s*\.\s*pipeline\s*[\].]", text, re.MULTILINE) is not None


def _from_data(config: Config, data: object) -> Config:
    path = config.path
    if data is None:
        return config
    if not isinstance(data, dict):
        config.problems.append(f"{path}: the top level must be a mapping, so it was not applied")
        return config
    for key in data:
        if key not in ("ignored", "per-file-ignores", "policy"):
            config.problems.append(f"{path}: unknown key {key!r} (known: ignored, per-file-ignores, policy)")
    config.policy = _policy(data.get("policy"), path, config.problems)
    config.ignored = _codes(data.get("ignored", []), f"{path}: ignored", config.problems)
    per_file = data.get("per-file-ignores") or {}
    if not isinstance(per_file, dict):
        config.problems.append(f"{path}: per-file-ignores must map globs to lists of codes")
        per_file = {}
    for glob, codes in per_file.items():
        config.per_file.append((str(glob), glob_regex(str(glob)),
                                _codes(codes, f"{path}: per-file-ignores[{glob!r}]", config.problems)))
    return config


def find_config(files: Iterable[str], text: Callable[[str], str | None], root: Path | None) -> Config:
    """The configuration that governs an analysis of ``root``: its own ``.pipeline.yaml`` (or
    ``[tool.pipeline]``), else the nearest one above it up to the repository root.

    ``files`` and ``text`` read the analyzed tree (a checkout or a commit); ``root`` is its directory
    on disk, or None for a tree that has none (a commit: only its own files count).
    Example: analyzing ``services/`` of a repository with ``.pipeline.yaml`` at its root reads that
    file, and its ``per-file-ignores`` globs match ``services/...`` paths as from the root.
    """
    files = set(files)
    here = _choose([c for c in CONFIG_NAMES if c in files], PYPROJECT in files and has_tool_table(text(PYPROJECT)))
    if here[0]:
        config = load_config(here[0], text(here[0]))
        config.problems += here[1]
        return config
    top = _repository_root(root) if root is not None else None
    if top is None:   # not in a repository: nothing above the analyzed directory is its configuration
        return Config()
    directory, parts = root, []
    while directory != top and directory.parent != directory:
        parts.insert(0, directory.name)
        directory = directory.parent
        names = [c for c in CONFIG_NAMES if (directory / c).is_file()]
        pyproject = directory / PYPROJECT
        chosen, problems = _choose(names, pyproject.is_file() and has_tool_table(_read(pyproject)))
        if chosen:
            rel = "../" * len(parts) + chosen
            config = load_config(rel, _read(directory / chosen), prefix="/".join(parts))
            config.problems += problems
            return config
    return Config()


def project_root(start: Path) -> Path | None:
    """The directory of the configuration that governs ``start`` when it lies above it (the project's root,
    as ruff's configuration marks one), else None. Analyzing a subdirectory analyzes that project and
    keeps the subdirectory's part: the compose files and contexts above it count, as from the root."""
    top = _repository_root(start)
    if top is None or _holds_config(start):
        return None
    for directory in start.parents:
        if _holds_config(directory):
            return directory
        if directory == top:
            return None
    return None


def _holds_config(directory: Path) -> bool:
    pyproject = directory / PYPROJECT
    return any((directory / c).is_file() for c in CONFIG_NAMES) or (
        pyproject.is_file() and has_tool_table(_read(pyproject)))


def project_config(project) -> Config:
    """``find_config`` for a Project: its tree's files, and its directory when it is a checkout on disk."""
    root = getattr(project.tree, "root", None)
    return find_config(project.files, project.text, Path(root).resolve() if root is not None else None)


def _choose(yamls: list[str], tool_table: bool) -> tuple[str, list[str]]:
    """Which file of one directory holds the configuration, and a warning when two could."""
    if yamls:
        said = [f"{yamls[0]} and {PYPROJECT} [tool.pipeline] are both here: {yamls[0]} is used, "
                f"[tool.pipeline] is not read"] if tool_table else []
        return yamls[0], said
    return (PYPROJECT, []) if tool_table else ("", [])


def _repository_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding ``.git`` (a directory, or a worktree's file)."""
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _comment_block_above(lines: list[str], line: int) -> Iterable[str]:
    """The raw comment lines directly above 1-based ``line``, nearest first."""
    i = line - 2
    while 0 <= i < len(lines) and lines[i].lstrip().startswith("#"):
        yield lines[i]
        i -= 1


def dockerfile_pragmas(lines: list[str], spans: list[tuple[int, int]]) -> dict[int, set[str]]:
    """Line -> codes ignored there, for every line of every instruction with a pragma above it."""
    out: dict[int, set[str]] = {}
    for start, end in spans:
        codes: set[str] = set()
        for raw in _comment_block_above(lines, start):
            codes |= codes_in(raw)
        if codes:
            for n in range(start, max(end, start) + 1):
                out.setdefault(n, set()).update(codes)
    return out


def line_pragmas(lines: list[str], line: int) -> set[str]:
    """Codes ignored at ``line`` of a YAML-like file: a trailing pragma there, or one in the comments above."""
    if not 1 <= line <= len(lines):
        return set()
    codes = codes_in(lines[line - 1])
    for raw in _comment_block_above(lines, line):
        codes |= codes_in(raw)
    return codes


def partition(findings: list[Finding], config: Config, lines_of: Callable[[str], list[str]],
              spans_of: Callable[[str], list[tuple[int, int]] | None],
              ) -> tuple[list[Finding], list[tuple[Finding, str]]]:
    """Split findings into (kept, ignored); each ignored one says what ignored it: "pragma" or "config".

    ``lines_of(path)`` gives a file's raw lines; ``spans_of(path)`` gives a
    Dockerfile's instruction spans (None for files that are not Dockerfiles).
    """
    kept: list[Finding] = []
    ignored: list[tuple[Finding, str]] = []
    tables: dict[str, Callable[[int], set[str]]] = {}
    for f in findings:
        if f.line > 0:
            if f.file not in tables:
                tables[f.file] = _pragma_lookup(lines_of(f.file), spans_of(f.file))
            if matches(f.rule, tables[f.file](f.line)):
                ignored.append((f, "pragma"))
                continue
        if config.ignores(f):
            ignored.append((f, "config"))
            continue
        kept.append(f)
    return kept, ignored


def _pragma_lookup(lines: list[str], spans: list[tuple[int, int]] | None) -> Callable[[int], set[str]]:
    if not any("pipeline" in line for line in lines):
        return lambda line: set()
    if spans is not None:
        table = dockerfile_pragmas(lines, spans)
        return lambda line: table.get(line, set())
    return lambda line: line_pragmas(lines, line)
