"""The Slack Web API sandbox, driven by the real slack_sdk clients, and the Slack signing helpers.

Everything runs on 127.0.0.1: the sandbox is a development stand-in for Slack, so these tests
check that it speaks Slack's wire format as slack_sdk expects it (tokens, form and JSON bodies,
429 + Retry-After, response_url) and that it records what the worker did.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
from urllib.parse import parse_qsl

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from insightmesh_local import local_auth, slack_signing
from insightmesh_local.slack_sandbox import SANDBOX_WARNING, SlackSandbox
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(60)

TS = re.compile(r"^\d{10}\.\d{6}$")
SECRET = "test-signing-secret"


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


@pytest.fixture
def control(sandbox):
    """The sandbox's control endpoints, with the run's secret (as `insightmesh chat` sends it)."""
    with httpx.Client(base_url=sandbox.root, timeout=5, headers={local_auth.HEADER: sandbox.secret}) as http:
        yield http


@pytest.fixture
def stranger(sandbox):
    with httpx.Client(base_url=sandbox.root, timeout=5) as http:
        yield http


# -- the Web API ---------------------------------------------------------------------------------------
def test_auth_test_identifies_the_bot_and_says_it_is_a_sandbox(sandbox, client):
    assert sandbox.url.startswith("http://127.0.0.1:") and sandbox.url.endswith("/api/")
    identity = client.auth_test()
    assert identity["ok"] is True
    assert identity["user_id"] == "UBOTLOCAL"
    assert identity["bot_id"] and identity["team_id"] and identity["user"] and identity["team"]
    assert identity["url"] == sandbox.root
    assert identity["warning"] == SANDBOX_WARNING
    assert identity.headers["X-InsightMesh-Sandbox"]


def test_calls_without_a_token_are_not_authed(sandbox):
    with pytest.raises(SlackApiError) as refused:
        WebClient(base_url=sandbox.url, timeout=5, retry_handlers=[]).auth_test()
    assert refused.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError) as wrong:
        WebClient(base_url=sandbox.url, token="not-a-slack-token", timeout=5, retry_handlers=[]).auth_test()
    assert wrong.value.response["error"] == "invalid_auth"
    assert [call["error"] for call in sandbox.calls("auth.test")] == ["not_authed", "invalid_auth"]


def test_unknown_methods_answer_as_slack_does(client):
    with pytest.raises(SlackApiError) as unknown:
        client.api_call("chat.scheduleMessage", json={"channel": "C1", "text": "x", "post_at": 1})
    assert unknown.value.response["error"] == "unknown_method"


def test_post_in_a_thread_with_metadata_then_update_keeps_the_edit_history(sandbox, client):
    parent = sandbox.add_user_message(channel="D1", user="U1", text="what is our refund policy?")
    metadata = {"event_type": "insightmesh_reply", "event_payload": {"request_id": "r-1", "status": "placeholder"}}
    posted = client.chat_postMessage(channel="D1", text="Thinking…", thread_ts=parent["ts"], metadata=metadata)
    assert posted["ok"] is True and posted["channel"] == "D1" and TS.match(posted["ts"])
    assert posted["message"]["thread_ts"] == parent["ts"]
    assert posted["message"]["metadata"] == metadata
    assert posted["message"]["bot_id"] == "BBOTLOCAL" and posted["message"]["user"] == "UBOTLOCAL"

    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*30 days*"}}]
    updated = client.chat_update(channel="D1", ts=posted["ts"], text="30 days", blocks=blocks)
    assert updated["ts"] == posted["ts"] and updated["text"] == "30 days"
    assert updated["message"]["edited"]["user"] == "UBOTLOCAL"

    [recorded] = [m for m in sandbox.messages(channel="D1", thread_ts=parent["ts"]) if m["is_bot"]]
    assert recorded["text"] == "30 days" and recorded["blocks"] == blocks
    assert recorded["metadata"] == metadata and recorded["thread_ts"] == parent["ts"]
    assert [(edit["previous_text"], edit["text"]) for edit in recorded["edits"]] == [("Thinking…", "30 days")]


def test_timestamps_are_unique_and_increasing(client):
    stamps = [client.chat_postMessage(channel="C1", text=str(n))["ts"] for n in range(20)]
    keys = [tuple(int(part) for part in ts.split(".")) for ts in stamps]
    assert keys == sorted(keys) and len(set(stamps)) == len(stamps)


def test_form_encoded_calls_carry_json_fields_as_strings(sandbox, control):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    answer = control.post("api/chat.postMessage", data={
        "channel": "C9", "text": "hi", "blocks": json.dumps(blocks),
        "metadata": json.dumps({"event_type": "t", "event_payload": {"n": 1}}),
    }, headers={"Authorization": "Bearer xoxb-form"}).json()
    assert answer["ok"] is True
    [message] = sandbox.messages(channel="C9")
    assert message["blocks"] == blocks and message["metadata"] == {"event_type": "t", "event_payload": {"n": 1}}
    # the legacy token form field is accepted too; a bad metadata shape is refused as Slack does
    refused = control.post("api/chat.postMessage", data={"token": "xoxb-form", "channel": "C9", "text": "x",
                                                         "metadata": json.dumps({"event_type": "t"})}).json()
    assert refused == {**refused, "ok": False, "error": "invalid_metadata_schema"}
    assert control.post("api/chat.postMessage", data={"token": "xoxb-form", "channel": "C9"}).json()["error"] \
        == "no_text"


def test_update_and_replies_refuse_unknown_messages(client):
    with pytest.raises(SlackApiError) as missing:
        client.chat_update(channel="C1", ts="1700000000.000001", text="x")
    assert missing.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as thread:
        client.conversations_replies(channel="C1", ts="1700000000.000001")
    assert thread.value.response["error"] == "thread_not_found"


def test_conversations_replies_returns_the_thread_and_metadata_only_when_asked(sandbox, client):
    root = sandbox.add_user_message(channel="C2", user="U2", text="<@UBOTLOCAL> help")
    metadata = {"event_type": "insightmesh_reply", "event_payload": {"request_id": "r-2"}}
    reply = client.chat_postMessage(channel="C2", thread_ts=root["ts"], text="Here you go", metadata=metadata)
    sandbox.add_user_message(channel="C2", user="U2", text="thanks", thread_ts=root["ts"])
    client.chat_postMessage(channel="C2", text="elsewhere")  # another top-level message

    thread = client.conversations_replies(channel="C2", ts=root["ts"], include_all_metadata=True)
    messages = thread["messages"]
    assert [m["text"] for m in messages] == ["<@UBOTLOCAL> help", "Here you go", "thanks"]
    assert messages[0]["reply_count"] == 2 and messages[0]["latest_reply"] == messages[2]["ts"]
    assert messages[1]["ts"] == reply["ts"] and messages[1]["metadata"] == metadata
    assert messages[1]["parent_user_id"] == "U2" and thread["has_more"] is False

    plain = client.conversations_replies(channel="C2", ts=root["ts"])
    assert all("metadata" not in m for m in plain["messages"])

    first = client.conversations_replies(channel="C2", ts=root["ts"], limit=2)
    assert len(first["messages"]) == 2 and first["has_more"] is True
    rest = client.conversations_replies(channel="C2", ts=root["ts"], limit=2,
                                        cursor=first["response_metadata"]["next_cursor"])
    assert [m["text"] for m in rest["messages"]] == ["thanks"]


def test_users_info_generates_or_returns_registered_profiles(sandbox, client, control):
    generated = client.users_info(user="U123ABC")["user"]
    assert generated["id"] == "U123ABC" and generated["is_bot"] is False
    assert generated["profile"]["email"] == "user-U123ABC@example.com"
    assert generated["profile"]["real_name"] and generated["profile"]["display_name"]

    control.post("_sandbox/users", json={"users": [{"id": "U777", "real_name": "Ada Lovelace",
                                                    "display_name": "ada", "email": "ada@corp.example"}]})
    ada = client.users_info(user="U777")["user"]
    assert ada["profile"] == {**ada["profile"], "email": "ada@corp.example", "real_name": "Ada Lovelace",
                              "display_name": "ada"}
    assert client.users_info(user="UBOTLOCAL")["user"]["is_bot"] is True
    with pytest.raises(SlackApiError) as missing:
        client.users_info(user="not-a-user")
    assert missing.value.response["error"] == "user_not_found"


def test_users_list_pages_registered_users_in_order_as_slack_does(sandbox, client, control):
    control.post("_sandbox/users", json={"users": [
        {"id": "U001", "name": "ada", "real_name": "Ada Lovelace", "display_name": "ada", "email": "ada@corp.example"},
        {"id": "U002", "name": "helper", "real_name": "Helper Bot", "is_bot": True},
        {"id": "U003", "name": "gone", "email": "gone@corp.example", "deleted": True},
        {"id": "U004", "name": "nomail", "email": None},
        {"id": "W005", "name": "guest", "email": "guest@partner.example", "is_restricted": True},
    ]})
    first = client.users_list(limit=2)
    assert first["ok"] is True and isinstance(first["cache_ts"], int)
    assert [member["id"] for member in first["members"]] == ["U001", "U002"]
    cursor = first["response_metadata"]["next_cursor"]
    assert cursor
    ada = first["members"][0]
    assert ada["team_id"] == "TLOCAL0001" and ada["name"] == "ada" and ada["real_name"] == "Ada Lovelace"
    assert (ada["deleted"], ada["is_bot"], ada["is_restricted"]) == (False, False, False)
    assert {key: ada["profile"][key] for key in ("email", "display_name", "real_name")} == {
        "email": "ada@corp.example", "display_name": "ada", "real_name": "Ada Lovelace"}
    assert first["members"][1]["is_bot"] is True and "email" not in first["members"][1]["profile"]

    second = client.users_list(limit=2, cursor=cursor)
    assert [member["id"] for member in second["members"]] == ["U003", "U004"]
    assert second["members"][0]["deleted"] is True and "email" not in second["members"][1]["profile"]
    last = client.users_list(limit=2, cursor=second["response_metadata"]["next_cursor"])
    assert [member["id"] for member in last["members"]] == ["W005"] and last["members"][0]["is_restricted"] is True
    assert last["response_metadata"]["next_cursor"] == ""

    # slack_sdk's own cursor iteration walks the same pages; no limit = one page of everything.
    assert [len(page["members"]) for page in client.users_list(limit=2)] == [2, 2, 1]
    assert [member["id"] for member in client.users_list()["members"]] == ["U001", "U002", "U003", "U004", "W005"]
    assert [call["args"].get("cursor") for call in sandbox.calls("users.list")][:3] == [None, cursor, second[
        "response_metadata"]["next_cursor"]]


def test_users_list_caps_the_limit_and_refuses_unknown_cursors(sandbox, client):
    sandbox.generate_users(1500, domain="corp.example")
    capped = client.users_list(limit=5000)
    assert len(capped["members"]) == 1000 and capped["members"][0]["id"] == "U00000001"
    rest = client.users_list(limit=5000, cursor=capped["response_metadata"]["next_cursor"])
    assert len(rest["members"]) == 500 and rest["members"][-1]["profile"]["email"] == "user1500@corp.example"
    assert rest["response_metadata"]["next_cursor"] == ""
    for forged in ("not-base64!", "dXNlcjpVTk9CT0RZ", "Zm9vOmJhcg=="):  # garbage, user:UNOBODY, foo:bar
        with pytest.raises(SlackApiError) as refused:
            client.users_list(limit=10, cursor=forged)
        assert refused.value.response["error"] == "invalid_cursor"
    with pytest.raises(SlackApiError) as negative:
        client.users_list(limit=-1)
    assert negative.value.response["error"] == "invalid_limit"


def test_users_list_bulk_registration_and_removal(sandbox, client, control):
    answer = control.post("_sandbox/users/generate", json={"count": 50_000, "domain": "big.example"}).json()
    assert (answer["count"], answer["first"], answer["last"]) == (50_000, "U00000001", "U00050000")
    pages = [[member["id"] for member in page["members"]] for page in client.users_list(limit=1000)]
    assert len(pages) == 50 and sum(len(page) for page in pages) == 50_000  # slack_sdk follows the cursor
    assert len({user_id for page in pages for user_id in page}) == 50_000

    removed = control.post("_sandbox/users/remove", json={"ids": ["U00000002", "U99999999"]}).json()
    assert removed["removed"] == ["U00000002"]
    assert [m["id"] for m in client.users_list(limit=3)["members"]] == ["U00000001", "U00000003", "U00000004"]
    assert sandbox.add_users([{"id": "WLIST1", "email": "a@x.example"}, {"id": "WLIST2"}]) == ["WLIST1", "WLIST2"]
    assert control.post("_sandbox/users/generate", json={"count": 0}).status_code == 400
    assert control.post("_sandbox/users/remove", json={"ids": "U1"}).status_code == 400


def test_users_list_obeys_fail_rules_with_429_and_retry_after(sandbox, control):
    sandbox.add_users({"id": "U1", "email": "one@corp.example"}, {"id": "U2", "email": "two@corp.example"})
    control.post("_sandbox/fail", json={"method": "users.list", "mode": "ratelimit", "count": 1, "retry_after": 1})
    retrying = WebClient(base_url=sandbox.url, token="xoxb-test", timeout=5,
                         retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    assert [m["id"] for m in retrying.users_list(limit=10)["members"]] == ["U1", "U2"]
    limited, answered = sandbox.calls("users.list")
    assert (limited["status"], limited["error"], answered["status"], answered["ok"]) == (429, "ratelimited", 200, True)
    assert answered["at"] - limited["at"] >= 1.0

    sandbox.fail("users.list", "ratelimit", 1, retry_after=4)
    with pytest.raises(SlackApiError) as refused:
        WebClient(base_url=sandbox.url, token="xoxb-test", timeout=5, retry_handlers=[]).users_list()
    assert refused.value.response.status_code == 429 and refused.value.response.headers["Retry-After"] == "4"


def test_post_ephemeral_is_recorded_for_one_user(sandbox, client):
    answer = client.chat_postEphemeral(channel="C3", user="U3", text="only you")
    assert TS.match(answer["message_ts"])
    [message] = sandbox.messages(channel="C3")
    assert message["ephemeral"] is True and message["ephemeral_for"] == "U3"


# -- failure injection --------------------------------------------------------------------------------------
def test_rate_limit_is_retried_by_slack_sdk_honouring_retry_after(sandbox, control):
    rule = control.post("_sandbox/fail", json={"method": "chat.postMessage", "mode": "ratelimit", "count": 1,
                                               "retry_after": 1}).json()
    assert rule["ok"] is True and rule["pending"][0]["remaining"] == 1
    retrying = WebClient(base_url=sandbox.url, token="xoxb-test", timeout=5,
                         retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    assert retrying.chat_postMessage(channel="C4", text="after a 429")["ok"] is True

    first, second = sandbox.calls("chat.postMessage")
    assert (first["status"], first["error"], second["status"], second["ok"]) == (429, "ratelimited", 200, True)
    assert second["at"] - first["at"] >= 1.0  # slack_sdk waited at least Retry-After seconds
    assert [m["text"] for m in sandbox.messages(channel="C4")] == ["after a 429"]


def test_rate_limit_reaches_a_client_without_retries_with_retry_after(sandbox, client):
    sandbox.fail("chat.update", "ratelimit", 1, retry_after=7)
    posted = client.chat_postMessage(channel="C5", text="x")
    with pytest.raises(SlackApiError) as limited:
        client.chat_update(channel="C5", ts=posted["ts"], text="y")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "7"
    assert limited.value.response["error"] == "ratelimited"


def test_error_injection_answers_ok_false_for_the_next_n_calls(sandbox, client):
    sandbox.fail("chat.postMessage", "error", 2, error="channel_not_found")
    for _ in range(2):
        with pytest.raises(SlackApiError) as failed:
            client.chat_postMessage(channel="C6", text="x")
        assert failed.value.response["error"] == "channel_not_found"
    assert client.chat_postMessage(channel="C6", text="x")["ok"] is True
    assert len(sandbox.messages(channel="C6")) == 1


def test_delay_records_the_message_before_answering(sandbox, control):
    control.post("_sandbox/fail", json={"method": "chat.postMessage", "mode": "delay", "count": 1, "delay": 3.0})
    impatient = WebClient(base_url=sandbox.url, token="xoxb-test", timeout=1, retry_handlers=[])
    outcome: dict[str, BaseException] = {}

    def post() -> None:
        try:
            impatient.chat_postMessage(channel="C7", text="posted, then the worker timed out")
        except (TimeoutError, urllib.error.URLError, OSError) as error:
            outcome["error"] = error

    caller = threading.Thread(target=post)
    caller.start()
    # The message is visible while the call is still waiting for its answer.
    wait_for(lambda: sandbox.messages(channel="C7"), timeout=2, what="the delayed message to be recorded")
    caller.join(timeout=5)
    assert not caller.is_alive() and "error" in outcome  # the client gave up before the answer came
    [call] = sandbox.calls("chat.postMessage")
    assert call["ok"] is True and call["delayed"] == 3.0


def test_bad_failure_rules_are_refused(control):
    answer = control.post("_sandbox/fail", json={"method": "chat.postMessage", "mode": "explode"})
    assert answer.status_code == 400 and "mode" in answer.json()["message"]


# -- response_url --------------------------------------------------------------------------------------
def test_response_url_posts_are_recorded_as_messages(sandbox, client, control):
    url = control.post("_sandbox/response_urls", json={"channel": "C8", "user": "U8"}).json()["response_url"]
    assert url.startswith(sandbox.root + "response/")
    webhook = WebhookClient(url, timeout=5)
    assert webhook.send(text="only for you").status_code == 200
    assert webhook.send_dict({"text": "for everyone", "response_type": "in_channel",
                              "thread_ts": "1700000000.000100"}).status_code == 200
    ephemeral, public = sandbox.messages(channel="C8")
    assert (ephemeral["text"], ephemeral["ephemeral_for"]) == ("only for you", "U8")
    assert ephemeral["source"] == "response_url"
    assert (public["text"], public["ephemeral"], public["thread_ts"]) == ("for everyone", False, "1700000000.000100")
    assert [call["method"] for call in sandbox.calls()].count("response_url") == 2


def test_response_url_can_replace_or_delete_the_original_message(sandbox, client):
    original = client.chat_postMessage(channel="C9", text="Was this helpful? [👍] [👎]")
    url = sandbox.response_url(channel="C9", user="U9", message_ts=original["ts"])
    WebhookClient(url, timeout=5).send(text="Thanks for the feedback", replace_original=True)
    [message] = sandbox.messages(channel="C9")
    assert message["text"] == "Thanks for the feedback"
    assert message["edits"][0]["previous_text"].startswith("Was this helpful")
    WebhookClient(url, timeout=5).send_dict({"delete_original": True})
    assert sandbox.messages(channel="C9")[0]["deleted"] is True


# -- inspection ----------------------------------------------------------------------------------------
def test_inspection_filters_and_reset(sandbox, client, control):
    first = client.chat_postMessage(channel="C10", text="one")
    client.chat_postMessage(channel="C10", text="two")
    client.chat_postMessage(channel="C11", text="three")
    listed = control.get("_sandbox/messages", params={"channel": "C10", "since": first["ts"]}).json()
    assert [m["text"] for m in listed] == ["two"]
    calls = control.get("_sandbox/calls", params={"method": "chat.postMessage"}).json()
    assert len(calls) == 3 and all("token" not in call["args"] for call in calls)
    assert control.post("_sandbox/reset").json()["ok"] is True
    assert sandbox.messages() == [] and sandbox.calls() == []


def test_concurrent_posts_are_all_recorded(sandbox):
    def worker(n: int) -> None:
        own = WebClient(base_url=sandbox.url, token="xoxb-test", timeout=5)
        for i in range(10):
            own.chat_postMessage(channel="C12", text=f"{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    messages = sandbox.messages(channel="C12")
    assert len(messages) == 50 and len({m["ts"] for m in messages}) == 50


# -- signing and payload builders ----------------------------------------------------------------------
def test_signatures_verify_with_slack_sdk_and_stale_ones_do_not():
    body = slack_signing.json_body({"type": "event_callback"})
    verifier = SignatureVerifier(SECRET)
    headers = slack_signing.sign(SECRET, body)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert verifier.is_valid_request(body, headers)
    assert headers["X-Slack-Signature"].startswith("v0=")
    stale = slack_signing.sign(SECRET, body, timestamp=int(time.time()) - 10 * 60)
    assert not verifier.is_valid(body, stale["X-Slack-Request-Timestamp"], stale["X-Slack-Signature"])
    assert not verifier.is_valid(body + b" ", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)


def test_event_builders_have_slack_shapes():
    dm = slack_signing.message_event("U1", "D1", "hello", "1700000000.000100")
    assert dm["channel_type"] == "im" and dm["type"] == "message" and dm["event_ts"] == dm["ts"]
    assert "thread_ts" not in dm and dm["blocks"][0]["type"] == "rich_text"
    reply = slack_signing.message_event("U1", "C1", "more", "1700000000.000200", "1700000000.000100",
                                        parent_user_id="U1")
    assert reply["channel_type"] == "channel" and reply["thread_ts"] == "1700000000.000100"
    mention = slack_signing.app_mention_event("U1", "C1", "what is X?", "1700000000.000300")
    assert mention["text"] == "<@UBOTLOCAL> what is X?"
    assert mention["blocks"][0]["elements"][0]["elements"][0] == {"type": "user", "user_id": "UBOTLOCAL"}
    edited = slack_signing.message_event("U1", "D1", "new", "1700000000.000100", subtype="message_changed",
                                         previous_text="old")
    assert edited["subtype"] == "message_changed" and edited["message"]["text"] == "new"
    assert edited["previous_message"]["text"] == "old" and edited["message"]["edited"]["user"] == "U1"
    deleted = slack_signing.message_event("U1", "D1", "gone", "1700000000.000100", subtype="message_deleted")
    assert deleted["deleted_ts"] == "1700000000.000100" and deleted["hidden"] is True
    bot = slack_signing.message_event("UBOTLOCAL", "D1", "hi", "1700000000.000400", bot_id="BBOTLOCAL")
    assert bot["bot_id"] == "BBOTLOCAL" and "client_msg_id" not in bot
    envelope = slack_signing.event_callback("T1", "A1", mention)
    assert envelope["type"] == "event_callback" and envelope["event_id"].startswith("Ev")
    assert envelope["authorizations"][0] == {**envelope["authorizations"][0], "user_id": "UBOTLOCAL", "is_bot": True}


def test_command_and_interaction_bodies_are_form_encoded_as_slack_sends_them():
    body = slack_signing.slash_command_body(user_id="U1", channel_id="C1", text="meddic notes",
                                            response_url="http://127.0.0.1:1/response/x")
    form = dict(parse_qsl(body.decode()))
    assert form["command"] == "/insightmesh" and form["text"] == "meddic notes" and form["trigger_id"]
    assert {"token", "team_id", "team_domain", "channel_id", "channel_name", "user_id", "user_name", "api_app_id",
            "response_url"} <= set(form)
    assert SignatureVerifier(SECRET).is_valid_request(body, slack_signing.sign(SECRET, body))

    action = slack_signing.block_actions_body(user_id="U1", channel_id="C1", message_ts="1700000000.000500",
                                              thread_ts="1700000000.000100", action_id="feedback_up",
                                              value="r-1", block_id="feedback",
                                              response_url="http://127.0.0.1:1/response/y")
    payload = json.loads(dict(parse_qsl(action.decode()))["payload"])
    assert payload["type"] == "block_actions"
    assert payload["actions"][0] == {**payload["actions"][0], "action_id": "feedback_up", "value": "r-1",
                                     "block_id": "feedback"}
    assert payload["message"]["ts"] == "1700000000.000500" and payload["message"]["thread_ts"] == "1700000000.000100"
    assert (payload["channel"]["id"], payload["user"]["id"], payload["team"]["id"]) == ("C1", "U1",
                                                                                        slack_signing.DEFAULT_TEAM_ID)
    assert payload["response_url"] == "http://127.0.0.1:1/response/y"


def test_builders_are_understood_by_the_ingress_classifier():
    """The payloads are what InsightMesh's own ingress expects from Slack."""
    events = pytest.importorskip("insightmesh.slack.events")
    classify = events.classify_event
    dm = slack_signing.event_callback("T1", "A1", slack_signing.message_event("U1", "D1", "hi", "1700000000.000100"))
    assert classify(dm).decision == events.Decision.ANSWER
    mention = slack_signing.event_callback("T1", "A1", slack_signing.app_mention_event("U1", "C1", "hi",
                                                                                       "1700000000.000200"))
    assert classify(mention).decision == events.Decision.ANSWER
    copy = slack_signing.event_callback("T1", "A1", slack_signing.message_event("U1", "C1", "<@UBOTLOCAL> hi",
                                                                                "1700000000.000200"))
    assert classify(copy).decision == events.Decision.IGNORE
    edit = slack_signing.event_callback("T1", "A1", slack_signing.message_event(
        "U1", "D1", "new", "1700000000.000100", subtype="message_changed", previous_text="old"))
    assert classify(edit).decision == events.Decision.IGNORE
    bot = slack_signing.event_callback("T1", "A1", slack_signing.message_event(
        "UBOTLOCAL", "D1", "hi", "1700000000.000300", bot_id="BBOTLOCAL"))
    assert classify(bot).decision == events.Decision.IGNORE
    form = dict(parse_qsl(slack_signing.slash_command_body(user_id="U1", channel_id="C1", text="help",
                                                           response_url="http://127.0.0.1:1/r").decode()))
    assert events.parse_command(form).text == "help"
    action = json.loads(dict(parse_qsl(slack_signing.block_actions_body(
        user_id="U1", channel_id="C1", message_ts="1700000000.000500", action_id="feedback_up", value="v",
        response_url="http://127.0.0.1:1/r").decode()))["payload"])
    [pressed] = events.parse_actions(action)
    assert pressed.action_id == "feedback_up" and pressed.message_ts == "1700000000.000500"


