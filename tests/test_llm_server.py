"""LLM mode over a real socket: the scripted OpenAI-compatible server (tests/llm_server.py) answers a whole run."""

from __future__ import annotations

from agent_pipelines.engine.artifacts import ChangeStatus
from agent_pipelines.engine.runs import start_run
from tests.conftest import make_repo
from tests.llm_server import Reply, ScriptedModel
from tests.test_llm import CANARY, CANARY2, REPO, FakeModel


def scripted(**overrides) -> ScriptedModel:
    """The same answers tests/test_llm.py's FakeModel gives, served over HTTP."""
    fake = FakeModel(**overrides)
    return ScriptedModel(
        {name: (lambda body, a=answer: a(body) if callable(a) else a) for name, answer in fake.answers.items()}
    )


def test_a_model_edit_run_goes_through_a_real_http_server(tmp_path, reports, docker_pipeline, monkeypatch):
    repo = make_repo(tmp_path / "repo", REPO)
    with scripted() as model:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-not-real-000000")
        record = start_run(
            docker_pipeline, repo, reports, ["dockerfiles"], {"llm": "1", "llm_base_url": model.base_url}
        )
    assert record.status == "completed"
    assert model.calls("ModelFindings") == 1 and model.calls("ModelEdit") >= 1
    assert any(c.status is ChangeStatus.committed for c in record.changes)
    assert CANARY.encode() not in model.sent() and CANARY2.encode() not in model.sent()


def test_the_server_can_fail_and_hang_on_request():
    with ScriptedModel(
        {
            "Narrative": Reply(503, {"error": {"message": "down"}}),
            "PlanAdvice": Reply(200, "not json at all", delay=0.01),
        }
    ) as model:
        import httpx

        with httpx.Client(base_url=model.base_url) as client:
            down = client.post(
                "/chat/completions",
                json={"response_format": {"type": "json_schema", "json_schema": {"name": "Narrative"}}, "messages": []},
            )
            odd = client.post(
                "/chat/completions",
                json={
                    "response_format": {"type": "json_schema", "json_schema": {"name": "PlanAdvice"}},
                    "messages": [],
                },
            )
    assert down.status_code == 503 and odd.text == "not json at all" and model.calls() == 2
