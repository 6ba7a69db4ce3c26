"""Markdown reports: one per phase, and the execution summary.

Every figure printed comes from a Measurement and is printed with its method
(measured, computed, estimate) and how it was obtained; nothing else in a
report is a number about the user's builds.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from agent_pipelines.engine.artifacts import Change, ChangeStatus, Finding, Measurement, RunRecord
from agent_pipelines.engine.llm_budget import tool_rounds


def _esc(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: Sequence[Sequence[object]]) -> str:
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
    rows = [
        [
            m.name,
            m.subject,
            fmt_value(m.baseline, m.unit) if m.baseline is not None else "",
            fmt_value(m.value, m.unit),
            fmt_delta(m),
            m.method.value,
            m.how,
        ]
        for m in measurements
    ]
    return table(["figure", "subject", "before", "after", "change", "method", "how"], rows)


def unchanged(m: Measurement) -> bool:
    """A figure the run left as it was (per-context figures of contexts no change touched)."""
    return m.baseline is not None and m.value == m.baseline and m.subject != "repository"


def summary_figures(measurements: list[Measurement]) -> list[str]:
    """The figures that changed (and every repository-wide one), each how said once as a numbered note."""
    shown = [m for m in measurements if not unchanged(m)]
    hows: dict[str, int] = {}
    for m in shown:
        hows.setdefault(m.how, len(hows) + 1)
    rows = [
        [
            m.name,
            m.subject,
            fmt_value(m.baseline, m.unit) if m.baseline is not None else "",
            fmt_value(m.value, m.unit),
            fmt_delta(m),
            m.method.value,
            f"[{hows[m.how]}]",
        ]
        for m in shown
    ]
    out = [table(["figure", "subject", "before", "after", "change", "method", "how"], rows)]
    out += [f"{n}. {how}" for how, n in hows.items()]
    same = len(measurements) - len(shown)
    if same:
        subjects = len({m.subject for m in measurements if unchanged(m)})
        out += [
            "",
            f"{same} more figures of {subjects} subjects no change touched are the same before and after; "
            f"the phase reports list them.",
        ]
    return out + [""]


def _phase_index(record: RunRecord, phase: str) -> int:
    return [p.phase for p in record.phases].index(phase) + 1


def render_phase(record: RunRecord, phase: str) -> str:
    report = record.phase(phase)
    run = record.run
    tasks = {t.id: t for t in record.plan.tasks}
    verdicts = {v.task_id: v for v in record.verdicts if v.phase == phase}
    out = [
        f"# Phase {_phase_index(record, phase)}: {report.title}",
        "",
        f"Run `{run.run_id}` of `{run.pipeline}` on `{run.repo}`, branch `{run.branch}`: {run.base_statement}.",
        "",
        f"**Status:** {record.phase_status(phase)}",
        "",
        "## Nodes that ran",
        "",
    ]
    out.append(
        table(
            ["node", "invocation", "started", "took", "result"],
            [
                [
                    n.node,
                    n.invocation,
                    n.started.strftime("%H:%M:%S"),
                    f"{(n.finished - n.started).total_seconds():.1f} s" if n.finished else "",
                    n.summary,
                ]
                for n in report.nodes
            ],
        )
    )
    if phase == record.phases[0].phase:
        out += ["## Findings", ""]
        out.append(
            table(
                ["rule", "severity", "category", "where", "message", "fix"],
                [
                    [f.rule, f.severity.value, f.category.value, f.location, f.message, f.fix.value]
                    for f in sorted(record.findings, key=lambda f: (f.file, f.line, f.rule))
                ],
            )
        )
        if record.worktree_findings:
            out += [
                "## Only in the working tree (not committed; reported, not fixed)",
                "",
                f"A build sends the files on disk, not what git tracks. The checkout `{record.run.repo}` has "
                f"{len(record.worktree_findings)} findings its committed HEAD does not (untracked, git-ignored "
                f"or uncommitted files). The fixes edit committed files only.",
                "",
            ]
            out.append(
                table(
                    ["rule", "severity", "where", "message"],
                    [
                        [f.rule, f.severity.value, f.location, f.message]
                        for f in sorted(record.worktree_findings, key=lambda f: (-f.severity.rank, f.file, f.line))
                    ],
                )
            )
        out += ["## Plan", ""]
        out.append(
            table(
                ["task", "phase", "file", "rules", "applicability"],
                [[t.title, t.phase, t.file, ", ".join(t.rules), t.applicability.value] for t in record.plan.tasks],
            )
        )
        out += [f"- {s}" for s in record.plan.skipped] + [""]
        unsafe = [t for t in record.plan.tasks if t.applicability.value == "unsafe"]
        if unsafe:  # what each would do and why it may change the result (also its commit message)
            out += ["Unsafe tasks (applied with `--unsafe-fixes`), what they would do and why:", ""]
            out += [f"- {t.title}: {t.rationale}" for t in unsafe] + [""]
        if record.design.policies or record.design.notes:
            out += ["## Design", ""]
            out += [f"- **{k}**: {v}" for k, v in record.design.policies.items()]
            out += [f"- {n}" for n in record.design.notes] + [""]
    changes = [c for c in record.changes if c.phase == phase]
    if changes or record.plan.for_phase(phase):
        out += ["## Changes", ""]
        out.append(
            table(
                ["task", "commit", "files", "+/-", "status", "review"],
                [
                    [
                        tasks[c.task_id].title if c.task_id in tasks else c.task_id,
                        c.commit[:10],
                        ", ".join(c.files),
                        f"+{c.insertions}/-{c.deletions}",
                        c.status.value,
                        _verdict_text(c, verdicts.get(c.task_id)),
                    ]
                    for c in changes
                ],
            )
        )
        for c in changes:
            for note in c.notes:
                out.append(f"- `{c.commit[:10] or c.task_id}`: {note}")
        out += declined_section(record, changes, "###")
        out += repair_section(changes, tasks, "###")
        rejected = [v for v in verdicts.values() if not v.accepted]
        if rejected:
            out += ["", "### Why the reviewer reverted changes", ""]
            for v in rejected:
                out.append(f"- {tasks[v.task_id].title if v.task_id in tasks else v.task_id}: {v.reason}")
        out.append("")
        if verdicts:
            out += ["### Review gates", ""]
            out.append(
                table(
                    ["task", "gate", "passed", "detail"],
                    [
                        [
                            tasks[v.task_id].title if v.task_id in tasks else v.task_id,
                            g.name,
                            "yes" if g.passed else "not verified" if not g.verified else "NO",
                            "; ".join(filter(None, [g.detail, g.already])),
                        ]
                        for v in verdicts.values()
                        for g in v.gates
                    ],
                )
            )
            already = sorted({(g.name, g.already) for v in verdicts.values() for g in v.gates if g.already})
            if already:
                out += ["", "### Already broken before this run's changes (reported, not reverted)", ""]
                out += [f"- {name}: {text}" for name, text in already]
                out.append("")
    figures = [m for m in record.measurements if m.phase == phase]
    out += ["## Figures", "", figures_table(figures)]
    out += [f"- {n}" for n in report.notes]
    return "\n".join(out).rstrip() + "\n"


def repair_counts(changes: list[Change]) -> dict[str, int]:
    """What the reviewer's verdicts came to, per task: kept on the first attempt, kept after a repair, reverted."""
    judged = [c for c in changes if c.status in (ChangeStatus.committed, ChangeStatus.reverted) and c.commit]
    return {
        "first try": sum(c.status is ChangeStatus.committed and c.attempt == 1 for c in judged),
        "after repair": sum(c.status is ChangeStatus.committed and c.attempt > 1 for c in judged),
        "reverted": sum(c.status is ChangeStatus.reverted for c in judged),
    }


