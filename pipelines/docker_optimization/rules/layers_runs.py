"""Layers rules LY002 and LY004: package-manager RUNs split in two, and pip upgraded in a layer of its own."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization.fixes.edit import (
    add_flags,
    apply_edits,
    dockerfile_now,
    lines_of,
    newline_of,
    split_prefix,
    verify,
)
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.model.shell import (
    APT_VALUE_OPTIONS,
    SYSTEM_MANAGERS,
    classify,
    installs,
    is_heredoc,
    neutral,
    segments,
    verb,
)
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, rule

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

BUNDLE_PACKAGE_RUNS_FIX = Fix("bundle-package-runs")
FOLD_PIP_UPGRADE_FIX = Fix("fold-pip-upgrade")


# -- consecutive RUNs of one system package manager -------------------------------------


def manager_of(df: Dockerfile, ins: Instruction) -> str:
    """The system package manager a shell-form RUN runs and nothing else ("" when it runs anything more)."""
    if ins.cmd != "RUN" or ins.json or is_heredoc(ins):
        return ""
    segs = segments(df, ins)
    found = {SYSTEM_MANAGERS[s.prog] for s in segs if s.prog in SYSTEM_MANAGERS}
    if len(found) != 1 or not all(s.prog in SYSTEM_MANAGERS or neutral(s) for s in segs):
        return ""
    return found.pop()


def manager_verbs(df: Dockerfile, ins: Instruction) -> set[str]:
    return {verb(s, APT_VALUE_OPTIONS) for s in segments(df, ins) if s.prog in SYSTEM_MANAGERS}


def _update_only(df: Dockerfile, ins: Instruction) -> bool:
    verbs = manager_verbs(df, ins)
    return bool(manager_of(df, ins)) and "update" in verbs and not verbs & {"install", "add", "upgrade", "dist-upgrade"}


def installs_with(df: Dockerfile, ins: Instruction, manager: str) -> bool:
    return any(
        SYSTEM_MANAGERS.get(s.prog) == manager and verb(s, APT_VALUE_OPTIONS) in ("install", "add")
        for s in segments(df, ins)
    )


def manager_groups(df: Dockerfile) -> list[list[Instruction]]:
    """Runs of adjacent RUNs that belong together.

    Each RUN of a run runs only the same system package manager; an
    update-only RUN also takes the RUN right after it when that one
    installs with the same manager, whatever else it runs (and ends the run).
    """
    groups: list[list[Instruction]] = []
    current: list[Instruction] = []
    manager = ""
    for ins in df.instructions:
        joins = bool(current) and ins.stage == current[-1].stage and ins.cmd == "RUN"
        if joins and manager_of(df, ins) == manager and manager_of(df, current[-1]):
            current.append(ins)
            continue
        if (
            joins
            and _update_only(df, current[-1])
            and not ins.json
            and not is_heredoc(ins)
            and installs_with(df, ins, manager)
        ):
            current.append(ins)
            groups.append(current)
            current, manager = [], ""
            continue
        if len(current) >= 2:
            groups.append(current)
        manager = manager_of(df, ins)
        current = [ins] if manager else []
    if len(current) >= 2:
        groups.append(current)
    return groups


def split_update(df: Dockerfile, group: list[Instruction]) -> tuple[Instruction, Instruction] | None:
    """(an update-only RUN, the install RUN after it) in a group: the stale-package-list bug."""
    for first, second in zip(group, group[1:]):
        if _update_only(df, first) and installs_with(df, second, manager_of(df, first)):
            return first, second
    return None


@rule(
    "LY002",
    "split-package-manager-runs",
    Category.reliability,
    Severity.warning,
    "dockerfile",
    fix=BUNDLE_PACKAGE_RUNS_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def split_package_manager_runs(df: Dockerfile) -> Iterable[Hit]:
    """Consecutive RUNs each run only the same system package manager (apt-get, apk, dnf, yum...).

    Also fires on an `apt-get update` (or `apk update`) RUN followed by a
    RUN that installs with the same manager, whatever else that RUN does.
    The worst case is `RUN apt-get update` followed by `RUN apt-get install`:
    the install layer is cached separately from the update, so it can run
    with a package list from an old build (versions that are gone, missing
    security updates), and removing the lists in the install layer no
    longer saves anything. Language package managers (pip, npm) in a row are
    not flagged: a layer for the dependencies and one for the project is a
    deliberate caching choice.

    Why: every RUN is a layer. Package-manager work split across layers
    stores the package index and the caches several times and caches steps
    that only make sense together.

    Example:
        RUN apt-get update
        RUN apt-get install -y curl

    Use instead:
        RUN apt-get update && apt-get install -y curl

    Fix: merges each run of RUNs into one, joining the commands with `&&`
    in their order (the same commands in the same shell, one layer).

    Fix safety: safe: the same commands run in the same order with the
    same environment, in one RUN instead of several; a failing command still
    fails the build.
    """
    for group in manager_groups(df):
        first, last = group[0], group[-1]
        split = split_update(df, group)
        if split:
            message = (
                f"{split[0].command.strip()} runs in its own layer (line {split[0].start_line}): the install at "
                f"line {split[1].start_line} can use a package list cached from an older build"
            )
        else:
            message = (
                f"{len(group)} consecutive RUNs of {manager_of(df, first)} (lines {first.start_line}-"
                f"{last.end_line}): one RUN makes one layer and one consistent package list"
            )
        yield Hit(first.start_line, message, "\n".join(i.original for i in group), last.end_line)


# -- pip upgrade in its own layer -----------------------------------------------------


def pip_upgrade_only(df: Dockerfile, ins: Instruction) -> bool:
    """A shell-form RUN that only upgrades pip (and setuptools/wheel)."""
    if ins.cmd != "RUN" or ins.json or is_heredoc(ins):
        return False
    segs = segments(df, ins)
    kinds = [classify(s) for s in segs]
    return bool(segs) and all(k is not None and k.tool == "pip" and k.kind == "tooling" for k in kinds)


def pip_installs(df: Dockerfile, ins: Instruction) -> bool:
    return any(i.tool == "pip" and i.segment.prog != "uv" for i in installs(df, ins))


@rule(
    "LY004",
    "pip-upgrade-layer",
    Category.performance,
    Severity.info,
    "dockerfile",
    fix=FOLD_PIP_UPGRADE_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def pip_upgrade_layer(df: Dockerfile) -> Iterable[Hit]:
    """`RUN pip install --upgrade pip` is a layer of its own.

    Why: the upgrade layer is cached on its own, apart from the installs it
    is meant for, and adds a layer that only replaces pip's files. Upgrading
    pip in the same RUN as the install keeps the two together.

    Example:
        RUN pip install --upgrade pip
        RUN pip install -r requirements.txt

    Use instead:
        RUN pip install --upgrade pip && pip install -r requirements.txt

    Fix: folds the upgrade into the next pip install RUN of the stage (its
    cache mounts stay on that RUN; no USER, ENV, ARG or SHELL may sit
    between them). When no pip install follows in the stage, the upgrade
    serves no install of the build and the fix drops the RUN.

    Fix safety: decided per repository. Folding runs the same commands in
    the same order in one RUN: safe. Dropping an upgrade that no pip
    install follows leaves the base image's pip in the image: unsafe, and
    the task says which line it drops.
    """
    for ins in df.of("RUN"):
        if pip_upgrade_only(df, ins):
            yield Hit(
                ins.start_line,
                f"{ins.command.strip()} is a layer of its own: fold it into the pip install that follows",
                ins.original,
                ins.end_line,
            )


# -- fixes -----------------------------------------------------------------------------------------------


# -- LY002: merge consecutive package-manager RUNs ------------------------------------------


def _merge_flags(into: list[str], extra: Iterable[str], line: int) -> list[str]:
    """Flags of a later RUN that the merged RUN must add; FixError when they contradict."""
    added: list[str] = []
    for flag in extra:
        if flag in into or flag in added:
            continue
        name = flag.split("=", 1)[0]
        if name != "--mount" and any(f.split("=", 1)[0] == name for f in into + added):
            raise Declined(f"line {line} runs with {flag}, which contradicts the RUN it would merge into")
        target = re.search(r"(?:target|dst|destination)=([^,]+)", flag)
        if name == "--mount" and target and any(target.group(0) in f for f in into + added):
            raise Declined(f"line {line} mounts {target.group(1)} differently from the RUN it would merge into")
        added.append(flag)
    return added


def merge_runs(df: Dockerfile, group: list[Instruction]) -> list[str]:
    """The lines replacing ``group`` (adjacent RUNs): comments between them first, then one RUN."""
    first = group[0]
    prefix, command = split_prefix(df, first)
    nl = newline_of(df.lines[first.start_line - 1]) or "\n"
    above: list[str] = []
    flags: list[str] = []
    text = command
    previous = first
    for ins in group[1:]:
        above += df.lines[previous.end_line : ins.start_line - 1]
        flags += _merge_flags(list(first.flags) + flags, ins.flags, ins.start_line)
        _, rest = split_prefix(df, ins)
        body = text[: len(text) - len(newline_of(text))].rstrip(" \t")
        text = body + " \\" + nl + "    && " + rest
        previous = ins
    return above + lines_of(add_flags(prefix, flags) + text)


@BUNDLE_PACKAGE_RUNS_FIX.applies("Merge consecutive package-manager RUNs in {file}")
def merge_package_runs(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    groups = manager_groups(df)
    if not groups:
        raise AlreadyResolved(f"{task.file} has no consecutive package-manager RUNs left")
    text = apply_edits(df.text, [(g[0].start_line, g[-1].end_line, merge_runs(df, g)) for g in groups])
    return {task.file: verify(task.file, text, split_package_manager_runs, "LY002")}


# -- LY004: fold the pip upgrade into the install -------------------------------------------------


_NO_CACHE_DIR = re.compile(r"\s*(?<!\S)--no-cache-dir(?![^\s;&|)])")


def _fold_target(df: Dockerfile, upgrade: Instruction) -> Instruction | None:
    blocker = None
    for ins in df.instructions:
        if ins.stage != upgrade.stage or ins.start_line <= upgrade.start_line:
            continue
        if ins.cmd in ("USER", "ENV", "ARG", "SHELL") and blocker is None:
            blocker = ins
        if ins.cmd == "RUN" and not pip_upgrade_only(df, ins) and pip_installs(df, ins):
            if blocker is not None:
                raise Declined(
                    f"{blocker.cmd} at line {blocker.start_line} sits between the pip upgrade (line "
                    f"{upgrade.start_line}) and the install (line {ins.start_line}); folding would "
                    "change how the upgrade runs"
                )
            if ins.json or is_heredoc(ins):
                raise Declined(f"line {ins.start_line} is a JSON-form or heredoc RUN; can't fold into it")
            return ins
    return None


def assess_fold(project: Project, file: str) -> tuple[bool, str]:
    """Folding runs the same commands in one RUN (safe); dropping an upgrade no install follows changes the
    image's pip (unsafe)."""
    df = project.dockerfiles.get(file)
    if df is None or df.error:
        raise FixError(f"{file} is missing or no longer parses")
    try:
        dropped = [u.start_line for u in df.of("RUN") if pip_upgrade_only(df, u) and _fold_target(df, u) is None]
    except FixError as err:
        return False, f"Unsafe: {err}."
    if dropped:
        return False, (
            "Unsafe: drops the pip upgrade at line " + ", ".join(map(str, dropped)) + ", which no pip "
            "install follows: the image keeps the base image's pip."
        )
    return True, "Folds the upgrade into the install: the same commands, in the same order, in one RUN."


