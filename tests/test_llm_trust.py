"""LLM mode played by a hostile or careless model over a real socket (tests/llm_server.py).

Each attack is refused or reverted with its reason, and the run completes.
Secrets planted in every form never reach a request body, the answer cache,
the call ledger, run.json, a report, a commit message or a trace; the edits
that keep them get them back, the edits that move or invent them are refused.
Budgets, timeouts and provenance are checked the same way.
"""

from __future__ import annotations

import json
import re

import pytest

from agent_pipelines.engine.artifacts import ChangeStatus
from agent_pipelines.engine.runs import UsageError, resume_run, start_run
from tests.conftest import cli, git, make_repo
from tests.llm_server import Reply, ScriptedModel

# One canary per form the redactor must recognise.
CANARIES = {
    "env-file": "cnry-envfile-5f1e",
    "legacy-env": "cnry-legacy-7a2b",
    "arg": "cnry-arg-npm-91c3",
    "curl-u": "cnry-curlpass-44d0",
    "bearer": "cnry-bearer-0b7e9a",
    "npmrc": "cnry-npmrc-d3a1",
    "pypirc": "cnry-pypirc-8c2f",
    "private-key": "cnry-privkey-b64-6e0d",
    "quoted-yaml-key": "cnry-quoted-2c9d",
    "url-userinfo": "cnry-urlpw-73fa",
    "dsn": "cnry-dsn-e51b",
}
C = CANARIES
DOCKERFILE = (
    "FROM python:3.12-slim\n"
    f"ENV DB_PASSWORD {C['legacy-env']}\n"
    f"ARG NPM_TOKEN={C['arg']}\n"
    "ADD app.py /srv/app.py\n"
    f"RUN curl -fsSL -u admin:{C['curl-u']} https://repo.example/pkg -o /tmp/pkg\n"
    f'RUN curl -fsSL -H "Authorization: Bearer {C["bearer"]}" https://api.example/x -o /tmp/x\n'
    f'RUN echo "//registry.npmjs.org/:_authToken={C["npmrc"]}" > /root/.npmrc\n'
    f"RUN printf '[pypi]\\npassword = {C['pypirc']}\\n' > /root/.pypirc\n"
    "RUN printf '%s\\n' '-----BEGIN OPENSSH PRIVATE KEY-----' "
    f"'{C['private-key']}' '-----END OPENSSH PRIVATE KEY-----' > /root/id\n"
    'CMD ["python", "/srv/app.py"]\n'
)
COMPOSE = (
    "services:\n  app:\n    build: ./app\n    environment:\n"
    f'      "POSTGRES_PASSWORD": "{C["quoted-yaml-key"]}"\n'
    f"      DATABASE_URL: postgres://app:{C['url-userinfo']}@db:5432/app\n"
    f'      MSSQL: "Server=db;User Id=sa;Password={C["dsn"]};"\n'
    "    deploy:\n      resources:\n        limits:\n          cpus: '0.5'\n"
)
REPO = {
    "app/Dockerfile": DOCKERFILE,
    "app/app.py": "print('hi')\n",
    "app/.env": f"STRIPE_KEY={C['env-file']}\n",
    ".dockerignore": "**/.env\n",
    "app/.dockerignore": "**/.env\n",
    "compose.yaml": COMPOSE,
}
LLM001 = {
    "findings": [
        {
            "file": "app/Dockerfile",
            "line": 4,
            "evidence": "ADD app.py /srv/app.py",
            "severity": "warning",
            "category": "correctness",
            "message": "ADD of a local file: COPY says what it does",
        }
    ]
}


def shown(body: dict) -> str:
    """The file as the implementer's prompt shows it to the model (after the ``=== path ===`` line)."""
    return body["messages"][1]["content"].split(" ===\n", 1)[1] + "\n"


def edit(change) -> dict:
    """A ModelEdit answer: the shown Dockerfile with ``change`` applied to its text."""
    return lambda body: {
        "file": "app/Dockerfile",
        "diff": "",
        "rationale": "COPY says what it does",
        "content": change(shown(body)),
    }


