"""LLM mode with read-only tools: the model reads a file of the repository before it edits, every tool call is
confined to the repository, every round is counted in the budget; and each model call is an OpenTelemetry span."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest

from agent_pipelines.engine.artifacts import ChangeStatus
from agent_pipelines.engine.llm_budget import Ledger
from tests.conftest import git, make_repo
from tests.test_llm import BASE, CANARY, CANARY2, REPO, FakeModel, run_llm

REQUIREMENTS = "six==1.16.0\n"
TOOLS_REPO = {**REPO, "app/requirements.txt": REQUIREMENTS}


@pytest.fixture
def llm_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-not-real-000000")
    monkeypatch.setenv("OPENAI_BASE_URL", BASE)


def tool_call(name: str, arguments: dict, call_id: str = "call_1") -> httpx.Response:
    """The model's answer when it calls a tool instead of answering."""
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        ],
    }
    body = {
        "id": "c2",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }
    return httpx.Response(200, json=body)


def tool_results(body: dict) -> list[str]:
    return [m["content"] for m in body["messages"] if m.get("role") == "tool"]


def reads_first(name: str, arguments: dict, then):
    """A model that calls one tool on its first turn, then answers with ``then(body)``."""

    def answer(body: dict):
        return then(body) if tool_results(body) else tool_call(name, arguments)

    return answer


def fixed(body: dict, pin: str = "six==1.16.0") -> dict:
    """The edit of the Dockerfile the prompt shows: COPY for the local file, and the pin."""
    text = body["messages"][1]["content"].split(" ===\n", 1)[1] + "\n"
    return {
        "file": "app/Dockerfile",
        "diff": "",
        "rationale": f"COPY for a local file; pinned {pin}",
        "content": text.replace("pip install six\n", f"pip install {pin}\n").replace("ADD app.py", "COPY app.py"),
    }


def edit_after_reading(body: dict) -> dict:
    """The edit a model writes once it has read the requirements file: the pin it found there."""
    [result] = tool_results(body)
    return fixed(body, result.strip())


def ledger_outcomes(record) -> list[str]:
    return [c.outcome for c in Ledger(record.run.run_dir).calls()]


def test_the_model_reads_the_requirements_file_through_a_tool_before_it_edits(
    tmp_path, reports, docker_pipeline, llm_env
):
    repo = make_repo(tmp_path / "repo", TOOLS_REPO)
    model = FakeModel(ModelEdit=reads_first("read_file", {"path": "app/requirements.txt"}, edit_after_reading))
    record, _ = run_llm(repo, reports, docker_pipeline, model)
    assert record.status == "completed", record.error
    edits = [b for b in model.bodies if b["response_format"].get("json_schema", {}).get("name") == "ModelEdit"]
    # The tools are declared with the question, and the file's text came back as a role: tool message.
    assert {t["function"]["name"] for t in edits[0]["tools"]} == {"read_file", "list_directory", "findings_for"}
    assert edits[0]["tool_choice"] == "auto"
    assert tool_results(edits[1]) == [REQUIREMENTS]
    assert edits[1]["messages"][-2]["tool_calls"][0]["function"]["name"] == "read_file"
    committed = [
        c
        for c in record.changes
        if c.status is ChangeStatus.committed
        and any("model tools: 1 calls: read_file(app/requirements.txt)" in n for n in c.notes)
    ]
    assert committed, [(c.reason, c.notes) for c in record.changes]
    assert any(o == "tool round: read_file" for o in ledger_outcomes(record))
    summary = (reports / record.run.run_id / "summary.md").read_text()
    rounds = ledger_outcomes(record).count("tool round: read_file")
    assert f"Of these requests, {rounds} were tool rounds" in summary


