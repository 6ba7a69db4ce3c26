"""Run the rule registry over a project and turn hits into findings.

Broken input never stops the analysis: a Dockerfile the parser rejects or a
compose file that isn't valid YAML becomes a finding, and every other file
is still analyzed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.artifacts import Applicability, Category, Finding, Severity
from engine.tree import DirTree, Tree
from pipelines.docker_optimization.project import Project
from pipelines.docker_optimization.rules import REGISTRY, Hit, Rule, load_all


@dataclass(frozen=True)
class Service:
    """A compose service as the service rules see it."""

    compose: str
    name: str
    data: dict
    line: int


def services(project: Project) -> list[Service]:
    return [Service(c.path, name, svc, c.line_of(name))
            for c in project.composes for name, svc in c.services.items() if isinstance(svc, dict)]


def _finding(rule: Rule, hit: Hit, file: str) -> Finding:
    return Finding.make(rule=rule.code, name=rule.name, category=rule.category, severity=rule.severity,
                        message=hit.message, file=hit.file or file, line=hit.line,
                        end_line=hit.end_line or hit.line, evidence=hit.evidence, fix=rule.fix)


def parse_errors(project: Project) -> list[Finding]:
    found = []
    for df in project.dockerfiles.values():
        if df.error:
            found.append(Finding.make(rule="PX001", name="dockerfile-parse-error", category=Category.correctness,
                                      severity=Severity.error, message=f"BuildKit's parser rejects this file: {df.error}",
                                      file=df.path, line=0, evidence=df.error))
    for compose in project.composes:
        if compose.error:
            found.append(Finding.make(rule="PX002", name="compose-parse-error", category=Category.correctness,
                                      severity=Severity.error, message=f"not a valid compose file: {compose.error}",
                                      file=compose.path, line=0, evidence=compose.error))
    return found


def analyze_project(project: Project, select: set[str] | None = None) -> list[Finding]:
    rules = [r for r in load_all().values() if select is None or r.code in select]
    findings = parse_errors(project)
    for rule in rules:
        if rule.target == "dockerfile":
            for df in project.dockerfiles.values():
                if not df.error:
                    findings += [_finding(rule, h, df.path) for h in rule.check(df)]
        elif rule.target == "context":
            seen = set()
            for ctx in project.contexts:
                if ctx.dir in seen:
                    continue
                seen.add(ctx.dir)
                findings += [_finding(rule, h, ctx.dockerfile) for h in rule.check(ctx)]
        elif rule.target == "service":
            for svc in services(project):
                findings += [_finding(rule, h, svc.compose) for h in rule.check(svc)]
        elif rule.target == "compose":
            for compose in project.composes:
                if not compose.error:
                    findings += [_finding(rule, h, compose.path) for h in rule.check(compose)]
        elif rule.target == "project":
            findings += [_finding(rule, h, h.file) for h in rule.check(project)]
    unique = {f.id: f for f in findings}
    return sorted(unique.values(), key=lambda f: (f.file, f.line, f.rule))


def analyze(root: Path | Tree) -> list[Finding]:
    tree = DirTree(root) if isinstance(root, (str, Path)) else root
    return analyze_project(Project(tree))


__all__ = ["analyze", "analyze_project", "services", "REGISTRY", "Applicability"]