def answers(**overrides) -> dict:
    base = {
        "ModelFindings": LLM001,
        "PlanAdvice": {"rationale": "Cache first.", "order": []},
        "DesignAdvice": {"notes": ["Keep contexts small."]},
        "ModelEdit": edit(lambda text: text.replace("ADD app.py", "COPY app.py")),
        "Narrative": {"text": "The run made the builds cache their downloads."},
    }
    return {**base, **overrides}


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-not-real-000000")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("PIPELINE_TRACING", raising=False)


def run(repo, reports, spec, model, phases=("dockerfiles",), events=None, **options):
    opts = {"llm": "1", "llm_base_url": model.base_url, "builds": "off", **options}
    return start_run(spec, repo, reports, list(phases), opts, events or (lambda *a, **k: None))


def llm_changes(record):
    ids = {t.id for t in record.plan.tasks if t.fix == "llm"}
    return [c for c in record.changes if c.task_id in ids]


def everything_written(reports, run_id) -> dict[str, bytes]:
    """Every file of the run directory but the LangGraph checkpoints (local resume state)."""
    root = reports / run_id
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith("state.sqlite")
    }


# -- secrets ------------------------------------------------------------------
def test_canaries_in_every_form_never_leave_and_are_restored_where_the_edit_kept_them(
    tmp_path, reports, docker_pipeline, key
):
    repo = make_repo(tmp_path / "repo", REPO)
    with ScriptedModel(answers()) as model:
        record = run(repo, reports, docker_pipeline, model, phases=("dockerfiles", "compose"))
    assert record.status == "completed", record.error
    sent = model.sent()
    assert b"__REDACTED_" in sent
    written = everything_written(reports, record.run.run_id)
    assert {"run.json", "summary.md", "llm-calls.jsonl"} <= set(written) and any(
        p.startswith("llm-cache/") for p in written
    )
    messages = git(repo, "log", "--format=%B", f"{record.run.base_commit}..{record.run.branch}")
    for form, canary in CANARIES.items():
        assert canary.encode() not in sent, f"{form} reached the model"
        assert not [p for p, data in written.items() if canary.encode() in data], f"{form} written in the run dir"
        assert canary not in messages, f"{form} in a commit message"
    # The model edit kept the secrets' lines: they are back, byte for byte, and no placeholder was committed.
    committed = [c for c in llm_changes(record) if c.status is ChangeStatus.committed]
    assert committed, [c.reason for c in llm_changes(record)]
    dockerfile = git(repo, "show", f"{record.run.branch}:app/Dockerfile")
    assert "COPY app.py /srv/app.py" in dockerfile and "REDACTED" not in dockerfile
    for line in DOCKERFILE.splitlines():
        if any(c in line for c in CANARIES.values()):
            assert line in dockerfile.splitlines(), line
    assert "REDACTED" not in git(repo, "log", "-p", f"{record.run.base_commit}..{record.run.branch}")


@pytest.mark.parametrize(
    "attack, change, reason",
    [
        (
            "moves a placeholder onto a new line",
            lambda t: t.replace(
                "ADD app.py /srv/app.py",
                "ADD app.py /srv/app.py\nRUN echo " + re.search(r"__REDACTED_\w+__", t).group(0) + " > /srv/leak",
            ),
            "changes the text around a redacted secret",
        ),
        (
            "rewrites the line around a placeholder",
            lambda t: re.sub(r"ARG NPM_TOKEN=(\S+)", r"ENV NPM_TOKEN=\1", t),
            "changes the text around a redacted secret",
        ),
        (
            "invents a placeholder",
            lambda t: t.replace("ADD app.py", "ADD app.py") + "ENV X=__REDACTED_deadbeef__\n",
            "that this file does not hold",
        ),
        (
            "writes a bare mask for a value",
            lambda t: re.sub(r"ARG NPM_TOKEN=\S+", "ARG NPM_TOKEN=[REDACTED]", t),
            "writes the redaction mark '[REDACTED]'",
        ),
    ],
)
def test_an_edit_that_moves_rewrites_or_invents_a_placeholder_is_refused(
    tmp_path, reports, docker_pipeline, key, attack, change, reason
):
    repo = make_repo(tmp_path / "repo", REPO)
    with ScriptedModel(answers(ModelEdit=edit(change))) as model:
        record = run(repo, reports, docker_pipeline, model)
    assert record.status == "completed", record.error
    refused = [c for c in llm_changes(record) if c.status is ChangeStatus.failed and reason in c.reason]
    assert refused, (attack, [c.reason for c in llm_changes(record)])
    dockerfile = git(repo, "show", f"{record.run.branch}:app/Dockerfile")
    assert "REDACTED" not in dockerfile and f"ARG NPM_TOKEN={C['arg']}" in dockerfile


