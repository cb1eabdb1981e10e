"""Per-channel settings end to end: an admin sets them through /api/channels on `insightmesh dev`,
and Slack events (signed as Slack signs them) are answered — or not — accordingly."""

from __future__ import annotations

from itertools import count

import pytest

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import post_event as signed_post
from tests.e2e.dev_server import running, slack_llm_env
from tests.helpers import wait_for

SECRET = "e2e-signing-secret"
ADMIN = "admin@example.com"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
_ts = count(1)


def new_ts() -> str:
    return f"{1797000000 + next(_ts)}.{next(_ts):06d}"


@pytest.fixture(scope="module")
def dev(sandbox, llm, dev_logs):
    env = slack_llm_env(sandbox, llm, secret=SECRET,
                        WORKER_TIMEOUT="8",
                        CONVERSATION_VISIBILITY_TIMEOUT="10",
                        CHANNEL_SETTINGS_CACHE_SECONDS="0")  # a change applies to the next message
    with running(env=env, log_dir=dev_logs) as server:
        yield server


@pytest.fixture(scope="module")
def admin(dev):
    assert dev.cli("admin", "bootstrap", "--email", ADMIN).returncode == 0
    token = dev.cli("token", "create", "--email", ADMIN, "--admin")
    assert token.returncode == 0, token.stderr
    with dev.http(headers={"Authorization": f"Bearer {token.stdout.strip()}"}) as client:
        yield client


def configure(admin, channel, **settings):
    response = admin.put(f"/api/channels/{channel}", json=settings)
    assert response.status_code in (200, 201), response.text
    return response.json()


def question(http, channel, text, *, mention=False, user="U0ALICE"):
    ts = new_ts()
    event = slack.app_mention_event(user, channel, f"<@{slack.DEFAULT_BOT_USER_ID}> {text}", ts) if mention \
        else slack.message_event(user, channel, text, ts, channel_type="channel")
    response = signed_post(http, SECRET, event)
    assert response.status_code == 200, response.text
    return ts


def bot_replies(sandbox, channel, thread_ts):
    return [m for m in sandbox.messages(channel=channel, thread_ts=thread_ts)
            if m.get("is_bot") and not m.get("ephemeral")]


def reply_containing(sandbox, channel, thread_ts, text):
    """The bot's reply in the thread once it holds ``text`` (a streamed answer grows in place)."""
    def found():
        return next((m for m in bot_replies(sandbox, channel, thread_ts) if text in m["text"]), None)
    try:
        return wait_for(found, timeout=60, what=f"{text!r} in {channel}/{thread_ts}")
    except AssertionError:
        print("DIAG", sandbox.messages(channel=channel))
        raise


def dropped(dev, count_before):
    """Wait until the worker has dropped one more request for the channel's settings."""
    marker = "not answered: the channel's settings"
    wait_for(lambda: dev.output().count(marker) > count_before, timeout=40, what="the worker to drop the request")


def test_every_question_mode_answers_a_question_without_a_mention(dev, sandbox, http, admin):
    configure(admin, "C0QUESTIONS", mode="questions")
    ts = question(http, "C0QUESTIONS", "what is our refund policy?")
    reply_containing(sandbox, "C0QUESTIONS", ts, "LLM: what is our refund policy?")


def test_mentions_mode_leaves_unaddressed_questions_alone(dev, sandbox, http, admin):
    before = dev.output().count("not answered: the channel's settings")
    ts = question(http, "C0DEFAULTMODE", "anyone know the wifi password?")  # never configured: mentions only
    dropped(dev, before)
    assert bot_replies(sandbox, "C0DEFAULTMODE", ts) == []
    mentioned = question(http, "C0DEFAULTMODE", "and you, bot?", mention=True)
    reply_containing(sandbox, "C0DEFAULTMODE", mentioned, "LLM: and you, bot?")


def test_off_answers_nothing_not_even_a_mention(dev, sandbox, http, admin):
    configure(admin, "C0OFF", mode="off")
    before = dev.output().count("not answered: the channel's settings")
    asked = question(http, "C0OFF", "is this on?")
    mentioned = question(http, "C0OFF", "hello, are you there?", mention=True)
    dropped(dev, before + 1)
    assert bot_replies(sandbox, "C0OFF", asked) == [] and bot_replies(sandbox, "C0OFF", mentioned) == []
    assert not [m for m in sandbox.messages(channel="C0OFF") if m.get("is_bot")]

    # A slash command there is told so, privately (through its response_url), and nothing else.
    url = sandbox.response_url(channel="C0OFF", user="U0ALICE")
    body = slack.slash_command_body(user_id="U0ALICE", channel_id="C0OFF", text="what is new?", response_url=url)
    ack = http.post("/slack/commands", content=body,
                    headers=slack.signed_headers(SECRET, body, "application/x-www-form-urlencoded"))
    assert ack.status_code == 200
    told = wait_for(lambda: [m for m in sandbox.messages(channel="C0OFF") if "turned off" in m["text"]],
                    timeout=60, what="the command told the channel is off")
    assert told[0].get("ephemeral") or told[0].get("response_type") == "ephemeral"
    assert not [m for m in sandbox.messages(channel="C0OFF") if m.get("is_bot") and "turned off" not in m["text"]]


def test_the_default_agent_answers_and_other_agents_are_refused(dev, sandbox, http, admin):
    configure(admin, "C0DEALS", default_agent="meddic", allowed_agents=["help", "meddic"])
    ts = question(http, "C0DEALS", "Call with Acme. Dana, the CFO, owns the budget.", mention=True)
    reply_containing(sandbox, "C0DEALS", ts, "MEDDPICC")

    configure(admin, "C0HELPONLY", allowed_agents=["assistant", "help"])
    refused = question(http, "C0HELPONLY", "meddic notes from the call", mention=True)
    reply = reply_containing(sandbox, "C0HELPONLY", refused, "not available in this channel")["text"]
    assert "meddic" in reply and "`assistant`" in reply


def test_settings_slash_command_shows_the_channels_settings(dev, sandbox, http, admin):
    configure(admin, "C0SHOWN", mode="questions", default_agent="meddic")
    url = sandbox.response_url(channel="C0SHOWN", user="U0BOB")
    body = slack.slash_command_body(user_id="U0BOB", channel_id="C0SHOWN", text="settings", response_url=url)
    response = http.post("/slack/commands", content=body,
                         headers=slack.signed_headers(SECRET, body, "application/x-www-form-urlencoded"))
    assert response.status_code == 200
    shown = response.json()
    assert shown["response_type"] == "ephemeral"
    assert "question mark" in shown["text"] and "`meddic`" in shown["text"]


def test_ephemeral_replies_go_to_the_asker_alone(dev, sandbox, http, admin):
    configure(admin, "C0QUIET", mode="questions", reply="ephemeral")
    ts = question(http, "C0QUIET", "how many vacation days do I have?", user="U0CAROL")

    def delivered():
        return [call["args"] for call in sandbox.calls("chat.postEphemeral")
                if call["args"].get("channel") == "C0QUIET" and "LLM: how many vacation days" in
                str(call["args"].get("text"))]
    sent = wait_for(delivered, timeout=60, what="the ephemeral answer")
    assert sent[0]["user"] == "U0CAROL" and not sent[0].get("thread_ts")  # no thread exists yet: in the channel
    assert bot_replies(sandbox, "C0QUIET", ts) == []  # no placeholder, nothing anyone else sees
    assert not [m for m in sandbox.messages(channel="C0QUIET") if m.get("is_bot") and not m.get("ephemeral")]
