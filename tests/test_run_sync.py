"""After every node the run writes run.json and the phase reports from the state the graph streamed; a report
whose text is what it was is not written again, and the reports at the end are the full rendering."""

from __future__ import annotations

import os
from pathlib import Path

from agent_pipelines.engine.report import render_phase
from agent_pipelines.engine.runs import RunPaths, load_record, run_redactor, start_run
from tests.conftest import make_repo
from tests.fixture_pipelines import whitespace


def test_a_finished_phase_report_is_not_rewritten_and_the_reports_end_complete(tmp_path, reports):
    # The .env value appears in a finding's evidence: the reports mask it.
    repo = make_repo(
        tmp_path / "repo",
        {"a.txt": "token s3cr3tvalue123  \n", "b.txt": "b  \n", ".env": "API_TOKEN=s3cr3tvalue123\n"},
    )
    seen: dict[str, int] = {}  # node -> the scan report's inode when it started (a rewrite is a new file)

    def on_event(kind: str, **data) -> None:
        if kind == "node_start" and data["phase"] == "fix":
            [run_dir] = reports.iterdir()
            seen[data["node"]] = os.stat(run_dir / "1-scan.md").st_ino

    record = start_run(whitespace.PIPELINE, repo, reports, on_event=on_event)

    assert record.status == "completed"
    run_dir = Path(record.run.run_dir)
    assert set(seen) == {"fix.implementer", "fix.reviewer", "fix.ops"}
    assert set(seen.values()) == {os.stat(run_dir / "1-scan.md").st_ino}  # written in the scan phase, then kept
    # Every report is what rendering the final record (as run.json has it) and masking it gives.
    final, _ = load_record(reports, record.run.run_id)
    redactor = run_redactor(final.run, RunPaths(run_dir))
    for index, phase in enumerate(final.phases, start=1):
        text = (run_dir / f"{index}-{phase.phase}.md").read_text(encoding="utf-8")
        assert phase.report_path == f"{index}-{phase.phase}.md"
        assert text == redactor(render_phase(final, phase.phase))
        assert "s3cr3tvalue123" not in text