def test_a_placeholder_copied_from_another_file_is_refused(tmp_path, reports, docker_pipeline, key):
    repo = make_repo(tmp_path / "repo", REPO)

    def steal(body):
        compose_secret = re.search(r"postgres://app:(__REDACTED_\w+__)@", json.dumps(model.bodies[0])).group(1)
        return {
            "file": "app/Dockerfile",
            "diff": "",
            "rationale": "x",
            "content": shown(body).replace("ADD app.py /srv/app.py", f"ENV DB_URL={compose_secret}"),
        }

    with ScriptedModel(answers(ModelEdit=steal)) as model:
        record = run(repo, reports, docker_pipeline, model)
    assert record.status == "completed"
    assert any("that this file does not hold" in c.reason for c in llm_changes(record))
    assert C["url-userinfo"] not in git(repo, "show", f"{record.run.branch}:app/Dockerfile")


def test_a_diff_edit_keeping_placeholders_in_its_context_applies_with_the_values(
    tmp_path, reports, docker_pipeline, key
):
    repo = make_repo(tmp_path / "repo", REPO)

    def as_diff(body):
        lines = shown(body).splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("ADD app.py"))
        hunk = [
            f"@@ -{at - 1},5 +{at - 1},5 @@",
            *(" " + ln for ln in lines[at - 2 : at]),
            "-" + lines[at],
            "+" + lines[at].replace("ADD", "COPY"),
            *(" " + ln for ln in lines[at + 1 : at + 3]),
        ]
        return {
            "file": "app/Dockerfile",
            "content": "",
            "rationale": "COPY",
            "diff": "--- a/app/Dockerfile\n+++ b/app/Dockerfile\n" + "\n".join(hunk) + "\n",
        }

    with ScriptedModel(answers(ModelEdit=as_diff)) as model:
        record = run(repo, reports, docker_pipeline, model)
    assert any(c.status is ChangeStatus.committed for c in llm_changes(record)), [c.reason for c in llm_changes(record)]
    dockerfile = git(repo, "show", f"{record.run.branch}:app/Dockerfile")
    assert "COPY app.py" in dockerfile and f"ARG NPM_TOKEN={C['arg']}" in dockerfile and "REDACTED" not in dockerfile


@pytest.mark.slow
def test_graph_state_is_not_traced_unless_asked_and_then_redacted(tmp_path, key):
    """LANGSMITH_TRACING in the environment: LangGraph would upload the state; the run turns that off."""
    repo = make_repo(tmp_path / "repo", REPO)
    with ScriptedModel(answers()) as model, ScriptedModel({}) as langsmith:
        env = {
            "OPENAI_BASE_URL": model.base_url,
            "LANGSMITH_TRACING": "true",
            "LANGCHAIN_TRACING_V2": "true",
            "LANGSMITH_ENDPOINT": langsmith.base_url.removesuffix("/v1"),
            "LANGSMITH_API_KEY": "ls-test-key",
        }
        off = cli(
            "run",
            "docker-optimization",
            "--repo",
            str(repo),
            "--phases",
            "dockerfiles",
            "--builds",
            "off",
            "--llm",
            "--quiet",
            "--reports-dir",
            str(tmp_path / "r1"),
            env=env,
        )
        assert off.returncode == 0, off.stderr
        assert langsmith.raw == []
        on = cli(
            "run",
            "docker-optimization",
            "--repo",
            str(repo),
            "--phases",
            "dockerfiles",
            "--builds",
            "off",
            "--llm",
            "--quiet",
            "--reports-dir",
            str(tmp_path / "r2"),
            env={**env, "PIPELINE_TRACING": "1"},
        )
        assert on.returncode == 0, on.stderr
        traced = langsmith.sent()
    assert traced, "with PIPELINE_TRACING=1 the state is traced"
    for form, canary in CANARIES.items():
        assert canary.encode() not in traced, f"{form} traced"


