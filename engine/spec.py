"""A pipeline declared as data: its phases, the agents each runs, and its domain.

The engine builds the graph from a ``PipelineSpec`` and never imports a
pipeline; pipelines are found through the ``pipeline.pipelines`` entry point
group (or ``PIPELINE_PLUGINS=module:attr,...`` for ones not installed).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from engine.artifacts import RunContext
    from engine.domain import Domain

ENTRY_POINT_GROUP = "pipeline.pipelines"
ROLES = ("analyst", "planner", "architect", "implementer", "reviewer", "ops")


@dataclass(frozen=True)
class Phase:
    name: str
    title: str
    agents: tuple[str, ...]
    description: str = ""

    def node(self, agent: str) -> str:
        return f"{self.name}.{agent}"


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    description: str
    phases: tuple[Phase, ...]
    domain: Callable[["RunContext"], "Domain"]
    example: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # `pipeline analyze`'s entry point, (root, hadolint) -> AnalysisResult, when the pipeline offers one
    # apart from its Domain: a linter's start-up must not pay for the fixes, builds and agents' imports.
    # ``root`` is a directory's engine.tree.Tree (its walk may already be under way) or a Path.
    analyze: Callable[[Path, bool], object] | None = None
    # Each rule's documentation (markdown) by code, for readers outside the repository (`pipeline mcp`'s
    # explain tool): the engine shows a pipeline's rules without knowing what they are about.
    rule_docs: Callable[[], dict[str, str]] | None = None

    def __post_init__(self) -> None:
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline {self.name}: duplicate phase names {names}")
        for phase in self.phases:
            unknown = set(phase.agents) - set(ROLES)
            if unknown:
                raise ValueError(f"pipeline {self.name}: phase {phase.name} names unknown agents {sorted(unknown)}")

    def phase(self, name: str) -> Phase:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)

    @property
    def phase_names(self) -> list[str]:
        return [p.name for p in self.phases]


def _load(target: str) -> PipelineSpec:
    module, _, attr = target.partition(":")
    spec = getattr(importlib.import_module(module), attr or "PIPELINE")
    if not isinstance(spec, PipelineSpec):
        raise TypeError(f"{target} is not a PipelineSpec")
    return spec


def installed_pipelines() -> dict[str, PipelineSpec]:
    """Every pipeline this environment knows, by name."""
    from importlib.metadata import entry_points  # ~20 ms; only commands that look pipelines up pay it

    found: dict[str, PipelineSpec] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = _load(ep.value)
        found[spec.name] = spec
    for target in filter(None, os.environ.get("PIPELINE_PLUGINS", "").split(",")):
        spec = _load(target.strip())
        found[spec.name] = spec
    return found


class PipelineLookupError(Exception):
    """No pipeline by that name, or the installed ones could not be loaded; the message says which."""


def loaded_pipelines() -> dict[str, PipelineSpec]:
    """``installed_pipelines()``, with a broken plugin reported as a PipelineLookupError."""
    try:
        return installed_pipelines()
    except Exception as error:  # a broken plugin shouldn't hide the others' message
        raise PipelineLookupError(f"could not load the installed pipelines: {error}") from None


def find_pipeline(name: str) -> PipelineSpec:
    """The installed pipeline called ``name`` (PipelineLookupError, saying what is installed, when none is)."""
    pipelines = loaded_pipelines()
    if name not in pipelines:
        raise PipelineLookupError(f"no pipeline named {name!r}; installed: {', '.join(sorted(pipelines)) or 'none'} "
                                  "(see `pipeline pipelines`)")
    return pipelines[name]
