"""Trace ids on log lines (insightmesh.observability.RedactingFormatter): ``trace_id`` and ``span_id``
of the active span right after ``correlation_id`` when tracing is on; nothing when off."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from insightmesh import tracing
from insightmesh.observability import bind_correlation_id, get_logger
from tests.tracing_fixtures import traced_fixture  # noqa: F401


@pytest.fixture
def logged() -> Iterator[tuple[Logger, io.StringIO]]:
    logger = get_logger(f"test-{uuid.uuid4().hex[:12]}")
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    yield logger, stream
    logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_line_inside_a_span_carries_its_trace_and_span_ids_after_the_correlation_id(
        traced: InMemorySpanExporter, logged: tuple[Logger, io.StringIO]) -> None:
    logger, stream = logged
    bind_correlation_id(logger, "req-123")
    with tracing.span("work"):
        logger.info("inside")
    logger.info("outside")

    [span] = traced.get_finished_spans()
    inside, outside = lines(stream)
    assert inside["trace_id"] == format(span.context.trace_id, "032x")
    assert inside["span_id"] == format(span.context.span_id, "016x")
    keys = list(inside)
    assert keys[keys.index("correlation_id") + 1: keys.index("correlation_id") + 3] == ["trace_id", "span_id"]
    assert "trace_id" not in outside and outside["correlation_id"] == "req-123"


def test_without_a_correlation_id_the_ids_are_still_there(
        traced: InMemorySpanExporter, logged: tuple[Logger, io.StringIO]) -> None:
    logger, stream = logged
    with tracing.span("work"):
        logger.info("inside")

    [line] = lines(stream)
    assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16


def test_tracing_off_adds_no_ids(logged: tuple[Logger, io.StringIO], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    tracing.reset_for_tests()
    logger, stream = logged
    with tracing.span("work"):
        logger.info("inside")

    [line] = lines(stream)
    assert "trace_id" not in line and "span_id" not in line
