"""Compose files: loading, the build contexts they declare, schema validation, round-trip edits.

Reading goes through ``yaml_lines`` (libyaml, YAML 1.2, each key's line).
Edits go through ruamel.yaml's round-trip mode with the file's own
indentation detected, quotes preserved and a wide line width, so an edit
changes only the lines it means to.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

from agent_pipelines.pipelines.docker_optimization.model import yaml_lines
from agent_pipelines.pipelines.docker_optimization.model.schemas import vendored_schema

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def is_compose_file(path: str) -> bool:
    name = path.rpartition("/")[2]
    return name in COMPOSE_NAMES or (
        name.startswith(("docker-compose.", "compose.")) and name.endswith((".yml", ".yaml"))
    )


@dataclass
class BuildSpec:
    service: str
    context: str  # repo-relative directory ("." for the root)
    dockerfile: str  # repo-relative path
    target: str = ""
    args: dict[str, str] = field(default_factory=dict)  # as written (``${VAR}`` kept: no .env value copied)
    additional_contexts: dict[str, str] = field(default_factory=dict)
    line: int = 0  # the line of the service entry in ``file`` that wrote its ``build``
    file: str = ""  # the compose file that wrote it (an override, an extended or included file...)
    profiles: tuple[str, ...] = ()  # the service's profiles: it is built only when one of them is enabled
    arg_values: dict[str, str] = field(default_factory=dict)  # the args as compose passes them (.env interpolated)


@dataclass
class ComposeFile:
    path: str
    text: str
    data: dict | None = None
    error: str = ""
    # The builds of the services this file defines, in every configuration it is part of (with its
    # override, the files it includes, the services it extends, its .env): ``compose_resolve`` fills
    # them in for a project; ``load`` alone leaves them empty.
    builds: list[BuildSpec] = field(default_factory=list)

    @property
    def services(self) -> dict:
        services = (self.data or {}).get("services") if isinstance(self.data, dict) else None
        return services if isinstance(services, dict) else {}

    def line_of(self, service: str) -> int:
        services: Any = self.data.get("services") if isinstance(self.data, dict) else None  # ruamel's, with .lc
        try:
            return services.lc.key(service)[0] + 1
        except (AttributeError, KeyError, TypeError):
            return 0


def _yaml():
    from ruamel.yaml import YAML  # edits only: reading doesn't pay for ruamel's import

    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    return rt


MAX_EXPANDED_NODES = 1_000_000


def expanded_size(data: object) -> int:
    """How many nodes the document has once its aliases are expanded (memoized: aliases share objects)."""
    memo: dict[int, int] = {}

    def size(node: object) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        memo[key] = 1  # a cycle counts once
        if isinstance(node, dict):
            total = 1 + sum(size(k) + size(v) for k, v in node.items())
        elif isinstance(node, list):
            total = 1 + sum(size(v) for v in node)
        else:
            total = 1
        memo[key] = min(total, MAX_EXPANDED_NODES + 1)
        return memo[key]

    return size(data)


def recursive(data: object) -> bool:
    """Does a node contain itself through an alias (``x: &a [*a]``)? No JSON, schema or walk can take that."""
    done: set[int] = set()

    def visit(node: object, stack: set[int]) -> bool:
        if not isinstance(node, (dict, list)) or id(node) in done:
            return False
        if id(node) in stack:
            return True
        stack.add(id(node))
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        found = any(visit(child, stack) for child in children)
        stack.discard(id(node))
        done.add(id(node))
        return found

    return visit(data, set())


@lru_cache(maxsize=512)
def load(path: str, text: str) -> ComposeFile:
    """Parse a compose file; a parse error becomes ``error``, never an exception.

    Cached by (path, text): the reviewer and ops re-analyze the same files
    many times in a run. The result is shared, so nothing may mutate it (edits go
    through ``RoundTrip``, which parses its own copy; a project gives each file
    its builds on a copy, ``dataclasses.replace``).
    """
    compose = ComposeFile(path=path, text=text)
    try:
        data = yaml_lines.load(text)
    except yaml.YAMLError as err:
        compose.error = " ".join(str(err).split())
        return compose
    if not isinstance(data, dict):
        compose.error = "not a compose file: the top level is not a mapping"
        return compose
    expanded = expanded_size(data)
    if expanded > MAX_EXPANDED_NODES:
        compose.error = (
            f"YAML aliases expand this document to over {MAX_EXPANDED_NODES:,} nodes "
            "(a billion-laughs document); not analyzed"
        )
        return compose
    if recursive(data):
        compose.error = "a YAML alias contains itself (a recursive alias); not analyzed"
        return compose
    compose.data = data
    return compose


@lru_cache(maxsize=1)
def compose_schema() -> dict:
    """The compose-spec JSON schema as vendored by check-jsonschema (a maintained copy)."""
    return json.loads(vendored_schema("compose-spec.json"))


def _string_keys(data: object) -> object:
    """YAML allows any key (``? [a, b]``); JSON, and so the schema, only strings."""
    if isinstance(data, dict):
        return {str(k): _string_keys(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_string_keys(v) for v in data]
    return data


def _plain(data: object) -> object:
    """The document as JSON sees it: string keys, and anything else YAML allows (dates...) as text."""
    return json.loads(json.dumps(_string_keys(data), default=str))


@lru_cache(maxsize=1)
def _fast_validator():
    """jsonschema-rs (Rust) for the yes/no answer: ~20 ms to load against ~100 ms for jsonschema.

    Valid documents, the common case, never import jsonschema; an invalid one
    is explained by jsonschema, whose errors carry the context (``oneOf``
    branches) the messages need. None when jsonschema-rs is missing.
    """
    try:
        import jsonschema_rs
    except ImportError:
        return None
    return jsonschema_rs.validator_for(compose_schema())


def _valid(plain: object) -> bool:
    validator = _fast_validator()
    return validator is not None and validator.is_valid(plain)


def schema_errors(data: object) -> list[str]:
    """Violations of the compose-spec schema, as short messages with their path."""
    plain = _plain(data)
    if _valid(plain):
        return []
    import jsonschema

    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in sorted(validator.iter_errors(plain), key=lambda e: list(map(str, e.absolute_path)))
    ]


def guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) indentation as ruamel.yaml names them, read off the text.

    ruamel's own guess reports the sequence indent as the mapping indent in
    files that indent lists under their key (``ports:\n  - x``), so we read
    the first nested key and the first list item ourselves.
    """
    mapping, offset, sequence = 0, None, None
    previous_key_indent = None
    for raw in text.splitlines():
        stripped = raw.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw) - len(stripped)
        if previous_key_indent is not None:
            if stripped.startswith("-") and indent >= previous_key_indent and offset is None:
                offset = indent - previous_key_indent
                sequence = offset + 1 + (len(stripped[1:]) - len(stripped[1:].lstrip(" ")))
            elif indent > previous_key_indent and not mapping:
                mapping = indent - previous_key_indent
        is_key = stripped.rstrip().endswith(":") and not stripped.startswith("-")
        previous_key_indent = indent if is_key else None
        if mapping and offset is not None:
            break
    mapping = mapping or 2
    if offset is None or sequence is None:  # set together: both or neither
        offset, sequence = mapping, mapping + 2
    return mapping, sequence, offset


