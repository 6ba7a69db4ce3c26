"""Run the rule registry over a project and turn hits into findings.

Broken input never stops the analysis: a Dockerfile the parser rejects, a
compose file that isn't valid YAML, a binary, huge or unreadable file each
becomes a finding (PX001-PX005), a file the tree leaves out (a symlink out
of the repository, a loop, a FIFO) or text that isn't UTF-8 becomes a note,
and every other file is still analyzed. A rule that raises is a note too
(``rule-error``): the other rules still run.

Then, in order: hadolint's results are merged when asked (``hadolint=True``;
duplicates of our findings dropped, see ``hadolint.py``), and findings that
``# pipeline ignore=`` pragmas or ``.pipeline.yaml`` ignore are set aside
(see ``ignores.py``).

``analyze(root, hadolint=False)`` gives the findings; ``run_analysis``
gives everything ``pipeline analyze`` prints (ignored findings, notes,
what hadolint did, the rules' metadata).
"""

from __future__ import annotations

import dataclasses
import operator
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent_pipelines.engine.finding import Finding
from agent_pipelines.engine.findings_output import AnalysisResult, IgnoredFinding, Note, RuleMeta, ToolRun
from agent_pipelines.engine.lint import runner
from agent_pipelines.engine.tree import DirTree, Tree
from agent_pipelines.pipelines.docker_optimization import hadolint as hadolint_mod
from agent_pipelines.pipelines.docker_optimization import ignores
from agent_pipelines.pipelines.docker_optimization.model import variants
from agent_pipelines.pipelines.docker_optimization.model.compose import ComposeFile, is_compose_file
from agent_pipelines.pipelines.docker_optimization.model.project import Project, is_dockerfile
from agent_pipelines.pipelines.docker_optimization.rules import Hit, Rule, load_all, pack

# Files whose absence from the tree (a symlink out of the repo, a FIFO...) deserves its own note.
_NOTABLE = ignores.CONFIG_NAMES + (ignores.PYPROJECT,) + hadolint_mod.CONFIG_NAMES
_MAX_SKIPPED_LISTED = 5
_HOME = str(Path(__file__).resolve().parent)  # a rule's crash is reported at its deepest frame here


@dataclass(frozen=True)
class Service:
    """A compose service as the service rules see it.

    ``data`` is the definition as written in ``compose``. When it only patches
    a service defined in an earlier variant file of the same directory (see
    ``variants``), ``base`` is that definition: rules that look for something
    *missing* judge ``effective``, the two merged as compose merges them.
    """

    compose: str
    name: str
    data: dict
    line: int
    base: dict | None = None
    file: ComposeFile | None = None

    @property
    def effective(self) -> dict:
        return self.data if self.base is None else variants.merge(self.base, self.data)


def services(project: Project) -> list[Service]:
    bases = variants.bases(project.composes)
    found = []
    for c in project.composes:
        directory = c.path.rpartition("/")[0]
        for name, svc in c.services.items():
            if not isinstance(svc, dict):
                continue
            base = bases.get((directory, str(name))) if variants.is_patch(svc) else None
            found.append(Service(c.path, name, svc, c.line_of(name), base[1] if base and base[0] is not c else None, c))
    return found


# -- running the rules -------------------------------------------------------------------------------


def targets(project: Project, each: Rule, memo: dict) -> Iterable[tuple[str, object, str]]:
    """(key, target, file) for every target a rule runs on: a Dockerfile's path, a context's directory
    (the first context of each), a compose file's path (its services, for a service rule), or "" (the project)."""
    if each.target == "dockerfile":
        for df in project.dockerfiles.values():
            if not df.error:
                yield df.path, df, df.path
    elif each.target == "context":
        seen = set()
        for ctx in project.contexts:
            if ctx.dir not in seen:
                seen.add(ctx.dir)
                yield ctx.dir, ctx, ctx.dockerfile
    elif each.target == "service":
        if "services" not in memo:
            memo["services"] = services(project)
        for svc in memo["services"]:
            yield svc.compose, svc, svc.compose
    elif each.target == "compose":
        for compose in project.composes:
            if not compose.error:
                yield compose.path, compose, compose.path
    elif each.target == "project":
        yield "", project, ""


