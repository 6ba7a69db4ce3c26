"""A pipeline declared as data: its phases, the agents each runs, and its domain.

The engine builds the graph from a ``PipelineSpec`` and never imports a
pipeline; pipelines are found through the ``pipeline.pipelines`` entry point
group (or ``PIPELINE_PLUGINS=module:attr,...`` for ones not installed).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_pipelines.engine.artifacts import RunContext
    from agent_pipelines.engine.domain import Domain

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


class OptionError(ValueError):
    """A value an option can't take; the message names the flag and what it accepts."""


@dataclass(frozen=True)
class Option:
    """An option a pipeline declares: the CLI makes a flag of it (``pipeline run`` or ``pipeline analyze``).

    ``name`` is the key in the run's options (``build_repeats``); the flag is ``--build-repeats`` unless
    ``flag`` says otherwise. ``type`` is bool, int, float or str; a bool is a ``--x/--no-x`` switch. A run
    keeps each value as text in run.json (``encode``; a bool as ``"1"``/``"0"``); ``value`` reads it back
    typed. ``default`` None means "not given": the option is left out of the run's options.

    Example: ``Option("repeats", int, 3, "Builds per scenario.", min=1)`` gives ``--repeats N``.
    """

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    min: float | None = None
    metavar: str | None = None
    flag: str = ""

    def __post_init__(self) -> None:
        if self.type not in (bool, int, float, str):
            raise ValueError(f"option {self.name}: type must be bool, int, float or str, not {self.type!r}")

    @property
    def flags(self) -> tuple[str, ...]:
        """The spellings on the command line (a bool's first is ``--x``, its second ``--no-x``)."""
        flag = self.flag or "--" + self.name.replace("_", "-")
        return (flag, "--no-" + flag[2:]) if self.type is bool else (flag,)

    def check(self, value: Any) -> Any:
        """``value`` (typed, or text from the command line) as this option's type, or OptionError."""
        if value is None or self.type is bool and isinstance(value, bool):
            return value
        try:
            typed = self.type(value)
        except (TypeError, ValueError):
            raise OptionError(f"{self.flags[0]} takes {self.type.__name__} values, not {value!r}") from None
        if self.choices and typed not in self.choices:
            raise OptionError(f"{self.flags[0]} must be {' or '.join(self.choices)}, not {typed!r}")
        if self.min is not None and typed < self.min:
            raise OptionError(f"{self.flags[0]} must be at least {self.min:g}, not {typed!r}")
        return typed

    def encode(self, value: Any) -> str | None:
        """The text a run keeps for ``value`` (None: not kept)."""
        if value is None:
            return None
        if self.type is bool:
            return "1" if value else "0"
        return str(self.check(value))

    def value(self, options: Mapping[str, str]) -> Any:
        """This option's typed value in a run's ``options`` (its default when the run has none)."""
        text = options.get(self.name)
        if text is None or text == "":
            return self.default
        if self.type is bool:
            return text == "1"
        return self.check(text)


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    description: str
    phases: tuple[Phase, ...]
    domain: Callable[[RunContext], Domain]
    example: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # `pipeline analyze`'s entry point, (root, options) -> AnalysisResult, when the pipeline offers one
    # apart from its Domain: a linter's start-up must not pay for the fixes, builds and agents' imports.
    # ``root`` is a directory's engine.tree.Tree (its walk may already be under way) or a Path; ``options``
    # holds the typed values of ``analyze_options`` by name.
    analyze: Callable[[Path, dict[str, Any]], object] | None = None
    # The pipeline's own flags of `pipeline run` (kept in the run's options) and of `pipeline analyze`.
    options: tuple[Option, ...] = ()
    analyze_options: tuple[Option, ...] = ()
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
        for declared in (self.options, self.analyze_options):
            names = [o.name for o in declared]
            if len(set(names)) != len(names):
                raise ValueError(f"pipeline {self.name}: duplicate option names {names}")

    def phase(self, name: str) -> Phase:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)

    @property
    def phase_names(self) -> list[str]:
        return [p.name for p in self.phases]

    def option(self, options: Mapping[str, str], name: str) -> Any:
        """The typed value of the run option ``name`` this pipeline declares, from a run's ``options``."""
        for declared in self.options:
            if declared.name == name:
                return declared.value(options)
        raise KeyError(f"pipeline {self.name} declares no option {name!r}")


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
        raise PipelineLookupError(
            f"no pipeline named {name!r}; installed: {', '.join(sorted(pipelines)) or 'none'} "
            "(see `pipeline pipelines`)"
        )
    return pipelines[name]
