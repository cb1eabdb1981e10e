"""The worker's streamed reply (conversation.streaming) against the Slack sandbox and moto tables:
one message that grows with chat.startStream/appendStream and ends with the final formatting,
the chat.update fallback where Slack does not stream, and exactly one reply after a crash."""

from __future__ import annotations

from typing import Any

import pytest

from insightmesh.conversation import replies
from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.conversation.streaming import STREAM_INTERVAL, UPDATE_INTERVAL, ReplyStream
from insightmesh.slack import thread_reply
from insightmesh_local.slack_sandbox import SlackSandbox

TEAM, CHANNEL, USER = "T0SANDBOX", "C0STREAM", "U0ASKER"
ANSWER = "Streaming **works**: here is a [link](https://example.com) and `some code` too. " * 6
FINAL = "Streaming *works*, final form.\n\n*Sources*\n• <https://example.com|Example>"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def request(*, thread_ts: str | None, channel: str = CHANNEL, request_id: str = "msg:T:C:1") -> ConversationRequest:
    return ConversationRequest(kind=RequestKind.MESSAGE, request_id=request_id, team_id=TEAM, channel_id=channel,
                               channel_type="channel", user_id=USER, text="question", ts=thread_ts,
                               thread_ts=thread_ts)


def deliver(slack: SlackSandbox, req: ConversationRequest, pieces: list[str], *, clock: Clock,
            finish: bool = True) -> ReplyStream:
    """One delivery of the worker: claim, placeholder (recorded or posted), the streamed answer."""
    claim = replies.claim(req)
    placeholder = claim.record.placeholder_ts
    if not placeholder:
        _channel, placeholder = thread_reply.post_placeholder(req.channel_id, req.thread_ts, req.request_id)
        replies.set_placeholder(claim.record, placeholder)
    stream = ReplyStream(req, claim.record, req.channel_id, str(placeholder), clock=clock)
    for piece in pieces:
        clock.now += 0.1
        stream(piece)
    if finish:
        stream.finish(FINAL, agent_mode=None)
        replies.set_answered(claim.record, stream.reply_ts, "assistant")
    return stream


def words(text: str) -> list[str]:
    return [word + " " for word in text.split(" ")]


def bot_messages(slack: SlackSandbox, thread_ts: str, channel: str = CHANNEL) -> list[dict[str, Any]]:
    return [m for m in slack.messages(channel, thread_ts) if m["is_bot"] and not m["deleted"]]


@pytest.fixture
def parent(slack: SlackSandbox, tables: dict[str, str]) -> str:
    slack.set_channel(CHANNEL, [USER])
    return str(slack.add_user_message(channel=CHANNEL, user=USER, text="question")["ts"])


def test_a_thread_reply_streams_into_one_message_that_ends_in_the_final_formatting(
        slack: SlackSandbox, parent: str) -> None:
    stream = deliver(slack, request(thread_ts=parent), words(ANSWER), clock=Clock())
    [message] = bot_messages(slack, parent)
    assert message["ts"] == stream.reply_ts and message["source"] == "chat.startStream"
    assert message["text"] == FINAL and not message["streaming"]
    assert message["metadata"]["event_payload"] == {"request_id": "msg:T:C:1", "status": "answered"}
    assert any(block["type"] == "actions" for block in message["blocks"])  # the feedback buttons
    [start] = slack.calls("chat.startStream")
    assert start["args"]["recipient_user_id"] == USER and start["args"]["recipient_team_id"] == TEAM
    appends = slack.calls("chat.appendStream")
    assert appends and len(slack.calls("chat.stopStream")) == 1
    streamed = [edit["text"] for edit in message["edits"] if edit["source"] == "chat.appendStream"]
    assert ANSWER.startswith(streamed[-1]) and len(streamed) == len(appends)
    # paced: 90 words over 9 s at most one append per STREAM_INTERVAL
    assert len(appends) <= 9 / STREAM_INTERVAL + 1
    assert replies.claim(request(thread_ts=parent)).record.reply_ts == stream.reply_ts


def test_without_a_thread_the_placeholder_is_edited_about_once_a_second(slack: SlackSandbox, parent: str) -> None:
    stream = deliver(slack, request(thread_ts=None, request_id="cmd:1"), words(ANSWER), clock=Clock())
    assert not slack.calls("chat.startStream")
    updates = slack.calls("chat.update")
    assert 2 <= len(updates) <= 9 / UPDATE_INTERVAL + 2  # the streamed edits, then the final answer
    [message] = [m for m in slack.messages(CHANNEL) if m["ts"] == stream.reply_ts]
    assert message["text"] == FINAL


def test_a_redelivery_after_a_crash_mid_stream_finishes_the_same_message(slack: SlackSandbox, parent: str) -> None:
    req = request(thread_ts=parent)
    first = deliver(slack, req, words(ANSWER)[:40], clock=Clock(), finish=False)  # the worker dies here
    assert first.ts and bot_messages(slack, parent)[0]["streaming"]
    second = deliver(slack, req, words(ANSWER), clock=Clock())
    assert second.reply_ts == first.ts
    [message] = bot_messages(slack, parent)
    assert message["ts"] == first.ts and message["text"] == FINAL
    assert len(slack.calls("chat.startStream")) == 1


def test_a_crash_before_the_stream_ts_was_recorded_finds_the_stream_in_the_thread(
        slack: SlackSandbox, parent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    req = request(thread_ts=parent)
    recorded: list[str | None] = []
    original = replies.set_streaming

    def crash_after_start(record: Any, ts: str | None) -> None:
        if ts:
            recorded.append(ts)
            raise SystemExit("worker killed between Slack's answer and the record")
        original(record, ts)

    monkeypatch.setattr(replies, "set_streaming", crash_after_start)
    with pytest.raises(SystemExit):
        deliver(slack, req, words(ANSWER), clock=Clock(), finish=False)
    monkeypatch.setattr(replies, "set_streaming", original)
    second = deliver(slack, req, words(ANSWER), clock=Clock())
    assert second.reply_ts == recorded[0]
    [message] = bot_messages(slack, parent)
    assert message["text"] == FINAL and len(slack.calls("chat.startStream")) == 1


def test_the_sandbox_refuses_what_slack_refuses(slack: SlackSandbox, parent: str) -> None:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(token="xoxb-test", base_url=slack.url.rstrip("/") + "/")
    with pytest.raises(SlackApiError) as refused:
        client.chat_startStream(channel=CHANNEL, thread_ts=parent, markdown_text="hi")  # no recipient
    assert refused.value.response["error"] == "invalid_arguments"
    started = client.chat_startStream(channel=CHANNEL, thread_ts=parent, markdown_text="hi ",
                                      recipient_team_id=TEAM, recipient_user_id=USER)
    client.chat_stopStream(channel=CHANNEL, ts=started["ts"])
    with pytest.raises(SlackApiError) as stopped:
        client.chat_appendStream(channel=CHANNEL, ts=started["ts"], markdown_text="more")
    assert stopped.value.response["error"] == "message_not_in_streaming_state"


def test_where_slack_refuses_to_stream_the_placeholder_is_edited_instead(slack: SlackSandbox, parent: str) -> None:
    slack.fail("chat.startStream", "error", error="channel_type_not_supported")
    stream = deliver(slack, request(thread_ts=parent), words(ANSWER), clock=Clock())
    [message] = bot_messages(slack, parent)
    assert message["ts"] == stream.reply_ts == stream.placeholder_ts and message["text"] == FINAL
    assert len(slack.calls("chat.update")) >= 2  # the streamed text on the placeholder, then the final answer
