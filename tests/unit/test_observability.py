"""Log redaction and correlation ids (insightmesh.observability)."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from insightmesh.observability import (
    MAX_CORRELATION_ID_LENGTH,
    REDACTED,
    RedactingFormatter,
    bind_correlation_id,
    correlation_id_from_http,
    correlation_id_from_job_event,
    correlation_id_from_sqs_record,
    correlation_message_attributes,
    get_logger,
    redact,
    redact_text,
)

SLACK_BOT_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
SLACK_USER_TOKEN = "xoxp-1234567890-0987654321-1122334455-abcdef0123456789"
SLACK_APP_TOKEN = "xapp-1-A0123456789-1234567890-abcdef"
BEARER_VALUE = "abcDEF123.ghiJKL456-mno_pqr"
OPENAI_KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz012345"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
GOOGLE_KEY = "AIzaSyD-abcdefghijklmnopqrstuvwxyz012345"
WEBHOOK = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"


class CapturedLog:
    """The JSON lines a powertools logger wrote, parsed."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def logger() -> Logger:
    # A fresh service name per test: powertools loggers of one name share a stdlib logger.
    return get_logger(f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def captured(logger: Logger) -> Iterator[CapturedLog]:
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    yield CapturedLog(stream)
    logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]


# -- the logger ---------------------------------------------------------------------------------


def test_get_logger_uses_the_redacting_formatter(logger: Logger) -> None:
    assert isinstance(logger.registered_handler.formatter, RedactingFormatter)
    assert get_logger(logger.service) is logger


def test_log_lines_are_json_with_the_service_name(logger: Logger, captured: CapturedLog) -> None:
    logger.info("hello world")

    (line,) = captured.lines
    assert line["message"] == "hello world"
    assert line["service"] == logger.service
    assert line["level"] == "INFO"


@pytest.mark.parametrize(
    "secret",
    [SLACK_BOT_TOKEN, SLACK_USER_TOKEN, SLACK_APP_TOKEN, OPENAI_KEY, AWS_KEY_ID, GOOGLE_KEY, WEBHOOK],
)
def test_secret_values_in_messages_are_masked(logger: Logger, captured: CapturedLog, secret: str) -> None:
    logger.info(f"calling the API with {secret} for the weekly report")

    assert secret not in captured.text
    (line,) = captured.lines
    assert line["message"] == f"calling the API with {REDACTED} for the weekly report"


def test_bearer_tokens_are_masked(logger: Logger, captured: CapturedLog) -> None:
    logger.info(f"outbound headers Authorization: Bearer {BEARER_VALUE}")
    logger.info(f"lower case bearer {BEARER_VALUE}")

    assert BEARER_VALUE not in captured.text
    first, second = captured.lines
    assert first["message"] == f"outbound headers Authorization: {REDACTED}"
    assert second["message"] == f"lower case {REDACTED}"


def test_secrets_in_format_arguments_are_masked(logger: Logger, captured: CapturedLog) -> None:
    logger.info("posting with %s to channel %s", SLACK_BOT_TOKEN, "C0123")

    assert SLACK_BOT_TOKEN not in captured.text
    assert captured.lines[0]["message"] == f"posting with {REDACTED} to channel C0123"


@pytest.mark.parametrize(
    "query",
    [
        "token=s3cr3tvalue",
        "api_key=s3cr3tvalue",
        "apikey=s3cr3tvalue",
        "api-key=s3cr3tvalue",
        "password=s3cr3tvalue",
        "secret=s3cr3tvalue",
        "access_token=s3cr3tvalue",
        "client_secret=s3cr3tvalue",
        "refresh_token=s3cr3tvalue",
        "TOKEN=s3cr3tvalue",
    ],
)
def test_key_value_secrets_in_urls_are_masked(logger: Logger, captured: CapturedLog, query: str) -> None:
    logger.info(f"GET https://api.example.com/v1/files?page=2&{query}&limit=50")

    assert "s3cr3tvalue" not in captured.text
    message = captured.lines[0]["message"]
    assert message.startswith("GET https://api.example.com/v1/files?page=2&")
    assert message.endswith("&limit=50")


def test_ordinary_key_value_pairs_are_kept(logger: Logger, captured: CapturedLog) -> None:
    logger.info("GET /api/agents?page=2&limit=50&tokenizer=cl100k")
    assert captured.lines[0]["message"] == "GET /api/agents?page=2&limit=50&tokenizer=cl100k"


def test_private_keys_are_masked(logger: Logger, captured: CapturedLog) -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabcdef\n-----END RSA PRIVATE KEY-----"
    logger.info(f"loaded key {pem} from disk")

    assert "MIIEpAIBAAKCAQEA" not in captured.text
    assert captured.lines[0]["message"] == f"loaded key {REDACTED} from disk"


