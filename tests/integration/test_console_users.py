"""The console's Users and Credentials pages in-process (moto), and the API they need: a user's
identities and usable agents in ``GET /api/users/{id}``, and an admin's ``/api/users/{id}/tokens``.
Connecting Google runs against the Google OAuth stand-in (tests/standins/google_oauth_server.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import unescape
from types import ModuleType
from typing import Any

import boto3
import httpx
import pytest

from tests.integration.conftest import ROOT, DynamoCalls, build_http_event
from tests.integration.conftest import load_handler as _load
from tests.integration.test_console import ADMIN_ID, MEMBER_EMAIL, MEMBER_ID, Browser, console, sign_in
from tests.standins.google_oauth_server import GoogleOAuthServer

__all__ = ["console"]  # the fixture, shared with test_console

ADMIN_API = ROOT / "functions" / "admin_api" / "handler.py"
TASKS_API = ROOT / "functions" / "tasks_api" / "handler.py"
_apis: dict[str, ModuleType] = {}


def api(name: str) -> ModuleType:
    if name not in _apis:
        _apis[name] = _load(ADMIN_API if name == "admin" else TASKS_API)
    return _apis[name]


def bearer(user_id: str) -> str:
    from insightmesh.auth.tokens import create_token

    return create_token(user_id, name="test cli", scopes=["admin:read", "admin:write"])[0]


def call(method: str, path: str, token: str) -> tuple[int, Any]:
    response = api("admin").lambda_handler(build_http_event(method, path, token=token), None)
    return response["statusCode"], json.loads(response.get("body") or "null")


def link_identity(user_id: str) -> None:
    from insightmesh.directory.models import Identity

    Identity("slack#T1:W0MEMBER", provider_type="slack", provider_user_id="T1:W0MEMBER", user_id=user_id,
             provider_email=MEMBER_EMAIL, is_primary=True).save()


def in_group(user_id: str, group: str) -> None:
    from insightmesh.directory.models import Group, Membership

    Group(group, description="").save()
    Membership(group, user_id, added_by="test").save()


# -- the API ------------------------------------------------------------------------------------------


def test_a_users_detail_has_their_identities_and_the_agents_the_worker_would_let_them_use(
        console: ModuleType) -> None:
    from insightmesh.agents.catalog import AgentRecord, list_agents
    from insightmesh.directory.models import User
    from insightmesh.directory.permissions import agents_usable_by

    link_identity(MEMBER_ID)
    restricted = AgentRecord.get("meddic")
    restricted.update(actions=[AgentRecord.visibility_setting.set("restricted")])
    status, body = call("GET", f"/api/users/{MEMBER_ID}", bearer(ADMIN_ID))
    assert status == 200
    assert [(i["provider_type"], i["provider_user_id"], i["is_primary"]) for i in body["identities"]] == [
        ("slack", "T1:W0MEMBER", True)]
    names = [agent["name"] for agent in body["agents"]]
    assert "meddic" not in names and "help" in names  # restricted without a grant: not usable
    expected = [agent.name for agent in agents_usable_by(User.get(MEMBER_ID), list_agents())]
    assert names == expected


def test_a_users_detail_costs_the_same_calls_whatever_their_groups_and_identities(
        console: ModuleType, dynamo_calls: DynamoCalls) -> None:
    from insightmesh.admin import users

    def detail() -> None:
        users.detail(MEMBER_ID)

    few = dynamo_calls.operations_during(detail)
    link_identity(MEMBER_ID)
    for number in range(20):
        in_group(MEMBER_ID, f"ucpages-{number}")
    assert dynamo_calls.operations_during(detail) == few
    # The user; memberships (the groups, and again inside agents_usable_by), identities, the agents;
    # the grants of every (agent, principal) in one BatchGetItem (of up to 100 keys: 3 agents x 21 here).
    assert few == ["BatchGetItem", "GetItem", "Query", "Query", "Query", "Query"]


def test_an_admin_lists_and_revokes_another_users_token_audited_and_a_member_cannot(console: ModuleType) -> None:
    from insightmesh.audit.log import AuditEntry
    from insightmesh.auth.tokens import create_token, list_tokens

    _, token = create_token(MEMBER_ID, name="member script", scopes=["admin:read"])
    admin, member = bearer(ADMIN_ID), bearer(MEMBER_ID)
    status, listed = call("GET", f"/api/users/{MEMBER_ID}/tokens", admin)
    assert status == 200 and [item["name"] for item in listed["items"]] == ["test cli", "member script"]
    assert all("secret" not in item and "token_hash" not in item for item in listed["items"])
    assert call("GET", f"/api/users/{MEMBER_ID}/tokens", member)[0] == 403
    assert call("DELETE", f"/api/users/{MEMBER_ID}/tokens/{token.token_id}", member)[0] == 403
    assert call("GET", "/api/users/U-NOBODY/tokens", admin)[0] == 404
    # Another user's token id under this user is not theirs: 404, nothing revoked.
    assert call("DELETE", f"/api/users/{ADMIN_ID}/tokens/{token.token_id}", admin)[0] == 404
    assert list_tokens(MEMBER_ID)[-1].revoked_at is None
    status, revoked = call("DELETE", f"/api/users/{MEMBER_ID}/tokens/{token.token_id}", admin)
    assert status == 200 and revoked["state"] == "revoked"
    entries = [(entry.action, entry.actor_id, entry.outcome) for entry in AuditEntry.query(f"user:{MEMBER_ID}")]
    assert ("token.revoke", ADMIN_ID, "allowed") in entries
    assert call("DELETE", f"/api/users/{MEMBER_ID}/tokens/{token.token_id}", admin)[0] == 200  # again: harmless


# -- the Users pages ----------------------------------------------------------------------------------


def test_users_are_searched_by_e_mail_prefix_paginated_with_an_empty_state(console: ModuleType) -> None:
    from insightmesh.directory.models import Membership, User

    for number in range(27):
        Membership("all_users", f"U-PEOPLE{number:02}", added_by="system").save()
        User(f"U-PEOPLE{number:02}", email=f"people{number:02}@example.com", display_name=f"P{number}").save()
    browser = sign_in(console, ADMIN_ID)
    page = browser.request("GET", "/console/users", query={"q": "People"})
    assert page.status == 200 and 'href="/console/users" aria-current="page"' in page.body
    assert page.body.count('<th scope="row">') == 25 and "people00@example.com" in page.body
    assert MEMBER_EMAIL not in page.body
    found = re.search(r'href="/console/users\?q=People&amp;cursor=([^"]+)">Next page', page.body)
    assert found, page.body
    second = browser.request("GET", "/console/users", query={"q": "People", "cursor": unescape(found.group(1))})
    assert second.body.count('<th scope="row">') == 2 and "people26@example.com" in second.body
    assert 'href="/console/users?q=People">First page' in second.body
    nobody = browser.request("GET", "/console/users", query={"q": "zed"})
    assert nobody.status == 200 and "Nobody's e-mail starts with “zed”." in unescape(nobody.body)
    stale = browser.request("GET", "/console/users", query={"q": "zed", "cursor": unescape(found.group(1))})
    assert stale.status == 200 and 'role="alert"' in stale.body and 'value="zed"' in stale.body  # the API's 422
    everyone = browser.request("GET", "/console/users")
    assert 'href="/console/users/U-MEMBER"' in everyone.body
    member = sign_in(console, MEMBER_ID)
    refused = member.request("GET", "/console/users")
    assert refused.status == 403 and "requires an admin" in refused.body


def test_a_users_page_shows_identities_groups_agents_and_tokens(console: ModuleType) -> None:
    from insightmesh.auth.tokens import create_token

    link_identity(MEMBER_ID)
    in_group(MEMBER_ID, "sales")
    create_token(MEMBER_ID, name="<b>member script</b>", scopes=["admin:read"])
    browser = sign_in(console, ADMIN_ID)
    page = browser.request("GET", f"/console/users/{MEMBER_ID}")
    assert page.status == 200
    assert "<code>T1:W0MEMBER</code>" in page.body and "primary" in page.body
    assert 'href="/console/groups/sales"' in page.body and 'href="/console/groups/all_users"' in page.body
    assert 'href="/console/agents/help"' in page.body
    assert "&lt;b&gt;member script&lt;/b&gt;" in page.body and "<b>member" not in page.body
    assert "Grant admin rights…" in page.body
    assert browser.request("GET", "/console/users/U-NOBODY").status == 404


def test_an_admin_grants_and_revokes_admin_after_confirming_and_cannot_demote_themselves(
        console: ModuleType) -> None:
    from insightmesh.audit.log import AuditEntry
    from insightmesh.directory.models import User

    browser = sign_in(console, ADMIN_ID)
    confirm = browser.request("GET", f"/console/users/{MEMBER_ID}/admin/grant")
    assert confirm.status == 200 and f"Make {MEMBER_EMAIL} an admin?" in confirm.body
    assert User.get(MEMBER_ID).is_admin is False  # the confirmation page changes nothing
    csrf = browser.csrf(confirm)
    forged = browser.request("POST", f"/console/users/{MEMBER_ID}/admin/grant", form={"csrf_token": "forged"})
    assert forged.status == 403 and User.get(MEMBER_ID).is_admin is False
    done = browser.request("POST", f"/console/users/{MEMBER_ID}/admin/grant", form={"csrf_token": csrf})
    assert done.status == 303 and done.headers["Location"] == f"/console/users/{MEMBER_ID}?notice=admin-granted"
    assert User.get(MEMBER_ID).is_admin is True
    assert "Revoke admin rights…" in browser.request("GET", f"/console/users/{MEMBER_ID}").body
    done = browser.request("POST", f"/console/users/{MEMBER_ID}/admin/revoke", form={"csrf_token": csrf})
    assert done.status == 303 and User.get(MEMBER_ID).is_admin is False
    actions = [entry.action for entry in AuditEntry.query(f"user:{MEMBER_ID}")]
    assert {"user.grant_admin", "user.revoke_admin"} <= set(actions)
    itself = browser.request("POST", f"/console/users/{ADMIN_ID}/admin/revoke", form={"csrf_token": csrf})
    assert itself.status == 200 and 'role="alert"' in itself.body and "your own admin rights" in itself.body
    assert User.get(ADMIN_ID).is_admin is True
    assert browser.request("GET", f"/console/users/{MEMBER_ID}/admin/promote").status == 404


def test_an_admin_revokes_a_users_token_after_confirming(console: ModuleType) -> None:
    from insightmesh.auth.tokens import create_token, list_tokens

    _, token = create_token(MEMBER_ID, name="member script", scopes=["admin:read"])
    browser = sign_in(console, ADMIN_ID)
    page = browser.request("GET", f"/console/users/{MEMBER_ID}")
    assert 'aria-label="Revoke the token member script"' in page.body
    confirm = browser.request("GET", f"/console/users/{MEMBER_ID}/tokens/{token.token_id}/revoke")
    assert confirm.status == 200 and "Revoke the token “member script”" in confirm.body
    assert list_tokens(MEMBER_ID)[0].revoked_at is None
    done = browser.request("POST", f"/console/users/{MEMBER_ID}/tokens/{token.token_id}/revoke",
                           form={"csrf_token": browser.csrf(confirm)})
    assert done.status == 303 and done.headers["Location"] == f"/console/users/{MEMBER_ID}?notice=user-token-revoked"
    assert list_tokens(MEMBER_ID)[0].revoked_at is not None
    page = browser.request("GET", done.headers["Location"].split("?")[0], query={"notice": "user-token-revoked"})
    assert "The user's token is revoked." in unescape(page.body)
    assert 'aria-label="Revoke the token member script"' not in page.body
    assert browser.request("GET", f"/console/users/{MEMBER_ID}/tokens/0123456789abcdef/revoke").status == 404


# -- the Credentials page -----------------------------------------------------------------------------


def test_the_credentials_page_shows_its_empty_state_and_the_connect_error_in_place(
        console: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLIENT_ID", raising=False)
    browser = sign_in(console, ADMIN_ID)
    page = browser.request("GET", "/console/credentials")
    assert page.status == 200 and "No credential is connected yet." in page.body
    assert 'href="/console/credentials" aria-current="page"' in page.body
    csrf = browser.csrf(page)
    refused = browser.request("POST", "/console/credentials/connect",
                              form={"csrf_token": csrf, "name": "Drive <sync>", "scopes": "drive.readonly"})
    assert refused.status == 200 and 'role="alert"' in refused.body and "not configured" in refused.body
    assert 'value="Drive &lt;sync&gt;"' in refused.body and "im_connect" not in browser.cookies
    no_scope = browser.request("POST", "/console/credentials/connect", form={"csrf_token": csrf, "name": "x"})
    assert no_scope.status == 200 and 'role="alert"' in no_scope.body and "scopes" in no_scope.body
    member = sign_in(console, MEMBER_ID)
    assert member.request("GET", "/console/credentials").status == 403


CLIENT_ID, CLIENT_SECRET = "insightmesh-console-test", "google-standin-secret-console"
PUBLIC_BASE_URL = "https://console.example.com"
REDIRECT_URI = PUBLIC_BASE_URL + "/api/credentials/google/callback"


@pytest.fixture
def google_server(console: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleOAuthServer]:
    from insightmesh import resilience
    from insightmesh.auth.settings import get_auth_settings
    from insightmesh.config import get_settings
    from insightmesh.credentials import google

    def reset() -> None:
        google.reset_clients()
        resilience._breakers.pop("google-oauth", None)
        get_auth_settings.cache_clear()
        get_settings.cache_clear()

    server = GoogleOAuthServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris={REDIRECT_URI}).start()
    for name, value in (("GOOGLE_CLIENT_ID", CLIENT_ID), ("GOOGLE_CLIENT_SECRET", CLIENT_SECRET),
                        ("GOOGLE_AUTHORIZE_URL", server.authorize_url), ("GOOGLE_TOKEN_URL", server.token_url),
                        ("GOOGLE_REVOKE_URL", server.revoke_url), ("PUBLIC_BASE_URL", PUBLIC_BASE_URL),
                        ("OAUTH_INSECURE_TRANSPORT", "true")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GOOGLE_CLIENT_SECRET_SECRET_ID", raising=False)
    monkeypatch.setenv("CREDENTIALS_KMS_KEY_ID", boto3.client("kms").create_key()["KeyMetadata"]["KeyId"])
    reset()
    try:
        yield server
    finally:
        server.stop()
        reset()


def test_connect_google_sends_the_browser_to_google_with_the_binding_cookie_and_delete_confirms(
        console: ModuleType, google_server: GoogleOAuthServer) -> None:
    from insightmesh.credentials.models import Credential

    browser = sign_in(console, ADMIN_ID)
    csrf = browser.csrf(browser.request("GET", "/console/credentials"))
    page = browser.request("POST", "/console/credentials/connect",
                           form={"csrf_token": csrf, "name": "Drive sync", "scopes": "drive.readonly"})
    assert page.status == 200 and "Continue to Google" in page.body
    refresh = re.search(r'<meta http-equiv="refresh" content="0;url=([^"]+)">', page.body)
    assert refresh, page.body
    url = unescape(refresh.group(1))
    assert url.startswith(google_server.authorize_url + "?") and f'href="{refresh.group(1)}"' in page.body
    assert "im_connect" in browser.cookies  # the API's binding cookie reached the browser
    # Google consents and sends the browser to the callback, which the tasks API serves.
    consent = httpx.get(url, follow_redirects=False, timeout=5)
    assert consent.status_code == 302 and consent.headers["location"].startswith(REDIRECT_URI + "?")
    query = dict(httpx.URL(consent.headers["location"]).params)
    elsewhere = Browser(api("tasks")).request("GET", "/api/credentials/google/callback", query=query)
    assert elsewhere.status == 400 and 'from <a href="/console/credentials">the credentials</a>' in elsewhere.body
    tasks = Browser(api("tasks"))
    tasks.cookies = browser.cookies
    done = tasks.request("GET", "/api/credentials/google/callback", query=query)
    assert done.status == 200, done.body
    assert '<a href="/console/credentials">Back to the credentials</a>' in done.body

    listing = browser.request("GET", "/console/credentials")
    assert "Drive sync" in listing.body and '<span class="state active">active</span>' in listing.body
    credential_id = re.search(r'href="/console/credentials/([^/"]+)/delete"', listing.body)
    assert credential_id
    confirm = browser.request("GET", f"/console/credentials/{credential_id.group(1)}/delete")
    assert confirm.status == 200 and "Delete the credential “Drive sync”?" in confirm.body
    assert list(Credential.scan())  # the confirmation page deletes nothing (a test may scan)
    deleted = browser.request("POST", f"/console/credentials/{credential_id.group(1)}/delete",
                              form={"csrf_token": csrf})
    assert deleted.status == 303 and deleted.headers["Location"] == "/console/credentials?notice=credential-deleted"
    assert "No credential is connected yet." in browser.request("GET", "/console/credentials").body
    gone = browser.request("POST", f"/console/credentials/{credential_id.group(1)}/delete", form={"csrf_token": csrf})
    assert gone.status == 200 and 'role="alert"' in gone.body
