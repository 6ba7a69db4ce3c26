"""run.json is written after every node; only what changed is scrubbed and encoded again, and the text is the
one a full scrub of the whole record gives."""

from __future__ import annotations

import json

from agent_pipelines.engine.artifacts import (
    Category,
    Change,
    ChangeStatus,
    Finding,
    RunContext,
    RunRecord,
    Severity,
)
from agent_pipelines.engine.redact import Redactor
from agent_pipelines.engine.runs import save_record

SECRET = "s3cr3tvalue123"  # a value of the repository's .env: masked wherever it appears


def finding(line: int, evidence: str) -> Finding:
    return Finding(
        id=f"f{line}",
        rule="WS001",
        name="trailing-whitespace",
        category=Category.correctness,
        severity=Severity.warning,
        message="trailing whitespace",
        file="a.txt",
        line=line,
        evidence=evidence,
    )


def test_run_json_after_each_save_is_the_full_scrubbed_dump(tmp_path):
    run_json = tmp_path / "run.json"
    context = RunContext(
        run_id="r1",
        pipeline="text-hygiene",
        repo="/r",
        worktree="/w",
        branch="pipeline/r1",
        base_commit="c0",
        run_dir=str(tmp_path),
        phases=["scan", "fix"],
    )
    record = RunRecord(run=context, findings=[finding(1, f"token {SECRET}  "), finding(2, 'é "x"  ')])
    saving = Redactor({SECRET}, key=b"run key")
    plain = Redactor({SECRET}, key=b"run key")  # the same secrets, used the plain way: scrub all, encode all

    def commit(task: str, *notes: str) -> Change:
        return Change(task_id=task, phase="fix", status=ChangeStatus.committed, commit=task * 8, notes=list(notes))

    steps = [
        lambda: None,
        lambda: setattr(record, "status", "running"),
        lambda: setattr(record, "changes", [commit("a")]),
        # a secret learned from a note (not from .env): masked in every string scrubbed after it
        lambda: setattr(record, "changes", [commit("a"), commit("b", "PASSWORD=hunter2hunter2")]),
        lambda: setattr(record, "findings", [*record.findings, finding(3, "echo hunter2hunter2  ")]),
        lambda: setattr(record, "head_findings", [record.findings[1]]),
        lambda: setattr(record, "changes", [commit("b", "PASSWORD=hunter2hunter2"), commit("a", "kept")]),
        lambda: setattr(record, "findings", []),
        lambda: setattr(record, "head_findings", None),
        lambda: setattr(record, "status", "completed"),
    ]
    for step in steps:
        step()
        save_record(record, run_json, saving)
        full = json.dumps(plain.scrub(json.loads(record.model_dump_json())), indent=2, ensure_ascii=False)
        assert run_json.read_text(encoding="utf-8") == full + "\n"
    assert SECRET not in run_json.read_text() and "hunter2hunter2" not in run_json.read_text()


def test_a_new_redactor_starts_afresh(tmp_path):
    # A resume in the same process opens a new redactor: nothing the first one scrubbed is reused.
    run_json = tmp_path / "run.json"
    context = RunContext(
        run_id="r1", pipeline="p", repo="/r", worktree="/w", branch="b", base_commit="c", run_dir="/d", phases=["p"]
    )
    record = RunRecord(run=context, findings=[finding(1, f"echo {SECRET}")])
    save_record(record, run_json, Redactor(set(), key=b"k"))
    assert SECRET in run_json.read_text()  # that redactor didn't know the value
    save_record(record, run_json, Redactor({SECRET}, key=b"k"))
    assert SECRET not in run_json.read_text()
