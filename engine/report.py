"""Markdown reports: one per phase, and the execution summary.

Every figure printed comes from a Measurement and is printed with its method
(measured, computed, estimate) and how it was obtained; nothing else in a
report is a number about the user's builds.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from engine.artifacts import Change, ChangeStatus, Measurement, RunRecord


def _esc(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list[object]]) -> str:
    if not rows:
        return "_none_\n"
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_esc(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    if unit == "bytes":
        size, suffix = float(value), "B"
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if abs(size) < 1024 or suffix == "GiB":
                break
            size /= 1024
        return f"{size:,.1f} {suffix}" if suffix != "B" else f"{int(value):,} B"
    if unit == "s":
        return f"{value:.2f} s"
    if float(value).is_integer():
        return f"{int(value):,}{(' ' + unit) if unit else ''}"
    return f"{value:,.2f}{(' ' + unit) if unit else ''}"


def fmt_delta(m: Measurement) -> str:
    if m.baseline is None or m.value is None:
        return ""
    if m.baseline == 0:
        return "n/a" if m.value == 0 else "new"
    return f"{(m.value - m.baseline) / m.baseline * 100:+.1f}%"


def figures_table(measurements: list[Measurement]) -> str:
    rows = [[m.name, m.subject, fmt_value(m.baseline, m.unit) if m.baseline is not None else "",
             fmt_value(m.value, m.unit), fmt_delta(m), m.method.value, m.how] for m in measurements]
    return table(["figure", "subject", "before", "after", "change", "method", "how"], rows)


def _phase_index(record: RunRecord, phase: str) -> int:
    return [p.phase for p in record.phases].index(phase) + 1


def render_phase(record: RunRecord, phase: str) -> str:
    report = record.phase(phase)
    run = record.run
    tasks = {t.id: t for t in record.plan.tasks}
    verdicts = {v.task_id: v for v in record.verdicts if v.phase == phase}
    out = [f"# Phase {_phase_index(record, phase)}: {report.title}", "",
           f"Run `{run.run_id}` of `{run.pipeline}` on `{run.repo}`, branch `{run.branch}`.", "",
           f"**Status:** {report.status}", "", "## Nodes that ran", ""]
    out.append(table(["node", "invocation", "started", "took", "result"],
                     [[n.node, n.invocation, n.started.strftime("%H:%M:%S"),
                       f"{(n.finished - n.started).total_seconds():.1f} s" if n.finished else "",
                       n.summary] for n in report.nodes]))
    if phase == record.phases[0].phase:
        out += ["## Findings", ""]
        out.append(table(["rule", "severity", "category", "where", "message", "fix"],
                         [[f.rule, f.severity.value, f.category.value, f.location, f.message, f.fix.value]
                          for f in sorted(record.findings, key=lambda f: (f.file, f.line, f.rule))]))
        out += ["## Plan", ""]
        out.append(table(["task", "phase", "file", "rules", "applicability"],
                         [[t.title, t.phase, t.file, ", ".join(t.rules), t.applicability.value]
                          for t in record.plan.tasks]))
        out += [f"- {s}" for s in record.plan.skipped] + [""]
        if record.design.policies or record.design.notes:
            out += ["## Design", ""]
            out += [f"- **{k}**: {v}" for k, v in record.design.policies.items()]
            out += [f"- {n}" for n in record.design.notes] + [""]
    changes = [c for c in record.changes if c.phase == phase]
    if changes or record.plan.for_phase(phase):
        out += ["## Changes", ""]
        out.append(table(["task", "commit", "files", "+/-", "status", "review"],
                         [[tasks[c.task_id].title if c.task_id in tasks else c.task_id, c.commit[:10],
                           ", ".join(c.files), f"+{c.insertions}/-{c.deletions}", c.status.value,
                           _verdict_text(c, verdicts.get(c.task_id))] for c in changes]))
        for c in changes:
            for note in c.notes:
                out.append(f"- `{c.commit[:10] or c.task_id}`: {note}")
        rejected = [v for v in verdicts.values() if not v.accepted]
        if rejected:
            out += ["", "### Why the reviewer reverted changes", ""]
            for v in rejected:
                out.append(f"- {tasks[v.task_id].title if v.task_id in tasks else v.task_id}: {v.reason}")
        out.append("")
        if verdicts:
            out += ["### Review gates", ""]
            out.append(table(["task", "gate", "passed", "detail"],
                             [[tasks[v.task_id].title if v.task_id in tasks else v.task_id, g.name,
                               "yes" if g.passed else "NO", "; ".join(filter(None, [g.detail, g.already]))]
                              for v in verdicts.values() for g in v.gates]))
            already = sorted({(g.name, g.already) for v in verdicts.values() for g in v.gates if g.already})
            if already:
                out += ["", "### Already broken before this run's changes (reported, not reverted)", ""]
                out += [f"- {name}: {text}" for name, text in already]
                out.append("")
    figures = [m for m in record.measurements if m.phase == phase]
    out += ["## Figures", "", figures_table(figures)]
    out += [f"- {n}" for n in report.notes]
    return "\n".join(out).rstrip() + "\n"


def _verdict_text(change: Change, verdict) -> str:
    if change.status is ChangeStatus.failed:
        return f"not committed: {change.reason}"
    if verdict is None:
        return "not reviewed"
    return "accepted" if verdict.accepted else f"reverted: {verdict.reason}"


def fixed_and_left(record: RunRecord) -> tuple[set[str], list]:
    """Finding ids fixed by accepted changes, and the findings left open."""
    tasks = {t.id: t for t in record.plan.tasks}
    accepted = {v.task_id for v in record.verdicts if v.accepted}
    fixed = {fid for tid in accepted if tid in tasks for fid in tasks[tid].finding_ids}
    return fixed, [f for f in record.findings if f.id not in fixed]


def render_summary(record: RunRecord) -> str:
    run = record.run
    tasks = {t.id: t for t in record.plan.tasks}
    out = [f"# Execution summary: {run.pipeline}", "",
           f"- **Run:** `{run.run_id}` ({record.status})" + (f": {record.error}" if record.error else ""),
           f"- **Repository:** `{run.repo}` at base `{run.base_commit[:10]}`",
           f"- **Branch:** `{run.branch}` at `{record.head_commit[:10]}` (worktree `{run.worktree}`)",
           "- **Invocations:** " + "; ".join(f"{i.number}. {i.kind}{' --phase ' + i.from_phase if i.from_phase else ''}"
                                               f" ran {len(i.nodes)} nodes ({i.outcome})" for i in record.invocations),
           ""]
    if record.narrative:
        out += ["## Executive summary (written by the model; every number in it is checked against the figures)", "",
                record.narrative, ""]
    out += ["## Phases", ""]
    rows = []
    for p in record.phases:
        cs = [c for c in record.changes if c.phase == p.phase]
        count = Counter(c.status.value for c in cs)
        rows.append([p.title, p.status, ", ".join(sorted({n.agent for n in p.nodes})) or "-",
                     count["committed"], count["reverted"], count["failed"], p.report_path or "-"])
    out.append(table(["phase", "status", "agents", "commits kept", "reverted", "failed", "report"], rows))
    out += ["## Changes per scope", ""]
    per_scope: dict[str, list[Change]] = defaultdict(list)
    for c in record.changes:
        per_scope[tasks[c.task_id].scope if c.task_id in tasks else ""].append(c)
    out.append(table(["scope", "change", "commit", "status"],
                     [[scope or "(repo)", tasks[c.task_id].title if c.task_id in tasks else c.task_id,
                       c.commit[:10], c.status.value] for scope in sorted(per_scope) for c in per_scope[scope]]))
    fixed, left = fixed_and_left(record)
    out += ["## Findings", "",
            f"{len(record.findings)} found; {len(fixed)} fixed by accepted changes; {len(left)} left open.", ""]
    by_sev = Counter(f.severity.value for f in left)
    if left:
        out.append("Left open by severity: " + ", ".join(f"{s} {by_sev[s]}" for s in ("error", "warning", "info") if by_sev[s]) + ".")
        out.append("")
        out.append(table(["rule", "severity", "where", "message", "why open"],
                         [[f.rule, f.severity.value, f.location, f.message, _why_open(record, f)]
                          for f in sorted(left, key=lambda f: (-f.severity.rank, f.file, f.line))]))
    out += ["## Figures", ""]
    final = _final_figures(record)
    out.append(figures_table(final) if final else "No figures were computed or measured.\n")
    if record.usage:
        out += ["## Model usage", "", usage_table(record), ""]
    out += ["Methods: *measured* = observed on this machine during the run; *computed* = derived exactly "
            "from the repository's files by the model named in *how*; *estimate* = a model's prediction, "
            "not observed; *not_measured* = could not be obtained, with the reason.", "",
            "## Next steps", "",
            f"- Inspect: `git -C {run.repo} log --stat {run.branch}`",
            f"- Merge into your current branch: `pipeline apply {run.run_id}`",
            f"- Re-run a phase: `pipeline resume {run.run_id} --phase <phase>`"]
    return "\n".join(out).rstrip() + "\n"


def usage_table(record: RunRecord) -> str:
    """Calls, tokens and cost per phase and agent; "unknown" where the server reported no usage."""
    rows: dict[tuple[str, str], list] = {}
    for u in record.usage:
        row = rows.setdefault((u.phase, u.agent), [0, 0, 0, 0, 0.0])
        row[0] += u.calls
        row[1] += u.cached
        row[2] += u.failed
        row[3] = None if row[3] is None or u.tokens is None else row[3] + u.tokens
        row[4] = None if row[4] is None or u.cost is None else row[4] + u.cost
    body = [[phase, agent, calls, cached, failed, "unknown" if tokens is None else f"{tokens:,}",
             "unknown" if cost is None else f"${cost:.4f}"]
            for (phase, agent), (calls, cached, failed, tokens, cost) in rows.items()]
    return table(["phase", "agent", "calls", "replayed from cache", "failed", "tokens", "cost"], body)


def _why_open(record: RunRecord, finding) -> str:
    for task in record.plan.tasks:
        if finding.id in task.finding_ids:
            change = next((c for c in record.changes if c.task_id == task.id), None)
            if change is None:
                return "fix is unsafe: pass --unsafe-fixes" if task.applicability.value == "unsafe" else "phase not run"
            return change.reason or change.status.value
    return "no automatic fix" if finding.fix.value == "none" else "not planned"


def _final_figures(record: RunRecord) -> list[Measurement]:
    """The latest figure of each (name, subject): later phases supersede earlier ones."""
    latest: dict[tuple[str, str], Measurement] = {}
    for m in record.measurements:
        latest[(m.name, m.subject)] = m
    return list(latest.values())
