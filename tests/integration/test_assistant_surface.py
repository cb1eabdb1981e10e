"""The AI app surface (Slack's assistant container), issue 14 §1: the sandbox's assistant.threads.*
methods as slack_sdk calls them, and the worker in-process (tables in moto, Slack as the sandbox
over loopback, the offline LLM) greeting a new assistant thread, keeping its context, and
answering in it with a title and statuses."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from insightmesh.agents.catalog import ADMINS, AgentRecord, seed_agents
from insightmesh.agents.registry import builtin_definitions
from insightmesh.conversation import replies, threads, worker
from insightmesh.conversation.intake import assistant_request
from insightmesh.conversation.requests import ConversationRequest, RequestKind, message_request_id, thread_key
from insightmesh.slack import assistant as slack_assistant
from insightmesh_local import local_auth
from insightmesh_local.slack_sandbox import SlackSandbox
from insightmesh_local.slack_sandbox import assistant as sandbox_assistant
from insightmesh_local.slack_signing import assistant_thread_event, event_callback, sign
from tests.integration.conftest import DynamoCalls, load_handler
from tests.slack_fixtures import conversation_sandbox

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).parents[2]
TEAM = "TLOCAL0001"
ALICE = "U0ALICE01"
DM = f"D{ALICE}"
_ts = itertools.count(1)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tables: dict[str, str]) -> Iterator[SlackSandbox]:
    with conversation_sandbox(monkeypatch, "xoxb-assistant") as sandbox:
        sandbox.add_users({"id": ALICE, "name": "alice", "real_name": "Alice Archer", "display_name": "Alice"})
        yield sandbox


def opened(sandbox: SlackSandbox, kind: str = slack_assistant.THREAD_STARTED, *, thread_ts: str | None = None,
           context: str | None = "C0SALES01") -> ConversationRequest:
    """The container opened (or its context changed), as the ingress queues it."""
    if thread_ts is None:
        thread_ts = sandbox_assistant.start_thread(sandbox.state, user=ALICE, context_channel_id=context)["thread_ts"]
    payload = event_callback(TEAM, "ALOCAL0001", assistant_thread_event(kind, ALICE, DM, thread_ts,
                                                                        context_channel_id=context, team=TEAM),
                             event_id=f"Ev{next(_ts):08d}")
    event = slack_assistant.assistant_event(payload)
    assert event is not None
    return assistant_request(event, correlation_id="test")


def question(sandbox: SlackSandbox, text: str, thread_ts: str) -> ConversationRequest:
    ts = str(sandbox.add_user_message(channel=DM, user=ALICE, text=text, thread_ts=thread_ts)["ts"])
    return ConversationRequest(kind=RequestKind.MESSAGE, request_id=message_request_id(TEAM, DM, ts),
                               team_id=TEAM, channel_id=DM, channel_type="im", user_id=ALICE, text=text, ts=ts,
                               thread_ts=thread_ts)


def bot_messages(sandbox: SlackSandbox, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in sandbox.messages(DM, thread_ts) if m["is_bot"] and not m["ephemeral"]]


def thread_of(sandbox: SlackSandbox, thread_ts: str) -> dict[str, Any]:
    [found] = sandbox_assistant.describe(sandbox.state, DM, thread_ts)
    return found


# -- the sandbox ----------------------------------------------------------------------------------------

def test_the_sandbox_answers_the_assistant_methods_as_slack_does_and_records_them(env: SlackSandbox) -> None:
    client = WebClient(base_url=env.url, token="xoxb-test", timeout=5, retry_handlers=[])
    thread = sandbox_assistant.start_thread(env.state, user=ALICE, context_channel_id="C0SALES01")
    ts = thread["thread_ts"]

    client.assistant_threads_setStatus(channel_id=DM, thread_ts=ts, status="is thinking…")
    client.assistant_threads_setSuggestedPrompts(channel_id=DM, thread_ts=ts, title="Try",
                                                 prompts=[{"title": "Help", "message": "help"}])
    client.assistant_threads_setTitle(channel_id=DM, thread_ts=ts, title="Pricing")

    with httpx.Client(base_url=env.root, timeout=5, headers={local_auth.HEADER: env.secret}) as control:
        [seen] = control.get("/_sandbox/assistant", params={"channel": DM}).json()["threads"]
        assert control.post("/_sandbox/assistant/context", json={"channel": DM, "thread_ts": ts,
                                                                 "context_channel_id": "C0OTHER01"}).status_code == 200
    assert seen["status"] == "is thinking…" and seen["title"] == "Pricing" and seen["prompts_title"] == "Try"
    assert seen["prompts"] == [{"title": "Help", "message": "help"}]
    assert thread_of(env, ts)["context_channel_id"] == "C0OTHER01"
    refusals = {
        "channel_not_found": lambda: client.assistant_threads_setStatus(channel_id="C0SALES01", thread_ts=ts,
                                                                        status="x"),
        "invalid_thread_ts": lambda: client.assistant_threads_setTitle(channel_id=DM, thread_ts="1.000001",
                                                                       title="x"),
        "invalid_arguments": lambda: client.assistant_threads_setSuggestedPrompts(
            channel_id=DM, thread_ts=ts, prompts=[{"title": f"p{i}", "message": "m"} for i in range(5)]),
    }
    for error, call in refusals.items():
        with pytest.raises(SlackApiError) as refused:
            call()
        assert refused.value.response["error"] == error
    assert [c["ok"] for c in env.calls("assistant.threads.setStatus")] == [True, False]


def test_the_status_skips_repeats_stops_at_its_cap_always_clears_and_never_fails_a_turn(env: SlackSandbox) -> None:
    ts = sandbox_assistant.start_thread(env.state, user=ALICE)["thread_ts"]
    status = slack_assistant.ThreadStatus(DM, ts)

    for _ in range(3):
        status("is thinking…")
    for step in range(30):
        status(f"step {step}")
    status.clear()
    env.fail("assistant.threads.setStatus", "error", error="invalid_thread_ts")
    slack_assistant.ThreadStatus(DM, ts)("refused, and only logged")

    sent = [c["args"]["status"] for c in env.calls("assistant.threads.setStatus") if c["ok"]]
    assert sent[0] == "is thinking…" and sent.count("is thinking…") == 1
    assert len(sent) == slack_assistant.MAX_STATUS_CALLS + 1 and sent[-1] == ""


# -- the worker -----------------------------------------------------------------------------------------

def test_a_new_assistant_thread_is_greeted_once_with_prompts_from_the_agents_the_user_may_use(
        env: SlackSandbox) -> None:
    seed_agents(builtin_definitions())
    AgentRecord.get("meddic").update(actions=AgentRecord.visibility_actions(ADMINS))  # Alice is no admin
    request = opened(env)
    ts = str(request.thread_ts)

    worker.process(request)
    worker.process(request)  # SQS redelivers it: still one greeting

    [greeting] = bot_messages(env, ts)
    assert greeting["text"].startswith("Hi Alice!")
    prompts = thread_of(env, ts)["prompts"]
    messages = [p["message"] for p in prompts]
    assert 1 < len(prompts) <= 4 and messages[-1] == "help"
    assert not any(m.startswith("meddic") for m in messages)  # admins only: not offered to Alice
    state = threads.load_thread(thread_key(TEAM, DM, ts))
    assert state.assistant and state.context_channel == "C0SALES01"


def test_an_agent_the_user_may_use_is_offered_by_its_name(env: SlackSandbox) -> None:
    seed_agents(builtin_definitions())  # meddic is public here
    request = opened(env)

    worker.process(request)

    messages = [p["message"] for p in thread_of(env, str(request.thread_ts))["prompts"]]
    assert any(m.startswith("meddic ") for m in messages)


def test_the_context_changed_event_keeps_the_channel_the_user_looks_at(env: SlackSandbox) -> None:
    started = opened(env)
    worker.process(started)
    ts = str(started.thread_ts)

    worker.process(opened(env, slack_assistant.CONTEXT_CHANGED, thread_ts=ts, context="C0ROADMAP"))

    assert threads.load_thread(thread_key(TEAM, DM, ts)).context_channel == "C0ROADMAP"
    assert len(bot_messages(env, ts)) == 1  # nothing posted for a context change


def test_a_question_in_the_container_gets_a_title_statuses_and_one_answer(env: SlackSandbox) -> None:
    seed_agents(builtin_definitions())
    started = opened(env)
    worker.process(started)
    ts = str(started.thread_ts)

    asked = [question(env, "What is our   refund policy\nfor annual plans?", ts),
             question(env, "And for monthly plans?", ts)]
    for request in asked:
        worker.process(request)

    thread = thread_of(env, ts)
    assert thread["title"] == "What is our refund policy for annual plans?"  # the first question, one line
    assert [c["args"]["title"] for c in env.calls("assistant.threads.setTitle")] == [thread["title"]]
    statuses = thread["statuses"]
    assert statuses[0] == "is thinking…" and "Searching the knowledge base…" in statuses
    assert statuses[-1] == "" and thread["status"] == ""  # cleared once the answer is shown
    assert all(replies.claim(request).record.status == replies.Status.ANSWERED for request in asked)
    assert len(bot_messages(env, ts)) > 1  # the greeting, then the answers (the worker's one reply path)
    context = threads.load_thread(thread_key(TEAM, DM, ts))
    assert context.assistant and context.context_channel == "C0SALES01"  # kept by the worker's saves


def test_a_dm_outside_the_container_gets_no_assistant_calls(env: SlackSandbox) -> None:
    ts = str(env.add_user_message(channel=DM, user=ALICE, text="hello")["ts"])
    worker.process(ConversationRequest(kind=RequestKind.MESSAGE, request_id=message_request_id(TEAM, DM, ts),
                                       team_id=TEAM, channel_id=DM, channel_type="im", user_id=ALICE,
                                       text="hello", ts=ts, thread_ts=ts))

    assert bot_messages(env, ts)  # answered as before
    assert not [c for c in env.calls() if c["method"].startswith("assistant.")]


# -- the ingress ----------------------------------------------------------------------------------------

def test_the_ingress_acks_an_assistant_event_with_one_sqs_send_and_no_table_read(
        monkeypatch: pytest.MonkeyPatch, tables: dict[str, str], dynamo_calls: DynamoCalls) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "insightmesh-local-signing-secret")
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="conversations.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    monkeypatch.setenv("CONVERSATION_QUEUE_URL", queue)
    handler = load_handler(ROOT / "functions" / "slack_ingress" / "handler.py")
    sample = json.loads((ROOT / "events/slack_ingress/assistant_thread_started.json").read_text())
    headers = sign("insightmesh-local-signing-secret", sample["body"].encode())  # the sample's time is stale
    sample["headers"].update({"x-slack-request-timestamp": headers["X-Slack-Request-Timestamp"],
                              "x-slack-signature": headers["X-Slack-Signature"]})

    responses: list[dict[str, Any]] = []
    calls = dynamo_calls.during(lambda: responses.append(handler.lambda_handler(sample, None)))

    assert responses[0]["statusCode"] == 200 and calls == []  # no DynamoDB call on the ack path
    [message] = sqs.receive_message(QueueUrl=queue, AttributeNames=["MessageGroupId"],
                                    MaxNumberOfMessages=10)["Messages"]  # its one AWS call: the send
    queued = ConversationRequest.model_validate_json(message["Body"])
    assert queued.kind is RequestKind.ASSISTANT_THREAD and queued.context_channel_id == "C123SALES"
    assert message["Attributes"]["MessageGroupId"] == "TLOCAL0001:DU123ALICE:1795860001.000100"
