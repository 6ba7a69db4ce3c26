"""``pipeline analyze`` outputs: the analysis result, and its markdown, JSON and SARIF 2.1.0 forms.

A domain's full analysis (``Domain.analyze_report``) returns an
``AnalysisResult``: the findings, the findings ignored by pragmas or
configuration (each with what ignored it), notes (input that could not be
read, a second-opinion tool that is missing, a rule that failed) and what
each extra tool did. The JSON output is ``AnalyzeDocument``, whose JSON
schema ``python -m engine.findings_output`` prints; the SARIF output follows
the OASIS SARIF 2.1.0 schema (ignored findings are results with
``suppressions``, notes are tool execution notifications).

Everything here is plain dataclasses (no pydantic until ``json_schema()``): importing it stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from agent_pipelines.engine.finding import Applicability, Category, Finding, Severity

SCHEMA_VERSION = 1
TOOL_NAME = "pipeline-analyze"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
_STRICT = {"extra": "forbid"}  # pydantic's config for these dataclasses when it writes the JSON schema


def _described(text: str, **kw):
    """A dataclass field whose description goes into the exported JSON schema."""
    return field(metadata={"description": text}, **kw)


NoteKind = Literal["input", "tool", "config", "rule-error"]
IgnoredBy = Literal["pragma", "config"]
ToolStatus = Literal["ran", "off", "skipped", "unavailable", "failed", "timeout"]


@dataclass(kw_only=True)
class Note:
    """Something the user should know that is not a finding."""

    __pydantic_config__ = _STRICT

    kind: NoteKind = _described(
        "input: a file that could not be read as is; tool: a second-opinion tool; "
        "config: the repository's configuration; rule-error: a rule failed (a bug, please report)"
    )
    message: str
    file: str = ""


@dataclass(kw_only=True)
class IgnoredFinding:
    __pydantic_config__ = _STRICT

    finding: Finding
    by: IgnoredBy = _described("an inline `# pipeline ignore=` pragma, or .pipeline.yaml")


@dataclass(kw_only=True)
class ToolRun:
    """What an extra tool (a second-opinion linter) did in this analysis."""

    __pydantic_config__ = _STRICT

    status: ToolStatus
    findings: int = 0
    duplicates_dropped: int = _described("results dropped because one of our rules says the same", default=0)


@dataclass(kw_only=True)
class RuleMeta:
    """What a rule is, for the findings' readers (SARIF's rule descriptors, the JSON's ``rules``)."""

    __pydantic_config__ = _STRICT

    code: str
    name: str
    summary: str
    doc: str = _described("the rule's documentation (markdown)", default="")
    category: Category
    severity: Severity
    fix: Applicability = Applicability.none
    source: str = "rules"
    help_uri: str = ""


@dataclass(kw_only=True)
class AnalysisResult:
    __pydantic_config__ = _STRICT

    findings: list[Finding] = field(default_factory=list)
    ignored: list[IgnoredFinding] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    tools: dict[str, ToolRun] = field(default_factory=dict)
    columns: dict[str, int] = _described("finding id -> start column, when known", default_factory=dict)
    rules: dict[str, RuleMeta] = _described("the rules of the findings, by code", default_factory=dict)


@dataclass(kw_only=True)
class Summary:
    __pydantic_config__ = _STRICT

    findings: int
    by_severity: dict[str, int]
    by_category: dict[str, int]
    files: int = _described("files with at least one finding")
    ignored: int
    ignored_by_pragma: int
    ignored_by_config: int
    notes: int


@dataclass(kw_only=True)
class AnalyzeDocument:
    """The JSON output of ``pipeline analyze --format json``: complete, never truncated."""

    __pydantic_config__ = _STRICT

    schema_version: int = SCHEMA_VERSION
    tool: str = TOOL_NAME
    root: str
    summary: Summary
    findings: list[Finding]
    ignored: list[IgnoredFinding]
    notes: list[Note]
    tools: dict[str, ToolRun]
    rules: dict[str, RuleMeta] = _described("every rule with a finding (or an ignored one), by code")


