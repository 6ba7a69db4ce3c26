"""Read-only tools a model may call while it answers (OpenAI function calling), and their confinement.

A pipeline offers tools (``Tool``: a name, a JSON-schema of arguments, a
function returning text); ``engine.llm`` runs the loop: it sends their
declarations with the request, runs each call the model makes, sends the
result back as a ``role: tool`` message, and asks again, for at most
``Toolbox.rounds`` rounds (then the model must answer without them). Every
round is a model request like any other: budget-checked before it is sent,
written to the ledger, and redacted.

Tools only read. What they read stays inside one directory (``inside``):
no absolute path, no ``..``, no symlink leading out, nothing under
``.git``; a refused call is answered with the reason, never raised. A
result longer than ``Toolbox.max_chars`` is cut and says so.

Example: ``read_file("../etc/passwd")`` answers "refused: ../etc/passwd
leaves the repository" and the model carries on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

DEFAULT_TOOL_ROUNDS = 4  # tool rounds per question, unless --llm-tool-rounds says otherwise
DEFAULT_TOOL_MAX_CHARS = 20_000  # characters of one tool result, unless --llm-tool-max-chars says otherwise


class ToolRefused(Exception):
    """The call can't be answered (outside the directory, not a file, bad arguments): the message says why."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict  # the JSON schema of the arguments (an object)
    run: Callable[..., str]

    def declaration(self) -> dict:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass
class Toolbox:
    """The tools of one question, with the bounds of the loop; ``log`` lists the calls made (name, arguments, ok)."""

    tools: list[Tool]
    rounds: int = DEFAULT_TOOL_ROUNDS
    max_chars: int = DEFAULT_TOOL_MAX_CHARS
    log: list[tuple[str, str, bool]] = field(default_factory=list)

    def declarations(self) -> list[dict]:
        return [t.declaration() for t in self.tools]

    def names(self) -> list[str]:
        return [t.name for t in self.tools]

    def call(self, name: str, arguments: str) -> str:
        """The result of one call as text for the model: the tool's answer (cut at ``max_chars``) or why not."""
        tool = next((t for t in self.tools if t.name == name), None)
        try:
            if tool is None:
                raise ToolRefused(f"no tool named {name!r}; the tools are {', '.join(self.names())}")
            try:
                args = json.loads(arguments or "{}")
            except ValueError:
                raise ToolRefused(f"the arguments are not JSON: {arguments[:200]!r}") from None
            if not isinstance(args, dict):
                raise ToolRefused("the arguments must be a JSON object")
            try:
                text = tool.run(**args)
            except TypeError as err:
                raise ToolRefused(f"bad arguments for {name}: {err}") from None
        except ToolRefused as err:
            self.log.append((name, arguments[:200], False))
            return f"refused: {err}"
        self.log.append((name, arguments[:200], True))
        if len(text) > self.max_chars:
            text = text[: self.max_chars] + f"\n[cut at {self.max_chars} characters of {len(text)}]"
        return text


def inside(root: Path, rel: str) -> Path:
    """``rel`` resolved under ``root``; ToolRefused when it is absolute, climbs out, enters .git or a symlink leads out."""
    if not isinstance(rel, str) or "\0" in rel:
        raise ToolRefused("the path must be a string")
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or rel.startswith("~"):
        raise ToolRefused(f"{rel} is absolute; give a path relative to the repository root")
    if ".." in pure.parts:
        raise ToolRefused(f"{rel} leaves the repository")
    if ".git" in pure.parts:
        raise ToolRefused(f"{rel} is inside .git, which is not part of the repository's files")
    base = root.resolve()
    target = (base / pure).resolve()
    if target != base and base not in target.parents:
        raise ToolRefused(f"{rel} leads out of the repository (a symlink)")
    if ".git" in target.relative_to(base).parts:
        raise ToolRefused(f"{rel} leads into .git (a symlink)")
    return target


def tools_note(toolbox: Toolbox | None) -> str:
    """What the model looked at through the tools, for the report: "" when it called none."""
    if toolbox is None or not toolbox.log:
        return ""
    calls = [f"{name}({_argument(arguments)})" + ("" if ok else " refused") for name, arguments, ok in toolbox.log]
    return f"model tools: {len(calls)} calls: " + ", ".join(calls[:12]) + (" ..." if len(calls) > 12 else "")


def _argument(arguments: str) -> str:
    try:
        args = json.loads(arguments or "{}")
    except ValueError:
        return arguments[:60]
    return ", ".join(str(v)[:80] for v in args.values()) if isinstance(args, dict) else str(args)[:60]
