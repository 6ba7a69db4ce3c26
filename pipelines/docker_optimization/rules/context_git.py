"""Context rule CX004: a .dockerignore that git ignores, so a fresh clone builds with a different context."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from agent_pipelines.engine import linear
from agent_pipelines.engine.finding import Category, Severity
from agent_pipelines.pipelines.docker_optimization.rules import Hit, rule
from agent_pipelines.pipelines.docker_optimization.rules.context_copies import cannot_build

# -- .dockerignore files git doesn't keep -------------------------------------------------


@dataclass(frozen=True)
class GitignorePattern:
    source: str  # the .gitignore's path
    line: int
    text: str  # as written
    base: str  # the .gitignore's directory ("" at the root)
    negate: bool
    dir_only: bool
    regex: re.Pattern[str] | linear.Re2Pattern


def _class_end(pattern: str, start: int) -> int:
    """Index of the "]" closing the class opened at ``start`` (-1 if none; a first "]" is literal)."""
    i = start + 1
    i += pattern[i : i + 1] in ("!", "^")
    i += pattern[i : i + 1] == "]"
    return pattern.find("]", i)


def _wildmatch(pattern: str) -> str:
    """A gitignore glob (no leading "!", no trailing "/") as a regex body, with git's ``**`` rules."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        at_segment = i == 0 or pattern[i - 1] == "/"
        if pattern.startswith("**/", i) and at_segment:
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i) and at_segment and i + 2 == n:
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            while i < n and pattern[i] == "*":
                i += 1
            out.append("[^/]*")
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := _class_end(pattern, i)) != -1:
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\").replace("[", "\\[") + "]")
            i = end + 1
        elif pattern[i] == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def parse_gitignore(path: str, text: str) -> list[GitignorePattern]:
    """The patterns of one .gitignore file (gitignore(5): comments, ``\\`` escapes, ``!``, trailing ``/``)."""
    base = posixpath.dirname(path)
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        while line.endswith(" ") and not line.endswith("\\ "):
            line = line[:-1]
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        body = line[1:] if negate else line
        dir_only = body.endswith("/")
        body = body.rstrip("/")
        if not body:
            continue
        anchored = "/" in body
        regex = _wildmatch(body.lstrip("/"))
        try:
            compiled = linear.compile(("^" if anchored else "^(?:.*/)?") + regex + "$", re.DOTALL)
        except re.error:
            continue  # git skips a pattern it can't match; so do we
        found.append(GitignorePattern(path, number, raw.strip(), base, negate, dir_only, compiled))
    return found


def gitignore_rules(project) -> list[GitignorePattern]:
    """Every .gitignore of the project, shallow files first (a deeper file overrides a shallower one).

    Kept across commits (``Project.names_memo``): the paths follow added and removed files, and a file's
    patterns stand while its text is the same. Why: finding them walked every path of the tree (200,000
    at scale 10) and compiled every pattern again after each commit."""
    if "gitignore_paths" not in project.names_memo:
        project.names_memo["gitignore_paths"] = _GitignorePaths(p for p in project.files if _is_gitignore(p))
    parsed = project.names_memo.setdefault("gitignore_parsed", _Parsed())
    found = []
    for path in project.names_memo["gitignore_paths"]:
        text = project.text(path) or ""
        was = parsed.get(path)
        if was is None or was[0] != text:
            was = parsed[path] = (text, parse_gitignore(path, text))
        found += was[1]
    return found


def _is_gitignore(path: str) -> bool:
    return posixpath.basename(path) == ".gitignore"


class _GitignorePaths(list):
    """The .gitignore paths, shallow first (then as listed), following added and removed files."""

    def __init__(self, paths: Iterable[str]) -> None:
        super().__init__(sorted(paths, key=lambda p: p.count("/")))

    def follow(self, old: list[str], new: list[str], added: list[str], removed: list[str]) -> _GitignorePaths:
        born, gone = [p for p in added if _is_gitignore(p)], {p for p in removed if _is_gitignore(p)}
        if not born and not gone:
            return self
        return _GitignorePaths(p for p in new if _is_gitignore(p))


class _Parsed(dict):
    """.gitignore path -> (its text, its patterns): an answer stands while the text is the same."""

    def follow(self, old: list[str], new: list[str], added: list[str], removed: list[str]) -> _Parsed:
        return self


def gitignored(rules: list[GitignorePattern], path: str) -> GitignorePattern | None:
    """The pattern that makes git ignore ``path`` (a file), or None when git would track it.

    As git decides: the last matching pattern wins, a deeper .gitignore wins
    over a shallower one, and nothing under an ignored directory can be
    re-included.
    """
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        candidate, is_dir = "/".join(parts[:depth]), depth < len(parts)
        verdict = None
        for pattern in rules:
            if pattern.base and not candidate.startswith(pattern.base + "/"):
                continue
            if pattern.dir_only and not is_dir:
                continue
            if pattern.regex.match(candidate[len(pattern.base) + 1 :] if pattern.base else candidate):
                verdict = pattern
        if verdict is not None and not verdict.negate:
            return verdict
    return None


@rule(
    "CX004",
    "dockerignore-ignored-by-git",
    Category.reliability,
    Severity.info,
    "project",
    reads=(".gitignore", "contexts"),
)
def dockerignore_ignored_by_git(project) -> Iterable[Hit]:
    """A .dockerignore is hidden by the repository's .gitignore, while its Dockerfile is not.

    Read from the .gitignore files' text, so it can't see a file that was
    committed anyway (`git add --force`, as this pipeline does when it writes
    one): then git does keep it, and this is noise. That is why it is info.

    Why: an ignored file never reaches a clone, so CI and colleagues build
    without it: the context sends .git, caches and .env files again, and the
    image differs from the one built locally.

    Example:
        .gitignore:   .*
                      !.gitignore

    Use instead:
        .gitignore:   .*
                      !.gitignore
                      !.dockerignore
    """
    rules = gitignore_rules(project)
    if not rules:
        return
    for path in sorted({c.ignore_path for c in project.contexts if c.ignore_path}):
        pattern = gitignored(rules, path)
        if pattern is None:
            continue
        users = [c for c in project.contexts if c.ignore_path == path]
        if all(gitignored(rules, c.dockerfile) for c in users):
            continue  # the Dockerfile is ignored too: a generated or local-only build
        if all(cannot_build(c) for c in users):
            continue  # CX003/CO007 report these contexts broken
        yield Hit(
            0,
            f"{path} is ignored by {pattern.source} (line {pattern.line}: {pattern.text}): a clone, "
            "CI included, builds without it unless it was committed with --force",
            f"{pattern.source}:{pattern.line}: {pattern.text}",
            file=path,
        )