def repair_section(changes: list[Change], tasks: dict, level: str = "##") -> list[str]:
    """Each task the reviewer sent back: every attempt, its commit and the verdict on it (empty when none was)."""
    retried = [c for c in changes if c.earlier or any(n.startswith("attempt ") and " not made: " in n for n in c.notes)]
    if not retried:
        return []
    out = ["", f"{level} Repair attempts (a rejected change went back to the implementer with its verdict)", ""]
    for c in retried:
        title = tasks[c.task_id].title if c.task_id in tasks else c.task_id
        steps = [
            f"attempt {a.attempt} `{a.commit[:10]}` {a.status.value}"
            + (f" ({a.reason})" if a.status is ChangeStatus.reverted else "")
            for a in c.attempts
        ]
        steps += [n for n in c.notes if n.startswith("attempt ") and " not made: " in n]
        out.append(f"- {title}: " + "; ".join(steps))
    return out


def declined_section(record: RunRecord, changes: list[Change], level: str = "##") -> list[str]:
    """The declined tasks: why the fix does not apply, and what a person would do instead."""
    declined = [c for c in changes if c.status is ChangeStatus.declined]
    if not declined:
        return []
    tasks = {t.id: t for t in record.plan.tasks}
    out = ["", f"{level} Declined: the fix does not apply here (not a failure)", ""]
    out.append(
        table(
            ["task", "why", "what a person would do"],
            [
                [tasks[c.task_id].title if c.task_id in tasks else c.task_id, c.reason, c.action or "-"]
                for c in declined
            ],
        )
    )
    return out


