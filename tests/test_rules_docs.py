"""docs/rules.md is generated from the rule pack and must not be stale."""

from __future__ import annotations

from agent_pipelines.engine.artifacts import Applicability, Category, Severity
from agent_pipelines.engine.lint import Fix
from agent_pipelines.engine.lint import docs as lint_docs
from agent_pipelines.pipelines.docker_optimization import docs
from agent_pipelines.pipelines.docker_optimization.rules import Rule, load_all, pack
from tests.conftest import ROOT

RULES_MD = ROOT / "docs" / "rules.md"
REGENERATE = "python -m pipelines.docker_optimization.docs > docs/rules.md"


def test_docs_rules_md_is_up_to_date():
    assert RULES_MD.is_file(), f"docs/rules.md is missing: run `{REGENERATE}`"
    assert RULES_MD.read_text(encoding="utf-8") == docs.render(), f"docs/rules.md is stale: run `{REGENERATE}`"


def test_every_rule_has_a_section_its_sarif_help_uri_points_at():
    text = docs.render()
    for code, rule in load_all().items():
        assert f'<a id="{code.lower()}"></a>\n\n### {code}: {rule.name}\n' in text
        assert f"| [{code}](#{code.lower()}) | {rule.name} |" in text
        assert rule.summary and rule.summary != rule.name, f"{code} has no docstring summary"
    assert pack().help_uri("CA001").endswith("/docs/rules.md#ca001")


def test_a_section_shows_the_metadata_then_the_docstring_with_examples_as_code():
    def check(df):
        """Something is wrong.

        Longer explanation.

        Why: because.

        Example:
            RUN bad

        Use instead:
            RUN good
            # still code
        """

    rule = Rule(
        "ZZ001",
        "something-wrong",
        Category.size,
        Severity.info,
        "dockerfile",
        check,
        Fix("zz-fix"),
        Applicability.unsafe,
        "dockerfiles",
    )
    assert "\n".join(lint_docs.section(rule)) == "\n".join(
        [
            '<a id="zz001"></a>',
            "",
            "### ZZ001: something-wrong",
            "",
            "_Something is wrong._",
            "",
            "| category | severity | fix | applies to |",
            "| --- | --- | --- | --- |",
            "| size | info | unsafe (fix `zz-fix`, phase dockerfiles) | dockerfile |",
            "",
            "Longer explanation.",
            "",
            "**Why:** because.",
            "",
            "**Example:**",
            "",
            "```",
            "RUN bad",
            "```",
            "",
            "**Use instead:**",
            "",
            "```",
            "RUN good",
            "# still code",
            "```",
            "",
        ]
    )
