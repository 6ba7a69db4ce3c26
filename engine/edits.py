"""Applying an edit a model proposed, inside the repository only.

Whatever the model (or text in the repository) says, an edit may only write
a relative path inside the worktree: never an absolute path, never ``..``,
never ``.git/``, never through a symlink (a symlinked file or directory on
the way could lead out of the repository). Diffs go through ``git apply``,
which parses them for real and refuses what doesn't apply.

An edit is also confined to the files its task names (``allowed``): a diff
that reaches any other path is refused before anything is written. After
any fix (a model's or a deterministic one) ``confinement_problems`` looks at
what the commit would record and refuses, before it is committed, a change
to a file the task doesn't name, a symlink, a mode change (except a script
the task declares executable), a deletion or a rename.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from agent_pipelines.engine.domain import Declined, FixError
from agent_pipelines.engine.gitenv import git_env

_DIFF_TARGET = re.compile(r"^(?:\+\+\+|---) (?:[ab]/)?(\S+)", re.MULTILINE)
# Paths a git diff names outside its ---/+++ lines: a rename or copy carries none of those.
_DIFF_HEADER = re.compile(r"^(?:diff --git a/(\S+) b/(\S+)|(?:rename|copy) (?:from|to) (\S+))", re.MULTILINE)
_DIFF_MODE = re.compile(r"^(new file |deleted file |old |new )mode (\d+)", re.MULTILINE)
REGULAR, EXECUTABLE, SYMLINK = "100644", "100755", "120000"


@dataclass(frozen=True)
class Staged:
    """One path a commit would record: git's status letter (A, M, D, R, C, T), modes and paths."""

    status: str
    path: str
    old_mode: str = ""
    new_mode: str = ""
    old_path: str = ""


def confinement_problems(staged: list[Staged], allowed: list[str], executable: Collection[str] = ()) -> list[str]:
    """Why a commit of ``staged`` may not be made by a task that may change only ``allowed``; [] when it may.

    Example: a task for ``app/build.cfg`` whose fix also wrote ``app/main.py`` gets
    ``["changes app/main.py, which the task does not name (it may change app/build.cfg)"]``.
    """
    names = ", ".join(allowed)
    problems = []
    for e in staged:
        if e.status.startswith(("R", "C")):
            problems.append(f"{'renames' if e.status[0] == 'R' else 'copies'} {e.old_path} to {e.path}")
        elif e.status == "D":
            problems.append(f"deletes {e.path}")
        elif e.new_mode == SYMLINK:
            problems.append(f"makes {e.path} a symlink")
        elif e.path not in allowed:
            problems.append(f"changes {e.path}, which the task does not name (it may change {names})")
        elif e.new_mode not in (REGULAR, EXECUTABLE):
            problems.append(f"gives {e.path} mode {e.new_mode} (not a regular file)")
        elif e.new_mode != (e.old_mode if e.status != "A" else REGULAR) and not (
            e.new_mode == EXECUTABLE and e.path in executable
        ):
            problems.append(
                f"changes the mode of {e.path} to {e.new_mode}"
                + ("" if e.new_mode == REGULAR else " (the task declares no executable script)")
            )
    return problems


def safe_path(root: Path, rel: str) -> Path:
    """``root / rel`` if writing there stays inside the repository, else FixError saying why."""
    if not rel or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise FixError(f"refused edit of {rel!r}: only relative paths inside the repository")
    clean = posixpath.normpath(rel.replace("\\", "/"))
    parts = clean.split("/")
    if clean == ".." or parts[0] == ".." or ".git" in parts:
        raise FixError(f"refused edit of {rel!r}: outside the repository or inside .git")
    root = root.resolve()
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise FixError(f"refused edit of {rel!r}: {current.relative_to(root)} is a symlink")
    if not current.resolve().is_relative_to(root):
        raise FixError(f"refused edit of {rel!r}: resolves outside the repository")
    return current


