"""How much a build context sends, counted without listing what it sends.

``Context.sent()`` lists the files (a dict per context); a monorepo with many
contexts at its root, each with its own ignore file, made that (contexts ×
files) Python work. Here the counts come from index ranges over the
project's sorted paths instead:

- the files under a directory are one contiguous range;
- a pattern excludes the same files whichever ignore file it is in, so what
  each pattern excludes is computed once per context directory and shared;
  a literal pattern (``.git``, ``node_modules``, ``apps/web/dist``) is two
  bisects, any other one pass over the directory's files
  (``dockerignore.excluded_by_each``);
- an ignore file without ``!`` excludes the union of what its patterns
  exclude (set operations in C); one with ``!`` (the last match wins, and
  the walk may skip directories) is counted from ``Context.sent()``, exactly.
"""

from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass

from agent_pipelines.engine.tree import keep
from agent_pipelines.pipelines.docker_optimization.model.dockerignore import DockerIgnore, excluded_by_each
from agent_pipelines.pipelines.docker_optimization.model.paths import span

TOP_FILES = "(files at the top)"


@dataclass(frozen=True)
class SentSize:
    files: int
    bytes: int
    by_top: dict[str, tuple[int, int]]  # "dir/" or TOP_FILES -> (files, bytes) sent, for entries that send any


def sent_size(ctx) -> SentSize:
    """Files and bytes the classic builder sends for ``ctx``, and per top-level entry (shared per ignore patterns)."""
    ignore = ctx.ignore
    memo = ctx.project.sizes_memo  # kept across updates that only resize files (Project.updated)
    key = ("sent_size", ctx.dir, ignore.key)
    if key not in memo:
        if ignore.has_reinclusions or ignore.flavor == "legacy":
            size = _from_listing(ctx.sent())
        else:
            size = _from_ranges(_Dir.of(ctx.project, ctx.dir), [p.text for p in ignore.patterns])
        memo[key] = _Kept(ctx.dir, ignore, size)
    return memo[key].size


def excluded_from(ctx, patterns: tuple[str, ...], sent: dict[str, int]) -> dict[str, list[str]]:
    """For each pattern, the files of ``sent`` (what ``ctx`` sends, sorted) it would exclude on its own, in
    that order: ``excluded_by_each(patterns, sent)``, read from the directory's per-pattern index (kept
    across commits, following added and removed files) instead of a pass over every file sent."""
    where = _Dir.of(ctx.project, ctx.dir)
    cut = len(where.prefix)
    return {
        pattern: [rel for rel in (path[cut:] for path in sorted(found)) if rel in sent]
        for pattern, found in zip(patterns, where.excluded_by(list(patterns)))
    }


@dataclass(frozen=True)
class _Kept:
    """A context directory's sent size, and how to follow files that only change size."""

    dir: str
    ignore: DockerIgnore
    size: SentSize

    def updated(self, old: dict[str, int], new: dict[str, int], changed: list[str]) -> _Kept:
        """The same count after ``changed`` files were added, removed or resized: each one sent (the
        ignore file's verdict on one path, as ``Context.sends``) moves the totals and its top-level entry."""
        prefix = "" if self.dir in ("", ".") else self.dir.rstrip("/") + "/"
        if not any(path.startswith(prefix) for path in changed):  # nothing here changed: the same count
            return self
        files, total, by_top = self.size.files, self.size.bytes, dict(self.size.by_top)
        for path in changed:
            rel = path[len(prefix) :]
            if not path.startswith(prefix) or old.get(path) == new.get(path) or self.ignore.excluded(rel):
                continue
            count = (path in new) - (path in old)
            delta = new.get(path, 0) - old.get(path, 0)
            top = rel.split("/", 1)[0] + "/" if "/" in rel else TOP_FILES
            sent_files, sent = by_top.get(top, (0, 0))
            if sent_files + count:
                by_top[top] = (sent_files + count, sent + delta)
            else:  # its last file sent is gone: only entries that send something are listed
                del by_top[top]
            files, total = files + count, total + delta
        return _Kept(self.dir, self.ignore, SentSize(files, total, by_top))


def _from_listing(sent: dict[str, int]) -> SentSize:
    by_top: dict[str, tuple[int, int]] = {}
    for path, size in sent.items():
        top = path.split("/", 1)[0] + "/" if "/" in path else TOP_FILES
        count, total = by_top.get(top, (0, 0))
        by_top[top] = (count + 1, total + size)
    return SentSize(len(sent), sum(sent.values()), by_top)


def _from_ranges(where: _Dir, patterns: list[str]) -> SentSize:
    excluded = set().union(*where.positions(patterns)) if patterns else set()
    sizes = where.sizes
    ex = sorted(excluded)
    by_top: dict[str, tuple[int, int]] = {}
    for name, lo, hi, total in where.tops:
        a, b = bisect.bisect_left(ex, lo), bisect.bisect_left(ex, hi)
        if hi - lo - (b - a):
            by_top[name] = (hi - lo - (b - a), total - sum(map(sizes.__getitem__, ex[a:b])))
    top_files = [i for i in where.top_files if i not in excluded]
    if top_files:
        by_top[TOP_FILES] = (len(top_files), sum(map(sizes.__getitem__, top_files)))
    return SentSize(where.hi - where.lo - len(excluded), where.total - sum(map(sizes.__getitem__, ex)), by_top)


