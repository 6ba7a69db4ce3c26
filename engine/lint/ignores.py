"""Ignoring findings: ``# pipeline ignore=`` pragmas in files, and codes a configuration ignores.

- A file whose findings sit on statements that span lines (``spans``) takes
  ``# pipeline ignore=AB001,CD002`` on a comment line directly above a
  statement (in the block of comment lines that ends right above it): those
  codes are ignored on every line of that statement.
- Any other text file takes the same comment at the end of the finding's
  line or on the comment lines directly above it.
- A configuration ignores codes everywhere or per file glob (``Ignores``).

A code also matches by prefix (``AB`` covers every AB rule). Ignored
findings are not dropped silently: ``partition`` returns them with what
ignored them, so a report can count them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agent_pipelines.engine import linear
from agent_pipelines.engine.finding import Finding
from agent_pipelines.engine.findings_output import IgnoredBy

PRAGMA = re.compile(r"#\s*pipeline\s+ignore\s*=\s*([A-Za-z]+[0-9]*(?:\s*,\s*[A-Za-z]+[0-9]*)*)")
CODE = re.compile(r"^[A-Z]+[0-9]*$")


def codes_in(line: str) -> set[str]:
    """Codes named by ``# pipeline ignore=...`` pragmas on one raw line."""
    found: set[str] = set()
    for match in PRAGMA.finditer(line):
        found.update(c.strip().upper() for c in match.group(1).split(","))
    return found


def matches(code: str, patterns: Iterable[str]) -> bool:
    return any(code == p or code.startswith(p) for p in patterns)


def glob_regex(pattern: str) -> re.Pattern[str] | linear.Re2Pattern:
    """A gitignore-like glob: ``**`` spans directories, ``*`` and ``?`` stay in one path segment.

    Matched in time linear in the path (a ``*a*a*a*b`` glob must not backtrack).
    """
    out, i = [], 0
    pattern = pattern.lstrip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            body = body.replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return linear.compile("".join(out) + "(?:/.*)?")


@dataclass
class Ignores:
    """Codes a configuration ignores: everywhere, and per glob on the repository-relative path.

    A glob without a "/" matches the file name at any depth; ``problems`` are what was wrong
    in the configuration (shown as notes, never raised).
    """

    path: str = ""
    ignored: list[str] = field(default_factory=list)
    per_file: list[tuple[str, re.Pattern[str] | linear.Re2Pattern, list[str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    prefix: str = ""  # the analyzed directory, relative to the config's directory ("" when they are the same)

    def ignores(self, finding: Finding) -> bool:
        if matches(finding.rule, self.ignored):
            return True
        name = posixpath.basename(finding.file)
        where = posixpath.join(self.prefix, finding.file) if self.prefix else finding.file
        for glob, regex, codes in self.per_file:
            target = where if "/" in glob.strip("/") else name
            if regex.fullmatch(target) and matches(finding.rule, codes):
                return True
        return False


def codes(value: object, where: str, problems: list[str]) -> list[str]:
    """A configuration's list of rule codes (or one code); anything else is a problem."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        problems.append(f"{where}: expected a list of rule codes, got {type(value).__name__}")
        return []
    out = []
    for item in value:
        code = str(item).strip().upper()
        if CODE.match(code):
            out.append(code)
        else:
            problems.append(f"{where}: {item!r} is not a rule code")
    return out


def _comment_block_above(lines: list[str], line: int) -> Iterable[str]:
    """The raw comment lines directly above 1-based ``line``, nearest first."""
    i = line - 2
    while 0 <= i < len(lines) and lines[i].lstrip().startswith("#"):
        yield lines[i]
        i -= 1


def statement_pragmas(lines: list[str], spans: list[tuple[int, int]]) -> dict[int, set[str]]:
    """Line -> codes ignored there, for every line of every statement with a pragma above it."""
    out: dict[int, set[str]] = {}
    for start, end in spans:
        codes: set[str] = set()
        for raw in _comment_block_above(lines, start):
            codes |= codes_in(raw)
        if codes:
            for n in range(start, max(end, start) + 1):
                out.setdefault(n, set()).update(codes)
    return out


def line_pragmas(lines: list[str], line: int) -> set[str]:
    """Codes ignored at ``line`` of a line-oriented file: a trailing pragma there, or one in the comments above."""
    if not 1 <= line <= len(lines):
        return set()
    codes = codes_in(lines[line - 1])
    for raw in _comment_block_above(lines, line):
        codes |= codes_in(raw)
    return codes


def partition(
    findings: list[Finding],
    config: Ignores,
    lines_of: Callable[[str], list[str]],
    spans_of: Callable[[str], list[tuple[int, int]] | None],
) -> tuple[list[Finding], list[tuple[Finding, IgnoredBy]]]:
    """Split findings into (kept, ignored); each ignored one says what ignored it: "pragma" or "config".

    ``lines_of(path)`` gives a file's raw lines; ``spans_of(path)`` gives the (first, last) lines of
    each statement of a file whose pragmas cover statements (None for other files).
    """
    kept: list[Finding] = []
    ignored: list[tuple[Finding, IgnoredBy]] = []
    tables: dict[str, Callable[[int], set[str]]] = {}
    for f in findings:
        if f.line > 0:
            if f.file not in tables:
                tables[f.file] = _pragma_lookup(lines_of(f.file), spans_of(f.file))
            if matches(f.rule, tables[f.file](f.line)):
                ignored.append((f, "pragma"))
                continue
        if config.ignores(f):
            ignored.append((f, "config"))
            continue
        kept.append(f)
    return kept, ignored


def _pragma_lookup(lines: list[str], spans: list[tuple[int, int]] | None) -> Callable[[int], set[str]]:
    if not any("pipeline" in line for line in lines):
        return lambda line: set()
    if spans is not None:
        table = statement_pragmas(lines, spans)
        return lambda line: table.get(line, set())
    return lambda line: line_pragmas(lines, line)
