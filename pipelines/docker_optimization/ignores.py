"""Ignoring findings: inline pragmas and the repository's ``.pipeline.yaml`` (read here).

The pragmas and the matching are the lint kit's (``engine.lint.ignores``);
this module reads ``.pipeline.yaml``: its ignores and the fixes' policy.

Three ways, mirroring hadolint's ``# hadolint ignore=DL3008``:

- In a Dockerfile, ``# pipeline ignore=CA001,LY002`` on a comment line
  directly above an instruction (in the block of comment lines that ends
  right above it) ignores those codes for that instruction.
- In a compose file (or a ``.dockerignore``), the same comment at the end of
  the finding's line (a service's key line, for service findings) or on the
  comment lines directly above it.
- ``.pipeline.yaml`` at the repository root::

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

A code also matches by prefix (``SZ`` covers every SZ rule, ``DL`` every
hadolint rule). Ignored findings are not dropped silently: ``apply`` returns
them with what ignored them, so ``pipeline analyze`` can count them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.lint.ignores import Ignores, glob_regex, partition
from engine.lint.ignores import codes as _codes

__all__ = ["CONFIG_NAMES", "Config", "Policy", "load_config", "partition"]

CONFIG_NAMES = (".pipeline.yaml", ".pipeline.yml")


@dataclass
class Policy:
    """``policy:`` in ``.pipeline.yaml``: values a person chose, which fixes use instead of inventing them.

    ``services[name]`` holds ``cpus`` and ``cpus_reservation`` (compose strings, e.g. ``"0.5"``);
    ``dockerfiles[path]`` holds ``writable`` (directories the runtime user writes) and ``probe``
    (a command, as a list, that must succeed in a container of the built image).
    """

    services: dict[str, dict[str, str]] = field(default_factory=dict)
    dockerfiles: dict[str, dict[str, object]] = field(default_factory=dict)


SERVICE_KEYS = ("cpus", "cpus_reservation")
DOCKERFILE_KEYS = ("writable", "probe")
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
            target[str(name)] = kept
    return policy


@dataclass
class Config(Ignores):
    """What ``.pipeline.yaml`` says (the kit's ignores, plus the policy), and the problems found reading it."""

    policy: "Policy" = field(default_factory=lambda: Policy())


def load_config(path: str, text: str | None) -> Config:
    """Parse ``.pipeline.yaml``; anything wrong becomes a problem (a note), never an exception."""
    config = Config(path=path)
    if text is None:
        return config
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(text)
    except (YAMLError, ValueError, TypeError) as err:
        config.problems.append(f"{path} is not valid YAML, so it was not applied: {' '.join(str(err).split())}")
        return config
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
