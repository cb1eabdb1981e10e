"""Never silent, end to end: through `insightmesh dev`, a message whose reply Slack keeps refusing
(HTTP 500 on chat.update) is retried, dead-lettered after ``ConversationMaxReceiveCount``
receives, and conversation_dlq turns its "Thinking…" placeholder into an apology carrying the
request's reference id — exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from insightmesh_local import slack_signing as slack
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.e2e.dev_server import DevServer, post_event, running
from tests.helpers import wait_for

SECRET = "e2e-dlq-signing-secret"
TEAM = slack.DEFAULT_TEAM_ID
MAX_RECEIVES = 2
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def dev(sandbox: SlackSandbox, dev_logs: Path) -> Iterator[DevServer]:
    with running(env={
        "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-e2e-dlq", "SLACK_API_URL": sandbox.url,
        "LLM_PROVIDER": "offline", "WORKER_TIMEOUT": "10", "CONVERSATION_VISIBILITY_TIMEOUT": "12",
        "CONVERSATION_MAX_RECEIVE_COUNT": str(MAX_RECEIVES),
    }, log_dir=dev_logs) as server:
        yield server


def test_a_message_the_worker_never_manages_to_answer_gets_one_apology_with_its_reference(dev, sandbox):
    # Every worker attempt posts (or reuses) its placeholder, then Slack answers its final
    # chat.update with HTTP 500: the worker fails, SQS redelivers, and after MAX_RECEIVES receives
    # moves the message to the DLQ. Only the worker's updates fail; the apology's edit goes through.
    # The client retries a 5xx on chat.update twice in-process, so each receive makes three calls.
    sandbox.fail("chat.update", "error", count=MAX_RECEIVES * 3, status=500, error="internal_error")
    text = f"<@{slack.DEFAULT_BOT_USER_ID}> will you ever answer?"
    ts = sandbox.add_user_message(channel="C0DLQE2E", user="U0ALICE", text=text)["ts"]  # Slack has it
    reference = "e2e-dlq-reference-1"
    with dev.http() as http:
        response = post_event(http, SECRET, slack.app_mention_event("U0ALICE", "C0DLQE2E", text, ts),
                              headers={"X-Request-Id": reference})
    assert response.status_code == 200, response.text

    def bot_messages() -> list[dict]:
        return [m for m in sandbox.messages(channel="C0DLQE2E", thread_ts=ts)
                if m.get("is_bot") and not m.get("deleted")]  # a streamed answer deletes its placeholder

    apology = wait_for(lambda: [m for m in bot_messages() if reference in m["text"]], timeout=120, interval=0.5,
                       what="the apology in the thread")
    time.sleep(4.0)  # room for a duplicate to show up, were there one
    messages = bot_messages()
    assert len(messages) == 1, messages  # the placeholder, edited into the apology: nothing else
    assert messages[0]["ts"] == apology[0]["ts"] and "Thinking" not in messages[0]["text"]
    assert "Sorry" in messages[0]["text"] and f"`{reference}`" in messages[0]["text"]
    failed_updates = [c for c in sandbox.calls("chat.update") if c["status"] == 500]
    assert len(failed_updates) == MAX_RECEIVES * 3

    dynamodb = dev.aws("dynamodb")
    request_id = f"msg:{TEAM}:C0DLQE2E:{ts}"
    key = {"pk": {"S": f"thread#{TEAM}#C0DLQE2E#{ts}"}, "sk": {"S": f"deadletter#{request_id}"}}
    failure = dynamodb.get_item(TableName="insightmesh-dev-ConversationsTable", Key=key, ConsistentRead=True)["Item"]
    assert failure["reason"]["S"] == "failed_streaming"  # the answer was streamed; its final edit failed
    assert failure["attempts"]["N"] == str(MAX_RECEIVES)
    assert failure["reference"]["S"] == reference and failure["apology"]["S"] == "edited"
    key["sk"] = {"S": f"request#{request_id}"}
    request = dynamodb.get_item(TableName="insightmesh-dev-ConversationsTable", Key=key, ConsistentRead=True)["Item"]
    assert request["status"]["S"] == "answered"