@pytest.mark.parametrize(
    "key", ["password", "Password", "token", "access_token", "api_key", "apiKey", "Authorization", "cookie",
            "client_secret", "x-slack-signature", "private_key", "credentials"]
)
def test_values_under_sensitive_keys_are_masked(logger: Logger, captured: CapturedLog, key: str) -> None:
    logger.info("signing in", extra={key: "plain-looking-value", "user": "U123"})

    assert "plain-looking-value" not in captured.text
    (line,) = captured.lines
    assert line[key] == REDACTED
    assert line["user"] == "U123"


def test_sensitive_keys_are_masked_in_nested_structures(logger: Logger, captured: CapturedLog) -> None:
    logger.info(
        "request",
        extra={
            "request": {
                "headers": {"Authorization": "opaque-1", "Content-Type": "application/json"},
                "cookies": ["session=opaque-2"],
            },
            "attempts": [{"token": "opaque-3", "status": 200}],
        },
    )

    text = captured.text
    for leaked in ("opaque-1", "opaque-2", "opaque-3"):
        assert leaked not in text
    (line,) = captured.lines
    assert line["request"]["headers"] == {"Authorization": REDACTED, "Content-Type": "application/json"}
    assert line["request"]["cookies"] == REDACTED
    assert line["attempts"] == [{"token": REDACTED, "status": 200}]


def test_dict_messages_are_redacted(logger: Logger, captured: CapturedLog) -> None:
    logger.info({"event": "oauth", "password": "hunter2", "note": f"via {SLACK_BOT_TOKEN}"})

    assert "hunter2" not in captured.text
    assert SLACK_BOT_TOKEN not in captured.text
    assert captured.lines[0]["message"] == {"event": "oauth", "password": REDACTED, "note": f"via {REDACTED}"}


def test_email_addresses_keep_only_first_letter_and_domain(logger: Logger, captured: CapturedLog) -> None:
    logger.info("invited jane.doe+admin@example.com and Bob@corp.example.co.uk", extra={"who": "ann@x.io"})

    assert "jane.doe" not in captured.text
    assert "Bob@" not in captured.text
    (line,) = captured.lines
    assert line["message"] == "invited j***@example.com and B***@corp.example.co.uk"
    assert line["who"] == "a***@x.io"


def test_exception_messages_and_tracebacks_are_redacted(logger: Logger, captured: CapturedLog) -> None:
    try:
        raise ValueError(f"upstream rejected {OPENAI_KEY}")
    except ValueError:
        logger.exception("LLM call failed")

    assert OPENAI_KEY not in captured.text
    (line,) = captured.lines
    assert line["message"] == "LLM call failed"
    assert line["exception_name"] == "ValueError"
    assert f"ValueError: upstream rejected {REDACTED}" in line["exception"]


def test_non_json_objects_are_redacted_through_their_text(logger: Logger, captured: CapturedLog) -> None:
    class Request:
        def __str__(self) -> str:
            return f"POST https://slack.com/api/chat.postMessage with Bearer {BEARER_VALUE}"

    logger.info("sending", extra={"outbound": Request()})

    assert BEARER_VALUE not in captured.text
    assert captured.lines[0]["outbound"] == f"POST https://slack.com/api/chat.postMessage with {REDACTED}"


def test_normal_text_and_values_pass_through(logger: Logger, captured: CapturedLog) -> None:
    logger.info(
        "synced 42 documents from Google Drive in 1.5s",
        extra={"documents": 42, "duration": 1.5, "ok": True, "agent": "meddic", "missing": None},
    )

    (line,) = captured.lines
    assert line["message"] == "synced 42 documents from Google Drive in 1.5s"
    assert line["documents"] == 42
    assert line["duration"] == 1.5
    assert line["ok"] is True
    assert line["agent"] == "meddic"


# -- redact / redact_text directly --------------------------------------------------------------


def test_redact_keeps_empty_sensitive_values_visible() -> None:
    # An empty or missing secret is worth seeing in a log ("the token was not configured").
    assert redact({"token": "", "password": None}) == {"token": "", "password": None}


def test_redact_does_not_mutate_its_input() -> None:
    original = {"token": "abc", "nested": {"password": "p"}}
    redact(original)
    assert original == {"token": "abc", "nested": {"password": "p"}}


def test_redact_handles_tuples_and_non_string_keys() -> None:
    assert redact(("x", SLACK_BOT_TOKEN)) == ["x", REDACTED]
    assert redact({1: "one", "n": 2}) == {1: "one", "n": 2}


def test_redact_text_leaves_plain_text_alone() -> None:
    text = "The quarterly review is on Monday; ask in #sales (skipping sk-short)."
    assert redact_text(text) == text