class RoundTrip:
    """Edit a compose document and write it back with the file's own style."""

    def __init__(self, text: str) -> None:
        self.original = text
        mapping, sequence, offset = guess_indent(text)
        self.yaml = _yaml()
        self.yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
        self.data = self.yaml.load(text)

    def dump(self) -> str:
        """The edited document, with the original's line endings (CRLF stays CRLF) and final-newline state."""
        buf = io.StringIO()
        self.yaml.dump(self.data, buf)
        out = buf.getvalue()
        if not self.original.endswith("\n") and out.endswith("\n"):
            out = out[:-1]
        if "\r\n" in self.original:
            out = out.replace("\r\n", "\n").replace("\n", "\r\n")
        return out


def schema_violations(data: object) -> list[tuple[tuple[str, ...], str]]:
    """Violations of the compose-spec schema as (key path, message), sorted by path.

    Unlike ``schema_errors`` it says what is wrong where a person would look:
    a ``oneOf`` failure is replaced by the failure inside the branch that fits
    the value's type (``depends_on/redis: 'condition' is a required property``),
    and "unevaluated properties" lists only names the schema doesn't know
    (a sibling's failure makes valid keys "unevaluated" too).
    """
    plain = _plain(data)
    if _valid(plain):
        return []
    import jsonschema

    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [_deepest(e) for e in validator.iter_errors(plain)]
    paths = [tuple(map(str, e.absolute_path)) for e in errors]
    found = []
    for error, path in zip(errors, paths):
        message = error.message
        if error.validator == "unevaluatedProperties" and isinstance(error.instance, dict):
            unknown = [
                str(k) for k in error.instance if str(k) not in _property_names() and not str(k).startswith("x-")
            ]
            if any(len(p) > len(path) and p[: len(path)] == path for p in paths):
                if not unknown:
                    continue  # only valid keys whose values failed (reported on their own)
                message = f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
        found.append((path, message))
    return sorted(found, key=lambda item: item[0])


def _deepest(error):
    """For a oneOf/anyOf failure, the failure inside the branch that matches the value's type."""
    while error.validator in ("oneOf", "anyOf") and error.context:
        inside = [
            e for e in error.context if not (e.validator == "type" and len(e.absolute_path) == len(error.absolute_path))
        ]
        if not inside:
            break
        error = max(inside, key=lambda e: len(e.absolute_path))
    return error


@lru_cache(maxsize=1)
def _property_names() -> frozenset[str]:
    """Every key name the compose-spec schema defines somewhere."""
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                names.update(node["properties"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(compose_schema())
    return frozenset(names)


def line_at(data: Any, path: tuple[str, ...] | list) -> int:  # ruamel's round-trip nodes (.lc)
    """The 1-based line of the deepest node of ``path`` found in a round-trip document (0 when none)."""
    line, node = 0, data
    for key in path:
        try:
            if isinstance(node, list):
                index = int(key)
                line = _lc(node).item(index)[0] + 1
                node = node[index]
            elif isinstance(node, dict):
                match = next((k for k in node if str(k) == str(key)), None)
                if match is None:
                    break
                line = _lc(node).key(match)[0] + 1
                node = node[match]
            else:
                break
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            break
    return line


def _lc(node: Any) -> Any:
    """A round-trip node's line record (``.lc``; AttributeError for a plain list or dict)."""
    return node.lc
