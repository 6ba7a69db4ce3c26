"""Regexes for globs a repository supplies, matched in time linear in the path, as Go's RE2 does.

Why: Python's ``re`` backtracks. An ignore-file line ``*a*a*a*a*a*a*a*a*a*a*a*a*b``
becomes ``^[^/]*a[^/]*a...b$`` and takes hours on a 100-character file name
that almost matches; Go's regexp (RE2) answers in microseconds.

What: ``compile(source)`` gives an object with ``match``/``fullmatch``/``pattern``.
A regex with at most one repetition or alternation (``*.pyc``, ``src/**``, a
literal) cannot backtrack more than once over the path, so it stays a Python
``re`` pattern (fastest per call); anything else goes to RE2 (``google-re2``),
whose matching is linear whatever the pattern. ``re2`` is imported only when a
pattern needs it, so ``pipeline analyze`` on ordinary repositories does not load it.

Example: ``compile(r"^[^/]*a[^/]*b\\Z").match("a" * 100_000)`` is None at once.
"""

from __future__ import annotations

import re
from functools import lru_cache


def operators(source: str) -> int:
    """How many repetitions (``* + ? {n}``) and alternations (``|``) the Python regex ``source`` has.

    Counted outside character classes and escapes; ``(?:`` and ``(?s:`` are groups, not repetitions.
    Over-counting only sends a pattern to RE2, never changes an answer.
    """
    count, i, n = 0, 0, len(source)
    while i < n:
        c = source[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i += 1
            if i < n and source[i] == "^":
                i += 1
            if i < n and source[i] == "]":  # a leading "]" is literal
                i += 1
            while i < n and source[i] != "]":
                i += 2 if source[i] == "\\" else 1
        elif c in "*+|{" or (c == "?" and not (i and source[i - 1] == "(")):
            count += 1
        i += 1
    return count


def _re2_source(source: str) -> str:
    r"""Python's ``\Z`` (end of text) is RE2's ``\z``; every other construct our globs produce is shared."""
    out, i, n, in_class = [], 0, len(source), False
    while i < n:
        c = source[i]
        if c == "\\" and i + 1 < n:
            out.append("\\z" if source[i + 1] == "Z" and not in_class else source[i : i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            out.append(c)
            i += 1
            if i < n and source[i] == "^":
                out.append("^")
                i += 1
            if i < n and source[i] == "]":
                out.append("\\]")
                i += 1
            continue
        if c == "]" and in_class:
            in_class = False
        out.append("\\[" if c == "[" else c)  # inside a class "[" is literal in Python; "[:alpha:]" is not in RE2
        i += 1
    return "".join(out)


def _text(text: str) -> str:
    """A path RE2 can take: undecodable bytes (surrogate escapes) become U+FFFD, as Go reads them."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class Re2Pattern:
    """A regex matched by RE2; ``pattern`` keeps the Python source (for unions built from it)."""

    def __init__(self, source: str, flags: int = 0) -> None:
        import re2  # lazily: most repositories never need it

        self.pattern = source
        options = re2.Options()
        options.log_errors = False
        if flags & ~(re.ASCII | re.DOTALL):  # RE2's classes are ASCII already; nothing else is used
            raise ValueError(f"flags {flags!r} are not reproduced for RE2")
        self._re2 = re2.compile(("(?s)" if flags & re.DOTALL else "") + _re2_source(source), options)

    def match(self, text: str):
        return self._re2.match(_text(text))

    def fullmatch(self, text: str):
        return self._re2.fullmatch(_text(text))

    def search(self, text: str):
        return self._re2.search(_text(text))


@lru_cache(maxsize=4096)
def compile(source: str, flags: int = 0, safe: bool = False) -> re.Pattern[str] | Re2Pattern:
    """``source`` compiled so that matching is linear in the text; ``safe``: the caller knows it cannot backtrack.

    The Python compile runs first either way: it validates the pattern and gives the same errors as before.
    """
    compiled = re.compile(source, flags)
    if safe or operators(source) <= 1:
        return compiled
    try:
        return Re2Pattern(source, flags)
    except Exception:  # re2.error: a construct RE2 lacks (none of our globs produce one); keep Python's answer
        return compiled


class Union:
    """ "Does any of these patterns match at the start?" in one call: the Python ones as one alternation
    (each alternative cannot backtrack, so trying them in turn is linear), the RE2 ones as another."""

    def __init__(self, patterns: list[re.Pattern[str] | Re2Pattern], flags: int = 0) -> None:
        plain = [p.pattern for p in patterns if isinstance(p, re.Pattern)]
        hard = [p.pattern for p in patterns if not isinstance(p, re.Pattern)]
        self._plain = re.compile("|".join(f"(?:{s})" for s in plain), flags).match if plain else None
        self._hard = Re2Pattern("|".join(f"(?:{s})" for s in hard), flags).match if hard else None

    def match(self, text: str) -> bool | None:
        if self._plain is not None and self._plain(text) is not None:
            return True
        if self._hard is not None and self._hard(text) is not None:
            return True
        return None
