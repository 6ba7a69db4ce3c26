"""Docker-exact .dockerignore matching: which files a ``docker build`` really sends.

What differs from .gitignore, and why we don't use pathspec:
- a pattern is anchored at the context root: ``node_modules`` or ``*.pyc`` match
  only at the root; ``**/node_modules`` matches at any depth;
- patterns are path-cleaned (``./a/../b/`` is ``b``; a leading ``/`` is dropped);
- ``*`` and ``?`` never cross ``/``; ``**`` crosses any number of directories;
- a pattern becomes a Go regexp: ``[^a]`` negates, ``[!a]`` is a class of ``!``
  and ``a``, ``\\d`` is a digit, and ``[a*]`` is not what it looks like;
- a pattern that matches a directory excludes everything under it;
- the last matching pattern wins, and ``!pattern`` re-includes;
- the sender walks the tree and skips an excluded directory unless a ``!``
  pattern spells out a path under it, so ``!**/keep`` rarely reaches back in.

Docker versions disagree on the corners, so ``flavor`` names the sender (legacy
and classic are checked against real builds; buildkit's walk is read from fsutil):
- ``"buildkit"`` (default), Docker 23+ with buildx: moby/patternmatcher, and
  fsutil's walk, which enters every directory once a ``!`` pattern has a wildcard;
- ``"classic"``, Docker 23+ with DOCKER_BUILDKIT=0: the same matcher, pkg/archive's walk;
- ``"legacy"``, Docker 20.10 and older: pkg/fileutils escapes only ``.`` and ``$``
  (``a+.txt`` is a regexp), has no exact/prefix/suffix shortcuts (``**.md`` is
  ``**/.md``, ``^a`` anchors) and checks a parent directory only at the pattern's depth.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from agent_pipelines.engine import linear
from agent_pipelines.pipelines.docker_optimization.model.paths import span

FLAVORS = ("buildkit", "classic", "legacy")
# Go's unicode.IsSpace (strings.TrimSpace); Python's str.strip() also eats \x1c-\x1f.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# Go's \d \w \s and POSIX classes (all ASCII; Go's \s has no \v), as Python class bodies.
_PERL = {"d": "0-9", "w": "0-9A-Za-z_", "s": r"\t\n\f\r "}
_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": r"\x00-\x7f",
    "blank": r"\t ",
    "cntrl": r"\x00-\x1f\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": r"!-/:-@\[-`{-~",
    "space": r"\t\n\v\f\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_CONTROL = {"a": "\a", "f": "\f", "t": "\t", "n": "\n", "r": "\r", "v": "\v"}
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned pattern, without "!"
    exclusion: bool  # True for "!pattern" (re-include)
    flavor: str = "buildkit"
    depth: int = field(default=0, compare=False)  # path components, for legacy's single parent check

    @cached_property
    def regex(self) -> re.Pattern[str] | linear.Re2Pattern:
        """Compiled on first use: a 100,000-line .dockerignore has most of its patterns never tried."""
        return compile_pattern(self.text, self.flavor)

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def _go_clean(path: str) -> str:
    """Go's filepath.Clean ("//a" is "/a", which posixpath.normpath keeps)."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def clean(pattern: str) -> str:
    """filepath.Clean + ToSlash + strip a leading "/" as moby's ignorefile.ReadAll does."""
    cleaned = _go_clean(pattern)
    return cleaned[1:] if len(cleaned) > 1 and cleaned.startswith("/") else cleaned


