"""Spans for every node, gate, build and model call (OpenTelemetry), exported only when the user asks for it.

Off by default, and then nothing of OpenTelemetry is imported: ``span()``
yields None and costs a dict lookup. On when either

- the standard environment names an exporter: ``OTEL_TRACES_EXPORTER``
  (``console``, ``otlp``; ``none`` keeps it off) or an OTLP endpoint
  (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``).
  This needs the SDK: ``pip install 'agent-pipelines[otel]'`` (and, for
  ``otlp``, ``opentelemetry-exporter-otlp-proto-http`` or ``-grpc``, chosen by
  ``OTEL_EXPORTER_OTLP_PROTOCOL``); the service name and resource come from
  ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` as usual;
- or the process has already set a global TracerProvider (an application
  embedding the pipeline, ``opentelemetry-instrument``, a test's in-memory
  exporter): the spans go to it.

``OTEL_SDK_DISABLED=true`` keeps it off. Model calls follow the GenAI
semantic conventions (``gen_ai.operation.name``, ``gen_ai.request.model``,
``gen_ai.usage.input_tokens``...) and never carry message content. Every
string attribute, and an error's description, goes through the run's
redactor first, as what is sent to a model does.

Example: ``OTEL_TRACES_EXPORTER=console pipeline run PIPELINE``
prints one span per node, gate, build and model request.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

SCOPE = "agent-pipelines"


@dataclass
class _Active:
    tracer: Tracer
    redact: Callable[[str], str]


_active: _Active | None = None


class Span:
    """A started span whose attributes are redacted before they are set."""

    def __init__(self, span, redact: Callable[[str], str]) -> None:
        self._span, self._redact = span, redact

    def set_attribute(self, key: str, value: object) -> None:
        if value is None:
            return
        if isinstance(value, str):
            value = self._redact(value)
        elif isinstance(value, (list, tuple)):
            value = [self._redact(v) if isinstance(v, str) else v for v in value]
        self._span.set_attribute(key, value)

    def set_attributes(self, attributes: dict) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)


def enabled() -> bool:
    return _active is not None


@contextmanager
def span(name: str, **attributes: object) -> Iterator[Span | None]:
    """A span named ``name`` (a child of the current one) with ``attributes``; None when telemetry is off.

    An exception leaving it marks the span as an error with its type and a redacted description."""
    active = _active
    if active is None:
        yield None
        return
    from opentelemetry.trace import Status, StatusCode

    with active.tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False) as raw:
        wrapped = Span(raw, active.redact)
        wrapped.set_attributes(attributes)
        try:
            yield wrapped
        except BaseException as err:
            raw.set_attribute("error.type", type(err).__name__)
            raw.set_status(Status(StatusCode.ERROR, active.redact(str(err))[:300]))
            raise


@contextmanager
def session(redact: Callable[[str], str] | None, notify: Callable[..., None] | None = None) -> Iterator[bool]:
    """Telemetry for one run invocation: yields whether spans are recorded; flushes the exporter at the end."""
    global _active
    tracer, finish = _tracer(notify or (lambda kind, **data: None))
    if tracer is None:
        yield False
        return
    previous = _active
    _active = _Active(tracer, redact or (lambda text: text))
    try:
        yield True
    finally:
        _active = previous
        finish()


def _tracer(notify) -> tuple[Tracer | None, Callable[[], None]]:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None, lambda: None
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if names == ["none"]:
        return None, lambda: None
    if names or endpoint:
        return _exporting(names or ["otlp"], notify)
    if "opentelemetry.trace" not in sys.modules:
        return None, lambda: None  # nobody in this process set a provider: stay off, import nothing
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None, lambda: None
    flush = getattr(provider, "force_flush", None)
    return provider.get_tracer(SCOPE), (lambda: flush()) if callable(flush) else (lambda: None)


def _exporting(names: list[str], notify) -> tuple[Tracer | None, Callable[[], None]]:
    """A TracerProvider of our own with the exporters the environment names (the user's app's stays untouched)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        notify(
            "warning",
            message="OpenTelemetry export is configured (OTEL_*) but opentelemetry-sdk is not "
            "installed: pip install 'agent-pipelines[otel]'; no spans are exported",
        )
        return None, lambda: None
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SCOPE)}))
    added = 0
    for name in names:
        exporter = ConsoleSpanExporter() if name == "console" else _otlp(notify) if name == "otlp" else None
        if exporter is None:
            if name not in ("console", "otlp"):
                notify("warning", message=f"OTEL_TRACES_EXPORTER={name} is not supported here (console, otlp)")
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
        added += 1
    if not added:
        provider.shutdown()
        return None, lambda: None
    return provider.get_tracer(SCOPE), provider.shutdown


def _otlp(notify):
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if protocol == "grpc" else "http")
        notify("warning", message=f"OTLP export is configured but {package} is not installed; no spans are exported")
        return None
    return OTLPSpanExporter()  # endpoint, headers and timeout from the OTEL_EXPORTER_OTLP_* variables
