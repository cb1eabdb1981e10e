"""A trace's flow across processes (issue 16), in-process against moto and the OTLP receiver
stand-in: slack_ingress's server span and SQS send span, the trace context in the message's
attributes, the worker's consumer span continuing it from the record Lambda (here the local
runtime's poller) hands over; the receiver decoding real OTLP/HTTP exports; and `insightmesh dev`
giving each function its OTLP endpoint and service name. The whole DM through `insightmesh dev`:
tests/e2e/test_tracing.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from insightmesh import tracing, tracing_messaging
from insightmesh_local.functions import FunctionSpec
from insightmesh_local.runtime import LocalRuntime
from insightmesh_local.slack_signing import sign
from insightmesh_local.sqs_poller import _record
from tests.integration.conftest import ROOT, load_handler
from tests.standins.otlp_server import OtlpReceiver
from tests.standins.otlp_server import start as start_receiver

SECRET = "insightmesh-local-signing-secret"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = start_receiver()
    yield server
    server.stop()


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver) -> Iterator[OtlpReceiver]:
    """Tracing on for this test, exporting gzip-compressed OTLP/HTTP to the receiver."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "trace-flow-test")
    tracing.reset_for_tests()
    yield receiver
    tracing.reset_for_tests()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    tracing.reset_for_tests()


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch, tables: dict[str, str]) -> str:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    url: str = boto3.client("sqs").create_queue(QueueName="conversations.fifo",
                                                Attributes={"FifoQueue": "true"})["QueueUrl"]
    monkeypatch.setenv("CONVERSATION_QUEUE_URL", url)
    return url


def dm_event() -> dict[str, Any]:
    """The sample DM event (events/slack_ingress), signed now."""
    sample: dict[str, Any] = json.loads((ROOT / "events/slack_ingress/dm_message.json").read_text())
    headers = sign(SECRET, sample["body"].encode())
    sample["headers"].update({"x-slack-request-timestamp": headers["X-Slack-Request-Timestamp"],
                              "x-slack-signature": headers["X-Slack-Signature"]})
    return sample


def received(queue_url: str) -> dict[str, Any]:
    """The queued message as Lambda's SQS event source hands it to the worker (the local poller's shape)."""
    [message] = boto3.client("sqs").receive_message(QueueUrl=queue_url, AttributeNames=["All"],
                                                    MessageAttributeNames=["All"])["Messages"]
    return _record(message, "arn:aws:sqs:us-east-1:123456789012:conversations.fifo", "us-east-1")


def test_the_worker_s_span_continues_the_trace_slack_ingress_started(traced: OtlpReceiver, queue: str) -> None:
    handler = load_handler(ROOT / "functions" / "slack_ingress" / "handler.py")
    sample = dm_event()
    assert handler.lambda_handler(sample, None)["statusCode"] == 200
    record = received(queue)
    with tracing_messaging.process_span(record):
        with tracing.span("route"):
            pass
    tracing.flush()

    spans = traced.spans()
    server = next(span for span in spans if span["kind"] == "server")
    producer = next(span for span in spans if span["kind"] == "producer")
    consumer = next(span for span in spans if span["kind"] == "consumer")
    route = next(span for span in spans if span["name"] == "route")
    assert {span["trace_id"] for span in spans} == {server["trace_id"]}  # one trace
    assert (server["name"], server["parent_span_id"]) == ("POST /slack/events", "")
    assert server["attributes"] == {
        "http.request.method": "POST", "url.path": "/slack/events", "url.scheme": "https",
        "http.route": "/slack/events", "http.response.status_code": 200, "slack.payload.type": "event_callback",
        "slack.event.type": "message", "slack.event.id": json.loads(sample["body"])["event_id"],
        "slack.team.id": json.loads(sample["body"])["team_id"]}
    assert producer["name"] == "send conversations.fifo" and producer["parent_span_id"] == server["span_id"]
    assert producer["attributes"]["messaging.message.id"] == record["messageId"]
    assert consumer["name"] == "process conversations.fifo" and consumer["parent_span_id"] == producer["span_id"]
    assert consumer["attributes"]["messaging.message.id"] == record["messageId"]
    assert route["parent_span_id"] == consumer["span_id"]
    assert {span["service.name"] for span in spans} == {"trace-flow-test"}
    # The correlation id travels as before, next to the trace context: 3 attributes of SQS's 10.
    assert set(record["messageAttributes"]) == {"correlation_id", "traceparent"}
    assert record["messageAttributes"]["traceparent"]["dataType"] == "String"
    assert record["messageAttributes"]["traceparent"]["stringValue"].split("-")[1] == server["trace_id"]


def test_tracing_off_the_message_carries_only_the_correlation_id(queue: str) -> None:
    tracing.reset_for_tests()
    assert not tracing.enabled()
    handler = load_handler(ROOT / "functions" / "slack_ingress" / "handler.py")
    assert handler.lambda_handler(dm_event(), None)["statusCode"] == 200
    record = received(queue)
    assert set(record["messageAttributes"]) == {"correlation_id"}
    with tracing_messaging.process_span(record) as span:
        assert span is tracing.NOOP_SPAN


