"""Reply state per request and thread state, in the conversations table (moto) —
insightmesh.conversation.replies and insightmesh.conversation.threads."""

from __future__ import annotations

import os
import time
from types import ModuleType
from typing import Any

import boto3
import pytest

from insightmesh.conversation import replies as replies_module
from insightmesh.conversation import threads as threads_module
from insightmesh.conversation.requests import ConversationRequest, RequestKind, message_request_id, thread_key
from tests.integration.conftest import items as table_items

TEAM = "T0TEAM0001"
CHANNEL = "C0CHAN0001"
THREAD_TS = "1700000000.000100"
DAY = 24 * 60 * 60


@pytest.fixture
def replies(tables: dict[str, str]) -> ModuleType:
    return replies_module


@pytest.fixture
def threads(tables: dict[str, str]) -> ModuleType:
    return threads_module


def message(ts: str = "1700000005.000200", thread_ts: str = THREAD_TS) -> ConversationRequest:
    return ConversationRequest(
        kind=RequestKind.MESSAGE, request_id=message_request_id(TEAM, CHANNEL, ts), event_id="Ev0001",
        team_id=TEAM, channel_id=CHANNEL, channel_type="channel", user_id="U0USER0001", text="hi",
        ts=ts, thread_ts=thread_ts,
    )


def command() -> ConversationRequest:
    return ConversationRequest(kind=RequestKind.COMMAND, request_id="cmd:123.456.abc", team_id=TEAM,
                               channel_id=CHANNEL, user_id="U0USER0001", text="help")


def items() -> list[dict[str, Any]]:
    return table_items("CONVERSATIONS_TABLE")


def item(pk: str, sk: str) -> dict[str, Any]:
    found: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=os.environ["CONVERSATIONS_TABLE"], Key={"pk": {"S": pk}, "sk": {"S": sk}},
        ConsistentRead=True)["Item"]
    return found


KEY = thread_key(TEAM, CHANNEL, THREAD_TS)
THREAD_PK = f"thread#{KEY}"


# -- replies: claim and status ------------------------------------------------------------------------
def test_the_first_claim_creates_the_request_item(replies: ModuleType) -> None:
    request = message()

    claim = replies.claim(request)

    assert claim.first is True
    assert claim.record.status == replies.Status.RECEIVED
    assert claim.record.attempts == 1
    stored = item(THREAD_PK, f"request#{request.request_id}")
    assert stored["status"] == {"S": "received"}
    assert stored["event_id"] == {"S": "Ev0001"}
    assert stored["channel_id"] == {"S": CHANNEL}


def test_a_second_claim_of_the_same_request_is_not_first_and_counts_the_attempt(replies: ModuleType) -> None:
    request = message()
    first = replies.claim(request)
    replies.set_posting(first.record)

    second = replies.claim(request)

    assert second.first is False
    assert second.record.attempts == 2
    assert second.record.status == replies.Status.POSTING
    assert item(THREAD_PK, f"request#{request.request_id}")["attempts"] == {"N": "2"}
    assert item(THREAD_PK, f"request#{request.request_id}")["status"] == {"S": "posting"}
    assert replies.claim(request).record.attempts == 3


def test_the_app_mention_and_message_copies_claim_one_request(replies: ModuleType) -> None:
    mention = message()
    copy = mention.model_copy(update={"event_id": "Ev0002"})

    assert replies.claim(mention).first is True
    assert replies.claim(copy).first is False
    assert len(items()) == 1


def test_different_requests_in_one_thread_are_claimed_separately(replies: ModuleType) -> None:
    assert replies.claim(message("1700000005.000200")).first is True
    assert replies.claim(message("1700000006.000300")).first is True
    assert len(items()) == 2


def test_a_command_without_a_thread_is_claimed_under_its_own_key(replies: ModuleType) -> None:
    request = command()
    assert request.thread_key is None

    assert replies.claim(request).first is True
    assert replies.claim(request).first is False
    assert item("command#cmd:123.456.abc", "request#cmd:123.456.abc")["attempts"] == {"N": "2"}


def test_status_moves_from_posting_to_placeholder_to_answered(replies: ModuleType) -> None:
    request = message()
    sk = f"request#{request.request_id}"
    record = replies.claim(request).record

    replies.set_posting(record)
    assert item(THREAD_PK, sk)["status"] == {"S": "posting"}

    replies.set_placeholder(record, "1700000010.000400")
    stored = item(THREAD_PK, sk)
    assert stored["status"] == {"S": "placeholder"}
    assert stored["placeholder_ts"] == {"S": "1700000010.000400"}

    replies.set_answered(record, "1700000010.000400", "meddic")
    stored = item(THREAD_PK, sk)
    assert stored["status"] == {"S": "answered"}
    assert stored["reply_ts"] == {"S": "1700000010.000400"}
    assert stored["agent"] == {"S": "meddic"}
    assert "answered_at" in stored

    redelivered = replies.claim(request)
    assert redelivered.first is False
    assert redelivered.record.status == replies.Status.ANSWERED
    assert redelivered.record.placeholder_ts == "1700000010.000400"


def test_answered_without_reply_ts_or_agent_records_only_the_status(replies: ModuleType) -> None:
    request = message()
    record = replies.claim(request).record

    replies.set_answered(record, None, None)

    stored = item(THREAD_PK, f"request#{request.request_id}")
    assert stored["status"] == {"S": "answered"}
    assert "reply_ts" not in stored
    assert "agent" not in stored


def test_request_items_expire_after_seven_days(replies: ModuleType) -> None:
    before = int(time.time())
    replies.claim(message())
    replies.claim(command())

    for stored in items():
        expires = int(stored["expires_at"]["N"])
        assert before + 7 * DAY - 5 <= expires <= int(time.time()) + 7 * DAY + 5


