"""The Docker pipeline's rule pack: rule families, each with the fixes that clear its findings.

A rule is a plain function decorated with ``@rule`` (``engine.lint``); its
docstring is the user-facing documentation (what it does, why it matters,
example, use instead) and ``docs/rules.md`` is generated from it. A rule
that has a fix references the ``Fix`` object (declared in its module) that
clears it, with the fix's safety and the phase it belongs to. ``pack()``
builds the pipeline's ``RulePack`` from the explicit list of modules below,
checked when built (see ``engine.lint.RulePack``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, TypeVar

from agent_pipelines.engine.lint import Fix as _KitFix
from agent_pipelines.engine.lint import Hit, Rule, RulePack, rule

__all__ = ["Fix", "Hit", "Rule", "rule", "pack", "load_all", "per_file", "DEFAULT_READS", "MODULES"]

# The targets, what a check receives: a parsed Dockerfile, a build Context, a compose Service
# (analysis.Service), a whole ComposeFile, or the whole Project (cross-file rules); and for each,
# what a check reads by default, so that a change re-runs only the checks that read it (``incremental.py``).
# Per target: "dockerfile" (its Dockerfile); "context" (the names of the files under the context's
# directory, the Dockerfiles and ignore files of every context that shares its directory or ignore
# file); "context-sizes" (that and the files' sizes); "compose" (its compose file). Project-wide:
# "dockerfiles", "composes", "dockerignores" (any file of that kind), "contexts" (which contexts
# exist: directories, Dockerfiles, services, ignore file paths), "tree" (anything). Any other word
# is a path pattern (fnmatch; without a "/" it matches the file name at any depth): ".gitignore".
DEFAULT_READS = {
    "dockerfile": ("dockerfile",),
    "context": ("context",),
    "service": ("compose",),
    "compose": ("compose",),
    "project": ("tree",),
}


@dataclass(eq=False)
class Fix(_KitFix):
    """A fix of this pipeline: the kit's, plus the compose keys it may change (the review checks them)."""

    compose_keys: tuple[tuple[str, ...], ...] = ()  # key paths a compose fix may change ("*" = any key)


# Every module that declares rules (and their fixes), in the order they run. The pack refuses a
# module that declares none, so one that is emptied or renamed can't silently stop running.
MODULES = (
    "input",
    "cache",
    "security_secrets",
    "context",
    "context_copies",
    "context_git",
    "compose",
    "compose_health",
    "compose_build",
    "layers",
    "layers_runs",
    "layers_chown",
    "process",
    "reliability",
    "reliability_images",
    "security",
    "security_host",
    "size",
    "size_lockfiles",
    "multistage",
)


DOCS = Path(__file__).resolve().parents[3] / "docs" / "rules.md"


def rules_doc_uri(code: str) -> str:
    """Where a rule is documented: docs/rules.md#<code> in this checkout ("" when it isn't there)."""
    return DOCS.as_uri() + f"#{code.lower()}" if DOCS.is_file() else ""


@lru_cache(maxsize=1)
def pack() -> RulePack:
    """The pipeline's rules, checked: codes unique, phases real, every referenced fix implemented."""
    from agent_pipelines.pipelines.docker_optimization import PIPELINE

    modules = [importlib.import_module(f".{name}", __name__) for name in MODULES]
    return RulePack(
        PIPELINE.name, modules, phases=[p.name for p in PIPELINE.phases], targets=DEFAULT_READS, help_uri=rules_doc_uri
    )


def load_all() -> dict[str, Rule]:
    """Every rule of the pack, by code, in run order."""
    return pack().rules


class _KeptPerFile(dict):
    """``per_file``'s answers (path -> (inputs, hits)), kept across added and removed files."""

    def follow(self, old: list[str], new: list[str], added: list[str], removed: list[str]) -> _KeptPerFile:
        return self


class _Parsed(Protocol):
    path: str


_P = TypeVar("_P", bound=_Parsed)


def per_file(
    project,
    name: str,
    files: Iterable[_P],
    hits: Callable[[_P], Iterable[Hit]],
    inputs: Callable[[_P], Sequence[object]] = lambda each: (),
    listing: bool = False,
) -> list[Hit]:
    """``hits(each)`` for each parsed file of a project rule (Dockerfiles, compose files), in order; a file's hits
    are kept across incremental updates (``Project.names_memo``) while its parsed object and the objects
    ``inputs(each)`` names are the same ones, compared by identity (strings by value): ``Project.updated``
    keeps the parsed file, and what it holds, while the file is unchanged.

    Why: a project rule reads every file of a kind, so it runs again after any change to one of them (most
    commits of a run change one Dockerfile), and redoing every file's part made each commit's review cost
    grow with the repository. What it keeps is exact: the same objects, compared by identity, give the same hits.
    With ``listing`` the hits also depend on which files exist (what a context sends): they are forgotten
    when a file is added or removed (``Project.updated`` keeps only the entries that can follow that).
    """
    kept = project.names_memo.get(name) or {}
    fresh: dict = {} if listing else _KeptPerFile()
    found: list[Hit] = []
    for each in files:
        key = (each, *inputs(each))
        was = kept.get(each.path)
        if was is None or len(was[0]) != len(key) or not all(map(_same, was[0], key)):
            was = (key, tuple(hits(each)))
        fresh[each.path] = was
        found += was[1]
    project.names_memo[name] = fresh
    return found


def _same(a: object, b: object) -> bool:
    return a is b or type(a) is str and a == b
