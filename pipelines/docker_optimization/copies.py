"""COPY/ADD sources resolved against a build context: do they exist, inside it, and get sent?

This is the check that would have caught the "refactor" that rewrote COPY
paths to ``../shared/`` while compose still built from the repo root: a
source outside the context, or one the .dockerignore drops, fails the build.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from pipelines.docker_optimization.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.dockerignore import DockerIgnore
from pipelines.docker_optimization.project import Context


@dataclass(frozen=True)
class Source:
    ins: Instruction
    path: str     # as written


def sources(df: Dockerfile) -> list[Source]:
    """Sources of COPY/ADD that come from the build context (not --from, heredocs or URLs)."""
    found = []
    for ins in df.of("COPY", "ADD"):
        if ins.flag("from") or len(ins.value) < 2:
            continue
        for src in ins.value[:-1]:
            if src.startswith("<<") or "://" in src or src.startswith("git@"):
                continue
            found.append(Source(ins, src))
    return found


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        out.append("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch))
    return re.compile("^" + "".join(out) + "(/.*)?$")


def matching(files: dict[str, int], src: str) -> list[str]:
    """Context files a COPY source names: the file, everything under a directory, or a glob's matches."""
    cleaned = posixpath.normpath(src.lstrip("/")) if src.strip("/") else "."
    if cleaned == ".":
        return list(files)
    if any(ch in cleaned for ch in "*?["):
        regex = _glob_regex(cleaned)
        return [p for p in files if regex.match(p)]
    prefix = cleaned + "/"
    return [p for p in files if p == cleaned or p.startswith(prefix)]


def problems(ctx: Context, df: Dockerfile, ignore: DockerIgnore | None = None) -> list[tuple[Source, str]]:
    """Every COPY/ADD source of ``df`` that breaks when built from ``ctx``, with the reason.

    A file source must be sent; a directory or glob must still send at least
    one file (excluding tests under a copied directory is fine, emptying it is not).
    ``ignore`` replaces the context's own .dockerignore (to try a candidate).
    """
    own = ignore is None
    ignore = ctx.ignore if own else ignore
    files, sent = ctx.files(), None
    out = []
    for source in sources(df):
        if "$" in source.path:
            continue  # depends on build args; can't be resolved statically
        cleaned = posixpath.normpath(source.path.lstrip("/")) if source.path.strip("/") else "."
        if cleaned == ".." or cleaned.startswith("../"):
            out.append((source, f"{source.path} leaves the build context {ctx.dir}"))
            continue
        named = matching(files, source.path)
        if not named:
            out.append((source, f"{source.path} does not exist in the build context {ctx.dir}"))
            continue
        if sent is None:
            sent = ctx.sent() if own else ignore.sent(files)
        if not any(p in sent for p in named):
            out.append((source, f"{source.path} is excluded by {ignore.source or '.dockerignore'} in the build context {ctx.dir}"))
    return out