# -- correlation ids ----------------------------------------------------------------------------


def _http_event(
    headers: dict[str, str] | None = None, request_id: str | None = "Ab1cDEFGhiJKLmn="
) -> dict[str, Any]:
    event: dict[str, Any] = {"version": "2.0", "headers": headers or {}, "requestContext": {}}
    if request_id is not None:
        event["requestContext"]["requestId"] = request_id
    return event


@pytest.mark.parametrize("header", ["X-Request-Id", "x-request-id", "X-REQUEST-ID", "x-Request-ID"])
def test_correlation_id_comes_from_x_request_id_in_any_case(header: str) -> None:
    assert correlation_id_from_http(_http_event({header: "req-123"})) == "req-123"


def test_correlation_id_falls_back_to_the_api_gateway_request_id() -> None:
    assert correlation_id_from_http(_http_event({"content-type": "text/plain"})) == "Ab1cDEFGhiJKLmn"


def test_an_x_request_id_with_nothing_usable_falls_back_to_the_request_id() -> None:
    assert correlation_id_from_http(_http_event({"x-request-id": "  <>{}  "})) == "Ab1cDEFGhiJKLmn"


def test_without_any_id_a_uuid_is_generated() -> None:
    event: dict[str, Any] = {"headers": None, "requestContext": None}

    first = correlation_id_from_http(event)
    second = correlation_id_from_http(event)

    assert uuid.UUID(first)
    assert first != second


def test_correlation_id_is_sanitised() -> None:
    dirty = ' abc-123_x.y:z\n{"level":"CRITICAL"} <script>'
    cleaned = correlation_id_from_http(_http_event({"X-Request-Id": dirty}))
    assert cleaned == "abc-123_x.y:zlevel:CRITICALscript"


def test_correlation_id_is_length_capped() -> None:
    cleaned = correlation_id_from_http(_http_event({"X-Request-Id": "a" * 1000}))
    assert cleaned == "a" * MAX_CORRELATION_ID_LENGTH


def test_every_log_line_after_binding_carries_the_correlation_id(
    logger: Logger, captured: CapturedLog
) -> None:
    logger.info("before binding")
    bind_correlation_id(logger, "corr-1")
    logger.info("first")
    logger.warning("second", extra={"n": 1})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("third")

    before, *after = captured.lines
    assert "correlation_id" not in before
    assert [line["message"] for line in after] == ["first", "second", "third"]
    assert all(line["correlation_id"] == "corr-1" for line in after)


def test_rebinding_replaces_the_correlation_id(logger: Logger, captured: CapturedLog) -> None:
    bind_correlation_id(logger, "invocation-1")
    logger.info("one")
    bind_correlation_id(logger, "invocation-2")
    logger.info("two")

    assert [line["correlation_id"] for line in captured.lines] == ["invocation-1", "invocation-2"]


def test_correlation_id_survives_an_sqs_round_trip() -> None:
    attributes = correlation_message_attributes("req-42")
    assert attributes == {"correlation_id": {"DataType": "String", "StringValue": "req-42"}}

    # What Lambda delivers for a message sent with those MessageAttributes.
    record = {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": "{}",
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": {
            name: {
                "stringValue": value["StringValue"],
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in attributes.items()
        },
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:conversation.fifo",
        "awsRegion": "us-east-1",
    }

    assert correlation_id_from_sqs_record(record) == "req-42"


def test_an_sqs_record_without_the_attribute_uses_its_message_id() -> None:
    record = {"messageId": "059f36b4-87a3-44ab-83d2-661975830a7d", "messageAttributes": {}}
    assert correlation_id_from_sqs_record(record) == "059f36b4-87a3-44ab-83d2-661975830a7d"


def test_an_sqs_attribute_is_sanitised() -> None:
    attribute = {"stringValue": "req 42\n", "dataType": "String"}
    record = {"messageId": "m-1", "messageAttributes": {"correlation_id": attribute}}
    assert correlation_id_from_sqs_record(record) == "req42"


def test_an_sqs_record_with_nothing_gets_a_uuid() -> None:
    assert uuid.UUID(correlation_id_from_sqs_record({}))


def test_job_event_carries_the_correlation_id() -> None:
    assert correlation_id_from_job_event({"correlation_id": "job-7", "id": "evt-1"}) == "job-7"


def test_a_scheduled_job_event_uses_the_eventbridge_event_id() -> None:
    event = {"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
             "source": "aws.scheduler", "detail": {}}
    assert correlation_id_from_job_event(event) == "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"


def test_a_job_event_with_nothing_gets_a_uuid() -> None:
    assert uuid.UUID(correlation_id_from_job_event({}))
