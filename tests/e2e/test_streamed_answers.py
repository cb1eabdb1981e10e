"""Streamed answers end to end (issue 14): `insightmesh dev` with the Slack sandbox and an OpenAI
stand-in that streams its answer slowly; the worker streams it into the thread, and a crash in
the middle of the stream still leaves exactly one message with the whole answer."""

from __future__ import annotations

import time
from itertools import count

import pytest

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import post_event, running, slack_llm_env
from tests.helpers import wait_for

SECRET = "e2e-stream-secret"
CHANNEL = "C0STREAM"
ANSWER = " ".join(f"word{i}" for i in range(60))  # 60 tokens at 15 a second: four seconds of streaming
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
_ts = count(1)


@pytest.fixture(scope="module")
def dev(sandbox, llm, dev_logs):
    env = slack_llm_env(sandbox, llm, secret=SECRET,
                        WORKER_TIMEOUT="25",
                        CONVERSATION_VISIBILITY_TIMEOUT="10")
    with running(env=env, log_dir=dev_logs) as server:
        yield server


@pytest.fixture(autouse=True)
def slow_llm(llm):
    llm.set_reply(ANSWER)
    llm.apply_control({"stream_rate": 15})
    yield
    llm.apply_control({"stream_rate": 0})
    llm.set_reply(None)


def mention(dev, text: str) -> str:
    ts = f"{1797000000 + next(_ts)}.{next(_ts):06d}"
    with dev.http() as http:
        response = post_event(http, SECRET, slack.app_mention_event("U0ALICE", CHANNEL, text, ts))
    assert response.status_code == 200, response.text
    return ts


def visible(sandbox, thread: str) -> list[dict]:
    return [m for m in sandbox.messages(channel=CHANNEL, thread_ts=thread)
            if m.get("is_bot") and not m.get("ephemeral") and not m.get("deleted")]


def answered(sandbox, thread: str, timeout: float) -> dict:
    def final():
        done = [m for m in visible(sandbox, thread)
                if ((m.get("metadata") or {}).get("event_payload") or {}).get("status") == "answered"]
        return done[0] if done else None
    return wait_for(final, timeout=timeout, interval=0.25, what=f"the answer in {thread}")


def test_the_answer_streams_into_the_thread_and_ends_as_one_formatted_message(dev, sandbox, llm):
    thread = mention(dev, f"<@{slack.DEFAULT_BOT_USER_ID}> stream please")
    message = answered(sandbox, thread, timeout=60)
    assert [m["ts"] for m in visible(sandbox, thread)] == [message["ts"]]
    assert ANSWER in message["text"] and message["source"] == "chat.startStream"
    assert any(block["type"] == "actions" for block in message["blocks"])  # the feedback buttons
    grew = [edit["text"] for edit in message["edits"] if edit["source"] == "chat.appendStream"]
    assert grew and all(ANSWER.startswith(text) for text in grew)  # visible while the LLM was writing
    assert llm.chat_requests()[-1].body["stream"] is True


def test_a_crash_mid_stream_leaves_exactly_one_message_with_the_whole_answer(dev, sandbox):
    # The stream has started (its first text is in the thread); the first chat.appendStream is
    # answered 429 with a Retry-After longer than the worker's 25 s timeout, which the Slack client
    # honours: the runtime kills the worker mid-stream. SQS redelivers after the visibility timeout,
    # and the redelivery finishes the message its stream started instead of starting a second one.
    sandbox.fail("chat.appendStream", "ratelimit", count=1, retry_after=40, channel=CHANNEL)
    thread = mention(dev, f"<@{slack.DEFAULT_BOT_USER_ID}> survive a crash mid-stream")
    wait_for(lambda: "Sandbox.Timedout" in dev.output(), timeout=60, what="the worker to time out")
    message = answered(sandbox, thread, timeout=120)
    time.sleep(1.0)
    assert [m["ts"] for m in visible(sandbox, thread)] == [message["ts"]]
    assert ANSWER in message["text"]
    starts = [c for c in sandbox.calls("chat.startStream") if c["args"].get("thread_ts") == thread]
    assert len(starts) == 1
