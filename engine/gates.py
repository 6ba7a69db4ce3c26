"""Gates that judge what a change did, against its parent.

A reviewer gate must never revert a change for a problem the repository
already had: a COPY source that was missing in some context before the
change, a file that didn't parse before, a schema error that was there.
``delta_gate`` makes that the only way to build a problem-listing gate: it
takes the problems at the change's head and, only when there are any, the
same problems at its parent; it fails on the new ones and records the old
ones as "already present before this change".

Problems are compared as strings, so each must be stated without what an
edit moves (line numbers): "src/app does not exist in the build context ."
rather than "line 12: ...".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from agent_pipelines.engine.artifacts import Finding, Gate, Task

ALREADY = "already present before this change: "


def delta_gate(
    name: str, after: Iterable[str], before: Callable[..., Iterable[str]] | Iterable[str], ok: str = "", shown: int = 5
) -> Gate:
    """A gate over the problems ``after`` the change; ``before`` (called only when needed) gives the parent's.

    ``before`` is called with no arguments (``Callable[...]``: a lambda that binds loop variables as defaults).

    Example: ``delta_gate("COPY sources", ["x missing"], lambda: ["x missing"])``
    passes with ``already="already present before this change: x missing"``.
    """
    after = list(dict.fromkeys(after))
    if not after:
        return Gate(name=name, passed=True, detail=ok)
    old = set(before() if callable(before) else before)
    new = [p for p in after if p not in old]
    kept = [p for p in after if p in old]

    def listed(items: list[str]) -> str:
        more = f"; and {len(items) - shown} more" if len(items) > shown else ""
        return "; ".join(items[:shown]) + more

    return Gate(
        name=name,
        passed=not new,
        detail=listed(new) if new else (ok or "nothing new"),
        already=ALREADY + listed(kept) if kept else "",
    )


def targeted_findings_gone(task: Task, after: list[Finding]) -> Gate:
    """Every finding of the task's rules in the task's file is gone after the change (``after``: its analysis)."""
    left = [f for f in after if f.file == task.file and f.rule in task.rules]
    if left:
        return Gate(
            name="targeted findings gone",
            passed=False,
            detail="still there: " + ", ".join(f"{f.rule} at {f.location}" for f in left),
        )
    return Gate(name="targeted findings gone", passed=True, detail=f"{', '.join(task.rules)} cleared in {task.file}")
