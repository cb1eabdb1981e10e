"""Who the worker answers, and how often (issue 10 §4) — the worker in-process, its tables in moto
(built from the template), Slack as the local sandbox over loopback, the offline LLM.

Slackbot and bot users get nothing; guests and people of other workspaces a clear private refusal
(unless SLACK_GUEST_POLICY=allow, and then never ``all_users``); one person past the per-minute
limit a friendly note; an uninstalled workspace no Slack or model call until a new token is
installed; agent mode ends only by the hand of whoever started it; a forged response_url gets nothing.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from slack_sdk.errors import SlackApiError

from insightmesh.agents.catalog import seed_agents
from insightmesh.agents.registry import builtin_definitions
from insightmesh.auth.settings import get_auth_settings
from insightmesh.auth.tokens import create_token
from insightmesh.conversation import gate, threads, worker, workspaces
from insightmesh.conversation.requests import ConversationRequest, RequestKind, thread_key
from insightmesh.directory.models import Identity, Membership, User
from insightmesh.directory.providers.slack_user_sync import SlackUserSync
from insightmesh.directory.users import ALL_USERS, slack_identity_key
from insightmesh.llm import offline
from insightmesh.slack import client as slack_client
from insightmesh.slack import profiles
from insightmesh_local.slack_sandbox import SlackSandbox
from insightmesh_local.slack_signing import sign
from tests.integration.conftest import DynamoCalls, load_handler
from tests.job_context import RecordingContext, run
from tests.slack_fixtures import conversation_sandbox, message_request

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).parents[2]
TEAM = "TLOCAL0001"
DM = "D0ALICE01"
CHANNEL = "C0SHARED1"
_ts = itertools.count(1)


def new_ts() -> str:
    return f"17958{next(_ts):05d}.000100"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tables: dict[str, str]) -> Iterator[SlackSandbox]:
    monkeypatch.delenv("SLACK_GUEST_POLICY", raising=False)
    monkeypatch.delenv("SLACK_USER_RATE_LIMIT_PER_MINUTE", raising=False)
    with conversation_sandbox(monkeypatch, "xoxb-first-install") as sandbox:
        yield sandbox


def message(user: str, text: str, *, channel: str = DM, thread_ts: str | None = None) -> ConversationRequest:
    return message_request(TEAM, user, text, channel=channel, ts=new_ts(), thread_ts=thread_ts)


def posted(sandbox: SlackSandbox, method: str | None = None) -> list[dict[str, Any]]:
    """Calls that change what someone sees: posts, updates, ephemerals, deletes."""
    visible = ("chat.postMessage", "chat.update", "chat.postEphemeral", "chat.delete", "response_url")
    return [call for call in sandbox.calls(method) if call["method"] in visible]


def llm_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    original = offline.OfflineClient.complete

    def recording(self: Any, messages: Any, **kwargs: Any) -> Any:
        calls.append(messages)
        return original(self, messages, **kwargs)

    monkeypatch.setattr(offline.OfflineClient, "complete", recording)
    return calls


# -- Slackbot, bots and apps ------------------------------------------------------------------------------
def test_slackbot_gets_no_model_call_and_no_post(env: SlackSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = llm_calls(monkeypatch)
    sample = json.loads((ROOT / "events/slack_ingress/slackbot_removed_dm.json").read_text())
    event = json.loads(sample["body"])["event"]

    worker.process(message(event["user"], event["text"], channel=event["channel"]))

    assert calls == []
    assert posted(env) == []


@pytest.mark.parametrize("flags", [{"is_bot": True}, {"is_app_user": True}])
def test_a_bot_or_app_user_is_never_answered(env: SlackSandbox, monkeypatch: pytest.MonkeyPatch,
                                            flags: dict[str, bool]) -> None:
    env.add_users({"id": "U0HELPER1", "name": "helper", **flags})
    if flags.get("is_app_user"):
        monkeypatch.setattr(profiles, "profile_from_user", _with_app_user(profiles.profile_from_user))
    calls = llm_calls(monkeypatch)

    worker.process(message("U0HELPER1", "hello"))

    assert calls == []
    assert posted(env) == []
    assert list(Identity.scan()) == []  # no directory user made for it


def _with_app_user(parse: Any) -> Any:
    """The sandbox lists every user with is_app_user false: mark the one under test as Slack would."""
    def parsed(user: Any) -> Any:
        return parse({**user, "is_app_user": True})
    return parsed


# -- guests and outsiders ------------------------------------------------------------------------------------
def test_a_guest_is_refused_clearly_and_privately_by_default(env: SlackSandbox,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    env.add_users({"id": "W0GUEST01", "name": "guest", "email": "guest@partner.example", "is_restricted": True})
    calls = llm_calls(monkeypatch)

    worker.process(message("W0GUEST01", "what is our pricing?"))

    assert calls == []
    [note] = posted(env)
    assert note["method"] == "chat.postEphemeral"
    assert note["args"]["user"] == "W0GUEST01"
    assert "isn't available to guests or people outside this workspace" in note["args"]["text"]
    assert list(Identity.scan()) == []


def test_allowed_guests_are_answered_but_never_put_in_all_users(env: SlackSandbox,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_GUEST_POLICY", "allow")
    env.add_users({"id": "W0GUEST02", "name": "guest", "email": "guest@partner.example", "is_restricted": True},
                  {"id": "U0MEMBER1", "name": "member", "email": "member@corp.example"})

    worker.process(message("W0GUEST02", "hello"))
    worker.process(message("U0MEMBER1", "hello"))

    guest = User.get(Identity.get(slack_identity_key(TEAM, "W0GUEST02")).user_id)
    member = User.get(Identity.get(slack_identity_key(TEAM, "U0MEMBER1")).user_id)
    everyone = {m.user_id for m in Membership.query(ALL_USERS)}
    assert member.user_id in everyone
    assert guest.user_id not in everyone
    answers = [call for call in posted(env, "chat.update")]
    assert len(answers) == 2


# -- per-person rate limit ------------------------------------------------------------------------------------
def test_one_person_past_the_limit_gets_a_friendly_note_and_no_model_call(env: SlackSandbox,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_USER_RATE_LIMIT_PER_MINUTE", "2")
    env.add_users({"id": "U0BUSY001", "name": "busy"}, {"id": "U0CALM001", "name": "calm"})
    calls = llm_calls(monkeypatch)

    for _ in range(3):
        worker.process(message("U0BUSY001", "another question"))
    worker.process(message("U0CALM001", "one question"))

    notes = posted(env, "chat.postEphemeral")
    assert [note["args"]["user"] for note in notes] == ["U0BUSY001"]
    assert "at most 2 a minute" in notes[0]["args"]["text"]
    assert len(posted(env, "chat.update")) == 3  # two for the busy person, one for the calm one
    assert len(calls) == 3


# -- uninstall, revoked tokens, reinstall ---------------------------------------------------------------------
def deactivate(reason: str = "app_uninstalled", event_id: str = "Ev0UNINSTALL") -> bool:
    return workspaces.deactivate(TEAM, reason=reason, event_id=event_id, request_id="req-1")


def test_an_uninstalled_workspace_gets_no_slack_or_model_call(env: SlackSandbox,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls = llm_calls(monkeypatch)
    assert deactivate() is True
    workspaces.clear_cache()  # the worker is another process: it reads the state from the table

    worker.process(message("U0ALICE01", "are you there?"))

    assert calls == []
    assert env.calls() == []
    audit = [item for item in boto3.client("dynamodb").scan(TableName=_table("AUDIT_TABLE"))["Items"]
             if item["action"]["S"] == "workspace.deactivate"]
    assert [item["target"]["S"] for item in audit] == [f"workspace:{TEAM}"]


def test_a_retried_uninstall_event_is_recorded_and_audited_once(env: SlackSandbox) -> None:
    assert deactivate(event_id="Ev0SAME") is True
    assert deactivate(event_id="Ev0SAME") is False
    assert deactivate(reason="tokens_revoked", event_id="Ev0OTHER") is True

    actions = [item["action"]["S"] for item in boto3.client("dynamodb").scan(TableName=_table("AUDIT_TABLE"))["Items"]]
    assert actions.count("workspace.deactivate") == 2
    assert [(s.team_id, s.active, s.reason) for s in workspaces.list_states()] == [(TEAM, False, "tokens_revoked")]


def test_the_same_token_keeps_it_inactive_and_a_new_install_makes_it_active(env: SlackSandbox,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    deactivate()
    workspaces.clear_cache()
    assert workspaces.is_active(TEAM) is False
    assert env.calls("auth.test") == []  # the revoked token is not even tried

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-second-install")
    workspaces.clear_cache()
    worker.process(message("U0ALICE01", "back again?"))

    assert workspaces.is_active(TEAM) is True
    assert len(posted(env, "chat.update")) == 1
    assert [s.active for s in workspaces.list_states()] == [True]
    actions = [item["action"]["S"] for item in boto3.client("dynamodb").scan(TableName=_table("AUDIT_TABLE"))["Items"]]
    assert sorted(actions) == ["workspace.deactivate", "workspace.reactivate"]


def test_deactivation_drops_the_cached_client_and_bot_identity(env: SlackSandbox) -> None:
    first = slack_client.get_slack_client()
    slack_client.bot_identity()

    deactivate()

    assert slack_client._identity is None
    assert slack_client.get_slack_client() is not first


def _table(variable: str) -> str:
    return os.environ[variable]


# -- agent mode in shared threads ------------------------------------------------------------------------------
def test_only_who_started_agent_mode_can_end_it(env: SlackSandbox) -> None:
    seed_agents(builtin_definitions())
    env.add_users({"id": "U0ALICE01", "name": "alice"}, {"id": "U0BOB0001", "name": "bob"})
    start = message("U0ALICE01", "meddic Call with Acme: Dana the CFO owns the budget.", channel=CHANNEL)
    worker.process(start)
    thread = start.thread_ts
    assert thread is not None

    worker.process(message("U0BOB0001", "exit", channel=CHANNEL, thread_ts=thread))

    [note] = posted(env, "chat.postEphemeral")
    assert note["args"]["user"] == "U0BOB0001"
    assert "U0ALICE01" in note["args"]["text"]

    key = thread_key(TEAM, CHANNEL, thread)
    assert threads.load_thread(key).sticky_agent == "meddic"

    button = ConversationRequest(kind=RequestKind.ACTION, request_id=f"act:bob:{new_ts()}", team_id=TEAM,
                                 channel_id=CHANNEL, user_id="U0BOB0001", ts=thread, thread_ts=thread,
                                 action_id="exit_agent", action_value="meddic")
    worker.process(button)
    assert threads.load_thread(key).sticky_agent == "meddic"
    assert len(posted(env, "chat.postEphemeral")) == 2

    worker.process(message("U0ALICE01", "exit", channel=CHANNEL, thread_ts=thread))
    assert threads.load_thread(key).sticky_agent is None


# -- response_url --------------------------------------------------------------------------------------------
def test_a_response_url_that_is_not_slacks_is_never_posted_to(env: SlackSandbox,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(worker.httpx, "post", lambda url, **_: sent.append(url))

    worker._respond("https://attacker.example/collect", "a private answer")
    worker._respond(None, "nothing")

    assert sent == []


# -- the ingress acknowledges and records uninstalls ---------------------------------------------------------------
def signed_sample(name: str) -> dict[str, Any]:
    """A sample of events/slack_ingress, signed again now (the samples carry a fixed, stale time)."""
    sample = json.loads((ROOT / "events/slack_ingress" / f"{name}.json").read_text())
    headers = sign("insightmesh-local-signing-secret", sample["body"].encode())
    sample["headers"]["x-slack-request-timestamp"] = headers["X-Slack-Request-Timestamp"]
    sample["headers"]["x-slack-signature"] = headers["X-Slack-Signature"]
    return sample


@pytest.mark.parametrize("name", ["app_uninstalled", "tokens_revoked"])
def test_the_ingress_acknowledges_an_uninstall_and_records_the_workspace_inactive(
        env: SlackSandbox, monkeypatch: pytest.MonkeyPatch, name: str, dynamo_calls: DynamoCalls) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "insightmesh-local-signing-secret")
    spec = importlib.util.spec_from_file_location(f"ingress_{name}", ROOT / "functions/slack_ingress/handler.py")
    assert spec is not None and spec.loader is not None
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)

    responses: list[dict[str, Any]] = []
    calls = dynamo_calls.during(lambda: responses.append(handler.lambda_handler(signed_sample(name), None)))
    retry = handler.lambda_handler(signed_sample(name), None)

    assert (responses[0]["statusCode"], retry["statusCode"]) == (200, 200)
    assert calls == ["TransactWriteItems:-"]  # the one write on the ack path: state and audit together
    assert [(s.team_id, s.active, s.reason) for s in workspaces.list_states()] == [(TEAM, False, name)]
    actions = [item["action"]["S"] for item in boto3.client("dynamodb").scan(TableName=_table("AUDIT_TABLE"))["Items"]]
    assert actions == ["workspace.deactivate"]  # the retry wrote nothing twice
    assert env.calls() == []


# -- the API shows the state -------------------------------------------------------------------------------------
def test_get_api_workspaces_shows_the_state_to_admins_only(env: SlackSandbox, http_event: Any) -> None:
    get_auth_settings.cache_clear()
    User("admin-1", email="admin@corp.example", display_name="admin", is_admin=True).save()
    User("member-1", email="member@corp.example", display_name="member").save()
    admin = create_token("admin-1", name="admin", scopes=["admin:read"])[0]
    member = create_token("member-1", name="member", scopes=["admin:read"])[0]
    deactivate()
    handler = load_handler()

    shown = handler.lambda_handler(http_event("GET", "/api/workspaces", token=admin), None)
    refused = handler.lambda_handler(http_event("GET", "/api/workspaces", token=member), None)
    anonymous = handler.lambda_handler(http_event("GET", "/api/workspaces"), None)

    assert shown["statusCode"] == 200
    [item] = json.loads(shown["body"])["items"]
    assert (item["team_id"], item["active"], item["reason"]) == (TEAM, False, "app_uninstalled")
    assert (refused["statusCode"], anonymous["statusCode"]) == (403, 401)


# -- the Slack user sync skips guests and outsiders ---------------------------------------------------------------
def test_slack_user_sync_puts_no_guest_or_outsider_in_all_users(env: SlackSandbox,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    env.add_users({"id": "U0ADA0001", "name": "ada", "email": "ada@corp.example"},
                  {"id": "W0GUEST03", "name": "guest", "email": "g@partner.example", "is_restricted": True})
    env.add_users({"id": "U0EXT0001", "name": "ext", "email": "ext@partner.example"},
                  {"id": "U0SINGLE1", "name": "single", "email": "s@corp.example"})
    # The sandbox describes every user as a full member of its own workspace: give these two the
    # fields Slack sends for a Slack Connect stranger and a single-channel guest.
    original = env.state._user_object
    outsider_flags = {"U0EXT0001": {"team_id": "T0PARTNER", "is_stranger": True},
                      "U0SINGLE1": {"is_ultra_restricted": True}}
    monkeypatch.setattr(env.state, "_user_object", lambda user_id, given: {**original(user_id, given),
                                                                            **outsider_flags.get(user_id, {})})

    result = run(SlackUserSync(), RecordingContext(SlackUserSync, {}))

    assert result.summary["skipped_guests"] == 2
    assert result.summary["skipped_external"] == 1
    synced = [identity.identity_key for identity in Identity.scan() if identity.provider_type == "slack"]
    assert synced == [slack_identity_key(TEAM, "U0ADA0001")]
    assert len(list(Membership.query(ALL_USERS))) == 1


def test_the_checks_cost_one_write_per_message_and_cached_reads(env: SlackSandbox, dynamo_calls: DynamoCalls) -> None:
    env.add_users({"id": "U0ALICE01", "name": "alice"})
    conversations, limits = _table("CONVERSATIONS_TABLE"), _table("RATE_LIMIT_TABLE")

    def check() -> None:
        assert workspaces.is_active(TEAM)
        assert gate.admit(message("U0ALICE01", "hi")).verdict is gate.Verdict.ADMIT

    first = dynamo_calls.during(check)
    second = dynamo_calls.during(check)

    assert first == [f"GetItem:{conversations}", f"UpdateItem:{limits}"]
    assert second == [f"UpdateItem:{limits}"]  # workspace state cached for 30 s
    assert len(env.calls("users.info")) == 1  # the profile too, for 5 minutes


# 500: beyond the client's two in-process retries of an idempotent method; 429: beyond slack_sdk's 3 retries.
@pytest.mark.parametrize(("mode", "status", "count"), [("error", 500, 3), ("ratelimit", 429, 4)])
def test_slack_failing_to_describe_a_member_retries_the_message_and_refuses_no_one(
        env: SlackSandbox, mode: str, status: int, count: int) -> None:
    env.add_users({"id": "U0MEMBER2", "name": "member", "email": "member2@corp.example"})
    env.fail("users.info", mode, count=count, status=status, retry_after=0)
    request = message("U0MEMBER2", "hello")

    with pytest.raises(SlackApiError):
        worker.process(request)  # SQS redelivers it
    assert posted(env, "chat.postEphemeral") == []

    worker.process(request)
    assert posted(env, "chat.postEphemeral") == []
    assert len(posted(env, "chat.update")) == 1
