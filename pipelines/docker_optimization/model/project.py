"""The repository as the analysis sees it: Dockerfiles, compose files, and build contexts.

A Dockerfile can be built under several contexts (one per compose service
that builds it, in every configuration compose reads: with its override
file, includes, extends and ``.env``, see ``compose_resolve``); each counts. A Dockerfile no compose file builds gets its
own directory as an inferred context, flagged as inferred. BuildKit's rule
for ignore files applies: ``<Dockerfile>.dockerignore`` beside the Dockerfile
wins over the context root's ``.dockerignore``.

Reading never fails: a file too large to read (over ``MAX_TEXT_BYTES``), one
with binary content or one that can't be read is recorded in ``problems``
(the analysis turns each into a finding) and, if it is a Dockerfile or a
compose file, kept with its ``error`` set so every rule skips it. Text that
isn't UTF-8 is decoded with replacement characters and noted in ``notes``.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import gc
import operator
import posixpath
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from agent_pipelines.engine.tree import Tree
from agent_pipelines.pipelines.docker_optimization.model import compose as compose_mod
from agent_pipelines.pipelines.docker_optimization.model import compose_resolve
from agent_pipelines.pipelines.docker_optimization.model.compose import BuildSpec, ComposeFile
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from agent_pipelines.pipelines.docker_optimization.model.dockerignore import DockerIgnore
from agent_pipelines.pipelines.docker_optimization.model.paths import span

MAX_TEXT_BYTES = 4 * 1024 * 1024  # larger Dockerfiles, compose or ignore files are not read
BINARY_PROBE = 8192  # a NUL byte in the first 8 KiB means binary content


@dataclass(frozen=True)
class InputProblem:
    """Why a file could not be analyzed: the finding code it becomes and a message."""

    path: str
    code: str  # PX003 binary, PX004 too large, PX005 unreadable
    message: str


# Every Dockerfile or compose file name contains one of these (case aside); most paths are neither.
_MAYBE_BUILD_FILE = re.compile(r"ockerfile|compose", re.IGNORECASE)


def is_dockerfile(path: str) -> bool:
    name = path.rpartition("/")[2]
    if name.endswith(".dockerignore"):
        return False
    return name == "Dockerfile" or name.startswith("Dockerfile.") or name.lower().endswith(".dockerfile")


def _edits(moved: list[str], directory: str, files: dict[str, int]) -> dict[str, int | None]:
    """The ``moved`` paths under ``directory``, relative to it, with their size in ``files`` (None: removed)."""
    return {relative(p, directory): files.get(p) for p in moved if within(p, directory)}


def _dirs_touched(paths: Iterable[str]) -> set[str]:
    """Every directory ``within`` places one of ``paths`` in, and the paths themselves (none when no path):
    a listing of a directory outside it has nothing to follow (one set lookup, not a pass over the paths)."""
    found: set[str] = set()
    for path in paths:
        found.update(("", ".", path))
        cut = path.find("/")
        while cut != -1:
            found.add(path[:cut])
            cut = path.find("/", cut + 1)
    return found


def within(path: str, directory: str) -> bool:
    return directory in ("", ".") or path == directory or path.startswith(directory.rstrip("/") + "/")


def relative(path: str, directory: str) -> str:
    return path if directory in ("", ".") else path[len(directory.rstrip("/")) + 1 :]


# id of a listing's dict -> (the dict, its paths sorted), least recently used first
_SORTED: OrderedDict[int, tuple[dict[str, int], list[str]]] = OrderedDict()


def sorted_keys(files: dict[str, int]) -> list[str]:
    """``files``' paths, sorted, computed once per dict (listings' dicts are never mutated)."""
    hit = _SORTED.get(id(files))
    if hit is not None and hit[0] is files and len(hit[1]) == len(files):
        try:
            _SORTED.move_to_end(id(files))  # asked again: the last to go (matching asks millions of times)
        except KeyError:  # another thread let it go meanwhile
            pass
        return hit[1]
    keys = sorted(files)  # the dict is held while kept, so its id isn't reused
    _remember_sorted(files, keys)
    return keys


def _remember_sorted(files: dict[str, int], keys: list[str]) -> None:
    """Keep ``files``' sorted paths as the most recently used; the least recently used goes beyond 256.

    Why not emptied when full: a monorepo has hundreds of contexts, and emptying the cache dropped the root
    context's listing (200,000 paths at scale 10) with them, to be sorted again at the next commit."""
    _SORTED[id(files)] = (files, keys)
    try:
        _SORTED.move_to_end(id(files))
        while len(_SORTED) > 256:
            _SORTED.popitem(last=False)
    except KeyError:  # another thread took it (or emptied the cache) meanwhile
        pass


