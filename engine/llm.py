"""LLM mode: any OpenAI-compatible model, behind typed answers, a cache, a budget and redaction.

Never built offline. The project owns the HTTP client (timeouts, connection
limits, closed at the end) and hands it to the OpenAI SDK. Every answer is
parsed into a pydantic model with structured outputs (strict JSON schema),
falling back to JSON mode for servers without it; one retry when the answer
doesn't validate (a fenced ```json block is accepted); after that, or after
an API error the retries didn't cure, the agent keeps its deterministic result
and the report says why. What is sent is redacted first (``engine.redact``).

Answers are cached in the run directory, keyed by model, endpoint, messages
and schema, so resuming a run or re-running a phase replays them without
calls, and another model's answer is never replayed as this one's; answers a
node cached before it crashed are dropped (a resume asks again), and
``resume --no-cache`` drops them all.

Budgets hold per call: ``max_tokens`` is sent on every request (the
configured limit, less when the budget has less left), the caps are checked
before each request, retries are made here (the SDK's are off) so each one is
counted, and every request is written to the run's ledger as it happens
(``engine.llm_budget``). A per-request timeout and an overall deadline bound
the time; a model that doesn't answer is said once and not asked again in
this invocation.

An agent may offer read-only tools (``engine.tools``) with its question:
the model may call them for ``--llm-tool-rounds`` rounds (default 4), each
round a request like any other (budget-checked, in the ledger as
``tool round: ...``), each result redacted and cut at ``--llm-tool-max-chars``
(default 20000). Every request is a span (``engine.telemetry``) when the
user configures an OpenTelemetry exporter.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx
import jinja2
import openai
from pydantic import BaseModel, ConfigDict, ValidationError

from agent_pipelines.engine.artifacts import Category, LLMCall, Severity
from agent_pipelines.engine.llm_budget import TOOL_ROUND, BudgetExhausted, Ledger, spent
from agent_pipelines.engine.redact import Redactor
from agent_pipelines.engine.telemetry import span
from agent_pipelines.engine.tools import DEFAULT_TOOL_MAX_CHARS, DEFAULT_TOOL_ROUNDS, Tool, Toolbox

if TYPE_CHECKING:
    from openai.types.chat.completion_create_params import ResponseFormat

T = TypeVar("T", bound=BaseModel)

# USD per million tokens (input, output) for models whose price is public; others: "unknown".
PRICES = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}


class LLMSetupError(Exception):
    """LLM mode was asked for but can't be configured; the message says what to set."""


# -- the answers agents ask for (strict: every field required) -------------
class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelFinding(Answer):
    file: str
    line: int
    evidence: str
    message: str
    severity: Severity
    category: Category


class ModelFindings(Answer):
    findings: list[ModelFinding]


class PlanAdvice(Answer):
    rationale: str
    order: list[str]


class DesignAdvice(Answer):
    notes: list[str]


class ModelEdit(Answer):
    file: str
    content: str
    diff: str
    rationale: str


class Narrative(Answer):
    text: str


def strict_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema in the shape strict structured outputs require."""
    schema = model.model_json_schema()

    def fix(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            node.pop("default", None)
            node.pop("title", None)
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)

    fix(schema)
    return schema


DEFAULT_MAX_OUTPUT_TOKENS = 4096  # per request, unless --llm-max-output-tokens says otherwise
DEFAULT_TIMEOUT = 60.0  # seconds per request, unless --llm-timeout says otherwise
DEFAULT_RETRIES = 2  # retries after a 429, a 5xx, a timeout or a refused connection


def _number(options: dict[str, str], key: str, kind=float, flag: str = ""):
    raw = options.get(key)
    if raw in (None, ""):
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise LLMSetupError(f"{flag or '--' + key.replace('_', '-')} must be a number, not {raw!r}") from None
    if value < 0:
        raise LLMSetupError(f"{flag or '--' + key.replace('_', '-')} must not be negative")
    return value


def load_prices(path: str, model: str) -> tuple[float, float] | None:
    """The (input, output) USD per 1M tokens of ``model`` in a JSON price file: {"model": {"input": x, "output": y}}."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LLMSetupError(f"--price-file {path} can't be read as JSON ({err})") from None
    entry = data.get(model) if isinstance(data, dict) else None
    if entry is None:
        return None
    try:
        pair = (entry["input"], entry["output"]) if isinstance(entry, dict) else tuple(entry)
        return float(pair[0]), float(pair[1])
    except (KeyError, TypeError, ValueError, IndexError):
        raise LLMSetupError(
            f'--price-file {path}: {model} needs {{"input": USD, "output": USD}} per 1M tokens'
        ) from None


