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

import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from engine.aside import Aside
from engine.finding import Applicability, Category, Finding, Severity
from engine.findings_output import AnalysisResult, IgnoredFinding, Note, RuleMeta, ToolRun, rules_doc_uri
from engine.tree import DirTree, Tree
from pipelines.docker_optimization import hadolint as hadolint_mod
from pipelines.docker_optimization import ignores, variants
from pipelines.docker_optimization.compose import ComposeFile, is_compose_file
from pipelines.docker_optimization.project import Project, is_dockerfile
from pipelines.docker_optimization.rules import REGISTRY, Hit, Rule, load_all, rule

# Files whose absence from the tree (a symlink out of the repo, a FIFO...) deserves its own note.
_NOTABLE = (ignores.CONFIG_NAMES + hadolint_mod.CONFIG_NAMES)
_MAX_SKIPPED_LISTED = 5


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
            found.append(Service(c.path, name, svc, c.line_of(name),
                                 base[1] if base and base[0] is not c else None, c))
    return found


# -- input problems as rules (so they are documented, selectable and ignorable like any other) ------------

@rule("PX001", "dockerfile-parse-error", Category.correctness, Severity.error, "project",
      reads=("dockerfiles",))
def dockerfile_parse_error(project: Project) -> Iterable[Hit]:
    """BuildKit's Dockerfile parser rejects the file.

    Why: `docker build` uses the same parser, so the image can't be built;
    no other rule looks at this file until it parses.

    Example:
        RUN <<EOF
        echo never terminated

    Use instead:
        RUN <<EOF
        echo terminated
        EOF
    """
    for df in project.dockerfiles.values():
        if df.error and df.path not in project.problems:
            yield Hit(0, f"BuildKit's parser rejects this file: {df.error}", df.error, file=df.path)


@rule("PX002", "compose-parse-error", Category.correctness, Severity.error, "project",
      reads=("composes",))
def compose_parse_error(project: Project) -> Iterable[Hit]:
    """A compose file is not valid YAML, or not a mapping at its top level.

    A variant file that holds only comments, beside another compose file of
    its directory, is a placeholder stacked with `-f` (a seam for forks to
    fill in): compose merges it as nothing, and it is not reported.

    Why: `docker compose` refuses it; no compose rule looks at it until it loads.

    Example:
        services:
          api:
            image: "unterminated

    Use instead:
        services:
          api:
            image: "api:1.0"
    """
    directories = [c.path.rpartition("/")[0] for c in project.composes]
    for compose in project.composes:
        if not compose.error or compose.path in project.problems:
            continue
        if _only_comments(compose.text) and directories.count(compose.path.rpartition("/")[0]) > 1:
            continue
        yield Hit(0, f"not a valid compose file: {compose.error}", compose.error, file=compose.path)


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("#") or line.strip() in ("---", "...")
               for line in text.splitlines())


def _problems(project: Project, code: str) -> Iterable[Hit]:
    for problem in project.problems.values():
        if problem.code == code:
            yield Hit(0, problem.message, problem.message, file=problem.path)


@rule("PX003", "file-not-text", Category.correctness, Severity.warning, "project",
      reads=("dockerfiles", "composes"))
def file_not_text(project: Project) -> Iterable[Hit]:
    """A Dockerfile, compose or ignore file holds binary content (NUL bytes).

    It is named like one of the files the analysis reads, but it is not
    text, so it is not analyzed.

    Why: `docker build` or `docker compose` would fail on it, or the name is
    misleading (a build artifact named `Dockerfile.bin`, say).

    Example:
        services/api/Dockerfile.cache   (a binary cache file)

    Use instead:
        a name that isn't a Dockerfile name (`api.cache`), or the real Dockerfile
    """
    return _problems(project, "PX003")


@rule("PX004", "file-too-large", Category.correctness, Severity.warning, "project",
      reads=("dockerfiles", "composes"))
