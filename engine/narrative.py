"""The model's executive summary, on top of the measured figures: it may not introduce numbers.

The facts leave out commit ids and how each figure was obtained (the
summary prints those itself), so a re-run that reaches the same figures asks
the same question and replays the cached answer. Every number in the model's
text must appear in the facts it was given
(status, phases, figures); a text with any other number is discarded and
the summary says so.
"""

from __future__ import annotations

import re

from agent_pipelines.engine.artifacts import RunRecord
from agent_pipelines.engine.report import fmt_delta, fmt_value

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def facts(record: RunRecord) -> tuple[list[str], list[str]]:
    phases = [
        f"{p.title}: {p.status}, {sum(c.phase == p.phase and c.status.value == 'committed' for c in record.changes)}"
        f" commits kept"
        for p in record.phases
    ]
    figures = [
        f"{m.name} for {m.subject}: {fmt_value(m.baseline, m.unit) + ' -> ' if m.baseline is not None else ''}"
        f"{fmt_value(m.value, m.unit)} {fmt_delta(m)} ({m.method.value})"
        for m in record.measurements
    ]
    return phases, figures


def write_narrative(llm, record: RunRecord) -> tuple[str, str]:
    """(text, note): the text is empty when the model failed or introduced a number."""
    from agent_pipelines.engine.llm import Narrative
    from agent_pipelines.engine.llm_budget import BudgetExhausted

    phases, figures = facts(record)
    try:
        answer, why = llm.ask(
            "summary",
            "reporter",
            "narrative",
            {"status": record.status, "phases": phases, "figures": figures},
            Narrative,
        )
    except BudgetExhausted as err:
        return "", f"no executive summary: {err}"
    if answer is None:
        return "", f"the model's executive summary failed ({why})"
    allowed = set(_NUMBER.findall(" ".join([record.status, *phases, *figures])))
    invented = sorted(set(_NUMBER.findall(answer.text)) - allowed)
    if invented:
        return (
            "",
            f"the model's executive summary was discarded: it introduced numbers not in the figures ({', '.join(invented)})",
        )
    return answer.text.strip(), ""