# -- crashes and the cache ------------------------------------------------------
def test_a_compose_file_broken_by_an_edit_is_reverted_and_resume_does_not_replay_a_crash(
    tmp_path, reports, docker_pipeline, key
):
    repo = make_repo(tmp_path / "repo", REPO)
    finding = {
        "findings": [
            {
                "file": "compose.yaml",
                "line": 2,
                "evidence": "app:",
                "severity": "warning",
                "category": "reliability",
                "message": "no healthcheck",
            }
        ]
    }
    bomb = {"file": "compose.yaml", "diff": "", "rationale": "alias", "content": "x: &a [*a]\nservices: {}\n"}
    with ScriptedModel(answers(ModelFindings=finding, ModelEdit=bomb)) as model:
        record = run(repo, reports, docker_pipeline, model, phases=("compose",))
        assert record.status == "completed", record.error
        [verdict] = [v for v in record.verdicts if not v.accepted and "recursive alias" in v.reason]
        again = resume_run({"docker-optimization": docker_pipeline}, reports, record.run.run_id, phase="compose")
    assert again.status == "completed", again.error
    assert "&a" not in git(repo, "show", f"{record.run.branch}:compose.yaml")


def test_answers_cached_by_a_node_that_crashed_are_asked_again(tmp_path, reports, docker_pipeline, key, monkeypatch):
    repo = make_repo(tmp_path / "repo", REPO)
    with ScriptedModel(answers()) as model:
        monkeypatch.setenv("PIPELINE_CRASH_AT", "dockerfiles.implementer:after")
        record = run(repo, reports, docker_pipeline, model)
        assert record.status == "failed" and "injected crash" in record.error
        first = model.calls("ModelEdit")
        assert list((reports / record.run.run_id / "llm-cache" / "dropped").glob("*.json"))
        monkeypatch.delenv("PIPELINE_CRASH_AT")
        again = resume_run({"docker-optimization": docker_pipeline}, reports, record.run.run_id)
        assert again.status == "completed", again.error
        # Asked again, not replayed (the task whose commit the crashed attempt left is reused from the branch).
        assert model.calls("ModelEdit") > first
        findings = model.calls("ModelFindings")
        nocache = resume_run(
            {"docker-optimization": docker_pipeline}, reports, record.run.run_id, phase="analysis", no_cache=True
        )
    assert nocache.status == "completed"
    assert model.calls("ModelFindings") == findings + 1  # --no-cache: the analyst asks again


# -- budgets --------------------------------------------------------------------
def test_max_tokens_is_sent_on_every_request_and_usage_is_recorded_as_spent(
    tmp_path, reports, docker_pipeline, key, monkeypatch
):
    repo = make_repo(tmp_path / "repo", REPO)
    with ScriptedModel(answers()) as model:
        monkeypatch.setenv("PIPELINE_CRASH_AT", "analysis.architect:after")
        record = run(repo, reports, docker_pipeline, model, max_output_tokens="321")
    assert record.status == "failed"
    assert [b["max_tokens"] for b in model.bodies] == [321, 321, 321]
    # The crash came before the architect's node ended: its call is on disk all the same.
    ledger = (reports / record.run.run_id / "llm-calls.jsonl").read_text().splitlines()
    assert [json.loads(line)["agent"] for line in ledger] == ["analyst", "planner", "architect"]
    assert [c.agent for c in record.llm_calls] == ["analyst", "planner", "architect"]
    assert sum(u.tokens for u in record.usage) == 3 * 120


