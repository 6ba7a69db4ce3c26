"""LangGraph checkpoints in SQLite, with a strict allow-list of artifact types.

Checkpoints hold pydantic artifacts; the serializer only revives the types
registered here (LangGraph's strict msgpack mode), so a tampered database
can't make the run import arbitrary classes.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from enum import Enum
from pathlib import Path
from typing import Any

import ormsgpack
from langgraph.checkpoint.serde import jsonplus
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from pydantic import BaseModel

from agent_pipelines.engine.artifacts import ARTIFACT_TYPES, ENUM_TYPES


def serializer(extra: tuple[type, ...] = ()) -> JsonPlusSerializer:
    return _Serializer(allowed_msgpack_modules=[*ARTIFACT_TYPES, *ENUM_TYPES, *extra])


class _Serializer(JsonPlusSerializer):
    """LangGraph's serializer, writing the same bytes, with the run's own types encoded by their exact type.

    Why: LangGraph asks each object it can't encode natively a chain of questions (about twenty
    ``hasattr``/``isinstance``, one of them against a runtime ``Protocol``) before it finds a dataclass
    such as ``Finding``; a state holds thousands of findings and changes, re-encoded after each node
    (7 s of a 200,000-file run). The artifact and enum types are known here, so each is encoded as
    LangGraph's chain would encode it, by a lookup of its type; anything else goes through the chain.
    Reading is LangGraph's own (the same bytes, the same allow-list).
    """

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if obj is None or isinstance(obj, (bytes, bytearray)):
            return super().dumps_typed(obj)
        try:
            return "msgpack", _pack(obj)
        except ormsgpack.MsgpackEncodeError:
            return super().dumps_typed(obj)  # what LangGraph does then (its pickle fallback, or the error)


def _pack(obj: Any) -> bytes:
    return ormsgpack.packb(obj, default=_default, option=jsonplus._option)


def _default(obj: Any) -> Any:
    kind = type(obj)
    how = _HOW.get(kind)
    if how is None:
        return jsonplus._msgpack_default(obj)
    name = (kind.__module__, kind.__name__)
    if how == "model":
        return ormsgpack.Ext(jsonplus.EXT_PYDANTIC_V2, _pack((*name, obj.model_dump(), "model_validate_json")))
    if how == "enum":
        return ormsgpack.Ext(jsonplus.EXT_CONSTRUCTOR_SINGLE_ARG, _pack((*name, obj.value)))
    fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return ormsgpack.Ext(jsonplus.EXT_CONSTRUCTOR_KW_ARGS, _pack((*name, fields)))


def _how(kind: type) -> str:
    """The branch of LangGraph's ``_msgpack_default`` an instance of ``kind`` takes (a pydantic v2 model, an
    enum, a dataclass), asked in its order."""
    if issubclass(kind, BaseModel):
        return "model"
    if any(hasattr(kind, a) for a in ("model_dump", "get_secret_value", "dict", "_asdict")):
        raise TypeError(f"{kind.__name__} looks like another kind to LangGraph's serializer")
    if issubclass(kind, Enum):
        return "enum"
    if dataclasses.is_dataclass(kind):
        return "dataclass"
    raise TypeError(f"{kind.__name__}: no fast encoding")


_HOW = {kind: _how(kind) for kind in (*ARTIFACT_TYPES, *ENUM_TYPES)}


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