def target_keys(project: Project, kind: str) -> list[str]:
    """The keys ``targets`` yields for a rule of target ``kind``, in order, once each, without making the
    targets (an incremental update asks them of every kind; the compose services are made only when run)."""
    if kind == "dockerfile":
        return [path for path, df in project.dockerfiles.items() if not df.error]
    if kind == "context":
        return list(dict.fromkeys(ctx.dir for ctx in project.contexts))
    if kind == "service":
        return list(
            dict.fromkeys(c.path for c in project.composes if any(isinstance(s, dict) for s in c.services.values()))
        )
    if kind == "compose":
        return list(dict.fromkeys(c.path for c in project.composes if not c.error))
    return [""]


def _run_rule(rule: Rule, target: object, file: str, notes: list[Note], make=runner.finding) -> list[Finding]:
    return runner.run_rule(rule, target, file, notes, _HOME, make)


def _rule_findings(project: Project, rules: list[Rule], notes: list[Note], then=None, cache=None) -> list[Finding]:
    """Every rule's findings, in rule order (``engine.lint.runner``): the heavy rules (every context's size,
    the compose schema: the split that measured best on the bench's trees) run aside."""
    return runner.rule_findings(project, rules, targets, notes, then=then, cache=cache, home=_HOME)


def _input_notes(project: Project) -> list[Note]:
    notes = [Note(kind="input", file=path, message=message) for path, message in project.notes]
    skipped = getattr(project.tree, "skipped", {}) or {}
    notable = {p: why for p, why in skipped.items() if _notable(p)}
    notes += [Note(kind="input", file=p, message=why) for p, why in sorted(notable.items())]
    rest = sorted(p for p in skipped if p not in notable)
    if rest:
        shown = ", ".join(rest[:_MAX_SKIPPED_LISTED]) + (", ..." if len(rest) > _MAX_SKIPPED_LISTED else "")
        notes.append(
            Note(
                kind="input",
                message=f"{len(rest)} other files left out of the analysis (symlinks that "
                f"leave the repository, dangle or loop; FIFOs, sockets): {shown}",
            )
        )
    return notes