# -- the sandbox is not an open door ---------------------------------------------------------------------
CONTROL_CALLS = [("GET", "_sandbox/messages", None), ("POST", "_sandbox/messages", {"channel": "C1", "user": "U1",
                                                                                   "text": "posing as U1"}),
                 ("GET", "_sandbox/calls", None), ("POST", "_sandbox/reset", None),
                 ("POST", "_sandbox/fail", {"method": "*", "mode": "error"}), ("POST", "_sandbox/users", {"id": "U9"}),
                 ("POST", "_sandbox/response_urls", {"channel": "C1"}), ("POST", "_sandbox/ts", None)]


@pytest.mark.parametrize(("verb", "path", "body"), CONTROL_CALLS)
def test_control_endpoints_refuse_a_request_without_the_secret(sandbox, stranger, verb, path, body):
    sandbox.add_user_message(channel="C1", user="U1", text="before")
    response = stranger.request(verb, path, json=body)
    assert response.status_code == 401
    assert response.json()["ok"] is False and response.json()["warning"] == SANDBOX_WARNING
    wrong = stranger.request(verb, path, json=body, headers={local_auth.HEADER: "not-the-secret"})
    assert wrong.status_code == 401
    assert [m["text"] for m in sandbox.messages("C1")] == ["before"]  # nothing posted, nothing reset
    assert sandbox.state.failures() == []