def _verdict_text(change: Change, verdict) -> str:
    if change.status is ChangeStatus.declined:
        return f"declined: {change.reason}"
    if change.status is ChangeStatus.failed:
        return f"not committed: {change.reason}"
    if verdict is None:
        return "not reviewed"
    if not verdict.accepted:
        return f"reverted: {verdict.reason}"
    return f"accepted, unverified ({'; '.join(verdict.unverified)})" if verdict.unverified else "accepted"


@dataclass
class BranchFindings:
    """The base's findings against the branch head's, matched by fingerprint (as code scanning matches alerts)."""

    head: list[Finding]  # everything the analysis finds at the branch head
    fixed: list[Finding]  # at the base, gone at the head
    left: list[Finding]  # at both (the head's copy: its line is the branch's)
    new: list[Finding]  # at the head only
    model: list[Finding]  # the model's findings (LLM mode): not re-checked by the analysis, so not matched


def branch_findings(record: RunRecord) -> BranchFindings | None:
    """Fixed / left open / new, from the analyses of the base and the branch head; None before ops has run.

    Matching is by ``Finding.fingerprint`` (rule, file, normalized evidence), as a
    multiset: two identical findings at the base and one at the head is one fixed;
    then what is left by rule and file (an edited line keeps its problem).
    """
    if record.head_findings is None:
        return None
    base = [f for f in record.findings if f.source != "llm"]
    pool: dict[str, list[Finding]] = defaultdict(list)
    for f in base:
        pool[f.fingerprint].append(f)
    left: list[Finding] = []
    unmatched: list[Finding] = []
    for f in record.head_findings:
        (left if pool[f.fingerprint] and pool[f.fingerprint].pop() else unmatched).append(f)
    # Second pass: an edited line changes a finding's evidence; the same rule still firing in the
    # same file is the same problem left open, not one fixed and one new.
    rest: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in (f for items in pool.values() for f in items):
        rest[(f.rule, f.file)].append(f)
    new: list[Finding] = []
    for f in unmatched:
        (left if rest[(f.rule, f.file)] and rest[(f.rule, f.file)].pop() else new).append(f)
    fixed = [f for items in rest.values() for f in items]
    return BranchFindings(
        head=list(record.head_findings),
        fixed=fixed,
        left=left,
        new=new,
        model=[f for f in record.findings if f.source == "llm"],
    )


def _severities(items: list[Finding]) -> str:
    count = Counter(f.severity.value for f in items)
    return ", ".join(f"{s} {count[s]}" for s in ("error", "warning", "info") if count[s]) or "none"


def _where(items: list[Finding], shown: int = 3) -> str:
    places = [f.location for f in sorted(items, key=lambda f: (f.file, f.line))]
    return ", ".join(places[:shown]) + (f" and {len(places) - shown} more" if len(places) > shown else "")


