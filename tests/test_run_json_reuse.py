"""run.json is written after every node; only what changed is encoded again, and the text is the same."""

from __future__ import annotations

import json

from agent_pipelines.engine.runs import _dumps_reusing


def test_the_document_equals_a_fresh_encoding_after_each_change(tmp_path):
    run_json = str(tmp_path / "run.json")
    record = {
        "run": {"run_id": "r1", "cost": 0.5},
        "findings": [{"rule": "DL3008", "line": 3, "msg": 'é "x"\n'}],
        "changes": [],
        "status": "running",
    }
    saves = [
        dict(record),
        {**record, "changes": [{"status": "committed", "files": ["Dockerfile"]}]},
        {**record, "status": True},
        {**record, "status": 1},  # equal to True for Python, not for JSON
        {**record, "status": 1.0},
        {"findings": record["findings"], "run": record["run"]},  # keys gone and reordered
        {},
    ]
    for each in saves:
        assert _dumps_reusing(run_json, each) == json.dumps(each, indent=2, ensure_ascii=False)
