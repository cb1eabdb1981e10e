"""The enabled path of :mod:`insightmesh.tracing`: the OpenTelemetry SDK, exporting OTLP over HTTP.

Imported only when tracing is on (``insightmesh.tracing.enabled()``), so a process that does not
trace never imports ``opentelemetry``. The provider is built once per process from the standard
``OTEL_*`` variables, which the SDK reads itself: the sampler (``OTEL_TRACES_SAMPLER``/``_ARG``,
parent-based always-on by default), the resource (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``) and the exporter's endpoint, headers and timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

# insightmesh.tracing's aliases, not imported: that module imports this one (lazily), and the
# contexts may not form a cycle.
AttributeValue = Any
Carrier = dict[str, str]
SpanKindName = str

INSTRUMENTATION_NAME: Final = "insightmesh"
_KINDS: Final = {
    "internal": SpanKind.INTERNAL, "server": SpanKind.SERVER, "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER, "consumer": SpanKind.CONSUMER,
}
_lock = threading.Lock()
_provider: TracerProvider | None = None
_global_set = False  # OpenTelemetry's global provider can be set once per process


class _SpanHandle:
    """:class:`insightmesh.tracing.Span` over an OpenTelemetry span."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self._span.set_attributes(dict(attributes))

    def add_event(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        self._span.add_event(name, dict(attributes or {}))

    def record_exception(self, error: BaseException) -> None:
        self._span.record_exception(error)

    def set_error(self, description: str) -> None:
        self._span.set_status(Status(StatusCode.ERROR, description))

    def is_recording(self) -> bool:
        return self._span.is_recording()


def provider() -> TracerProvider:
    """The process's provider (made on first use, also installed as OpenTelemetry's global one)."""
    with _lock:
        if _provider is not None:
            return _provider
        made = TracerProvider(resource=Resource.create())
        made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _install(made)
        return made


def _install(made: TracerProvider) -> None:
    """``made`` becomes this process's provider (and OpenTelemetry's global one, the first time:
    our spans come from :func:`tracer`, so a later provider need not be global)."""
    global _provider, _global_set
    _provider = made
    if not _global_set:
        trace.set_tracer_provider(made)
        _global_set = True


def use_exporter(exporter: SpanExporter) -> TracerProvider:
    """Tests: replace the process's provider by one exporting each span to ``exporter`` as it ends
    (a ``SimpleSpanProcessor``: no batching, so the spans are there when the ``with`` block is left).
    ``insightmesh.tracing.enabled()`` must also be true (set an endpoint, then ``reset_for_tests``)."""
    with _lock:
        if _provider is not None:
            _provider.shutdown()
        made = TracerProvider(resource=Resource.create())
        made.add_span_processor(SimpleSpanProcessor(exporter))
        _install(made)
        return made


def tracer() -> trace.Tracer:
    return provider().get_tracer(INSTRUMENTATION_NAME)


@contextmanager
def start_span(name: str, *, kind: SpanKindName, attributes: Mapping[str, AttributeValue] | None,
               parent: Mapping[str, str] | None) -> Iterator[_SpanHandle]:
    parent_context = propagate.extract(dict(parent)) if parent else None
    with tracer().start_as_current_span(name, context=parent_context, kind=_KINDS[kind],
                                        attributes=dict(attributes) if attributes else None) as current:
        yield _SpanHandle(current)


def current_span() -> _SpanHandle:
    return _SpanHandle(trace.get_current_span())


def inject(carrier: Carrier) -> None:
    propagate.inject(carrier, context=otel_context.get_current())


def current_trace_ids() -> tuple[str, str] | None:
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid or not span_context.trace_flags.sampled:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def flush(timeout_seconds: float) -> bool:
    """Export the finished spans, waiting at most ``timeout_seconds``; whether they went in time.

    The SDK's ``BatchSpanProcessor.force_flush`` ignores its timeout: it exports in the caller's
    thread, bounded only by the exporter's own (``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s by default,
    retries included). So the export runs in a helper thread and the caller waits for it at most
    ``timeout_seconds``; a slower export finishes in the background (in Lambda, after the next
    thaw if the environment was frozen first)."""
    made = _provider
    if made is None:
        return True
    done = threading.Event()

    def export() -> None:
        made.force_flush()
        done.set()

    threading.Thread(target=export, name="otel-flush", daemon=True).start()
    return done.wait(timeout_seconds)


def shutdown() -> None:
    """Flush and drop the provider (tests that switch tracing on and off between cases)."""
    global _provider
    with _lock:
        if _provider is not None:
            _provider.shutdown()
            _provider = None