def parse_lines(text: str) -> list[str]:
    """The patterns of a .dockerignore file, in order, cleaned; comments and blanks dropped.

    Lines are split as Go's bufio.ScanLines does (on "\\n", one trailing "\\r"
    dropped), one BOM is dropped from the first line, and "#" is a comment only
    in the first column.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    patterns = []
    for index, raw in enumerate(lines):
        raw = raw.removesuffix("\r")
        if index == 0:
            raw = raw.removeprefix("\ufeff")
        if raw.startswith("#"):
            continue
        line = raw.strip(_GO_SPACE)
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip(_GO_SPACE)
        if line:
            line = clean(line)
        patterns.append(("!" + line) if invert else line)
    return patterns


def _check_glob(pattern: str) -> None:
    """Raise ValueError where Go's filepath.Match would return ErrBadPattern (Docker refuses to build)."""

    def esc_char(i: int) -> int:  # filepath.getEsc: one class character; something must follow it
        if i >= n or pattern[i] in "-]":
            raise ValueError(f"invalid .dockerignore pattern {pattern!r}: bad character class")
        if pattern[i] == "\\":
            i += 1
        if i + 1 >= n:
            raise ValueError(f"invalid .dockerignore pattern {pattern!r}: unterminated character class")
        return i + 1

    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "\\":
            if i + 1 >= n:
                raise ValueError(f"invalid .dockerignore pattern {pattern!r}: trailing backslash")
            i += 2
        elif pattern[i] == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            ranges = 0
            while not (i < n and pattern[i] == "]" and ranges):
                i = esc_char(i)
                if pattern[i] == "-":
                    i = esc_char(i + 1)
                ranges += 1
            i += 1
        else:
            i += 1


def _go_regexp(pattern: str, legacy: bool) -> tuple[str, str]:
    """(match type, Go regexp source) exactly as patternmatcher's compile() builds them."""
    escaped = ".$" if legacy else ".+()|{}$"
    out, kind, i, n, token = ["^"], "exact", 0, len(pattern), 0
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*" and i < n and pattern[i] == "*":
            i += 1
            if i < n and pattern[i] == "/":
                i += 1
            if i >= n and kind == "exact" and not legacy:
                kind = "prefix"
            else:
                out.append(".*" if i >= n else "(.*/)?")
                kind = "regexp"
            if token == 0 and not legacy:
                kind = "suffix"
        elif ch == "*":
            out.append("[^/]*")
            kind = "regexp"
        elif ch == "?":
            out.append("[^/]")
            kind = "regexp"
        elif ch in escaped:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append("\\" + pattern[i])
                i += 1
                kind = "regexp"
            else:
                out.append("\\")
        elif ch in "[]":
            out.append(ch)
            kind = "regexp"
        else:
            out.append(ch)  # Go passes every other rune through, "^" included
        token += 1
    out.append("$")
    return ("regexp" if legacy else kind), "".join(out)


def _class_char(go: str, i: int) -> tuple[str, int]:
    if go[i] != "\\":
        return go[i], i + 1
    if i + 1 >= len(go):
        raise ValueError("trailing backslash")
    e = go[i + 1]
    if e in _CONTROL:
        return _CONTROL[e], i + 2
    if e.isascii() and not e.isalnum():
        return e, i + 2
    raise ValueError(f"Go regexp escape \\{e} is not reproduced")


def _py_char(c: str) -> str:
    return c if c.isalnum() or not c.isascii() else "\\" + c


def _go_class(go: str, i: int) -> tuple[str, int]:
    """A Go character class starting after its "[" as a Python one (Go's "[" inside a class is literal)."""
    negate = i < len(go) and go[i] == "^"
    i += negate
    items: list[str] = []
    first = True
    while True:
        if i >= len(go):
            raise ValueError("missing closing ]")
        if go[i] == "]" and not first:
            return "[" + "^" * negate + "".join(items) + "]", i + 1
        first = False
        if go.startswith("[:", i) and (end := go.find(":]", i + 2)) != -1:
            name = go[i + 2 : end]
            if name not in _POSIX:
                raise ValueError(f"POSIX class [:{name}:] is not reproduced")
            items.append(_POSIX[name])
            i = end + 2
            continue
        if go[i] == "\\" and i + 1 < len(go) and go[i + 1] in "dDsSwW":
            e = go[i + 1]
            items.append(_PERL[e] if e in _PERL else "\\" + e)  # Python's ASCII \S also excludes \v
            i += 2
            continue
        lo, i = _class_char(go, i)
        hi = lo
        if i + 1 < len(go) and go[i] == "-" and go[i + 1] != "]":
            hi, i = _class_char(go, i + 1)
            if hi < lo:
                raise ValueError("invalid character class range")
        items.append(_py_char(lo) if lo == hi else f"{_py_char(lo)}-{_py_char(hi)}")


