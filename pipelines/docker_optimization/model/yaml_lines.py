"""YAML read the way compose reads it (YAML 1.2), fast (libyaml), with each key's line.

The analysis reads every compose file of a monorepo on every run; ruamel's
round-trip parser, pure Python, was its slowest step (~5 ms a file). Here
libyaml (PyYAML's C parser) builds the node tree and this module makes the
data from it:

- scalars resolve by YAML 1.2's core schema, as compose's Go parser and
  ruamel do: ``yes``, ``on`` and dates stay text; ``0o17`` and ``0x1F`` are
  numbers;
- ``<<`` merge keys merge as ruamel does: own keys first, merged keys after;
- a repeated key is an error (compose refuses it too);
- an alias is the same object as its anchor (a "billion laughs" document
  stays small in memory; ``compose.expanded_size`` measures it);
- a tag (``!reset``, ``!override``) keeps the value it tags; the mapping
  holding it records the tag (``lc.tag(key)``), which compose's merge reads.

Mappings and sequences carry ``.lc`` like ruamel's: ``lc.key(k)`` and
``lc.item(i)`` give the 0-based (line, column) of a key or an item, for keys
the mapping itself wrote (a merged key raises KeyError, as in ruamel).
Edits still go through ruamel's round trip (``compose.RoundTrip``).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, TypeAlias

import yaml

if TYPE_CHECKING:
    _Loader: TypeAlias = yaml.SafeLoader
else:
    _Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it
_PLAIN = "?plain"  # a plain scalar; resolved by the core schema below, not by PyYAML's YAML 1.1
_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
# Plain scalars, and scalars tagged as one of the core schema's own types (!!int "5" is 5).
_RESOLVED = {_PLAIN, *(f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null"))}

_NULL = re.compile(r"~|null|Null|NULL|")
_TRUE = re.compile(r"true|True|TRUE")
_FALSE = re.compile(r"false|False|FALSE")
_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")


class Lines:
    """ruamel's ``lc``: where each key or item of a node starts (0-based line, column)."""

    __slots__ = ("_at", "_tags", "col", "line")

    def __init__(self, line: int, col: int) -> None:
        self.line, self.col = line, col
        self._at: dict = {}
        self._tags: dict | None = None  # key -> "!reset"/"!override", for the few keys tagged so

    def tag(self, key) -> str:
        """The local tag (``!reset``, ``!override``) written on ``key``'s value, or ""."""
        return (self._tags or {}).get(key, "")

    def key(self, key) -> tuple[int, int]:
        return self._at[key]

    def item(self, index: int) -> tuple[int, int]:
        return self._at[index]


class LineMap(dict):
    """A mapping that knows the line of each of its keys (``.lc``)."""

    __slots__ = ("lc",)
    lc: Lines


class LineSeq(list):
    """A sequence that knows the line of each of its items (``.lc``)."""

    __slots__ = ("lc",)
    lc: Lines


class _Resolver(_Loader):
    def resolve(self, kind, value, implicit):  # called by libyaml's composer for untagged nodes
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _MAP if kind is yaml.MappingNode else _SEQ


def load(text: str) -> object:
    """The document in ``text`` (None when empty); a YAML error raises ``yaml.YAMLError``."""
    loader = _Resolver(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    return None if node is None else _Builder().build(node)


class DuplicateKeyError(yaml.MarkedYAMLError):
    pass


class _Builder:
    def __init__(self) -> None:
        self.built: dict[int, object] = {}  # node id -> value: aliases share their anchor's object

    def build(self, node: yaml.Node) -> object:
        done = self.built.get(id(node))
        if done is not None or id(node) in self.built:
            return done
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if isinstance(node, yaml.SequenceNode):
            seq = LineSeq()
            seq.lc = Lines(node.start_mark.line, node.start_mark.column)
            self.built[id(node)] = seq
            for index, item in enumerate(node.value):
                seq.lc._at[index] = (item.start_mark.line, item.start_mark.column)
                seq.append(self.build(item))
            return seq
        value = scalar(node) if node.tag in _RESOLVED else node.value
        self.built[id(node)] = value
        return value

    def _mapping(self, node: yaml.MappingNode) -> LineMap:
        out = LineMap()
        out.lc = Lines(node.start_mark.line, node.start_mark.column)
        self.built[id(node)] = out
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _PLAIN and key_node.value == "<<":
                merges += value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                continue
            key = self.build(key_node)
            if isinstance(key, list):
                key = tuple(key)  # "? [a, b]": a complex key, hashable as ruamel's is
            elif isinstance(key, dict):
                key = tuple(key.items())
            if key in out:
                raise DuplicateKeyError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
            out.lc._at[key] = (key_node.start_mark.line, key_node.start_mark.column)
            if value_node.tag.startswith("!") and not value_node.tag.startswith("!!"):
                out.lc._tags = {**(out.lc._tags or {}), key: value_node.tag}
            out[key] = self.build(value_node)
        for merged in merges:
            source = self.build(merged)
            if not isinstance(source, dict):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "a merge key (<<) needs a mapping or a list of mappings",
                    merged.start_mark,
                )
            for key, value in source.items():
                out.setdefault(key, value)
        return out


def scalar(node: yaml.ScalarNode) -> object:
    """A plain scalar by YAML 1.2's core schema."""
    text = node.value
    if _NULL.fullmatch(text):
        return None
    if _TRUE.fullmatch(text):
        return True
    if _FALSE.fullmatch(text):
        return False
    if _INT.fullmatch(text):
        return int(text)
    if _OCT.fullmatch(text):
        return int(text, 8)  # "0o17": int() takes the prefix with an explicit base
    if _HEX.fullmatch(text):
        return int(text, 16)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    return text
