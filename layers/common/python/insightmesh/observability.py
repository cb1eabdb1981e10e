"""Logging, metrics, tracing, correlation ids and redaction for every function.

* ``get_logger()`` returns a powertools ``Logger`` whose formatter redacts secrets (see ``redact``)
  and whose every line carries ``correlation_id`` once ``bind_correlation_id`` has run, and — when
  tracing is on (``insightmesh.tracing``) and a sampled span is active — ``trace_id`` and
  ``span_id`` next to it, so a log line leads to its trace. Off, that costs one check per line.
* The correlation id comes from the ``X-Request-Id`` header or the API Gateway request id, travels
  through SQS as the message attribute ``correlation_id`` and through job invocations as the
  event field ``correlation_id``.
* ``get_tracer()`` returns a powertools ``Tracer`` (the ``tracer`` extra); it is created on first
  use so that functions which never trace do not pay for importing the X-Ray SDK at cold start.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, TypedDict

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from insightmesh import tracing

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

REDACTED: Final = "[REDACTED]"
CORRELATION_ATTRIBUTE: Final = "correlation_id"
MAX_CORRELATION_ID_LENGTH: Final = 128

# Keys whose values are secret whatever they look like.
_SENSITIVE_KEY = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|authorization|cookie|signature|credential|private[_-]?key)",
    re.IGNORECASE,
)
# Values that are secret wherever they appear inside a string.
_SENSITIVE_VALUE_PATTERNS: Final = (
    re.compile(r"\bxox[abposer]-[A-Za-z0-9-]{8,}"),  # Slack bot/user/app tokens
    re.compile(r"\bxapp-[A-Za-z0-9-]{8,}"),  # Slack app-level tokens
    re.compile(r"https://hooks\.slack\.com/[^\s\"']+"),  # Slack incoming webhooks
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),  # Authorization: Bearer ...
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),  # OpenAI/Anthropic style API keys
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"),  # Google API keys
    # key=value in URLs and forms, prefixed names included (access_token=, client_secret=, ...)
    re.compile(r"(?i)\b[\w-]*?(api[_-]?key|secret|token|password)=[^\s&\"']+"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
)
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")


def redact_text(text: str) -> str:
    """Mask tokens, keys and secrets; keep only the first letter and domain of an e-mail address."""
    for pattern in _SENSITIVE_VALUE_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return _EMAIL.sub(r"\1***@\2", text)


def redact(value: Any, *, _depth: int = 0) -> Any:
    """Return ``value`` with secrets masked, recursing through mappings and sequences."""
    if _depth > 12:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and _SENSITIVE_KEY.search(key) and item not in (None, "")
            else redact(item, _depth=_depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, _depth=_depth + 1) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else would be serialised with str() (e.g. the exception object powertools puts in
    # ``stack_trace.value``): redact that text rather than let it bypass redaction.
    return redact_text(str(value))


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter with every field passed through ``redact`` before serialising,
    and the active span's ``trace_id``/``span_id`` after ``correlation_id`` when tracing is on."""

    def serialize(self, log: Any) -> str:
        fields = dict(log)
        ids = tracing.current_trace_ids() if tracing.enabled() else None
        if ids is not None:
            fields = with_trace_ids(fields, *ids)
        return super().serialize(log=redact(fields))


def with_trace_ids(fields: dict[str, Any], trace_id: str, span_id: str) -> dict[str, Any]:
    """``fields`` with ``trace_id`` and ``span_id`` placed right after ``correlation_id`` (or last)."""
    if CORRELATION_ATTRIBUTE not in fields:
        return {**fields, "trace_id": trace_id, "span_id": span_id}
    placed: dict[str, Any] = {}
    for key, value in fields.items():
        placed[key] = value
        if key == CORRELATION_ATTRIBUTE:
            placed["trace_id"], placed["span_id"] = trace_id, span_id
    return placed


@lru_cache(maxsize=8)
def get_logger(service: str | None = None) -> Logger:
    return Logger(service=service, logger_formatter=RedactingFormatter(), utc=True)


@lru_cache(maxsize=8)
def get_metrics(namespace: str = "InsightMesh", service: str | None = None) -> Metrics:
    return Metrics(namespace=namespace, service=service)


@lru_cache(maxsize=1)
def get_tracer() -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer()


def _clean_correlation_id(value: str | None) -> str | None:
    if not value:
        return None
    cleaned = "".join(ch for ch in value.strip() if ch.isalnum() or ch in "-_.:")
    return cleaned[:MAX_CORRELATION_ID_LENGTH] or None


def correlation_id_from_http(event: Mapping[str, Any]) -> str:
    """X-Request-Id (any case) first, then the API Gateway request id, else a new uuid."""
    headers = event.get("headers") or {}
    for name, value in headers.items():
        if name.lower() == "x-request-id":
            cleaned = _clean_correlation_id(value)
            if cleaned:
                return cleaned
    request_context = event.get("requestContext") or {}
    return _clean_correlation_id(request_context.get("requestId")) or str(uuid.uuid4())


class SqsStringAttribute(TypedDict):
    DataType: str
    StringValue: str


def correlation_message_attributes(correlation_id: str) -> dict[str, SqsStringAttribute]:
    """MessageAttributes to pass to ``sqs.send_message`` so the consumer logs the same id."""
    return {CORRELATION_ATTRIBUTE: {"DataType": "String", "StringValue": correlation_id}}


def correlation_id_from_sqs_record(record: Mapping[str, Any]) -> str:
    attributes = record.get("messageAttributes") or {}
    attribute = attributes.get(CORRELATION_ATTRIBUTE) or {}
    return _clean_correlation_id(attribute.get("stringValue")) or str(
        record.get("messageId") or uuid.uuid4()
    )


def correlation_id_from_job_event(event: Mapping[str, Any]) -> str:
    """Job invocations carry ``correlation_id``; scheduled ones get the EventBridge event id."""
    return (
        _clean_correlation_id(event.get(CORRELATION_ATTRIBUTE))
        or _clean_correlation_id(event.get("id"))
        or str(uuid.uuid4())
    )


def bind_correlation_id(logger: Logger, correlation_id: str) -> None:
    """Make ``correlation_id`` appear on every following log line of this invocation."""
    logger.set_correlation_id(correlation_id)