def _python_regexp(go: str) -> str:
    """Go regexp (the subset compile() can produce) -> Python regexp with the same matches."""
    out: list[str] = []
    last = None  # what a repetition would apply to: None (nothing), "atom", "anchor" or "repeat"
    i = 0
    while i < len(go):
        c = go[i]
        i += 1
        repeat = None
        if c in "*+?":
            repeat = c
        elif c == "{" and (m := _REPEAT.match(go, i - 1)):
            repeat, i = m.group(0), m.end()
        if repeat is not None:
            if last in (None, "repeat"):  # Go: missing argument / invalid nested repetition
                raise ValueError(f"invalid repetition {repeat!r}")
            if last == "anchor":  # Go repeats an empty-width assertion; Python needs a group
                out[-1] = f"(?:{out[-1]})"
            out.append(repeat)
            last = "repeat"
            continue
        if c == "\\":
            if i >= len(go):
                raise ValueError("trailing backslash")
            e = go[i]
            i += 1
            if e in "dwsDWS":
                out.append(("[" if e.islower() else "[^") + _PERL[e.lower()] + "]")
            elif e in "bBAz":
                out.append("\\Z" if e == "z" else "\\" + e)
                last = "anchor"
                continue
            else:
                out.append(re.escape(_class_char(go, i - 2)[0]))
            last = "atom"
        elif c == "[":
            text, i = _go_class(go, i)
            out.append(text)
            last = "atom"
        elif c in "^$":
            out.append("^" if c == "^" else "\\Z")  # Go's $ is end of text; Python's also matches before a final \n
            last = "anchor"
        elif c in "(|":
            out.append(c)
            last = None
        elif c == ")":
            out.append(c)
            last = "atom"
        elif c == ".":
            out.append(".")  # neither Go's nor Python's "." matches "\n" by default
            last = "atom"
        else:
            out.append(re.escape(c))
            last = "atom"
    return "".join(out)


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str, flavor: str = "buildkit") -> re.Pattern[str] | linear.Re2Pattern:
    """One cleaned pattern (without "!") as a regex that matches exactly what Docker's does, in linear time."""
    _check_glob(pattern)
    kind, go = _go_regexp(pattern, legacy=flavor == "legacy")
    if kind == "exact":
        source = r"\A" + re.escape(pattern) + r"\Z"
    elif kind == "prefix":
        source = r"\A" + re.escape(pattern[:-2])
    elif kind == "suffix":  # strings.HasSuffix(path, p[2:]), or "**/foo" matching "foo"
        suffix = pattern[2:]
        if suffix.startswith("/"):
            source = r"\A(?:(?s:.*)/)?" + re.escape(suffix[1:]) + r"\Z"
        else:
            source = r"\A(?s:.*)" + re.escape(suffix) + r"\Z"
    else:
        try:
            source = _python_regexp(go)
        except ValueError as err:
            raise ValueError(f"invalid .dockerignore pattern {pattern!r}: {err}") from None
    try:  # exact, prefix and suffix are one literal and at most one ".*": no backtracking
        return linear.compile(source, re.ASCII, safe=kind != "regexp")
    except re.error as err:
        raise ValueError(f"invalid .dockerignore pattern {pattern!r}: {err}") from None


def _checked(pattern: str, flavor: str) -> str:
    """Raise ValueError where compile_pattern would; return the pattern's match kind (exact, prefix, suffix, regexp).

    Compiling a regex is most of the cost of a long .dockerignore, so a pattern whose regex cannot fail to
    compile is only checked here and compiled when a path reaches it. That is one without "[", "]" or "\\"
    outside legacy: its Go regexp is escaped literals, "[^/]", "[^/]*", ".*" and "(.*/)?" (every other
    metacharacter is escaped), and those always compile.
    """
    legacy = flavor == "legacy"
    if legacy or set(pattern) & set("[]\\"):
        compile_pattern(pattern, flavor)
    else:
        _check_glob(pattern)
    return _go_regexp(pattern, legacy)[0]


def _literal_head(pattern: str) -> str:
    """The literal text every path a buildkit/classic "regexp" pattern matches starts with (before "*?[]\\^")."""
    for i, c in enumerate(pattern):
        if c in "*?[]\\^":
            return pattern[:i]
    return pattern