def _follow_sorted(made: dict[str, int], out: dict[str, int], net: dict[str, int | None]) -> None:
    """When ``made``'s paths were sorted, ``out``'s (``made`` after the ``net`` edits) are those with the
    paths that left taken out and the new ones put in: a copy moved in place (C memmoves), not a sort of
    every path (200,000 for a root context at scale 10, asked again after every commit)."""
    hit = _SORTED.get(id(made))
    if hit is None or hit[0] is not made or len(hit[1]) != len(made):
        return
    gone = sorted(rel for rel in net if rel in made and rel not in out)
    born = sorted(rel for rel in net if rel in out and rel not in made)
    keys = hit[1]
    if gone or born:
        keys = list(keys)
        for rel in reversed(gone):
            del keys[bisect.bisect_left(keys, rel)]
        for rel in born:
            bisect.insort(keys, rel)
    _SORTED.pop(id(made), None)  # the listing followed is mostly not asked again: not kept alive for it
    _remember_sorted(out, keys)


@functools.lru_cache(maxsize=4096)
def _parsed(parse: Callable[[str, str], Dockerfile], path: str, text: str) -> Dockerfile:
    """A Dockerfile's text parsed once per process by ``parse``, shared by every project that reads the same
    text (a parser that raises is asked again next time: nothing is kept of a failure).

    Why: each fresh project parses every Dockerfile (450 at scale 10), and a commit's new text is parsed
    by the implementer's project, the reviewer's analysis and the gates' project in turn. Sharing is what
    ``Project.updated`` does already for unchanged files: rules never modify a parsed Dockerfile."""
    return parse(path, text)


class Listing:
    """A directory's files (relative path -> size), or what a context sends of them, kept across commits.

    ``follow`` makes the listing of the next tree from the paths that changed under the directory, without
    reading the rest: nothing is done until ``files`` is asked for, and then the edits of every tree since the
    last listing made are applied to a copy of it (an added path is asked of ``ignore`` alone, as
    ``Context.sends`` does). Why: the root context lists every file of the repository (200,000 at scale 10),
    and a commit that adds one file would otherwise list and match them all again.
    """

    __slots__ = ("ignore", "_files", "_base", "_edits")

    def __init__(
        self,
        ignore: DockerIgnore | None,
        files: dict[str, int] | None = None,
        base: Listing | None = None,
        edits: dict[str, int | None] | None = None,
    ) -> None:
        self.ignore = ignore  # None: every file is listed
        self._files, self._base, self._edits = files, base, edits

    def follow(self, edits: dict[str, int | None]) -> Listing:
        """This listing after ``edits`` (relative path -> its new size, None when removed)."""
        return Listing(self.ignore, base=self, edits=edits) if edits else self

    @property
    def files(self) -> dict[str, int]:
        """Relative path -> size. In sorted order as first listed, and the paths added since at the end: no
        reader depends on the order (``copies.sorted_paths`` sorts, the others count, sum or look up)."""
        if self._files is None:
            # Read without a lock: another thread may make a listing of this chain meanwhile (it sets ``_files``
            # before it lets go of ``_base``), so each node's state is read once, ``_files`` first.
            chain: list[dict[str, int | None]] = []
            node: Listing = self
            while True:
                made, base, edits = node._files, node._base, node._edits
                if made is not None:
                    break
                if base is None or edits is None:  # made meanwhile
                    made = node._files
                    assert made is not None
                    break
                chain.append(edits)
                node = base
            net: dict[str, int | None] = {}
            for edits in reversed(chain):  # oldest first: the last edit of a path wins
                net.update(edits)
            # .copy() clones the table; dict(made) re-inserts every entry once made has lost a path (10x slower)
            out = made.copy()
            for rel, size in net.items():
                if size is None:
                    out.pop(rel, None)
                elif rel in out:  # still there, resized: sent as before (the verdict depends on the path alone)
                    out[rel] = size
                elif self.ignore is None or not self.ignore.excluded(rel):
                    out[rel] = size
            _follow_sorted(made, out, net)
            self._files = out
            self._base = self._edits = None
            return out
        return self._files


