"""Maintained JSON schemas, as vendored by check-jsonschema (compose-spec, GitHub workflows).

Read from the installed package's files without importing it: importing
check_jsonschema pulls in its CLI, which would add half a second to
`pipeline analyze`.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path


def vendored_schema(name: str) -> str:
    """The text of ``check_jsonschema/builtin_schemas/vendor/<name>``."""
    spec = find_spec("check_jsonschema")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("check-jsonschema is not installed; it ships the compose and workflow schemas")
    return (Path(list(spec.submodule_search_locations)[0]) / "builtin_schemas" / "vendor" / name).read_text(
        encoding="utf-8"
    )