@pytest.mark.parametrize(
    "path, why",
    [
        ("../outside.txt", "leaves the repository"),
        ("/etc/passwd", "is absolute"),
        (".git/config", "inside .git"),
        ("app/.env", "environment file"),
        ("app/link/secret.txt", "leads out of the repository"),
    ],
)
def test_a_tool_call_outside_the_repository_is_refused_and_nothing_of_it_is_sent(
    tmp_path, reports, docker_pipeline, llm_env, path, why
):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("OUTSIDE-SECRET-31337\n")
    (tmp_path / "outside.txt").write_text("OUTSIDE-SECRET-31337\n")
    repo = make_repo(tmp_path / "repo", TOOLS_REPO)
    (repo / "app" / "link").symlink_to(tmp_path / "outside")
    git(repo, "add", "app/link")
    git(repo, "commit", "-qm", "a link out of the repository")
    seen: list[str] = []

    def then(body: dict) -> dict:
        seen.extend(tool_results(body))
        return fixed(body)

    model = FakeModel(
        ModelFindings=reads_first(
            "read_file", {"path": path}, lambda body: seen.extend(tool_results(body)) or {"findings": []}
        ),
        ModelEdit=reads_first("read_file", {"path": path}, then),
    )
    record, _ = run_llm(repo, reports, docker_pipeline, model)
    assert record.status == "completed", record.error
    assert seen and all(r.startswith("refused: ") and why in r for r in seen), seen
    for body in model.raw:
        assert b"OUTSIDE-SECRET-31337" not in body and CANARY.encode() not in body
    assert any(f"read_file({path}) refused" in n for n in record.phase("analysis").notes)


def test_the_budget_counts_tool_rounds_and_stops_a_model_that_only_calls_tools(
    tmp_path, reports, docker_pipeline, llm_env
):
    repo = make_repo(tmp_path / "repo", TOOLS_REPO)
    model = FakeModel(ModelFindings=lambda body: tool_call("list_directory", {"path": "."}))
    # Each request costs 120 tokens: two rounds spend 240, the third goes (240 < 300), the fourth may not.
    record, _ = run_llm(repo, reports, docker_pipeline, model, max_tokens="300")
    assert record.status == "stopped" and "token budget spent: 360 of 300" in record.error
    assert ledger_outcomes(record) == ["tool round: list_directory"] * 3
    assert len(model.bodies) == 3


def test_tool_rounds_are_bounded_then_the_model_must_answer(tmp_path, reports, docker_pipeline, llm_env):
    repo = make_repo(tmp_path / "repo", TOOLS_REPO)

    def findings(body: dict):
        if body["tool_choice"] == "none":
            return {"findings": []}
        return tool_call("findings_for", {"path": "app/Dockerfile"}, call_id=f"call_{len(tool_results(body))}")

    model = FakeModel(ModelFindings=findings)
    record, _ = run_llm(repo, reports, docker_pipeline, model, llm_tool_rounds="2", llm_tool_max_chars="40")
    assert record.status == "completed", record.error
    asked = [b for b in model.bodies if b["response_format"].get("json_schema", {}).get("name") == "ModelFindings"]
    assert [b["tool_choice"] for b in asked] == ["auto", "auto", "none"]
    # The analysis of the file came back, cut at --llm-tool-max-chars.
    first = tool_results(asked[-1])[0]
    assert first.split()[0] in {f.rule for f in record.findings if f.file == "app/Dockerfile"}
    assert first[40:].startswith("\n[cut at 40 characters of")
    assert ledger_outcomes(record)[:3] == ["tool round: findings_for", "tool round: findings_for", "answered"]


