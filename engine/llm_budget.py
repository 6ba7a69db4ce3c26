"""The budget exception and the call ledger, importable without the OpenAI SDK (offline runs never import it).

Every model request (each retry too) and every cached answer replayed is
appended to ``llm-calls.jsonl`` in the run directory the moment it happens,
with its model, endpoint and tokens: a run killed mid-phase loses none of
what it spent, budgets are checked against it before each call, and run.json's
usage and per-call list are computed from it.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent_pipelines.engine.artifacts import LLMCall, Usage


class BudgetExhausted(Exception):
    """The run's token or cost budget is spent; the run stops, resumable with a higher budget."""


LEDGER = "llm-calls.jsonl"
# The outcome of a request the model answered with tool calls (``engine.tools``): a request like any other
# (its tokens and cost count), and the next one sends the tools' results.
TOOL_ROUND = "tool round: "


class Ledger:
    """Append-only JSON lines, one per model request or cached answer, flushed to disk as they happen."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LEDGER

    def add(self, call: LLMCall) -> None:
        line = call.model_dump_json() + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def calls(self) -> list[LLMCall]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(LLMCall.model_validate_json(line))
            except ValueError:
                continue  # a line cut short by a kill: the rest still counts
        return out


def spent(calls: list[LLMCall]) -> tuple[int, float, bool]:
    """(tokens, cost, complete): complete is False when a server reported no usage for some call."""
    tokens = sum((c.prompt_tokens or 0) + (c.completion_tokens or 0) for c in calls)
    cost = sum(c.cost or 0.0 for c in calls)
    complete = all(c.prompt_tokens is not None for c in calls if c.outcome != "cached")
    return tokens, round(cost, 6), complete


def tool_rounds(calls: list[LLMCall]) -> int:
    """Requests the model answered by calling tools (each read a file, listed a directory...) instead of answering."""
    return sum(c.outcome.startswith(TOOL_ROUND) for c in calls)


def usage_by_node(calls: list[LLMCall]) -> list[Usage]:
    """Calls, cached answers, failures, tokens and cost per (phase, agent), in the order first seen."""
    table: dict[tuple[str, str], Usage] = {}
    for c in calls:
        u = table.setdefault((c.phase, c.agent), Usage(phase=c.phase, agent=c.agent))
        if c.outcome == "cached":
            u.cached += 1
            continue
        if c.outcome.startswith("gave up"):
            u.failed += 1
            continue
        u.calls += 1
        if c.prompt_tokens is None or u.prompt_tokens is None:
            u.prompt_tokens = u.completion_tokens = None
        else:
            u.prompt_tokens += c.prompt_tokens
            u.completion_tokens = (u.completion_tokens or 0) + (c.completion_tokens or 0)
        # Cost is unknown once any call's is (no usage reported, or a model without a price).
        u.cost = None if c.cost is None or u.cost is None else round(u.cost + c.cost, 6)
    return list(table.values())
