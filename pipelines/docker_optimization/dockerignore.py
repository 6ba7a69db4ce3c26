"""Docker-exact .dockerignore matching (moby/patternmatcher semantics, not .gitignore's).

What differs from .gitignore, and why we don't use pathspec:
- a pattern is anchored at the context root: ``node_modules`` or ``*.pyc`` match
  only at the root; ``**/node_modules`` matches at any depth;
- patterns are path-cleaned (``./a/../b/`` is ``b``; a leading ``/`` is dropped);
- ``*`` and ``?`` never cross ``/``; ``**`` crosses any number of directories;
- ``[^a]`` is a negated class, ``[!a]`` is a class of ``!`` and ``a`` (Go regexp);
- a pattern that matches a directory excludes everything under it;
- the last matching pattern wins, and ``!pattern`` re-includes.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from functools import lru_cache

_REGEX_SPECIAL = set(".+()|{}$")


@dataclass(frozen=True)
class Pattern:
    text: str          # cleaned pattern, without "!"
    exclusion: bool    # True for "!pattern" (re-include)
    regex: re.Pattern[str]

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def clean(pattern: str) -> str:
    """filepath.Clean + ToSlash + strip a leading "/" as moby's ignorefile.ReadAll does."""
    cleaned = posixpath.normpath(pattern)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if len(cleaned) > 1 and cleaned.startswith("/"):
        cleaned = cleaned[1:]
    return cleaned


def parse_lines(text: str) -> list[str]:
    """The patterns of a .dockerignore file, in order, cleaned; comments and blanks dropped."""
    patterns = []
    for index, raw in enumerate(text.splitlines()):
        if index == 0:
            raw = raw.lstrip("\ufeff")
        if raw.startswith("#"):
            continue
        line = raw.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = clean(line)
        patterns.append(("!" + line) if invert else line)
    return patterns


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Translate one cleaned pattern to a regex, token by token as patternmatcher does."""
    out, i, n = ["^"], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1
                out.append(".*" if i + 1 >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out.append(re.escape(pattern[i]))
            else:
                out.append("\\\\")
        elif ch in "[]":
            out.append(ch)
        else:
            out.append(ch)  # Go passes every other rune through, "^" included
        i += 1
    out.append("$")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as err:
        raise ValueError(f"invalid .dockerignore pattern {pattern!r}: {err}") from None


class DockerIgnore:
    """A compiled .dockerignore: ``excluded(path)`` answers for a context-relative path."""

    def __init__(self, patterns: list[str], source: str = "") -> None:
        self.source = source
        self.patterns: list[Pattern] = []
        for p in patterns:
            exclusion = p.startswith("!")
            body = p[1:] if exclusion else p
            if not body:
                continue
            self.patterns.append(Pattern(body, exclusion, compile_pattern(body)))
        self.has_reinclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def from_text(cls, text: str, source: str = "") -> "DockerIgnore":
        return cls(parse_lines(text), source)

    @classmethod
    def empty(cls) -> "DockerIgnore":
        return cls([], "")

    def excluded(self, path: str) -> bool:
        """True when the file at ``path`` (relative, with "/") is left out of the context."""
        matched = False
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                for i in range(len(parents)):
                    if pattern.match("/".join(parents[: i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def sent(self, files: dict[str, int]) -> dict[str, int]:
        """The subset of ``files`` (path -> size) the builder receives."""
        if not self.patterns:
            return dict(files)
        return {p: s for p, s in files.items() if not self.excluded(p)}
