"""What a pipeline brings to the generic agents: its domain skills.

The six agents in ``agents/`` know how to run, commit, review and report;
they know nothing of any domain. A pipeline hands them a
``Domain``: how to analyze a tree, plan and design from findings, apply one
task's fix, add domain-specific review gates, and measure. ``Domain`` lists
every skill an agent calls; a pipeline subclasses ``DomainBase``, which does
the neutral thing for each optional skill (no model tools, no phase notes, a
full re-analysis instead of an incremental one), and writes the rest.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: a pipeline's fixes raise FixError without loading pydantic
    from agent_pipelines.engine.artifacts import Applicability, Change, Design, Finding, Gate, Measurement, Plan, Task
    from agent_pipelines.engine.tree import DirTree, Tree


class FixError(Exception):
    """A fix could not be applied; the message says why (it becomes the change's reason)."""


class Declined(FixError):
    """The fix does not apply here: nothing broke, the case is one it must not guess at. Not a failure.

    ``why`` says what in the repository stops it (the change's reason); ``action`` says what a
    person would do instead (the change's action; empty: the implementer derives one from the task).
    Example: ``raise Declined("line 12 is a JSON-form RUN", "add --no-install-recommends by hand")``.
    Raise FixError instead when something went wrong (an edit that no longer parses, a tool that crashed).
    """

    def __init__(self, why: str, action: str = "") -> None:
        super().__init__(why)
        self.action = action


class AlreadyResolved(FixError):
    """The task's findings are gone before its fix ran: an earlier change of this run cleared them."""


class Domain(Protocol):
    """Every skill an agent may call. The first three have no neutral answer: a pipeline writes them."""

    # -- analyst ---------------------------------------------------------
    @abstractmethod
    def analyze(self, root: Path | Tree, thorough: bool = False) -> list[Finding]:
        """Every finding in the checkout (or tree) at ``root``; ``thorough`` adds slower second opinions.

        The thorough analysis is what the pipeline's linter command reports: the summary counts it."""

    def analyze_report(self, root: Path, **options: Any) -> Any:
        """What `pipeline analyze` prints (an ``engine.findings_output.AnalysisResult``) when the pipeline
        has no light ``analyze`` entry; ``options``: the typed values of its ``analyze_options``."""

    def incremental_analysis(self, repo: Path, commit: str) -> AbstractContextManager[Any] | None:
        """The analysis of ``commit`` in ``repo``, kept up to date commit by commit: a context manager
        whose ``.to_commit(c).findings`` re-runs only what changed since; None: the reviewer re-analyzes
        the checkout in full after each change."""

    def llm_context(self, root: Path) -> dict[str, str]:
        """The files (path: text) a model reads in LLM mode."""

    def llm_tools(self, root: Path, findings: list[Finding]) -> list[Any]:
        """The read-only tools a model may call on the checkout at ``root`` (``engine.llm_tools.Tool``)."""

    def phase_for(self, path: str) -> str | None:
        """The phase a model edit of ``path`` belongs to (None: no phase; the model does not edit it)."""

    # -- planner ---------------------------------------------------------
    @abstractmethod
    def plan(
        self, findings: list[Finding], phases: list[str], unsafe: bool, root: Path | DirTree | None = None
    ) -> Plan:
        """Group fixable findings into tasks, each assigned to one phase. ``root``: the checkout, as ``apply``
        gets it (its directory, or a DirTree of it whose file list the workspace keeps)."""

    def applicability_of(self, rules: list[str]) -> Applicability:
        """The strictest fix safety of ``rules``: a model edit for them is as safe as their fixes would be."""

    def model_may_edit(self, path: str) -> bool:
        """Whether a model may write ``path`` (a model edit of any other file is refused)."""

    # -- architect -------------------------------------------------------
    def design(self, root: Path | DirTree, findings: list[Finding], plan: Plan) -> Design:
        """Policies and notes the implementer and reviewer follow (``root``: the checkout, as ``apply`` gets it)."""

    # -- implementer -----------------------------------------------------
    @abstractmethod
    def apply(self, task: Task, root: Path | DirTree, design: Design) -> list[str]:
        """Write the task's fix in the checkout ``root``; return the paths written (every one: only they are
        committed). Raise Declined when the fix does not apply here (why, and what a person would do),
        FixError when something went wrong, before writing any file.

        ``root`` is the checkout's directory, or a DirTree of it (``.root``) whose file list the
        workspace keeps current: use it rather than walking the directory again."""

    def edit_risks(self, path: str, before: str | None, after: str) -> list[str]:
        """What a model's edit of ``path`` changes that makes it unsafe (refused without --unsafe-fixes)."""

    # -- reviewer --------------------------------------------------------
    def reviews_commits(self) -> bool:
        """Do ``review`` and ``targeted_gate`` judge a change from its commit alone (``root`` a GitTree of it)?

        True: the reviewer reads each change from git objects and moves the checkout only to redo a change.
        False: ``root`` is the checkout, moved to each change in turn (a gate that builds from disk)."""

    def review_ahead(self, repo: Path, changes: list[Change]) -> None:
        """The committed changes the reviewer is about to judge, in order: a domain may prepare what its
        gates will ask of each (lint their files in one go); nothing it does here may change a verdict."""

    def targeted_gate(
        self,
        task: Task,
        change: Change,
        root: Path | Tree,
        base: Tree,
        after: list[Finding],
        findings: list[Finding],
    ) -> Gate:
        """The gate that the task's ``findings`` are gone; ``after``: the analysis at the change."""

    def review(self, task: Task, change: Change, root: Path | Tree, base: Tree, design: Design) -> list[Gate]:
        """Domain gates for one committed change (file-type aware), each judged against ``base``, its parent
        (see ``engine.gates``). ``root``: the change's tree: the checkout at it, as for ``apply``, or (when
        ``reviews_commits``) a GitTree of its commit."""

    # -- ops -------------------------------------------------------------
    def measure(self, phase: str, base: Tree, head: Tree, design: Design) -> list[Measurement]:
        """Figures for the phase: each says how it was obtained."""

    def phase_notes(self, phase: str, head: Tree) -> list[str]:
        """Notes the phase's report shows (what was built, in which order)."""

    def close(self) -> None:
        """Release whatever the domain holds."""


class DomainBase(Domain):
    """The neutral answer to every optional skill; a pipeline's domain subclasses it and writes
    ``analyze``, ``plan`` and ``apply`` (and whatever else it knows better)."""

    def analyze_report(self, root: Path, **options: Any) -> Any:
        from agent_pipelines.engine.findings_output import AnalysisResult

        return AnalysisResult(findings=self.analyze(root))

    def incremental_analysis(self, repo: Path, commit: str) -> AbstractContextManager[Any] | None:
        return None

    def llm_context(self, root: Path) -> dict[str, str]:
        return {}

    def llm_tools(self, root: Path, findings: list[Finding]) -> list[Any]:
        return []

    def phase_for(self, path: str) -> str | None:
        return None

    def applicability_of(self, rules: list[str]) -> Applicability:
        from agent_pipelines.engine.artifacts import Applicability

        return Applicability.safe

    def model_may_edit(self, path: str) -> bool:
        return False

    def design(self, root: Path | DirTree, findings: list[Finding], plan: Plan) -> Design:
        from agent_pipelines.engine.artifacts import Design

        return Design()

    def edit_risks(self, path: str, before: str | None, after: str) -> list[str]:
        return []

    def reviews_commits(self) -> bool:
        return False

    def review_ahead(self, repo: Path, changes: list[Change]) -> None:
        return None

    def targeted_gate(
        self,
        task: Task,
        change: Change,
        root: Path | Tree,
        base: Tree,
        after: list[Finding],
        findings: list[Finding],
    ) -> Gate:
        from agent_pipelines.engine.gates import targeted_findings_gone

        return targeted_findings_gone(task, after)

    def review(self, task: Task, change: Change, root: Path | Tree, base: Tree, design: Design) -> list[Gate]:
        return []

    def measure(self, phase: str, base: Tree, head: Tree, design: Design) -> list[Measurement]:
        return []

    def phase_notes(self, phase: str, head: Tree) -> list[str]:
        return []

    def close(self) -> None:
        return None
