"""The Slack sandbox's views.open / views.publish answer as Slack does (trigger ids exchanged once
and expiring after 3 s, view shapes checked), record what they showed, and build the
view_submission Slack would send; the 👎 modal InsightMesh opens round-trips through it."""

from __future__ import annotations

import time

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from insightmesh.slack import modals
from insightmesh_local import local_auth
from insightmesh_local import slack_signing as slack
from insightmesh_local.slack_sandbox import SlackSandbox
from insightmesh_local.slack_sandbox import views as sandbox_views

pytestmark = pytest.mark.timeout(60)
REPLY = modals.ReplyRef(channel_id="C0FB", message_ts="1796000000.000200", thread_ts="1796000000.000100",
                        request_id="msg:T:C0FB:1796000000.000100")


@pytest.fixture
def sandbox():
    server = SlackSandbox(port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(sandbox):
    return WebClient(base_url=sandbox.url, token="xoxb-test", timeout=5, retry_handlers=[])


def error_of(call) -> str:
    with pytest.raises(SlackApiError) as raised:
        call()
    return str(raised.value.response["error"])


def test_views_open_exchanges_a_trigger_once_and_records_the_modal(sandbox, client):
    trigger = slack.new_trigger_id()
    opened = client.views_open(trigger_id=trigger, view=modals.feedback_view(REPLY))
    assert opened["view"]["id"].startswith("V") and opened["view"]["callback_id"] == modals.CALLBACK_ID
    assert opened["view"]["state"] == {"values": {}}
    assert error_of(lambda: client.views_open(trigger_id=trigger, view=modals.feedback_view(REPLY))) == \
        "exchanged_trigger_id"
    recorded = sandbox_views.views(sandbox.state, method="views.open")
    assert [entry["trigger_id"] for entry in recorded] == [trigger]


def test_views_open_refuses_expired_malformed_triggers_and_bad_views(client):
    expired = f"{int(time.time()) - 10}.123.abcdef"
    assert error_of(lambda: client.views_open(trigger_id=expired, view=modals.feedback_view(REPLY))) == \
        "expired_trigger_id"
    assert error_of(lambda: client.views_open(trigger_id="nope", view=modals.feedback_view(REPLY))) == \
        "invalid_trigger_id"
    no_submit = {**modals.feedback_view(REPLY)}
    del no_submit["submit"]  # input blocks need a submit button
    assert error_of(lambda: client.views_open(trigger_id=slack.new_trigger_id(), view=no_submit)) == \
        "invalid_arguments"
    long_title = {**modals.feedback_view(REPLY), "title": {"type": "plain_text", "text": "x" * 25}}
    assert error_of(lambda: client.views_open(trigger_id=slack.new_trigger_id(), view=long_title)) == \
        "invalid_arguments"


def test_views_publish_sets_a_users_home_tab(sandbox, client):
    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi"}}]}
    published = client.views_publish(user_id="U0ALICE", view=home)
    assert published["view"]["type"] == "home"
    assert error_of(lambda: client.views_publish(user_id="U0ALICE", view={"type": "modal", "blocks": []})) == \
        "invalid_arguments"
    shown = sandbox_views.views(sandbox.state, user="U0ALICE", method="views.publish")
    assert len(shown) == 1 and shown[0]["view"]["blocks"] == home["blocks"]


def test_the_feedback_modal_round_trips_as_a_view_submission(sandbox, client):
    opened = client.views_open(trigger_id=slack.new_trigger_id(), view=modals.feedback_view(REPLY))["view"]
    payload = sandbox_views.submission_payload(opened, user_id="U0BOB", team_id="T0FB", values={
        "reason": {"reason": {"type": "radio_buttons", "selected_option": {"value": "unsafe"}}},
        "comment": {"comment": {"type": "plain_text_input", "value": "  leaks a salary  "}}})
    submitted = modals.parse_submission(payload)
    assert submitted is not None
    assert (submitted.team_id, submitted.user_id, submitted.reason, submitted.comment) == \
        ("T0FB", "U0BOB", "unsafe", "leaks a salary")
    assert submitted.reply == REPLY
    bad = sandbox_views.submission_payload(opened, user_id="U0BOB", values={
        "reason": {"reason": {"type": "radio_buttons", "selected_option": {"value": "boring"}}}})
    with pytest.raises(modals.MalformedPayload):
        modals.parse_submission(bad)


def test_the_views_control_endpoint_lists_them(sandbox, client):
    client.views_publish(user_id="U0ALICE", view={"type": "home", "blocks": []})
    with httpx.Client(base_url=sandbox.root, timeout=5, headers={local_auth.HEADER: sandbox.secret}) as http:
        listed = http.get("/_sandbox/views", params={"method": "views.publish"}).json()
    assert listed["ok"] and [entry["user_id"] for entry in listed["views"]] == ["U0ALICE"]


# -- the ingress side: feedback_modal.open_for ----------------------------------------------------------

@pytest.fixture
def slack_env(sandbox, monkeypatch):
    from insightmesh.slack import client as slack_client

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-modal-test")
    monkeypatch.setenv("SLACK_API_URL", sandbox.url)
    from insightmesh.conversation import feedback_modal

    slack_client.reset_for_tests()
    feedback_modal.reset_for_tests()
    yield sandbox
    slack_client.reset_for_tests()
    feedback_modal.reset_for_tests()


def down_click(trigger: str) -> tuple[dict, list]:
    from insightmesh.slack import events

    payload = slack.block_actions_payload(user_id="U0BOB", channel_id="C0FB", message_ts=REPLY.message_ts,
                                          thread_ts=REPLY.thread_ts, action_id="feedback_down",
                                          value=REPLY.request_id, trigger_id=trigger,
                                          response_url="https://hooks.slack.com/actions/T/1/x")
    return payload, events.parse_actions(payload)


def test_a_thumbs_down_opens_the_modal_about_that_reply(slack_env):
    from insightmesh.conversation import feedback_modal

    payload, actions = down_click(slack.new_trigger_id())
    assert feedback_modal.open_for(payload, actions) is True
    opened = sandbox_views.views(slack_env.state, method="views.open")[0]["view"]
    submitted = modals.parse_submission(sandbox_views.submission_payload(opened, user_id="U0BOB", values={
        "reason": {"reason": {"type": "radio_buttons", "selected_option": {"value": "wrong"}}}}))
    assert submitted is not None and submitted.reply == REPLY and submitted.comment is None


def test_a_modal_slack_refuses_never_fails_the_click(slack_env):
    from insightmesh.conversation import feedback_modal

    payload, actions = down_click(f"{int(time.time()) - 60}.1.abc")  # expired before the ingress got it
    assert feedback_modal.open_for(payload, actions) is False
    up_payload = {**payload, "actions": [{**payload["actions"][0], "action_id": "feedback_up"}]}
    from insightmesh.slack import events

    assert feedback_modal.open_for(up_payload, events.parse_actions(up_payload)) is False  # 👍: no modal
    assert sandbox_views.views(slack_env.state, method="views.open") == []


def test_a_slow_slack_leaves_the_modal_unopened_and_the_click_acknowledged(slack_env):
    from insightmesh.conversation import feedback_modal

    slack_env.fail("views.open", "delay", delay=feedback_modal.MODAL_TIMEOUT_SECONDS + 2.0)
    payload, actions = down_click(slack.new_trigger_id())
    assert feedback_modal.open_for(payload, actions) is False  # one short attempt, no retry


def test_a_rate_limited_views_open_is_not_waited_for(slack_env):
    from insightmesh.conversation import feedback_modal

    slack_env.fail("views.open", "ratelimit", retry_after=30)
    payload, actions = down_click(slack.new_trigger_id())
    assert feedback_modal.open_for(payload, actions) is False
    assert len(slack_env.calls("views.open")) == 1  # no Retry-After wait and no second try
