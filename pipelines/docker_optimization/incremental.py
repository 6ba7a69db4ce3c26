"""Incremental analysis: after a change to some files, re-run only the rule runs that read them.

A full analysis runs every rule on every target of its kind (each
Dockerfile, each context directory, each compose file, the project once).
Each rule declares what it reads (``Rule.read_set``: by default what its
target is; see ``rules.DEFAULT_READS``), so after a change to some paths:

* a Dockerfile rule runs again on the changed Dockerfiles only;
* a context rule runs again on a context directory when a path under it
  was added or removed (or, for a rule that reads "context-sizes", changed
  size), when the Dockerfile or ignore file of a context there (or of a
  context sharing its ignore file) changed, or when the contexts built there
  changed (a compose file now builds another Dockerfile there, a new ignore
  file). Context rules read the names of the other files, not their text;
* service and compose rules run again on the changed compose files only;
* a project rule runs again when a changed path is of a kind it reads (any
  Dockerfile, any compose file, a path pattern...), or, for one that reads
  "contexts", when the set of contexts changed;
* everything else carries over. Ignores are asked again for the findings of
  changed files (a pragma is in the finding's own file) and for new findings;
  the other verdicts carry over while ``.pipeline.yaml`` says the same. A
  finding found again (same rule, hit and file) is the one made before.

What the rules compute from unchanged inputs is kept too (``Project.updated``):
parsed ignore files, what each context sends (sizes follow resized, added and
removed files), what its COPY sources lack, the compose resolution.

A new Dockerfile or compose file needs no full analysis: the contexts are
derived again, and what changed in them decides which context runs are
redone. The result equals a full analysis of the new tree (finding ids,
ignored findings); ``tests/test_incremental.py`` checks that on random
sequences of real fixes and edits. Hadolint is not part of it.

    inc = Incremental(GitTree(repo, base))
    result = inc.to_commit(head)              # reads only the changed blobs of head
    result = inc.update(tree, changed_paths)  # any tree whose listing is already updated
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import posixpath
from collections.abc import Iterable, Iterator
from pathlib import Path

from agent_pipelines.engine.finding import Finding
from agent_pipelines.engine.findings_output import AnalysisResult, Note, ToolRun
from agent_pipelines.engine.lint import runner
from agent_pipelines.engine.tree import DirTree, GitTree, Tree, changed_paths
from agent_pipelines.pipelines.docker_optimization import ignores
from agent_pipelines.pipelines.docker_optimization.analysis import _run_rule, finish, target_keys, targets
from agent_pipelines.pipelines.docker_optimization.model.compose import is_compose_file
from agent_pipelines.pipelines.docker_optimization.model.project import Context, Project, is_dockerfile, within
from agent_pipelines.pipelines.docker_optimization.rules import Hit, Rule, load_all

Unit = tuple[list[Finding], list[Note]]
_PER_TARGET = {"dockerfile", "context", "context-sizes", "compose"}
_KINDS = {"dockerfiles", "composes", "dockerignores", "contexts", "tree"}


class Incremental:
    """A full analysis once, then cheap updates as files change (see the module's docstring)."""

    spare_findings = 1000  # how many findings of hits no longer found may be kept (memory bound)

    def __init__(self, tree: Tree, select: set[str] | None = None) -> None:
        self.rules: list[Rule] = [r for r in load_all().values() if select is None or r.code in select]
        self.project = Project(tree)
        self.units: dict[str, dict[str, Unit]] = {}
        self.reran: dict[str, int] = {}  # rule code -> targets run again by the last update (for tests and bench)
        # (rule, hit, file) -> its finding: a rule run again mostly finds what it found before, and making a
        # finding (masking its text, hashing its id) is a good part of a small update's cost.
        self._made: dict[tuple[str, Hit, str], Finding] = {}
        # finding id -> what ignores it ("" for nothing), while its file and the configuration stay as they were
        self._verdicts: dict[str, str] = {}
        self._config_key: tuple = ()
        self._changed: set[str] = set()
        self._flat: dict[str, tuple[dict, list[Finding], list[Note]]] = {}  # rule -> (its units, their findings, notes)
        self._derived: dict[int, dict] = {}  # id(project) -> what _dirty derived from it (the last two projects)
        self.result = self._rerun(self.project, {r.code: None for r in self.rules})

    # -- entry points ---------------------------------------------------------------------------------

    @classmethod
    def at_commit(cls, repo: Path, commit: str, select: set[str] | None = None) -> Incremental:
        """The analysis of a commit, read from git objects (no checkout)."""
        return cls(GitTree(Path(repo), commit), select)

    def to_commit(self, commit: str) -> AnalysisResult:
        """Move a commit-based analysis to ``commit``: only the blobs that differ are read (one ``git diff``)."""
        tree = self.project.tree
        if not isinstance(tree, GitTree):
            raise TypeError("to_commit needs an analysis of a commit (Incremental.at_commit)")
        changed = changed_paths(tree.repo, tree.commit, commit)
        return self.update(tree.updated(commit, changed), changed)

    def files_changed(self, changed: Iterable[str]) -> AnalysisResult:
        """Update a directory-based analysis after ``changed`` files were written or removed on disk."""
        tree = self.project.tree
        if not isinstance(tree, DirTree):
            raise TypeError("files_changed needs an analysis of a directory")
        changed = sorted(set(changed))
        return self.update(tree.updated(changed), changed)

    def update(self, tree: Tree, changed: Iterable[str]) -> AnalysisResult:
        """The analysis of ``tree``, which differs from the last one in ``changed`` paths only."""
        changed = set(changed)
        with _collections_deferred():
            old = self.project
            new = old.updated(tree, changed)
            self.project = new
            self._changed = changed
            dirty = self._dirty(old, new, changed)
            self._derived = {id(new): self._derived.get(id(new), {})}  # the old project's may go (and its id)
            self.result = self._rerun(new, dirty)
        return self.result

    def close(self) -> None:
        close = getattr(self.project.tree, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Incremental:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what to run again ----------------------------------------------------------------------------

    def _dirty(self, old: Project, new: Project, changed: set[str]) -> dict[str, set[str] | None]:
        """Rule code -> the target keys to run again (None: all of them)."""
        if not changed:
            return {r.code: set() for r in self.rules}
        # What is derived from each project's contexts, kept here for the old and the new project only (not in
        # the project: a project and its contexts refer to each other, so what it holds is freed only by a
        # garbage collection, and these are thousands of tuples and sets per update).
        derived = self._derived = {id(p): self._derived.get(id(p), {}) for p in (old, new)}
        if new.compose_builds is old.compose_builds and all((p in old.files) == (p in new.files) for p in changed):
            # The same contexts: they are made from the compose resolution (kept while nothing it read changed)
            # and from which Dockerfiles and ignore files exist (none came or went).
            derived[id(new)]["_signatures"] = _signatures(old, derived[id(old)])
            derived[id(new)]["_context_reads"] = _context_reads(old, derived[id(old)])
        kinds = {
            "tree": True,
            "dockerfiles": any(map(is_dockerfile, changed)),
            "composes": any(map(is_compose_file, changed)),
            "dockerignores": any(p.endswith(".dockerignore") for p in changed),
            "contexts": _signatures(old, derived[id(old)]) != _signatures(new, derived[id(new)]),
        }
        contexts_dirty: dict[bool, set[str]] = {}
        dirty: dict[str, set[str] | None] = {}
        for each in self.rules:
            reads = each.read_set
            wide = [r for r in reads if r not in _PER_TARGET]
            if any(kinds[r] if r in _KINDS else _matches(r, changed) for r in wide):
                dirty[each.code] = None
                continue
            keys: set[str] = set()
            if "dockerfile" in reads and each.target == "dockerfile" or "compose" in reads:
                keys |= changed
            if each.target == "context" and {"context", "context-sizes", "dockerfile"} & set(reads):
                sizes = "context-sizes" in reads
                if sizes not in contexts_dirty:
                    contexts_dirty[sizes] = _dirty_context_dirs(old, new, changed, sizes, derived)
                keys |= contexts_dirty[sizes]
            dirty[each.code] = keys
        return dirty

    def _rerun(self, project: Project, dirty: dict[str, set[str] | None]) -> AnalysisResult:
        memo: dict = {}
        findings: list[Finding] = []
        notes: list[Note] = []
        listed: dict[str, tuple[list[str], set[str]]] = {}  # target kind -> its keys in order (and as a set)
        # target kind -> key -> its (target, file) pairs: made once per update, for the kinds a rule runs on
        # in part (every rule of a kind would otherwise walk all of its targets to find the few to redo)
        grouped: dict[str, dict[str, list[tuple[object, str]]]] = {}
        for each in self.rules:
            before = self.units.get(each.code, {})
            keys = dirty[each.code]
            now: dict[str, Unit] = {}
            ran = 0
            if keys is None:  # every target again
                for key, target, file in targets(project, each, memo):
                    if key not in now:
                        now[key] = ([], [])
                        ran += 1
                    unit = now[key]
                    unit[0].extend(_run_rule(each, target, file, unit[1], self._make))
            else:
                if each.target not in listed:
                    order = target_keys(project, each.target)
                    listed[each.target] = (order, set(order))
                order, present = listed[each.target]
                if present.isdisjoint(keys) and order == list(before):  # the same units, none to redo: all carry
                    now = before
                else:
                    if each.target not in grouped:
                        by_key: dict[str, list[tuple[object, str]]] = {}
                        for key, target, file in targets(project, each, memo):
                            by_key.setdefault(key, []).append((target, file))
                        grouped[each.target] = by_key
                    by_key = grouped[each.target]
                    for key in order:
                        if key in before and key not in keys:
                            now[key] = before[key]
                            continue
                        unit = now[key] = ([], [])
                        ran += 1
                        for target, file in by_key[key]:
                            unit[0].extend(_run_rule(each, target, file, unit[1], self._make))
            self.units[each.code] = now
            self.reran[each.code] = ran
            flat = self._flat.get(each.code)
            if flat is None or flat[0] is not now:  # the rule's findings in one list, made again when it ran
                flat = self._flat[each.code] = (
                    now,
                    [f for u in now.values() for f in u[0]],
                    [n for u in now.values() for n in u[1]],
                )
            findings += flat[1]
            notes += flat[2]
        if len(self._made) > len(findings) + self.spare_findings:  # hits of earlier trees: let them go
            live = {f.id for f in findings}
            self._made = {key: f for key, f in self._made.items() if f.id in live}
        self.raw = (list(findings), list(notes))  # before ``finish``: what ``analysis.with_hadolint`` completes
        result = AnalysisResult()
        result.tools["hadolint"] = ToolRun(status="off")
        return finish(project, findings, notes, result, self._partition)

    def _partition(self, findings: list[Finding], config, lines, spans) -> tuple[list, list]:
        """``ignores.partition``, asked only about the findings of changed files (pragmas are in the finding's
        own file) and about new findings; the other verdicts stand while the configuration is the same."""
        key = (config.path, tuple(config.ignored), tuple((g, tuple(c)) for g, _, c in config.per_file), config.prefix)
        changed = self._changed
        if key != self._config_key:
            self._verdicts, self._config_key = {}, key
        verdicts = {f.id: v for f in findings if f.file not in changed and (v := self._verdicts.get(f.id)) is not None}
        ask = [f for f in findings if f.id not in verdicts]
        kept, ignored = ignores.partition(ask, config, lines, spans)
        verdicts.update((f.id, "") for f in kept)
        verdicts.update((f.id, by) for f, by in ignored)
        self._verdicts = verdicts
        if not any(verdicts.values()):  # nothing ignored (the usual case): every finding is kept
            return list(findings), []
        by_id = {f.id: by for f, by in ignored}
        return (
            [f for f in findings if not verdicts[f.id]],
            [(f, by_id.get(f.id) or verdicts[f.id]) for f in findings if verdicts[f.id]],
        )

    def _make(self, rule: Rule, hit: Hit, file: str) -> Finding:
        """``runner.finding``, reusing the finding of the same hit from an earlier update."""
        key = (rule.code, hit, file)
        try:
            found = self._made.get(key)
        except TypeError:  # a hit with an unhashable field: made, not kept
            return runner.finding(rule, hit, file)
        if found is None:
            found = self._made[key] = runner.finding(rule, hit, file)
        return found


@contextlib.contextmanager
def _collections_deferred() -> Iterator[None]:
    """No cyclic garbage collection during an update; the next one, after it, finds what it left.

    Why: an update allocates many short-lived objects, and a full collection walks every object the
    analysis keeps (lists of every path of the tree among them: 200,000 at scale 10); at that scale the
    collections made a third of each update's time. Nothing is leaked: garbage waits until the update ends.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _matches(pattern: str, changed: set[str]) -> bool:
    """Does a changed path match a reads pattern (without a "/", the pattern is for the file name at any depth)?"""
    if "/" not in pattern:
        return any(fnmatch.fnmatchcase(posixpath.basename(p), pattern) for p in changed)
    return any(fnmatch.fnmatchcase(p, pattern) for p in changed)


def _signature(contexts: list[Context]) -> tuple:
    return tuple(
        (c.dir, c.dockerfile, tuple(c.services), tuple(c.compose_files), c.inferred, c.ignore_path) for c in contexts
    )


def _signatures(project: Project, derived: dict | None = None) -> dict[str, tuple]:
    """Context directory -> the contexts built there, in order (which one a context rule runs on, and for whom).
    Kept in ``derived`` (else in the project): asked of each project twice, as the new one, then the old."""
    derived = project.__dict__ if derived is None else derived
    kept = derived.get("_signatures")
    if kept is not None:
        return kept
    by_dir: dict[str, list[Context]] = {}
    for c in project.contexts:
        by_dir.setdefault(c.dir, []).append(c)
    found = derived["_signatures"] = {d: _signature(cs) for d, cs in by_dir.items()}
    return found


def _context_reads(project: Project, derived: dict | None = None) -> dict[str, tuple[tuple, set[str], set[str]]]:
    """Context directory -> what its context rules look at: (the contexts, in order; the directories whose
    files they read; single paths they read). The contexts are those built there and those sharing an ignore
    file with them (a ``<Dockerfile>.dockerignore`` serves every context that builds the Dockerfile); the
    contexts that build the same Dockerfiles elsewhere count too, by name only (CX003 leaves a Dockerfile
    built from several contexts to CO007; the files there are not read)."""
    derived = project.__dict__ if derived is None else derived  # as ``_signatures`` keeps it
    kept = derived.get("_context_reads")
    if kept is not None:
        return kept
    by_ignore: dict[str, list[Context]] = {}
    by_dir: dict[str, list[Context]] = {}
    by_dockerfile: dict[str, list[Context]] = {}
    for c in project.contexts:
        by_ignore.setdefault(c.ignore_path or c.default_ignore_path, []).append(c)
        by_dir.setdefault(c.dir, []).append(c)
        by_dockerfile.setdefault(c.dockerfile, []).append(c)
    found = {}
    for directory, here in by_dir.items():
        keys = sorted({c.ignore_path or c.default_ignore_path for c in here})
        group = here + [c for key in keys for c in by_ignore[key] if c.dir != directory]
        paths = set()
        for c in group:
            paths |= {c.dockerfile, c.dockerfile + ".dockerignore", c.default_ignore_path}
        elsewhere = tuple(
            (o.dir, o.dockerfile, o.inferred) for c in here for o in by_dockerfile[c.dockerfile] if o is not c
        )
        found[directory] = (_signature(group) + (elsewhere,), {c.dir for c in group}, paths)
    derived["_context_reads"] = found
    return found


def _dirty_context_dirs(
    old: Project, new: Project, changed: set[str], sizes: bool, derived: dict[int, dict] | None = None
) -> set[str]:
    """The context directories whose context rules read a changed path, or whose contexts changed.

    A file under a context directory counts when it was added or removed, or, with ``sizes``, resized
    (a content change shows as a size change or not at all: rules read sizes, never the text).
    """
    derived = derived if derived is not None else {}
    before = _context_reads(old, derived.get(id(old)))
    after = _context_reads(new, derived.get(id(new)))
    listed = {
        p for p in changed if (p in old.files) != (p in new.files) or sizes and old.files.get(p) != new.files.get(p)
    }
    dirty = set()
    for directory, (signature, dirs, paths) in after.items():
        was = before.get(directory)
        if was is None or was[0] != signature:
            dirty.add(directory)
            continue
        dirs, paths = dirs | was[1], paths | was[2]
        if changed & paths or any(within(p, d) for p in listed for d in dirs):
            dirty.add(directory)
    return dirty