def findings_section(record: RunRecord) -> list[str]:
    """The summary's findings: counts that equal `pipeline analyze` on the branch head, grouped by rule."""
    found = branch_findings(record)
    if found is None:
        return [
            f"The branch head was not analyzed (the phases' ops never ran); the base has "
            f"{len(record.findings)} findings ({_severities(record.findings)}).",
            "",
        ]
    out = [
        f"At the branch head `{record.head_commit[:10]}` the analysis finds **{len(found.head)}** "
        f"({_severities(found.head)}), as `pipeline analyze` reports on a checkout of it. Against the base "
        f"`{record.run.base_commit[:10]}` ({len(record.findings) - len(found.model)} findings): "
        f"**{len(found.fixed)} fixed, {len(found.left)} left open, {len(found.new)} new**.",
        "",
        "Both trees are analyzed by the same analysis; a finding at the head is the base's when "
        "its rule, file and evidence match (its fingerprint; line numbers are ignored), or else its rule and file. The full list at the "
        "head is in `findings-head.json` (the format of `pipeline analyze --format json`).",
        "",
    ]
    if found.model:
        out += [
            f"The model added {len(found.model)} findings at the base; the analysis does not re-check them, "
            f"so they are not counted above.",
            "",
        ]
    rules: dict[str, dict[str, list[Finding]]] = defaultdict(lambda: defaultdict(list))
    for kind in ("fixed", "left", "new"):
        for f in getattr(found, kind):
            rules[f.rule][kind].append(f)
    rank = {code: max(f.severity.rank for items in kinds.values() for f in items) for code, kinds in rules.items()}
    reasons = _OpenReasons(record)
    rows = []
    for code in sorted(rules, key=lambda c: (-rank[c], c)):
        kinds = rules[code]
        sample = next(f for items in kinds.values() for f in items)
        open_ = kinds["left"] + kinds["new"]
        why = sorted({reasons(f) for f in kinds["left"]} | ({"new at the head"} if kinds["new"] else set()))
        rows.append(
            [
                code,
                sample.severity.value,
                len(open_),
                len(kinds["fixed"]),
                len(kinds["left"]),
                len(kinds["new"]),
                _where(open_) or "-",
                "; ".join(why)[:200] or "-",
            ]
        )
    out.append(table(["rule", "severity", "at head", "fixed", "left open", "new", "where (at head)", "why open"], rows))
    return out