@dataclass(frozen=True)
class LLMConfig:
    model: str
    base_url: str | None
    api_key: str | None
    max_cost: float | None = None
    max_tokens: int | None = None  # the run's token budget
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS  # sent as max_tokens on every request
    timeout: float = DEFAULT_TIMEOUT
    deadline: float | None = None  # seconds of model time per invocation
    retries: int = DEFAULT_RETRIES
    price: tuple[float, float] | None = None  # USD per 1M tokens (input, output)
    tool_rounds: int = DEFAULT_TOOL_ROUNDS  # rounds of tool calls per question (0: no tools)
    tool_max_chars: int = DEFAULT_TOOL_MAX_CHARS  # characters of one tool result sent to the model

    @property
    def endpoint(self) -> str:
        """The endpoint's host (and port), never its credentials: what commits and run.json name."""
        parsed = urlsplit(self.base_url or "https://api.openai.com/v1")
        host = parsed.hostname or "unknown"
        return f"{host}:{parsed.port}" if parsed.port else host

    @classmethod
    def from_options(cls, options: dict[str, str]) -> LLMConfig:
        base_url = options.get("llm_base_url") or os.environ.get("OPENAI_BASE_URL") or None
        api_key = os.environ.get("OPENAI_API_KEY") or None
        if api_key is None and base_url is None:
            raise LLMSetupError("--llm needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible server)")
        model = options.get("llm_model") or os.environ.get("OPENAI_MODEL") or "gpt-4o-mini"
        price_in, price_out = _number(options, "price_input"), _number(options, "price_output")
        if (price_in is None) != (price_out is None):
            raise LLMSetupError("--price-input and --price-output go together (USD per 1M tokens)")
        price = (
            (price_in, price_out)
            if price_in is not None
            else (load_prices(options["price_file"], model) if options.get("price_file") else PRICES.get(model))
        )
        max_cost = _number(options, "max_cost")
        if max_cost is not None and price is None:
            raise LLMSetupError(
                f"--max-cost needs the price of model {model!r}, which isn't known: pass "
                "--price-input and --price-output (USD per 1M tokens) or --price-file"
            )
        output = _number(options, "max_output_tokens", int, "--llm-max-output-tokens")
        timeout = _number(options, "llm_timeout", float, "--llm-timeout")
        retries = _number(options, "llm_retries", int, "--llm-retries")
        rounds = _number(options, "llm_tool_rounds", int, "--llm-tool-rounds")
        chars = _number(options, "llm_tool_max_chars", int, "--llm-tool-max-chars")
        return cls(
            model=model,
            base_url=base_url,
            api_key=api_key,
            max_cost=max_cost,
            max_tokens=_number(options, "max_tokens", int),
            price=price,
            max_output_tokens=output or DEFAULT_MAX_OUTPUT_TOKENS,
            timeout=timeout or DEFAULT_TIMEOUT,
            deadline=_number(options, "llm_deadline", float, "--llm-deadline"),
            retries=DEFAULT_RETRIES if retries is None else retries,
            tool_rounds=DEFAULT_TOOL_ROUNDS if rounds is None else rounds,
            tool_max_chars=chars or DEFAULT_TOOL_MAX_CHARS,
        )