def file_too_large(project: Project) -> Iterable[Hit]:
    """A Dockerfile, compose or ignore file is larger than the analysis reads (4 MiB).

    Why: no real Dockerfile or compose file is that big; it is generated or
    not what its name says, and reading it whole would slow every analysis.

    Example:
        deploy/docker-compose.yml   (40 MiB, generated)

    Use instead:
        generate smaller files, or name the generated file so that it isn't
        taken for a compose file or Dockerfile
    """
    return _problems(project, "PX004")


@rule("PX005", "file-unreadable", Category.correctness, Severity.error, "project",
      reads=("dockerfiles", "composes"))
def file_unreadable(project: Project) -> Iterable[Hit]:
    """A Dockerfile, compose or ignore file can't be read (permissions, I/O error).

    Why: what can't be read can't be analyzed, and `docker build` will
    most likely fail on it the same way.

    Example:
        services/api/Dockerfile   (mode 000)

    Use instead:
        make it readable: chmod a+r services/api/Dockerfile
    """
    return _problems(project, "PX005")


@rule("PX006", "dockerignore-invalid", Category.correctness, Severity.error, "project",
      reads=("dockerignores", "contexts"))
def dockerignore_invalid(project: Project) -> Iterable[Hit]:
    """A .dockerignore holds a pattern Docker refuses (`[]a]`, a lone `!`, a trailing `\\`).

    Why: `docker build` fails before sending anything; every service built
    from that context is broken.

    Example:
        [a-]

    Use instead:
        a valid pattern: `[a\\-]` or `a-*`
    """
    seen = set()
    for ctx in project.contexts:
        if ctx.ignore_error and ctx.ignore_path not in seen:
            seen.add(ctx.ignore_path)
            yield Hit(0, f"Docker refuses this ignore file: {ctx.ignore_error}", ctx.ignore_error, file=ctx.ignore_path)


@rule("PX007", "hadolint-not-applied", Category.correctness, Severity.warning, "project", reads=("dockerfiles",))
def hadolint_not_applied(project: Project) -> Iterable[Hit]:
    """hadolint's rules were not applied to a Dockerfile: hadolint did not finish within its time budget.

    The analysis gives hadolint `hadolint-timeout` seconds (`.pipeline.yaml`,
    default 30) for one run over every Dockerfile; the files of a run it did
    not finish are reported here, with our own rules' findings intact. This
    finding comes from the hadolint step (with hadolint on); the check of
    its own finds nothing.

    Why: hadolint lints about 370 lines a second; a generated Dockerfile of
    50,000 lines would hold every analysis for over two minutes, and a
    silent gap would read as "hadolint found nothing".

    Example:
        services/gen/Dockerfile   (50,000 lines, generated)

    Use instead:
        a larger budget in .pipeline.yaml, if the wait is acceptable:
        hadolint-timeout: 300
    """
    return ()


# -- running the rules -------------------------------------------------------------------------------

def _finding(rule: Rule, hit: Hit, file: str) -> Finding:
    return Finding.make(rule=rule.code, name=rule.name, category=rule.category, severity=rule.severity,
                        message=hit.message, file=hit.file or file, line=hit.line,
                        end_line=hit.end_line or hit.line, evidence=hit.evidence, fix=rule.fix)


def _run_rule(rule: Rule, target: object, file: str, notes: list[Note]) -> list[Finding]:
    try:
        return [_finding(rule, h, file) for h in rule.check(target)]
    except Exception as err:  # a rule's bug must not stop the other rules, nor the other files
        frames = traceback.extract_tb(err.__traceback__)
        frame = next((f for f in reversed(frames) if "docker_optimization" in f.filename), frames[-1])
        notes.append(Note(kind="rule-error", file=file or "",
                          message=f"rule {rule.code} failed on {file or 'the project'}: {type(err).__name__}: {err} "
                                  f"({Path(frame.filename).name}:{frame.lineno}); its findings there are missing"))
        return []


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


