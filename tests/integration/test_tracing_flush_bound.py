"""A trace collector that is down cannot hold Slack's ack (insightmesh.tracing.flushed's bound and
the flusher in insightmesh.tracing_otel), against the OTLP/HTTP receiver stand-in and a loopback
socket that accepts connections and never answers: the first flush waits its bound, the next ones
do not wait at all, one export thread at most runs, the spans still reach the collector when it
comes back on the same address, and then handlers wait for the export again. Whether a call waited
is read from the flusher's counts and from the export still being in flight, never from a clock.
slack_ingress's short bound, and TRACING_FLUSH_SECONDS, read and validated when a handler loads."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from insightmesh import tracing
from tests.integration.conftest import load_handler
from tests.integration.test_lambda_flush import tracing_to
from tests.standins.otlp_server import start

ROOT = Path(__file__).parents[2]


def flush_threads() -> list[threading.Thread]:
    from insightmesh import tracing_otel

    return [thread for thread in threading.enumerate() if thread.name == tracing_otel.FLUSH_THREAD_NAME]


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A collector that accepts connections (the backlog) and never answers; tracing exports to it."""
    server = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "10")  # the export stays in flight while the test runs
    tracing_to(monkeypatch, f"http://127.0.0.1:{server.getsockname()[1]}")
    yield server
    server.close()
    tracing.reset_for_tests()


def changes(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The flusher's warnings so far (up to their bound): one per change of state."""
    return [record.getMessage().split(" s ", 1)[0] for record in caplog.records
            if record.name == "insightmesh.tracing_otel"]


def handler(bound: float) -> Callable[[str], None]:
    @tracing.flushed(timeout_seconds=bound)
    def lambda_handler(name: str) -> None:
        with tracing.span(name, kind="server"):
            pass

    return lambda_handler


def test_a_collector_that_never_answers_costs_one_wait_then_none_until_it_is_back(
        silent: socket.socket, caplog: pytest.LogCaptureFixture) -> None:
    from insightmesh import tracing_otel

    caplog.set_level(logging.WARNING, logger="insightmesh.tracing_otel")
    invoke = handler(1.0)  # generous: the round that goes in time below must do so on a loaded machine
    invoke("call-0")  # waits its bound, in vain: the collector has the request and does not answer
    assert tracing_otel.flush_counts() == tracing_otel.FlushCounts(waited=1, missed=1, skipped=0)
    assert not tracing_otel.waiting()
    [in_flight] = flush_threads()
    for index in range(1, 6):
        invoke(f"call-{index}")
        assert flush_threads() == [in_flight]  # no thread piles up; the stuck export is still running ...
    # ... so these calls returned without waiting for it: none waited, none missed.
    assert tracing_otel.flush_counts() == tracing_otel.FlushCounts(waited=1, missed=1, skipped=5)
    assert changes(caplog) == ["Span export did not complete within 1.00"]

    port = silent.getsockname()[1]
    silent.close()  # the stuck request is reset; the collector comes back on the same address
    receiver = start(port)
    try:
        assert tracing_otel.settle(30)
        assert sorted(span["name"] for span in receiver.spans()) == [f"call-{index}" for index in range(6)]
        assert tracing_otel.waiting()  # the round that carried calls 1-5 went in time: waiting resumes
        assert changes(caplog) == [
            "Span export did not complete within 1.00", "Span export completed within 1.00"]

        invoke("call-6")
        assert "call-6" in {span["name"] for span in receiver.spans()}  # waited for, exported before returning
        assert tracing_otel.flush_counts() == tracing_otel.FlushCounts(waited=2, missed=1, skipped=5)
    finally:
        tracing.reset_for_tests()
        receiver.stop()


def test_flushes_during_a_slow_export_share_one_thread_and_their_spans_go_in_its_next_round(
        silent: socket.socket) -> None:
    from insightmesh import tracing_otel

    invoke = handler(0.05)
    for index in range(20):
        invoke(f"call-{index}")
        assert len(flush_threads()) == 1
    port = silent.getsockname()[1]
    silent.close()
    receiver = start(port)
    try:
        assert tracing_otel.settle(30) and flush_threads() == []
        assert len(receiver.spans()) == 20 and receiver.requests <= 2  # the stuck round, then one more
    finally:
        tracing.reset_for_tests()
        receiver.stop()


def test_flushed_takes_a_bound_keeps_its_bare_form_and_the_environment_overrides_both(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tracing.FLUSH_SECONDS_VARIABLE, raising=False)

    @tracing.flushed
    def bare(value: int) -> int:
        return value + 1

    assert bare(1) == 2 and bare.flush_seconds == tracing.DEFAULT_FLUSH_SECONDS  # type: ignore[attr-defined]
    assert handler(0.3).flush_seconds == 0.3  # type: ignore[attr-defined]
    monkeypatch.setenv(tracing.FLUSH_SECONDS_VARIABLE, " 0.5 ")
    assert handler(0.3).flush_seconds == 0.5  # type: ignore[attr-defined]
    assert tracing.flushed(bare).flush_seconds == 0.5  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["fast", "0", "-1", "nan", "inf", "31"])
def test_a_bad_flush_setting_fails_the_handler_s_load(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(tracing.FLUSH_SECONDS_VARIABLE, value)
    with pytest.raises(ValueError, match=tracing.FLUSH_SECONDS_VARIABLE):
        handler(0.3)


def test_slack_ingress_flushes_with_the_short_ack_bound_unless_configured(
        monkeypatch: pytest.MonkeyPatch, tables: dict[str, str]) -> None:
    monkeypatch.delenv(tracing.FLUSH_SECONDS_VARIABLE, raising=False)
    path = ROOT / "functions" / "slack_ingress" / "handler.py"
    assert load_handler(path).lambda_handler.flush_seconds == tracing.ACK_FLUSH_SECONDS == 0.3
    monkeypatch.setenv(tracing.FLUSH_SECONDS_VARIABLE, "0.8")
    assert load_handler(path).lambda_handler.flush_seconds == 0.8
    monkeypatch.delenv(tracing.FLUSH_SECONDS_VARIABLE)
    assert load_handler(ROOT / "functions" / "health" / "handler.py").lambda_handler.flush_seconds == 2.0