def _prompts_root() -> Path:
    return Path(str(resources.files("agent_pipelines.prompts")))


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?```\s*$", re.DOTALL)


def unfence(content: str) -> str:
    """The JSON inside a Markdown code fence (```json ... ```), which local models often send; else as is."""
    found = _FENCE.match(content)
    return found.group(1) if found else content


class ModelUnavailable(Exception):
    """No answer: the deadline passed, or the model is down (said once); the agent keeps its own result."""


_RETRIED = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)  # timeouts included


class LLM:
    """One client per run invocation; a context manager that closes the SDK and the HTTP client.

    ``notify(kind, **data)`` hears of a model that is down (once per invocation).
    """

    def __init__(
        self,
        config: LLMConfig,
        cache_dir: Path,
        pipeline: str,
        redactor: Redactor,
        run_dir: Path | None = None,
        notify=None,
    ) -> None:
        self.config = config
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(Path(run_dir) if run_dir is not None else self.cache_dir.parent)
        self.pipeline = pipeline
        self.redact = redactor
        self.notify = notify or (lambda kind, **data: None)
        self.http = httpx.Client(
            timeout=httpx.Timeout(config.timeout, connect=min(10.0, config.timeout)),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
        )
        # max_retries=0: the retries are ours, so each is budget-checked and written to the ledger.
        # openai>=3 types http_client as httpx2.Client and takes an httpx.Client too (respx sees only httpx).
        self.client = openai.OpenAI(
            api_key=config.api_key or "not-needed",
            base_url=config.base_url,
            http_client=self.http,  # type: ignore[arg-type]
            max_retries=0,
        )
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_prompts_root())),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
        )
        self.json_mode_only = False
        self.token_param = "max_tokens"
        self.down = ""
        self.deadline_at = time.monotonic() + config.deadline if config.deadline is not None else None
        self.fresh: list[Path] = []  # answers cached since the current node started
        self.toolbox: Toolbox | None = None  # the tools of the last question, with the calls the model made
        self.no_tools = False  # the server refused a request for its tools: not offered again
        self._where = ("", "", "")

    def close(self) -> None:
        self.client.close()
        self.http.close()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- budget ----------------------------------------------------------
    def check_budget(self, _spent: object = None) -> None:
        """Raise BudgetExhausted when the run's spend (the ledger) has reached a cap: before every call."""
        tokens, cost, _ = spent(self.ledger.calls())
        if self.config.max_tokens is not None and tokens >= self.config.max_tokens:
            raise BudgetExhausted(f"token budget spent: {tokens} of {self.config.max_tokens} tokens used")
        if self.config.max_cost is not None and cost >= self.config.max_cost:
            raise BudgetExhausted(f"cost budget spent: ${cost:.4f} of ${self.config.max_cost:.4f}")

    def _output_cap(self) -> int:
        """max_tokens for the next request: the configured limit, or less when a budget has less left."""
        cap = self.config.max_output_tokens
        tokens, cost, _ = spent(self.ledger.calls())
        if self.config.max_tokens is not None:
            cap = min(cap, self.config.max_tokens - tokens)
        if self.config.max_cost is not None and self.config.price and self.config.price[1] > 0:
            cap = min(cap, int((self.config.max_cost - cost) * 1e6 / self.config.price[1]))
        return max(cap, 1)

    def _record(self, outcome: str, prompt: int | None = 0, completion: int | None = 0) -> None:
        phase, agent, purpose = self._where
        price = self.config.price
        cost = (
            None
            if prompt is None or completion is None or price is None
            else round((prompt * price[0] + completion * price[1]) / 1e6, 6)
        )
        self.ledger.add(
            LLMCall(
                at=datetime.now(UTC),
                phase=phase,
                agent=agent,
                purpose=purpose,
                model=self.config.model,
                endpoint=self.config.endpoint,
                outcome=outcome,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost=cost,
            )
        )

    # -- the cache -------------------------------------------------------
    def node_started(self) -> None:
        self.fresh = []

    def drop_fresh(self) -> list[str]:
        """Forget the answers cached by a node that then crashed: a resume asks again instead of replaying it."""
        dropped = self.cache_dir / "dropped"
        names = []
        for path in self.fresh:
            if path.exists():
                dropped.mkdir(exist_ok=True)
                os.replace(path, dropped / path.name)
                names.append(path.name)
        self.fresh = []
        return names

    # -- asking ----------------------------------------------------------
    def messages(self, agent: str, purpose: str, variables: dict) -> list[dict[str, str]]:
        """The prompt: the pipeline's template for the agent's purpose, else ``prompts/default``'s (one source:
        a pipeline keeps only the templates it words differently)."""
        name = f"{self.pipeline}/{agent}.{purpose}.j2"
        try:
            template = self.templates.get_template(name)
        except jinja2.TemplateNotFound:
            template = self.templates.get_template(f"default/{agent}.{purpose}.j2")
        system, _, user = template.render(**variables).partition("\n---user---\n")
        return [
            {"role": "system", "content": self.redact(system.strip())},
            {"role": "user", "content": self.redact(user.strip())},
        ]

    def ask(
        self, phase: str, agent: str, purpose: str, variables: dict, answer: type[T], tools: list[Tool] | None = None
    ) -> tuple[T | None, str]:
        """The model's answer as ``answer``, or (None, why it failed); BudgetExhausted when a cap is reached.

        ``tools``: read-only tools the model may call first (``engine.tools``); ``self.toolbox.log`` then
        lists the calls it made. A cached answer replays without them."""
        self._where = (phase, agent, purpose)
        messages = self.messages(agent, purpose, variables)
        schema = strict_schema(answer)
        toolbox = self.toolbox = (
            Toolbox(tools, self.config.tool_rounds, self.config.tool_max_chars)
            if tools and self.config.tool_rounds > 0 and not self.no_tools
            else None
        )
        # The model and endpoint are part of the key: another model's answer is never replayed as this one's.
        keyed = [self.config.model, self.config.endpoint, messages, schema] + ([toolbox.names()] if toolbox else [])
        key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()
        cached = self.cache_dir / f"{key}.json"
        if cached.exists():
            try:
                entry = json.loads(cached.read_text(encoding="utf-8"))
                parsed = answer.model_validate_json(entry["content"])
            except (ValueError, KeyError, TypeError):
                cached.unlink(missing_ok=True)  # unreadable: ask again
            else:
                self._record("cached", None, None)
                return parsed, ""
        try:
            content, why = self._attempt(messages, schema, answer, toolbox)
        except ModelUnavailable as err:
            content, why = None, str(err)
        if content is None:
            self._record(f"gave up: {why}"[:300])
            return None, why
        parsed = answer.model_validate_json(content)
        cached.write_text(
            json.dumps({"model": self.config.model, "endpoint": self.config.endpoint, "content": content}),
            encoding="utf-8",
        )
        self.fresh.append(cached)
        return parsed, ""

    def _attempt(self, messages, schema, answer, toolbox: Toolbox | None = None) -> tuple[str | None, str]:
        try:
            content, messages = self._converse(messages, schema, answer.__name__, toolbox)
            content = unfence(content)
            try:
                answer.model_validate_json(content)
                return content, ""
            except ValidationError as err:
                retry = messages + [
                    {"role": "assistant", "content": content},
                    {
                        "role": "user",
                        "content": "That answer does not match the schema: "
                        f"{_short(err)}. Answer again with JSON that matches it exactly.",
                    },
                ]
                content = unfence(self._complete(retry, schema, answer.__name__, self._no_more(toolbox)))
                try:
                    answer.model_validate_json(content)
                    return content, ""
                except ValidationError as err2:
                    return None, f"the model's answer did not validate twice: {_short(err2)}"
        except openai.APIError as err:
            return (
                None,
                f"the model's API failed after {self.config.retries} retries: {type(err).__name__}: {_short(err)}",
            )

    def _converse(self, messages: list[dict], schema, name, toolbox: Toolbox | None) -> tuple[str, list[dict]]:
        """The final answer's text and the conversation that led to it: the model's tool calls and their results.

        While rounds are left, the model may call the tools instead of answering; each call is run here and
        its result (redacted, size-capped) sent back as a ``role: tool`` message. Then it must answer."""
        rounds = 0
        while True:
            offer = None
            if toolbox is not None:
                offer = {"tools": toolbox.declarations(), "tool_choice": "auto" if rounds < toolbox.rounds else "none"}
            message = self._complete(messages, schema, name, offer, whole=True)
            calls = [c for c in (getattr(message, "tool_calls", None) or []) if getattr(c, "function", None)]
            if toolbox is None or not calls or rounds >= toolbox.rounds:
                return message.content or "", messages
            rounds += 1
            asked = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in calls
            ]
            messages = messages + [{"role": "assistant", "content": message.content or "", "tool_calls": asked}]
            for c in calls:
                with span(
                    f"execute_tool {c.function.name}",
                    **{
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": c.function.name,
                        "gen_ai.tool.call.id": c.id,
                        "gen_ai.tool.call.arguments": c.function.arguments,
                    },
                ):
                    result = self.redact(toolbox.call(c.function.name, c.function.arguments))
                messages.append({"role": "tool", "tool_call_id": c.id, "content": result})

    @staticmethod
    def _no_more(toolbox: Toolbox | None) -> dict | None:
        """For a request after the tool rounds: the conversation holds tool messages, so the tools are still
        declared, but the model may not call them."""
        return {"tools": toolbox.declarations(), "tool_choice": "none"} if toolbox is not None else None

    def _complete(self, messages, schema, name, tools: dict | None = None, whole: bool = False):
        """The answer's text (or, ``whole``, the answer's message with any tool calls)."""
        message = self._answer(messages, schema, name, tools or {})
        return message if whole else (message.content or "")

    def _answer(self, messages, schema, name, tools: dict):
        if not self.json_mode_only:
            try:
                return self._create(
                    messages,
                    {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
                    tools,
                )
            except openai.BadRequestError as err:
                if "response_format" not in str(err) and "json_schema" not in str(err):
                    raise
                self.json_mode_only = True  # this server does JSON mode only; say the schema in the prompt
        hinted = [
            dict(
                messages[0],
                content=messages[0]["content"] + "\n\nAnswer with one JSON object matching "
                f"this JSON schema.\nAnswer schema: {name}\n" + json.dumps(schema),
            )
        ] + messages[1:]
        return self._create(hinted, {"type": "json_object"}, tools)

    def _create(self, messages, response_format: ResponseFormat, tools: dict | None = None):
        """One request, retried here (never by the SDK) so that every attempt is budget-checked and recorded."""
        if self.down:
            raise ModelUnavailable(f"not asked: the model is down ({self.down})")
        attempt = 0
        while True:
            self.check_budget()
            timeout = self.config.timeout
            if self.deadline_at is not None:
                left = self.deadline_at - time.monotonic()
                if left <= 0:
                    raise ModelUnavailable(f"not asked: the model deadline ({self.config.deadline:g} s) has passed")
                timeout = min(timeout, left)
            cap = self._output_cap()
            try:
                with span(f"chat {self.config.model}", **self._span_attributes(cap)) as traced:
                    extra: dict[str, Any] = {**(tools or {}), self.token_param: cap}
                    response = self.client.chat.completions.create(
                        model=self.config.model,
                        messages=messages,
                        response_format=response_format,
                        temperature=0,
                        timeout=timeout,
                        **extra,
                    )
                    _traced_response(traced, response)
            except openai.BadRequestError as err:
                self._record(f"{type(err).__name__}: {_short(err)}"[:300])
                if tools and not any(m.get("role") == "tool" for m in messages) and "tool" in str(err).lower():
                    # This server takes no tools: the model answers from the prompt alone, here and from now on.
                    tools, self.no_tools = None, True
                    continue
                if self.token_param == "max_tokens" and "max_completion_tokens" in str(err):
                    self.token_param = "max_completion_tokens"  # OpenAI's reasoning models take only this name
                    continue
                raise
            except _RETRIED as err:
                self._record(f"{type(err).__name__}: {_short(err)}"[:300])
                if attempt >= self.config.retries:
                    if isinstance(err, openai.APIConnectionError):  # refused, unreachable, or timed out
                        self.down = f"{type(err).__name__} at {self.config.endpoint}"
                        self.notify(
                            "llm_down",
                            message=f"the model {self.config.model} at {self.config.endpoint} "
                            f"is not answering ({type(err).__name__}); agents keep their own results",
                        )
                    raise
                time.sleep(_backoff(err, attempt))
                attempt += 1
                continue
            except openai.APIError as err:
                self._record(f"{type(err).__name__}: {_short(err)}"[:300])
                raise
            reported = response.usage
            message = response.choices[0].message
            called = [
                c.function.name for c in (getattr(message, "tool_calls", None) or []) if getattr(c, "function", None)
            ]
            outcome = TOOL_ROUND + ", ".join(called) if called and tools else "answered"
            if reported is None:
                self._record(outcome[:300], None, None)
            else:
                self._record(outcome[:300], reported.prompt_tokens or 0, reported.completion_tokens or 0)
            return message

    def _span_attributes(self, cap: int) -> dict:
        """GenAI semantic conventions of one request (no message content: that stays off spans)."""
        parsed = urlsplit(self.config.base_url or "https://api.openai.com/v1")
        phase, agent, purpose = self._where
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": self.config.model,
            "gen_ai.request.max_tokens": cap,
            "gen_ai.request.temperature": 0.0,
            "server.address": parsed.hostname or "",
            **({"server.port": parsed.port} if parsed.port else {}),
            "pipeline.phase": phase,
            "pipeline.agent": agent,
            "pipeline.purpose": purpose,
        }


def _traced_response(traced, response) -> None:
    """The response's GenAI attributes on its span: model, id, finish reasons, token usage."""
    if traced is None:
        return
    traced.set_attribute("gen_ai.response.model", response.model or "")
    traced.set_attribute("gen_ai.response.id", response.id or "")
    traced.set_attribute("gen_ai.response.finish_reasons", [c.finish_reason or "" for c in response.choices])
    if response.usage is not None:
        traced.set_attribute("gen_ai.usage.input_tokens", response.usage.prompt_tokens or 0)
        traced.set_attribute("gen_ai.usage.output_tokens", response.usage.completion_tokens or 0)


def _backoff(err: Exception, attempt: int) -> float:
    """Seconds before a retry: the server's Retry-After when it says one (at most 30 s), else 0.5, 1, 2..."""
    response = getattr(err, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    try:
        return min(max(float(header), 0.0), 30.0) if header is not None else 0.5 * 2**attempt
    except ValueError:
        return 0.5 * 2**attempt


def _short(err: Exception) -> str:
    return " ".join(str(err).split())[:300]
