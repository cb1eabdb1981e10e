"""Thread context over the Slack sandbox on loopback: the thread above a mention read with
conversations.replies (paged, names from users.info, the bot's own messages and the question left
out), thread memory as the source once the bot has answered, and channel summaries read with
conversations.history only where the bot and the asker are members and every reader may see them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from insightmesh import resilience
from insightmesh.conversation import thread_context
from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.conversation.threads import ThreadState
from insightmesh.slack import client as slack_client
from insightmesh.slack import conversations, history, profiles
from insightmesh_local.slack_sandbox import SlackSandbox

TEAM = "T0THREADS"
ANN, BOB, CY = "U0ANN", "U0BOB", "U0CY"
CHANNEL, SALES, OTHER = "C0TEAM", "C0SALES", "C0OTHER"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackSandbox]:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-threads")
    for reset in (slack_client.reset_for_tests, conversations.reset_for_tests, profiles.clear_cache,
                  resilience._breakers.clear):
        reset()
    with SlackSandbox(port=0, team_id=TEAM) as stand_in:
        monkeypatch.setenv("SLACK_API_URL", stand_in.url)
        stand_in.add_users({"id": ANN, "name": "ann", "real_name": "Ann Archer", "display_name": "Ann"},
                           {"id": BOB, "name": "bob", "real_name": "Bob Baker", "display_name": ""},
                           {"id": CY, "name": "cy", "real_name": "Cy Cole", "display_name": "Cy"})
        yield stand_in
    slack_client.reset_for_tests()
    conversations.reset_for_tests()
    profiles.clear_cache()


def say(sandbox: SlackSandbox, user: str, text: str, *, channel: str = CHANNEL, thread_ts: str | None = None) -> str:
    return str(sandbox.add_user_message(channel=channel, user=user, text=text, thread_ts=thread_ts)["ts"])


def request(text: str, ts: str, thread_ts: str | None, *, channel: str = CHANNEL, user: str = ANN,
            channel_type: str = "channel") -> ConversationRequest:
    return ConversationRequest(kind=RequestKind.MESSAGE, request_id=f"msg:{TEAM}:{channel}:{ts}", team_id=TEAM,
                               channel_id=channel, channel_type=channel_type, user_id=user, text=text, ts=ts,
                               thread_ts=thread_ts)


def human_thread(sandbox: SlackSandbox) -> tuple[str, str]:
    """A thread people wrote, the bot's placeholder in it, then Ann's mention: (parent ts, mention ts)."""
    parent = say(sandbox, BOB, "Launch plan for <#C0SALES|sales>: Tuesday or Thursday?")
    say(sandbox, CY, "Thursday, the release train leaves Wednesday", thread_ts=parent)
    say(sandbox, BOB, "Agreed with <@U0CY>: we ship Thursday at 10:00", thread_ts=parent)
    mention = say(sandbox, ANN, "<@UBOTLOCAL> what did we decide above?", thread_ts=parent)
    WebClient(base_url=sandbox.url, token="xoxb-threads").chat_postMessage(  # the worker's placeholder
        channel=CHANNEL, thread_ts=parent, text="Thinking…")
    return parent, mention


def test_a_mention_in_a_human_thread_gets_the_thread_with_names(sandbox: SlackSandbox) -> None:
    parent, mention = human_thread(sandbox)

    context = thread_context.for_prompt(request("what did we decide above?", mention, parent), ThreadState(key="k"),
                                        private=False)

    assert context.refusal is None and context.summary is not None
    transcript = context.summary.split("\n", 1)[1]
    assert transcript.splitlines() == [
        "Bob Baker: Launch plan for #sales: Tuesday or Thursday?",
        "Cy Cole: Thursday, the release train leaves Wednesday",
        "Bob Baker: Agreed with @Cy Cole: we ship Thursday at 10:00",
    ]  # the question itself and the bot's placeholder are left out
    assert len(sandbox.calls("users.info")) == 2  # one per distinct person (Bob, Cy), then the cache


def test_the_thread_is_paged_with_slacks_cursors(sandbox: SlackSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    parent, mention = human_thread(sandbox)
    monkeypatch.setattr(history, "PAGE_SIZE", 2)

    transcript = history.read_thread(CHANNEL, parent, history.Bounds(50, 10_000), history.profile_names(TEAM),
                                     skip_ts=(mention,))

    calls = sandbox.calls("conversations.replies")
    assert len(calls) == 3 and [bool(call["args"].get("cursor")) for call in calls] == [False, True, True]
    assert [line.author for line in transcript.lines] == ["Bob Baker", "Cy Cole", "Bob Baker", "InsightMesh (app)"]


def test_thread_memory_is_the_source_once_the_bot_has_been_part_of_the_thread(sandbox: SlackSandbox) -> None:
    parent, mention = human_thread(sandbox)
    remembered = ThreadState(key="k", history=[{"role": "user", "content": "hi"},
                                               {"role": "assistant", "content": "hello"}], summary="earlier")

    context = thread_context.for_prompt(request("and then?", mention, parent), remembered, private=False)

    assert context.summary == "earlier"
    assert sandbox.calls("conversations.replies") == []


def test_a_top_level_mention_reads_nothing(sandbox: SlackSandbox) -> None:
    ts = say(sandbox, ANN, "<@UBOTLOCAL> hello")

    assert thread_context.for_prompt(request("hello", ts, ts), ThreadState(key="k"), private=False).summary is None
    assert sandbox.calls("conversations.replies") == []


def test_an_unreadable_thread_is_answered_without_it(sandbox: SlackSandbox) -> None:
    parent, mention = human_thread(sandbox)
    sandbox.fail("conversations.replies", "error", error="channel_not_found")

    context = thread_context.for_prompt(request("what did we decide?", mention, parent), ThreadState(key="k"),
                                        private=False)

    assert context == thread_context.PromptContext(None)


# -- channel summaries --------------------------------------------------------------------------------

def sales_day(sandbox: SlackSandbox) -> None:
    sandbox.set_channel(SALES, [ANN, BOB], name="sales")
    first = say(sandbox, BOB, "Acme signed the renewal", channel=SALES)
    say(sandbox, ANN, "great, the thread reply is not history", channel=SALES, thread_ts=first)
    say(sandbox, ANN, "Globex wants a discount", channel=SALES)


def summarise(sandbox: SlackSandbox, *, channel: str, user: str = ANN, channel_type: str = "channel",
              private: bool = False) -> thread_context.PromptContext:
    ts = say(sandbox, user, "<@UBOTLOCAL> summarise <#C0SALES|sales> today", channel=channel)
    return thread_context.for_prompt(request("summarise <#C0SALES|sales> today", ts, ts, channel=channel, user=user,
                                             channel_type=channel_type), ThreadState(key="k"), private=private)


def test_a_channel_is_summarised_in_itself_from_its_history(sandbox: SlackSandbox) -> None:
    sales_day(sandbox)

    context = summarise(sandbox, channel=SALES)

    assert context.refusal is None and context.summary is not None
    assert context.summary.splitlines()[1:] == ["Bob Baker: Acme signed the renewal",
                                                "Ann Archer: Globex wants a discount"]  # not the question
    assert "today (since 00:00 UTC)" in context.summary.splitlines()[0]
    oldest = sandbox.calls("conversations.history")[0]["args"]["oldest"]
    assert float(oldest) > 0


def test_a_dm_asker_who_is_a_member_gets_the_summary(sandbox: SlackSandbox) -> None:
    sales_day(sandbox)

    context = summarise(sandbox, channel=f"D{ANN}", channel_type="im")

    assert context.refusal is None and "Globex wants a discount" in (context.summary or "")


def test_an_asker_who_is_not_a_member_is_refused_and_nothing_is_read(sandbox: SlackSandbox) -> None:
    sales_day(sandbox)

    context = summarise(sandbox, channel=f"D{CY}", user=CY, channel_type="im")

    assert context.refusal is not None and "not a member of #sales" in context.refusal
    assert sandbox.calls("conversations.history") == []


def test_a_channel_the_bot_is_not_in_is_refused(sandbox: SlackSandbox) -> None:
    sales_day(sandbox)
    sandbox.set_channel(SALES, [ANN, BOB], name="sales", bot_member=False)

    context = summarise(sandbox, channel=f"D{ANN}", channel_type="im")

    assert context.refusal is not None and "Invite me" in context.refusal
    assert sandbox.calls("conversations.history") == []


def test_asked_where_someone_cannot_read_the_channel_it_is_refused_there(sandbox: SlackSandbox) -> None:
    sales_day(sandbox)
    sandbox.set_channel(OTHER, [ANN, CY], name="other")  # Cy is not in #sales

    refused = summarise(sandbox, channel=OTHER)
    sandbox.set_channel(OTHER, [ANN, BOB], name="other")  # everyone here is in #sales
    conversations.reset_for_tests()
    allowed = summarise(sandbox, channel=OTHER)

    assert refused.refusal is not None and "Not everyone in this conversation can read #sales" in refused.refusal
    assert allowed.refusal is None and "Acme signed the renewal" in (allowed.summary or "")


def test_an_answer_only_the_asker_sees_may_summarise_from_anywhere(sandbox: SlackSandbox) -> None:
    sales_day(sandbox)
    sandbox.set_channel(OTHER, [ANN, CY], name="other")

    assert summarise(sandbox, channel=OTHER, private=True).refusal is None


def test_in_the_assistant_container_this_channel_is_the_one_the_user_is_looking_at(sandbox: SlackSandbox) -> None:
    sales_day(sandbox)
    ts = say(sandbox, ANN, "summarise this channel today", channel=f"D{ANN}")
    looking_at_sales = ThreadState(key="k", assistant=True, context_channel=SALES)

    context = thread_context.for_prompt(request("summarise this channel today", ts, ts, channel=f"D{ANN}",
                                                channel_type="im"), looking_at_sales, private=False)
    elsewhere = thread_context.for_prompt(request("summarise this channel today", ts, ts, channel=f"D{ANN}",
                                                  channel_type="im"), ThreadState(key="k"), private=False)

    assert context.refusal is None and "Globex wants a discount" in (context.summary or "")
    assert elsewhere.summary is None  # no channel in view: nothing read
    assert [call["args"]["channel"] for call in sandbox.calls("conversations.history")] == [SALES]


# -- the sandbox's conversations.history, as Slack answers it --------------------------------------

def test_history_is_newest_first_paged_and_refused_where_the_bot_is_not(sandbox: SlackSandbox) -> None:
    sales_day(sandbox)
    client = WebClient(base_url=sandbox.url, token="xoxb-threads")

    first = client.conversations_history(channel=SALES, limit=1)
    second = client.conversations_history(channel=SALES, limit=1, cursor=first["response_metadata"]["next_cursor"])
    texts: list[Any] = [first["messages"][0]["text"], second["messages"][0]["text"]]

    assert texts == ["Globex wants a discount", "Acme signed the renewal"]
    assert first["has_more"] is True and second["has_more"] is False
    assert second["messages"][0]["reply_count"] == 1
    sandbox.set_channel("C0PUBLIC", [ANN], bot_member=False)
    sandbox.set_channel("G0SECRET", [ANN], kind="private", bot_member=False)
    for channel, error in (("C0PUBLIC", "not_in_channel"), ("G0SECRET", "channel_not_found")):
        with pytest.raises(SlackApiError) as refused:
            client.conversations_history(channel=channel)
        assert refused.value.response["error"] == error
    with pytest.raises(SlackApiError) as bad_cursor:
        client.conversations_history(channel=SALES, cursor="bm9wZQ==")
    assert bad_cursor.value.response["error"] == "invalid_cursor"