def render_summary(record: RunRecord) -> str:
    run = record.run
    tasks = {t.id: t for t in record.plan.tasks}
    out = [
        f"# Execution summary: {run.pipeline}",
        "",
        f"- **Run:** `{run.run_id}` ({record.status})" + (f": {record.error}" if record.error else ""),
        f"- **Repository:** `{run.repo}` at base `{run.base_commit[:10]}` ({run.base_statement})",
        f"- **Branch:** `{run.branch}` at `{record.head_commit[:10]}` (worktree `{run.worktree}`)",
        "- **Invocations:** "
        + "; ".join(
            f"{i.number}. {i.kind}{' --phase ' + i.from_phase if i.from_phase else ''}"
            f" ran {len(i.nodes)} nodes ({i.outcome})"
            for i in record.invocations
        ),
        "",
    ]
    if record.narrative:
        out += [
            "## Executive summary (written by the model; every number in it is checked against the figures)",
            "",
            record.narrative,
            "",
        ]
    out += ["## Phases", ""]
    rows = []
    for p in record.phases:
        cs = [c for c in record.changes if c.phase == p.phase]
        count = Counter(c.status.value for c in cs)
        rows.append(
            [
                p.title,
                record.phase_status(p.phase),
                ", ".join(sorted({n.agent for n in p.nodes})) or "-",
                count["committed"],
                count["reverted"],
                count["declined"],
                count["failed"],
                p.report_path or "-",
            ]
        )
    out.append(table(["phase", "status", "agents", "commits kept", "reverted", "declined", "failed", "report"], rows))
    if any(c.earlier for c in record.changes):  # the repair loop made a second attempt somewhere
        counts = repair_counts(record.changes)
        rejected = sum(len(c.earlier) for c in record.changes)
        out += [
            (
                f"**Repair loop** (up to {record.run.max_attempts} attempts a task): kept on the first attempt "
                f"{counts['first try']}, kept after a repair {counts['after repair']}, reverted {counts['reverted']}; "
                f"{rejected} rejected attempts in all (the phase reports list them)."
            ),
            "",
        ]
    if record.failures:
        out += [f"**Failed** (something broke; the phase reports say what): {', '.join(record.failures)}.", ""]
    out += declined_section(record, record.changes)
    out += ["## Changes per scope", ""]
    per_scope: dict[str, list[Change]] = defaultdict(list)
    for c in record.changes:
        per_scope[tasks[c.task_id].scope if c.task_id in tasks else ""].append(c)
    out.append(
        table(
            ["scope", "change", "commit", "status"],
            [
                [
                    scope or "(repo)",
                    tasks[c.task_id].title if c.task_id in tasks else c.task_id,
                    c.commit[:10],
                    c.status.value,
                ]
                for scope in sorted(per_scope)
                for c in per_scope[scope]
            ],
        )
    )
    out += ["## Findings", ""] + findings_section(record)
    if record.worktree_findings:
        wt = record.worktree_findings
        out += [
            f"The working tree of `{run.repo}` has **{len(wt)}** more ({_severities(wt)}) in files git doesn't "
            f"hold at the base (untracked, ignored or uncommitted) that a build would send: "
            + ", ".join(f"{code} {n}" for code, n in sorted(Counter(f.rule for f in wt).items()))
            + ". They are listed in the analysis report; no change of the run touches them.",
            "",
        ]
    out += ["## Figures", ""]
    final = _final_figures(record)
    out += summary_figures(final) if final else ["No figures were computed or measured.\n"]
    if record.usage:
        out += ["## Model usage", "", usage_table(record), ""]
        models: dict[tuple[str, str], int] = {}
        for call in record.llm_calls:  # every request, from the run's call ledger
            models[(call.model, call.endpoint)] = models.get((call.model, call.endpoint), 0) + (
                call.outcome != "cached" and not call.outcome.startswith("gave up")
            )
        if models:
            out += ["Models: " + "; ".join(f"{m} at {e} ({n} requests)" for (m, e), n in models.items()), ""]
        rounds = tool_rounds(record.llm_calls)
        if rounds:  # counted in the requests, tokens and cost above
            out += [
                f"Of these requests, {rounds} were tool rounds: the model read files of the repository "
                "(read-only, redacted, size-capped) before answering.",
                "",
            ]
    out += [
        "Methods: *measured* = observed on this machine during the run; *computed* = derived exactly "
        "from the repository's files by the model named in *how*; *estimate* = a model's prediction, "
        "not observed; *not_measured* = could not be obtained, with the reason.",
        "",
        "## Next steps",
        "",
        f"- Inspect: `git -C {run.repo} log --stat {run.branch}`",
        f"- Merge into your current branch: `pipeline apply {run.run_id}`",
        f"- Re-run a phase: `pipeline resume {run.run_id} --phase <phase>`",
    ]
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
    body = [
        [
            phase,
            agent,
            calls,
            cached,
            failed,
            "unknown" if tokens is None else f"{tokens:,}",
            "unknown" if cost is None else f"${cost:.4f}",
        ]
        for (phase, agent), (calls, cached, failed, tokens, cost) in rows.items()
    ]
    return table(["phase", "agent", "calls", "replayed from cache", "failed", "tokens", "cost"], body)


class _OpenReasons:
    """Why a finding left open at the head is still there: its base twin's task, or that no fix exists.

    The plan and changes are indexed once, not scanned per finding.
    """

    def __init__(self, record: RunRecord) -> None:
        self.twins: dict[str, Finding] = {}
        for f in record.findings:
            self.twins.setdefault(f.fingerprint, f)
        self.task_of = {fid: t for t in record.plan.tasks for fid in t.finding_ids}
        self.change_of: dict[str, Change] = {}
        for c in record.changes:
            self.change_of.setdefault(c.task_id, c)

    def __call__(self, finding) -> str:
        twin = self.twins.get(finding.fingerprint, finding)
        task = self.task_of.get(twin.id)
        if task is None:
            return "no automatic fix" if finding.fix.value == "none" else "not planned"
        change = self.change_of.get(task.id)
        if change is None:
            return "fix is unsafe: pass --unsafe-fixes" if task.applicability.value == "unsafe" else "phase not run"
        return change.reason or change.status.value


def _final_figures(record: RunRecord) -> list[Measurement]:
    """The latest figure of each (name, subject): later phases supersede earlier ones."""
    latest: dict[tuple[str, str], Measurement] = {}
    for m in record.measurements:
        latest[(m.name, m.subject)] = m
    return list(latest.values())
