"""`insightmesh chat`'s /thread: other people's messages in the chat's thread, in the sandbox (so
conversations.replies returns them, with their names from users.info) and sent as Slack's message
events, before the chat's user mentions the bot in that thread."""

from __future__ import annotations

from slack_sdk import WebClient

from tests.unit.test_chat_cli import bot, chat_args, converse, sandbox  # noqa: F401 - the fixtures


def test_thread_posts_as_other_people_then_the_mention_lands_in_their_thread(bot, sandbox):  # noqa: F811
    args = chat_args("--channel", "C0TEAM", port=bot.port, sandbox_url=sandbox.url)

    status, output = converse(args, ["/thread bob Launch on Tuesday or Thursday?",
                                     "/thread U0CY Thursday: the release train leaves Wednesday",
                                     "@insightmesh what did we decide above?"])

    assert status == 0 and "insightmesh> You asked: what did we decide above?" in output
    people = [m for m in sandbox.messages(channel="C0TEAM") if not m["is_bot"]]
    parent = people[0]["ts"]
    assert [(m["text"], m["thread_ts"]) for m in people] == [
        ("Launch on Tuesday or Thursday?", None),
        ("Thursday: the release train leaves Wednesday", parent),
        ("<@UBOTLOCAL> what did we decide above?", parent)]
    assert people[1]["user"] == "U0CY" and people[2]["user"] == "U0TESTER"
    client = WebClient(base_url=sandbox.url, token="xoxb-chat-test")
    assert client.users_info(user=people[0]["user"])["user"]["real_name"] == "bob"  # a name: a sandbox user
    replies = client.conversations_replies(channel="C0TEAM", ts=parent)["messages"]
    assert [m["text"] for m in replies][:3] == [m["text"] for m in people]
    events = bot.events()
    assert [(e["type"], e["user"], e.get("thread_ts")) for e in events[:2]] == [
        ("message", people[0]["user"], None), ("message", "U0CY", parent)]
    mention = next(e for e in events if e["type"] == "app_mention")
    assert mention["thread_ts"] == parent


def test_thread_explains_its_usage_and_needs_a_channel(bot, sandbox):  # noqa: F811
    in_dm = chat_args(port=bot.port, sandbox_url=sandbox.url)
    _, dm_output = converse(in_dm, ["/thread bob hello", "/thread"])
    assert "a DM with the bot holds only you and the bot" in dm_output
    assert "usage: /thread <user id or name> <text>" in dm_output
    assert bot.events() == [] and sandbox.messages() == []
