"""Spans leave a Lambda invocation before it returns (insightmesh.tracing.flushed on every handler):
a function's handler exports its spans over OTLP/HTTP to the loopback receiver stand-in before the
handler returns, although the batch processor's own schedule would wait a minute; and a collector
that does not answer holds the flush only as long as its bound."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from insightmesh import tracing
from insightmesh.config import get_settings
from tests.integration.conftest import load_handler
from tests.standins.otlp_server import OtlpReceiver, start

ROOT = Path(__file__).parents[2]


def tracing_to(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # the batch processor alone would wait 60 s
    monkeypatch.setenv("OTEL_SERVICE_NAME", "health")
    tracing.reset_for_tests()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    server = start()
    tracing_to(monkeypatch, server.endpoint)
    yield server
    tracing.reset_for_tests()
    server.stop()


def test_a_handlers_spans_are_exported_before_it_returns(
        receiver: OtlpReceiver, tables: dict[str, str]) -> None:
    get_settings.cache_clear()
    health = load_handler(ROOT / "functions" / "health" / "handler.py")
    event = json.loads((ROOT / "events" / "health" / "live.json").read_text())

    response = health.lambda_handler(event, None)

    assert response["statusCode"] == 200
    spans = receiver.spans()  # read right after the return: nothing waited for the batch schedule
    assert [span["name"] for span in spans] == ["GET /health"]
    assert spans[0]["service.name"] == "health" and receiver.requests == 1
    get_settings.cache_clear()


def test_a_collector_that_does_not_answer_holds_the_flush_only_up_to_its_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections (the backlog), never answers
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # the exporter gives up after 1 s
    tracing_to(monkeypatch, f"http://127.0.0.1:{silent.getsockname()[1]}")
    from insightmesh import tracing_otel

    try:
        with tracing.span("work"):
            pass
        assert tracing_otel.flush(0.1) is False  # not exported in time: the caller goes on
        tracing.flush(0.1)  # the public call returns too
    finally:
        tracing.reset_for_tests()
        silent.close()