class _Index:
    """ "Which patterns match this path?" without trying each: the literal kinds (exact, prefix, suffix)
    are dictionary lookups of the path's prefixes and suffixes, and a "regexp" pattern is tried only
    on paths that start with its literal head. The answer is the same as ``p.match(path)`` for each p.
    """

    def __init__(self, patterns: list[Pattern], kinds: list[str]) -> None:
        self.patterns = patterns
        self.exact: dict[str, list[int]] = {}
        self.prefix: dict[str, list[int]] = {}
        self.below: dict[str, list[int]] = {}  # "**/foo": the path is foo or ends with "/foo"
        self.suffix: dict[str, list[int]] = {}  # "**foo": the path ends with foo
        self.head: dict[str, list[int]] = {}
        for i, (p, kind) in enumerate(zip(patterns, kinds)):
            if kind == "exact":
                self.exact.setdefault(p.text, []).append(i)
            elif kind == "prefix":
                self.prefix.setdefault(p.text[:-2], []).append(i)
            elif kind == "suffix" and p.text[2:].startswith("/"):
                self.below.setdefault(p.text[3:], []).append(i)
            elif kind == "suffix":
                self.suffix.setdefault(p.text[2:], []).append(i)
            else:
                self.head.setdefault(_literal_head(p.text), []).append(i)
        # "**/foo" with no "/" in foo (the common kind) can only name the last component: one lookup, not one per "/"
        self.below_deep = any("/" in k for k in self.below)
        self.prefix_lengths = sorted({len(k) for k in self.prefix})
        self.suffix_lengths = sorted({len(k) for k in self.suffix})
        self.head_lengths = sorted({len(k) for k in self.head})
        # "**/*.pyc", "**/.env.*": a pattern that can only match the last component ("*" and "?" never match
        # "/"; a class or an escape might) gives the same answer for every path with that name, so its
        # verdict (one RE2 call, the costly part of a pass over 20,000 paths) is kept per name.
        self.by_name: dict[str, list[int]] | None = (
            {} if all(_name_only(patterns[i].text) for i in self.head.get("", [])) else None
        )
        # ... and a name is tried only on the patterns whose literal start and end it has ("*.pyc": ends with
        # ".pyc"), most names on none: the regex runs for the few that may match.
        self.name_ends = [(i, *_literal_ends(patterns[i].text[3:])) for i in self.head.get("", [])]
        self.unanchored: linear.Union | None
        try:  # one call rules out most paths for the patterns with no literal head ("*.pyc")
            self.unanchored = linear.Union([patterns[i].regex for i in self.head.get("", [])], re.ASCII)
        except Exception:  # re.error, or RE2's "pattern too large" for a long union: then each is tried in turn
            self.unanchored = None

    def hits(self, path: str) -> list[int]:
        """The indices of the patterns that match ``path``, in order."""
        found = list(self.exact.get(path, ()))
        n = len(path)
        for k in self.prefix_lengths:
            if k > n:
                break
            found += self.prefix.get(path[:k], ())
        if self.below_deep:
            found += self.below.get(path, ())
            cut = path.find("/")
            while cut != -1:
                found += self.below.get(path[cut + 1 :], ())
                cut = path.find("/", cut + 1)
        elif self.below:
            found += self.below.get(path[path.rfind("/") + 1 :], ())
        for k in self.suffix_lengths:
            if k > n:
                break
            found += self.suffix.get(path[n - k :], ())
        for k in self.head_lengths:
            if k > n:
                break
            if k == 0 and self.by_name is not None and "\n" not in path:  # "(.*/)?" does not cross a newline
                name = path[path.rfind("/") + 1 :]
                named = self.by_name.get(name)
                if named is None:
                    named = self.by_name[name] = [
                        i
                        for i, start, end in self.name_ends
                        if name.startswith(start)
                        and name.endswith(end)
                        and len(name) >= len(start) + len(end)
                        and self.patterns[i].match(name)
                    ]
                found += named
                continue
            if k == 0 and self.unanchored is not None and self.unanchored.match(path) is None:
                continue
            found += (i for i in self.head.get(path[:k], ()) if self.patterns[i].match(path))
        return sorted(found) if len(found) > 1 else found


def _literal_ends(glob: str) -> tuple[str, str]:
    """The literal text before the first and after the last wildcard ("*" or "?") of a glob without classes."""
    first = min((i for i in (glob.find("*"), glob.find("?")) if i >= 0), default=len(glob))
    last = max(glob.rfind("*"), glob.rfind("?"))
    return glob[:first], glob[last + 1 :] if last >= 0 else ""


