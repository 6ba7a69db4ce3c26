"""engine.lint: a rule pack is checked when it is built, so a mistake shows at import, not in a plan."""

from __future__ import annotations

import importlib.util
import sys
import textwrap

import pytest

from agent_pipelines.engine.lint import PackError, RulePack
from agent_pipelines.pipelines.docker_optimization import PIPELINE
from agent_pipelines.pipelines.docker_optimization.rules import MODULES, pack

HEADER = """
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.engine.lint import Fix, Hit, rule
"""

GOOD = (
    HEADER
    + '''
TIDY = Fix("tidy")


@rule("TT001", "untidy", Category.correctness, Severity.warning, "file", fix=TIDY, safety=Applicability.unsafe,
      phase="fix")
def untidy(text):
    """Something is untidy.

    Fix safety: tidying moves lines, which a reader may rely on.
    """
    return [Hit(1, "untidy")] if "mess" in text else []


@TIDY.applies(title="Tidy {file}")
def tidy(project, task, design):
    return {task.file: "tidy"}
'''
)


def module(tmp_path, name: str, source: str):
    """A real module, written to a file and imported (as a pipeline's rule module would be)."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(f"lintkit_{name}", path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def build(*modules, phases=("fix",)) -> RulePack:
    return RulePack("test", list(modules), phases=phases, targets={"file": ("file",)})


def test_a_pack_holds_each_rule_with_its_fix_by_reference_and_the_default_reads(tmp_path):
    rules = build(module(tmp_path, "good", GOOD))
    rule = rules["TT001"]
    assert rule.fix is rules.fixes()["tidy"] and rule.fix.title == "Tidy {file}"
    assert rule.fix.apply(None, type("T", (), {"file": "a.txt"})(), None) == {"a.txt": "tidy"}
    assert rule.read_set == ("file",)
    assert [h.message for h in rule.check("a mess")] == ["untidy"]


def test_two_rules_with_one_code_are_refused(tmp_path):
    first = module(tmp_path, "first", GOOD)
    second = module(tmp_path, "second", GOOD.replace('TIDY = Fix("tidy")', 'TIDY = Fix("tidy2")'))
    with pytest.raises(PackError, match="TT001 is declared twice"):
        build(first, second)


def test_a_module_that_declares_no_rule_is_refused(tmp_path):
    with pytest.raises(PackError, match="module lintkit_empty declares no rule"):
        build(module(tmp_path, "good2", GOOD), module(tmp_path, "empty", HEADER))


def test_a_fix_without_its_implementation_is_refused(tmp_path):
    source = GOOD[: GOOD.index("@TIDY.applies")]
    with pytest.raises(PackError, match=r"TT001: fix tidy has no implementation"):
        build(module(tmp_path, "unimplemented", source))


def test_a_fix_in_a_phase_the_pipeline_lacks_is_refused(tmp_path):
    with pytest.raises(PackError, match="TT001: fix tidy's phase 'fix' is not a phase \\(scan\\)"):
        build(module(tmp_path, "phased", GOOD), phases=("scan",))


def test_an_unsafe_fix_must_say_why_in_the_rule_doc(tmp_path):
    source = GOOD.replace("    Fix safety: tidying moves lines, which a reader may rely on.\n", "")
    with pytest.raises(PackError, match="TT001: an unsafe fix needs a 'Fix safety:' paragraph"):
        build(module(tmp_path, "undocumented", source))


def test_a_target_kind_the_pipeline_does_not_have_is_refused(tmp_path):
    with pytest.raises(PackError, match="TT001: unknown target 'file'"):
        RulePack("test", [module(tmp_path, "targeted", GOOD)], phases=("fix",), targets={"line": ()})


def test_the_docker_pack_runs_every_module_and_every_fix_is_in_a_pipeline_phase():
    rules = pack()
    assert {r.module.rsplit(".", 1)[-1] for r in rules} == set(MODULES)
    phases = {p.name for p in PIPELINE.phases}
    assert all(r.phase in phases and r.fix.apply is not None for r in rules if r.fix is not None)
    assert sorted(rules.fixes())[:3] == ["apt-no-recommends", "bake-file", "bundle-package-runs"]
    assert rules.help_uri("SE006").endswith("docs/rules.md#se006")


def test_the_engine_speaks_no_docker_in_the_lint_kit():
    from pathlib import Path

    from agent_pipelines import engine

    words = ("docker", "dockerfile", "compose", "hadolint", "buildkit")
    for path in Path(engine.lint.__file__).parent.glob("*.py"):
        text = path.read_text().lower()
        assert not [w for w in words if w in text], path.name


def test_each_output_format_is_one_formatter_object_and_renders_the_same_analysis(tmp_path):
    from agent_pipelines.engine.lint.formats import FORMATS
    from agent_pipelines.pipelines.docker_optimization.analysis import run_analysis
    from tests.rulekit import BILLING, write

    write(tmp_path, {"Dockerfile": BILLING})
    result = run_analysis(tmp_path)
    assert sorted(FORMATS) == ["json", "md", "sarif"]
    md, data, sarif = (FORMATS[name].render(result, tmp_path) for name in ("md", "json", "sarif"))
    import json

    codes = sorted(f.rule for f in result.findings)
    assert sorted(f["rule"] for f in json.loads(data)["findings"]) == codes
    assert sorted(r["ruleId"] for r in json.loads(sarif)["runs"][0]["results"]) == codes
    assert all(f"**{code}**" in md for code in codes)


def test_building_the_docker_pack_with_its_fixes_loads_no_pydantic_langgraph_or_openai():
    """The fixes sit beside their rules, so `pipeline analyze` imports them: they must stay light."""
    import subprocess

    code = (
        "import sys\n"
        "from agent_pipelines.pipelines.docker_optimization.analysis import run_analysis\n"
        "from agent_pipelines.pipelines.docker_optimization.rules import pack\n"
        "pack()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'langgraph', 'openai'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
