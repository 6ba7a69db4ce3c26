"""A finding is a plain dataclass (no pydantic at `pipeline analyze` start-up) that the run's models still hold."""

from __future__ import annotations

import dataclasses
import json

import pytest
from pydantic import BaseModel, ValidationError

from agent_pipelines.engine.finding import Applicability, Category, Finding, Severity


def finding(**kw) -> Finding:
    base = dict(
        rule="CA001",
        name="pip-without-cache-mount",
        category="performance",
        severity="warning",
        message="pip install without a cache mount",
        file="api/Dockerfile",
        line=4,
        evidence="RUN pip install x",
    )
    return Finding.make(**{**base, **kw})


def test_values_given_as_text_become_the_enums_pydantic_made_of_them():
    f = finding()
    assert (f.category, f.severity, f.fix) == (Category.performance, Severity.warning, Applicability.none)
    assert f.end_line == 4 and f.location == "api/Dockerfile:4"


@pytest.mark.parametrize(
    "bad, error",
    [
        ({"severity": "fatal"}, ValueError),
        ({"category": "speed"}, ValueError),
        ({"line": "4"}, TypeError),
        ({"message": None}, TypeError),
    ],
)
def test_a_wrong_value_is_refused(bad, error):
    with pytest.raises(error):
        finding(**bad)


def test_a_finding_is_immutable_and_its_id_depends_on_what_and_where():
    f = finding()
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.line = 5  # type: ignore[misc]
    assert finding().id == f.id and finding(line=5).id != f.id and finding(file="web/Dockerfile").id != f.id


def test_pydantic_models_hold_findings_and_read_them_back_from_json():
    class Holder(BaseModel):  # as RunRecord.findings does
        findings: list[Finding]

    f = finding()
    held = Holder.model_validate_json(json.dumps({"findings": [f.to_json()]}))
    assert held.findings == [f] and isinstance(held.findings[0], Finding)
    assert json.loads(held.model_dump_json())["findings"] == [f.to_json()]
    with pytest.raises(ValidationError, match="surprise"):
        Holder.model_validate({"findings": [{**f.to_json(), "surprise": 1}]})
    with pytest.raises(ValidationError):
        Holder.model_validate({"findings": [{**f.to_json(), "severity": "fatal"}]})
