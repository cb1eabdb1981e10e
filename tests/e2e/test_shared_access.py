"""Who reads an answer decides what it may use, end to end through `insightmesh dev`.

Alice and Bob are in #general (the Slack sandbox answers conversations.members). A document is
shared with Alice alone; another with the sales group. Alice's channel question must not quote her
private document — in the reply or in the prompt the LLM stand-in receives — while the same
question in her DM does; Bob's follow-up in the channel thread never sees it either. A document
shared with a group that every channel member belongs to is quoted in the channel.
"""

from __future__ import annotations

import itertools

import pytest

from insightmesh_local import slack_signing as slack
from tests.e2e.dev_server import post_event, running, slack_llm_env
from tests.e2e.test_slack_conversations import bot_messages, is_final
from tests.helpers import wait_for

SECRET = "e2e-shared-access-secret"
TEAM = slack.DEFAULT_TEAM_ID
GENERAL, ALICE_DM = "C0GENERAL", "D0ALICE"
ALICE, BOB = "U0ALICE", "U0BOB"
PRIVATE_FACT = "ZEBRA-4471"
SALES_FACT = "twelve million euros"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
_ts = itertools.count(1)


def new_ts() -> str:
    return f"{1798000000 + next(_ts)}.{next(_ts):06d}"


@pytest.fixture(scope="module")
def sandbox(sandbox):
    sandbox.add_users({"id": ALICE, "real_name": "Alice Archer", "email": "alice@corp.example"},
                      {"id": BOB, "real_name": "Bob Baker", "email": "bob@corp.example"})
    sandbox.set_channel(GENERAL, [ALICE, BOB], name="general")
    sandbox.set_channel(ALICE_DM, [], kind="im", user=ALICE)
    return sandbox


@pytest.fixture(scope="module")
def dev(sandbox, llm, dev_logs):
    env = slack_llm_env(sandbox, llm, secret=SECRET,
                        bot_token="xoxb-e2e-shared",
                        CHANNEL_AUDIENCE_CACHE_SECONDS="0")
    with running(env=env, log_dir=dev_logs) as server:
        yield server


@pytest.fixture(scope="module")
def documents(dev, tmp_path_factory):
    private = tmp_path_factory.mktemp("alice-only")
    (private / "alice-bonus.md").write_text(
        f"# Bonus code\n\nAlice's personal bonus code is {PRIVATE_FACT}. Keep the bonus code confidential.\n")
    sales = tmp_path_factory.mktemp("sales")
    (sales / "pipeline.md").write_text(
        f"# Pipeline target\n\nThe Q3 pipeline target for the sales team is {SALES_FACT}.\n")
    for folder, acl in ((private, "user:alice@corp.example"), (sales, "group:sales@corp.example")):
        done = dev.cli("ingest", str(folder), "--acl", acl, timeout=120)
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def people(sandbox, http):
    """Alice and Bob have each talked to the bot once: the directory knows them."""
    for user in (ALICE, BOB):
        channel = f"D0{user}"
        sandbox.set_channel(channel, [], kind="im", user=user)
        ts = new_ts()
        post(http, slack.message_event(user, channel, "hello", ts, channel_type="im"))
        final_replies(sandbox, channel, ts, 1)


def post(http, event):
    response = post_event(http, SECRET, event)
    assert response.status_code == 200, response.text


def final_replies(sandbox, channel, thread, count):
    """The thread's final answers once there are ``count``: an answer outside a thread is the
    placeholder edited as the text streams (conversation.streaming), final only once its metadata
    says ``answered`` (test_slack_conversations.is_final), not at its first edit ("LLM: ")."""
    def done():
        replies = [m for m in bot_messages(sandbox, thread, channel=channel) if is_final(m)]
        return replies if len(replies) >= count else None
    return wait_for(done, timeout=60, what=f"{count} answer(s) in {channel} {thread}")


def prompt_of_last_call(llm) -> str:
    request = llm.chat_requests()[-1]
    return "\n".join(str(message.get("content")) for message in request.body["messages"])


