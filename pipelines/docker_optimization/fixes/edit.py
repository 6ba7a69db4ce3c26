"""Minimal line edits: replace only the lines of the instructions a fix changes.

Everything else in the file (comments, blank lines, continuations, line
endings, the final-newline state) stays byte-identical.
"""

from __future__ import annotations


def replace_lines(text: str, start: int, end: int, new_lines: list[str]) -> str:
    """``text`` with lines ``start..end`` (1-based, inclusive) replaced by ``new_lines`` (with their endings)."""
    lines = text.splitlines(keepends=True)
    return "".join(lines[: start - 1] + new_lines + lines[end:])


def newline_of(line: str) -> str:
    for ending in ("\r\n", "\n", "\r"):
        if line.endswith(ending):
            return ending
    return ""
