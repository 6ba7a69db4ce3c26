"""Output formats of an analysis: one formatter object per format, found by name in ``FORMATS``.

Each takes the ``AnalysisResult`` and the analyzed root and gives the text
to print: ``md`` (for people), ``json`` (the ``AnalyzeDocument`` whose
schema ``python -m engine.findings_output`` prints) and ``sarif`` (OASIS
SARIF 2.1.0, for code scanning). Findings are masked when made; notes, tool
messages and paths are masked here (``engine.redact``). A new format is one
more class with a ``name`` and a ``render``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from agent_pipelines.engine import findings_output as out
from agent_pipelines.engine.redact import mask, mask_data


class Formatter(Protocol):
    name: str
    description: str

    def render(self, result: out.AnalysisResult, root: Path) -> str: ...


class Markdown:
    name = "md"
    description = "a report for people: findings by file, then notes"

    def render(self, result: out.AnalysisResult, root: Path) -> str:
        return mask(out.markdown(result, root))


class Json:
    name = "json"
    description = "the analysis as one JSON document (schema: python -m engine.findings_output)"

    def render(self, result: out.AnalysisResult, root: Path) -> str:
        return json.dumps(mask_data(out._json_data(out.document(result, root))), indent=2, ensure_ascii=False) + "\n"


class Sarif:
    name = "sarif"
    description = "SARIF 2.1.0, for code scanning (ignored findings as suppressed results)"

    def render(self, result: out.AnalysisResult, root: Path) -> str:
        return json.dumps(mask_data(out.sarif(result, root)), indent=2) + "\n"


FORMATS: dict[str, Formatter] = {f.name: f for f in (Markdown(), Json(), Sarif())}


def render(result: out.AnalysisResult | list, fmt: str, root: Path) -> str:
    """``result`` (or bare findings) in format ``fmt``; an unknown name gives markdown, as before."""
    if isinstance(result, list):
        result = out.AnalysisResult(findings=result)
    return FORMATS.get(fmt, FORMATS["md"]).render(result, root)
