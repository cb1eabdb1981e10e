"""Feedback that teaches, App Home and the message shortcut end to end: `insightmesh dev` with the
Slack sandbox and an OpenAI-compatible stand-in, driven by signed webhooks as Slack sends them."""

from __future__ import annotations

import json
from itertools import count
from urllib.parse import urlencode

import pytest

from insightmesh_local import slack_signing as slack
from insightmesh_local.slack_sandbox import views as sandbox_views
from tests.e2e.dev_server import post_event as signed_post
from tests.e2e.dev_server import running, slack_llm_env
from tests.helpers import wait_for

SECRET = "e2e-signing-secret"
TEAM = slack.DEFAULT_TEAM_ID
OPS_EMAIL = "ops-feedback@example.com"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
_ts = count(1)


def new_ts() -> str:
    return f"{1797000000 + next(_ts)}.{next(_ts):06d}"


@pytest.fixture(scope="module")
def dev(sandbox, llm, dev_logs):
    env = slack_llm_env(sandbox, llm, secret=SECRET,
                        WORKER_TIMEOUT="8",
                        CONVERSATION_VISIBILITY_TIMEOUT="10")
    with running(env=env, log_dir=dev_logs) as server:
        yield server


@pytest.fixture(scope="module")
def admin_token(dev) -> str:
    made = dev.cli("token", "create", "--email", OPS_EMAIL, "--admin")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def interact(http, payload):
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
    response = http.post("/slack/interactions", content=body,
                         headers=slack.signed_headers(SECRET, body, slack.FORM_CONTENT_TYPE))
    assert response.status_code == 200, response.text
    return response


def final_reply(sandbox, channel, thread):
    def found():
        done = [m for m in sandbox.messages(channel=channel, thread_ts=thread)
                if m.get("is_bot") and not m.get("ephemeral")
                and ((m.get("metadata") or {}).get("event_payload") or {}).get("status") == "answered"]
        return done[-1] if done else None
    return wait_for(found, timeout=60, what=f"the answer in {channel}/{thread}")


def test_a_thumbs_down_with_a_reason_is_stored_and_listed(dev, sandbox, http, admin_token):
    ts = new_ts()
    response = signed_post(http, SECRET, slack.app_mention_event("U0ALICE", "C0FBK", "what is the refund policy?", ts))
    assert response.status_code == 200
    reply = final_reply(sandbox, "C0FBK", ts)
    down = next(a for a in reply["blocks"][-1]["elements"] if a["action_id"] == "feedback_down")
    trigger = slack.new_trigger_id()
    interact(http, slack.block_actions_payload(
        user_id="U0BOB", channel_id="C0FBK", message_ts=reply["ts"], thread_ts=ts, action_id="feedback_down",
        value=down["value"], trigger_id=trigger, response_url=sandbox.response_url(channel="C0FBK", user="U0BOB")))
    opened = wait_for(lambda: [v for v in sandbox_views.views(sandbox.state, method="views.open")
                               if v["trigger_id"] == trigger], timeout=30, what="the reason modal")[0]["view"]
    assert opened["callback_id"] == "feedback_reason"
    interact(http, sandbox_views.submission_payload(opened, user_id="U0BOB", team_id=TEAM, values={
        "reason": {"reason": {"type": "radio_buttons", "selected_option": {"value": "outdated"}}},
        "comment": {"comment": {"type": "plain_text_input", "value": "the policy changed in May"}}}))

    def listed():
        page = http.get("/api/feedback", params={"rating": "down", "agent": "assistant"},
                        headers={"Authorization": f"Bearer {admin_token}"})
        assert page.status_code == 200, page.text
        return [item for item in page.json()["items"] if item["user_id"] == "U0BOB" and item["reason"]]
    item = wait_for(listed, timeout=60, what="the 👎 with its reason in /api/feedback")[0]
    assert item["reason"] == "outdated" and item["comment"] == "the policy changed in May"
    assert item["question"] == "what is the refund policy?" and "LLM:" in item["answer"]
    assert item["model"] == "openai/e2e-model" and item["prompt_version"].startswith("sha256:")
    assert item["agent"] == "assistant" and item["scope"] in ("none", "shared")


