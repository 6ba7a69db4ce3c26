"""What a pipeline brings to the generic agents: its domain skills.

The six agents in ``agents/`` know how to run, commit, review and report;
they know nothing of any domain. A pipeline hands them a
``Domain``: how to analyze a tree, plan and design from findings, apply one
task's fix, add domain-specific review gates, and measure.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a pipeline's fixes raise FixError without loading pydantic
    from engine.artifacts import Change, Design, Finding, Gate, Measurement, Plan, Task
    from engine.tree import DirTree, Tree


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
    def analyze(self, root: Path | Tree, thorough: bool = False) -> list[Finding]:
        """Every finding in the checkout (or tree) at ``root``; ``thorough`` adds slower second opinions.

        The thorough analysis is what the pipeline's linter command reports: the summary counts it."""

    def plan(self, findings: list[Finding], phases: list[str], unsafe: bool, root: Path | None = None) -> Plan:
        """Group fixable findings into tasks, each assigned to one phase."""

    def design(self, root: Path, findings: list[Finding], plan: Plan) -> Design:
        """Policies and notes the implementer and reviewer follow."""

    def apply(self, task: Task, root: Path | DirTree, design: Design) -> list[str]:
        """Write the task's fix in the checkout ``root``; return the paths written. Raise Declined when the fix
        does not apply here (why, and what a person would do), FixError when something went wrong.

        ``root`` is the checkout's directory, or a DirTree of it (``.root``) whose file list the
        workspace keeps current: use it rather than walking the directory again."""

    def review(self, task: Task, change: Change, root: Path | DirTree, base: Tree, design: Design) -> list[Gate]:
        """Domain gates for one committed change (file-type aware), each judged against ``base``, its parent
        (see ``engine.gates``). ``root``: the checkout at the change, as for ``apply``."""

    def measure(self, phase: str, base: Tree, head: Tree, design: Design) -> list[Measurement]:
        """Figures for the phase: each says how it was obtained."""

    def close(self) -> None:
        """Release whatever the domain holds."""