def json_schema() -> dict:
    """The JSON output's schema, written by pydantic from the dataclasses (imported only here)."""
    from pydantic import TypeAdapter

    schema = TypeAdapter(AnalyzeDocument).json_schema()
    for cls in (Note, IgnoredFinding, ToolRun, RuleMeta, AnalysisResult, Summary, AnalyzeDocument, Finding):
        target = schema if cls is AnalyzeDocument else schema.get("$defs", {}).get(cls.__name__)
        if target is None:
            continue
        written = cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "(")  # not dataclass's own
        if written and cls is not Finding:
            target["description"] = " ".join((cls.__doc__ or "").split())
        elif not written:
            target.pop("description", None)
        for f in dataclasses.fields(cls):
            if "description" in f.metadata and f.name in target.get("properties", {}):
                target["properties"][f.name]["description"] = f.metadata["description"]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:agent-pipelines:analyze-output:v{SCHEMA_VERSION}"
    return schema


def _json_data(value: object) -> object:
    """Dataclasses, enums, lists and dicts as JSON data, fields in declaration order."""
    if dataclasses.is_dataclass(value):
        return {f.name: _json_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (Severity, Category, Applicability)):
        return value.value
    if isinstance(value, list):
        return [_json_data(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_data(v) for k, v in value.items()}
    return value


def summarize(result: AnalysisResult) -> Summary:
    sev = Counter(f.severity.value for f in result.findings)
    cat = Counter(f.category.value for f in result.findings)
    by = Counter(i.by for i in result.ignored)
    return Summary(
        findings=len(result.findings),
        by_severity={s.value: sev.get(s.value, 0) for s in Severity},
        by_category=dict(sorted(cat.items())),
        files=len({f.file for f in result.findings}),
        ignored=len(result.ignored),
        ignored_by_pragma=by.get("pragma", 0),
        ignored_by_config=by.get("config", 0),
        notes=len(result.notes),
    )


def document(result: AnalysisResult, root: Path) -> AnalyzeDocument:
    return AnalyzeDocument(
        root=str(root),
        summary=summarize(result),
        findings=result.findings,
        ignored=result.ignored,
        notes=result.notes,
        tools=result.tools,
        rules=result.rules,
    )


def render(result: AnalysisResult | list[Finding], fmt: str, root: Path) -> str:
    """``result`` in format ``fmt``: each format is a formatter object of ``engine.lint.formats``."""
    from agent_pipelines.engine.lint.formats import render as render_format

    return render_format(result, fmt, root)


# -- markdown -------------------------------------------------------------------


def markdown(result: AnalysisResult, root: Path) -> str:
    s = summarize(result)
    counts = ", ".join(f"{n} {sev}" for sev, n in reversed(list(s.by_severity.items())) if n) or "none"
    lines = [f"# Findings in {root}", "", f"{s.findings} findings ({counts}) in {s.files} files."]
    if s.ignored:
        lines.append(
            f"{s.ignored} findings ignored by pragmas/config "
            f"({s.ignored_by_pragma} by `# pipeline ignore=` pragmas, "
            f"{s.ignored_by_config} by .pipeline.yaml)."
        )
    for name, run in sorted(result.tools.items()):
        extra = (
            f": {run.findings} findings"
            + (f", {run.duplicates_dropped} duplicates of our rules dropped" if run.duplicates_dropped else "")
            if run.status == "ran"
            else ""
        )
        lines.append(f"{name}: {run.status}{extra}.")
    by_file: dict[str, list[Finding]] = {}
    for f in result.findings:
        by_file.setdefault(f.file, []).append(f)
    for file, items in sorted(by_file.items()):
        sev = Counter(f.severity.value for f in items)
        lines += [
            "",
            f"## {file}",
            "",
            ", ".join(f"{sev[s.value]} {s.value}" for s in reversed(Severity) if sev[s.value]),
            "",
        ]
        for f in sorted(items, key=lambda f: (f.line, f.rule)):
            where = f"line {f.line}" if f.line else "file"
            via = f" ({f.source})" if f.source in result.tools else ""  # found by an extra tool, not our rules
            lines.append(f"- {where}: **{f.rule}** {f.name}{via} — {f.severity.value}, {f.category.value}: {f.message}")
    if result.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {n.kind}: " + (f"`{n.file}`: " if n.file else "") + n.message for n in result.notes]
    return "\n".join(lines) + "\n"


# -- SARIF 2.1.0 ----------------------------------------------------------------


def _uri(path: str) -> str:
    return quote(path, safe="/")


def _rule_descriptor(f: Finding, meta: RuleMeta | None) -> dict:
    meta = meta or RuleMeta(
        code=f.rule, name=f.name, summary=f.name, category=f.category, severity=f.severity, fix=f.fix, source=f.source
    )
    doc = meta.doc or meta.summary
    rule = {
        "id": f.rule,
        "name": meta.name,
        "shortDescription": {"text": meta.summary},
        "fullDescription": {"text": doc},
        "help": {"text": doc, "markdown": doc},
        "defaultConfiguration": {"level": SARIF_LEVEL[meta.severity.value]},
        "properties": {"tags": [meta.category.value], "source": meta.source, "fix": meta.fix.value},
    }
    if meta.help_uri:
        rule["helpUri"] = meta.help_uri
    return rule


def sarif(result: AnalysisResult, root: Path | None = None) -> dict:
    every = [(f, None) for f in result.findings] + [(i.finding, i.by) for i in result.ignored]
    rules: dict[str, dict] = {}
    for f, _ in every:
        if f.rule not in rules:
            rules[f.rule] = _rule_descriptor(f, result.rules.get(f.rule))
    index = {code: i for i, code in enumerate(rules)}
    results = []
    for f, ignored_by in every:
        location: dict = {"artifactLocation": {"uri": _uri(f.file), "uriBaseId": "%SRCROOT%"}}
        if f.line > 0:
            region = {"startLine": f.line, "endLine": max(f.end_line, f.line)}
            column = result.columns.get(f.id, 0)
            if column > 0:
                region["startColumn"] = column
            location["region"] = region
        item = {
            "ruleId": f.rule,
            "ruleIndex": index[f.rule],
            "level": SARIF_LEVEL[f.severity.value],
            "message": {"text": f.message},
            "locations": [{"physicalLocation": location}],
            "partialFingerprints": {"pipelineFindingId/v1": f.id},
            "properties": {
                "category": f.category.value,
                "severity": f.severity.value,
                "source": f.source,
                "fix": f.fix.value,
                **({"evidence": f.evidence} if f.evidence else {}),
            },
        }
        if ignored_by:
            item["suppressions"] = [
                {
                    "kind": "inSource" if ignored_by == "pragma" else "external",
                    "justification": "# pipeline ignore= pragma" if ignored_by == "pragma" else ".pipeline.yaml",
                }
            ]
        results.append(item)
    run: dict = {
        "tool": {"driver": {"name": TOOL_NAME, "version": _version(), "rules": list(rules.values())}},
        "results": results,
        "columnKind": "unicodeCodePoints",
        "invocations": [
            {
                "executionSuccessful": True,
                "toolExecutionNotifications": [
                    {
                        "level": "error" if n.kind == "rule-error" else "note",
                        "message": {"text": n.message},
                        **(
                            {
                                "locations": [
                                    {
                                        "physicalLocation": {
                                            "artifactLocation": {"uri": _uri(n.file), "uriBaseId": "%SRCROOT%"}
                                        }
                                    }
                                ]
                            }
                            if n.file
                            else {}
                        ),
                    }
                    for n in result.notes
                ],
            }
        ],
    }
    if root is not None:
        run["originalUriBaseIds"] = {"%SRCROOT%": {"uri": Path(root).resolve().as_uri().rstrip("/") + "/"}}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agent-pipelines")
    except PackageNotFoundError:
        return "0"


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
