"""Sorted path lists: the paths that start with a prefix are one contiguous run, found by bisect."""

from __future__ import annotations

import bisect


def span(paths: list[str], prefix: str, lo: int = 0) -> tuple[int, int]:
    """The index range [start, end) of the sorted ``paths`` (from ``lo`` on) that start with ``prefix``."""
    start = bisect.bisect_left(paths, prefix, lo)
    if not prefix:
        return start, len(paths)
    following = ord(prefix[-1]) + 1  # the first string after every one with this prefix: its last char + 1
    if following > 0x10FFFF:  # nothing sorts after U+10FFFF: walk the (short, absurd) run instead
        end = start
        while end < len(paths) and paths[end].startswith(prefix):
            end += 1
        return start, end
    return start, bisect.bisect_left(paths, prefix[:-1] + chr(following), start)
