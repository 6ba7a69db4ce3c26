"""Findings as markdown, JSON or SARIF 2.1.0, for ``pipeline analyze``."""

from __future__ import annotations

import json
from pathlib import Path

from engine.artifacts import Finding

SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def render(findings: list[Finding], fmt: str, root: Path) -> str:
    if fmt == "json":
        return json.dumps({"root": str(root), "count": len(findings),
                           "findings": [f.model_dump(mode="json") for f in findings]}, indent=2) + "\n"
    if fmt == "sarif":
        return json.dumps(sarif(findings), indent=2) + "\n"
    lines = [f"# Findings in {root}", "", f"{len(findings)} findings.", ""]
    lines += [f"- **{f.rule}** ({f.severity.value}, {f.category.value}) `{f.location}`: {f.message}" for f in findings]
    return "\n".join(lines) + "\n"


def sarif(findings: list[Finding]) -> dict:
    rules = {}
    for f in findings:
        rules.setdefault(f.rule, {"id": f.rule, "name": f.name, "shortDescription": {"text": f.name},
                                  "properties": {"category": f.category.value}})
    results = []
    for f in findings:
        region = {"startLine": max(f.line, 1), "endLine": max(f.end_line, f.line, 1)}
        results.append({
            "ruleId": f.rule, "level": SARIF_LEVEL[f.severity.value], "message": {"text": f.message},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": f.file}, "region": region}}],
            "partialFingerprints": {"findingId": f.id},
        })
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "pipeline-analyze", "rules": list(rules.values())}},
                      "results": results}]}
