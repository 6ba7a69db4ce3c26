"""Ignoring findings: inline pragmas and the repository's ``.pipeline.yaml``.

The pragmas and the matching are the lint kit's (``engine.lint.ignores``);
this module reads ``.pipeline.yaml``: its ignores and the fixes' policy.

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

and the time budget of one hadolint run, in seconds (default 30, see ``hadolint.py``)::

      hadolint-timeout: 120

and the GitHub Action the generated CI workflow analyzes with (this project's ``action.yml``)::

      ci-action: your-org/agent-pipelines@v0.1.0

A code also matches by prefix (``SZ`` covers every SZ rule, ``DL`` every
hadolint rule). Ignored findings are not dropped silently: ``apply`` returns
them with what ignored them, so ``pipeline analyze`` can count them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent_pipelines.engine.lint.ignores import Ignores, glob_regex, partition
from agent_pipelines.engine.lint.ignores import codes as _codes

__all__ = [
    "CONFIG_NAMES",
    "Config",
    "Policy",
    "find_config",
    "load_config",
    "partition",
    "project_config",
    "project_root",
]

CONFIG_NAMES = (".pipeline.yaml", ".pipeline.yml")
PYPROJECT = "pyproject.toml"
ACTION_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_./-]+)?@[A-Za-z0-9_./-]+$")


@dataclass
class Policy:
    """``policy:`` in ``.pipeline.yaml``: values a person chose, which fixes use instead of inventing them.

    ``services[name]`` holds ``cpus`` and ``cpus_reservation`` (compose strings, e.g. ``"0.5"``);
    ``dockerfiles[path]`` holds ``writable`` (directories the runtime user writes) and ``probe``
    (a command, as a list, that must succeed in a container of the built image) and ``probe_timeout``
    (seconds it may take).
    """

    services: dict[str, dict[str, str]] = field(default_factory=dict)
    dockerfiles: dict[str, dict[str, list[str]]] = field(default_factory=dict)


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
    for kind, known, target in (
        ("services", SERVICE_KEYS, policy.services),
        ("dockerfiles", DOCKERFILE_KEYS, policy.dockerfiles),
    ):
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
class Config(Ignores):
    """What ``.pipeline.yaml`` says (the kit's ignores, plus the policy), and the problems found reading it."""

    policy: Policy = field(default_factory=lambda: Policy())
    hadolint_timeout: float | None = None  # seconds one hadolint run may take (None: hadolint.TIMEOUT)
    ci_action: str = ""  # owner/repo@ref of this project's GitHub Action, for the generated workflow


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
    if prefix:  # policy paths are the config directory's; the analysis names files from the analyzed one
        inside = prefix.rstrip("/") + "/"
        config.policy.dockerfiles = {
            k[len(inside) :]: v for k, v in config.policy.dockerfiles.items() if k.startswith(inside)
        }
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
        if key not in ("ignored", "per-file-ignores", "policy", "hadolint-timeout", "ci-action"):
            config.problems.append(
                f"{path}: unknown key {key!r} (known: ignored, per-file-ignores, policy, hadolint-timeout, ci-action)"
            )
    action = data.get("ci-action")
    if action is not None:
        if isinstance(action, str) and ACTION_REF.match(action):
            config.ci_action = action
        else:
            config.problems.append(f"{path}: ci-action must be owner/repo@ref (a GitHub Action), got {action!r}")
    budget = data.get("hadolint-timeout")
    if budget is not None:
        if isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget > 0:
            config.hadolint_timeout = float(budget)
        else:
            config.problems.append(f"{path}: hadolint-timeout must be a positive number of seconds, got {budget!r}")
    config.policy = _policy(data.get("policy"), path, config.problems)
    config.ignored = _codes(data.get("ignored", []), f"{path}: ignored", config.problems)
    per_file = data.get("per-file-ignores") or {}
    if not isinstance(per_file, dict):
        config.problems.append(f"{path}: per-file-ignores must map globs to lists of codes")
        per_file = {}
    for glob, codes in per_file.items():
        config.per_file.append(
            (str(glob), glob_regex(str(glob)), _codes(codes, f"{path}: per-file-ignores[{glob!r}]", config.problems))
        )
    return config


def find_config(files: Iterable[str], text: Callable[[str], str | None], root: Path | None) -> Config:
    """The configuration that governs an analysis of ``root``: its own ``.pipeline.yaml`` (or
    ``[tool.pipeline]``), else the nearest one above it up to the repository root.

    ``files`` and ``text`` read the analyzed tree (a checkout or a commit); ``root`` is its directory
    on disk, or None for a tree that has none (a commit: only its own files count).
    Example: analyzing ``services/`` of a repository with ``.pipeline.yaml`` at its root reads that
    file, and its ``per-file-ignores`` globs match ``services/...`` paths as from the root.
    """
    if not isinstance(files, (set, frozenset, dict)):  # a Project's listing (a dict) answers `in` as it is
        files = set(files)
    here = _choose([c for c in CONFIG_NAMES if c in files], PYPROJECT in files and has_tool_table(text(PYPROJECT)))
    if here[0]:
        config = load_config(here[0], text(here[0]))
        config.problems += here[1]
        return config
    top = _repository_root(root) if root is not None else None
    if root is None or top is None:  # not in a repository: nothing above the analyzed directory is its configuration
        return Config()
    directory: Path = root
    parts: list[str] = []
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
        pyproject.is_file() and has_tool_table(_read(pyproject))
    )


def project_config(project) -> Config:
    """``find_config`` for a Project: its tree's files, and its directory when it is a checkout on disk."""
    root = getattr(project.tree, "root", None)
    return find_config(project.files, project.text, Path(root).resolve() if root is not None else None)


def _choose(yamls: list[str], tool_table: bool) -> tuple[str, list[str]]:
    """Which file of one directory holds the configuration, and a warning when two could."""
    if yamls:
        said = (
            [
                f"{yamls[0]} and {PYPROJECT} [tool.pipeline] are both here: {yamls[0]} is used, "
                f"[tool.pipeline] is not read"
            ]
            if tool_table
            else []
        )
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