def _one_rule(project: Project, each: Rule, memo: dict, cache=None) -> tuple[list[Finding], list[Note]]:
    """A rule's findings over every target of its kind, and a note for each target it failed on.

    With a ``results_cache.ResultsCache``, a target whose inputs are unchanged since the last run takes
    the stored findings instead of running the rule (the same findings, in the same order).
    """
    if cache is None:
        findings: list[Finding] = []
        notes: list[Note] = []
        for _, target, file in targets(project, each, memo):
            findings += _run_rule(each, target, file, notes)
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
        unit[0].extend(_run_rule(each, target, file, unit[1]))
    for key, (found, noted) in units.items():
        if key in digests and key not in stored:
            cache.put(each.code, key, digests[key], found, noted)
    return [f for found, _ in units.values() for f in found], [n for _, noted in units.values() for n in noted]


def _rule_findings(project: Project, rules: list[Rule], notes: list[Note], then=None, cache=None) -> list[Finding]:
    """Every rule's findings, in rule order, the same whether or not part of them ran aside.

    The heavy rules (every context's size, the compose schema: the split
    that measured best on the bench's trees) run in a forked child
    (``engine.aside``) while the others run here: two cores for two halves
    of the work. Without a child, all run here. ``then`` is called once the
    child is forked (a thread started before would forbid the fork).
    """
    aside_rules = [i for i, r in enumerate(rules) if r.heavy]
    memo: dict = {}

    def aside():
        wires = [_to_wire(*_one_rule(project, rules[i], memo, cache)) for i in aside_rules]
        return wires, (cache.used if cache is not None else None)   # the child's cache entries come back too

    child = Aside(aside)
    if then is not None:
        then()
    done: dict[int, tuple[list[Finding], list[Note]]] = {}
    with child:
        for i, each in enumerate(rules):
            if not (child.running and i in aside_rules):
                done[i] = _one_rule(project, each, memo, cache)
        answer = child.result()
    if answer is not None:
        wires, used = answer
        done.update(zip(aside_rules, (_from_wire(*part) for part in wires)))
        if cache is not None:
            cache.used.update(used)
    else:
        done.update((i, _one_rule(project, rules[i], memo, cache)) for i in aside_rules if i not in done)
    findings: list[Finding] = []
    for i in range(len(rules)):
        findings += done[i][0]
        notes += done[i][1]
    return findings


def _to_wire(findings: list[Finding], notes: list[Note]) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """Findings and notes as marshal-able data, to cross the pipe from a child."""
    return [f.to_json() for f in findings], [(n.kind, n.message, n.file) for n in notes]


def _from_wire(findings: list[dict], notes: list[tuple[str, str, str]]) -> tuple[list[Finding], list[Note]]:
    return [Finding(**f) for f in findings], [Note(kind=k, message=m, file=f) for k, m, f in notes]


def _input_notes(project: Project) -> list[Note]:
    notes = [Note(kind="input", file=path, message=message) for path, message in project.notes]
    skipped = getattr(project.tree, "skipped", {}) or {}
    notable = {p: why for p, why in skipped.items() if _notable(p)}
    notes += [Note(kind="input", file=p, message=why) for p, why in sorted(notable.items())]
    rest = sorted(p for p in skipped if p not in notable)
    if rest:
        shown = ", ".join(rest[:_MAX_SKIPPED_LISTED]) + (", ..." if len(rest) > _MAX_SKIPPED_LISTED else "")
        notes.append(Note(kind="input", message=f"{len(rest)} other files left out of the analysis (symlinks that "
                                                f"leave the repository, dangle or loop; FIFOs, sockets): {shown}"))
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
        self.run_result: hadolint_mod.Run | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            project, parseable = self.project, self.parseable
            config = next((c for c in hadolint_mod.CONFIG_NAMES if c in project.files), "")
            budget = self.budget
            if isinstance(project.tree, DirTree):
                self.run_result = hadolint_mod.run(sorted(parseable), root=project.tree.root, config=config,
                                                   timeout=budget)
            else:
                self.run_result = hadolint_mod.run(sorted(parseable), texts={p: df.text for p, df in parseable.items()},
                                                   config=config, config_text=project.text(config) if config else None,
                                                   timeout=budget)
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
    px007 = REGISTRY["PX007"]
    return found + [_finding(px007, Hit(0, f"hadolint's rules were not applied to this file: {run.why_unfinished()}",
                                        "", file=path), path) for path in run.unfinished]


