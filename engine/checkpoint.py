"""LangGraph checkpoints in SQLite, with a strict allow-list of artifact types.

Checkpoints hold pydantic artifacts; the serializer only revives the types
registered here (LangGraph's strict msgpack mode), so a tampered database
can't make the run import arbitrary classes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from agent_pipelines.engine.artifacts import ARTIFACT_TYPES, ENUM_TYPES


def serializer(extra: tuple[type, ...] = ()) -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=[*ARTIFACT_TYPES, *ENUM_TYPES, *extra])


class Checkpoints:
    """A SqliteSaver over its own connection; closing it closes the connection."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False)
        self.saver = SqliteSaver(self.conn, serde=serializer())

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
