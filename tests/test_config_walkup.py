"""Configuration where users look: `.pipeline.yaml` (or `[tool.pipeline]` in pyproject.toml) is found by
walking up from the analyzed directory to the repository root, and its paths are relative to the file holding it."""

from __future__ import annotations

import json

from agent_pipelines.pipelines.docker_optimization import analysis
from agent_pipelines.pipelines.docker_optimization.ignores import find_config
from tests.conftest import cli, make_repo

# Two services with the same Dockerfile: pip without --no-cache-dir (CA001-like rules) and apt without
# --no-install-recommends fire in both; the configuration silences some of them in legacy/ only.
DOCKERFILE = (
    "FROM python:3.12-slim\nWORKDIR /app\nCOPY requirements.txt .\n"
    "RUN apt-get update && apt-get install -y curl\nRUN pip install -r requirements.txt\n"
    'COPY . .\nUSER nobody\nCMD ["python", "main.py"]\n'
)
SERVICES = {
    f"services/{name}/{file}": text
    for name in ("legacy", "api")
    for file, text in (("Dockerfile", DOCKERFILE), ("requirements.txt", "flask\n"), ("main.py", "print(1)\n"))
}


def rules_by_file(root, prefix: str = "") -> set[tuple[str, str]]:
    """(file as seen from the repository root, rule) of every finding reported when analyzing ``root``."""
    return {(prefix + f.file, f.rule) for f in analysis.run_analysis(root).findings}


def legacy_rules(repo) -> set[str]:
    return {rule for file, rule in rules_by_file(repo) if file.startswith("services/legacy/")}


def test_the_root_config_applies_the_same_from_any_subdirectory(tmp_path):
    bare = make_repo(tmp_path / "bare", SERVICES)
    silenced = sorted(legacy_rules(bare))[:2]  # two rules the legacy Dockerfile really triggers
    assert len(silenced) == 2
    config = f'per-file-ignores:\n  "services/legacy/**": [{", ".join(silenced)}]\n'
    repo = make_repo(tmp_path / "repo", {**SERVICES, ".pipeline.yaml": config})

    from_root = {(f, r) for f, r in rules_by_file(repo) if f.startswith("services/")}
    from_services = rules_by_file(repo / "services", "services/")
    from_legacy = rules_by_file(repo / "services" / "legacy", "services/legacy/")
    assert from_services == from_root
    assert not {r for _, r in from_legacy} & set(silenced)  # from the service's own directory too
    assert not {r for f, r in from_services if f.startswith("services/legacy/")} & set(silenced)
    assert set(silenced) <= {r for f, r in from_services if f.startswith("services/api/")}  # api keeps them


def test_pyproject_tool_pipeline_is_read_like_pipeline_yaml(tmp_path):
    bare = make_repo(tmp_path / "bare", SERVICES)
    code = sorted(legacy_rules(bare))[0]
    yaml = make_repo(tmp_path / "yaml", {**SERVICES, ".pipeline.yaml": f"ignored: [{code}]\n"})
    toml = make_repo(
        tmp_path / "toml",
        {**SERVICES, "pyproject.toml": (f'[project]\nname = "demo"\n\n[tool.pipeline]\nignored = ["{code}"]\n')},
    )
    assert code not in {r for _, r in rules_by_file(toml)}
    assert rules_by_file(toml / "services", "services/") == rules_by_file(yaml / "services", "services/")


def test_when_both_exist_pipeline_yaml_wins_and_a_note_says_so(tmp_path):
    repo = make_repo(
        tmp_path / "repo",
        {**SERVICES, ".pipeline.yaml": "ignored: [SZ]\n", "pyproject.toml": '[tool.pipeline]\nignored = ["CA"]\n'},
    )
    result = analysis.run_analysis(repo / "services")
    notes = [n.message for n in result.notes if n.kind == "config"]
    assert notes == [
        ".pipeline.yaml and pyproject.toml [tool.pipeline] are both here: .pipeline.yaml is used, "
        "[tool.pipeline] is not read"
    ]
    rules = {f.rule for f in result.findings}
    assert not {r for r in rules if r.startswith("SZ")}


def test_paths_in_the_config_are_relative_to_the_file_that_holds_them(tmp_path):
    repo = make_repo(
        tmp_path / "repo",
        {
            **SERVICES,
            ".pipeline.yaml": (
                "policy:\n  dockerfiles:\n    services/api/Dockerfile: {writable: [/app/data]}\n"
                "    other/Dockerfile: {writable: [/srv]}\n"
            ),
        },
    )
    files = {"api/Dockerfile": 1, "legacy/Dockerfile": 1}
    config = find_config(files, lambda path: None, repo / "services")
    assert config.path == "../.pipeline.yaml" and config.prefix == "services"
    assert config.policy.dockerfiles == {"api/Dockerfile": {"writable": ["/app/data"]}}


def test_the_nearest_config_wins_and_the_walk_stops_at_the_repository_root(tmp_path):
    outer = tmp_path / "outer"
    outer.mkdir()
    (outer / ".pipeline.yaml").write_text("ignored: [CA]\n")  # above the repository: not its configuration
    repo = make_repo(outer / "repo", {**SERVICES, "services/.pipeline.yml": "ignored: [SZ]\n"})
    assert find_config({}, lambda path: None, repo).path == ""
    nearest = find_config({}, lambda path: None, repo / "services" / "api")
    assert (nearest.path, nearest.ignored, nearest.prefix) == ("../.pipeline.yml", ["SZ"], "api")


def analyzed(path) -> dict:
    result = cli("analyze", "--repo", str(path), "--format", "json", "--no-hadolint")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_analyze_in_a_subdirectory_reports_what_the_project_says_about_it(example_repo):
    """The example's compose file at its root builds services/api with the root as context: analyzed alone,
    services/ would assume each service directory is its context and report COPY sources missing (CX003)."""
    root = analyzed(example_repo)
    services = analyzed(example_repo / "services")
    api = analyzed(example_repo / "services" / "api")

    def under(doc, prefix):
        return sorted(
            (f["rule"], f["file"][len(prefix) :], f["line"], f["message"])
            for f in doc["findings"]
            if f["file"].startswith(prefix)
        )

    assert services["findings"] and api["findings"]
    assert under(services, "") == under(root, "services/")
    assert under(api, "") == under(root, "services/api/")
    assert "CX003" not in {f["rule"] for f in services["findings"]}
