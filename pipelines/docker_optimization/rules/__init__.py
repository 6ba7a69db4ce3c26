"""The rule registry, modelled on ruff: a code, a name, a category, a severity, a small check.

A rule is a plain function decorated with ``@rule``; its docstring is the
user-facing documentation (what it does, why it matters, example, use
instead) and ``docs/rules.md`` is generated from it. A rule that has a fix
names its ``fix_group`` (the fix in ``fixes/`` that clears it), the fix's
applicability, and the phase the fix belongs to.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Iterable, Literal

from engine.finding import Applicability, Category, Severity

# What a check receives: a parsed Dockerfile, a build Context, a compose Service
# (analysis.Service), a whole ComposeFile, or the whole Project (cross-file rules).
Target = Literal["dockerfile", "context", "service", "compose", "project"]

# What a check reads, so that a change re-runs only the checks that read it (``incremental.py``).
# Per target: "dockerfile" (its Dockerfile); "context" (the names of the files under the context's
# directory, the Dockerfiles and ignore files of every context that shares its directory or ignore
# file); "context-sizes" (that and the files' sizes); "compose" (its compose file). Project-wide:
# "dockerfiles", "composes", "dockerignores" (any file of that kind), "contexts" (which contexts
# exist: directories, Dockerfiles, services, ignore file paths), "tree" (anything). Any other word
# is a path pattern (fnmatch; without a "/" it matches the file name at any depth): ".gitignore".
DEFAULT_READS = {"dockerfile": ("dockerfile",), "context": ("context",), "service": ("compose",),
                 "compose": ("compose",), "project": ("tree",)}


@dataclass(frozen=True)
class Hit:
    """What a check returns: where, the evidence text, and a message for this occurrence."""

    line: int
    message: str
    evidence: str = ""
    end_line: int = 0
    file: str = ""   # overrides the target's file (e.g. a .dockerignore that should exist)


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    category: Category
    severity: Severity
    target: Target
    check: Callable[..., Iterable[Hit]]
    fix: Applicability = Applicability.none
    fix_group: str = ""
    phase: str = ""
    heavy: bool = False   # whole-repository work (every context's files): run beside the others when possible
    reads: tuple[str, ...] = ()   # what the check reads (see DEFAULT_READS); () means its target's default

    @property
    def read_set(self) -> tuple[str, ...]:
        return self.reads or DEFAULT_READS[self.target]

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.check.__doc__ or "")

    @property
    def summary(self) -> str:
        return self.doc.splitlines()[0] if self.doc else self.name


REGISTRY: dict[str, Rule] = {}


def rule(code: str, name: str, category: Category, severity: Severity, target: Target,
         fix: Applicability = Applicability.none, fix_group: str = "", phase: str = "", heavy: bool = False,
         reads: tuple[str, ...] = ()):
    def register(check: Callable[..., Iterable[Hit]]):
        if code in REGISTRY:
            raise ValueError(f"duplicate rule code {code}")
        if fix is not Applicability.none and not (fix_group and phase):
            raise ValueError(f"{code}: a fixable rule needs fix_group and phase")
        REGISTRY[code] = Rule(code, name, category, severity, target, check, fix, fix_group, phase, heavy,
                              tuple(reads))
        return check
    return register


def load_all() -> dict[str, Rule]:
    """Import every rule family (registration happens on import)."""
    from pipelines.docker_optimization.rules import (  # noqa: F401
        cache, compose, context, layers, multistage, process, reliability, secrets, security, size,
    )

    return REGISTRY