def test_the_home_tab_is_published_with_the_users_agents_and_for_an_admin_the_console(dev, sandbox, http,
                                                                                       admin_token):
    sandbox.add_users({"id": "U0OPSFB", "real_name": "Ops Person", "email": OPS_EMAIL})
    for user in ("U0ALICE", "U0OPSFB"):
        event = {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home",
                 "event_ts": new_ts()}
        assert signed_post(http, SECRET, event).status_code == 200

    def home(user):
        shown = sandbox_views.views(sandbox.state, user=user, method="views.publish")
        return shown[-1]["view"] if shown else None
    alice = json.dumps(wait_for(lambda: home("U0ALICE"), timeout=60, what="Alice's Home tab"))
    assert "/insightmesh help" in alice or "/insightmesh" in alice
    assert "Agents you may use" in alice and "/console" not in alice
    ops = json.dumps(wait_for(lambda: home("U0OPSFB"), timeout=60, what="the admin's Home tab"))
    assert f"{dev.url}/console" in ops or "/console|open the console" in ops
    messages_tab = {"type": "app_home_opened", "user": "U0CAROL", "channel": "DU0CAROL", "tab": "messages",
                    "event_ts": new_ts()}
    assert signed_post(http, SECRET, messages_tab).status_code == 200  # the Messages tab: nothing to publish
    later = {"type": "app_home_opened", "user": "U0DAVE", "channel": "DU0DAVE", "tab": "home", "event_ts": new_ts()}
    assert signed_post(http, SECRET, later).status_code == 200
    wait_for(lambda: home("U0DAVE"), timeout=60, what="a later Home tab")
    assert home("U0CAROL") is None


def test_the_message_shortcut_answers_in_the_messages_thread(dev, sandbox, http):
    posted = sandbox.add_user_message(channel="C0SHORT", user="U0CAROL", text="Is the Q3 launch still on for May?")
    interact(http, {
        "type": "message_action", "callback_id": "ask_about_message", "trigger_id": slack.new_trigger_id(),
        "action_ts": new_ts(), "team": {"id": TEAM, "domain": "sandbox"},
        "user": {"id": "U0ALICE", "name": "alice", "team_id": TEAM}, "channel": {"id": "C0SHORT", "name": "c0short"},
        "message_ts": posted["ts"], "response_url": sandbox.response_url(channel="C0SHORT", user="U0ALICE"),
        "message": {"type": "message", "user": "U0CAROL", "ts": posted["ts"], "text": posted["text"]},
        "token": "x", "api_app_id": slack.DEFAULT_APP_ID, "is_enterprise_install": False, "enterprise": None})
    reply = final_reply(sandbox, "C0SHORT", posted["ts"])
    assert reply["thread_ts"] == posted["ts"]
    assert "Is the Q3 launch still on for May?" in reply["text"]


def test_the_shortcut_where_the_bot_is_not_a_member_answers_the_asker_privately(dev, sandbox, http):
    posted = sandbox.add_user_message(channel="C0NOBOT", user="U0CAROL", text="Who owns the billing service?")
    sandbox.fail("chat.postMessage", "error", count=5, error="not_in_channel", channel="C0NOBOT")
    interact(http, {
        "type": "message_action", "callback_id": "ask_about_message", "trigger_id": slack.new_trigger_id(),
        "action_ts": new_ts(), "team": {"id": TEAM, "domain": "sandbox"},
        "user": {"id": "U0ALICE", "name": "alice", "team_id": TEAM}, "channel": {"id": "C0NOBOT", "name": "c0nobot"},
        "message_ts": posted["ts"], "response_url": sandbox.response_url(channel="C0NOBOT", user="U0ALICE"),
        "message": {"type": "message", "user": "U0CAROL", "ts": posted["ts"], "text": posted["text"]},
        "token": "x", "api_app_id": slack.DEFAULT_APP_ID, "is_enterprise_install": False, "enterprise": None})
    private = wait_for(lambda: [m for m in sandbox.messages(channel="C0NOBOT")
                                if m.get("ephemeral") and "Who owns the billing service?" in m["text"]],
                       timeout=60, what="the private answer through response_url")
    assert private[0]["is_bot"]
    assert not [m for m in sandbox.messages(channel="C0NOBOT") if m.get("is_bot") and not m.get("ephemeral")]
