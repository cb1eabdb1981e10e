"""The enabled path of :mod:`insightmesh.tracing`: the OpenTelemetry SDK, exporting OTLP over HTTP.

Imported only when tracing is on (``insightmesh.tracing.enabled()``), so a process that does not
trace never imports ``opentelemetry``. The provider is built once per process from the standard
``OTEL_*`` variables, which the SDK reads itself: the sampler (``OTEL_TRACES_SAMPLER``/``_ARG``,
parent-based always-on by default), the resource (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``) and the exporter's endpoint, headers and timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

# insightmesh.tracing's aliases, not imported: that module imports this one (lazily), and the
# contexts may not form a cycle.
AttributeValue = Any
Carrier = dict[str, str]
SpanKindName = str

INSTRUMENTATION_NAME: Final = "insightmesh"
FLUSH_THREAD_NAME: Final = "otel-flush"
_KINDS: Final = {
    "internal": SpanKind.INTERNAL, "server": SpanKind.SERVER, "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER, "consumer": SpanKind.CONSUMER,
}
_lock = threading.Lock()
_provider: TracerProvider | None = None
_global_set = False  # OpenTelemetry's global provider can be set once per process
_logger = logging.getLogger(__name__)
_failed_exports = 0  # exports the OTLP exporter failed, this process (the one writer is the export in progress)


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
        made.add_span_processor(BatchSpanProcessor(_Observed(OTLPSpanExporter())))
        _install(made)
        return made


class _Observed(SpanExporter):
    """The OTLP exporter, counting the exports that failed (the flusher's health signal)."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        global _failed_exports
        result = self._exporter.export(spans)
        if result is not SpanExportResult.SUCCESS:
            _failed_exports += 1
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


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


class FlushCounts(NamedTuple):
    """This container's flushes so far: those that waited for the export, those of them that gave
    up at their bound, and those that did not wait (the endpoint was slow or down)."""

    waited: int = 0
    missed: int = 0
    skipped: int = 0


class _Flusher:
    """The container's span exports at the end of invocations: one helper thread at most, and
    whether handlers wait for it.

    The SDK's ``BatchSpanProcessor.force_flush`` ignores its timeout: it exports in the caller's
    thread, bounded only by the exporter's own (``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s by default,
    retries included). So the export runs in a helper thread and the caller waits for it at most
    its bound; a slower export finishes in the background (in Lambda, after the next thaw if the
    environment was frozen first).

    *A collector that is down costs one invocation its bound, then nothing.* When a wait misses
    its bound the container stops waiting: later flushes hand their spans to the helper thread
    and return at once (the batch processor's queue, ``OTEL_BSP_MAX_QUEUE_SIZE`` spans, bounds the
    memory and drops the oldest when full). Waiting resumes as soon as an export round succeeds
    within the bound again (the collector is back); each change is logged once, as a warning.
    Within the bound of the round's start, or of the start of the invocation it finished in: once
    a handler no longer waits, Lambda freezes the environment with the round in flight, and it ends
    after the next thaw, however fast the collector answered.

    *One thread.* A flush while an export round runs does not start another thread: it asks the
    running one for one more round, which takes every span queued by then. Each round has an
    event, set when it is done; a caller waits on the one of the round that will carry its spans."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.again = False  # a flush arrived during the running round: export once more
        self.pending = threading.Event()  # set when the next round to start is done
        self.bound = 0.0  # the latest caller's bound: a round within it counts as "in time"
        self.waiting = True
        self.counts = FlushCounts()
        self.invocation_started = 0.0  # time.monotonic() when the latest invocation began

    def flush(self, made: TracerProvider, timeout_seconds: float) -> bool:
        with self.lock:
            done = self.pending
            self.bound = timeout_seconds
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, args=(made,), name=FLUSH_THREAD_NAME, daemon=True)
                self.thread.start()
            else:
                self.again = True
            if not self.waiting:
                self.counts = self.counts._replace(skipped=self.counts.skipped + 1)
                return False
            self.counts = self.counts._replace(waited=self.counts.waited + 1)
        if done.wait(timeout_seconds):
            return True
        with self.lock:
            if done.is_set():  # done just now, between the timeout and the lock
                return True
            self.counts = self.counts._replace(missed=self.counts.missed + 1)
            if self.waiting:
                self.waiting = False
                _logger.warning("Span export did not complete within %.2f s (the OTLP endpoint is slow or down): "
                                "handlers stop waiting for it until an export completes in time again; "
                                "spans are still exported in the background", timeout_seconds)
        return False

    def _run(self, made: TracerProvider) -> None:
        while True:
            with self.lock:
                done, self.pending, self.again = self.pending, threading.Event(), False
                bound = self.bound
            started, failed_before = time.monotonic(), _failed_exports
            completed = exported = False
            try:
                made.force_flush()
                completed, exported = True, _failed_exports == failed_before
            finally:  # whatever happened, the round is over: never leave a caller or the state stuck
                in_time = exported and time.monotonic() - max(started, self.invocation_started) <= bound
                done.set()
                with self.lock:
                    if in_time and not self.waiting:
                        self.waiting = True
                        _logger.warning("Span export completed within %.2f s again: handlers wait for it again",
                                        bound)
                    more = self.again and completed
                    if not more:
                        self.thread = None
            if not more:
                return

    def settle(self, timeout_seconds: float) -> bool:
        """Wait until no export round runs (at most ``timeout_seconds``); whether none does."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            with self.lock:
                running = self.thread
            if running is None:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            running.join(remaining)


_flusher = _Flusher()


def flush(timeout_seconds: float) -> bool:
    """Export the finished spans, waiting at most ``timeout_seconds``; whether they went in time.
    While the endpoint is slow or down it does not wait at all and returns False (:class:`_Flusher`)."""
    made = _provider
    if made is None:
        return True
    return _flusher.flush(made, timeout_seconds)


def invocation_started() -> None:
    """A handler invocation begins (``insightmesh.tracing.flushed``; see :class:`_Flusher`)."""
    _flusher.invocation_started = time.monotonic()


def waiting() -> bool:
    """Whether flushes wait for the export (False after one missed its bound, until one is in time)."""
    return _flusher.waiting


def flush_counts() -> FlushCounts:
    """How this container's flushes went (:class:`FlushCounts`; tests and benchmarks)."""
    return _flusher.counts


def settle(timeout_seconds: float) -> bool:
    """Tests and benchmarks: wait until the export thread is idle (at most ``timeout_seconds``)."""
    return _flusher.settle(timeout_seconds)


def shutdown() -> None:
    """Flush and drop the provider (tests that switch tracing on and off between cases)."""
    global _provider, _flusher
    with _lock:
        if _provider is not None:
            _provider.shutdown()
            _provider = None
        _flusher = _Flusher()
