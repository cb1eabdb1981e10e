"""Which Slack inputs become conversation requests — insightmesh.slack.events parses them,
insightmesh.conversation.intake turns them into requests.

Payloads are built with the real-shaped builders of insightmesh_local.slack_signing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest

from insightmesh.conversation.intake import Classified, action_requests, classify_event, command_request
from insightmesh.conversation.requests import RequestKind
from insightmesh.slack.events import Decision, MalformedPayload, workspace_event
from insightmesh_local.slack_signing import (
    DEFAULT_APP_ID,
    DEFAULT_BOT_ID,
    DEFAULT_BOT_USER_ID,
    DEFAULT_TEAM_ID,
    app_mention_event,
    block_actions_payload,
    event_callback,
    message_event,
    slash_command_body,
)

USER = "U0USER0001"
CHANNEL = "C0CHAN0001"
DM = "D0DM000001"
TS = "1700000000.000100"
PARENT_TS = "1699999999.000200"
RESPONSE_URL = "https://hooks.slack.com/commands/T1/1/abc"


def wrap(event: dict[str, Any], **options: Any) -> dict[str, Any]:
    return event_callback(DEFAULT_TEAM_ID, DEFAULT_APP_ID, event, **options)


def classify(event: dict[str, Any], **options: Any) -> Classified:
    return classify_event(wrap(event, **options), correlation_id="corr-1")


# -- answered ----------------------------------------------------------------------------------------
def test_app_mention_is_answered_with_a_message_request() -> None:
    payload = wrap(app_mention_event(USER, CHANNEL, "what is our PTO policy?", TS), event_id="Ev0001")

    result = classify_event(payload, correlation_id="corr-1")

    assert result.decision is Decision.ANSWER
    request = result.request
    assert request is not None
    assert request.kind is RequestKind.MESSAGE
    assert request.event_id == "Ev0001"
    assert request.team_id == DEFAULT_TEAM_ID
    assert request.channel_id == CHANNEL
    assert request.channel_type == "channel"
    assert request.user_id == USER
    assert request.text == f"<@{DEFAULT_BOT_USER_ID}> what is our PTO policy?"
    assert request.ts == TS
    assert request.correlation_id == "corr-1"


def test_direct_message_is_answered() -> None:
    result = classify(message_event(USER, DM, "hello there", TS))

    assert result.decision is Decision.ANSWER
    assert result.request is not None
    assert result.request.channel_type == "im"
    assert result.request.text == "hello there"


def test_direct_message_in_a_thread_is_answered_in_that_thread() -> None:
    result = classify(message_event(USER, DM, "and another thing", TS, PARENT_TS))

    assert result.decision is Decision.ANSWER
    assert result.request is not None
    assert result.request.thread_ts == PARENT_TS


@pytest.mark.parametrize("subtype", ["file_share", "thread_broadcast"])
def test_file_share_and_thread_broadcast_are_answered(subtype: str) -> None:
    result = classify(message_event(USER, DM, "see attached", TS, subtype=subtype))

    assert result.decision is Decision.ANSWER
    assert result.request is not None


def test_long_text_is_cut_to_the_request_limit() -> None:
    from insightmesh.conversation.requests import MAX_TEXT_CHARS

    result = classify(message_event(USER, DM, "x" * (MAX_TEXT_CHARS + 500), TS))

    assert result.request is not None
    assert len(result.request.text) == MAX_TEXT_CHARS


# -- the message copy of a mention, threads, chatter ---------------------------------------------------
def test_channel_message_mentioning_the_bot_is_ignored_because_app_mention_answers_it() -> None:
    result = classify(message_event(USER, CHANNEL, f"<@{DEFAULT_BOT_USER_ID}> hi", TS))

    assert result.decision is Decision.IGNORE
    assert result.request is None


def test_thread_follow_up_without_mention_needs_a_thread_check() -> None:
    result = classify(message_event(USER, CHANNEL, "and for contractors?", TS, PARENT_TS))

    assert result.decision is Decision.CHECK_THREAD
    assert result.request is not None
    assert result.request.thread_ts == PARENT_TS
    assert result.request.thread_key == f"{DEFAULT_TEAM_ID}#{CHANNEL}#{PARENT_TS}"


def test_top_level_channel_chatter_is_ignored() -> None:
    result = classify(message_event(USER, CHANNEL, "lunch at noon, anyone", TS))

    assert result.decision is Decision.IGNORE
    assert result.request is None


@pytest.mark.parametrize(("text", "channel_type", "decision"), [
    ("lunch anyone?", "channel", Decision.QUESTION),
    ("what is the refund policy? ", "group", Decision.QUESTION),
    ("*is it down?*", "channel", Decision.QUESTION),
    ("? is not the end", "channel", Decision.IGNORE),
    ("lunch anyone?", "mpim", Decision.IGNORE),  # group DMs: mentions only
])
def test_a_top_level_channel_question_is_queued_for_the_channels_settings(
    text: str, channel_type: str, decision: Decision
) -> None:
    result = classify(message_event(USER, CHANNEL, text, TS, channel_type=channel_type))

    assert result.decision is decision
    if decision is Decision.QUESTION:  # the worker answers it only in an "every question" channel
        assert result.request is not None and result.request.unaddressed
        assert result.request.thread_ts == TS


def test_a_mention_is_addressed() -> None:
    result = classify(app_mention_event(USER, CHANNEL, f"<@{DEFAULT_BOT_USER_ID}> why?", TS))
    assert result.decision is Decision.ANSWER and result.request is not None and not result.request.unaddressed


# -- bots -------------------------------------------------------------------------------------------
def test_a_bot_message_with_bot_id_is_ignored() -> None:
    event = message_event(DEFAULT_BOT_USER_ID, DM, "I am a bot", TS, bot_id=DEFAULT_BOT_ID)
    assert event["bot_id"] == DEFAULT_BOT_ID

    assert classify(event).decision is Decision.IGNORE


def test_a_message_with_only_a_bot_profile_is_ignored() -> None:
    event = message_event("U0OTHERBOT", DM, "beep", TS, bot_id="B0OTHER")
    del event["bot_id"]
    assert "bot_profile" in event

    assert classify(event).decision is Decision.IGNORE


def test_the_bots_own_user_id_is_ignored_even_without_bot_id() -> None:
    event = message_event(DEFAULT_BOT_USER_ID, DM, "my own words", TS)
    assert "bot_id" not in event and "bot_profile" not in event

    assert classify(event).decision is Decision.IGNORE


def test_a_message_without_a_user_is_ignored() -> None:
    event = message_event(USER, DM, "who wrote this", TS)
    del event["user"]

    assert classify(event).decision is Decision.IGNORE


# -- subtypes and other events --------------------------------------------------------------------------
@pytest.mark.parametrize("subtype", ["message_changed", "message_deleted"])
def test_edits_and_deletions_are_ignored(subtype: str) -> None:
    event = message_event(USER, DM, "edited text", TS, subtype=subtype, previous_text="original")
    assert event["subtype"] == subtype

    result = classify(event)

    assert result.decision is Decision.IGNORE
    assert result.request is None


def test_channel_join_is_ignored() -> None:
    result = classify(message_event(USER, CHANNEL, f"<@{USER}> has joined the channel", TS, subtype="channel_join"))

    assert result.decision is Decision.IGNORE


def test_other_event_types_are_ignored() -> None:
    result = classify({"type": "reaction_added", "user": USER, "reaction": "thumbsup",
                       "item": {"type": "message", "channel": CHANNEL, "ts": TS}, "event_ts": TS})

    assert result.decision is Decision.IGNORE


# -- malformed -------------------------------------------------------------------------------------------
def test_event_callback_without_an_event_is_malformed() -> None:
    payload = wrap(message_event(USER, DM, "x", TS))
    del payload["event"]

    with pytest.raises(MalformedPayload):
        classify_event(payload, correlation_id="c")


@pytest.mark.parametrize("field", ["channel", "ts"])
def test_message_without_channel_or_ts_is_malformed(field: str) -> None:
    event = message_event(USER, DM, "x", TS)
    del event[field]

    with pytest.raises(MalformedPayload):
        classify(event)


def test_message_without_any_team_is_malformed() -> None:
    payload = wrap(message_event(USER, DM, "x", TS))
    del payload["team_id"]
    del payload["event"]["team"]

    with pytest.raises(MalformedPayload):
        classify_event(payload, correlation_id="c")


def test_team_falls_back_to_the_events_team() -> None:
    payload = wrap(message_event(USER, DM, "x", TS, team="T0EVENTTEAM"))
    del payload["team_id"]

    result = classify_event(payload, correlation_id="c")

    assert result.request is not None
    assert result.request.team_id == "T0EVENTTEAM"


# -- identity and queue keys -------------------------------------------------------------------------------
def test_the_mention_and_its_message_copy_have_the_same_request_id() -> None:
    # Slack delivers one message twice (app_mention and message, two event ids); both copies are
    # the same request, so the worker's dedupe answers it once. In a DM both copies are answered.
    text = f"<@{DEFAULT_BOT_USER_ID}> summarise this thread"
    mention = classify(app_mention_event(USER, DM, text, TS, PARENT_TS), event_id="Ev0001")
    copy = classify(message_event(USER, DM, text, TS, PARENT_TS), event_id="Ev0002")

    assert mention.decision is Decision.ANSWER and copy.decision is Decision.ANSWER
    assert mention.request is not None and copy.request is not None
    assert mention.request.event_id != copy.request.event_id
    assert mention.request.request_id == copy.request.request_id
    assert mention.request.deduplication_id == copy.request.deduplication_id
    assert mention.request.message_group_id == copy.request.message_group_id


def test_a_retried_delivery_has_the_same_request_id() -> None:
    event = message_event(USER, DM, "hi", TS)
    first = classify(dict(event), event_id="Ev0001")
    retry = classify(dict(event), event_id="Ev0001")

    assert first.request is not None and retry.request is not None
    assert first.request.request_id == retry.request.request_id


def test_different_messages_have_different_request_ids() -> None:
    first = classify(message_event(USER, DM, "hi", TS))
    second = classify(message_event(USER, DM, "hi", "1700000001.000100"))

    assert first.request is not None and second.request is not None
    assert first.request.request_id != second.request.request_id


def test_thread_ts_falls_back_to_the_messages_own_ts() -> None:
    result = classify(app_mention_event(USER, CHANNEL, "start a thread", TS))

    assert result.request is not None
    assert result.request.thread_ts == TS


def test_fifo_group_is_the_thread_and_dedup_id_is_sqs_safe() -> None:
    result = classify(app_mention_event(USER, CHANNEL, "hi", TS, PARENT_TS))

    request = result.request
    assert request is not None
    assert request.message_group_id == f"{DEFAULT_TEAM_ID}:{CHANNEL}:{PARENT_TS}"
    assert "#" not in request.deduplication_id
    assert 0 < len(request.deduplication_id) <= 128


def test_dedup_id_stays_within_128_chars_for_long_ids() -> None:
    long_channel = "C" + "X" * 60
    payload_team = "T" + "Y" * 60

    event = app_mention_event(USER, long_channel, "hi", TS, team=payload_team)

    result = classify_event(event_callback(payload_team, DEFAULT_APP_ID, event), correlation_id="c")

    request = result.request
    assert request is not None
    assert len(request.request_id) > 128
    assert len(request.deduplication_id) <= 128
    assert len(request.message_group_id) <= 128


# -- slash commands ----------------------------------------------------------------------------------------
def form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def test_slash_command_becomes_a_command_request() -> None:
    fields = form(slash_command_body(user_id=USER, channel_id=CHANNEL, text="  help  ",
                                     response_url=RESPONSE_URL, trigger_id="123.456.abc"))

    request = command_request(fields, correlation_id="corr-2")

    assert request.kind is RequestKind.COMMAND
    assert request.text == "help"
    assert request.team_id == DEFAULT_TEAM_ID
    assert request.channel_id == CHANNEL
    assert request.channel_type == "channel"
    assert request.user_id == USER
    assert request.response_url == RESPONSE_URL
    assert request.correlation_id == "corr-2"
    assert request.request_id == "cmd:123.456.abc"
    assert "#" not in request.deduplication_id


def test_slash_command_in_a_dm_is_an_im_request() -> None:
    fields = form(slash_command_body(user_id=USER, channel_id=DM, text="help", response_url=RESPONSE_URL))

    assert command_request(fields, correlation_id="c").channel_type == "im"


def test_slash_command_without_text_has_empty_text() -> None:
    fields = form(slash_command_body(user_id=USER, channel_id=CHANNEL, response_url=RESPONSE_URL))

    assert command_request(fields, correlation_id="c").text == ""


@pytest.mark.parametrize("missing", ["team_id", "channel_id", "user_id"])
def test_slash_command_without_required_fields_is_malformed(missing: str) -> None:
    fields = form(slash_command_body(user_id=USER, channel_id=CHANNEL, text="help", response_url=RESPONSE_URL))
    del fields[missing]

    with pytest.raises(MalformedPayload):
        command_request(fields, correlation_id="c")


# -- block actions --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action_id", ["exit_agent", "feedback_up", "feedback_down"])
def test_insightmesh_buttons_become_action_requests(action_id: str) -> None:
    payload = block_actions_payload(user_id=USER, channel_id=CHANNEL, message_ts=TS, action_id=action_id,
                                    value="msg:req-1", response_url=RESPONSE_URL, thread_ts=PARENT_TS)

    requests = action_requests(payload, correlation_id="corr-3")

    assert len(requests) == 1
    request = requests[0]
    assert request.kind is RequestKind.ACTION
    assert request.action_id == action_id
    assert request.action_value == "msg:req-1"
    assert request.team_id == DEFAULT_TEAM_ID
    assert request.channel_id == CHANNEL
    assert request.user_id == USER
    assert request.ts == TS
    assert request.thread_ts == PARENT_TS
    assert request.response_url == RESPONSE_URL
    assert request.correlation_id == "corr-3"


def test_action_on_a_top_level_message_uses_the_messages_ts_as_thread() -> None:
    payload = block_actions_payload(user_id=USER, channel_id=CHANNEL, message_ts=TS, action_id="feedback_up",
                                    response_url=RESPONSE_URL)
    assert "thread_ts" not in payload["message"]

    (request,) = action_requests(payload, correlation_id="c")

    assert request.thread_ts == TS


def test_two_clicks_of_the_same_button_are_two_requests() -> None:
    first = block_actions_payload(user_id=USER, channel_id=CHANNEL, message_ts=TS, action_id="feedback_up",
                                  response_url=RESPONSE_URL)
    second = {**first, "actions": [{**first["actions"][0], "action_ts": "1700000999.000001"}]}

    (a,) = action_requests(first, correlation_id="c")
    (b,) = action_requests(second, correlation_id="c")

    assert a.request_id != b.request_id


def test_other_action_ids_are_ignored() -> None:
    payload = block_actions_payload(user_id=USER, channel_id=CHANNEL, message_ts=TS, action_id="someone_elses_button",
                                    response_url=RESPONSE_URL)

    assert action_requests(payload, correlation_id="c") == []


def test_only_insightmesh_actions_of_a_mixed_payload_are_kept() -> None:
    payload = block_actions_payload(user_id=USER, channel_id=CHANNEL, message_ts=TS, action_id="exit_agent",
                                    response_url=RESPONSE_URL)
    payload["actions"].append({**payload["actions"][0], "action_id": "open_modal"})

    requests = action_requests(payload, correlation_id="c")

    assert [r.action_id for r in requests] == ["exit_agent"]


@pytest.mark.parametrize("kind", ["view_submission", "shortcut", "message_action", None])
def test_non_block_actions_payloads_give_no_requests(kind: str | None) -> None:
    payload = block_actions_payload(user_id=USER, channel_id=CHANNEL, message_ts=TS, action_id="exit_agent",
                                    response_url=RESPONSE_URL)
    payload["type"] = kind

    assert action_requests(payload, correlation_id="c") == []


@pytest.mark.parametrize("missing", ["team", "user"])
def test_block_actions_without_team_or_user_is_malformed(missing: str) -> None:
    payload = block_actions_payload(user_id=USER, channel_id=CHANNEL, message_ts=TS, action_id="exit_agent",
                                    response_url=RESPONSE_URL)
    del payload[missing]

    with pytest.raises(MalformedPayload):
        action_requests(payload, correlation_id="c")


# -- Slackbot, apps, workspace events (issue 10 §4) ------------------------------------------------------------
def test_slackbots_removed_from_channel_dm_is_ignored() -> None:
    """Captured shape: Slackbot's DM has user USLACKBOT and no bot_id, bot_profile or subtype."""
    import json
    from pathlib import Path

    sample = json.loads(Path(__file__).parents[2].joinpath("events/slack_ingress/slackbot_removed_dm.json")
                        .read_text())
    payload = json.loads(sample["body"])
    event = payload["event"]
    assert event["user"] == "USLACKBOT" and event["channel_type"] == "im"
    assert not {"bot_id", "bot_profile", "subtype", "app_id"} & set(event)

    result = classify_event(payload, correlation_id="c")

    assert result.decision is Decision.IGNORE and result.request is None
    assert "Slackbot" in result.reason


