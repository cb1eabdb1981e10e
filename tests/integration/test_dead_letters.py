"""conversation_dlq (insightmesh.conversation.dead_letters): a dead-lettered conversation message
ends in exactly one apology with a reference id — moto tables from the template and the Slack
sandbox on loopback."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from insightmesh import resilience
from insightmesh.conversation import dead_letters, replies, workspaces
from insightmesh.conversation.dead_letters import DeadLetter, handle
from insightmesh.conversation.models import DeadLetterRecord, RequestRecord
from insightmesh.conversation.requests import ConversationRequest, RequestKind, message_request_id
from insightmesh.slack import client as slack_client
from insightmesh_local.slack_sandbox import SlackSandbox

ROOT = Path(__file__).parents[2]
TEAM, CHANNEL, USER = "T0DLQ", "C0DLQ", "U0ALICE"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, tables: dict[str, str]) -> Iterator[SlackSandbox]:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-dlq")
    slack_client.reset_for_tests()
    resilience._breakers.clear()
    with SlackSandbox(port=0, team_id=TEAM) as stand_in:
        monkeypatch.setenv("SLACK_API_URL", stand_in.url)
        yield stand_in
    slack_client.reset_for_tests()
    resilience._breakers.clear()


_counter = iter(range(1, 10_000))


def message(sandbox: SlackSandbox, *, correlation_id: str = "corr-dlq-1") -> ConversationRequest:
    thread_ts = sandbox.add_user_message(channel=CHANNEL, user=USER, text="<@UBOTLOCAL> a question")["ts"]
    return ConversationRequest(kind=RequestKind.MESSAGE, request_id=message_request_id(TEAM, CHANNEL, thread_ts),
                               team_id=TEAM, channel_id=CHANNEL, channel_type="channel", user_id=USER,
                               text="a question", ts=thread_ts, thread_ts=thread_ts, correlation_id=correlation_id)


def letter(request: ConversationRequest | str, receive_count: int = 1) -> DeadLetter:
    body = request if isinstance(request, str) else request.model_dump_json(exclude_none=True)
    return DeadLetter(message_id=f"m-{next(_counter)}", body=body, receive_count=receive_count)


def placeholder(sandbox: SlackSandbox, request: ConversationRequest) -> str:
    """What the worker did before it kept failing: claimed the request, posted "Thinking…"."""
    claim = replies.claim(request)
    for _ in range(4):
        replies.claim(request)  # four more deliveries, all failed
    replies.set_posting(claim.record)
    metadata = {"event_type": "insightmesh_reply",
                "event_payload": {"request_id": request.request_id, "status": "placeholder"}}
    ts = str(slack_client.call_slack(lambda c: c.chat_postMessage(channel=CHANNEL, thread_ts=request.thread_ts,
                                                                  text="_Thinking…_", metadata=metadata))["ts"])
    replies.set_placeholder(claim.record, ts)
    return ts


def bot_messages(sandbox: SlackSandbox, thread_ts: str | None) -> list[dict[str, Any]]:
    return [m for m in sandbox.messages(channel=CHANNEL, thread_ts=thread_ts) if m.get("is_bot")]


def request_item(request: ConversationRequest) -> RequestRecord:
    return RequestRecord.get(replies.request_pk(request), f"request#{request.request_id}", consistent_read=True)


def failure_item(request: ConversationRequest) -> DeadLetterRecord:
    return DeadLetterRecord.get(replies.request_pk(request), f"deadletter#{request.request_id}",
                                consistent_read=True)


def test_the_placeholder_becomes_an_apology_with_the_reference_and_the_request_is_answered(sandbox):
    request = message(sandbox)
    ts = placeholder(sandbox, request)

    outcome = handle(letter(request, receive_count=1))

    assert (outcome.reason, outcome.apology, outcome.reference) == ("failed_placeholder", "edited", "corr-dlq-1")
    [shown] = bot_messages(sandbox, request.thread_ts)
    assert shown["ts"] == ts and "Thinking" not in shown["text"]
    assert "Sorry" in shown["text"] and "`corr-dlq-1`" in shown["text"]
    stored = request_item(request)
    assert stored.status == replies.Status.ANSWERED and stored.reply_ts == ts
    failure = failure_item(request)
    assert (failure.reason, failure.request_status, failure.attempts, failure.apology) == (
        "failed_placeholder", "placeholder", 5, "edited")
    assert failure.reference == "corr-dlq-1" and failure.receive_count == 1 and failure.expires_at is not None


def test_a_redelivered_dead_letter_apologises_only_once(sandbox):
    request = message(sandbox)
    placeholder(sandbox, request)
    handle(letter(request))
    calls = len(sandbox.calls())

    again = handle(letter(request, receive_count=2))

    assert again.apology == "none"
    assert len(sandbox.calls()) == calls  # not a single Slack call
    assert failure_item(request).reason == "failed_placeholder"  # the first record stands
    assert len(bot_messages(sandbox, request.thread_ts)) == 1


def test_without_a_placeholder_the_apology_is_posted_in_the_thread(sandbox):
    request = message(sandbox, correlation_id="")

    outcome = handle(letter(request))

    assert (outcome.reason, outcome.apology) == ("never_claimed", "posted")
    [shown] = bot_messages(sandbox, request.thread_ts)
    assert shown["thread_ts"] == request.thread_ts and f"`{request.request_id}`" in shown["text"]
    assert request_item(request).status == replies.Status.ANSWERED
    assert failure_item(request).request_status is None


def test_a_placeholder_posted_but_not_recorded_is_found_by_its_metadata(sandbox):
    request = message(sandbox)
    ts = placeholder(sandbox, request)
    request_item(request).update(actions=[RequestRecord.status.set(replies.Status.POSTING),
                                          RequestRecord.placeholder_ts.remove()])

    outcome = handle(letter(request))

    assert (outcome.reason, outcome.apology) == ("failed_posting", "edited")
    [shown] = bot_messages(sandbox, request.thread_ts)
    assert shown["ts"] == ts and "corr-dlq-1" in shown["text"]


def test_an_edit_slack_refuses_falls_back_to_a_post_in_the_thread(sandbox):
    request = message(sandbox)
    placeholder(sandbox, request)
    sandbox.fail("chat.update", "error", error="cant_update_message")

    outcome = handle(letter(request))

    assert outcome.apology == "posted"
    apologies = [m for m in bot_messages(sandbox, request.thread_ts) if "corr-dlq-1" in m["text"]]
    assert len(apologies) == 1


def test_a_crash_after_posting_the_apology_does_not_post_it_again(sandbox, monkeypatch):
    request = message(sandbox)

    def crash(record: RequestRecord, reply_ts: str | None) -> None:
        raise RuntimeError("the consumer died here")

    with monkeypatch.context() as patched:
        patched.setattr(dead_letters, "_answered", crash)
        with pytest.raises(RuntimeError):
            handle(letter(request))
    assert request_item(request).status == dead_letters.APOLOGISING

    outcome = handle(letter(request, receive_count=2))

    assert outcome.apology == "posted"
    assert len(bot_messages(sandbox, request.thread_ts)) == 1
    assert request_item(request).status == replies.Status.ANSWERED


def test_an_answered_request_gets_no_apology(sandbox):
    request = message(sandbox)
    claim = replies.claim(request)
    replies.set_answered(claim.record, "1.2", "assistant")

    outcome = handle(letter(request))

    assert (outcome.reason, outcome.apology) == ("already_answered", "none")
    assert bot_messages(sandbox, request.thread_ts) == []
    assert failure_item(request).reason == "already_answered"


def test_an_answer_already_in_slack_is_not_replaced_by_an_apology(sandbox):
    request = message(sandbox)
    ts = placeholder(sandbox, request)
    answered = {"event_type": "insightmesh_reply",
                "event_payload": {"request_id": request.request_id, "status": "answered"}}
    slack_client.call_slack(lambda c: c.chat_update(channel=CHANNEL, ts=ts, text="The answer.", metadata=answered))

    outcome = handle(letter(request))

    assert (outcome.reason, outcome.apology) == ("answered_unrecorded", "none")
    assert [m["text"] for m in bot_messages(sandbox, request.thread_ts)] == ["The answer."]
    assert request_item(request).status == replies.Status.ANSWERED


def test_a_dead_button_press_gets_an_ephemeral_apology_for_the_clicker_only(sandbox):
    thread_ts = sandbox.add_user_message(channel=CHANNEL, user=USER, text="hi")["ts"]
    request = ConversationRequest(kind=RequestKind.ACTION, request_id="act:T0DLQ:trigger-1", team_id=TEAM,
                                  channel_id=CHANNEL, user_id=USER, thread_ts=thread_ts, ts=thread_ts,
                                  action_id="exit_agent", action_value="meddic", correlation_id="corr-button")

    outcome = handle(letter(request))

    assert outcome.apology == "ephemeral"
    [note] = [m for m in sandbox.messages(channel=CHANNEL) if m.get("ephemeral")]
    assert note["ephemeral_for"] == USER and "corr-button" in note["text"]
    assert [m for m in bot_messages(sandbox, thread_ts) if not m.get("ephemeral")] == []


def test_an_unreadable_message_is_recorded_and_counted(sandbox, capsys):
    outcome = handle(DeadLetter(message_id="m-garbage", body="{not json", receive_count=1))

    assert (outcome.reason, outcome.apology, outcome.reference) == ("unreadable", "none", "m-garbage")
    assert DeadLetterRecord.get("deadletter#m-garbage", "deadletter").reason == "unreadable"
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(m.get("ConversationDeadLetters") == [1.0] and m.get("reason") == "unreadable" for m in metrics)


def test_failures_are_counted_by_reason(sandbox, capsys):
    handle(letter(message(sandbox)))

    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [point] = [m for m in metrics if "ConversationDeadLetters" in m]
    assert point["reason"] == "never_claimed"
    assert point["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "InsightMesh"
    assert ["reason"] in [sorted(d)[:1] for d in point["_aws"]["CloudWatchMetrics"][0]["Dimensions"]]


def test_the_handler_takes_the_sample_event(sandbox):
    spec = importlib.util.spec_from_file_location("conversation_dlq_handler",
                                                  ROOT / "functions" / "conversation_dlq" / "handler.py")
    assert spec is not None and spec.loader is not None
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    event = json.loads((ROOT / "events" / "conversation_dlq" / "dead_letter.json").read_text())

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "conversation_dlq", 256, "req-1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:conversation_dlq"

    result = handler.lambda_handler(event, Context())

    assert result == {"batchItemFailures": []}
    body = ConversationRequest.model_validate_json(event["Records"][0]["body"])
    stored = failure_item(body)
    assert (stored.reason, stored.reference, stored.receive_count) == ("never_claimed", "sample-correlation-1", 1)
    [shown] = [m for m in sandbox.messages(channel=body.channel_id) if m.get("is_bot")]
    assert "sample-correlation-1" in shown["text"]


def test_an_uninstalled_workspace_gets_no_slack_call(sandbox):
    request = message(sandbox)
    placeholder(sandbox, request)
    calls_before = len(sandbox.calls())
    workspaces.deactivate(TEAM, reason="app_uninstalled", event_id="Ev-uninstall", request_id="r-1")
    try:
        outcome = handle(letter(request))
    finally:
        workspaces.clear_cache()
    assert outcome.reason == "workspace_inactive" and outcome.apology == "none"
    assert [c["method"] for c in sandbox.calls()[calls_before:]] == []
    assert failure_item(request).reason == "workspace_inactive"


@pytest.mark.parametrize("kind,action_id", [(RequestKind.HOME, None),
                                            (RequestKind.ASSISTANT_THREAD, "assistant_thread_context_changed")])
def test_a_request_nobody_typed_is_recorded_and_counted_but_shows_nothing(sandbox, capsys, kind, action_id):
    thread_ts = sandbox.add_user_message(channel=CHANNEL, user=USER, text="opened the pane")["ts"]
    request = ConversationRequest(kind=kind, request_id=f"unasked-{kind}", team_id=TEAM, channel_id=CHANNEL,
                                  channel_type="im", user_id=USER, thread_ts=thread_ts, action_id=action_id,
                                  correlation_id="corr-unasked")
    before = len(sandbox.calls())
    outcome = handle(letter(request))
    assert (outcome.reason, outcome.apology) == ("unasked", "none")
    assert bot_messages(sandbox, thread_ts) == []
    assert [c for c in sandbox.calls()[before:] if c["method"].startswith("chat.")] == []
    assert failure_item(request).reason == "unasked"
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [m["reason"] for m in metrics if "ConversationDeadLetters" in m] == ["unasked"]