def _config(project: Project) -> ignores.Config:
    path = next((c for c in ignores.CONFIG_NAMES if c in project.files), "")
    if not path:
        return ignores.Config()
    config = ignores.load_config(path, project.text(path))
    known = set(REGISTRY)
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


_RULE_META: dict[str, RuleMeta] = {}   # a registry rule's metadata never changes (its doc is cleaned once)


def _meta(code: str, sample: Finding) -> RuleMeta:
    rule = REGISTRY.get(code)
    if rule is not None and code in _RULE_META:
        return _RULE_META[code]
    if rule is not None:
        _RULE_META[code] = RuleMeta(code=code, name=rule.name, summary=rule.summary, doc=rule.doc,
                                    category=rule.category, severity=rule.severity, fix=rule.fix,
                                    help_uri=rules_doc_uri(code))
        return _RULE_META[code]
    return RuleMeta(code=code, name=sample.name, summary=sample.message if sample.source == "hadolint" else sample.name,
                    category=sample.category, severity=sample.severity, source=sample.source,
                    help_uri=hadolint_mod.help_uri(code) if sample.source == "hadolint" else "")


def examine(project: Project, hadolint: bool = False, select: set[str] | None = None,
            cache=None) -> AnalysisResult:
    """Everything the analysis has to say about a loaded project (``cache``: see ``results_cache``)."""
    rules = [r for r in load_all().values() if select is None or r.code in select]
    result = AnalysisResult()
    notes: list[Note] = []
    pending = _HadolintRun(project) if hadolint else None
    try:
        findings = _rule_findings(project, rules, notes, then=pending.start if pending is not None else None,
                                  **({"cache": cache} if cache is not None else {}))
        if pending is not None:
            findings += _hadolint(pending, findings, result)
    except BaseException:
        if pending is not None:
            hadolint_mod.stop_all()   # an interrupt (or a rule's crash) must not wait minutes for the linter
        raise
    finally:
        if pending is not None and pending.ident is not None:
            pending.join()   # never leave the process behind, whatever the rules did
    if pending is None:
        result.tools["hadolint"] = ToolRun(status="off")
    return finish(project, findings, notes, result)


def finish(project: Project, findings: list[Finding], notes: list[Note], result: AnalysisResult) -> AnalysisResult:
    """The rules' findings (in rule order) made a result: duplicates dropped, sorted, ignores applied, notes."""
    unique = sorted({f.id: f for f in findings}.values(), key=lambda f: (f.file, f.line, f.rule))
    config = _config(project)
    lines, spans = _lines_of(project)
    kept, ignored = ignores.partition(unique, config, lines, spans)
    result.findings = variants.collapse(kept)   # after the pragmas: an ignore in one variant file keeps the others
    result.ignored = [IgnoredFinding(finding=f, by=by) for f, by in ignored]
    result.notes = _input_notes(project) + [Note(kind="config", file=config.path, message=m) for m in config.problems] \
        + result.notes + notes
    samples: dict[str, Finding] = {}
    for f in unique:
        samples.setdefault(f.rule, f)
    result.rules = {code: _meta(code, f) for code, f in sorted(samples.items())}
    return result


def analyze_project(project: Project, select: set[str] | None = None) -> list[Finding]:
    """Our rules' findings for a loaded project, less the ignored ones (no hadolint)."""
    return examine(project, select=select).findings


def parse_errors(project: Project) -> list[Finding]:
    """The findings about input that could not be analyzed (PX rules)."""
    return examine(project, select={c for c in REGISTRY if c.startswith("PX")}).findings


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


__all__ = ["analyze", "analyze_project", "run_analysis", "examine", "services", "REGISTRY", "Applicability"]
