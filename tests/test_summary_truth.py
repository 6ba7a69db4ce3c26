"""Every figure the summary prints comes from run.json: read the markdown back and check each number."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from agent_pipelines.engine.artifacts import RunRecord
from agent_pipelines.engine.report import branch_findings, fmt_delta, fmt_value, unchanged
from agent_pipelines.engine.runs import start_run
from bench.monorepo import generate
from tests.conftest import cli, make_repo


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the first table after ``## heading``."""
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


@pytest.mark.slow
def test_every_number_in_the_summary_is_in_run_json(example_repo, reports, docker_pipeline):
    start_run(docker_pipeline, example_repo, reports)
    [run_dir] = [p for p in reports.iterdir() if p.is_dir()]
    record = RunRecord.model_validate_json((run_dir / "run.json").read_text())
    summary = (run_dir / "summary.md").read_text()

    latest = {(m.name, m.subject): m for m in record.measurements}
    figures = table_rows(summary, "Figures")
    section = summary.split("## Figures\n", 1)[1].split("\n## ", 1)[0]
    hows = dict(re.findall(r"^(\d+)\. (.*)$", section, re.MULTILINE))
    assert len(figures) == sum(not unchanged(m) for m in latest.values()) > 0
    for name, subject, before, after, change, method, how in figures:
        m = latest[(name, subject)]
        assert after == fmt_value(m.value, m.unit)
        assert before == (fmt_value(m.baseline, m.unit) if m.baseline is not None else "")
        assert change == fmt_delta(m)
        assert (method, hows[how.strip("[]")]) == (m.method.value, m.how)
    same = [m for m in latest.values() if unchanged(m)]
    assert not same or f"{len(same)} more figures of" in section

    for title, status, _agents, kept, reverted, declined, failed, _report in table_rows(summary, "Phases"):
        phase = next(p for p in record.phases if p.title == title)
        counts = [
            sum(c.phase == phase.phase and c.status.value == s for c in record.changes)
            for s in ("committed", "reverted", "declined", "failed")
        ]
        assert [int(kept), int(reverted), int(declined), int(failed)] == counts
        assert status == phase.status + (f", {counts[2]} declined" if counts[2] else "")

    found = branch_findings(record)
    line = re.search(r"\*\*(\d+) fixed, (\d+) left open, (\d+) new\*\*", summary)
    assert line and tuple(map(int, line.groups())) == (len(found.fixed), len(found.left), len(found.new))
    by_rule = {row[0]: row for row in table_rows(summary, "Findings")}
    assert sum(int(row[2]) for row in by_rule.values()) == len(found.head)
    assert sum(int(row[3]) for row in by_rule.values()) == len(found.fixed)


def analyze_branch_head(repo, branch: str, tmp_path) -> dict:
    """`pipeline analyze --format json` on a fresh clone of the run's branch: what a user would see."""
    head = tmp_path / "head"
    subprocess.run(["git", "clone", "-q", "--branch", branch, str(repo), str(head)], check=True)
    done = cli("analyze", "--repo", str(head), "--format", "json", "--exit-zero", timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_summary_is_the_branch(repo, reports, tmp_path):
    [run_dir] = [p for p in reports.iterdir() if p.is_dir()]
    record = RunRecord.model_validate_json((run_dir / "run.json").read_text())
    summary = (run_dir / "summary.md").read_text()
    document = analyze_branch_head(repo, record.run.branch, tmp_path)
    at_head = document["findings"]
    counted = re.search(r"the analysis finds \*\*(\d+)\*\* \(([^)]*)\)", summary)
    assert counted and int(counted.group(1)) == len(at_head) > 0
    severities = {s: sum(f["severity"] == s for f in at_head) for s in ("error", "warning", "info")}
    assert counted.group(2) == ", ".join(f"{s} {n}" for s, n in severities.items() if n)
    assert sorted(f.id for f in record.head_findings) == sorted(f["id"] for f in at_head)
    assert json.loads((run_dir / "findings-head.json").read_text())["findings"] == at_head
    return record


@pytest.mark.slow
def test_the_summary_counts_what_pipeline_analyze_finds_on_the_branch_head(
    example_repo, reports, docker_pipeline, tmp_path
):
    # The .dockerignore that keeps billing's .env out of its image is unsafe (`COPY . .` copies it: the image
    # changes), so it needs --unsafe-fixes.
    start_run(docker_pipeline, example_repo, reports, options={"unsafe_fixes": "1"})
    record = assert_summary_is_the_branch(example_repo, reports, tmp_path)
    found = branch_findings(record)
    # The example's committed secrets (SE006) are cleared by the .dockerignore fix: fixed, not "left open".
    assert any(f.rule == "SE006" and f.severity.value == "error" for f in found.fixed)
    assert not any(f.rule == "SE006" and f.severity.value == "error" for f in found.left)


@pytest.mark.slow
@pytest.mark.parametrize("scale", [0.01])
def test_the_summary_is_the_branch_on_a_generated_monorepo(tmp_path, reports, docker_pipeline, scale):
    repo = make_repo(Path(generate(tmp_path / "repo", scale, seed=3).root), {}, "generated monorepo")
    start_run(docker_pipeline, repo, reports, options={"builds": "off"})
    assert_summary_is_the_branch(repo, reports, tmp_path)
