"""Compose-spec validation: jsonschema-rs answers yes/no fast, jsonschema explains; both must agree."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_pipelines.pipelines.docker_optimization.model import compose
from tests.conftest import ROOT

_SLOW = jsonschema.validators.validator_for(compose.compose_schema())(compose.compose_schema())


def _every_compose_file() -> list[Path]:
    found = [p for p in (ROOT / "examples").rglob("*") if p.is_file() and compose.is_compose_file(p.name)]
    return sorted(found)


DOCUMENTS = [
    {"services": {"api": {"image": "python:3.12-slim"}}},
    {"services": {"api": {"build": "."}}},
    {"services": {"api": {"build": {"context": ".", "dockerfile": "Dockerfile", "args": {"A": "1"}}}}},
    {"services": {"api": {"image": 5}}},  # a number for a string
    {"services": {"api": {"image": "x", "bogus": 1}}},  # an unknown key
    {"services": {"api": {"image": "x", "depends_on": {"db": {}}}}},  # condition is required
    {"services": {"api": {"image": "x", "depends_on": {"db": {"condition": "service_healthy"}}}}},
    {"services": {"api": {"image": "x", "deploy": {"resources": {"limits": {"cpus": "0.5", "memory": "256M"}}}}}},
    {"services": {"api": {"image": "x", "ports": ["8080:80", {"target": 80}]}}},
    {"services": {"api": {"image": "x", "healthcheck": {"test": ["CMD", "true"], "interval": "10s"}}}},
    {"services": {"api": {"image": "x", "x-custom": {"anything": True}}}, "x-top": 1},
    {"services": {"api": None}},
    {"services": []},
    {"version": "3.8", "services": {"api": {"image": "x"}}},
    {"volumes": {"data": {}}, "networks": {"front": None}},
    {},
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_fast_answer_is_jsonschemas(document):
    expected = not list(_SLOW.iter_errors(document))
    assert compose._valid(document) is expected
    assert (compose.schema_violations(document) == []) is expected
    assert (compose.schema_errors(document) == []) is expected


def test_every_bundled_compose_file_gets_the_same_answer_from_both():
    files = _every_compose_file()
    assert files, "the example has compose files"
    for path in files:
        data = compose._plain(compose.load(path.name, path.read_text()).data)
        assert compose._valid(data) is (not list(_SLOW.iter_errors(data))), path


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70000),
    st.sampled_from(["x", "python:3.12", ".", "8080:80", "256M", "0.5", "service_healthy", "always", "10s", ""]),
)
_KEYS = st.sampled_from(
    [
        "image",
        "build",
        "context",
        "dockerfile",
        "args",
        "ports",
        "environment",
        "depends_on",
        "condition",
        "deploy",
        "resources",
        "limits",
        "cpus",
        "memory",
        "healthcheck",
        "test",
        "restart",
        "volumes",
        "command",
        "bogus",
        "x-extra",
        "target",
        "privileged",
    ]
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=12,
)


@given(
    services=st.dictionaries(
        st.sampled_from(["api", "db", "web"]), st.dictionaries(_KEYS, _VALUES, max_size=5), max_size=3
    )
)
@settings(max_examples=300, deadline=None)
def test_generated_documents_get_the_same_answer_from_both(services):
    document = {"services": services}
    assert compose._valid(document) is (not list(_SLOW.iter_errors(document)))
