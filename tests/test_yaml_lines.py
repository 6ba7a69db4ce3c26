"""Compose YAML read by libyaml with YAML 1.2 scalars and key lines: the same data and lines ruamel gives."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from agent_pipelines.pipelines.docker_optimization.model import yaml_lines
from tests.conftest import ROOT


def ruamel(text: str):
    return YAML(typ="rt").load(text)


def as_json(data) -> object:
    return json.loads(json.dumps(data, default=str))


@pytest.mark.parametrize(
    "text, value",
    [
        ("yes", "yes"),
        ("on", "on"),
        ("off", "off"),  # YAML 1.1 booleans are text in 1.2 (and in compose)
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("~", None),
        ("null", None),
        ("", None),
        ("0755", 755),
        ("0o17", 15),
        ("0x1F", 31),
        ("-12", -12),
        ("+3", 3),
        ("1e3", 1000.0),
        ("0.5", 0.5),
        (".5", 0.5),
        ("-.inf", -math.inf),
        ("2001-12-14", "2001-12-14"),  # no timestamps: text
        ("'yes'", "yes"),
        ('"0755"', "0755"),
        ("!!int '5'", 5),
        ("!reset []", []),
        ("1_000", "1_000"),
        ("0b101", "0b101"),
        ("8080:80", "8080:80"),
    ],
)
def test_plain_scalars_follow_the_yaml_1_2_core_schema(text, value):
    assert yaml_lines.load(f"v: {text}\n")["v"] == value


def test_nan_is_a_float_nan():
    assert math.isnan(yaml_lines.load("v: .nan\n")["v"])


MERGES = """x-base: &base
  restart: always
  image: base
services:
  api:
    <<: *base
    image: api
  web: {<<: [*base], ports: [80]}
"""


def test_merge_keys_come_after_the_mappings_own_keys_and_have_no_line_of_their_own():
    services = yaml_lines.load(MERGES)["services"]
    assert list(services["api"].items()) == [("image", "api"), ("restart", "always")]
    assert list(services["web"]) == ["ports", "restart", "image"]
    assert services["api"].lc.key("image") == (6, 4) and services.lc.key("web") == (7, 2)
    with pytest.raises(KeyError):
        services["api"].lc.key("restart")
    assert services["web"]["ports"].lc.item(0) == (7, 29)  # where "80" is (ruamel says column 24)


def test_data_and_lines_are_ruamels_on_every_bundled_compose_file():
    files = [p for p in (ROOT / "examples").rglob("*") if p.name.endswith((".yml", ".yaml")) and "compose" in p.name]
    assert files
    for path in files:
        text = path.read_text()
        ours, theirs = yaml_lines.load(text), ruamel(text)
        assert as_json(ours) == as_json(theirs), path
        for name, svc in theirs["services"].items():
            assert ours["services"].lc.key(name) == theirs["services"].lc.key(name)
            assert [ours["services"][name].lc.key(k) for k in svc if k in svc.lc.data] == [
                svc.lc.key(k) for k in svc if k in svc.lc.data
            ]


def test_a_repeated_key_is_an_error_as_in_compose():
    with pytest.raises(yaml.YAMLError, match="duplicate key 'image'"):
        yaml_lines.load("services:\n  api:\n    image: a\n    image: b\n")


def test_an_alias_is_its_anchors_object_so_a_billion_laughs_document_stays_small():
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    )
    data = yaml_lines.load(text)
    assert data["b"][0] is data["a"] and data["i"][9] is data["h"]


_KEYS = st.sampled_from(
    [
        "api",
        "db",
        "image",
        "build",
        "ports",
        "yes",
        "no",
        "on",
        "0755",
        "0o17",
        "1e3",
        "true",
        "null",
        "~",
        "8080:80",
        "a b",
        "x-y",
        "-",
        "0x1F",
        ".inf",
        "'q'",
        '"d"',
    ]
)
_WORDS = st.one_of(_KEYS, st.just("2001-12-14"))  # ruamel makes a date of it; compose and we keep the text
_TREES = st.recursive(
    _WORDS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)),
    max_leaves=10,
)


def _dump(node, indent: int = 0) -> str:
    """Block YAML written by hand, so plain scalars stay plain (yaml.dump would quote them)."""
    pad = " " * indent
    if isinstance(node, dict):
        if not node:
            return pad + "{}\n"
        out = ""
        for k, v in node.items():
            if isinstance(v, (dict, list)) and v:
                out += f"{pad}{k}:\n" + _dump(v, indent + 2)
            else:
                out += f"{pad}{k}: {_dump(v).strip()}\n"
        return out
    if isinstance(node, list):
        if not node:
            return pad + "[]\n"
        return "".join(f"{pad}- " + _dump(v, indent + 2).lstrip() for v in node)
    return pad + node + "\n"


@given(_TREES.filter(lambda t: isinstance(t, dict) and t))
@settings(max_examples=300, deadline=None)
def test_generated_documents_read_the_same_as_with_ruamel(tree):
    text = _dump(tree)
    try:
        theirs = as_json(ruamel(text))
    except Exception:  # e.g. "- -" or a "~" key: a document ruamel refuses must fail here too
        with pytest.raises(yaml.YAMLError):
            yaml_lines.load(text)
        return
    assert as_json(yaml_lines.load(text)) == theirs, text