def test_each_node_gate_and_model_call_is_a_span_with_redacted_attributes(
    tmp_path, reports, docker_pipeline, llm_env, spans
):
    repo = make_repo(tmp_path / "repo", TOOLS_REPO)
    # The model asks for a path holding the secrets: the tool span's arguments must not carry them.
    model = FakeModel(ModelEdit=reads_first("read_file", {"path": f"app/{CANARY}/{CANARY2}"}, fixed))
    record, _ = run_llm(repo, reports, docker_pipeline, model)
    assert record.status == "completed", record.error
    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    assert "run docker-optimization" in names
    assert {"node analysis.analyst", "node dockerfiles.implementer", "node dockerfiles.reviewer"} <= set(names)
    gates = [s for s in finished if s.name == "gate"]
    assert gates and {"targeted findings gone", "no new findings"} <= {s.attributes["pipeline.gate"] for s in gates}
    chats = [s for s in finished if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(chats) == len([o for o in ledger_outcomes(record) if o != "cached"])
    first = chats[0].attributes
    assert first["gen_ai.request.model"] == "gpt-4o-mini" and first["server.address"] == "llm.test"
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"]) == (100, 20)
    tools = [s for s in finished if s.name == "execute_tool read_file"]  # one per model-edit task
    assert tools and all(t.attributes["gen_ai.tool.name"] == "read_file" for t in tools)
    assert all("__REDACTED_" in t.attributes["gen_ai.tool.call.arguments"] for t in tools)
    # Parents: a model call inside a node inside the run.
    by_id = {s.context.span_id: s for s in finished}
    node = by_id[chats[0].parent.span_id]
    assert node.name.startswith("node ") and by_id[node.parent.span_id].name == "run docker-optimization"
    for s in finished:
        text = json.dumps(dict(s.attributes)) + (s.status.description or "")
        assert CANARY not in text and CANARY2 not in text


def test_without_an_exporter_telemetry_is_off_and_analyze_imports_none_of_it(example_repo):
    code = (
        "import sys; from agent_pipelines.engine.cli import main; sys.argv = ['pipeline', 'analyze', '--repo', "
        f"{str(example_repo)!r}, '--format', 'json', '--no-hadolint', '--exit-zero']\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert done.code == 0, done.code\n"
        "from agent_pipelines.engine import telemetry\n"
        "with telemetry.session(None) as on:\n    print(on, file=sys.stderr)\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')), file=sys.stderr)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stderr.splitlines()[-2:] == ["False", "[]"]


@pytest.fixture(scope="module")
def _provider():
    """The process's TracerProvider, as an application embedding the pipeline sets it (set once per process)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # later tests' spans go nowhere


@pytest.fixture
def spans(_provider):
    _provider.clear()
    yield _provider
    _provider.clear()


def test_model_edits_are_chosen_by_severity_then_findings_closed_and_the_plan_says_what_was_left_out(
    example_repo, docker_pipeline
):
    from agent_pipelines.agents.base import AgentContext
    from agent_pipelines.agents.planner import MAX_MODEL_TASKS, Planner, expected_gain
    from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain

    # Two errors no deterministic fix covers, in a directory that sorts last.
    (example_repo / "zz").mkdir()
    (example_repo / "zz" / "Dockerfile").write_text("FROM alpine:3.20\nCOPY nothere.txt /x\nEXPOSE 99999\n")
    domain = DockerDomain()
    try:
        findings = domain.analyze(example_repo, thorough=True)
        phases = docker_pipeline.phase_names
        plan = domain.plan(findings, phases, False, example_repo)
        planned = Planner(AgentContext(run=None, domain=domain)).with_model_tasks(plan, findings, phases)
    finally:
        domain.close()
    chosen = [t for t in planned.tasks if t.fix == "llm"]
    assert len(chosen) == MAX_MODEL_TASKS
    by_id = {f.id: f for f in findings}
    gains = [expected_gain([by_id[i] for i in t.finding_ids]) for t in chosen]
    # Tasks run phase by phase; the errors are chosen though their rules and file sort late.
    assert {("CX003", "zz/Dockerfile"), ("DL3011", "zz/Dockerfile")} <= {(t.rules[0], t.file) for t in chosen}
    [note] = [s for s in planned.skipped if s.startswith("model edits: ")]
    assert note.startswith(f"model edits: {MAX_MODEL_TASKS} of ")
    left = re.findall(r"(\w+) in (\S+) \((\w+), (\d+) findings\)", note.split("left out: ", 1)[1])
    assert left and not {(rule, file) for rule, file, _, _ in left} & {(t.rules[0], t.file) for t in chosen}
    rank = {"info": 0, "warning": 1, "error": 2}
    assert all((rank[sev], int(n)) <= min(gains) for _, _, sev, n in left)  # nothing left out gains more


def test_a_server_without_tools_is_asked_once_then_answers_from_the_prompt(tmp_path, reports, docker_pipeline, llm_env):
    repo = make_repo(tmp_path / "repo", TOOLS_REPO)
    model = FakeModel()
    inner = model.__call__

    def no_tools(request: httpx.Request) -> httpx.Response:
        if "tools" in json.loads(request.content):
            model.raw.append(request.content)
            return httpx.Response(400, json={"error": {"message": "tools are not supported by this server"}})
        return inner(request)

    record, _ = run_llm(repo, reports, docker_pipeline, no_tools)
    assert record.status == "completed", record.error
    refused = [o for o in ledger_outcomes(record) if o.startswith("BadRequestError")]
    assert len(refused) == 1 and "tools are not supported" in refused[0]
    assert "ModelFindings" in model.names() and "ModelEdit" in model.names()