def _confined(rel: str, allowed: list[str] | None) -> None:
    if allowed is not None and posixpath.normpath(rel.replace("\\", "/")) not in allowed:
        raise FixError(f"refused edit of {rel!r}: the task may change only {', '.join(allowed)}")


def _shown(root: Path, files: list[str], redactor) -> str:
    """The files as the model saw them: their current text, redacted."""
    texts = []
    for rel in files:
        path = safe_path(root, rel)
        if path.is_file():
            texts.append(redactor(path.read_text(encoding="utf-8", errors="replace")))
    return "\n".join(texts)


def apply_edit(
    root: Path, file: str, content: str, diff: str, redactor=None, allowed: list[str] | None = None
) -> list[str]:
    """Write a whole-file ``content`` or apply a unified ``diff``; return the files written.

    ``allowed``: the only files the edit may write (the task's); any other is refused before writing.

    With ``redactor`` (the one that masked what the model saw), placeholders
    the edit kept on unchanged lines get their values back; an edit that moves,
    rewrites or invents a placeholder, or writes a bare ``[REDACTED]``, is
    refused (``engine.redact.Redactor.restore`` says why).
    """
    from agent_pipelines.engine.redact import RestoreError

    if content and diff:
        raise FixError("the model sent both a whole file and a diff; refused")
    try:
        if content and redactor is not None:
            content = redactor.restore(_shown(root, [file], redactor), content, file)
        if diff and redactor is not None:
            targets = sorted({t for t in _DIFF_TARGET.findall(diff) if t != "/dev/null"})
            diff = redactor.restore(_shown(root, targets, redactor), diff, ", ".join(targets), diff=True)
    except RestoreError as err:
        raise FixError(str(err)) from None
    if content:
        target = safe_path(root, file)
        _confined(file, allowed)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8", newline="") as fh:
            fh.write(content)
        return [posixpath.normpath(file)]
    if diff:
        named = _DIFF_TARGET.findall(diff) + [p for m in _DIFF_HEADER.findall(diff) for p in m if p]
        targets = sorted({t for t in named if t != "/dev/null"})
        for kind, mode in _DIFF_MODE.findall(diff):
            if mode == SYMLINK:
                raise FixError("refused diff: it creates a symlink")
            if (kind, mode) != ("new file ", REGULAR):
                raise FixError(
                    f"refused diff: it {'deletes a file' if kind == 'deleted file ' else 'changes a mode'} "
                    f"(a model edit only changes the text of the files its task names)"
                )
        if re.search(r"^(?:rename|copy) (?:from|to) ", diff, re.MULTILINE):
            raise FixError("refused diff: it renames or copies a file")
        for t in targets:
            safe_path(root, t)
            _confined(t, allowed)
        patch = diff if diff.endswith("\n") else diff + "\n"
        for args in (["apply", "--check"], ["apply"]):
            done = subprocess.run(
                ["git", "-C", str(root), *args, "-"], input=patch, capture_output=True, text=True, env=git_env()
            )
            if done.returncode != 0:
                raise FixError(f"the model's diff does not apply: {' '.join(done.stderr.split())[:200]}")
        return targets
    raise Declined("the model proposed no change")  # its answer, not a break: a person may still fix it


TRAILER_MODEL = "Pipeline-Model"
TRAILER_ENDPOINT = "Pipeline-Endpoint"


def provenance(llm, message: str, trailers: dict[str, str], rationale: str) -> tuple[str, dict[str, str]]:
    """A model commit's message and trailers: the model's rationale in the body, the model and endpoint host.

    The rationale is the model's own words, so it is redacted, cut to one line
    and prefixed: it can never add a trailer (``Pipeline-Task: ...``) or a
    secret to the commit.
    """
    said = " ".join(llm.redact(rationale or "").split())[:500] or "(none given)"
    body = f"{message.rstrip()}\n\nModel rationale: {said}"
    return body, {**trailers, TRAILER_MODEL: llm.config.model, TRAILER_ENDPOINT: llm.config.endpoint}