def _name_only(text: str) -> bool:
    """Does the buildkit/classic pattern ``text`` match a path exactly when it matches the path's last name?
    "**/" then a glob of "*", "?" and plain characters: ``(.*/)?`` takes every directory, and the rest
    cannot match a "/"."""
    rest = text[3:]
    return text.startswith("**/") and bool(rest) and not any(c in "/[]\\^" for c in rest) and "**" not in rest


def _without_trailing_glob(text: str) -> str:
    return text.removesuffix("/**").removesuffix("/*")


_EMPTY: DockerIgnore | None = None


class DockerIgnore:
    """A compiled .dockerignore: ``excluded(path)`` answers for a context-relative file path.

    Invalid patterns (a lone "!", an unclosed "[", ...) raise ValueError: Docker refuses the build.
    """

    def __init__(self, patterns: list[str], source: str = "", flavor: str = "buildkit") -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}; one of {', '.join(FLAVORS)}")
        self.source = source
        self.flavor = flavor
        self.patterns: list[Pattern] = []
        kinds: list[str] = []
        for raw in patterns:  # patternmatcher.New: trim, skip blanks, clean (with the "!"), then split it off
            p = raw.strip(_GO_SPACE)
            if not p:
                continue
            p = _go_clean(p)
            exclusion = p.startswith("!")
            if exclusion:
                p = p[1:]
                if not p:
                    raise ValueError('invalid .dockerignore pattern "!": nothing to re-include')
            kinds.append(_checked(p, flavor))
            self.patterns.append(Pattern(p, exclusion, flavor, p.count("/") + 1))
        # legacy checks parents at each pattern's depth, not through the walk: no index, every pattern is tried
        self._index = _Index(self.patterns, kinds) if flavor != "legacy" else None
        self.has_reinclusions = any(p.exclusion for p in self.patterns)
        reincluded = [p.text for p in self.patterns if p.exclusion]
        if flavor == "buildkit":
            reincluded = [_without_trailing_glob(t) for t in reincluded]
        # Excluded directories are skipped unless a "!" pattern lies under them; BuildKit's fsutil
        # gives up that shortcut (and walks everything) once a "!" pattern has a wildcard.
        self._prune = flavor != "buildkit" or not any(set(t) & set("*[]?^\\") for t in reincluded)
        self._reincluded = tuple(t + "/" for t in reincluded)
        self._dirs: dict[str, tuple[bool, tuple[int, ...] | None, bool, str]] = {}

    @property
    def key(self) -> tuple:
        """What the verdicts depend on: two ignore files with the same patterns send the same files."""
        return (self.flavor, tuple((p.text, p.exclusion) for p in self.patterns))

    @classmethod
    def from_text(cls, text: str, source: str = "", flavor: str = "buildkit") -> DockerIgnore:
        return cls(parse_lines(text), source, flavor)

    @classmethod
    def empty(cls) -> DockerIgnore:
        """No patterns: every file is sent. One shared instance: its only state is a cache of verdicts, and
        making an index for each context without an ignore file, at every commit, cost 6% of a replay."""
        global _EMPTY
        if _EMPTY is None:
            _EMPTY = cls([], "")
        return _EMPTY

    def _matches(self, path: str, parent: tuple[int, ...] | None) -> tuple[bool, tuple[int, ...] | None]:
        """Is ``path`` matched; and which patterns (indices, in order) it or a parent hit (for the children)."""
        matched = False
        if self.flavor == "legacy":  # pkg/fileutils Matches: the parent is tried at the pattern's depth only
            dirs = path.split("/")[:-1]
            for p in self.patterns:
                if p.exclusion != matched:
                    continue
                hit = p.match(path) or (p.depth <= len(dirs) and p.match("/".join(dirs[: p.depth])))
                if hit:
                    matched = not p.exclusion
            return matched, None
        # patternmatcher MatchesUsingParentResults, walking down from the root: a pattern hits when it hit a
        # parent, or matches the path and could change the verdict. Only the patterns that hit the parent or
        # match the path are visited (``hits`` holds the indices of those that hit), in the patterns' order.
        assert self._index is not None
        found = self._index.hits(path)
        own: Collection[int] = found
        inherited: Collection[int]
        if not parent:
            candidates, inherited = found, ()
        else:
            inherited = frozenset(parent)
            candidates = sorted(inherited.union(found))
            own = frozenset(found)
        hits = []
        for index in candidates:
            p = self.patterns[index]
            if index in inherited or p.exclusion == matched and index in own:
                hits.append(index)
                matched = not p.exclusion
        return matched, tuple(hits)

    def _dir(self, path: str) -> tuple[bool, tuple[int, ...] | None, bool, str]:
        """(skipped by the walk, per-pattern hits, matched, the skipped ancestor) for the directory ``path``, memoised."""
        state = self._dirs.get(path)
        if state is None:
            parent = self._dir(path.rsplit("/", 1)[0]) if "/" in path else _ROOT
            if parent[0]:
                state = parent
            else:
                matched, hits = self._matches(path, parent[1])
                skipped = matched and self._prune and not any(t.startswith(path + "/") for t in self._reincluded)
                state = (skipped, hits, matched, path)  # path: the directory whose skip this is
            self._dirs[path] = state
        return state

    def excluded(self, path: str) -> bool:
        """True when the file at ``path`` (relative, with "/") is left out of the context."""
        if not self.patterns:
            return False
        skipped, hits, matched, _ = self._dir(path.rsplit("/", 1)[0]) if "/" in path else _ROOT
        if skipped:
            return True
        # When no pattern names the file itself, its state is its directory's (the last hit wins).
        if self._index is not None and not self._index.hits(path):
            return matched
        return self._matches(path, hits)[0]

    def sent(self, files: dict[str, int]) -> dict[str, int]:
        """The subset of ``files`` (path -> size) the builder receives."""
        if not self.patterns:
            return files.copy()  # the table cloned: dict() re-inserts every entry of a listing that lost paths
        if self._index is None:
            return {p: s for p, s in files.items() if not self.excluded(p)}
        # excluded() inlined over the sorted paths: an excluded directory is passed over with one bisect,
        # a run of files in one directory costs one lookup, and a file one regex.
        keys = sorted(files)
        out, hits, i, end = {}, self._index.hits, 0, len(keys)
        last_dir, state = None, _ROOT
        while i < end:
            path = keys[i]
            cut = path.rfind("/")
            directory = path[:cut] if cut > 0 else ""
            if directory != last_dir:
                state, last_dir = (self._dir(directory) if directory else _ROOT), directory
            if state[0]:
                i = span(keys, state[3] + "/", i)[1]
                continue
            i += 1
            if not (self._matches(path, state[1])[0] if hits(path) else state[2]):
                out[path] = files[path]
        return out


