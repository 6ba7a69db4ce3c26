"""Secrets never leave the machine: redaction applied to everything sent to a model.

Three layers: literal values found in the repository's ``.env*`` files;
values of secret-looking assignments (``API_TOKEN=...``, ``ARG DB_PASSWORD=...``,
``password: ...``); and well-known token shapes (private key blocks, ``sk-``,
``ghp_``, ``AKIA`` keys). Each is replaced by ``[REDACTED]``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MASK = "[REDACTED]"
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:SECRET|TOKEN|PASSWORD|PASSWD|PASS|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIALS?|_KEY)[A-Za-z0-9_]*"
_ASSIGNMENT = re.compile(rf"(?i)\b({_SECRET_NAME})(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s\"',;}}\]]+)")
_SHAPES = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}\b"),
]


def env_values(root: Path) -> set[str]:
    """Values assigned in every .env-like file under ``root`` (not .git)."""
    values: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            if not (name == ".env" or name.startswith(".env.") or name.endswith(".env")):
                continue
            try:
                text = (Path(dirpath) / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                key, sep, value = line.partition("=")
                value = value.strip().strip("'\"")
                if sep and key.strip() and not key.lstrip().startswith("#") and len(value) >= 4:
                    values.add(value)
    return values


class Redactor:
    def __init__(self, literals: set[str] | None = None) -> None:
        self.literals = sorted(literals or set(), key=len, reverse=True)
        self.count = 0

    def __call__(self, text: str) -> str:
        for literal in self.literals:
            if literal in text:
                self.count += text.count(literal)
                text = text.replace(literal, MASK)
        text, n = _ASSIGNMENT.subn(lambda m: m.group(1) + m.group(2) + MASK if m.group(3) != MASK else m.group(0), text)
        self.count += n
        for shape in _SHAPES:
            text, n = shape.subn(MASK, text)
            self.count += n
        return text