@FOLD_PIP_UPGRADE_FIX.applies("Fold the separate pip upgrade into the pip install in {file}", assess=assess_fold)
def fold_pip_upgrade(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    upgrades = [ins for ins in df.of("RUN") if pip_upgrade_only(df, ins)]
    if not upgrades:
        raise AlreadyResolved(f"{task.file} has no separate pip upgrade left")
    into: dict[int, tuple[Instruction, list[Instruction]]] = {}
    edits: list[tuple[int, int, list[str]]] = []
    for upgrade in upgrades:
        target = _fold_target(df, upgrade)
        if target is not None:
            into.setdefault(target.start_line, (target, []))[1].append(upgrade)
        edits.append((upgrade.start_line, upgrade.end_line, []))
    for target, folded in into.values():
        cached = any(
            m.get("type") == "cache" and "/.cache" in m.get("target", m.get("dst", "")) for m in target.mounts()
        )
        commands = []
        for upgrade in folded:
            for flag in upgrade.flags:
                if flag not in target.flags and "type=cache" not in flag:
                    raise Declined(
                        f"the pip upgrade at line {upgrade.start_line} runs with {flag}, which the "
                        f"install at line {target.start_line} doesn't"
                    )
            command = " ".join(upgrade.command.split())
            commands.append(_NO_CACHE_DIR.sub("", command) if cached else command)
        prefix, rest = split_prefix(df, target)
        edits.append((target.start_line, target.end_line, lines_of(prefix + " && ".join(commands) + " && " + rest)))
    text = apply_edits(df.text, edits)
    return {task.file: verify(task.file, text, pip_upgrade_layer, "LY004")}
