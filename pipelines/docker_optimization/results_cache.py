"""`pipeline analyze`'s results cache, keyed by content (as ruff's is).

A rule's findings on one target (a Dockerfile, a context directory, a
compose file; or the project, for a project rule) are stored with a digest
of what the rule reads there (``Rule.read_set``): the Dockerfile's text; the
context's file names and sizes and the texts of its Dockerfiles and ignore
files; the compose file's text; for a project rule the files of the kinds it
reads. The next run on the same directory runs the rule again only where the
digest differs. A rule that reads "tree" (anything) is never cached. The
output is the same with or without the cache (``tests/test_results_cache.py``).

Where: ``$XDG_CACHE_HOME/pipeline/analyze/`` (else ``~/.cache/...``), one file
per analyzed directory, holding only what the last run used. The key
includes a stamp of the analysis code (each module's size and mtime), so an
upgrade or an edit of a rule starts cold. It is off unless asked for
(``pipeline analyze --cache``, or ``PIPELINE_CACHE=1``): measured on the
scale-1 bench tree (bench/README.md), a warm run saves little, since the tree
walk and the parsing still happen, and a cold one costs more (the digests,
the write). A cache that can't be read or written is ignored: it never fails
an analysis.
"""

from __future__ import annotations

import array
import fnmatch
import hashlib
import marshal
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from agent_pipelines.engine.finding import Finding
from agent_pipelines.engine.findings_output import Note, NoteKind

_T = TypeVar("_T")
_Wire = tuple[list[dict], list[tuple[NoteKind, str, str]]]  # findings and notes as marshal-able data

FORMAT = 1
_PER_TARGET = {"dockerfile", "context", "context-sizes", "compose"}


_IGNORE_FILE = re.compile(r"\.dockerignore\Z")


def _pattern(kind: str) -> re.Pattern[str]:
    """A reads pattern as a regex over whole paths: with a "/", fnmatch on the path; else on the file name."""
    if "/" in kind:
        return re.compile("^" + fnmatch.translate(kind))
    return re.compile(r"(?:^|/)" + fnmatch.translate(kind).replace(".*", "[^/]*"))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pipeline" / "analyze"


def enabled() -> bool:
    return os.environ.get("PIPELINE_CACHE", "") == "1"


def _code_stamp() -> str:
    """Size and mtime of every module the findings come from: any edit or upgrade starts a cold cache."""
    here = Path(__file__).resolve().parent
    engine = here.parent.parent / "engine"
    h = hashlib.sha1(f"{FORMAT} {sys.version}".encode())
    for directory in (here, here / "rules", engine):
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(".py"):
                info = entry.stat()
                h.update(f"{entry.path} {info.st_size} {info.st_mtime_ns}\n".encode())
    return h.hexdigest()


