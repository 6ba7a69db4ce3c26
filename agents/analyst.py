"""Analyst: reads the checkout and turns it into findings (the pipeline's rules do the work).

In LLM mode the model may add findings the rules don't cover; each must cite
a file and line that exist and, as evidence, that whole line or the whole
instruction starting there, or it is dropped. A finding of a category the
rules already report on that line is a duplicate and dropped; its severity is at most warning;
at most ``MAX_MODEL_FINDINGS`` are kept. The phase report counts each.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path

from agent_pipelines.agents.base import Agent
from agent_pipelines.engine.artifacts import Finding, RunContext, RunState, Severity, Step
from agent_pipelines.engine.gitenv import reading_env
from agent_pipelines.engine.spec import Phase
from agent_pipelines.engine.tools import tools_note

# At most this many model findings per run: each may become a model edit, a call and a commit to review.
MAX_MODEL_FINDINGS = 10
# A model finding is the model's word, with no tool's proof: it can warn, never be an error (every category).
MODEL_SEVERITY_CEILING = Severity.warning


def _whole(lines: list[str], line: int, evidence: str) -> str | None:
    """The evidence if it is the whole cited line, or a whole instruction starting there (continued lines);
    None otherwise (a fragment such as ``O`` proves nothing and can't be re-checked after an edit)."""
    want = " ".join(evidence.split())
    if not (1 <= line <= len(lines)) or not want:
        return None
    joined, taken = "", []
    for text in lines[line - 1 : line + 20]:
        taken.append(text.strip())
        joined = " ".join((joined + " " + text.strip()).split())
        if joined == want or joined.replace("\\ ", "") == want.replace("\\ ", ""):
            return "\n".join(taken)  # as the file has it, so the reviewer can tell whether it still stands
        if not text.rstrip().endswith("\\"):
            break
    return None


def _checkout_is(repo: Path, commit: str) -> bool:
    """Is the checkout at ``repo`` exactly ``commit``: HEAD there, no file modified, untracked or ignored?"""
    env = reading_env()
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, env=env)
    if head.returncode != 0 or head.stdout.strip() != commit:
        return False
    # Whole untracked or ignored directories are one line each (node_modules is not listed file by file):
    # only "is there anything" is asked.
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain=v1", "-z", "--ignored=traditional", "--untracked-files=normal"],
        capture_output=True,
        env=env,
    )
    return status.returncode == 0 and not status.stdout


class Analyst(Agent):
    role = "analyst"
    needs_workspace = True

    def run(self, phase: Phase, state: RunState, run: RunContext) -> Step:
        self.ws.reset_to(state.head_commit)
        findings = self.ctx.domain.analyze(self.ws.tree(), thorough=True)  # the listing the agents share
        notes = []
        if self.ctx.llm is not None:
            extra, note = self.model_findings(phase, findings)
            findings, notes = findings + extra, [note]
        by_sev = Counter(f.severity.value for f in findings)
        summary = f"{len(findings)} findings (" + ", ".join(f"{n} {s}" for s, n in sorted(by_sev.items())) + ")"
        worktree = self.worktree_findings(findings, run, state.head_commit)
        if worktree:
            summary += f"; {len(worktree)} more only in the working tree"
        return Step(state.model_copy(update={"findings": findings, "worktree_findings": worktree}), summary, notes)

    def worktree_findings(self, committed: list[Finding], run: RunContext, commit: str = "") -> list[Finding]:
        """What the user's checkout adds to the committed tree: untracked, ignored and uncommitted files.

        A build sends what is on disk, not what git tracks (a git-ignored `.env`
        copied by `COPY . .`). The fixes edit committed files only, so these are
        reported, not planned: findings of the checkout's analysis that the
        committed tree's analysis doesn't have (by fingerprint). A checkout that
        is exactly ``commit`` (nothing modified, untracked or ignored) adds none:
        one `git status` instead of a walk and an analysis of every file.
        """
        if commit and _checkout_is(Path(run.repo), commit):
            return []
        seen = {f.fingerprint for f in committed}
        found = self.ctx.domain.analyze(Path(run.repo))
        return [replace(f, source="worktree") for f in found if f.fingerprint not in seen]

    def model_findings(self, phase: Phase, findings: list[Finding]) -> tuple[list[Finding], str]:
        from agent_pipelines.engine.llm import ModelFindings

        llm = self.ctx.llm
        assert llm is not None  # asked in LLM mode only
        files = self.ctx.domain.llm_context(self.ws.path)
        tools = self.ctx.domain.llm_tools(self.ws.path, findings)
        answer, why = llm.ask(
            phase.name,
            self.role,
            "findings",
            {"files": files, "findings": findings, "tools": bool(tools)},
            ModelFindings,
            tools=tools,
        )
        used = tools_note(llm.toolbox)
        if answer is None:
            return [], f"model: the analyst's part failed ({why}); the rules' findings stand alone" + (
                f"; {used}" if used else ""
            )
        kept, dropped, duplicates, lowered, seen = [], 0, 0, 0, set()
        for mf in answer.findings:
            lines = files[mf.file].splitlines() if mf.file in files else []
            evidence = _whole(lines, mf.line, mf.evidence)
            if evidence is None:
                dropped += 1
                continue
            if (mf.file, mf.line, mf.category) in seen or any(
                f.file == mf.file and f.line <= mf.line <= max(f.end_line, f.line) and f.category == mf.category
                for f in findings
            ):
                duplicates += 1  # the rules (or an earlier model finding) say this of this line already
                continue
            seen.add((mf.file, mf.line, mf.category))
            severity = mf.severity
            if severity.rank > MODEL_SEVERITY_CEILING.rank:
                severity, lowered = MODEL_SEVERITY_CEILING, lowered + 1
            kept.append(
                Finding.make(
                    rule="LLM001",
                    name="model-finding",
                    category=mf.category,
                    severity=severity,
                    message=mf.message,
                    file=mf.file,
                    line=mf.line,
                    evidence=evidence,
                    source="llm",
                )
            )
        over = kept[MAX_MODEL_FINDINGS:]
        kept = kept[:MAX_MODEL_FINDINGS]
        return kept, (
            f"model: {len(kept)} findings added; {dropped} dropped because the cited text is not a whole "
            f"line or instruction at the cited file and line; {duplicates} dropped as duplicates of the "
            f"rules' findings; {lowered} lowered to {MODEL_SEVERITY_CEILING.value} (a model's word alone "
            f"never makes an error); {len(over)} over the cap of {MAX_MODEL_FINDINGS} "
            f"(MAX_MODEL_FINDINGS in agents/analyst.py) left out" + (f"; {used}" if used else "")
        )