class _Dir:
    """One context directory as index ranges over the project's sorted paths (built once per directory)."""

    def __init__(self, project, directory: str) -> None:
        paths = project.sorted_paths
        self.paths, self.sizes = paths, project.sorted_sizes
        self.project_files: dict[str, int] = project.files
        self.prefix = "" if directory in ("", ".") else directory.rstrip("/") + "/"
        bounds: tuple[int, int] = span(paths, self.prefix) if self.prefix else (0, len(paths))
        self.lo, self.hi = bounds
        self.total = sum(self.sizes[self.lo : self.hi])
        self.tops: list[tuple[str, int, int, int]] = []  # (name + "/", lo, hi, bytes) per top-level directory
        self.top_files: list[int] = []  # files directly in the directory
        i, cut = self.lo, len(self.prefix)
        while i < self.hi:
            rest = paths[i][cut:]
            slash = rest.find("/")
            if slash < 0:
                self.top_files.append(i)
                i += 1
                continue
            lo, hi = span(paths, paths[i][: cut + slash + 1], i)
            self.tops.append((rest[: slash + 1], lo, hi, sum(self.sizes[lo:hi])))
            i = hi
        # kept across commits (Project.names_memo), following added and removed paths
        key = ("excluded_by", directory)
        if key not in project.names_memo:
            project.names_memo[key] = _shared(directory, self.prefix, paths[self.lo : self.hi])
        self._by_pattern: dict[str, frozenset[str]] = project.names_memo[key]

    @classmethod
    def of(cls, project, directory: str) -> _Dir:
        key = ("context_dir", directory)
        if key not in project.memo:
            project.memo[key] = cls(project, directory)
        return project.memo[key]

    def excluded_by(self, patterns: list[str]) -> list[frozenset[str]]:
        """For each pattern, the (repository) paths of the files it excludes on its own (computed once per
        pattern and directory, then followed across commits)."""
        missing = [p for p in dict.fromkeys(patterns) if p not in self._by_pattern]
        generic = [p for p in missing if not _literal(p)]
        for pattern in missing:
            if _literal(pattern):
                self._by_pattern[pattern] = self._literal(pattern)
        if generic:
            cut = len(self.prefix)
            relatives = map(operator.itemgetter(slice(cut, None)), self.paths[self.lo : self.hi])
            for pattern, files in excluded_by_each(generic, relatives).items():
                self._by_pattern[pattern] = frozenset(map(self.prefix.__add__, files))
        return [self._by_pattern[p] for p in patterns]

    def positions(self, patterns: list[str]) -> list[frozenset[int]]:
        """``excluded_by`` as indices into the project's sorted paths (made once per pattern in this project)."""
        found = self.excluded_by(patterns)
        if not hasattr(self, "_positions"):
            self._positions: dict[str, frozenset[int]] = {}
            # path -> index, built in C: the 200,000 paths of a root context at scale 10 in milliseconds
            self._index = dict(zip(self.paths[self.lo : self.hi], range(self.lo, self.hi)))
        for pattern, paths in zip(patterns, found):
            if pattern not in self._positions:
                self._positions[pattern] = frozenset(map(self._index.__getitem__, paths))
        return [self._positions[p] for p in patterns]

    def _literal(self, pattern: str) -> frozenset[str]:
        full = self.prefix + pattern
        lo, hi = span(self.paths, full + "/", self.lo)
        found = set(self.paths[lo:hi])
        if full in self.project_files:
            found.add(full)
        return frozenset(found)


class _Excluded(dict):
    """pattern -> the paths of the files it excludes (on its own) in one directory.

    Follows added and removed paths (``Project.updated``): a removed file
    drops out, an added one under the directory is asked of each pattern;
    nothing else is touched (paths, not positions, so nothing shifts).
    """

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def follow(self, old: list[str], new: list[str], added: list[str], removed: list[str]) -> _Excluded:
        gone = {p for p in removed if p.startswith(self.prefix)}
        born = [p for p in added if p.startswith(self.prefix)]
        if not gone and not born:
            return self
        out = _Excluded(self.prefix)
        for pattern, found in self.items():
            if born:
                ignore = DockerIgnore([pattern])
                hit = [p for p in born if ignore.excluded(p[len(self.prefix) :])]
                found = found.union(hit) if hit else found
            out[pattern] = found.difference(gone) if gone and not gone.isdisjoint(found) else found
        return out


_SHARED: dict[str, tuple[list[str], _Excluded]] = {}  # directory -> (its paths, what each pattern excludes there)


def _shared(directory: str, prefix: str, paths: list[str]) -> _Excluded:
    """The per-pattern answers of the last project that asked them of ``directory``, when its paths there
    were these (what a pattern excludes depends on the paths alone); else new ones, shared from now on.

    Why: a run makes a dozen projects of the same files (the analyst's, the planner's, the reviewer's,
    each phase's ops), and one pass of the candidate patterns over a root context (200,000 paths at scale
    10) costs a second; comparing the paths costs milliseconds. An ``_Excluded`` only ever gains answers
    (``follow`` makes a new one), so projects that share it stay right."""
    kept = _SHARED.get(directory)
    if kept is not None and kept[0] == paths:
        return kept[1]
    found = _Excluded(prefix)
    keep(_SHARED, directory, (paths, found))  # one entry per context directory (hundreds in a monorepo)
    return found


def _literal(pattern: str) -> bool:
    """A cleaned pattern that names one path: it excludes that file or everything under that directory."""
    return (
        not any(ch in pattern for ch in "*?[]\\^$")
        and pattern not in (".", "..")
        and not pattern.startswith(("../", "/"))
    )
