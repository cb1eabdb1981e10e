"""Slack conversations end to end: `insightmesh dev` with a Slack Web API stand-in and an
OpenAI-compatible stand-in on loopback, driven by signed webhooks as Slack sends them."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import count

import pytest

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import post_event as signed_post
from tests.e2e.dev_server import running, slack_llm_env
from tests.helpers import wait_for

SECRET = "e2e-signing-secret"
TEAM, BOT = slack.DEFAULT_TEAM_ID, slack.DEFAULT_BOT_USER_ID
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
_ts = count(1)


def new_ts() -> str:
    return f"{1796000000 + next(_ts)}.{next(_ts):06d}"


@pytest.fixture(scope="module")
def dev(sandbox, llm, dev_logs):
    env = slack_llm_env(sandbox, llm, secret=SECRET,
                        WORKER_TIMEOUT="8",
                        CONVERSATION_VISIBILITY_TIMEOUT="10",
                        LLM_BREAKER_COOLDOWN_SECONDS="2")
    with running(env=env, log_dir=dev_logs) as server:
        yield server


def post_event(http, event, *, headers=None, secret=SECRET, timestamp=None):
    return signed_post(http, secret, event, headers=headers, timestamp=timestamp)


def mention(http, text, *, channel="C0E2E", thread_ts=None, user="U0ALICE"):
    ts = new_ts()
    response = post_event(http, slack.app_mention_event(user, channel, text, ts, thread_ts))
    assert response.status_code == 200, response.text
    return ts, thread_ts or ts


def follow_up(http, text, thread_ts, *, channel="C0E2E", user="U0ALICE"):
    ts = new_ts()
    response = post_event(http, slack.message_event(user, channel, text, ts, thread_ts, channel_type="channel"))
    assert response.status_code == 200, response.text
    return ts


def bot_messages(sandbox, thread_ts, channel="C0E2E"):
    """What the thread shows: a placeholder a streamed answer replaced is deleted (conversation.streaming)."""
    return [m for m in sandbox.messages(channel=channel, thread_ts=thread_ts)
            if m.get("is_bot") and not m.get("ephemeral") and not m.get("deleted")]


def is_final(message):
    """A final reply: the worker's last edit marks its metadata ``answered``; a placeholder
    (``Thinking…``, or an agent's progress such as ``Analysing…``) still says ``placeholder``. A
    plain post without metadata (leaving agent mode) is final too."""
    if message.get("streaming"):  # a streamed answer still being written (conversation.streaming)
        return False
    status = ((message.get("metadata") or {}).get("event_payload") or {}).get("status")
    if message.get("source") == "chat.startStream":  # stopped, then edited once more into the final answer
        return status == "answered"
    return status == "answered" if status else "Thinking" not in message["text"]


def answered(sandbox, thread_ts, *, replies=1, channel="C0E2E", timeout=30.0):
    """The bot's messages in the thread once ``replies`` of them carry a final answer."""
    def final():
        messages = bot_messages(sandbox, thread_ts, channel)
        done = [m for m in messages if is_final(m)]
        return messages if len(done) >= replies else None
    return wait_for(final, timeout=timeout, what=f"{replies} answer(s) in thread {thread_ts}")


def posts_in(sandbox, thread_ts, channel="C0E2E"):
    return [c for c in sandbox.calls("chat.postMessage")
            if c["args"].get("thread_ts") == thread_ts and c["args"].get("channel") == channel]


# -- the main path -----------------------------------------------------------------------------------

def test_a_mention_gets_exactly_one_threaded_reply_with_the_llm_text(sandbox, llm, http):
    _, thread = mention(http, "what is our refund policy?")
    messages = answered(sandbox, thread)
    time.sleep(1.0)
    messages = bot_messages(sandbox, thread)
    assert len(messages) == 1
    assert messages[0]["thread_ts"] == thread
    assert "LLM: what is our refund policy?" in messages[0]["text"]
    request = llm.chat_requests()[-1]
    assert request.header("authorization") == "Bearer sk-e2e-key-0000000000"
    assert request.body["model"] == "e2e-model"
    assert any("U0ALICE" in m["content"] or "user-" in m["content"] or "You are" in m["content"]
               for m in request.body["messages"] if m["role"] == "system")


def test_slack_retries_get_no_second_reply(sandbox, http):
    ts = new_ts()
    event = slack.app_mention_event("U0ALICE", "C0E2E", "retry?", ts)
    payload = slack.event_callback(TEAM, slack.DEFAULT_APP_ID, event)
    body = slack.json_body(payload)
    for retry in ("", "1", "2"):
        extra = {"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"} if retry else {}
        response = http.post("/slack/events", content=body,
                             headers={**slack.signed_headers(SECRET, body, "application/json"), **extra})
        assert response.status_code == 200
    answered(sandbox, ts)
    time.sleep(1.5)
    assert len(bot_messages(sandbox, ts)) == 1
    assert len(posts_in(sandbox, ts)) == 1


def test_a_mention_also_delivered_as_a_message_event_is_answered_once(sandbox, http):
    ts = new_ts()
    text = f"<@{BOT}> both copies"
    post_event(http, slack.app_mention_event("U0ALICE", "C0E2E", text, ts))
    post_event(http, slack.message_event("U0ALICE", "C0E2E", text, ts, channel_type="channel"))
    answered(sandbox, ts)
    time.sleep(1.0)
    assert len(posts_in(sandbox, ts)) == 1


def test_bad_signature_and_stale_timestamp_get_401_and_nothing_is_queued(sandbox, http):
    ts = new_ts()
    event = slack.app_mention_event("U0ALICE", "C0E2E", "forged", ts)
    forged = post_event(http, event, secret="not-the-secret")
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "unauthorized"
    stale = post_event(http, event, timestamp=int(time.time()) - 600)
    assert stale.status_code == 401
    missing = http.post("/slack/events", content=b"{}", headers={"Content-Type": "application/json"})
    assert missing.status_code == 401
    time.sleep(2.0)
    assert sandbox.messages(channel="C0E2E", thread_ts=ts) == []


def test_malformed_and_oversized_bodies_get_400(http):
    body = b"{not json"
    response = http.post("/slack/events", content=body, headers=slack.signed_headers(SECRET, body, "application/json"))
    assert response.status_code == 400
    big = b'{"type": "event_callback", "pad": "' + b"x" * 300_000 + b'"}'
    response = http.post("/slack/events", content=big, headers=slack.signed_headers(SECRET, big, "application/json"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "payload_too_large"


def test_url_verification_is_answered(http):
    body = slack.json_body(slack.url_verification("challenge-123"))
    response = http.post("/slack/events", content=body, headers=slack.signed_headers(SECRET, body, "application/json"))
    assert response.status_code == 200 and response.json() == {"challenge": "challenge-123"}


def test_bots_edits_and_deletions_are_ignored(sandbox, http):
    ts = new_ts()
    post_event(http, slack.message_event("U0ALICE", "D0ALICE", "edited", ts, channel_type="im",
                                         subtype="message_changed", previous_text="before"))
    post_event(http, slack.message_event(BOT, "D0ALICE", "my own words", new_ts(), channel_type="im",
                                         bot_id=slack.DEFAULT_BOT_ID))
    post_event(http, slack.message_event("U0OTHERBOT", "D0ALICE", "another bot", new_ts(), channel_type="im",
                                         bot_id="B0OTHER"))
    post_event(http, slack.message_event("U0ALICE", "C0E2E", "chatter not for the bot", new_ts(),
                                         channel_type="channel"))
    # Slackbot's "You have been removed from #…" DM: user USLACKBOT, no bot_id (issue 10 §4).
    post_event(http, slack.message_event("USLACKBOT", "D0ALICE", "You have been removed from #deals by <@U0BOB>",
                                         new_ts(), channel_type="im"))
    time.sleep(2.5)
    assert not [m for m in sandbox.messages(channel="D0ALICE") if m.get("is_bot")]
    assert all(call["args"].get("user") != "USLACKBOT" for call in sandbox.calls("users.info"))


def test_a_dm_is_always_answered(sandbox, http):
    ts = new_ts()
    post_event(http, slack.message_event("U0BOB", "D0BOB", "hello from a DM", ts, channel_type="im"))
    messages = answered(sandbox, ts, channel="D0BOB")
    assert "LLM: hello from a DM" in messages[0]["text"]


# -- failures ---------------------------------------------------------------------------------------------

def test_llm_down_gets_a_friendly_reply_the_circuit_opens_and_recovers(sandbox, llm, http):
    llm.set_mode("error")
    try:
        before = len(llm.chat_requests())
        _, first = mention(http, "is the model up?")
        reply = answered(sandbox, first)[0]["text"]
        assert "temporarily unavailable" in reply
        tried = len(llm.chat_requests()) - before
        assert tried >= 3  # retried, then gave up
        _, second = mention(http, "and now?")
        assert "temporarily unavailable" in answered(sandbox, second)[0]["text"]
        assert len(llm.chat_requests()) - before == tried  # the open circuit answered without calling
    finally:
        llm.set_mode("ok")
    time.sleep(2.5)  # the breaker's cool-down
    _, third = mention(http, "back again?")
    assert "LLM: back again?" in answered(sandbox, third)[0]["text"]


def test_a_worker_that_crashes_after_posting_posts_nothing_new_on_redelivery(dev, sandbox, http):
    # The final chat.update is recorded by Slack, then hangs past the worker's 8 s timeout: the
    # runtime kills the worker, SQS redelivers after the visibility timeout, and the redelivery
    # finds the recorded placeholder instead of posting again.
    sandbox.fail("chat.update", "delay", count=1, delay=10.0)
    _, thread = mention(http, "survive a crash")
    wait_for(lambda: "Sandbox.Timedout" in dev.output(), timeout=30, what="the worker to time out")
    messages = answered(sandbox, thread, timeout=45)
    time.sleep(1.0)
    assert len(bot_messages(sandbox, thread)) == 1
    assert len(posts_in(sandbox, thread)) == 1
    assert "LLM: survive a crash" in bot_messages(sandbox, thread)[0]["text"]
    assert messages


def test_fifty_concurrent_events_get_fifty_replies_none_duplicated_none_lost(sandbox, http):
    threads = [new_ts() for _ in range(50)]

    def send(ts):
        return post_event(http, slack.app_mention_event("U0CROWD", "C0LOAD", f"question {ts}", ts)).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert list(pool.map(send, threads)) == [200] * 50
    wait_for(lambda: all(any(is_final(m) for m in bot_messages(sandbox, ts, "C0LOAD"))
                         for ts in threads), timeout=150, interval=0.5, what="50 answers")
    for ts in threads:
        messages = bot_messages(sandbox, ts, "C0LOAD")
        assert len(messages) == 1, (ts, messages)
        assert f"LLM: question {ts}" in messages[0]["text"]


# -- agents, stickiness, permissions --------------------------------------------------------------------

def test_meddic_works_across_turns_and_worker_invocations(sandbox, http):
    _, thread = mention(http, "meddic Call with Acme. Dana, the CFO, owns the budget. They struggle with manual "
                              "reporting that takes 20 hours a week.")
    first = answered(sandbox, thread, replies=1)[-1]["text"]
    assert "MEDDPICC" in first and "covered" in first
    follow_up(http, "Sarah in ops is our champion. They compare us with an in-house build.", thread)
    second = answered(sandbox, thread, replies=2)[-1]["text"]
    covered = [int(text.split("/8")[0].split()[-1]) for text in (first, second)]
    assert covered[1] > covered[0]  # state carried from the first turn
    follow_up(http, "analyze", thread)
    analysis = answered(sandbox, thread, replies=3)[-1]["text"]
    assert "MEDDPICC analysis" in analysis and "Champion" in analysis and "Economic buyer" in analysis


def test_sticky_agent_mode_and_its_exit(sandbox, http):
    _, thread = mention(http, "-meddic we met the team")
    assert "MEDDPICC" in answered(sandbox, thread, replies=1)[-1]["text"]
    follow_up(http, "their VP signs off", thread)  # no agent word: the sticky agent answers
    assert "MEDDPICC" in answered(sandbox, thread, replies=2)[-1]["text"]
    follow_up(http, "exit", thread)
    assert "Left *meddic* mode" in answered(sandbox, thread, replies=3)[-1]["text"]
    follow_up(http, "what is the weather?", thread)
    assert "LLM: what is the weather?" in answered(sandbox, thread, replies=4)[-1]["text"]


def test_the_denied_path(dev, sandbox, http):
    dynamodb = dev.aws("dynamodb")
    table = "insightmesh-dev-AgentsTable"
    dynamodb.update_item(TableName=table, Key={"name": {"S": "meddic"}},
                         UpdateExpression="SET visibility = :admins",
                         ExpressionAttributeValues={":admins": {"S": "admins"}})
    try:
        _, thread = mention(http, "meddic secret deal notes", user="U0MALLORY")
        reply = answered(sandbox, thread)[-1]["text"]
        assert "don't have access" in reply and "requires an admin" in reply and "help" in reply
    finally:
        dynamodb.update_item(TableName=table, Key={"name": {"S": "meddic"}},
                             UpdateExpression="SET visibility = :public",
                             ExpressionAttributeValues={":public": {"S": "public"}})


# -- slash command and buttons ----------------------------------------------------------------------------

def command(http, sandbox, text, channel="C0CMD"):
    url = sandbox.response_url(channel=channel, user="U0ALICE")
    body = slack.slash_command_body(user_id="U0ALICE", channel_id=channel, text=text, response_url=url)
    return http.post("/slack/commands", content=body,
                     headers=slack.signed_headers(SECRET, body, "application/x-www-form-urlencoded"))


def test_the_slash_command(sandbox, http):
    usage = command(http, sandbox, "")
    assert usage.status_code == 200 and "Usage" in usage.json()["text"]
    ack = command(http, sandbox, "help")
    assert ack.status_code == 200 and ack.json()["response_type"] == "ephemeral"
    listing = wait_for(lambda: [m for m in sandbox.messages(channel="C0CMD")
                                if m.get("is_bot") and "meddic" in m["text"]], what="the agent listing")
    assert "assistant" in listing[0]["text"] and "MEDDPICC" in listing[0]["text"]


def test_feedback_and_exit_buttons(sandbox, http):
    _, thread = mention(http, "meddic first notes", channel="C0BTN")
    reply = answered(sandbox, thread, channel="C0BTN")[-1]
    actions = reply["blocks"][-1]["elements"]
    assert {a["action_id"] for a in actions} == {"feedback_up", "feedback_down", "exit_agent"}

    def click(action_id, value):
        body = slack.block_actions_body(user_id="U0ALICE", channel_id="C0BTN", message_ts=reply["ts"],
                                        thread_ts=thread, action_id=action_id, value=value,
                                        response_url=sandbox.response_url(channel="C0BTN", user="U0ALICE"))
        response = http.post("/slack/interactions", content=body,
                             headers=slack.signed_headers(SECRET, body, "application/x-www-form-urlencoded"))
        assert response.status_code == 200

    click("feedback_up", actions[0]["value"])
    wait_for(lambda: [m for m in sandbox.messages(channel="C0BTN") if m.get("ephemeral")
                      and "Thanks" in m["text"]], what="the feedback acknowledgement")
    click("exit_agent", "meddic")
    wait_for(lambda: [m for m in bot_messages(sandbox, thread, "C0BTN") if "Left agent mode" in m["text"]],
             what="agent mode left")
    follow_up(http, "plain question now", thread, channel="C0BTN")
    wait_for(lambda: [m for m in bot_messages(sandbox, thread, "C0BTN") if "LLM: plain question now" in m["text"]],
             what="the assistant again")


def test_readiness_covers_the_new_tables_and_queue(dev, http):
    made = dev.cli("token", "create", "--email", "ops@example.com", "--admin")
    assert made.returncode == 0, made.stderr  # the detail needs an admin's token
    report = http.get("/health/ready", headers={"Authorization": f"Bearer {made.stdout.strip()}"}).json()
    names = {check["name"] for check in report["checks"]}
    assert {"USERS_TABLE", "AGENTS_TABLE", "CONVERSATIONS_TABLE", "CONVERSATION_QUEUE_URL"} <= names
    assert json.dumps(report).count('"down"') == 0
