"""Every Slack Web API call as a client span (insightmesh.slack.client.TracedWebClient), against the
Slack sandbox on loopback: the method, Slack's verdict and the HTTP status; never the token or text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from slack_sdk.errors import SlackApiError

from insightmesh import resilience
from insightmesh.slack.client import call_slack
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.slack_fixtures import pointed_sandbox
from tests.tracing_fixtures import all_text, attributes, traced_fixture  # noqa: F401

TOKEN = "xoxb-span-test-0123456789"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, traced: InMemorySpanExporter) -> Iterator[SlackSandbox]:
    resilience._breakers.clear()
    with pointed_sandbox(monkeypatch, TOKEN) as stand_in:
        yield stand_in
    resilience._breakers.clear()


def test_a_call_is_one_client_span_without_the_token_or_the_text(
        sandbox: SlackSandbox, traced: InMemorySpanExporter) -> None:
    call_slack(lambda c: c.chat_postMessage(channel="C1", text="the quarterly numbers are secret"))

    [span] = traced.get_finished_spans()
    assert span.name == "slack chat.postMessage" and span.kind is SpanKind.CLIENT
    assert attributes(span) == {"slack.method": "chat.postMessage", "slack.ok": True,
                                "http.response.status_code": 200}
    leaked = all_text(traced)
    assert TOKEN not in leaked and "quarterly" not in leaked and "C1" not in leaked


def test_retries_stay_inside_the_calls_span(sandbox: SlackSandbox, traced: InMemorySpanExporter) -> None:
    posted = call_slack(lambda c: c.chat_postMessage(channel="C1", text="draft"))
    sandbox.fail("chat.update", "error", count=2, status=503, error="service_unavailable")

    call_slack(lambda c: c.chat_update(channel="C1", ts=posted["ts"], text="final"))

    assert [span.name for span in traced.get_finished_spans()] == ["slack chat.postMessage", "slack chat.update"]
    assert len(sandbox.calls("chat.update")) == 3
    assert attributes(traced.get_finished_spans()[1])["slack.ok"] is True


def test_slacks_refusal_is_an_error_span_with_its_code(sandbox: SlackSandbox, traced: InMemorySpanExporter) -> None:
    sandbox.fail("users.info", "error", count=1, error="user_not_found")

    with pytest.raises(SlackApiError):
        call_slack(lambda c: c.users_info(user="U404"))

    [span] = traced.get_finished_spans()
    assert attributes(span) == {"slack.method": "users.info", "slack.ok": False, "slack.error": "user_not_found",
                                "error.type": "user_not_found", "http.response.status_code": 200}
    assert span.status.status_code is StatusCode.ERROR


def test_a_server_error_keeps_its_http_status(sandbox: SlackSandbox, traced: InMemorySpanExporter) -> None:
    sandbox.fail("chat.postMessage", "error", count=1, status=500, error="internal_error")

    with pytest.raises(SlackApiError):
        call_slack(lambda c: c.chat_postMessage(channel="C1", text="once"))

    [span] = traced.get_finished_spans()
    assert attributes(span)["http.response.status_code"] == 500
    assert attributes(span)["error.type"] == "internal_error"
