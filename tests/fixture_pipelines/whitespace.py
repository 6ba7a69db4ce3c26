"""A tiny second pipeline, installed by no entry point: proof that the engine needs no change.

``text-hygiene`` finds trailing whitespace in ``*.txt`` files and strips it.
A file named ``*.noop.txt`` gets a fix that writes the same bytes back (an
empty change: a failed task); a file named ``*.vendored.txt`` is declined (its fix does not apply: the
file is someone else's); ``BOOM`` in a file makes the analysis raise. For the repair loop: a first
attempt at ``*.retry.txt`` strips only its first blank-ended line (the reviewer rejects it) and a
retry, given the verdict, strips them all; attempt k at ``*.stubborn.txt`` strips only its k-th such
line (rejected every time, never the same change twice) and declines when there is none; every
attempt at ``*.partial.txt`` strips only the first (a fix with no other approach).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from agent_pipelines.engine.artifacts import (
    Applicability,
    Category,
    Design,
    Finding,
    Measurement,
    Method,
    Plan,
    Severity,
    Task,
    short_hash,
)
from agent_pipelines.engine.domain import Declined, DomainBase
from agent_pipelines.engine.lint import Fix, Hit, RulePack, rule, runner
from agent_pipelines.engine.spec import Option, Phase, PipelineSpec
from agent_pipelines.engine.tree import DirTree

CLOSED: list[str] = []


@dataclass(frozen=True)
class TextFile:
    path: str
    text: str


STRIP = Fix("strip-whitespace")


@rule(
    "WS001",
    "trailing-whitespace",
    Category.correctness,
    Severity.warning,
    "file",
    fix=STRIP,
    safety=Applicability.safe,
    phase="fix",
)
def trailing_whitespace(file: TextFile) -> Iterable[Hit]:
    """A line ends with spaces or tabs.

    Why: they change diffs and nothing else.

    Example:
        hello<space><space>

    Use instead:
        hello
    """
    for number, line in enumerate(file.text.splitlines(), start=1):
        if line != line.rstrip():
            yield Hit(number, "trailing whitespace", line)


@STRIP.applies(title="Strip trailing whitespace in {file}")
def strip(root: Path, task: Task, design: Design) -> dict[str, str]:
    """Every line of the task's file without its trailing blanks (``*.noop.txt``: the same bytes back)."""
    if task.file.endswith(".vendored.txt"):
        raise Declined(
            f"{task.file} is vendored: a copy of another project's file",
            "strip the whitespace upstream and vendor the file again",
        )
    text = (root / task.file).read_text()
    stubborn = task.file.endswith(".stubborn.txt")
    if stubborn or task.file.endswith(".partial.txt") or task.file.endswith(".retry.txt") and task.previous is None:
        lines = text.splitlines()  # one line: the first of those with trailing blanks, or the k-th (stubborn)
        ended = [i for i, line in enumerate(lines) if line != line.rstrip()]
        k = task.attempt - 1 if stubborn else 0
        if k >= len(ended):
            raise Declined(f"attempt {task.attempt}: no other line to try")
        lines[ended[k]] = lines[ended[k]].rstrip()
        text = "".join(line + "\n" for line in lines)
    elif not task.file.endswith(".noop.txt"):
        text = "".join(line.rstrip() + "\n" for line in text.splitlines())
    return {task.file: text}


def _targets(files: list[TextFile], each, memo: dict):
    return ((f.path, f, f.path) for f in files)


@lru_cache(maxsize=1)
def pack() -> RulePack:
    """The pipeline's rules (this module's), checked against its phases like any pipeline's."""
    return RulePack(
        "text-hygiene", [sys.modules[__name__]], phases=[p.name for p in PIPELINE.phases], targets={"file": ("file",)}
    )


class WhitespaceDomain(DomainBase):
    def __init__(self, run) -> None:
        self.run = run

    def close(self) -> None:
        CLOSED.append("domain")

    def analyze(self, root, thorough: bool = False) -> list[Finding]:
        tree = DirTree(root) if isinstance(root, (str, Path)) else root  # a checkout, or a commit's tree
        suffix = PIPELINE.option(self.run.options, "suffix") if self.run is not None else ".txt"  # its own flag
        files = [TextFile(path, tree.read(path).decode()) for path in sorted(tree.files()) if path.endswith(suffix)]
        for each in files:
            if "BOOM" in each.text:
                raise RuntimeError(f"analysis exploded on {each.path}")
        notes: list = []
        return runner.rule_findings(files, list(pack()), _targets, notes)

    def plan(self, findings, phases, unsafe, root=None) -> Plan:
        rules = pack()
        fixable = [f for f in findings if f.rule in rules and rules[f.rule].fix is not None]
        files = sorted({f.file for f in fixable})
        return Plan(
            tasks=[
                Task(
                    id=short_hash("ws", f),
                    phase=rules["WS001"].phase,
                    title=STRIP.title.format(file=f),
                    rationale="trailing whitespace",
                    fix=STRIP.name,
                    file=f,
                    rules=["WS001"],
                    finding_ids=[x.id for x in fixable if x.file == f],
                )
                for f in files
            ]
        )

    def design(self, root, findings, plan) -> Design:
        return Design(notes=["strip only"])

    def apply(self, task: Task, root, design: Design) -> list[str]:
        fix = pack().fixes()[task.fix]
        written = fix.apply(Path(getattr(root, "root", root)), task, design)  # a directory, or a DirTree of it
        for path, text in written.items():
            (Path(getattr(root, "root", root)) / path).write_text(text)
        return sorted(written)

    def measure(self, phase, base, head, design):
        return [
            Measurement(
                name="txt files",
                subject="repo",
                phase=phase,
                method=Method.computed,
                value=sum(p.endswith(".txt") for p in head.files()),
                how="counted in git ls-tree",
            )
        ]


PIPELINE = PipelineSpec(
    name="text-hygiene",
    description="Strip trailing whitespace (a test pipeline)",
    phases=(
        Phase("scan", "Scan", ("analyst", "planner", "architect")),
        Phase("fix", "Fix", ("implementer", "reviewer", "ops")),
    ),
    domain=WhitespaceDomain,
    options=(Option("suffix", str, ".txt", "Strip the files whose names end so."),),
)
