"""Tracing end to end (issue 16): `insightmesh dev --otlp-endpoint` with every function exporting
its spans over OTLP/HTTP to a loopback receiver. A DM, from Slack's signed event to the reply in
the thread, is ONE trace across two processes (slack_ingress, then the conversation worker
through SQS); and with content capture off (the default) no span carries the DM's text or the
system prompt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import post_event, running, slack_llm_env
from tests.e2e.test_slack_conversations import answered
from tests.helpers import wait_for
from tests.standins.otlp_server import OtlpReceiver
from tests.standins.otlp_server import start as start_receiver

SECRET = "e2e-tracing-secret"
CHANNEL = "D0TRACE"
DM_TEXT = "what did the aurora-quokka-5531 review decide about pricing"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    server = start_receiver()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dev(sandbox, llm, receiver, dev_logs):
    env = slack_llm_env(sandbox, llm, secret=SECRET)
    with running("--otlp-endpoint", receiver.endpoint, env=env, log_dir=dev_logs) as server:
        yield server


def by_id(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {span["span_id"]: span for span in spans}


def ancestors(span: dict[str, Any], spans: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``span``'s parent, grandparent... as far as the spans received go."""
    chain = []
    while span["parent_span_id"] in spans and len(chain) < 64:
        span = spans[span["parent_span_id"]]
        chain.append(span)
    return chain


def strings_in(span: dict[str, Any]) -> list[str]:
    """Every exported text of a span: its name, attribute values, event names and event attributes."""
    def flatten(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [text for item in value.values() for text in flatten(item)]
        if isinstance(value, list):
            return [text for item in value for text in flatten(item)]
        return [value] if isinstance(value, str) else []
    return [span["name"], *flatten(span["attributes"]),
            *[text for event in span["events"] for text in [event["name"], *flatten(event["attributes"])]]]


def test_a_dm_is_one_trace_from_slack_s_event_to_the_reply_without_its_text(dev, sandbox, llm, receiver):
    ts = "1797100000.000100"
    with dev.http() as http:
        response = post_event(http, SECRET, slack.message_event("U0ALICE", CHANNEL, DM_TEXT, ts, channel_type="im"))
    assert response.status_code == 200, response.text
    answered(sandbox, ts, channel=CHANNEL, timeout=60)

    def ingress() -> dict[str, Any] | None:
        found = [span for span in receiver.spans() if span["kind"] == "server" and span["name"] == "POST /slack/events"]
        return found[0] if found else None
    server_span = wait_for(ingress, timeout=30, what="the ingress span")
    trace_id = server_span["trace_id"]

    def consumer_finished() -> list[dict[str, Any]] | None:  # the worker's top span ends last
        spans = receiver.spans(trace_id=trace_id)
        return spans if any(span["kind"] == "consumer" and span["service.name"] == "conversation_worker"
                            for span in spans) else None
    spans = wait_for(consumer_finished, timeout=30, what="the worker's span in the same trace")
    index = by_id(spans)

    assert server_span["service.name"] == "slack_ingress"
    assert server_span["attributes"]["http.request.method"] == "POST"
    assert server_span["attributes"]["url.path"] == "/slack/events"
    assert server_span["attributes"]["http.response.status_code"] == 200
    assert server_span["attributes"]["slack.event.type"] == "message"
    assert server_span["attributes"]["slack.event.id"].startswith("Ev")

    # The worker's usage message is a producer too (and the usage aggregator's span a consumer).
    producer = next(span for span in spans if span["kind"] == "producer" and span["service.name"] == "slack_ingress")
    assert producer["service.name"] == "slack_ingress" and producer["attributes"]["messaging.system"] == "aws_sqs"
    consumer = next(span for span in spans if span["kind"] == "consumer"
                    and span["service.name"] == "conversation_worker")
    assert consumer["service.name"] == "conversation_worker"
    assert consumer["parent_span_id"] == producer["span_id"]
    assert server_span in ancestors(consumer, index)

    def under_consumer(name: str) -> dict[str, Any]:
        matching = [span for span in spans if span["name"] == name and consumer in ancestors(span, index)]
        assert matching, f"no {name!r} span under the worker's span: {sorted({s['name'] for s in spans})}"
        return matching[0]
    route = under_consumer("route")
    assert route["attributes"]["gen_ai.agent.name"] and route["attributes"]["insightmesh.route.by"]
    permission = under_consumer("permission")
    assert permission["attributes"]["insightmesh.permission.allowed"] is True
    assert permission["attributes"]["insightmesh.permission.reason"]

    chats = [span for span in spans if span["attributes"].get("gen_ai.operation.name") == "chat"]
    assert chats, f"no LLM span in the trace: {sorted({s['name'] for s in spans})}"
    chat = chats[0]
    assert chat["kind"] == "client" and consumer in ancestors(chat, index)
    assert chat["attributes"]["gen_ai.provider.name"] == "openai"
    assert chat["attributes"]["gen_ai.request.model"] == "e2e-model"
    assert chat["attributes"]["gen_ai.usage.input_tokens"] > 0
    assert chat["attributes"]["gen_ai.usage.output_tokens"] > 0

    slack_calls = [span for span in spans if span["kind"] == "client" and span["name"].startswith("slack ")]
    assert slack_calls, f"no Slack call span in the trace: {sorted({s['name'] for s in spans})}"
    assert all(consumer in ancestors(span, index) for span in slack_calls)

    # Content capture is off: the DM's words and the system prompt are nowhere in what was exported
    # (every span received, this trace's or not), though the model saw both and the reply echoes the DM.
    request = next(r for r in llm.chat_requests() if any(DM_TEXT in json.dumps(m) for m in r.body["messages"]))
    system = next(m["content"] for m in request.body["messages"] if m["role"] == "system")
    assert isinstance(system, str) and len(system) > 40
    secrets = ["aurora-quokka-5531", DM_TEXT, system[:40], system[-40:]]
    leaked = [(span["name"], text) for span in receiver.spans() for text in strings_in(span)
              if any(secret in text for secret in secrets)]
    assert leaked == []
