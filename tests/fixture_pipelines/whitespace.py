"""A tiny second pipeline, installed by no entry point: proof that the engine needs no change.

``text-hygiene`` finds trailing whitespace in ``*.txt`` files and strips it.
A file named ``*.noop.txt`` gets a fix that writes the same bytes back (an
empty change: a failed task); a file named ``*.vendored.txt`` is declined (its fix does not apply: the
file is someone else's); ``BOOM`` in a file makes the analysis raise.
"""

from __future__ import annotations

from pathlib import Path

from engine.artifacts import (
    Applicability, Category, Design, Finding, Measurement, Method, Plan, Severity, Task, short_hash,
)
from engine.domain import Declined
from engine.spec import Option, Phase, PipelineSpec
from engine.tree import DirTree

CLOSED: list[str] = []


class WhitespaceDomain:
    def __init__(self, run) -> None:
        self.run = run

    def close(self) -> None:
        CLOSED.append("domain")

    def analyze(self, root, thorough: bool = False) -> list[Finding]:
        found = []
        tree = DirTree(root) if isinstance(root, (str, Path)) else root   # a checkout, or a commit's tree
        suffix = PIPELINE.option(self.run.options, "suffix") if self.run is not None else ".txt"   # its own flag
        for path in sorted(tree.files()):
            if not path.endswith(suffix):
                continue
            text = tree.read(path).decode()
            if "BOOM" in text:
                raise RuntimeError(f"analysis exploded on {path}")
            for number, line in enumerate(text.splitlines(), start=1):
                if line != line.rstrip():
                    found.append(Finding.make(rule="WS001", name="trailing-whitespace", category=Category.correctness,
                                              severity=Severity.warning, message="trailing whitespace", file=path,
                                              line=number, evidence=line, fix=Applicability.safe))
        return found

    def plan(self, findings, phases, unsafe, root=None) -> Plan:
        files = sorted({f.file for f in findings})
        return Plan(tasks=[Task(id=short_hash("ws", f), phase="fix", title=f"Strip trailing whitespace in {f}",
                                rationale="trailing whitespace", fix="strip", file=f, rules=["WS001"],
                                finding_ids=[x.id for x in findings if x.file == f]) for f in files])

    def design(self, root, findings, plan) -> Design:
        return Design(notes=["strip only"])

    def apply(self, task: Task, root, design: Design) -> list[str]:
        if task.file.endswith(".vendored.txt"):
            raise Declined(f"{task.file} is vendored: a copy of another project's file",
                           "strip the whitespace upstream and vendor the file again")
        path = Path(getattr(root, "root", root)) / task.file   # a directory, or a DirTree of it
        text = path.read_text()
        if not task.file.endswith(".noop.txt"):
            text = "".join(line.rstrip() + "\n" for line in text.splitlines())
        path.write_text(text)
        return [task.file]

    def review(self, task, change, root, base, design):
        return []

    def measure(self, phase, base, head, design):
        return [Measurement(name="txt files", subject="repo", phase=phase, method=Method.computed,
                            value=sum(p.endswith(".txt") for p in head.files()), how="counted in git ls-tree")]


PIPELINE = PipelineSpec(
    name="text-hygiene",
    description="Strip trailing whitespace (a test pipeline)",
    phases=(Phase("scan", "Scan", ("analyst", "planner", "architect")),
            Phase("fix", "Fix", ("implementer", "reviewer", "ops"))),
    domain=WhitespaceDomain,
    options=(Option("suffix", str, ".txt", "Strip the files whose names end so."),),
)