def test_a_dead_letter_s_span_joins_the_trace_of_the_message_that_died(traced: OtlpReceiver) -> None:
    with tracing.span("POST /slack/events", kind="server"):
        carrier = tracing.inject()
    record = {"messageId": "m-1", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:conversations-dlq.fifo",
              "attributes": {"ApproximateReceiveCount": "4"},
              "messageAttributes": {key: {"stringValue": value, "dataType": "String"}
                                    for key, value in carrier.items()}}
    with tracing_messaging.process_span(record):
        pass
    tracing.flush()
    server, consumer = sorted(traced.spans(), key=lambda span: span["kind"] != "server")
    assert consumer["trace_id"] == server["trace_id"] and consumer["parent_span_id"] == server["span_id"]
    assert consumer["name"] == "process conversations-dlq.fifo"
    assert consumer["attributes"]["messaging.aws_sqs.receive_count"] == 4


def test_a_direct_invocation_continues_the_trace_from_its_payload(traced: OtlpReceiver) -> None:
    with tracing.span("start research", kind="producer"):
        payload = json.loads(json.dumps(tracing.inject({"run_id": "r-1"})))
    assert set(payload) == {"run_id", "traceparent"}
    with tracing.span("research run", kind="consumer", parent=tracing_messaging.carrier_from_event(payload)):
        pass
    tracing.flush()
    producer, consumer = sorted(traced.spans(), key=lambda span: span["kind"] != "producer")
    assert consumer["parent_span_id"] == producer["span_id"] and consumer["trace_id"] == producer["trace_id"]


def test_the_research_launcher_puts_the_trace_context_in_the_durable_invocation_s_payload(
        traced: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    from insightmesh import aws
    from insightmesh.research import launcher

    bodies: list[dict[str, Any]] = []

    def lambda_api(environ: Any, start_response: Any) -> Any:  # Lambda's Invoke, answering an async start
        bodies.append(json.loads(Request(environ).get_data()))
        return Response(b"", status=202)(environ, start_response)

    server = make_server("127.0.0.1", 0, lambda_api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv(launcher.FUNCTION_ENV, "insightmesh-ResearchFunction:live")
    monkeypatch.setattr(aws, "_clients", {})
    try:
        launcher.start_execution("run-7")
    finally:
        server.shutdown()
    tracing.flush()
    [start] = traced.spans()
    [payload] = bodies
    assert (start["name"], start["kind"], start["attributes"]) == (
        "start research", "producer", {"insightmesh.research.run_id": "run-7"})
    assert payload["run_id"] == "run-7"
    assert tracing_messaging.carrier_from_event(payload)["traceparent"].split("-")[1:3] == [
        start["trace_id"], start["span_id"]]


def test_the_receiver_answers_otlp_and_refuses_what_is_not_protobuf(receiver: OtlpReceiver) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    with httpx.Client(base_url=receiver.url) as http:
        refused = http.post("/v1/traces", json={"resourceSpans": []})
        garbage = http.post("/v1/traces", content=b"\xff\xff\xff", headers={"Content-Type": "application/x-protobuf"})
        empty = http.post("/v1/traces", content=b"", headers={"Content-Type": "application/x-protobuf"})
        listed = http.get("/spans").json()
    assert refused.status_code == 415 and garbage.status_code == 400
    assert empty.status_code == 200 and empty.headers["Content-Type"] == "application/x-protobuf"
    ExportTraceServiceResponse().ParseFromString(empty.content)
    assert listed == {"spans": [], "requests": 1}


def spec(folder: str, tmp_path: Path) -> FunctionSpec:
    code_dir = tmp_path / folder
    code_dir.mkdir()
    return FunctionSpec(logical_id=folder.title().replace("_", "") + "Function", name=f"dev-{folder}",
                        code_dir=code_dir, handler="handler.lambda_handler", timeout=3, memory=128,
                        environment={"AWS_REGION": "us-east-1"}, events={})


def test_insightmesh_dev_gives_each_function_the_endpoint_and_its_own_service_name(tmp_path: Path) -> None:
    specs = [spec("slack_ingress", tmp_path), spec("conversation_worker", tmp_path)]
    runtime = LocalRuntime(otlp_endpoint="http://127.0.0.1:4318", log=lambda _line: None,
                           environ={"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1",
                                    "OTEL_SERVICE_NAME": "shell", "SLACK_BOT_TOKEN": "xoxb-not-passed"})
    runtime.trace_functions(specs)
    assert [s.environment for s in specs] == [
        {"AWS_REGION": "us-east-1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
         "OTEL_SERVICE_NAME": name, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
        for name in ("slack_ingress", "conversation_worker")]


def test_without_an_endpoint_the_functions_do_not_trace(tmp_path: Path) -> None:
    specs = [spec("slack_ingress", tmp_path)]
    LocalRuntime(log=lambda _line: None, environ={"OTEL_TRACES_SAMPLER": "always_on"}).trace_functions(specs)
    assert specs[0].environment == {"AWS_REGION": "us-east-1"}
    from_shell = [spec("health", tmp_path)]
    LocalRuntime(log=lambda _line: None, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
                 ).trace_functions(from_shell)
    assert from_shell[0].environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert from_shell[0].environment["OTEL_SERVICE_NAME"] == "health"
