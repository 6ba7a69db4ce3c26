"""A scripted OpenAI-compatible HTTP server for tests: a real socket, a real HTTP exchange, scripted answers.

respx intercepts only the project's own httpx client; this server is what
any client (the SDK with its retries and timeouts, a subprocess running
`pipeline`) really talks to. It answers ``POST /v1/chat/completions`` by the
structured-output schema the request names (``response_format.json_schema.name``,
or the ``Answer schema: Name`` line of a JSON-mode prompt), records every raw
request body, and can be told to fail, hang or answer with fenced JSON.

    with ScriptedModel({"ModelEdit": lambda body: {...}}) as model:
        run with OPENAI_BASE_URL=model.base_url ...
        assert model.calls("ModelEdit") == 1

An answer is a dict (sent as the message's JSON content), a str (sent as
the content verbatim), a callable of the request body returning either, or a
``Reply`` (status, body, delay) for errors and hangs.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}


@dataclass
class Reply:
    """A raw reply: an HTTP status and body, sent after ``delay`` seconds."""

    status: int = 200
    body: dict | str = field(default_factory=dict)
    delay: float = 0.0


def completion(content: str, model: str = "gpt-4o-mini", usage: dict | None = USAGE) -> dict:
    body = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def schema_name(body: dict) -> str:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt["json_schema"]["name"]
    text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    found = re.search(r"Answer schema: (\w+)", text) or re.search(r'"title": "(\w+)"', text)
    return found.group(1) if found else "json_object"


class ScriptedModel:
    def __init__(self, answers: dict[str, object] | None = None, model: str = "gpt-4o-mini") -> None:
        self.answers: dict[str, object] = dict(answers or {})
        self.model = model
        self.raw: list[bytes] = []
        self.bodies: list[dict] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "use ScriptedModel as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def calls(self, name: str | None = None) -> int:
        return sum(name is None or schema_name(b) == name for b in self.bodies)

    def sent(self) -> bytes:
        """Every request body this server received, joined: grep it for what must never leave."""
        return b"\n".join(self.raw)

    def answer(self, body: dict) -> Reply:
        name = schema_name(body)
        if name not in self.answers:
            return Reply(500, {"error": {"message": f"no scripted answer for {name}"}})
        scripted = self.answers[name]
        scripted = scripted(body) if callable(scripted) else scripted
        if isinstance(scripted, Reply):
            return scripted
        content = scripted if isinstance(scripted, str) else json.dumps(scripted)
        return Reply(200, completion(content, self.model))

    def __enter__(self) -> ScriptedModel:
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                model.raw.append(raw)
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    reply = Reply(400, {"error": {"message": "body is not JSON"}})
                else:
                    model.bodies.append(body)
                    reply = model.answer(body) if self.path.endswith("/chat/completions") else Reply(404, {})
                if reply.delay:
                    time.sleep(reply.delay)
                data = (reply.body if isinstance(reply.body, str) else json.dumps(reply.body)).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-model", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


AnswerFn = Callable[[dict], object]