class ResultsCache:
    """The stored results of one directory's last analysis; ``save()`` keeps what this run used."""

    def __init__(self, root: Path, directory: Path | None = None) -> None:
        name = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:20] + ".marshal"
        self.path = (directory or cache_dir()) / name
        self.stamp = _code_stamp()
        self.entries: dict[tuple[str, str], tuple[str, _Wire]] = {}  # (rule, key) -> (digest, its results)
        self.used: dict[tuple[str, str], tuple[str, _Wire]] = {}
        self.hits = self.misses = 0
        self._digests: dict[object, Any] = {}  # digests, and what they are made from (context_reads)
        try:
            with open(self.path, "rb") as fh:
                data = marshal.load(fh)
            if isinstance(data, dict) and data.get("stamp") == self.stamp:
                self.entries = data["entries"]
        except (OSError, EOFError, ValueError, TypeError, KeyError):
            self.entries = {}

    # -- lookups ----------------------------------------------------------------------------------

    def get(self, code: str, key: str, digest: str) -> tuple[list[Finding], list[Note]] | None:
        found = self.entries.get((code, key))
        if found is None or found[0] != digest:
            self.misses += 1
            return None
        self.hits += 1
        self.used[(code, key)] = found
        findings, notes = found[1]
        return [Finding(**f) for f in findings], [Note(kind=k, message=m, file=f) for k, m, f in notes]

    def put(self, code: str, key: str, digest: str, findings: list[Finding], notes: list[Note]) -> None:
        self.used[(code, key)] = (
            digest,
            ([f.to_json() for f in findings], [(n.kind, n.message, n.file) for n in notes]),
        )

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            with open(temp, "wb") as fh:
                marshal.dump({"stamp": self.stamp, "entries": self.used}, fh)
            os.replace(temp, self.path)
        except (OSError, ValueError):
            pass  # a cache that can't be written is no cache, not an error

    # -- what a rule reads, as digests ------------------------------------------------------------

    def digests(self, project, rule, keys: list[str]) -> dict[str, str] | None:
        """Target key -> digest of what ``rule`` reads there; None when it reads the whole tree."""
        reads = rule.read_set
        if "tree" in reads:
            return None
        common = hashlib.sha1(rule.code.encode())
        for kind in sorted(r for r in reads if r not in _PER_TARGET):
            common.update(self._kind(project, kind))
        found = {}
        for key in keys:
            h = common.copy()
            if rule.target == "dockerfile" and "dockerfile" in reads:
                h.update(self._file(project, key))
            elif rule.target == "context" and _PER_TARGET & set(reads) - {"compose"}:
                h.update(self._context(project, key))
            elif rule.target in ("service", "compose") and "compose" in reads:
                h.update(self._file(project, key))
            found[key] = h.hexdigest()
        return found

    def _memo(self, key: object, make: Callable[[], _T]) -> _T:
        if key not in self._digests:
            self._digests[key] = make()
        return self._digests[key]

    def _file(self, project, path: str) -> bytes:
        def make() -> bytes:
            text = project.text(path)
            problem = project.problems.get(path)
            return hashlib.sha1(
                f"{path}\0{problem.code if problem else ''}\0{text}\0".encode("utf-8", "surrogatepass")
            ).digest()

        return self._memo(("file", path), make)

    def _files(self, project, paths) -> bytes:
        h = hashlib.sha1()
        for path in paths:
            h.update(self._file(project, path))
        return h.digest()

    def _listing(self, project, directory: str) -> bytes:
        """The names and sizes of the files under ``directory`` (what a context rule reads of them)."""

        def make() -> bytes:
            from agent_pipelines.pipelines.docker_optimization.model.paths import span

            paths = project.sorted_paths
            lo, hi = (0, len(paths)) if directory in ("", ".") else span(paths, directory.rstrip("/") + "/")
            h = hashlib.sha1("\n".join(paths[lo:hi]).encode("utf-8", "surrogateescape"))
            h.update(array.array("q", project.sorted_sizes[lo:hi]).tobytes())
            return h.digest()

        return self._memo(("listing", directory), make)

    def _context(self, project, directory: str) -> bytes:
        def make() -> bytes:
            from agent_pipelines.pipelines.docker_optimization.incremental import _context_reads

            reads = self._memo("context_reads", lambda: _context_reads(project))
            signature, dirs, paths = reads[directory]
            h = hashlib.sha1(repr(signature).encode())
            for d in sorted(dirs):
                h.update(self._listing(project, d))
            h.update(self._files(project, sorted(p for p in paths if p in project.files)))
            return h.digest()

        return self._memo(("context", directory), make)

    def _kind(self, project, kind: str) -> bytes:
        def make() -> bytes:
            if kind == "dockerfiles":
                return self._files(project, list(project.dockerfiles))
            if kind == "composes":
                return self._files(project, [c.path for c in project.composes])
            if kind == "dockerignores":
                return self._files(project, list(filter(_IGNORE_FILE.search, project.sorted_paths)))
            if kind == "contexts":
                from agent_pipelines.pipelines.docker_optimization.incremental import _signatures

                return hashlib.sha1(repr(sorted(_signatures(project).items())).encode()).digest()
            paths = list(filter(_pattern(kind).search, project.sorted_paths))  # one C-level test per path
            return hashlib.sha1(repr(paths).encode("utf-8", "surrogateescape")).digest() + self._files(project, paths)

        return self._memo(("kind", kind), make)
