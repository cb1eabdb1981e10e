"""The conversations table (``CONVERSATIONS_TABLE``; template: ``ConversationsTable``).

One table, three kinds of item, all addressed by key (no Scan, no index):

* thread — pk ``thread#<team>#<channel>#<thread_ts>``, sk ``thread``: written by the worker;
  read by ingress (GetItem: has the bot replied here?) and by the worker (GetItem).
* request — pk its thread's pk (or ``command#<id>``), sk ``request#<request id>``: the worker's
  conditional put (dedupe), then updates of its reply state; read by the worker (GetItem).
* feedback — pk ``reply#<team>#<channel>#<reply ts>``, sk ``user#<user>``: one PutItem per vote.

Every item carries ``expires_at`` (TTL): threads 30 days after their last message, requests
7 days (longer than any Slack retry or SQS redelivery), feedback 365 days.
"""

from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.models import Model

from insightmesh.aws import model_meta

THREAD_SK = "thread"


class ThreadRecord(Model):
    Meta = model_meta("CONVERSATIONS_TABLE")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default=THREAD_SK)
    bot_replied = BooleanAttribute(default=False)
    sticky_agent = UnicodeAttribute(null=True)
    sticky_until = NumberAttribute(null=True)  # epoch seconds; agent mode ends after it
    history = JSONAttribute(default=list)  # [{"role": ..., "content": ...}], bounded window
    summary = UnicodeAttribute(null=True)  # summary of the turns that left the window
    agent_state = JSONAttribute(default=dict)  # {agent name: state}, e.g. meddic's notes
    files = JSONAttribute(default=list)  # [{"id", "name", "text"}]: files shared in the thread, as text
    updated_at = UTCDateTimeAttribute(null=True)
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
    expires_at = TTLAttribute(null=True)


class FeedbackRecord(Model):
    Meta = model_meta("CONVERSATIONS_TABLE")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    vote = UnicodeAttribute()  # "up" | "down"
    request_id = UnicodeAttribute(null=True)
    agent = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute(null=True)


def thread_pk(thread_key: str) -> str:
    return f"thread#{thread_key}"


def request_sk(request_id: str) -> str:
    return f"request#{request_id}"