def test_a_message_with_an_app_id_is_ignored() -> None:
    event = message_event("U0APPUSER1", DM, "automated hello", TS)
    event["app_id"] = "A0OTHERAPP"  # a workflow or app user's message: no bot_id, no bot_profile
    assert "bot_id" not in event and "bot_profile" not in event

    assert classify(event).decision is Decision.IGNORE


def test_a_bot_message_subtype_is_ignored() -> None:
    event = message_event(USER, DM, "posted by an integration", TS, subtype="bot_message")

    assert classify(event).decision is Decision.IGNORE


def test_app_uninstalled_is_a_workspace_event() -> None:
    payload = {"team_id": "T0GONE", "api_app_id": "A1", "type": "event_callback", "event_id": "Ev9",
               "event": {"type": "app_uninstalled"}}

    changed = workspace_event(payload)

    assert changed is not None
    assert (changed.team_id, changed.kind, changed.event_id) == ("T0GONE", "app_uninstalled", "Ev9")


def test_tokens_revoked_is_a_workspace_event_only_when_bot_tokens_are_revoked() -> None:
    def payload(tokens: dict[str, list[str]]) -> dict[str, Any]:
        return {"team_id": "T0GONE", "type": "event_callback", "event_id": "Ev10",
                "event": {"type": "tokens_revoked", "tokens": tokens}}

    assert workspace_event(payload({"oauth": ["U1"], "bot": ["UBOT"]})) is not None
    assert workspace_event(payload({"oauth": ["U1"]})) is None  # a user token: the bot still works
    assert workspace_event(payload({"oauth": ["U1"], "bot": []})) is None


