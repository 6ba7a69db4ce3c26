"""Every figure the summary prints comes from run.json: read the markdown back and check each number."""

from __future__ import annotations

import re

from engine.artifacts import RunRecord
from engine.report import fixed_and_left, fmt_delta, fmt_value
from engine.runs import start_run


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the first table after ``## heading``."""
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def test_every_number_in_the_summary_is_in_run_json(example_repo, reports, docker_pipeline):
    start_run(docker_pipeline, example_repo, reports)
    [run_dir] = [p for p in reports.iterdir() if p.is_dir()]
    record = RunRecord.model_validate_json((run_dir / "run.json").read_text())
    summary = (run_dir / "summary.md").read_text()

    latest = {(m.name, m.subject): m for m in record.measurements}
    figures = table_rows(summary, "Figures")
    assert len(figures) == len(latest) > 0
    for name, subject, before, after, change, method, how in figures:
        m = latest[(name, subject)]
        assert after == fmt_value(m.value, m.unit)
        assert before == (fmt_value(m.baseline, m.unit) if m.baseline is not None else "")
        assert change == fmt_delta(m)
        assert (method, how) == (m.method.value, m.how.replace("|", "\\|"))

    for title, status, _agents, kept, reverted, failed, _report in table_rows(summary, "Phases"):
        phase = next(p for p in record.phases if p.title == title)
        counts = [sum(c.phase == phase.phase and c.status.value == s for c in record.changes)
                  for s in ("committed", "reverted", "failed")]
        assert [int(kept), int(reverted), int(failed)] == counts and status == phase.status

    fixed, left = fixed_and_left(record)
    line = re.search(r"(\d+) found; (\d+) fixed by accepted changes; (\d+) left open\.", summary)
    assert line and tuple(map(int, line.groups())) == (len(record.findings), len(fixed), len(left))
