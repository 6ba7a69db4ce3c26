"""A rule pack's documentation page, generated from the rules' docstrings.

One section per rule, in code order, grouped by family (the code's letters):
code, name, category, severity, fix safety (and the fix's name and phase
when there is a fix), what it applies to, then the rule's docstring, whose
first line is the summary and whose indented "Example:" and "Use instead:"
blocks become code blocks. Each section has an ``id`` anchor of the
lower-case code (``rules.md#ca001``), which a pack's ``help_uri`` can point
at. The pipeline supplies the text before the table and after the sections.
"""

from __future__ import annotations

import re
from collections import defaultdict

from agent_pipelines.engine.finding import Applicability
from agent_pipelines.engine.lint.rules import Rule, RulePack

FAMILY = re.compile(r"^[A-Z]+")
SECTION = re.compile(r"^(Why|Example|Examples|Use instead|Note|Notes|Fix|Fix safety):\s*(.*)$")


def doc_markdown(doc: str) -> list[str]:
    """The docstring after its summary line: sections as bold labels, indented blocks as code."""
    lines = doc.splitlines()[1:]
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if block:
            while block and not block[-1].strip():
                block.pop()
            out.extend(["```", *block, "```", ""])
            block.clear()

    for raw in lines:
        if raw.startswith("    ") or (block and not raw.strip()):
            block.append(raw[4:])
            continue
        flush()
        match = SECTION.match(raw)
        if match:
            label, rest = match.groups()
            out.append(f"**{label}:** {rest}".rstrip())
            if not rest:
                out.append("")
        else:
            out.append(raw)
    flush()
    while out and not out[-1].strip():
        out.pop()
    while out and not out[0].strip():
        out.pop(0)
    return out


def fix_cell(rule: Rule) -> str:
    if rule.fix is None or rule.safety is Applicability.none:
        return "none"
    return f"{rule.safety.value} (fix `{rule.fix.name}`, phase {rule.phase})"


def section(rule: Rule) -> list[str]:
    return [
        f'<a id="{rule.code.lower()}"></a>',
        "",
        f"### {rule.code}: {rule.name}",
        "",
        f"_{rule.summary}_",
        "",
        "| category | severity | fix | applies to |",
        "| --- | --- | --- | --- |",
        f"| {rule.category.value} | {rule.severity.value} | {fix_cell(rule)} | {rule.target} |",
        "",
        *doc_markdown(rule.doc),
        "",
    ]


def render(pack: RulePack, header: str, footer: list[str]) -> str:
    """The page: ``header``, a table of every rule, a section per rule by family, then ``footer``'s parts."""
    rules = sorted(pack, key=lambda r: r.code)
    families: dict[str, list[Rule]] = defaultdict(list)
    for r in rules:
        match = FAMILY.match(r.code)
        families[match.group(0) if match else r.code].append(r)
    out = [header, "| code | name | category | severity | fix |", "| --- | --- | --- | --- | --- |"]
    out += [
        f"| [{r.code}](#{r.code.lower()}) | {r.name} | {r.category.value} | {r.severity.value} | {r.safety.value} |"
        for r in rules
    ]
    out.append("")
    for family, members in sorted(families.items()):
        out += [f"## {family}", ""]
        for r in members:
            out += section(r)
    out += footer
    return "\n".join(out).rstrip("\n") + "\n"
