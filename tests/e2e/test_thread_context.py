"""Thread context end to end through `insightmesh dev`: a mention in a thread people started is
answered from what was said above (the prompt the LLM stand-in received holds the earlier messages
with people's names), thread memory is the source after that, and a channel summary is given only
to a member, where every reader may see the channel."""

from __future__ import annotations

import pytest

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import post_event, running, slack_llm_env
from tests.e2e.test_slack_conversations import bot_messages, is_final
from tests.helpers import wait_for

SECRET = "e2e-thread-context-secret"
BOT = slack.DEFAULT_BOT_USER_ID
ANN, BOB, CY = "U0ANN", "U0BOB", "U0CY"
TEAM_CHANNEL, SALES = "C0TEAMROOM", "C0SALES"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def sandbox(sandbox):
    sandbox.add_users({"id": ANN, "real_name": "Ann Archer", "display_name": "ann", "email": "ann@corp.example"},
                      {"id": BOB, "real_name": "Bob Baker", "display_name": "bob", "email": "bob@corp.example"},
                      {"id": CY, "real_name": "Cy Cole", "display_name": "cy", "email": "cy@corp.example"})
    sandbox.set_channel(TEAM_CHANNEL, [ANN, BOB, CY], name="team")
    sandbox.set_channel(SALES, [ANN, BOB], name="sales")
    for user in (ANN, CY):
        sandbox.set_channel(f"D0{user}", [], kind="im", user=user)
    return sandbox


@pytest.fixture(scope="module")
def dev(sandbox, llm, dev_logs):
    env = slack_llm_env(sandbox, llm, secret=SECRET,
                        bot_token="xoxb-e2e-threads",
                        THREAD_CONTEXT_MAX_MESSAGES="3")
    with running(env=env, log_dir=dev_logs) as server:
        yield server


def post(http, event):
    response = post_event(http, SECRET, event)
    assert response.status_code == 200, response.text


def say(sandbox, user, text, channel, thread_ts=None):
    return sandbox.add_user_message(channel=channel, user=user, text=text, thread_ts=thread_ts)["ts"]


def answers(sandbox, channel, thread, count=1):
    def done():
        replies = [m for m in bot_messages(sandbox, thread, channel) if is_final(m)]  # not still streaming
        return replies if len(replies) >= count else None
    return wait_for(done, timeout=90, what=f"{count} answer(s) in {channel} {thread}")


def prompt_with(llm, words):
    """The whole prompt (every message) of the LLM call whose question holds ``words``."""
    for request in reversed(llm.chat_requests()):
        messages = request.body["messages"]
        if words in str(messages[-1].get("content")):
            return "\n".join(str(message.get("content")) for message in messages)
    raise AssertionError(f"no LLM call asked {words!r}")


def replies_read(sandbox, thread):
    return [c for c in sandbox.calls("conversations.replies") if c["args"].get("ts") == thread]


def test_a_mention_in_a_human_thread_answers_from_what_was_said_above(sandbox, llm, http):
    parent = say(sandbox, BOB, "Launch plan: Tuesday or Thursday?", TEAM_CHANNEL)
    say(sandbox, CY, "an older aside that the bound of three messages cuts", TEAM_CHANNEL, parent)
    say(sandbox, CY, "Thursday, the release train leaves Wednesday", TEAM_CHANNEL, parent)
    say(sandbox, BOB, f"Agreed with <@{CY}>: we ship Thursday at 10:00", TEAM_CHANNEL, parent)
    question = f"<@{BOT}> what did we decide above?"
    ts = say(sandbox, ANN, question, TEAM_CHANNEL, parent)

    post(http, slack.app_mention_event(ANN, TEAM_CHANNEL, question, ts, parent))
    answers(sandbox, TEAM_CHANNEL, parent)

    prompt = prompt_with(llm, "what did we decide above?")
    assert "Bob Baker: Launch plan: Tuesday or Thursday?" in prompt  # the parent, kept first
    assert "Cy Cole: Thursday, the release train leaves Wednesday" in prompt
    assert "Bob Baker: Agreed with @Cy Cole: we ship Thursday at 10:00" in prompt
    assert "older aside" not in prompt and "1 earlier message(s) not shown" in prompt
    read = len(replies_read(sandbox, parent))
    assert read >= 1

    # The bot is part of the thread now: its memory is the source, the thread is not read again.
    follow = say(sandbox, ANN, "and who owns the launch?", TEAM_CHANNEL, parent)
    post(http, slack.message_event(ANN, TEAM_CHANNEL, "and who owns the launch?", follow, parent,
                                   channel_type="channel"))
    answers(sandbox, TEAM_CHANNEL, parent, count=2)
    assert "what did we decide above?" in prompt_with(llm, "and who owns the launch?")  # from memory
    assert len(replies_read(sandbox, parent)) == read


def test_a_channel_summary_is_given_to_members_only(sandbox, llm, http):
    say(sandbox, BOB, "Acme signed the renewal", SALES)
    say(sandbox, ANN, "Globex wants a ten percent discount", SALES)
    ask = f"summarise <#{SALES}|sales> today"

    # Cy is not in #sales: refused, and the channel is not read.
    cy_ts = say(sandbox, CY, ask, f"D0{CY}")
    post(http, slack.message_event(CY, f"D0{CY}", ask, cy_ts, channel_type="im"))
    refusal = answers(sandbox, f"D0{CY}", cy_ts)[-1]["text"]
    assert "not a member of #sales" in refusal
    assert sandbox.calls("conversations.history") == []

    # Ann asks in #team, where Cy (no member of #sales) would read the answer: refused there.
    team_ts = say(sandbox, ANN, f"<@{BOT}> {ask}", TEAM_CHANNEL)
    post(http, slack.app_mention_event(ANN, TEAM_CHANNEL, f"<@{BOT}> {ask}", team_ts))
    assert "Not everyone in this conversation can read #sales" in answers(sandbox, TEAM_CHANNEL, team_ts)[-1]["text"]
    assert sandbox.calls("conversations.history") == []

    # Ann, a member, asks in her DM: the summary is made from #sales's messages, with names.
    ann_ts = say(sandbox, ANN, ask, f"D0{ANN}")
    post(http, slack.message_event(ANN, f"D0{ANN}", ask, ann_ts, channel_type="im"))
    answers(sandbox, f"D0{ANN}", ann_ts)
    prompt = prompt_with(llm, ask)
    assert "Bob Baker: Acme signed the renewal" in prompt
    assert "Ann Archer: Globex wants a ten percent discount" in prompt
    assert [c["args"]["channel"] for c in sandbox.calls("conversations.history")] == [SALES]
