"""LLM mode: any OpenAI-compatible model, behind typed answers, a cache, a budget and redaction.

Never built offline. The project owns the HTTP client (timeouts, connection
limits, closed at the end) and hands it to the OpenAI SDK. Every answer is
parsed into a pydantic model with structured outputs (strict JSON schema),
falling back to JSON mode for servers without it; one retry when the answer
doesn't validate; after that, or after an API error the SDK's retries didn't
cure, the agent keeps its deterministic result and the report says why.

Answers are cached in the run directory, keyed by model, messages and
schema, so resuming a run or re-running a phase replays them without calls.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import TypeVar

import httpx
import jinja2
import openai
from pydantic import BaseModel, ConfigDict, ValidationError

from engine.artifacts import Category, Severity, Usage
from engine.llm_budget import BudgetExhausted
from engine.redact import Redactor

T = TypeVar("T", bound=BaseModel)

# USD per million tokens (input, output) for models whose price is public; others: "unknown".
PRICES = {
    "gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60), "gpt-4.1-nano": (0.10, 0.40),
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


@dataclass(frozen=True)
class LLMConfig:
    model: str
    base_url: str | None
    api_key: str | None
    max_cost: float | None = None
    max_tokens: int | None = None
    timeout: float = 60.0

    @classmethod
    def from_options(cls, options: dict[str, str]) -> "LLMConfig":
        base_url = options.get("llm_base_url") or os.environ.get("OPENAI_BASE_URL") or None
        api_key = os.environ.get("OPENAI_API_KEY") or None
        if api_key is None and base_url is None:
            raise LLMSetupError("--llm needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible server)")
        return cls(model=options.get("llm_model") or os.environ.get("OPENAI_MODEL") or "gpt-4o-mini",
                   base_url=base_url, api_key=api_key,
                   max_cost=float(options["max_cost"]) if options.get("max_cost") else None,
                   max_tokens=int(options["max_tokens"]) if options.get("max_tokens") else None)


def _prompts_root() -> Path:
    return Path(str(resources.files("prompts")))


class LLM:
    """One client per run invocation; a context manager that closes the SDK and the HTTP client."""

    def __init__(self, config: LLMConfig, cache_dir: Path, pipeline: str, redactor: Redactor) -> None:
        self.config = config
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.pipeline = pipeline
        self.redact = redactor
        self.http = httpx.Client(timeout=httpx.Timeout(config.timeout, connect=10.0),
                                 limits=httpx.Limits(max_connections=4, max_keepalive_connections=2))
        self.client = openai.OpenAI(api_key=config.api_key or "not-needed", base_url=config.base_url,
                                    http_client=self.http, max_retries=2)
        self.templates = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_prompts_root())),
                                            undefined=jinja2.StrictUndefined, autoescape=False,
                                            keep_trailing_newline=True)
        self.json_mode_only = False
        self.usage: dict[tuple[str, str], Usage] = {}

    def close(self) -> None:
        self.client.close()
        self.http.close()

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- budget ----------------------------------------------------------
    def check_budget(self, spent: list[Usage]) -> None:
        tokens = sum(u.tokens or 0 for u in spent)
        cost = sum(u.cost or 0.0 for u in spent)
        if self.config.max_tokens is not None and tokens >= self.config.max_tokens:
            raise BudgetExhausted(f"token budget spent: {tokens} of {self.config.max_tokens} tokens used")
        if self.config.max_cost is not None and cost >= self.config.max_cost:
            raise BudgetExhausted(f"cost budget spent: ${cost:.4f} of ${self.config.max_cost:.4f}")

    def usage_for(self, phase: str, agent: str) -> Usage:
        return self.usage.setdefault((phase, agent), Usage(phase=phase, agent=agent))

    # -- asking ----------------------------------------------------------
    def messages(self, agent: str, purpose: str, variables: dict) -> list[dict[str, str]]:
        name = f"{self.pipeline}/{agent}.{purpose}.j2"
        try:
            template = self.templates.get_template(name)
        except jinja2.TemplateNotFound:
            template = self.templates.get_template(f"default/{agent}.{purpose}.j2")
        system, _, user = template.render(**variables).partition("\n---user---\n")
        return [{"role": "system", "content": self.redact(system.strip())},
                {"role": "user", "content": self.redact(user.strip())}]

    def ask(self, phase: str, agent: str, purpose: str, variables: dict, answer: type[T]) -> tuple[T | None, str]:
        """The model's answer as ``answer``, or (None, why it failed)."""
        usage = self.usage_for(phase, agent)
        messages = self.messages(agent, purpose, variables)
        schema = strict_schema(answer)
        key = hashlib.sha256(json.dumps([self.config.model, messages, schema], sort_keys=True).encode()).hexdigest()
        cached = self.cache_dir / f"{key}.json"
        if cached.exists():
            usage.cached += 1
            return answer.model_validate_json(json.loads(cached.read_text())["content"]), ""
        content, why = self._attempt(messages, schema, answer, usage)
        if content is None:
            usage.failed += 1
            return None, why
        parsed = answer.model_validate_json(content)
        cached.write_text(json.dumps({"model": self.config.model, "content": content}), encoding="utf-8")
        return parsed, ""

    def _attempt(self, messages, schema, answer, usage) -> tuple[str | None, str]:
        try:
            content = self._complete(messages, schema, answer.__name__, usage)
            try:
                answer.model_validate_json(content)
                return content, ""
            except ValidationError as err:
                retry = messages + [{"role": "assistant", "content": content},
                                    {"role": "user", "content": "That answer does not match the schema: "
                                     f"{_short(err)}. Answer again with JSON that matches it exactly."}]
                content = self._complete(retry, schema, answer.__name__, usage)
                try:
                    answer.model_validate_json(content)
                    return content, ""
                except ValidationError as err2:
                    return None, f"the model's answer did not validate twice: {_short(err2)}"
        except openai.APIError as err:
            return None, f"the model's API failed after retries: {type(err).__name__}: {_short(err)}"

    def _complete(self, messages, schema, name, usage) -> str:
        if not self.json_mode_only:
            try:
                return self._create(messages, usage, {"type": "json_schema",
                                                      "json_schema": {"name": name, "schema": schema, "strict": True}})
            except openai.BadRequestError as err:
                if "response_format" not in str(err) and "json_schema" not in str(err):
                    raise
                self.json_mode_only = True  # this server does JSON mode only; say the schema in the prompt
        hinted = [dict(messages[0], content=messages[0]["content"] + "\n\nAnswer with one JSON object matching "
                       "this JSON schema:\n" + json.dumps(schema))] + messages[1:]
        return self._create(hinted, usage, {"type": "json_object"})

    def _create(self, messages, usage: Usage, response_format: dict) -> str:
        usage.calls += 1
        response = self.client.chat.completions.create(model=self.config.model, messages=messages,
                                                       response_format=response_format, temperature=0)
        reported = response.usage
        if reported is None or usage.prompt_tokens is None:
            usage.prompt_tokens = usage.completion_tokens = usage.cost = None
        else:
            usage.prompt_tokens += reported.prompt_tokens
            usage.completion_tokens += reported.completion_tokens
            price = PRICES.get(self.config.model)
            usage.cost = None if price is None or usage.cost is None else round(
                usage.cost + (reported.prompt_tokens * price[0] + reported.completion_tokens * price[1]) / 1e6, 6)
        return response.choices[0].message.content or ""


def _short(err: Exception) -> str:
    return " ".join(str(err).split())[:300]


def enum_values(enum: type[Enum]) -> list[str]:
    return [e.value for e in enum]