_ROOT: tuple[bool, tuple[int, ...] | None, bool, str] = (False, None, False, "")


def excluded_by_each(patterns: list[str], files: Iterable[str]) -> dict[str, list[str]]:
    """For each exclude pattern, the ``files`` it would leave out on its own (``DockerIgnore([p]).excluded``).

    The same answer as asking each pattern about each file, in one pass: the
    patterns' index names those that match a file or directory, and a
    directory's verdicts are kept for everything below it.
    """
    # DockerIgnore(patterns) keeps the non-blank ones, in order, each as DockerIgnore([p]) would
    together = DockerIgnore(list(patterns))
    assert together._index is not None
    numbers = [i for i, p in enumerate(patterns) if p.strip(_GO_SPACE)]
    matching = together._index.hits
    below: dict[str, frozenset[int]] = {"": frozenset()}

    def under(directory: str) -> frozenset[int]:
        found = below.get(directory)
        if found is None:
            cut = directory.rfind("/")
            found = under(directory[:cut] if cut > 0 else "")
            if hit := matching(directory):
                found = found | {numbers[j] for j in hit}
            below[directory] = found
        return found

    lists: list[list[str]] = [[] for _ in patterns]
    for path in files:
        cut = path.rfind("/")
        hits = under(path[:cut] if cut > 0 else "")
        if hit := matching(path):
            hits = hits | {numbers[j] for j in hit}
        for i in hits:
            lists[i].append(path)
    return dict(zip(patterns, lists))