def _notable(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return is_dockerfile(path) or is_compose_file(path) or name.endswith(".dockerignore") or path in _NOTABLE


class _HadolintRun(threading.Thread):
    """hadolint in its own process, started before our rules and collected after them.

    The process runs on another core while the rules run here (the thread
    only waits on it), so the analysis with hadolint costs about the slower
    of the two, not their sum.
    """

    def __init__(self, project: Project) -> None:
        super().__init__(name="hadolint")
        self.project = project
        self.parseable = {p: df for p, df in project.dockerfiles.items() if not df.error}
        # Read here, in the caller's thread: a tree of a commit reads blobs through one `git cat-file --batch`,
        # which two threads must not share.
        self.budget = _config(project).hadolint_timeout or hadolint_mod.TIMEOUT
        self.config = next((c for c in hadolint_mod.CONFIG_NAMES if c in project.files), "")
        on_disk = isinstance(project.tree, DirTree)
        self.config_text = project.text(self.config) if self.config and not on_disk else None
        self.run_result: hadolint_mod.Run | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            project, parseable = self.project, self.parseable
            config, budget = self.config, self.budget
            if isinstance(project.tree, DirTree):
                self.run_result = hadolint_mod.run(
                    sorted(parseable), root=project.tree.root, config=config, timeout=budget
                )
            else:
                self.run_result = hadolint_mod.run(
                    sorted(parseable),
                    texts={p: df.text for p, df in parseable.items()},
                    config=config,
                    config_text=self.config_text,
                    timeout=budget,
                )
        except BaseException as err:  # re-raised in the caller's thread by result()
            self.error = err

    def result(self) -> hadolint_mod.Run:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.run_result is not None
        return self.run_result


def _hadolint(pending: _HadolintRun, ours: list[Finding], result: AnalysisResult) -> list[Finding]:
    run, parseable = pending.result(), pending.parseable
    result.notes += [Note(kind="tool", file=f, message=m) for f, m in run.notes]
    found, notes, dropped, columns = hadolint_mod.to_findings(run.results, parseable, ours)
    result.notes += [Note(kind="tool", file=f, message=m) for f, m in notes]
    result.columns.update(columns)
    result.tools["hadolint"] = ToolRun(status=run.status, findings=len(found), duplicates_dropped=dropped)
    px007 = load_all()["PX007"]
    return found + [
        runner.finding(
            px007,
            Hit(0, f"hadolint's rules were not applied to this file: {run.why_unfinished()}", "", file=path),
            path,
        )
        for path in run.unfinished
    ]


def _config(project: Project) -> ignores.Config:
    config = ignores.project_config(project)
    path = config.path
    if not path:
        return config
    known = set(load_all())
    for code in config.ignored + [c for _, _, codes in config.per_file for c in codes]:
        if not (code in known or code.startswith(("DL", "SC")) or any(k.startswith(code) for k in known)):
            config.problems.append(f"{path}: {code} matches no rule")
    return config


def _lines_of(project: Project):
    def lines(path: str) -> list[str]:
        df = project.dockerfiles.get(path)
        if df is not None:
            return df.lines
        compose = next((c for c in project.composes if c.path == path), None)
        text = compose.text if compose is not None else project.text(path)
        return (text or "").splitlines()

    def spans(path: str) -> list[tuple[int, int]] | None:
        df = project.dockerfiles.get(path)
        return None if df is None else [(i.start_line, i.end_line) for i in df.instructions]

    return lines, spans


_RULE_META: dict[str, RuleMeta] = {}  # a registry rule's metadata never changes (its doc is cleaned once)


def _meta(code: str, sample: Finding) -> RuleMeta:
    rule = load_all().get(code)
    if rule is not None and code in _RULE_META:
        return _RULE_META[code]
    if rule is not None:
        _RULE_META[code] = RuleMeta(
            code=code,
            name=rule.name,
            summary=rule.summary,
            doc=rule.doc,
            category=rule.category,
            severity=rule.severity,
            fix=rule.safety,
            help_uri=pack().help_uri(code),
        )
        return _RULE_META[code]
    return RuleMeta(
        code=code,
        name=sample.name,
        summary=sample.message if sample.source == "hadolint" else sample.name,
        category=sample.category,
        severity=sample.severity,
        source=sample.source,
        help_uri=hadolint_mod.help_uri(code) if sample.source == "hadolint" else "",
    )


def examine(project: Project, hadolint: bool = False, select: set[str] | None = None, cache=None) -> AnalysisResult:
    """Everything the analysis has to say about a loaded project (``cache``: see ``results_cache``)."""
    rules = [r for r in load_all().values() if select is None or r.code in select]
    result = AnalysisResult()
    notes: list[Note] = []
    pending = _HadolintRun(project) if hadolint else None
    try:
        findings = _rule_findings(
            project,
            rules,
            notes,
            then=pending.start if pending is not None else None,
            **({"cache": cache} if cache is not None else {}),
        )
        if pending is not None:
            findings += _hadolint(pending, findings, result)
    except BaseException:
        if pending is not None:
            hadolint_mod.stop_all()  # an interrupt (or a rule's crash) must not wait minutes for the linter
        raise
    finally:
        if pending is not None and pending.ident is not None:
            pending.join()  # never leave the process behind, whatever the rules did
    if pending is None:
        result.tools["hadolint"] = ToolRun(status="off")
    return finish(project, findings, notes, result)


def with_hadolint(project: Project, findings: list[Finding], notes: list[Note]) -> AnalysisResult:
    """``examine(project, hadolint=True)`` for the rules' findings and notes already made (in rule order, before
    ``finish``), as an incremental analysis keeps them: hadolint's are added, then the same ``finish``."""
    result = AnalysisResult()
    pending = _HadolintRun(project)
    pending.start()
    try:
        findings = findings + _hadolint(pending, findings, result)
    except BaseException:
        hadolint_mod.stop_all()
        raise
    finally:
        pending.join()
    return finish(project, findings, list(notes), result)


ORDER = operator.attrgetter("file", "line", "rule")  # findings' order: (file, line, rule), the key made in C


def finish(
    project: Project, findings: list[Finding], notes: list[Note], result: AnalysisResult, partition=None
) -> AnalysisResult:
    """The rules' findings (in rule order) made a result: duplicates dropped, sorted, ignores applied, notes.
    ``partition`` stands in for ``ignores.partition`` (incremental analysis keeps the verdicts it can)."""
    unique = sorted({f.id: f for f in findings}.values(), key=ORDER)
    config = _config(project)
    lines, spans = _lines_of(project)
    kept, ignored = (partition or ignores.partition)(unique, config, lines, spans)
    result.findings = variants.collapse(kept)  # after the pragmas: an ignore in one variant file keeps the others
    result.ignored = [IgnoredFinding(finding=f, by=by) for f, by in ignored]
    result.notes = (
        _input_notes(project)
        + [Note(kind="config", file=config.path, message=m) for m in config.problems]
        + result.notes
        + notes
    )
    samples: dict[str, Finding] = {}
    for f in unique:
        samples.setdefault(f.rule, f)
    result.rules = {code: _meta(code, f) for code, f in sorted(samples.items())}
    return result


def part_of(result: AnalysisResult, directory: str) -> AnalysisResult:
    """What ``result`` (the analysis of a project) says about its subdirectory ``directory``, with paths
    relative to that subdirectory: the findings of ``pipeline analyze`` run there on the project."""
    inside = directory.strip("/") + "/"
    up = "../" * inside.count("/")

    def moved(f: Finding) -> Finding | None:
        return dataclasses.replace(f, file=f.file[len(inside) :]) if f.file.startswith(inside) else None

    findings = [m for m in map(moved, result.findings) if m is not None]
    ignored = [IgnoredFinding(finding=m, by=i.by) for i in result.ignored if (m := moved(i.finding)) is not None]

    def note_file(path: str) -> str:  # a config note names a file above the subdirectory: ../.pipeline.yaml
        return path[len(inside) :] if path.startswith(inside) else up + path if path else ""

    notes = [
        dataclasses.replace(n, file=note_file(n.file))
        for n in result.notes
        if n.kind == "config" or not n.file or n.file.startswith(inside)
    ]
    ids, codes = {f.id for f in findings}, {f.rule for f in findings} | {i.finding.rule for i in ignored}
    tools = {
        name: dataclasses.replace(run, findings=sum(f.source == name for f in findings))
        for name, run in result.tools.items()
    }
    return AnalysisResult(
        findings=findings,
        ignored=ignored,
        notes=notes,
        tools=tools,
        columns={k: v for k, v in result.columns.items() if k in ids},
        rules={k: v for k, v in result.rules.items() if k in codes},
    )


def analyze_project(project: Project, select: set[str] | None = None) -> list[Finding]:
    """Our rules' findings for a loaded project, less the ignored ones (no hadolint)."""
    return examine(project, select=select).findings


def _tree(root: Path | str | Tree) -> Tree:
    return DirTree(Path(root)) if isinstance(root, (str, Path)) else root


def run_analysis(root: Path | str | Tree, hadolint: bool = False, cache=None) -> AnalysisResult:
    """The full analysis of a checkout (or any tree): what ``pipeline analyze`` prints."""
    result = examine(Project(_tree(root)), hadolint=hadolint, cache=cache)
    if cache is not None:
        cache.save()
    return result


def analyze(root: Path | str | Tree, hadolint: bool = False) -> list[Finding]:
    """Every finding in the tree at ``root`` (ignored ones left out); with hadolint's when asked."""
    return run_analysis(root, hadolint=hadolint).findings


__all__ = ["analyze", "analyze_project", "run_analysis", "examine", "services"]
