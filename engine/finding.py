"""A finding and the enums it carries, in plain Python: no pydantic at a linter's start-up.

``pipeline analyze`` makes hundreds of findings and prints them; importing
pydantic alone costs it ~100 ms. The run's other artifacts
(``engine.artifacts``) are pydantic models and hold findings as this
dataclass, which pydantic validates and serializes as it does a model.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields
from enum import Enum
from functools import cached_property

from agent_pipelines.engine.redact import mask


def short_hash(*parts: object, length: int = 10) -> str:
    """A stable id from the given parts (same input, same id across runs)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:length]


_DIGITS = re.compile(r"\d+")


class Severity(str, Enum):
    info = "info"
    warning = "warning"
    error = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


class Category(str, Enum):
    performance = "performance"
    size = "size"
    security = "security"
    reliability = "reliability"
    correctness = "correctness"


class Applicability(str, Enum):
    """How safe a fix is: ``safe`` fixes apply by default, ``unsafe`` only on request."""

    safe = "safe"
    unsafe = "unsafe"
    none = "none"


@dataclass(frozen=True)
class Finding:
    """One problem a rule found, pinned to a file and a line span."""

    __pydantic_config__ = {"extra": "forbid"}  # read by pydantic where a model holds findings

    id: str
    rule: str
    name: str
    category: Category
    severity: Severity
    message: str
    file: str
    line: int = 0
    end_line: int = 0
    evidence: str = ""
    fix: Applicability = Applicability.none
    source: str = "rules"

    def __post_init__(self) -> None:
        # What pydantic did for the model: "warning" becomes Severity.warning; a wrong value raises ValueError.
        for name, kind in (("category", Category), ("severity", Severity), ("fix", Applicability)):
            value = getattr(self, name)
            if not isinstance(value, kind):
                object.__setattr__(self, name, kind(value))
        for name in ("id", "rule", "name", "message", "file", "evidence", "source"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"Finding.{name} must be a string, not {type(getattr(self, name)).__name__}")
        for name in ("line", "end_line"):
            if type(getattr(self, name)) is not int:
                raise TypeError(f"Finding.{name} must be an int, not {type(getattr(self, name)).__name__}")
        # No secret in a finding, whoever made it (a rule, a second-opinion tool, a model, a checkpoint): every output
        # (JSON, SARIF, reports, run.json, checkpoints) writes findings, so they are masked here, once.
        for name in ("message", "evidence"):
            object.__setattr__(self, name, mask(getattr(self, name)))

    @classmethod
    def make(cls, **kw) -> Finding:
        kw.setdefault("end_line", kw.get("line", 0))
        for name in ("message", "evidence"):  # the id is a hash of them: of the masked text, never the secret
            if isinstance(kw.get(name), str):
                kw[name] = mask(kw[name])
        fid = short_hash(kw["rule"], kw["file"], kw.get("line", 0), kw.get("evidence", ""), kw.get("message", ""))
        return cls(id=fid, **kw)

    @cached_property  # frozen: computed once, kept in the instance's __dict__ (not a field)
    def fingerprint(self) -> str:
        """What identifies the finding across commits: rule, file and evidence, never line numbers.

        Code-scanning tools match alerts between two analyses this way, so an
        edit that moves a line doesn't make its finding look fixed and new.
        Without evidence, the message with its numbers blanked stands in.
        """
        text = " ".join(self.evidence.split()) or _DIGITS.sub("#", " ".join(self.message.split()))
        return short_hash(self.rule, self.file, text, length=16)

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def to_json(self) -> dict:
        """The finding as JSON data (enums as their values), in field order."""
        return {f.name: _value(getattr(self, f.name)) for f in fields(self)}


def _value(value: object) -> object:
    return value.value if isinstance(value, Enum) else value
