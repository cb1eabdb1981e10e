"""The conversations table (``CONVERSATIONS_TABLE``; template: ``ConversationsTable``).

One table, five kinds of item, addressed by key (no Scan) or, for feedback, by two sparse indexes:

* thread — pk ``thread#<team>#<channel>#<thread_ts>``, sk ``thread``: written by the worker
  (PutItem, bounded under :data:`MAX_ITEM_BYTES` as DynamoDB measures it, see :func:`item_size`);
  read by ingress (GetItem: has the bot replied here?) and, with its files, by the worker (one
  Query: pk = the thread, sk begins_with ``thread``).
* thread file — pk the thread's pk, sk ``thread#file#<file id>``: the text of one file shared in
  the thread, kept out of the thread item so that files never push it past 400 KB. Written once
  when the file is read, deleted when the thread's file budget drops it (one BatchWriteItem per
  turn for both); read with the thread item by the same Query.
* request — pk its thread's pk (or ``command#<id>``), sk ``request#<request id>``: the worker's
  conditional put (dedupe), then updates of its reply state; read by the worker (GetItem). The
  dead-letter consumer moves it to ``apologising`` then ``answered`` with conditional updates.
* dead letter — pk the request's pk, sk ``deadletter#<request id>`` (an unreadable message:
  pk ``deadletter#<SQS message id>``): one PutItem per dead-lettered message, with its reason.
* feedback — pk ``reply#<team>#<channel>#<reply ts>``, sk ``user#<user>``: one PutItem per vote,
  after a GetItem of the voter's earlier vote (``conversation.feedback``: counted once per agent),
  with what produced the answer (copied from the request item); the 👎 modal's reason is one
  UpdateItem. Listed by ``GET /api/feedback`` with one Query on the sparse indexes
  ``feedback-by-agent`` (agent, time) or ``feedback-by-time`` (one ``feedback`` partition, time).

Every item carries ``expires_at`` (TTL): threads and their files 30 days after their last write,
requests 7 days (longer than any Slack retry or SQS redelivery), dead letters 90 days, feedback
365 days.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Final

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from insightmesh.aws import model_meta

THREAD_SK = "thread"
THREAD_FILE_SK_PREFIX = "thread#file#"
DEAD_LETTER_SK_PREFIX = "deadletter#"
MAX_ITEM_BYTES: Final = 400 * 1024  # DynamoDB's item size limit


class CompactJSONAttribute(JSONAttribute):
    """JSON stored as UTF-8 text: pynamodb's JSONAttribute writes non-ASCII as ``\\uXXXX`` escapes
    (6 bytes a character, 12 outside the BMP), which made the thread item grow up to 6x."""

    def serialize(self, value: Any) -> str | None:
        if value is None:
            return None
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ThreadRecord(Model):
    Meta = model_meta("CONVERSATIONS_TABLE")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default=THREAD_SK)
    bot_replied = BooleanAttribute(default=False)
    sticky_agent = UnicodeAttribute(null=True)
    sticky_until = NumberAttribute(null=True)  # epoch seconds; agent mode ends after it
    sticky_by = UnicodeAttribute(null=True)  # the Slack user who started agent mode: only they end it
    history = CompactJSONAttribute(default=list)  # [{"role": ..., "content": ...}], bounded window
    summary = UnicodeAttribute(null=True)  # summary of the turns that left the window
    agent_state = CompactJSONAttribute(default=dict)  # {agent name: state}, e.g. meddic's notes
    # Files shared in the thread were kept here before ThreadFileRecord; read (and moved) only.
    files = JSONAttribute(null=True)
    # An AI app (assistant container) thread, and the channel its user was last looking at.
    assistant = BooleanAttribute(null=True)
    context_channel = UnicodeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute(null=True)


class ThreadFileRecord(Model):
    """The text of one file shared in a thread (see the module docstring)."""

    Meta = model_meta("CONVERSATIONS_TABLE")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    file_id = UnicodeAttribute()
    name = UnicodeAttribute()
    text = UnicodeAttribute()
    added_at = UTCDateTimeAttribute()
    expires_at = TTLAttribute(null=True)


class DeadLetterRecord(Model):
    """A conversation message that reached the DLQ: why, and what its requester was shown."""

    Meta = model_meta("CONVERSATIONS_TABLE")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    reason = UnicodeAttribute()
    reference = UnicodeAttribute()
    request_id = UnicodeAttribute(null=True)
    kind = UnicodeAttribute(null=True)
    request_status = UnicodeAttribute(null=True)  # the request's reply state when it died
    attempts = NumberAttribute(null=True)  # worker deliveries that claimed it
    receive_count = NumberAttribute(null=True)  # ApproximateReceiveCount of the DLQ message
    message_id = UnicodeAttribute(null=True)
    apology = UnicodeAttribute(null=True)  # edited | posted | ephemeral | response_url | none
    created_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute(null=True)


class RequestRecord(Model):
    """Reply state of one request: received → posting → placeholder → answered."""

    Meta = model_meta("CONVERSATIONS_TABLE")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    status = UnicodeAttribute(default="received")
    event_id = UnicodeAttribute(null=True)
    channel_id = UnicodeAttribute(null=True)
    placeholder_ts = UnicodeAttribute(null=True)
    reply_ts = UnicodeAttribute(null=True)
    agent = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute(null=True)
    answered_at = UTCDateTimeAttribute(null=True)
    # What produced the answer (conversation.provenance): copied into a vote's feedback item.
    provenance = CompactJSONAttribute(null=True)
    expires_at = TTLAttribute(null=True)


class FeedbackByAgent(GlobalSecondaryIndex["FeedbackRecord"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    """Sparse: only feedback items carry ``feedback_agent``; newest first by ``feedback_at``."""

    class Meta:
        index_name = "feedback-by-agent"
        projection = AllProjection()

    feedback_agent = UnicodeAttribute(hash_key=True)
    feedback_at = UnicodeAttribute(range_key=True)


class FeedbackByTime(GlobalSecondaryIndex["FeedbackRecord"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    """Sparse: every feedback item under one ``feedback_kind`` (``feedback``), by ``feedback_at``."""

    class Meta:
        index_name = "feedback-by-time"
        projection = AllProjection()

    feedback_kind = UnicodeAttribute(hash_key=True)
    feedback_at = UnicodeAttribute(range_key=True)


class FeedbackRecord(Model):
    Meta = model_meta("CONVERSATIONS_TABLE")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    vote = UnicodeAttribute()  # "up" | "down"
    request_id = UnicodeAttribute(null=True)
    agent = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute(null=True)
    # The indexes' keys (``GET /api/feedback``): agent ("-" if unknown), constant kind, ISO time.
    feedback_agent = UnicodeAttribute(null=True)
    feedback_kind = UnicodeAttribute(null=True)
    feedback_at = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)  # the 👎 modal: wrong, outdated, not_helpful, unsafe, other
    comment = UnicodeAttribute(null=True)  # the modal's optional text
    provenance = CompactJSONAttribute(null=True)  # what produced the answer (conversation.provenance)

    by_agent = FeedbackByAgent()
    by_time = FeedbackByTime()


def thread_pk(thread_key: str) -> str:
    return f"thread#{thread_key}"


def request_sk(request_id: str) -> str:
    return f"request#{request_id}"


def thread_file_sk(file_id: str) -> str:
    return f"{THREAD_FILE_SK_PREFIX}{file_id}"


def dead_letter_sk(request_id: str) -> str:
    return f"{DEAD_LETTER_SK_PREFIX}{request_id}"


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it against the 400 KB limit, from its serialized form
    (``{name: {"S": ...}}``, as ``Model.serialize()`` returns): attribute names and strings in
    UTF-8 bytes, numbers 1 byte per two significant digits + 1, booleans and nulls 1 byte, lists
    and maps 3 bytes + 1 byte per element + their elements (Amazon DynamoDB Developer Guide,
    "DynamoDB item sizes and formats")."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _number_size(value: str) -> int:
    digits = format(abs(Decimal(value)), "f").replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def _value_size(value: dict[str, Any]) -> int:
    (kind, content), = value.items()
    if kind == "S":
        return len(str(content).encode())
    if kind == "N":
        return _number_size(str(content))
    if kind == "B":
        return len(content) if isinstance(content, bytes | bytearray) else len(str(content).encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(entry).encode()) for entry in content)
    if kind == "NS":
        return sum(_number_size(str(entry)) for entry in content)
    if kind == "BS":
        return sum(len(entry) for entry in content)
    if kind == "L":
        return 3 + sum(1 + _value_size(entry) for entry in content)
    if kind == "M":
        return 3 + sum(1 + len(key.encode()) + _value_size(entry) for key, entry in content.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")
