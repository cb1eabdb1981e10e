"""Slack's AI app surface end to end (issue 14 §1): `insightmesh dev` with the Slack sandbox and the
OpenAI stand-in on loopback, driven by signed assistant events and DM messages as Slack sends them.

An assistant thread gets its greeting and suggested prompts; the user's question in it gets a
title, statuses and an answer through the worker's normal reply path; a context change posts
nothing (tests/integration/test_assistant_surface.py checks that the thread keeps it); a plain DM
outside the container is answered as before, with no assistant calls."""

from __future__ import annotations

import pytest

from insightmesh_local import slack_signing as slack
from insightmesh_local.slack_sandbox import assistant as sandbox_assistant
from tests.e2e.dev_server import post_event as signed_post
from tests.e2e.dev_server import running, slack_llm_env
from tests.helpers import wait_for

SECRET = "e2e-assistant-secret"
USER = "U0ASSIST1"
DM = f"D{USER}"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def dev(sandbox, llm, dev_logs):
    env = slack_llm_env(sandbox, llm, secret=SECRET, WORKER_TIMEOUT="8", CONVERSATION_VISIBILITY_TIMEOUT="10")
    with running(env=env, log_dir=dev_logs) as server:
        yield server


def send(http, event):
    response = signed_post(http, SECRET, event)
    assert response.status_code == 200, response.text
    return response


def thread(sandbox, thread_ts):
    [found] = sandbox_assistant.describe(sandbox.state, DM, thread_ts)
    return found


def bot_messages(sandbox, thread_ts):
    return [m for m in sandbox.messages(channel=DM, thread_ts=thread_ts) if m["is_bot"] and not m["ephemeral"]]


def answered(message):
    return ((message.get("metadata") or {}).get("event_payload") or {}).get("status") == "answered"


def open_container(sandbox, http, context="C0E2ESALES"):
    started = sandbox_assistant.start_thread(sandbox.state, user=USER, context_channel_id=context)
    ts = started["thread_ts"]
    send(http, slack.assistant_thread_event("assistant_thread_started", USER, DM, ts, context_channel_id=context))
    return ts


def test_an_assistant_thread_gets_a_greeting_prompts_a_title_statuses_and_an_answer(sandbox, llm, http):
    ts = open_container(sandbox, http)
    wait_for(lambda: thread(sandbox, ts)["prompts"] and bot_messages(sandbox, ts), timeout=60,
             what="the greeting and the suggested prompts")
    [greeting] = bot_messages(sandbox, ts)
    assert greeting["text"].startswith("Hi ")
    assert thread(sandbox, ts)["prompts"][-1]["message"] == "help"

    question = "What is our refund policy for annual plans?"
    asked = sandbox.add_user_message(channel=DM, user=USER, text=question, thread_ts=ts)["ts"]
    send(http, slack.message_event(USER, DM, question, asked, ts, channel_type="im", parent_user_id=USER))

    wait_for(lambda: any(answered(m) and "refund policy" in m["text"] for m in bot_messages(sandbox, ts))
             and thread(sandbox, ts)["status"] == "", timeout=90, what="the answer in the assistant thread")
    seen = thread(sandbox, ts)
    assert seen["title"] == question
    assert seen["statuses"][0] == "is thinking…" and "Searching the knowledge base…" in seen["statuses"]
    prompt = llm.chat_requests()[-1].body["messages"]
    assert any(question in str(m.get("content")) for m in prompt)
    assert any("<#C0E2ESALES>" in str(m.get("content")) for m in prompt if m["role"] == "system")  # the context


def test_a_context_change_posts_nothing_and_a_plain_dm_gets_no_assistant_calls(sandbox, http):
    ts = open_container(sandbox, http, context="C0E2EONE")
    wait_for(lambda: bot_messages(sandbox, ts), timeout=60, what="the greeting")
    send(http, slack.assistant_thread_event("assistant_thread_context_changed", USER, DM, ts,
                                            context_channel_id="C0E2ETWO"))
    calls_before = len([c for c in sandbox.calls() if c["method"].startswith("assistant.")])

    plain = sandbox.add_user_message(channel="DU0PLAIN1", user="U0PLAIN1", text="hello there")["ts"]
    send(http, slack.message_event("U0PLAIN1", "DU0PLAIN1", "hello there", plain, channel_type="im"))
    wait_for(lambda: any(answered(m) for m in sandbox.messages(channel="DU0PLAIN1", thread_ts=plain)
                         if m["is_bot"]), timeout=90, what="the plain DM's answer")

    assert len(bot_messages(sandbox, ts)) == 1  # a context change posts nothing
    assert len([c for c in sandbox.calls() if c["method"].startswith("assistant.")]) == calls_before