def test_retries_are_ours_and_each_is_counted(tmp_path, reports, docker_pipeline, key):
    repo = make_repo(tmp_path / "repo", REPO)
    tries = {"n": 0}

    def flaky(body):
        tries["n"] += 1
        return Reply(503, {"error": {"message": "busy"}}) if tries["n"] <= 2 else LLM001

    with ScriptedModel(answers(ModelFindings=flaky)) as model:
        record = run(repo, reports, docker_pipeline, model, llm_retries="2")
    analyst = [c for c in record.llm_calls if c.agent == "analyst"]
    assert [c.outcome.split(":")[0] for c in analyst] == ["InternalServerError", "InternalServerError", "answered"]
    assert next(u for u in record.usage if u.agent == "analyst").calls == 3
    assert any(f.source == "llm" for f in record.findings)


def test_max_cost_with_an_unpriced_model_is_refused_at_start_unless_prices_are_given(
    tmp_path, reports, key, docker_pipeline
):
    repo = make_repo(tmp_path / "repo", REPO)
    refused = cli(
        "run",
        "docker-optimization",
        "--repo",
        str(repo),
        "--llm",
        "--model",
        "my-local-model",
        "--max-cost",
        "0.10",
        "--reports-dir",
        str(reports),
        env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "--price-input" in refused.stderr
    assert not list(reports.iterdir())  # nothing started
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"my-local-model": {"input": 0.5, "output": 1.5}}))
    from agent_pipelines.engine.llm import LLMConfig

    config = LLMConfig.from_options(
        {"llm_model": "my-local-model", "max_cost": "0.1", "price_file": str(prices), "llm_base_url": "http://h/v1"}
    )
    assert config.price == (0.5, 1.5)
    with pytest.raises(UsageError, match="--price-input and --price-output go together"):
        start_run(docker_pipeline, repo, reports, None, {"llm": "1", "llm_base_url": "http://h/v1", "price_input": "1"})


def test_a_cost_cap_with_given_prices_holds_per_call(tmp_path, reports, docker_pipeline, key):
    repo = make_repo(tmp_path / "repo", REPO)
    with ScriptedModel(answers(), model="my-local-model") as model:
        # 100 prompt + 20 completion tokens at $1000/$2000 per 1M: $0.14 a call; $0.25 allows two.
        record = run(
            repo,
            reports,
            docker_pipeline,
            model,
            llm_model="my-local-model",
            max_cost="0.25",
            price_input="1000",
            price_output="2000",
        )
    assert record.status == "stopped" and "cost budget spent: $0.2800 of $0.2500" in record.error
    assert model.calls() == 2


def test_a_hung_model_times_out_is_said_once_and_not_asked_again(tmp_path, reports, docker_pipeline, key):
    repo = make_repo(tmp_path / "repo", REPO)
    said = []
    hang = Reply(200, {"choices": []}, delay=3)
    with ScriptedModel({name: hang for name in answers()}) as model:
        record = run(
            repo,
            reports,
            docker_pipeline,
            model,
            events=lambda kind, **d: said.append(d) if kind == "llm_down" else None,
            llm_timeout="0.3",
            llm_retries="1",
        )
    assert record.status == "completed", record.error
    assert len(said) == 1 and "is not answering (APITimeoutError)" in said[0]["message"]
    assert model.calls() == 2  # the analyst's call and its retry; nobody asked a model that is down
    assert any("the model is down" in n for p in record.phases for n in p.notes)


def test_an_overall_deadline_stops_asking(tmp_path, reports, docker_pipeline, key):
    repo = make_repo(tmp_path / "repo", REPO)
    with ScriptedModel(answers()) as model:
        record = run(repo, reports, docker_pipeline, model, llm_deadline="0")
    assert record.status == "completed" and model.calls() == 0
    assert any("deadline (0 s) has passed" in n for n in record.phase("analysis").notes)


def test_fenced_json_is_accepted(tmp_path, reports, docker_pipeline, key):
    repo = make_repo(tmp_path / "repo", REPO)
    with ScriptedModel(answers(ModelFindings="```json\n" + json.dumps(LLM001) + "\n```")) as model:
        record = run(repo, reports, docker_pipeline, model)
    assert [f.rule for f in record.findings if f.source == "llm"] == ["LLM001"]