@dataclass
class Context:
    """One (context directory, Dockerfile) pair and the services that build it."""

    project: Project
    dir: str
    dockerfile: str
    services: list[str] = field(default_factory=list)
    compose_files: list[str] = field(default_factory=list)
    inferred: bool = False
    builds: list[BuildSpec] = field(default_factory=list)  # each compose build of it (file and line that wrote it)
    _files: dict[str, int] | None = field(default=None, repr=False, compare=False)
    _sent: dict[str, int] | None = field(default=None, repr=False, compare=False)

    @property
    def profiles(self) -> dict[str, tuple[str, ...]]:
        """Service -> the compose profiles it is behind (only the services behind one)."""
        return {b.service: b.profiles for b in self.builds if b.profiles}

    @cached_property
    def ignore_path(self) -> str:
        """The ignore file BuildKit uses for this build, or "" when there is none."""
        specific = self.dockerfile + ".dockerignore"
        if specific in self.project.files:
            return specific
        root = posixpath.join(self.dir, ".dockerignore") if self.dir != "." else ".dockerignore"
        return root if root in self.project.files else ""

    @cached_property  # asked of every context after every commit (which ignore files it may read)
    def default_ignore_path(self) -> str:
        return posixpath.join(self.dir, ".dockerignore") if self.dir != "." else ".dockerignore"

    @cached_property
    def ignore_error(self) -> str:
        """Why Docker would refuse this context's ignore file ("" when it is fine)."""
        return self.project.parsed_ignore(self.ignore_path)[1] if self.ignore_path else ""

    @cached_property
    def ignore(self) -> DockerIgnore:
        """The ignore file's matcher; an invalid one (see ``ignore_error``) counts as empty."""
        parsed = self.project.parsed_ignore(self.ignore_path)[0] if self.ignore_path else None
        return DockerIgnore.empty() if parsed is None else parsed

    def files(self) -> dict[str, int]:
        """Context-relative path -> size, for every file in the context directory (shared per directory)."""
        if self._files is None:
            self._files = self.project.files_under(self.dir)
        return self._files

    def sent(self) -> dict[str, int]:
        """What the classic builder sends: the context minus its ignore file's exclusions.

        Shared by contexts of one directory whose ignore files have the same
        patterns (copied ignore files are common, and the fix writes alike ones).
        """
        if self._sent is None:
            key = (self.dir, self.ignore.key)
            kept = self.project.sent_cache.get(key)
            if kept is None:
                sent = self.project.appended_sent(self.dir, self.ignore)
                kept = self.project.sent_cache[key] = Listing(
                    self.ignore, self.ignore.sent(self.files()) if sent is None else sent
                )
            self.project.sent_asked.add(key)
            self._sent = kept.files
        return self._sent

    def sends(self, path: str) -> bool:
        """Does the builder receive the context-relative ``path`` (``path in sent()``, without listing the rest)?"""
        if self._sent is not None:
            return path in self._sent
        full = path if self.dir in ("", ".") else self.dir.rstrip("/") + "/" + path  # no listing made for one path
        return full in self.project.files and not self.ignore.excluded(path)


