"""Reply state per request, so that each request gets exactly one final reply.

``claim`` is the dedupe: a conditional put of the request item (TTL 7 days) on its request id.
A redelivered request finds its item: ``answered`` → nothing is posted; ``placeholder`` → the
recorded placeholder is updated rather than a new message posted; ``posting`` (a crash between
posting and recording) → the placeholder is found in the thread by its message metadata;
``streaming`` → the answer was being streamed into the message ``reply_ts`` (conversation.streaming
finishes it there rather than starting a second one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pynamodb.expressions.update import Action

from insightmesh.aws import put_if_absent
from insightmesh.conversation.models import RequestRecord, request_sk, thread_pk
from insightmesh.conversation.requests import ConversationRequest

REQUEST_TTL: Final = timedelta(days=7)


class Status:
    RECEIVED = "received"
    POSTING = "posting"
    PLACEHOLDER = "placeholder"
    STREAMING = "streaming"  # the answer is being streamed: reply_ts is the stream's message once known
    ANSWERED = "answered"


@dataclass
class Claim:
    record: RequestRecord
    first: bool  # this delivery created the record


def request_pk(request: ConversationRequest) -> str:
    return thread_pk(request.thread_key) if request.thread_key else f"{request.kind.value}#{request.request_id}"


def claim(request: ConversationRequest) -> Claim:
    now = datetime.now(UTC)
    record = RequestRecord(
        request_pk(request),
        request_sk(request.request_id),
        status=Status.RECEIVED,
        event_id=request.event_id,
        channel_id=request.channel_id,
        attempts=1,
        created_at=now,
        expires_at=now + REQUEST_TTL,
    )
    if put_if_absent(record, RequestRecord.pk.does_not_exist()):
        return Claim(record, first=True)
    existing = RequestRecord.get(request_pk(request), request_sk(request.request_id), consistent_read=True)
    existing.update(actions=[RequestRecord.attempts.add(1)])
    return Claim(existing, first=False)


def set_posting(record: RequestRecord) -> None:
    record.update(actions=[RequestRecord.status.set(Status.POSTING)])


def set_placeholder(record: RequestRecord, ts: str) -> None:
    record.update(actions=[RequestRecord.status.set(Status.PLACEHOLDER), RequestRecord.placeholder_ts.set(ts)])


def set_streaming(record: RequestRecord, stream_ts: str | None) -> None:
    """The answer is being streamed (conversation.streaming): before chat.startStream, then with its ts."""
    actions: list[Action] = [RequestRecord.status.set(Status.STREAMING)]
    if stream_ts:
        actions.append(RequestRecord.reply_ts.set(stream_ts))
    record.update(actions=actions)


def set_answered(record: RequestRecord, reply_ts: str | None, agent: str | None,
                 provenance: Mapping[str, Any] | None = None) -> None:
    """``provenance``: what produced the answer (conversation.provenance), in the same UpdateItem."""
    actions: list[Action] = [RequestRecord.status.set(Status.ANSWERED),
                             RequestRecord.answered_at.set(datetime.now(UTC))]
    if reply_ts:
        actions.append(RequestRecord.reply_ts.set(reply_ts))
    if agent:
        actions.append(RequestRecord.agent.set(agent))
    if provenance:
        actions.append(RequestRecord.provenance.set(dict(provenance)))
    record.update(actions=actions)