def test_a_private_document_stays_out_of_the_channel_and_its_thread(sandbox, llm, http, documents, people):
    # Alice in #general: her private document is neither quoted nor put in the prompt.
    ts = new_ts()
    post(http, slack.app_mention_event(ALICE, GENERAL, f"<@{slack.DEFAULT_BOT_USER_ID}> what is my bonus code?", ts))
    reply = final_replies(sandbox, GENERAL, ts, 1)[-1]["text"]
    assert PRIVATE_FACT not in reply and "alice-bonus.md" not in reply
    assert PRIVATE_FACT not in prompt_of_last_call(llm)
    # ...but Alice alone is told, ephemerally, that a document only she can see may help.
    notes = wait_for(lambda: [m for m in sandbox.messages(channel=GENERAL)
                              if m.get("ephemeral") and "Only you can see" in m["text"]],
                     timeout=30, what="the private follow-up")
    assert "alice-bonus.md" in notes[-1]["text"] and PRIVATE_FACT not in notes[-1]["text"]
    follow_up = [c for c in sandbox.calls("chat.postEphemeral") if "Only you can see" in c["args"].get("text", "")]
    assert {c["args"]["user"] for c in follow_up} == {ALICE}

    # Bob follows up in the same thread: neither his reply nor his prompt carries it.
    post(http, slack.message_event(BOB, GENERAL, "and what did the document say about the bonus code?", new_ts(),
                                   thread_ts=ts, channel_type="channel"))
    replies = final_replies(sandbox, GENERAL, ts, 2)
    assert all(PRIVATE_FACT not in m["text"] for m in replies)
    assert PRIVATE_FACT not in prompt_of_last_call(llm)

    # The same question in Alice's DM uses her own access.
    dm = new_ts()
    post(http, slack.message_event(ALICE, ALICE_DM, "what is my bonus code?", dm, channel_type="im"))
    reply = final_replies(sandbox, ALICE_DM, dm, 1)[-1]["text"]
    assert "alice-bonus.md" in reply
    assert PRIVATE_FACT in prompt_of_last_call(llm)


def test_a_group_document_is_quoted_when_every_member_is_in_the_group(dev, sandbox, llm, http, documents, people):
    # A directory sync (as google_workspace_sync writes it) puts Alice and Bob in the sales group.
    dynamodb = dev.aws("dynamodb")

    def user_id(slack_id):
        item = dynamodb.get_item(TableName="insightmesh-dev-IdentitiesTable",
                                 Key={"identity_key": {"S": f"slack#{TEAM}:{slack_id}"}})["Item"]
        return item["user_id"]["S"]

    question = "what is the Q3 pipeline target for sales?"
    ts = new_ts()
    post(http, slack.app_mention_event(ALICE, GENERAL, f"<@{slack.DEFAULT_BOT_USER_ID}> {question}", ts))
    assert "pipeline.md" not in final_replies(sandbox, GENERAL, ts, 1)[-1]["text"]  # no one is in the group yet

    dynamodb.put_item(TableName="insightmesh-dev-GroupsTable", Item={
        "name": {"S": "gw-sales"}, "kind": {"S": "group"}, "email": {"S": "sales@corp.example"},
        "description": {"S": "Sales"}, "is_system": {"BOOL": False}})
    for slack_id in (ALICE, BOB):
        dynamodb.put_item(TableName="insightmesh-dev-MembershipsTable", Item={
            "group_name": {"S": "gw-sales"}, "user_id": {"S": user_id(slack_id)}})
    ts = new_ts()
    post(http, slack.app_mention_event(ALICE, GENERAL, f"<@{slack.DEFAULT_BOT_USER_ID}> {question}", ts))
    reply = final_replies(sandbox, GENERAL, ts, 1)[-1]["text"]
    assert "pipeline.md" in reply
    assert SALES_FACT in prompt_of_last_call(llm)