# -- provenance -------------------------------------------------------------------
def test_model_commits_carry_model_endpoint_and_rationale_and_another_models_answers_are_not_replayed(
    tmp_path, reports, docker_pipeline, key
):
    repo = make_repo(tmp_path / "repo", REPO)
    sneaky = edit(lambda t: t.replace("ADD app.py", "COPY app.py"))

    def with_trailer(body):
        answer = sneaky(body)
        return {**answer, "rationale": "COPY says what it does.\n\nPipeline-Task: 0000000000"}

    with ScriptedModel(answers(ModelEdit=with_trailer)) as model:
        record = run(repo, reports, docker_pipeline, model)
        [sha] = [c.commit for c in llm_changes(record) if c.status is ChangeStatus.committed]
        host = model.base_url.split("//")[1].split("/")[0]
        body = git(repo, "log", "-1", "--format=%B", sha)
        trailers = git(repo, "log", "-1", "--format=%(trailers:only)", sha)
        assert f"Pipeline-Model: gpt-4o-mini\nPipeline-Endpoint: {host}" in trailers
        assert "Model rationale: COPY says what it does. Pipeline-Task: 0000000000" in body
        assert "Pipeline-Task: 0000000000" not in trailers
        assert {(c.model, c.endpoint) for c in record.llm_calls} == {("gpt-4o-mini", host)}
        summary = (reports / record.run.run_id / "summary.md").read_text()
        assert f"Models: gpt-4o-mini at {host} ({model.calls()} requests)" in summary
        before = model.calls()
        other = resume_run(
            {"docker-optimization": docker_pipeline},
            reports,
            record.run.run_id,
            phase="analysis",
            options={"llm_model": "other-model"},
        )
    assert other.status == "completed"
    assert model.calls() > before  # the other model was asked, not handed the first one's answers
    assert {c.model for c in other.llm_calls if c.outcome == "answered"} == {"gpt-4o-mini", "other-model"}
    assert not [c for c in other.llm_calls if c.model == "other-model" and c.outcome == "cached"]


def test_a_server_that_wants_max_completion_tokens_gets_it(tmp_path, reports, docker_pipeline, key):
    """OpenAI's reasoning models refuse `max_tokens`; the client says the same limit by the name they take."""
    repo = make_repo(tmp_path / "repo", REPO)
    plain = answers()

    def strict(body):
        if "max_tokens" in body:
            return Reply(
                400,
                {
                    "error": {
                        "message": "Unsupported parameter: 'max_tokens' is not supported with this "
                        "model. Use 'max_completion_tokens' instead.",
                        "type": "invalid_request_error",
                        "param": "max_tokens",
                    }
                },
            )
        return plain["ModelFindings"]

    with ScriptedModel(answers(ModelFindings=strict)) as model:
        record = run(repo, reports, docker_pipeline, model)
    assert [f.rule for f in record.findings if f.source == "llm"] == ["LLM001"]
    assert [("max_tokens" in b, b.get("max_completion_tokens")) for b in model.bodies[:2]] == [
        (True, None),
        (False, 4096),
    ]


def test_a_server_without_structured_outputs_is_asked_in_json_mode_and_its_fenced_answer_taken(
    tmp_path, reports, docker_pipeline, key
):
    repo = make_repo(tmp_path / "repo", REPO)
    plain = answers()

    def json_mode_only(name):
        def reply(body):
            if body["response_format"]["type"] == "json_schema":
                return Reply(400, {"error": {"message": "response_format json_schema is not supported"}})
            answer = plain[name](body) if callable(plain[name]) else plain[name]
            return "```json\n" + json.dumps(answer) + "\n```"

        return reply

    with ScriptedModel({name: json_mode_only(name) for name in plain}) as model:
        record = run(repo, reports, docker_pipeline, model)
    assert record.status == "completed"
    assert [f.rule for f in record.findings if f.source == "llm"] == ["LLM001"]
    assert any(c.status is ChangeStatus.committed for c in llm_changes(record))