def test_messages_are_not_workspace_events_and_a_teamless_uninstall_is_malformed() -> None:
    assert workspace_event(wrap(message_event(USER, DM, "hi", TS))) is None
    with pytest.raises(MalformedPayload):
        workspace_event({"type": "event_callback", "event": {"type": "app_uninstalled"}})


# -- response_url: Slack's only (issue 10 §4) -------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "http://hooks.slack.com/commands/T1/1/abc",  # not https
    "https://hooks.slack.com.evil.example/commands/T1/1/abc",
    "https://evil.example/commands?x=https://hooks.slack.com/",
    "https://user@hooks.slack.com:8443/commands/T1/1/abc",
    "https://slack.com/api/chat.postMessage",
    "https://169.254.169.254/latest/meta-data/",
    "not a url",
])
def test_a_slash_command_keeps_no_response_url_that_is_not_slacks(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_API_URL", raising=False)
    fields = form(slash_command_body(user_id=USER, channel_id=CHANNEL, text="help", response_url=url))

    assert command_request(fields, correlation_id="c").response_url is None


def test_a_button_keeps_no_response_url_that_is_not_slacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_API_URL", raising=False)
    payload = block_actions_payload(user_id=USER, channel_id=CHANNEL, message_ts=TS, action_id="exit_agent",
                                    response_url="https://attacker.example/collect")

    [request] = action_requests(payload, correlation_id="c")

    assert request.response_url is None


def test_the_configured_slack_stand_in_serves_response_urls_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:3999/api/")
    local = "http://127.0.0.1:3999/response/abc"
    fields = form(slash_command_body(user_id=USER, channel_id=CHANNEL, text="help", response_url=local))

    assert command_request(fields, correlation_id="c").response_url == local
    other_port = form(slash_command_body(user_id=USER, channel_id=CHANNEL, text="help",
                                         response_url="http://127.0.0.1:4000/response/abc"))
    assert command_request(other_port, correlation_id="c").response_url is None


def test_a_queued_request_never_carries_a_foreign_response_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever builds or reads a request (the worker, the dead-letter consumer) sees Slack's URL or none."""
    from insightmesh.conversation.requests import ConversationRequest

    monkeypatch.delenv("SLACK_API_URL", raising=False)
    common = {"kind": "command", "request_id": "cmd:1", "team_id": "T1", "channel_id": "C1", "user_id": "U1"}

    assert ConversationRequest(**common, response_url="https://evil.example/x").response_url is None
    assert ConversationRequest(**common, response_url=RESPONSE_URL).response_url == RESPONSE_URL
    queued = ConversationRequest(**common).model_dump() | {"response_url": "https://evil.example/x"}
    assert ConversationRequest.model_validate(queued).response_url is None


@pytest.mark.parametrize("kind", [[], {}, None, 5, "app_uninstalled_team"])
def test_odd_event_types_are_not_workspace_events(kind: Any) -> None:
    assert workspace_event({"type": "event_callback", "team_id": "T1", "event": {"type": kind}}) is None
    assert workspace_event({"type": "event_callback", "team_id": "T1", "event": kind}) is None
