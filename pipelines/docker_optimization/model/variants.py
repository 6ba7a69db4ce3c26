"""Compose variant files: one directory's compose.yaml, compose.full.yaml, compose.tests.yaml...

Real repositories keep several compose files side by side and stack them
(`docker compose -f compose.yaml -f compose.full.yaml up`) or pick one. A
service is then defined more than once: completely in the main file and as
a *patch* (a few keys, no `image:` nor `build:`) in a variant, or completely
again in an alternative file.

Two consequences for the findings, both here so that every rule gets them:

- A patch is judged merged onto the service it patches (``effective``): a
  variant that only adds environment variables to `checkout` lacks no CPU
  limit if the main file gives `checkout` one.
- The same finding repeated across the variants of one directory is one
  defect: ``collapse`` keeps it once, on the first file in variant order
  (the main file first), and names the other files and lines in its message.
"""

from __future__ import annotations

import functools
import itertools
import operator
import posixpath
from collections.abc import Iterable

from agent_pipelines.engine.finding import Finding
from agent_pipelines.pipelines.docker_optimization.model.compose import COMPOSE_NAMES, ComposeFile, is_compose_file

# Keys that make a definition stand alone; without them it only patches a service defined elsewhere.
_STANDALONE = ("image", "build", "extends")


def variant_order(path: str) -> tuple:
    """Sort key: in a directory, compose's default names first (in compose's order), then overrides, then the rest."""
    directory, _, name = path.rpartition("/")
    if name in COMPOSE_NAMES:
        rank = (0, COMPOSE_NAMES.index(name))
    elif ".override." in name:
        rank = (1, 0)
    else:
        rank = (2, 0)
    return directory, rank, name


def is_patch(definition: object) -> bool:
    """A service definition that can't run alone: it names no image, no build, extends nothing."""
    return isinstance(definition, dict) and not any(k in definition for k in _STANDALONE)


def bases(composes: list[ComposeFile]) -> dict[tuple[str, str], tuple[ComposeFile, dict]]:
    """(directory, service) -> the first standalone definition of it in variant order."""
    found: dict[tuple[str, str], tuple[ComposeFile, dict]] = {}
    for compose in sorted(composes, key=lambda c: variant_order(c.path)):
        if compose.error:
            continue
        directory = posixpath.dirname(compose.path)
        for name, svc in compose.services.items():
            if isinstance(svc, dict) and not is_patch(svc):
                found.setdefault((directory, str(name)), (compose, svc))
    return found


def merge(base: dict, patch: dict) -> dict:
    """``patch`` over ``base`` as compose merges mappings: nested mappings key by key, anything else replaced."""
    out = dict(base)
    for key, value in patch.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def collapse(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per defect: a compose finding repeated in a directory's variant files is kept once.

    Findings match when they have the same rule and evidence (the evidence
    names the service and what was found) in compose files of one directory.
    The first in variant order stays, its message naming where the others
    were ("the same in compose.full.yaml:127"); its id changes with it.
    """
    global _LAST
    kept: list[Finding] = []
    grouping: list[Finding] = []  # the findings of compose files with evidence, in order
    for file, run in itertools.groupby(findings, key=operator.attrgetter("file")):  # each file asked once
        if not is_compose_file(file):
            kept += run  # most findings: not in a compose file, kept as they come
            continue
        for f in run:
            (grouping if f.evidence else kept).append(f)
    last = _LAST
    if len(last[0]) == len(grouping) and all(map(operator.is_, last[0], grouping)):
        grouped = last[1]  # the same findings as the last call (an update that changed no compose file)
    else:
        grouped = _grouped(grouping)
        _LAST = (grouping, grouped)
    # The same order as sorting ``kept + grouped`` at once (sorts are stable), but as two sorted runs, which
    # the sort merges in one pass: ``kept`` is already in order when the findings came sorted (they do), and
    # thousands of compose findings in group order made the one sort 6x slower at scale 10.
    return sorted(kept + grouped, key=_ORDER)


_ORDER = operator.attrgetter("file", "line", "rule")
# The compose findings ``collapse`` grouped last, and what they came to (sorted): the same objects (findings
# are immutable) come to the same, so an incremental update that changed no compose file groups nothing again.
_LAST: tuple[list[Finding], list[Finding]] = ([], [])


def _grouped(grouping: list[Finding]) -> list[Finding]:
    """The compose findings with evidence, each defect once (see ``collapse``), sorted."""
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    for f in grouping:
        groups.setdefault((f.rule, posixpath.dirname(f.file), f.evidence), []).append(f)
    grouped: list[Finding] = []  # what comes out of the groups: sorted apart, then merged with ``kept``
    for group in groups.values():
        first = group[0].file
        if all(f.file == first for f in group):  # one file (most groups are one finding): nothing repeated
            grouped += group
            continue
        grouped.append(_collapsed(tuple(group)))
    grouped.sort(key=_ORDER)
    return grouped


@functools.lru_cache(maxsize=16384)  # an incremental update collapses the same groups again: made once
def _collapsed(group: tuple[Finding, ...]) -> Finding:
    """A group's one finding: the first in variant order, naming where the others were."""
    ordered = sorted(group, key=lambda f: (variant_order(f.file), f.line))
    return _merged(ordered[0], ", ".join(f.location for f in ordered[1:]))


@functools.lru_cache(maxsize=4096)
def _merged(first: Finding, where: str) -> Finding:
    return Finding.make(
        rule=first.rule,
        name=first.name,
        category=first.category,
        severity=first.severity,
        message=f"{first.message} (the same in {where})",
        file=first.file,
        line=first.line,
        end_line=first.end_line,
        evidence=first.evidence,
        fix=first.fix,
        source=first.source,
    )
