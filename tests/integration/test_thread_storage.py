"""Thread state past DynamoDB's 400 KB (conversation.threads), and a save that fails after the
reply (conversation.worker): moto tables from the template, the Slack sandbox on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from pynamodb.exceptions import PutError

from insightmesh import resilience
from insightmesh.conversation import replies, threads, worker
from insightmesh.conversation.models import ThreadRecord, item_size
from insightmesh.conversation.requests import ConversationRequest, RequestKind, message_request_id, thread_key
from insightmesh.observability import get_logger
from insightmesh.slack import client as slack_client
from insightmesh_local.slack_sandbox import SlackSandbox

TEAM, CHANNEL = "T0SIZE", "C0SIZE"
KEY = thread_key(TEAM, CHANNEL, "1700000000.000100")


def raw_items(table: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = boto3.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
    return found


def big_thread() -> threads.ThreadState:
    """Five shared files of Cyrillic, CJK and emoji text, and a long MEDDIC session."""
    alphabet = "Привет мир 你好世界 😀 "
    files = [{"id": f"F{i}", "name": f"отчёт-{i}.docx", "text": (alphabet * 3000)[:30_000]} for i in range(5)]
    notes = [f"Встреча {i}: " + "бюджет утверждён CFO, 预算已批准 " * 20 for i in range(300)]
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": ("ü" + "漢" * 3) * 1000}
               for i in range(12)]
    return threads.ThreadState(key=KEY, exists=True, bot_replied=True, sticky_agent="meddic", history=history,
                               summary="Σ" * 10_000, agent_state={"meddic": {"notes": notes, "known": {}}},
                               files=files)


def test_a_thread_with_big_non_ascii_files_and_long_meddic_notes_saves_and_loads(tables):
    state = big_thread()
    old_size = item_size(ThreadRecord(f"thread#{KEY}", "thread", history=state.history, files=state.files,
                                      agent_state=state.agent_state, summary=state.summary).serialize())
    # pynamodb's JSONAttribute and files inline: what the old save attempted, and DynamoDB refused.
    assert old_size > 400 * 1024

    threads.save_thread(state)
    loaded = threads.load_thread(KEY)

    table = tables["CONVERSATIONS_TABLE"]
    [thread_item] = [i for i in raw_items(table) if i["sk"]["S"] == "thread"]
    assert item_size(thread_item) <= threads.MAX_THREAD_ITEM_BYTES
    assert "files" not in thread_item
    file_items = [i for i in raw_items(table) if i["sk"]["S"].startswith("thread#file#")]
    assert len(file_items) == len(loaded.files) >= 3
    assert [f["id"] for f in loaded.files] == [f["id"] for f in state.files]  # oldest dropped first, order kept
    assert loaded.files[-1]["text"].startswith("Привет мир 你好世界 😀")
    assert loaded.sticky_agent == "meddic" and len(loaded.summary or "") == threads.MAX_SUMMARY_CHARS
    assert loaded.agent_state["meddic"]["notes"][-1].startswith("Встреча 299")
    assert loaded.history[-1] == state.history[-1]


def test_loading_is_one_query_and_an_unchanged_save_writes_only_the_thread_item(tables, dynamo_calls):
    threads.save_thread(big_thread())

    loaded: list[threads.ThreadState] = []
    assert dynamo_calls.during(lambda: loaded.append(threads.load_thread(KEY))) == [
        f"Query:{tables['CONVERSATIONS_TABLE']}"]
    state = loaded[0]
    state.history.append({"role": "user", "content": "one more"})
    assert dynamo_calls.during(lambda: threads.save_thread(state)) == [f"PutItem:{tables['CONVERSATIONS_TABLE']}"]


def test_a_new_file_is_one_batch_write_and_a_dropped_file_loses_its_item(tables, dynamo_calls):
    state = threads.ThreadState(key=KEY, files=[{"id": f"F{i}", "name": "a", "text": "x"} for i in range(5)])
    threads.save_thread(state)
    state = threads.load_thread(KEY)
    state.files.append({"id": "F5", "name": "b", "text": "new"})
    del state.files[0]

    calls = dynamo_calls.during(lambda: threads.save_thread(state))

    # (BatchWriteItem names its tables inside RequestItems: the recorder shows "-")
    assert calls == ["BatchWriteItem:-", f"PutItem:{tables['CONVERSATIONS_TABLE']}"]
    assert [f["id"] for f in threads.load_thread(KEY).files] == ["F1", "F2", "F3", "F4", "F5"]


def test_files_kept_inline_by_an_older_version_are_still_read_and_moved_out(tables):
    ThreadRecord(f"thread#{KEY}", "thread", bot_replied=True,
                 files=[{"id": "F0", "name": "old.txt", "text": "inline text"}]).save()

    state = threads.load_thread(KEY)
    assert state.files == [{"id": "F0", "name": "old.txt", "text": "inline text"}]
    threads.save_thread(state)

    [thread_item] = [i for i in raw_items(tables["CONVERSATIONS_TABLE"]) if i["sk"]["S"] == "thread"]
    assert "files" not in thread_item
    assert threads.load_thread(KEY).files == [{"id": "F0", "name": "old.txt", "text": "inline text"}]


# -- the worker: a save that fails after the reply -------------------------------------------------------

@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tables: dict[str, str]) -> Iterator[SlackSandbox]:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-size")
    slack_client.reset_for_tests()
    resilience._breakers.clear()
    # The shared log handler writes to the stream it was given; a test that captures stdout
    # (capsys) must not leave it holding that capture's stream, closed once the test ends.
    handler = get_logger().registered_handler
    stream = handler.stream
    with SlackSandbox(port=0, team_id=TEAM) as sandbox:
        monkeypatch.setenv("SLACK_API_URL", sandbox.url)
        yield sandbox
    handler.stream = stream
    slack_client.reset_for_tests()
    resilience._breakers.clear()


def test_a_save_that_fails_after_the_reply_still_gives_one_reply_and_no_redelivery(world, monkeypatch, capsys):
    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise PutError("Failed to put item", cause=None)

    monkeypatch.setattr(ThreadRecord, "save", refuse)
    ts = world.add_user_message(channel=CHANNEL, user="U0ALICE", text="<@UBOTLOCAL> hello")["ts"]
    request = ConversationRequest(kind=RequestKind.MESSAGE, request_id=message_request_id(TEAM, CHANNEL, ts),
                                  team_id=TEAM, channel_id=CHANNEL, channel_type="channel", user_id="U0ALICE",
                                  text="<@UBOTLOCAL> hello", ts=ts, thread_ts=ts)

    worker.process_message(request)  # returns: the SQS message is deleted, never redelivered

    def shown() -> list[dict[str, Any]]:  # the placeholder a streamed answer replaced is deleted
        return [m for m in world.messages(channel=CHANNEL, thread_ts=ts) if m.get("is_bot") and not m.get("deleted")]

    bot = shown()
    assert len(bot) == 1 and "Thinking" not in bot[0]["text"] and not bot[0].get("streaming")
    claim = replies.claim(request)
    assert claim.record.status == replies.Status.ANSWERED
    worker.process_message(request)  # a redelivery all the same would post nothing
    assert len(shown()) == 1
    assert '"ThreadSaveFailed"' in capsys.readouterr().out


def test_file_items_are_refreshed_so_they_expire_with_an_active_thread(tables):
    threads.save_thread(threads.ThreadState(key=KEY, files=[{"id": "F1", "name": "a", "text": "first"},
                                                            {"id": "F2", "name": "b", "text": "second"}]))
    table = tables["CONVERSATIONS_TABLE"]
    client = boto3.client("dynamodb")
    old = int(time.time()) + 20 * 24 * 3600  # written ten days ago: 20 days left
    client.update_item(TableName=table, Key={"pk": {"S": f"thread#{KEY}"}, "sk": {"S": "thread#file#F1"}},
                       UpdateExpression="SET expires_at = :old", ExpressionAttributeValues={":old": {"N": str(old)}})

    state = threads.load_thread(KEY)
    state.history.append({"role": "user", "content": "a month later"})
    threads.save_thread(state)

    expiries = {i["sk"]["S"]: int(i["expires_at"]["N"]) for i in raw_items(table) if "file" in i["sk"]["S"]}
    assert expiries["thread#file#F1"] > old + 9 * 24 * 3600
    assert [f["id"] for f in threads.load_thread(KEY).files] == ["F1", "F2"]  # the order is kept
