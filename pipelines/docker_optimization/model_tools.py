"""The read-only tools a model may call in LLM mode: read a file, list a directory, the analysis of a file.

What a good Dockerfile edit needs is often beside the Dockerfile: the
requirements file or lockfile an install reads (``requirements.txt``,
``package-lock.json``, ``poetry.lock``, ``go.sum``), ``package.json``, the
app's entry point its CMD runs. The implementer and the analyst may read
them instead of guessing; the engine runs the loop (``engine.tools``,
``engine.llm``) and counts every round in the budget.

Confined to the repository: no absolute path, no ``..``, no symlink out,
nothing under ``.git``; ``.env`` files are refused outright (they hold
secrets; what other files hold is redacted before it is sent). Binary
files are refused. A result is cut at ``--llm-tool-max-chars``.

Example: ``read_file(path="services/api/requirements.txt")`` returns the
file; ``read_file(path="../../etc/passwd")`` returns "refused: ... leaves
the repository".
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from agent_pipelines.engine.artifacts import Finding
from agent_pipelines.engine.tools import Tool, ToolRefused, inside

_READ_LIMIT = 1_000_000  # bytes read from disk at most; the model sees at most --llm-tool-max-chars of them
_LIST_LIMIT = 500  # entries of one directory listing
_PATH = {
    "type": "object",
    "additionalProperties": False,
    "required": ["path"],
    "properties": {"path": {"type": "string", "description": "relative to the repository root"}},
}


def _is_env_file(rel: str) -> bool:
    name = posixpath.basename(rel)
    return name == ".env" or name.startswith(".env.") or name.endswith(".env")


def tools(root: Path, findings: list[Finding]) -> list[Tool]:
    """The tools over the checkout at ``root``; ``findings_for`` answers from ``findings`` (the run's analysis)."""
    root = Path(root)

    def read_file(path: str) -> str:
        target = inside(root, path)
        if _is_env_file(path) or _is_env_file(target.name):
            raise ToolRefused(f"{path} is an environment file: it holds secrets and is never sent")
        if not target.is_file():
            raise ToolRefused(f"{path} is not a file in the repository")
        with target.open("rb") as handle:
            data = handle.read(_READ_LIMIT + 1)
        if b"\0" in data[:8192]:
            raise ToolRefused(f"{path} is a binary file")
        text = data[:_READ_LIMIT].decode("utf-8", errors="replace")
        return text + (f"\n[cut at {_READ_LIMIT} bytes]" if len(data) > _READ_LIMIT else "")

    def list_directory(path: str = ".") -> str:
        target = inside(root, path or ".")
        if not target.is_dir():
            raise ToolRefused(f"{path} is not a directory in the repository")
        entries = sorted(e.name + ("/" if e.is_dir() else "") for e in target.iterdir() if e.name != ".git")
        more = f"\n[and {len(entries) - _LIST_LIMIT} more]" if len(entries) > _LIST_LIMIT else ""
        return "\n".join(entries[:_LIST_LIMIT]) + more if entries else "(empty)"

    def findings_for(path: str) -> str:
        target = inside(root, path)
        rel = target.relative_to(root.resolve()).as_posix()
        found = sorted((f for f in findings if f.file == rel), key=lambda f: (f.line, f.rule))
        if not found:
            return f"no findings in {rel}"
        return "\n".join(f"{f.rule} {f.severity.value} line {f.line}: {f.message}" for f in found)

    return [
        Tool(
            "read_file",
            "Read a text file of the repository: a requirements file, a lockfile, package.json, "
            "pyproject.toml, go.mod, the app's entry point a CMD runs. Read-only; .env files and .git are refused.",
            _PATH,
            read_file,
        ),
        Tool(
            "list_directory",
            "List a directory of the repository (sub-directories end with /).",
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["path"],
                "properties": {"path": {"type": "string", "description": "relative to the repository root; . for it"}},
            },
            list_directory,
        ),
        Tool(
            "findings_for",
            "What the deterministic analysis reports in one file: rule, severity, line, message.",
            _PATH,
            findings_for,
        ),
    ]
