"""Tracing on OpenTelemetry: off by default at zero cost, OTLP over HTTP when on.

CONTRACT (issue 16). Callers use only this module; nothing else imports ``opentelemetry``
except ``insightmesh.tracing_otel`` (the enabled path, imported lazily).

* **On or off.** Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (non-empty), ``OTEL_SDK_DISABLED`` is not
  ``true`` and ``OTEL_TRACES_EXPORTER`` is not ``none``. Decided once per process
  (:func:`enabled`; tests call :func:`reset_for_tests`). Off: ``span()`` hands out one shared
  no-op span, ``inject``/``carrier_from_sqs_record`` return nothing, and no ``opentelemetry``
  module is ever imported.
* **Configuration** is the standard ``OTEL_*`` variables, read by the SDK itself:
  ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` /
  ``OTEL_TRACES_SAMPLER_ARG`` (``parentbased_traceidratio`` + ``0.1`` samples 10%),
  ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` / ``_HEADERS`` / ``_TIMEOUT``.
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` adds prompts and answers to LLM
  spans, redacted with the log rules (:func:`capture_message_content`).
* **Across processes** the W3C ``traceparent``/``tracestate`` travel in SQS message attributes
  (:func:`sqs_message_attributes`, :func:`carrier_from_sqs_record`) and in event fields of
  direct invocations (:func:`inject`, ``span(..., parent=carrier)``).
* **In Lambda** the spans of an invocation are exported before it returns:
  :func:`flush` (bounded by ``timeout_seconds``) — wired by :func:`flushed`, a handler decorator.

  *The choice: flush at the end of each invocation* (every ``functions/*/handler.py`` is
  ``@flushed``). Lambda freezes the environment once the handler returns, so spans left in the
  batch processor's queue would wait for the next invocation, or be lost with the environment.
  The cost is one OTLP/HTTP ``POST`` to the endpoint per invocation that made spans, on the
  invocation's own time — to the receiver stand-in on loopback, p50 1.2 ms for one span, 2-3 ms
  for a worker request's eight, 6-7 ms for fifty (``benchmarks/tracing_flush.py``; a collector in
  the same region adds its round trip); an invocation that made none posts nothing.
  The wait is bounded: by :data:`DEFAULT_FLUSH_SECONDS` (2 s), or the handler's own
  ``@flushed(timeout_seconds=...)``, or the function's ``TRACING_FLUSH_SECONDS`` (which overrides
  both; read and validated when the handler loads). A collector that is slow or down delays a
  reply by at most that, once: after a flush missed its bound, the container's next flushes do
  not wait at all (the export goes on in one helper thread, bounded itself by
  ``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s by default; the batch processor's queue bounds the spans
  held) until an export succeeds within the bound again — ``insightmesh.tracing_otel._Flusher``.

  *slack_ingress's bound is* :data:`ACK_FLUSH_SECONDS` *(0.3 s)*: its flush is on the ack Slack
  wants within 3 s, after a cold start that can take 1-2 s. Its two spans (the server span and the
  SQS send) flush to the loopback stand-in in p50 1.4-1.6 ms, max 18-37 ms on a 2-CPU machine at
  load 8-13, and a container's first flush (a new connection) in p50 1.8-3.3 ms, max 13 ms
  (``benchmarks/tracing_flush.py``): 0.3 s is 8x the worst of those, leaves room for TLS to a
  collector in another region, and is a tenth of Slack's budget. A collector that never answers
  costs one ack 0.3 s, and the next ones 0.01 ms.

  *The alternative, by configuration only: the ADOT collector extension.* Add the AWS
  Distro for OpenTelemetry collector layer to the functions and set
  ``OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318``: the flush then posts to the extension
  in the same environment (sub-millisecond), and the extension exports to the backend after the
  response, batching across invocations — at the price of an extra layer, its memory and its
  cold-start time, and its own configuration file. No code changes either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, Final, Literal, Protocol, TypeVar, overload

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
SpanKindName = Literal["internal", "server", "client", "producer", "consumer"]
Carrier = dict[str, str]

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
DEFAULT_FLUSH_SECONDS: Final = 2.0
FLUSH_SECONDS_VARIABLE: Final = "TRACING_FLUSH_SECONDS"
MAX_FLUSH_SECONDS: Final = 30.0
ACK_FLUSH_SECONDS: Final = 0.3  # slack_ingress's bound: its flush is on Slack's 3-second ack (module docstring)
CAPTURE_CONTENT_VARIABLE: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

F = TypeVar("F", bound=Callable[..., Any])


class Span(Protocol):
    """What instrumented code may do with a span (a subset of OpenTelemetry's ``Span``)."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None: ...

    def add_event(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None: ...

    def record_exception(self, error: BaseException) -> None: ...

    def set_error(self, description: str) -> None:
        """Mark the span's status ERROR with ``description`` (an exception leaving ``span()`` does this)."""
        ...

    def is_recording(self) -> bool:
        """False for the no-op span and for spans the sampler dropped: skip costly attributes then."""
        ...


class _NoopSpan:
    __slots__ = ()

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        return None

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        return None

    def add_event(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        return None

    def record_exception(self, error: BaseException) -> None:
        return None

    def set_error(self, description: str) -> None:
        return None

    def is_recording(self) -> bool:
        return False


NOOP_SPAN: Final[Span] = _NoopSpan()
_enabled: bool | None = None


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def enabled() -> bool:
    """Whether this process exports traces (the rules in the module docstring); decided once."""
    global _enabled
    if _enabled is None:
        endpoint = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
                    or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())
        _enabled = bool(endpoint) and not _truthy("OTEL_SDK_DISABLED") and \
            os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() != "none"
    return _enabled


def reset_for_tests() -> None:
    """Forget the on/off decision (and, when on, shut the provider down so a new one is made)."""
    global _enabled
    if _enabled:
        from insightmesh import tracing_otel

        tracing_otel.shutdown()
    _enabled = None


def capture_message_content() -> bool:
    """Prompts and answers go on LLM spans only when tracing is on and this variable is ``true``."""
    return enabled() and _truthy(CAPTURE_CONTENT_VARIABLE)


@contextmanager
def span(name: str, *, kind: SpanKindName = "internal", attributes: Mapping[str, AttributeValue] | None = None,
         parent: Mapping[str, str] | None = None) -> Iterator[Span]:
    """A span around the ``with`` block, a child of the current one — or of ``parent``, a W3C
    carrier from another process, when given. An exception leaving the block is recorded on the
    span and marks it ERROR, then propagates. Off: the shared no-op span, nothing else."""
    if not enabled():
        yield NOOP_SPAN
        return
    from insightmesh import tracing_otel

    with tracing_otel.start_span(name, kind=kind, attributes=attributes, parent=parent) as current:
        yield current


def current_span() -> Span:
    """The active span (the no-op span when off or outside any span)."""
    if not enabled():
        return NOOP_SPAN
    from insightmesh import tracing_otel

    return tracing_otel.current_span()


def inject(carrier: Carrier | None = None) -> Carrier:
    """``carrier`` (a new dict by default) with the current context's ``traceparent``/``tracestate``."""
    carrier = {} if carrier is None else carrier
    if enabled():
        from insightmesh import tracing_otel

        tracing_otel.inject(carrier)
    return carrier


def sqs_message_attributes() -> dict[str, dict[str, str]]:
    """SQS ``MessageAttributes`` carrying the current trace context (empty when off): merge them
    with :func:`insightmesh.observability.correlation_message_attributes`."""
    return {key: {"DataType": "String", "StringValue": value} for key, value in inject().items()}


def carrier_from_sqs_record(record: Mapping[str, Any]) -> Carrier:
    """The trace carrier an SQS record's message attributes hold (Lambda's ``stringValue`` shape)."""
    if not enabled():
        return {}
    attributes = record.get("messageAttributes") or {}
    carrier: Carrier = {}
    for key in (TRACEPARENT, TRACESTATE):
        value = (attributes.get(key) or {}).get("stringValue")
        if isinstance(value, str) and value:
            carrier[key] = value
    return carrier


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the active, sampled span, for log lines; None otherwise."""
    if not enabled():
        return None
    from insightmesh import tracing_otel

    return tracing_otel.current_trace_ids()


def flush(timeout_seconds: float = DEFAULT_FLUSH_SECONDS) -> None:
    """Export the finished spans now, waiting at most ``timeout_seconds`` (Lambda freezes after
    return) — not at all after a flush missed its bound, until an export is in time again."""
    if not enabled():
        return
    from insightmesh import tracing_otel

    tracing_otel.flush(timeout_seconds)


def flush_seconds(default: float = DEFAULT_FLUSH_SECONDS) -> float:
    """A function's flush bound: :data:`FLUSH_SECONDS_VARIABLE` when set (validated: a number of
    seconds in ``(0, MAX_FLUSH_SECONDS]``, else ``ValueError``), otherwise ``default``."""
    raw = os.environ.get(FLUSH_SECONDS_VARIABLE, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{FLUSH_SECONDS_VARIABLE} must be a number of seconds, not {raw!r}") from None
    if not 0 < seconds <= MAX_FLUSH_SECONDS:  # also refuses nan and inf
        raise ValueError(f"{FLUSH_SECONDS_VARIABLE} must be more than 0 and at most {MAX_FLUSH_SECONDS:g} s, "
                         f"not {raw!r}")
    return seconds


@overload
def flushed(handler: F, /) -> F: ...


@overload
def flushed(*, timeout_seconds: float) -> Callable[[F], F]: ...


def flushed(handler: F | None = None, /, *, timeout_seconds: float | None = None) -> F | Callable[[F], F]:
    """A Lambda handler decorator: :func:`flush` after every invocation, whatever its outcome.

    ``@flushed`` waits at most :data:`DEFAULT_FLUSH_SECONDS`; ``@flushed(timeout_seconds=0.3)``
    sets the handler's own bound. Either way :data:`FLUSH_SECONDS_VARIABLE`, when set in the
    function's environment, overrides it — read and validated once, when the handler's module is
    imported (the container's cold start: a bad value fails the init, loudly)."""
    bound = flush_seconds(DEFAULT_FLUSH_SECONDS if timeout_seconds is None else timeout_seconds)

    def decorate(function: F) -> F:
        @wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if enabled():
                from insightmesh import tracing_otel

                tracing_otel.invocation_started()
            try:
                return function(*args, **kwargs)
            finally:
                flush(bound)

        wrapper.flush_seconds = bound  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate if handler is None else decorate(handler)


__all__ = [
    "NOOP_SPAN", "AttributeValue", "Carrier", "Span", "SpanKindName", "capture_message_content",
    "carrier_from_sqs_record", "current_span", "current_trace_ids", "enabled", "flush", "flush_seconds", "flushed",
    "inject", "reset_for_tests", "span", "sqs_message_attributes",
]
