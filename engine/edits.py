"""Applying an edit a model proposed, inside the repository only.

Whatever the model (or text in the repository) says, an edit may only write
a relative path inside the worktree: never an absolute path, never ``..``,
never ``.git/``, never through a symlink (a symlinked file or directory on
the way could lead out of the repository). Diffs go through ``git apply``,
which parses them for real and refuses what doesn't apply.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from pathlib import Path

from engine.domain import FixError
from engine.gitenv import git_env

_DIFF_TARGET = re.compile(r"^(?:\+\+\+|---) (?:[ab]/)?(\S+)", re.MULTILINE)


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


def _shown(root: Path, files: list[str], redactor) -> str:
    """The files as the model saw them: their current text, redacted."""
    texts = []
    for rel in files:
        path = safe_path(root, rel)
        if path.is_file():
            texts.append(redactor(path.read_text(encoding="utf-8", errors="replace")))
    return "\n".join(texts)


def apply_edit(root: Path, file: str, content: str, diff: str, redactor=None) -> list[str]:
    """Write a whole-file ``content`` or apply a unified ``diff``; return the files written.

    With ``redactor`` (the one that masked what the model saw), placeholders
    the edit kept on unchanged lines get their values back; an edit that moves,
    rewrites or invents a placeholder, or writes a bare ``[REDACTED]``, is
    refused (``engine.redact.Redactor.restore`` says why).
    """
    from engine.redact import RestoreError

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
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8", newline="") as fh:
            fh.write(content)
        return [posixpath.normpath(file)]
    if diff:
        targets = sorted({t for t in _DIFF_TARGET.findall(diff) if t != "/dev/null"})
        for t in targets:
            safe_path(root, t)
        patch = diff if diff.endswith("\n") else diff + "\n"
        for args in (["apply", "--check"], ["apply"]):
            done = subprocess.run(["git", "-C", str(root), *args, "-"], input=patch, capture_output=True,
                                  text=True, env=git_env())
            if done.returncode != 0:
                raise FixError(f"the model's diff does not apply: {' '.join(done.stderr.split())[:200]}")
        return targets
    raise FixError("the model proposed no change")


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