def test_a_cross_origin_text_plain_post_cannot_post_as_a_person(sandbox, stranger):
    page = {"Content-Type": "text/plain", "Origin": "https://evil.example", local_auth.HEADER: sandbox.secret}
    body = json.dumps({"channel": "C1", "user": "U1", "text": "hi"})
    assert stranger.post("_sandbox/messages", content=body, headers=page).status_code == 403
    assert sandbox.messages("C1") == []


def test_a_foreign_host_is_refused_everywhere(sandbox, stranger, client):
    rebinding = {"Host": "evil.example", local_auth.HEADER: sandbox.secret}
    assert stranger.get("_sandbox/messages", headers=rebinding).status_code == 403
    assert stranger.get("_sandbox/health", headers=rebinding).status_code == 403
    assert stranger.post("api/chat.postMessage", headers={"Host": "evil.example", "Authorization": "Bearer xoxb-1"},
                         data={"channel": "C1", "text": "x"}).status_code == 403
    assert sandbox.messages("C1") == []
    assert client.auth_test()["ok"] is True  # the bot's own Web API calls (loopback Host) still work


def test_the_web_api_needs_no_secret_and_the_helpers_know_it(sandbox, client, control):
    client.chat_postMessage(channel="C2", text="from the bot")  # slack_sdk with a bot token only
    assert [m["text"] for m in sandbox.messages("C2")] == ["from the bot"]
    assert [m["text"] for m in control.get("_sandbox/messages", params={"channel": "C2"}).json()] == ["from the bot"]
    assert SlackSandbox(port=0, secret="given").secret == "given"
