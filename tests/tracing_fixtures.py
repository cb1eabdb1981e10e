"""Tracing on for one test, its spans kept in memory: ``traced`` (an ``InMemorySpanExporter``).

``from tests.tracing_fixtures import traced_fixture  # noqa: F401`` in a test module, then ask for ``traced``;
``traced.get_finished_spans()`` are the spans ended so far. Content capture is off unless the test
sets ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (read on each call).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from insightmesh import tracing


@pytest.fixture(name="traced")
def traced_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # never reached: in-memory export
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv(tracing.CAPTURE_CONTENT_VARIABLE, raising=False)
    tracing.reset_for_tests()
    assert tracing.enabled()
    from insightmesh import tracing_otel

    exporter = InMemorySpanExporter()
    tracing_otel.use_exporter(exporter)
    yield exporter
    tracing.reset_for_tests()


def spans_named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name.startswith(prefix)]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def all_text(exporter: InMemorySpanExporter) -> str:
    """Every span's name, attribute values and event attributes as one string (to look for leaks)."""
    parts: list[str] = []
    for span in exporter.get_finished_spans():
        parts.append(span.name)
        parts.extend(str(value) for value in (span.attributes or {}).values())
        for event in span.events:
            parts.extend(str(value) for value in (event.attributes or {}).values())
    return "\n".join(parts)