# -- threads ------------------------------------------------------------------------------------------
def test_bot_replied_in_is_false_until_marked(threads: ModuleType) -> None:
    assert threads.bot_replied_in(KEY) is False

    threads.mark_bot_replied(KEY)

    assert threads.bot_replied_in(KEY) is True
    assert threads.bot_replied_in(thread_key(TEAM, CHANNEL, "1700000099.000100")) is False


def test_mark_bot_replied_keeps_the_rest_of_the_thread(threads: ModuleType) -> None:
    threads.save_thread(threads.ThreadState(key=KEY, history=[{"role": "user", "content": "hi"}], summary="s"))

    threads.mark_bot_replied(KEY)

    state = threads.load_thread(KEY)
    assert state.bot_replied is True
    assert state.history == [{"role": "user", "content": "hi"}]
    assert state.summary == "s"


def test_a_missing_thread_loads_empty(threads: ModuleType) -> None:
    state = threads.load_thread(KEY)

    assert state.key == KEY
    assert state.exists is False
    assert state.bot_replied is False
    assert state.sticky_agent is None
    assert state.history == []
    assert state.summary is None
    assert state.agent_state == {}


def test_save_and_load_round_trip_the_whole_thread(threads: ModuleType) -> None:
    history = [{"role": "user", "content": "meddic my notes"}, {"role": "assistant", "content": "Got it — 2/8"}]
    agent_state = {"meddic": {"notes": ["Their pain is manual invoicing."], "known": {"identify_pain": "pain"},
                              "asked": "economic_buyer"}}
    threads.save_thread(threads.ThreadState(key=KEY, bot_replied=True, sticky_agent="meddic", history=history,
                                            summary="They discussed Acme.", agent_state=agent_state))

    state = threads.load_thread(KEY)

    assert state.exists is True
    assert state.bot_replied is True
    assert state.sticky_agent == "meddic"
    assert state.active_sticky_agent() == "meddic"
    assert state.history == history
    assert state.summary == "They discussed Acme."
    assert state.agent_state == agent_state


def test_saving_again_replaces_the_state(threads: ModuleType) -> None:
    threads.save_thread(threads.ThreadState(key=KEY, sticky_agent="meddic", summary="old",
                                            agent_state={"meddic": {"notes": ["x"]}}))

    threads.save_thread(threads.ThreadState(key=KEY, bot_replied=True))

    state = threads.load_thread(KEY)
    assert state.sticky_agent is None
    assert state.summary is None
    assert state.agent_state == {}
    assert "sticky_until" not in item(THREAD_PK, "thread")


def test_a_sticky_agent_lasts_four_hours_from_the_last_save(threads: ModuleType) -> None:
    before = int(time.time())
    threads.save_thread(threads.ThreadState(key=KEY, sticky_agent="meddic"))

    until = int(item(THREAD_PK, "thread")["sticky_until"]["N"])

    assert before + threads.STICKY_SECONDS <= until <= int(time.time()) + threads.STICKY_SECONDS


def test_an_expired_sticky_agent_is_not_loaded(threads: ModuleType) -> None:
    threads.save_thread(threads.ThreadState(key=KEY, sticky_agent="meddic", summary="kept"))
    boto3.client("dynamodb").update_item(
        TableName=os.environ["CONVERSATIONS_TABLE"], Key={"pk": {"S": THREAD_PK}, "sk": {"S": "thread"}},
        UpdateExpression="SET sticky_until = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )

    state = threads.load_thread(KEY)

    assert state.sticky_agent is None
    assert state.summary == "kept"


def test_clear_sticky_agent_leaves_agent_mode_and_keeps_memory(threads: ModuleType) -> None:
    threads.save_thread(threads.ThreadState(key=KEY, bot_replied=True, sticky_agent="meddic", summary="kept",
                                            history=[{"role": "user", "content": "hi"}]))

    threads.clear_sticky_agent(KEY)

    state = threads.load_thread(KEY)
    assert state.sticky_agent is None
    assert state.bot_replied is True
    assert state.summary == "kept"
    assert state.history == [{"role": "user", "content": "hi"}]
    stored = item(THREAD_PK, "thread")
    assert "sticky_agent" not in stored and "sticky_until" not in stored


def test_thread_items_expire_thirty_days_after_the_last_write(threads: ModuleType) -> None:
    other = thread_key(TEAM, CHANNEL, "1700000099.000100")
    before = int(time.time())

    threads.save_thread(threads.ThreadState(key=KEY, history=[{"role": "user", "content": "hi"}]))
    threads.mark_bot_replied(other)

    stored = items()
    assert {entry["pk"]["S"] for entry in stored} == {THREAD_PK, f"thread#{other}"}
    for entry in stored:
        expires = int(entry["expires_at"]["N"])
        assert before + 30 * DAY - 5 <= expires <= int(time.time()) + 30 * DAY + 5


def test_every_item_of_a_conversation_carries_a_ttl(replies: ModuleType, threads: ModuleType) -> None:
    request = message()
    record = replies.claim(request).record
    replies.set_posting(record)
    threads.mark_bot_replied(KEY)
    replies.set_placeholder(record, "1700000010.000400")
    threads.save_thread(threads.ThreadState(key=KEY, bot_replied=True, sticky_agent="meddic"))
    threads.clear_sticky_agent(KEY)
    replies.set_answered(record, "1700000010.000400", "assistant")

    stored = items()
    assert len(stored) == 2
    assert all("expires_at" in entry for entry in stored)
