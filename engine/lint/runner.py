"""Running a rule pack: every rule on every target of its kind, a rule's crash a note, heavy rules aside.

The pipeline says what a rule's targets are in a project (``Targets``:
``(key, target, file)`` for each: the key names the unit a results cache
stores, the file is where the findings go unless a hit names another). A
rule that raises is a note (``rule-error``): the other rules, and the same
rule's other targets, still run.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agent_pipelines.engine.aside import Aside
from agent_pipelines.engine.finding import Finding
from agent_pipelines.engine.findings_output import Note, NoteKind
from agent_pipelines.engine.lint.rules import Hit, Rule

# (project, rule, memo) -> (key, target, file) for each target the rule runs on; memo is shared by one run.
Targets = Callable[[Any, Rule, dict], Iterable[tuple[str, object, str]]]  # Any: the pipeline's own project


def finding(rule: Rule, hit: Hit, file: str) -> Finding:
    return Finding.make(
        rule=rule.code,
        name=rule.name,
        category=rule.category,
        severity=rule.severity,
        message=hit.message,
        file=hit.file or file,
        line=hit.line,
        end_line=hit.end_line or hit.line,
        evidence=hit.evidence,
        fix=rule.safety,
    )


def run_rule(
    rule: Rule,
    target: object,
    file: str,
    notes: list[Note],
    home: str = "",
    make: Callable[[Rule, Hit, str], Finding] = finding,
) -> list[Finding]:
    """One rule on one target. A crash becomes a note naming the deepest frame under ``home`` (the
    pipeline's source directory), else the deepest frame. ``make`` turns a hit into a finding (``finding``,
    or one that reuses the findings of the same hits, as incremental analysis does)."""
    try:
        return [make(rule, h, file) for h in rule.check(target)]
    except Exception as err:  # a rule's bug must not stop the other rules, nor the other files
        frames = traceback.extract_tb(err.__traceback__)
        frame = next((f for f in reversed(frames) if home and home in f.filename), frames[-1])
        notes.append(
            Note(
                kind="rule-error",
                file=file or "",
                message=f"rule {rule.code} failed on {file or 'the project'}: {type(err).__name__}: {err} "
                f"({Path(frame.filename).name}:{frame.lineno}); its findings there are missing",
            )
        )
        return []


def one_rule(
    project: object, each: Rule, targets: Targets, memo: dict, cache=None, home: str = ""
) -> tuple[list[Finding], list[Note]]:
    """A rule's findings over every target of its kind, and a note for each target it failed on.

    With a results cache (``digests(project, rule, keys)``, ``get(code, key, digest)``, ``put(...)``), a
    target whose inputs are unchanged since the last run takes the stored findings instead of running
    the rule (the same findings, in the same order).
    """
    if cache is None:
        findings: list[Finding] = []
        notes: list[Note] = []
        for _, target, file in targets(project, each, memo):
            findings += run_rule(each, target, file, notes, home)
        return findings, notes
    work = list(targets(project, each, memo))
    digests = cache.digests(project, each, list(dict.fromkeys(key for key, _, _ in work))) or {}
    units: dict[str, tuple[list[Finding], list[Note]]] = {}
    stored: set[str] = set()
    for key, target, file in work:
        if key in stored:
            continue
        if key not in units and key in digests:
            hit = cache.get(each.code, key, digests[key])
            if hit is not None:
                units[key] = hit
                stored.add(key)
                continue
        unit = units.setdefault(key, ([], []))
        unit[0].extend(run_rule(each, target, file, unit[1], home))
    for key, (found, noted) in units.items():
        if key in digests and key not in stored:
            cache.put(each.code, key, digests[key], found, noted)
    return [f for found, _ in units.values() for f in found], [n for _, noted in units.values() for n in noted]


def rule_findings(
    project: object, rules: list[Rule], targets: Targets, notes: list[Note], then=None, cache=None, home: str = ""
) -> list[Finding]:
    """Every rule's findings, in rule order, the same whether or not part of them ran aside.

    The heavy rules run in a forked child (``engine.aside``) while the others run here: two
    cores for two halves of the work. Without a child, all run here. ``then`` is called once
    the child is forked (a thread started before would forbid the fork).
    """
    aside_rules = [i for i, r in enumerate(rules) if r.heavy]
    memo: dict = {}

    def aside():
        wires = [to_wire(*one_rule(project, rules[i], targets, memo, cache, home)) for i in aside_rules]
        return wires, (cache.used if cache is not None else None)  # the child's cache entries come back too

    child = Aside(aside)
    if then is not None:
        then()
    done: dict[int, tuple[list[Finding], list[Note]]] = {}
    with child:
        for i, each in enumerate(rules):
            if not (child.running and i in aside_rules):
                done[i] = one_rule(project, each, targets, memo, cache, home)
        answer = child.result()
    if answer is not None:
        wires, used = answer
        done.update(zip(aside_rules, (from_wire(*part) for part in wires)))
        if cache is not None:
            cache.used.update(used)
    else:
        done.update((i, one_rule(project, rules[i], targets, memo, cache, home)) for i in aside_rules if i not in done)
    findings: list[Finding] = []
    for i in range(len(rules)):
        findings += done[i][0]
        notes += done[i][1]
    return findings


def to_wire(findings: list[Finding], notes: list[Note]) -> tuple[list[dict], list[tuple[NoteKind, str, str]]]:
    """Findings and notes as marshal-able data, to cross the pipe from a child."""
    return [f.to_json() for f in findings], [(n.kind, n.message, n.file) for n in notes]


def from_wire(findings: list[dict], notes: list[tuple[NoteKind, str, str]]) -> tuple[list[Finding], list[Note]]:
    return [Finding(**f) for f in findings], [Note(kind=k, message=m, file=f) for k, m, f in notes]
