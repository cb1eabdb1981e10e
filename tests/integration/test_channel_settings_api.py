"""``/api/channels``: per-channel settings through the real admin_api handler (moto).

Validation (unknown agents are a clear 422), audit of every change with before and after,
members refused (403), pagination with the signed cursor, version conflicts, and the worker's
cached read seeing a change once its TTL has passed."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest

from insightmesh.conversation import channel_settings
from insightmesh.conversation.audience import AudienceRetriever
from insightmesh.conversation.channel_settings import ReplyStyle, ResponseMode
from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.conversation.routing import Route
from insightmesh.knowledge.base import ANYONE, SourceDocument, Viewer
from insightmesh.knowledge.pipeline import ingest_documents
from insightmesh.knowledge.retrieval import retrieve
from insightmesh_local import slack_signing as slack
from tests.integration.conftest import ROOT, DynamoCalls, load_handler
from tests.integration.test_admin_api import Api, assert_envelope, audit_entries, latest_audit
from tests.integration.test_admin_api import api as api

CHANNEL = "C0SALES"


def test_a_channel_never_set_has_the_defaults(api: Api) -> None:
    body = api.ok("GET", f"/api/channels/{CHANNEL}")
    assert body == {"channel_id": CHANNEL, "mode": "mentions", "default_agent": None, "allowed_agents": None,
                    "knowledge_sources": None, "reply": "thread", "tools": None, "version": 0, "updated_at": None,
                    "updated_by": None}
    assert api.ok("GET", "/api/channels") == {"items": [], "next_cursor": None}


def test_put_patch_delete_are_stored_and_audited_with_before_and_after(api: Api) -> None:
    created = api.ok("PUT", f"/api/channels/{CHANNEL}", 201, body={
        "mode": "questions", "default_agent": "meddic", "allowed_agents": ["help", "meddic"],
        "knowledge_sources": ["gdrive:sales-folder"], "reply": "ephemeral"})
    assert (created["mode"], created["default_agent"], created["version"]) == ("questions", "meddic", 1)
    assert created["updated_by"] == "admin@example.com"
    entry = latest_audit(f"channel:{CHANNEL}")
    assert entry.action == "channel.put" and entry.before is None and entry.after["mode"] == "questions"

    patched = api.ok("PATCH", f"/api/channels/{CHANNEL}", body={"mode": "off", "version": 1})
    assert (patched["mode"], patched["default_agent"], patched["reply"], patched["version"]) == \
        ("off", "meddic", "ephemeral", 2)
    entry = latest_audit(f"channel:{CHANNEL}")
    assert entry.action == "channel.patch" and entry.before["mode"] == "questions" and entry.after["mode"] == "off"
    assert api.ok("GET", f"/api/channels/{CHANNEL}") == patched

    replaced = api.ok("PUT", f"/api/channels/{CHANNEL}", body={"mode": "mentions"})
    assert (replaced["default_agent"], replaced["allowed_agents"], replaced["version"]) == (None, None, 3)

    reset = api.ok("DELETE", f"/api/channels/{CHANNEL}")
    assert reset["version"] == 0 and reset["mode"] == "mentions"
    assert latest_audit(f"channel:{CHANNEL}").action == "channel.delete"
    assert [e.action for e in audit_entries(f"channel:{CHANNEL}")] == \
        ["channel.delete", "channel.put", "channel.patch", "channel.put"]
    assert_envelope(api.call("DELETE", f"/api/channels/{CHANNEL}"), 404, "not_found")


@pytest.mark.parametrize(("body", "field"), [
    ({"default_agent": "nosuchagent"}, "default_agent"),
    ({"allowed_agents": ["help", "ghost"]}, "allowed_agents"),
])
def test_unknown_agents_are_refused_with_a_clear_422_and_nothing_written(
    api: Api, body: dict[str, Any], field: str
) -> None:
    result = api.call("PUT", f"/api/channels/{CHANNEL}", body=body)
    assert_envelope(result, 422, "validation_error")
    assert "unknown agent" in result.body["error"]["message"]
    assert result.body["error"]["details"][0]["loc"] == ["body", field]
    assert api.ok("GET", f"/api/channels/{CHANNEL}")["version"] == 0
    assert audit_entries(f"channel:{CHANNEL}") == []


@pytest.mark.parametrize("body", [
    {"mode": "always"},
    {"reply": "dm"},
    {"allowed_agents": []},
    {"allowed_agents": ["help", "help"]},
    {"knowledge_sources": ["no-prefix"]},
    {"unknown": 1},
    {"allowed_agents": ["meddic"]},  # the assistant answers un-addressed messages: not allowed here
])
def test_invalid_settings_are_422(api: Api, body: dict[str, Any]) -> None:
    assert_envelope(api.call("PUT", f"/api/channels/{CHANNEL}", body=body), 422, "validation_error")


def test_bad_channel_ids_are_422(api: Api) -> None:
    assert_envelope(api.call("GET", "/api/channels/not-a-channel"), 422, "validation_error")
    assert_envelope(api.call("PUT", "/api/channels/D0DIRECT", body={}), 422, "validation_error")


def test_members_are_refused_and_nothing_changes(api: Api) -> None:
    for method, body in (("GET", None), ("PUT", {"mode": "off"}), ("PATCH", {"mode": "off"}), ("DELETE", None)):
        assert_envelope(api.call(method, f"/api/channels/{CHANNEL}", as_="member", body=body), 403, "forbidden")
    assert_envelope(api.call("GET", "/api/channels", as_="member"), 403, "forbidden")
    assert api.ok("GET", f"/api/channels/{CHANNEL}")["version"] == 0


def test_a_stale_version_is_a_conflict(api: Api) -> None:
    api.ok("PUT", f"/api/channels/{CHANNEL}", 201, body={"mode": "questions"})
    api.ok("PATCH", f"/api/channels/{CHANNEL}", body={"reply": "ephemeral", "version": 1})
    assert_envelope(api.call("PATCH", f"/api/channels/{CHANNEL}", body={"mode": "off", "version": 1}),
                    409, "conflict")
    assert api.ok("GET", f"/api/channels/{CHANNEL}")["mode"] == "questions"


def test_the_list_pages_with_a_signed_cursor(api: Api) -> None:
    channels = [f"C0PAGE{i}" for i in range(5)]
    for channel in channels:
        api.ok("PUT", f"/api/channels/{channel}", 201, body={"mode": "questions"})
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = api.ok("GET", "/api/channels", query=query)
        pages += 1
        assert len(page["items"]) <= 2
        seen += [item["channel_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == channels and pages >= 3
    assert_envelope(api.call("GET", "/api/channels", query={"cursor": "forged"}), 422, "validation_error")
    assert_envelope(api.call("GET", "/api/channels", query={"limit": "101"}), 422, "validation_error")


def test_the_worker_reads_settings_through_its_cache(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANNEL_SETTINGS_CACHE_SECONDS", "600")
    channel_settings.forget()
    assert channel_settings.cached(CHANNEL).mode is ResponseMode.MENTIONS
    api.ok("PUT", f"/api/channels/{CHANNEL}", 201, body={"mode": "off", "reply": "ephemeral"})
    channel_settings.forget()  # the API drops its own process's copy; a worker's expires with its TTL
    settings = channel_settings.cached(CHANNEL, "channel")
    assert (settings.mode, settings.reply) == (ResponseMode.OFF, ReplyStyle.EPHEMERAL)
    record = channel_settings.ChannelSettingsRecord.get(channel_settings.SETTINGS_PK, CHANNEL)
    record.mode = "questions"
    record.save()
    assert channel_settings.cached(CHANNEL).mode is ResponseMode.OFF  # remembered: no read
    monkeypatch.setenv("CHANNEL_SETTINGS_CACHE_SECONDS", "0")
    assert channel_settings.cached(CHANNEL).mode is ResponseMode.QUESTIONS
    assert channel_settings.cached("D0DM", "im").mode is ResponseMode.MENTIONS  # DMs: no settings
    monkeypatch.setenv("CHANNEL_SETTINGS_CACHE_SECONDS", "-1")
    with pytest.raises(ValueError, match="CHANNEL_SETTINGS_CACHE_SECONDS"):
        channel_settings.cache_seconds()


def _request(channel: str, *, unaddressed: bool = False, channel_type: str = "channel") -> ConversationRequest:
    return ConversationRequest(kind=RequestKind.MESSAGE, request_id=f"msg:T1:{channel}:1.0", team_id="T1",
                               channel_id=channel, channel_type=channel_type, user_id="U1", text="why?",
                               ts="1.0", thread_ts="1.0", unaddressed=unaddressed)


@pytest.mark.parametrize(("mode", "mention", "question"), [
    (None, True, False), ("mentions", True, False), ("questions", True, True), ("off", False, False),
])
def test_the_worker_applies_the_response_mode(api: Api, monkeypatch: pytest.MonkeyPatch, mode: str | None,
                                              mention: bool, question: bool) -> None:
    monkeypatch.setenv("CHANNEL_SETTINGS_CACHE_SECONDS", "0")
    if mode:
        api.ok("PUT", f"/api/channels/{CHANNEL}", 201, body={"mode": mode})
    assert channel_settings.admits(_request(CHANNEL)) is mention
    assert channel_settings.admits(_request(CHANNEL, unaddressed=True)) is question


def test_the_worker_applies_the_default_and_allowed_agents(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANNEL_SETTINGS_CACHE_SECONDS", "0")
    request = _request(CHANNEL)
    plain = Route(agent_name="help", text="why?")
    assert channel_settings.with_default(plain, request) == plain
    assert channel_settings.refused_here(request, "meddic") is None
    api.ok("PUT", f"/api/channels/{CHANNEL}", 201, body={"default_agent": "meddic", "allowed_agents": ["meddic"]})
    routed = channel_settings.with_default(plain, request)
    assert (routed.agent_name, routed.text, routed.by) == ("meddic", "why?", "channel")
    named = Route(agent_name="help", text="x", by="name")
    assert channel_settings.with_default(named, request) == named  # a named agent is not replaced
    refusal = channel_settings.refused_here(request, "help")
    assert refusal is not None and "not available in this channel" in refusal and "`meddic`" in refusal
    assert channel_settings.refused_here(request, "meddic") is None
    dm = _request("D0DM", channel_type="im")  # a DM has no channel settings
    assert channel_settings.with_default(plain, dm) == plain and channel_settings.refused_here(dm, "help") is None


def test_a_channels_knowledge_sources_restrict_retrieval(api: Api, knowledge: dict[str, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANNEL_SETTINGS_CACHE_SECONDS", "0")
    documents = [SourceDocument(document_id=f"{source}/{name}", source=source, title=name, mime_type="text/plain",
                                content=f"The {name} expense policy: receipts are due within 30 days.".encode(),
                                url=None, modified_time=None, acl=(ANYONE,))
                 for source, name in (("local:/sales", "sales"), ("local:/finance", "finance"))]
    assert ingest_documents(documents).new == 2
    everything = {p.document_id for p in retrieve("expense policy receipts", Viewer(None))}
    assert everything == {"local:/sales/sales", "local:/finance/finance"}
    assert {p.document_id for p in retrieve("expense policy receipts", Viewer(None), sources=["local:/sales"])} \
        == {"local:/sales/sales"}
    assert retrieve("expense policy receipts", Viewer(None), sources=[]) == []

    request = _request(CHANNEL)
    answer_privately = AudienceRetriever(request, "u-nobody", private=True)  # the asker's access: no Slack call
    assert {p.document_id for p in answer_privately("expense policy receipts")} == everything
    api.ok("PUT", f"/api/channels/{CHANNEL}", 201, body={"knowledge_sources": ["local:/finance"]})
    restricted = AudienceRetriever(request, "u-nobody", private=True)
    assert {p.document_id for p in restricted("expense policy receipts")} == {"local:/finance/finance"}


# -- the ingress: no settings read on the ack path ------------------------------------------------------

SIGNING_SECRET = "insightmesh-local-signing-secret"


def _ingress(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, str]:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="conversations.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    monkeypatch.setenv("CONVERSATION_QUEUE_URL", queue)
    return load_handler(ROOT / "functions" / "slack_ingress" / "handler.py"), sqs, queue


def _signed(sample: str, body: str, content_type: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "slack_ingress" / sample).read_text())
    headers = slack.sign(SIGNING_SECRET, body.encode())
    event["body"] = base64.b64encode(body.encode()).decode() if event.get("isBase64Encoded") else body
    event["headers"].update({"x-slack-request-timestamp": headers["X-Slack-Request-Timestamp"],
                             "x-slack-signature": headers["X-Slack-Signature"], "content-type": content_type,
                             "content-length": str(len(body.encode()))})
    return event


def test_a_channel_question_costs_the_ack_path_one_sqs_send_and_no_table_read(
        api: Api, monkeypatch: pytest.MonkeyPatch, dynamo_calls: DynamoCalls) -> None:
    handler, sqs, queue = _ingress(monkeypatch)
    api.ok("PUT", f"/api/channels/{CHANNEL}", 201, body={"mode": "off"})  # not read by the ingress either way
    body = json.dumps(slack.event_callback(slack.DEFAULT_TEAM_ID, slack.DEFAULT_APP_ID, slack.message_event(
        "U0ASKER", CHANNEL, "where is the expense form?", "1796000000.000100", channel_type="channel")))
    responses: list[dict[str, Any]] = []
    calls = dynamo_calls.during(lambda: responses.append(handler.lambda_handler(
        _signed("app_mention.json", body, "application/json"), None)))

    assert responses[0]["statusCode"] == 200 and calls == []
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    queued = ConversationRequest.model_validate_json(message["Body"])
    assert queued.unaddressed and queued.channel_id == CHANNEL  # the worker decides, from its cached settings


def test_the_settings_command_reads_one_item_and_queues_nothing(
        api: Api, monkeypatch: pytest.MonkeyPatch, dynamo_calls: DynamoCalls) -> None:
    handler, sqs, queue = _ingress(monkeypatch)
    api.ok("PUT", f"/api/channels/{CHANNEL}", 201, body={"mode": "questions", "reply": "ephemeral"})
    channel_settings.forget()
    body = slack.slash_command_body(user_id="U0ANYONE", channel_id=CHANNEL, text="settings",
                                    response_url="https://hooks.slack.com/commands/T1/1/x").decode()
    responses: list[dict[str, Any]] = []
    calls = dynamo_calls.during(lambda: responses.append(handler.lambda_handler(
        _signed("slash_command.json", body, "application/x-www-form-urlencoded"), None)))

    assert responses[0]["statusCode"] == 200 and [call.split(":")[0] for call in calls] == ["GetItem"]
    shown = json.loads(responses[0]["body"])
    assert shown["response_type"] == "ephemeral"
    assert "question mark" in shown["text"] and "only the asker sees them" in shown["text"]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)


def test_the_worker_reads_a_channels_settings_once_per_ttl(
        api: Api, monkeypatch: pytest.MonkeyPatch, dynamo_calls: DynamoCalls) -> None:
    monkeypatch.setenv("CHANNEL_SETTINGS_CACHE_SECONDS", "600")
    channel_settings.forget()
    request = _request(CHANNEL)
    operations = dynamo_calls.operations_during(lambda: [channel_settings.admits(request) for _ in range(5)])
    assert operations == ["GetItem"]
    assert dynamo_calls.operations_during(lambda: channel_settings.admits(_request("D0DM", channel_type="im"))) == []