class Project:
    """Everything the rules look at, loaded once from a tree (a checkout or a commit)."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.files = tree.files()
        self._sorted = sorted(self.files)
        self._under: dict[str, Listing] = {}
        # (context directory, ignore patterns) -> what is sent; ``sent_asked``: the keys asked of this project
        self.sent_cache: dict[tuple[str, tuple], Listing] = {}
        self.sent_asked: set[tuple[str, tuple]] = set()
        self._text: dict[str, str | None] = {}
        self._ignores: dict[str, tuple[DockerIgnore | None, str]] = {}  # see parsed_ignore
        self.problems: dict[str, InputProblem] = {}
        self.notes: list[tuple[str, str]] = []  # (path, what happened), e.g. decoded with replacement
        self.dockerfiles: dict[str, Dockerfile] = {}
        self.composes: list[ComposeFile] = []
        self.compose_builds: dict[
            str, list[BuildSpec]
        ] = {}  # compose file -> its services' builds (see compose_resolve)
        self.compose_unresolved: list[compose_resolve.Unresolved] = []
        self.compose_inputs: frozenset[str] = frozenset()  # the files the builds were resolved from (.env too)
        self.memo: dict[str, Any] = {}  # what a rule computes once per project (e.g. the build graph)
        # What is computed from the paths alone (not sizes, not contents): secret-looking names, what an ignore
        # pattern excludes in a directory. ``updated`` keeps it while no path is added or removed, and then
        # keeps the entries with a ``follow(old_sorted, new_sorted, added, removed)`` method, updated by it.
        self.names_memo: dict[object, object] = {}
        # What is computed from the paths and sizes alone (what a context sends): ``updated`` keeps it, each
        # entry updated by its ``updated(old_files, new_files, changed)`` -- asked only when a path under its
        # ``dir`` changed, for an entry that has one.
        self.sizes_memo: dict[object, Any] = {}
        for path in filter(_MAYBE_BUILD_FILE.search, self._sorted):  # one C-level test per file, then the exact ones
            if is_dockerfile(path):
                self.dockerfiles[path] = self._dockerfile(path)
            elif compose_mod.is_compose_file(path):
                self.composes.append(self._compose(path))
        self._resolve_composes()
        self.contexts = self._contexts()

    def updated(self, tree: Tree, changed: Iterable[str]) -> Project:
        """This project after ``changed`` paths (added, modified or removed) changed in ``tree``.

        What no changed path touches is reused: the parsed Dockerfiles and
        compose files, the texts read, the sorted paths (changed ones put in
        or taken out), the per-directory listings and what each context
        sends (each ``Listing`` follows the paths added, removed or resized
        under its directory; nothing is listed or matched again). Contexts
        are derived again (cheap). ``tree.files()`` should answer without a walk
        (``DirTree.updated``, ``GitTree.updated``). ``memo`` starts empty.
        """
        if gc.isenabled():
            # No cyclic collection while it runs (the next one, after it, finds what it left): each context
            # made again is a few objects, and the full collections they set off walked every object the
            # run keeps (lists of every path among them) -- 9 s of a scale-10 run's implementer, in _contexts.
            gc.disable()
            try:
                return self.updated(tree, changed)
            finally:
                gc.enable()
        changed = set(changed)
        new = Project.__new__(Project)
        new.tree, new.files = tree, tree.files()
        added = sorted(p for p in changed if p in new.files and p not in self.files)
        removed = sorted(p for p in changed if p in self.files and p not in new.files)
        new._sorted = self._sorted
        if added or removed:  # a copy moved in place (C memmoves), not a filter over every path
            new._sorted = list(self._sorted)
            for path in reversed(removed):
                del new._sorted[bisect.bisect_left(new._sorted, path)]
            for path in added:
                bisect.insort(new._sorted, path)
        moved = sorted(p for p in changed if self.files.get(p) != new.files.get(p))  # same size: nothing to follow
        if "sorted_sizes" in self.__dict__ and moved:  # carried, not rebuilt: a list of every file's size
            sizes = list(self.sorted_sizes)
            for path in reversed(removed):
                del sizes[bisect.bisect_left(self._sorted, path)]
            for path in added:
                sizes.insert(bisect.bisect_left(new._sorted, path), 0)
            for path in moved:
                if path in new.files:
                    sizes[bisect.bisect_left(new._sorted, path)] = new.files[path]
            new.__dict__["sorted_sizes"] = sizes
        elif "sorted_sizes" in self.__dict__:
            new.__dict__["sorted_sizes"] = self.sorted_sizes
        # Listings follow the paths that changed under their directory (made when next asked for: ``Listing``).
        touched = _dirs_touched(moved)  # a listing of any other directory has nothing to follow
        new._under = {
            d: listing.follow(_edits(moved, d, new.files)) if d.rstrip("/") in touched else listing
            for d, listing in self._under.items()
        }
        new.sent_cache, new.sent_asked = {}, set()
        # Problems and notes of unchanged files stay; a problem is carried only for a Dockerfile or compose
        # file (found while loading, as a fresh project finds them before any rule runs).
        new._text = self._text.copy()  # copied in C, then the few changed paths dropped
        for path in (*changed, *self.problems):
            new._text.pop(path, None)
        # an ignore file whose problem is not carried is read again (its problem found again, as a fresh project finds it)
        new._ignores = {p: v for p, v in self._ignores.items() if p not in changed and p not in self.problems}
        compose_paths = self._compose_paths
        new.problems = {
            p: v for p, v in self.problems.items() if p not in changed and (p in self.dockerfiles or p in compose_paths)
        }
        new._text.update((p, None) for p in new.problems)
        new.notes = [(p, m) for p, m in self.notes if p not in changed]
        new.memo = {}
        new.names_memo = self.names_memo
        new.sizes_memo = {  # an entry that names its ``dir`` is asked only when a path under it moved
            k: v.updated(self.files, new.files, moved)
            if (d := getattr(v, "dir", None)) is None or d.rstrip("/") in touched
            else v
            for k, v in self.sizes_memo.items()
        }
        if added or removed:  # an entry that can follow added and removed paths does; the others are made again
            new.names_memo = {
                key: value.follow(self._sorted, new._sorted, added, removed)
                for key, value in self.names_memo.items()
                if hasattr(value, "follow")
            }
        composes = {c.path: c for c in self.composes}
        if not any(_MAYBE_BUILD_FILE.search(p) for p in (*added, *removed)):
            # The same Dockerfiles and compose files as before, in the same (sorted) order: the changed ones are
            # parsed again, in path order as a fresh project reads them (their notes come in that order).
            new.dockerfiles = self.dockerfiles.copy()
            for path in sorted(p for p in changed if p in composes or p in new.dockerfiles):
                if path in new.dockerfiles:
                    new.dockerfiles[path] = new._dockerfile(path)
                else:
                    composes[path] = new._compose(path)
            new.composes = list(composes.values())
        else:
            candidates = set(self.dockerfiles) | set(composes) | {p for p in changed if _MAYBE_BUILD_FILE.search(p)}
            new.dockerfiles, new.composes = {}, []
            for path in sorted(p for p in candidates if p in new.files):
                if is_dockerfile(path):
                    new.dockerfiles[path] = (
                        self.dockerfiles[path]
                        if path in self.dockerfiles and path not in changed
                        else new._dockerfile(path)
                    )
                elif compose_mod.is_compose_file(path):
                    new.composes.append(
                        composes[path] if path in composes and path not in changed else new._compose(path)
                    )
        if changed & (self.compose_inputs | self._compose_paths) or any(
            map(compose_mod.is_compose_file, added + removed)
        ):
            # Resolved together again: a changed .env, override or included file moves contexts, and so does an
            # added or removed file the resolution looked for (a Dockerfile a build names: ``compose_inputs``).
            new.compose_builds, new.compose_unresolved, new.compose_inputs = {}, [], frozenset()
            new._resolve_composes()
        else:  # nothing the resolution read changed, and no file came or went: its answer stands
            new.compose_builds, new.compose_unresolved = self.compose_builds, self.compose_unresolved
            new.compose_inputs = self.compose_inputs
        new.contexts = new._contexts()
        # What each context sends follows too, while its directory still has a context; of a directory's
        # ignore versions, those asked for in this project are kept (and the others while none was asked).
        dirs = {c.dir for c in new.contexts}
        asked = {d for d, _ in self.sent_asked}
        for (directory, key), kept in self.sent_cache.items():
            if directory in dirs and ((directory, key) in self.sent_asked or directory not in asked):
                new.sent_cache[(directory, key)] = (
                    kept.follow(_edits(moved, directory, new.files)) if directory.rstrip("/") in touched else kept
                )
        return new

    @property
    def _compose_paths(self) -> set[str]:
        return {c.path for c in self.composes}

    @property
    def sorted_paths(self) -> list[str]:
        """Every file's path, sorted: the files under a directory are one contiguous run of it."""
        return self._sorted

    @cached_property
    def sorted_sizes(self) -> list[int]:
        """The sizes of ``sorted_paths``, index for index."""
        return [self.files[p] for p in self._sorted]

    def files_under(self, directory: str) -> dict[str, int]:
        """Directory-relative path -> size for the files below ``directory`` (a bisect on the sorted paths, cached)."""
        if directory not in self._under:
            if directory in ("", "."):
                paths = self._sorted  # sorted, as below
                listed = dict(zip(paths, map(self.files.__getitem__, paths)))
                _remember_sorted(listed, paths)  # its sorted paths are at hand: not sorted again when asked
                self._under[directory] = Listing(None, listed)
            else:
                prefix = directory.rstrip("/") + "/"
                lo, hi = span(self._sorted, prefix)
                paths = self._sorted[lo:hi]
                relatives = list(map(operator.itemgetter(slice(len(prefix), None)), paths))  # in C, not per path
                listed = dict(zip(relatives, map(self.files.__getitem__, paths)))
                _remember_sorted(listed, relatives)  # sorted too: one prefix taken off sorted paths
                self._under[directory] = Listing(None, listed)
        return self._under[directory].files

    def appended_sent(self, directory: str, ignore: DockerIgnore) -> dict[str, int] | None:
        """What a context of ``directory`` sends under ``ignore``, derived from what it sent under an ignore
        file whose patterns ``ignore`` only extends with exclude patterns (no "!"); None when none was kept.

        Exact, as Docker matches: the last matching pattern wins, and an appended exclude pattern comes after
        every other, so a file stays excluded, and a file sent before is left out only when an appended
        pattern hits it (matches it or a directory above it) -- on its own when the old patterns have no "!",
        and otherwise asked of the whole new list (a "!" may re-include a file under a directory the old
        patterns already excluded; there the appended pattern is not tried on that directory). The walk
        skips the same directories as before and more (its skipping depends on the same "!" patterns). What
        each appended pattern hits on its own comes from the directory's per-pattern index, shared with
        ``context_size`` and kept across commits.
        """
        from agent_pipelines.pipelines.docker_optimization.model.context_size import _Dir

        new = ignore.patterns
        if ignore.flavor == "legacy":  # legacy checks parents at each pattern's depth, not along the walk
            return None
        base: Listing | None = None
        for (d, _), kept in self.sent_cache.items():
            assert kept.ignore is not None
            old = kept.ignore.patterns
            if (
                d == directory
                and kept.ignore.flavor == ignore.flavor
                and len(old) < len(new)
                and new[: len(old)] == old
                and not any(p.exclusion for p in new[len(old) :])
                and (base is None or len(old) > len(base.ignore.patterns))  # type: ignore[union-attr]
            ):
                base = kept
        if base is None:
            return None
        assert base.ignore is not None
        sent = base.files
        cut = 0 if directory in ("", ".") else len(directory.rstrip("/")) + 1
        hit = set().union(*_Dir.of(self, directory).excluded_by([p.text for p in new[len(base.ignore.patterns) :]]))
        gone = [r for r in (path[cut:] for path in hit) if r in sent]
        if base.ignore.has_reinclusions:
            gone = [r for r in gone if ignore.excluded(r)]
        out = sent.copy()  # the table cloned (not dict(): see Listing.files); then only what leaves
        for rel in gone:
            del out[rel]
        return out

    def parsed_ignore(self, path: str) -> tuple[DockerIgnore | None, str]:
        """An ignore file parsed once for every context that uses it, and kept by ``updated`` while it is
        unchanged (a 100k-line file costs): (the matcher, ""), or (None, why Docker refuses it)."""
        if path not in self._ignores:
            try:
                self._ignores[path] = (DockerIgnore.from_text(self.text(path) or "", source=path), "")
            except ValueError as err:
                self._ignores[path] = (None, str(err))
        return self._ignores[path]

    def text(self, path: str) -> str | None:
        """The file's text; None when it is absent or could not be read (see ``problems``)."""
        if path not in self._text:
            self._text[path] = self._read_text(path)
        return self._text[path]

    def _read_text(self, path: str) -> str | None:
        size = self.files.get(path, 0)
        if size > MAX_TEXT_BYTES:
            self._problem(path, "PX004", f"{size} bytes, over the {MAX_TEXT_BYTES} byte limit: not read")
            return None
        try:
            data = self.tree.read(path)
        except KeyError:
            return None
        except OSError as err:
            self._problem(path, "PX005", f"cannot be read: {err.strerror or err}")
            return None
        if len(data) > MAX_TEXT_BYTES:
            self._problem(path, "PX004", f"{len(data)} bytes, over the {MAX_TEXT_BYTES} byte limit: not read")
            return None
        if b"\0" in data[:BINARY_PROBE]:
            self._problem(path, "PX003", "binary content (NUL bytes), not a text file: not analyzed")
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            self.notes.append(
                (path, f"not valid UTF-8 (first bad byte at offset {err.start}): analyzed with replacement characters")
            )
            return data.decode("utf-8", errors="replace")

    def _problem(self, path: str, code: str, message: str) -> None:
        self.problems[path] = InputProblem(path, code, message)
        return None

    def _dockerfile(self, path: str) -> Dockerfile:
        text = self.text(path)
        if text is None and path in self.problems:
            return Dockerfile(path=path, text="", error=self.problems[path].message)
        try:
            return _parsed(Dockerfile.parse, path, text or "")  # the parser in the key: a test may replace it
        except Exception as err:  # the parser must never stop the analysis
            return Dockerfile(path=path, text=text or "", error=f"the parser failed: {type(err).__name__}: {err}")

    def _compose(self, path: str) -> ComposeFile:
        text = self.text(path)
        if text is None and path in self.problems:
            return ComposeFile(path=path, text="", error=self.problems[path].message)
        try:
            return compose_mod.load(path, text or "")
        except Exception as err:  # YAML that loads but isn't shaped like compose (odd build/args types)
            return ComposeFile(
                path=path, text=text or "", error=f"could not be read as compose: {type(err).__name__}: {err}"
            )

    def _resolve_composes(self) -> None:
        """Each compose file's builds as compose resolves them; files only included count too."""
        loaded = {c.path: c for c in self.composes}

        def read(path: str) -> ComposeFile | None:
            if path not in loaded:
                if path not in self.files:
                    return None
                loaded[path] = self._compose(path)
            return loaded[path]

        try:
            resolution = compose_resolve.resolve(
                [c.path for c in self.composes], read, self.text, self.files.__contains__
            )
        except Exception as err:  # compose shaped in a way nobody foresaw must not stop the analysis
            self.notes.append(
                (
                    "",
                    f"compose files could not be resolved together ({type(err).__name__}: {err}); "
                    "their builds are not analyzed",
                )
            )
            return
        self.compose_builds = resolution.builds
        self.compose_unresolved = resolution.unresolved
        self.compose_inputs = resolution.inputs
        self.composes = [dataclasses.replace(c, builds=resolution.builds.get(c.path, [])) for c in self.composes]

    def _contexts(self) -> list[Context]:
        found: dict[tuple[str, str], Context] = {}
        for owner, builds in self.compose_builds.items():
            for build in builds:
                key = (build.context, build.dockerfile)
                ctx = found.get(key)
                if ctx is None:  # made once per pair, not once per build naming it
                    ctx = found[key] = Context(self, build.context, build.dockerfile)
                if build.service not in ctx.services:
                    ctx.services.append(build.service)
                if owner not in ctx.compose_files:
                    ctx.compose_files.append(owner)
                ctx.builds.append(build)
        built = {df for _, df in found}
        for path in self.dockerfiles:
            if path not in built:
                found[(posixpath.dirname(path) or ".", path)] = Context(
                    self, posixpath.dirname(path) or ".", path, inferred=True
                )
        return list(found.values())

    def contexts_of(self, dockerfile: str) -> list[Context]:
        return self._index("by_dockerfile", lambda c: c.dockerfile).get(dockerfile, [])

    def contexts_in(self, directory: str) -> list[Context]:
        """The contexts rooted at ``directory`` (an index: rules ask once per context)."""
        return self._index("by_dir", lambda c: c.dir).get(directory, [])

    def _index(self, name: str, key) -> dict[str, list[Context]]:
        if name not in self.memo:
            index: dict[str, list[Context]] = {}
            for c in self.contexts:
                index.setdefault(key(c), []).append(c)
            self.memo[name] = index
        return self.memo[name]

    def services_of(self, path: str) -> list[str]:
        """Compose services a file concerns (its Dockerfile's or its context's builders)."""
        names = []
        for ctx in self.contexts:
            if path == ctx.dockerfile or path in (ctx.ignore_path, ctx.default_ignore_path):
                names += ctx.services or [posixpath.basename(posixpath.dirname(ctx.dockerfile)) or ctx.dockerfile]
        return sorted(set(names))
