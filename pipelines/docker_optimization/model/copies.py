"""COPY/ADD sources resolved against a build context: do they exist, inside it, and get sent?

This is the check that would have caught the "refactor" that rewrote COPY
paths to ``../shared/`` while compose still built from the repo root: a
source outside the context, or one the .dockerignore drops, fails the build.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from agent_pipelines.engine import linear
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from agent_pipelines.pipelines.docker_optimization.model.dockerignore import DockerIgnore
from agent_pipelines.pipelines.docker_optimization.model.paths import span
from agent_pipelines.pipelines.docker_optimization.model.project import Context, sorted_keys


@dataclass(frozen=True)
class Source:
    ins: Instruction
    path: str  # as written


def sources(df: Dockerfile) -> list[Source]:
    """Sources of COPY/ADD that come from the build context (not --from, heredocs or URLs).

    Read once per parsed Dockerfile (``df.memo``): ops and several rules ask it of every context at
    every commit, and an unchanged Dockerfile is the same object across commits."""
    kept = df.memo.get("copy_sources")
    if kept is None:
        kept = df.memo["copy_sources"] = _sources(df)
    return list(kept)


def _sources(df: Dockerfile) -> list[Source]:
    found = []
    escape = _escape_directive(df.text)
    for ins in df.of("COPY", "ADD"):
        words = _words(ins, escape)
        if ins.flag("from") or len(words) < 2:
            continue
        for src in words[:-1]:
            if src.startswith("<<") or "://" in src or src.startswith("git@"):
                continue
            found.append(Source(ins, src))
    return found


_ESCAPE = re.compile(r"#[ \t]*escape[ \t]*=[ \t]*(\S)", re.IGNORECASE)


def _escape_directive(text: str) -> str:
    """The Dockerfile's escape character: ``# escape=`` among the parser directives at its top, else "\\"."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("#"):
            break
        if found := _ESCAPE.fullmatch(line):
            return found.group(1)
    return "\\"


def _words(ins: Instruction, escape: str) -> tuple[str, ...]:
    """A COPY/ADD's arguments as BuildKit uses them: quotes removed and escapes applied, as its shell lexer
    does before it looks up a path. Why: ``COPY "app.sln" "app.sln"`` copies ``app.sln``; the parser's
    words keep the quotes (``'"app.sln"'``), and a quoted path then looked missing from every context (462
    false errors on eShopOnContainers, whose Dockerfiles quote every COPY). Variables are left as written
    (``$X`` stays unknown); the JSON form is already unquoted; unbalanced quotes keep the parser's words."""
    if ins.json or not any(q in word for word in ins.value for q in ('"', "'", escape)):
        return ins.value
    lexer = shlex.shlex(" ".join(ins.value), posix=True)
    lexer.whitespace_split, lexer.commenters, lexer.escape = True, "", escape
    lexer.escapedquotes = '"'
    try:
        return tuple(lexer)
    except ValueError:  # "No closing quotation": BuildKit refuses it too; the words as parsed
        return ins.value


def _glob_regex(pattern: str) -> re.Pattern[str] | linear.Re2Pattern:
    """A COPY source glob as a regex matched in linear time (``*a*a*a*b`` must not backtrack)."""
    out = []
    for ch in pattern:
        out.append("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch))
    return linear.compile("^" + "".join(out) + "(/.*)?$")


def sorted_paths(files: dict[str, int]) -> list[str]:
    """``files``' paths, sorted, computed once per dict (contexts' file dicts are never mutated; a listing
    that follows another's edits derives its sorted paths from the other's: ``Listing.files``)."""
    return sorted_keys(files)


def _under(keys: list[str], prefix: str) -> list[str]:
    """The sorted ``keys`` that start with ``prefix`` (a bisect, not a scan)."""
    lo, hi = span(keys, prefix)
    return keys[lo:hi]


def matching(files: dict[str, int], src: str) -> list[str]:
    """Context files a COPY source names: the file, everything under a directory, or a glob's matches."""
    cleaned = posixpath.normpath(src.lstrip("/")) if src.strip("/") else "."
    if cleaned == ".":
        return list(files)
    keys = sorted_paths(files)
    if any(ch in cleaned for ch in "*?["):
        regex = _glob_regex(cleaned)
        literal = re.split(r"[*?\[]", cleaned, maxsplit=1)[0]
        return [p for p in _under(keys, literal) if regex.match(p)]
    return ([cleaned] if cleaned in files else []) + _under(keys, cleaned + "/")


def names(src: str, path: str) -> bool:
    """Does the COPY source ``src`` name the context file ``path`` (``matching`` for one file)?"""
    cleaned = posixpath.normpath(src.lstrip("/")) if src.strip("/") else "."
    if cleaned == ".":
        return True
    if any(ch in cleaned for ch in "*?["):
        return _glob_regex(cleaned).match(path) is not None
    return path == cleaned or path.startswith(cleaned + "/")


def problems(ctx: Context, df: Dockerfile, ignore: DockerIgnore | None = None) -> list[tuple[Source, str]]:
    """Every COPY/ADD source of ``df`` that breaks when built from ``ctx``, with the reason.

    A file source must be sent; a directory or glob must still send at least
    one file (excluding tests under a copied directory is fine, emptying it is not).
    ``ignore`` replaces the context's own .dockerignore (to try a candidate).
    """
    ignore = ctx.ignore if ignore is None else ignore
    files = ctx.files()
    out = []
    for source in sources(df):
        if "$" in source.path:
            continue  # depends on build args; can't be resolved statically
        cleaned = posixpath.normpath(source.path.lstrip("/")) if source.path.strip("/") else "."
        if cleaned == ".." or cleaned.startswith("../"):
            out.append((source, f"{source.path} leaves the build context {ctx.dir}"))
            continue
        # ``COPY . .`` names every file: the context's own listing, not a copy of it (200,000 paths at the root)
        named = files if cleaned == "." else matching(files, source.path)
        if not named:
            out.append((source, f"{source.path} does not exist in the build context {ctx.dir}"))
            continue
        if all(ignore.excluded(p) for p in named):  # stops at the first file that is sent
            out.append(
                (
                    source,
                    f"{source.path} is excluded by {ignore.source or '.dockerignore'} in the build context {ctx.dir}",
                )
            )
    return out
