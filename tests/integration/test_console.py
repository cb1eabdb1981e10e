"""The console function in-process (moto): sign-in links, My access, the 403 page, the CSP, static
files — every page through the admin and tasks APIs' own apps, with the browser's cookie."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlencode

import pytest

from tests.integration.conftest import ROOT, DynamoCalls, template_tables
from tests.integration.conftest import load_handler as _load

CONSOLE = ROOT / "functions" / "console" / "handler.py"
ADMIN_ID, ADMIN_EMAIL = "U-ADMIN", "admin@example.com"
MEMBER_ID, MEMBER_EMAIL = "U-MEMBER", "member@example.com"
_handler: list[ModuleType] = []


@dataclass
class Page:
    status: int
    headers: dict[str, str]
    body: str
    cookies: list[str]


class Browser:
    """A cookie jar and the console handler, speaking payload 2.0 as API Gateway does."""

    def __init__(self, handler: ModuleType) -> None:
        self.handler = handler
        self.cookies: dict[str, str] = {}
        self.requests = 0

    def request(self, method: str, path: str, *, form: dict[str, str] | None = None,
                query: dict[str, str] | None = None) -> Page:
        self.requests += 1
        body = urlencode(form) if form is not None else None
        headers = {"host": "abc123.execute-api.us-east-1.amazonaws.com", "user-agent": "pytest-browser",
                   "x-request-id": f"console-{self.requests}"}
        if body is not None:
            headers["content-type"] = "application/x-www-form-urlencoded"
        event: dict[str, Any] = {
            "version": "2.0", "routeKey": "ANY /console/{proxy+}", "rawPath": path,
            "rawQueryString": urlencode(query or {}), "headers": headers,
            "cookies": [f"{name}={value}" for name, value in self.cookies.items()],
            "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "203.0.113.20", "userAgent": "pytest-browser"},
                               "requestId": f"gw-{self.requests}", "routeKey": "ANY /console/{proxy+}",
                               "stage": "$default"},
            "isBase64Encoded": False,
        }
        if query:
            event["queryStringParameters"] = dict(query)
        if body is not None:
            event["body"] = body
        response = self.handler.lambda_handler(event, None)
        cookies = [str(cookie) for cookie in response.get("cookies") or []]
        for cookie in cookies:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return Page(response["statusCode"], response.get("headers") or {}, response.get("body") or "", cookies)

    def csrf(self, page: Page) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.body)
        assert found, page.body
        return found.group(1)


def make_user(user_id: str, email: str, *, is_admin: bool = False, is_active: bool = True) -> None:
    from insightmesh.directory.models import Membership, User

    Membership("all_users", user_id, added_by="system").save()
    User(user_id, email=email, display_name=email.split("@")[0], is_admin=is_admin, is_active=is_active).save()


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    from insightmesh.auth.settings import get_auth_settings

    get_auth_settings.cache_clear()
    with template_tables(monkeypatch):
        from insightmesh.agents.catalog import seed_agents
        from insightmesh.agents.registry import builtin_definitions
        from insightmesh.directory.users import ensure_system_groups

        seed_agents(builtin_definitions())
        ensure_system_groups()
        make_user(ADMIN_ID, ADMIN_EMAIL, is_admin=True)
        make_user(MEMBER_ID, MEMBER_EMAIL)
        if not _handler:
            _handler.append(_load(CONSOLE))
        yield _handler[0]
    get_auth_settings.cache_clear()


def deactivate(user_id: str) -> None:
    from insightmesh.directory.models import User

    user = User.get(user_id)
    user.is_active = False
    user.save()


def link_token(user_id: str) -> str:
    from insightmesh.auth.login_links import issue_link
    from insightmesh.directory.models import User

    return issue_link(User.get(user_id))


def sign_in(console: ModuleType, user_id: str) -> Browser:
    browser = Browser(console)
    token = link_token(user_id)
    shown = browser.request("GET", "/console/login", query={"token": token})
    assert shown.status == 200 and 'method="post" action="/console/login"' in shown.body
    done = browser.request("POST", "/console/login", form={"token": token})
    assert done.status == 303 and done.headers["Location"] == "/console"
    assert "im_session" in browser.cookies
    return browser


def test_root_redirects_to_console_and_every_response_has_the_csp(console: ModuleType) -> None:
    browser = Browser(console)
    page = browser.request("GET", "/")
    assert page.status == 303 and page.headers["Location"] == "/console"  # no slash: /console/{proxy+} may not match
    assert browser.request("GET", "/console").status == browser.request("GET", "/console/").status == 200
    for page in (browser.request("GET", "/console"), browser.request("GET", "/console/nope"),
                 browser.request("GET", "/console/login", query={"token": "unknown"})):
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
        assert page.headers["Content-Type"].startswith("text/html")


def test_an_unsigned_visitor_gets_the_sign_in_page(console: ModuleType) -> None:
    page = Browser(console).request("GET", "/console/")
    assert page.status == 200
    assert "Sign in to the InsightMesh console" in page.body and "insightmesh login-link" in page.body


def test_static_files_are_fingerprinted_and_immutable(console: ModuleType) -> None:
    browser = Browser(console)
    html = browser.request("GET", "/console/").body
    css = re.search(r'href="(/console/static/console\.[0-9a-f]{12}\.css)"', html)
    assert css, html
    asset = browser.request("GET", css.group(1))
    assert asset.status == 200 and asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert asset.headers["Content-Type"].startswith("text/css")
    assert browser.request("GET", "/console/static/console.css").status == 404  # only under its fingerprint


def test_a_login_link_signs_in_once_and_is_audited(console: ModuleType) -> None:
    from insightmesh.audit.log import AuditEntry

    browser = Browser(console)
    token = link_token(ADMIN_ID)
    page = browser.request("GET", "/console/login", query={"token": token})
    assert f"Sign in as {ADMIN_EMAIL}" in page.body  # showing it spends nothing
    assert browser.request("POST", "/console/login", form={"token": token}).status == 303
    home = browser.request("GET", "/console/")
    assert "My access" in home.body and ADMIN_EMAIL in home.body and 'href="/console/groups"' in home.body
    assert 'href="/console/agents"' in home.body and 'href="/console/"' not in home.body

    again = Browser(console)
    assert again.request("GET", "/console/login", query={"token": token}).status == 400
    refused = again.request("POST", "/console/login", form={"token": token})
    assert refused.status == 400 and "already used" in refused.body and "im_session" not in again.cookies
    entries = list(AuditEntry.query(f"user:{ADMIN_ID}"))
    assert [(entry.action, entry.outcome) for entry in entries] == [("auth.login_link", "allowed")]


def test_an_expired_link_or_one_of_a_deactivated_user_is_refused_with_a_page(console: ModuleType) -> None:
    from datetime import timedelta

    from insightmesh.auth.login_links import LoginLink, link_key
    from insightmesh.clock import utc_now

    expired = link_token(MEMBER_ID)
    LoginLink(link_key(expired)).update(actions=[LoginLink.expires_at.set(utc_now() - timedelta(seconds=1))])
    browser = Browser(console)
    page = browser.request("POST", "/console/login", form={"token": expired})
    assert page.status == 400 and "expired" in page.body
    deactivated = link_token(MEMBER_ID)
    deactivate(MEMBER_ID)
    page = browser.request("POST", "/console/login", form={"token": deactivated})
    assert page.status == 400 and "deactivated" in page.body and "im_session" not in browser.cookies
    assert browser.request("POST", "/console/login", form={"token": ""}).status == 400


def test_a_member_sees_my_access_and_an_admin_page_is_a_403_page(console: ModuleType) -> None:
    from insightmesh.auth.tokens import create_token

    _, token = create_token(MEMBER_ID, name="laptop script", scopes=["admin:read"])
    browser = sign_in(console, MEMBER_ID)
    home = browser.request("GET", "/console/")
    assert home.status == 200 and "laptop script" in home.body and "all_users" in home.body
    assert (f'<a class="button small" href="/console/tokens/{token.token_id}/revoke" '
            'aria-label="Revoke the token laptop script">Revoke</a>') in home.body
    assert '<th scope="col">Last used</th>' in home.body
    assert 'href="/console/groups"' not in home.body
    refused = browser.request("GET", "/console/groups")
    assert refused.status == 403 and "Not allowed" in refused.body and "requires an admin" in refused.body


def test_a_member_revokes_their_own_token_after_confirming(console: ModuleType) -> None:
    from insightmesh.audit.log import AuditEntry
    from insightmesh.auth.tokens import create_token, list_tokens

    _, token = create_token(MEMBER_ID, name="old script", scopes=["admin:read"])
    browser = sign_in(console, MEMBER_ID)
    confirm = browser.request("GET", f"/console/tokens/{token.token_id}/revoke")
    assert confirm.status == 200 and "Revoke token" in confirm.body
    assert list_tokens(MEMBER_ID)[0].revoked_at is None  # the confirmation page changes nothing
    forged = browser.request("POST", f"/console/tokens/{token.token_id}/revoke", form={"csrf_token": "forged"})
    assert forged.status == 403 and list_tokens(MEMBER_ID)[0].revoked_at is None
    csrf = browser.csrf(confirm)
    done = browser.request("POST", f"/console/tokens/{token.token_id}/revoke", form={"csrf_token": csrf})
    assert done.status == 303 and done.headers["Location"] == "/console?notice=token-revoked"
    assert list_tokens(MEMBER_ID)[0].revoked_at is not None
    assert "token.revoke" in [entry.action for entry in AuditEntry.query(f"user:{MEMBER_ID}")]


def test_an_admin_creates_a_group_adds_a_member_and_script_is_text(console: ModuleType) -> None:
    browser = sign_in(console, ADMIN_ID)
    listing = browser.request("GET", "/console/groups")
    csrf = browser.csrf(listing)
    bad = browser.request("POST", "/console/groups", form={"csrf_token": csrf, "name": "<script>x</script>"})
    assert bad.status == 200 and 'role="alert"' in bad.body  # the error in place, the form kept
    assert "&lt;script&gt;x&lt;/script&gt;" in bad.body and "<script>x" not in bad.body
    created = browser.request("POST", "/console/groups", form={"csrf_token": csrf, "name": "sales",
                                                              "description": "<script>alert(1)</script>"})
    assert created.status == 303 and created.headers["Location"] == "/console/groups/sales?notice=group-created"
    page = browser.request("GET", "/console/groups/sales", query={"q": "member"})
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.body and "<script>alert" not in page.body
    assert MEMBER_ID in page.body
    added = browser.request("POST", "/console/groups/sales/members", form={"csrf_token": csrf, "user_id": MEMBER_ID})
    assert added.status == 303
    assert MEMBER_EMAIL in browser.request("GET", "/console/groups/sales").body
    duplicate = browser.request("POST", "/console/groups", form={"csrf_token": csrf, "name": "sales"})
    assert duplicate.status == 200 and 'role="alert"' in duplicate.body  # the API's 409, in place
    not_empty = browser.request("POST", "/console/groups/sales/delete", form={"csrf_token": csrf})
    assert not_empty.status == 200 and 'role="alert"' in not_empty.body


def test_the_login_link_cli_refuses_unknown_users(console: ModuleType) -> None:
    from insightmesh.auth.login_links import issue_link
    from insightmesh.directory.models import User

    deactivate(MEMBER_ID)
    with pytest.raises(ValueError, match="not active"):
        issue_link(User.get(MEMBER_ID))


def test_the_console_handler_is_the_only_new_function_path() -> None:
    text = (ROOT / "functions" / "console" / "handler.py").read_text()
    assert "build_admin_app" in text and "build_tasks_app" in text
    layer = ROOT / "layers" / "common" / "python" / "insightmesh" / "console"
    for source in layer.glob("*.py"):
        code = source.read_text()
        assert "pynamodb" not in code and "insightmesh.directory" not in code, source  # no second path to data
    assert Path(CONSOLE).is_file()


# -- Agents (issue 13, section 3) ----------------------------------------------------------------------


def agent_version(browser: Browser, name: str) -> str:
    found = re.search(r'name="version" value="(\d+)"', browser.request("GET", f"/console/agents/{name}").body)
    assert found
    return found.group(1)


def settings(browser: Browser, csrf: str, version: str, **changes: str) -> dict[str, str]:
    form = {"csrf_token": csrf, "version": version, "display_name": "MEDDIC coach", "description": "Deal coaching",
            "aliases": "", "visibility": "public"}
    form.update(changes)
    return form


def test_the_agents_list_shows_state_visibility_and_counts_and_a_member_gets_a_403(console: ModuleType) -> None:
    browser = sign_in(console, ADMIN_ID)
    page = browser.request("GET", "/console/agents")
    assert page.status == 200 and 'href="/console/agents" aria-current="page"' in page.body
    assert 'href="/console/agents/meddic"' in page.body and 'href="/console/agents/help"' in page.body
    assert "everyone" in page.body and '<th scope="col">Who may use it</th>' in page.body
    member = sign_in(console, MEMBER_ID)
    refused = member.request("GET", "/console/agents")
    assert refused.status == 403 and "requires an admin" in refused.body
    assert member.request("GET", "/console/agents/meddic").status == 403  # the API's own refusal


def test_an_admin_restricts_meddic_grants_a_group_and_a_person_and_removes_a_grant(console: ModuleType) -> None:
    from insightmesh.audit.log import AuditEntry

    browser = sign_in(console, ADMIN_ID)
    csrf = browser.csrf(browser.request("GET", "/console/groups"))
    assert browser.request("POST", "/console/groups", form={"csrf_token": csrf, "name": "sales"}).status == 303
    # An allow on a public agent changes nothing: the API's 409 says what to do, shown in place.
    public = browser.request("POST", "/console/agents/meddic/grants",
                             form={"csrf_token": csrf, "kind": "group", "group": "sales", "effect": "allow"})
    assert public.status == 200 and 'role="alert"' in public.body and "restricted" in public.body
    assert 'list="grant-group-choices" value="sales"' in public.body  # the form keeps its values
    assert "meddic is public" in public.body and "Meddic is public" not in public.body  # identifiers keep their case

    version = agent_version(browser, "meddic")
    saved = browser.request("POST", "/console/agents/meddic",
                            form=settings(browser, csrf, version, aliases="coach, deals", visibility="restricted"))
    assert saved.status == 303 and saved.headers["Location"] == "/console/agents/meddic?notice=agent-updated"
    page = browser.request("GET", "/console/agents/meddic")
    assert 'value="restricted" checked' in page.body and 'value="coach, deals"' in page.body
    assert "by grant" in page.body

    # A concurrent change: the stale version is the API's 409, in place, and the form shows what is stored now.
    stale = browser.request("POST", "/console/agents/meddic", form=settings(browser, csrf, version,
                                                                           display_name="Someone else's"))
    assert stale.status == 200 and 'role="alert"' in stale.body and "changed by someone else" in stale.body
    assert 'value="MEDDIC coach"' in stale.body and "Someone else&#39;s" not in stale.body

    group = browser.request("POST", "/console/agents/meddic/grants",
                            form={"csrf_token": csrf, "kind": "group", "group": "sales", "effect": "allow",
                                  "expires_at": ""})
    assert group.status == 303 and group.headers["Location"] == "/console/agents/meddic?notice=grant-added"
    person = browser.request("POST", "/console/agents/meddic/grants",
                             form={"csrf_token": csrf, "kind": "user", "email": MEMBER_EMAIL, "effect": "deny",
                                   "expires_at": "2099-01-01T00:00"})
    assert person.status == 303
    unknown = browser.request("POST", "/console/agents/meddic/grants",
                              form={"csrf_token": csrf, "kind": "user", "email": "nobody@example.com"})
    assert unknown.status == 200 and 'role="alert"' in unknown.body and 'value="nobody@example.com"' in unknown.body
    page = browser.request("GET", "/console/agents/meddic")
    assert 'href="/console/groups/sales"' in page.body
    assert f'user <span title="{MEMBER_ID}">{MEMBER_EMAIL}</span>' in page.body  # the e-mail, not the id
    assert f'aria-label="Remove the grant of user {MEMBER_EMAIL}"' in page.body
    assert "2099-01-01 00:00 UTC" in page.body
    listing = browser.request("GET", "/console/agents").body
    assert "by grant" in listing

    person_confirm = browser.request("GET", f"/console/agents/meddic/grants/user/{MEMBER_ID}/remove")
    assert f"Remove the deny grant of user “{MEMBER_EMAIL}” on the agent “meddic”?" in person_confirm.body
    assert browser.request("GET", "/console/agents/meddic/grants/group/nope/remove").status == 404
    confirm = browser.request("GET", "/console/agents/meddic/grants/group/sales/remove")
    assert confirm.status == 200 and "Remove the allow grant of group “sales” on the agent “meddic”?" in confirm.body
    assert 'href="/console/groups/sales"' in browser.request("GET", "/console/agents/meddic").body  # still there
    removed = browser.request("POST", "/console/agents/meddic/grants/group/sales/remove", form={"csrf_token": csrf})
    assert removed.status == 303 and removed.headers["Location"] == "/console/agents/meddic?notice=grant-removed"
    assert 'href="/console/groups/sales"' not in browser.request("GET", "/console/agents/meddic").body
    actions = [entry.action for entry in AuditEntry.query("agent:meddic")]
    assert {"agent.update", "grant.put", "grant.delete"} <= set(actions)


def test_a_built_in_agent_cannot_be_disabled_or_deleted_and_the_409_is_in_place(console: ModuleType) -> None:
    browser = sign_in(console, ADMIN_ID)
    page = browser.request("GET", "/console/agents/meddic")
    assert "cannot be disabled or deleted" in page.body
    csrf = browser.csrf(page)
    disabled = browser.request("POST", "/console/agents/meddic/disable", form={"csrf_token": csrf})
    assert disabled.status == 200 and 'role="alert"' in disabled.body and "cannot be disabled" in disabled.body
    confirm = browser.request("GET", "/console/agents/meddic/delete")
    assert confirm.status == 200 and "Delete the agent “meddic”?" in confirm.body
    deleted = browser.request("POST", "/console/agents/meddic/delete", form={"csrf_token": csrf})
    assert deleted.status == 200 and "cannot be deleted" in deleted.body
    forged = browser.request("POST", "/console/agents/meddic/disable", form={"csrf_token": "forged"})
    assert forged.status == 403
    help_page = browser.request("POST", "/console/agents/help", form=settings(
        browser, csrf, agent_version(browser, "help"), display_name="Help", visibility="admins"))
    assert help_page.status == 200 and "must stay public" in help_page.body


def test_an_admin_disables_enables_deletes_after_confirming_and_restores_an_agent(console: ModuleType) -> None:
    from insightmesh.agents.catalog import AgentRecord

    AgentRecord("forecast", display_name="Forecast", description="Pipeline forecasts", aliases=[],
                is_public=True, is_system=False).save()
    browser = sign_in(console, ADMIN_ID)
    page = browser.request("GET", "/console/agents/forecast")
    csrf = browser.csrf(page)
    assert "Disable agent" in page.body and 'href="/console/agents/forecast/delete"' in page.body
    for action, notice, shown in (("disable", "agent-disabled", "Enable agent"),
                                  ("enable", "agent-enabled", "Disable agent")):
        done = browser.request("POST", f"/console/agents/forecast/{action}", form={"csrf_token": csrf})
        assert done.status == 303 and done.headers["Location"] == f"/console/agents/forecast?notice={notice}"
        assert shown in browser.request("GET", "/console/agents/forecast").body
    confirm = browser.request("GET", "/console/agents/forecast/delete")
    assert confirm.status == 200 and "Delete the agent “forecast”?" in confirm.body
    assert AgentRecord.get("forecast").deleted_at is None  # the confirmation page changes nothing
    deleted = browser.request("POST", "/console/agents/forecast/delete", form={"csrf_token": csrf})
    assert deleted.status == 303
    page = browser.request("GET", "/console/agents/forecast")
    assert "Restore agent" in page.body and "restore it to change its settings" in page.body
    assert '<span class="state deleted">deleted</span>' in browser.request("GET", "/console/agents").body
    restored = browser.request("POST", "/console/agents/forecast/restore", form={"csrf_token": csrf})
    assert restored.status == 303 and restored.headers["Location"] == "/console/agents/forecast?notice=agent-restored"
    assert "Disable agent" in browser.request("GET", "/console/agents/forecast").body


# -- the Agents page's group picker, the shared helpers and macros -------------------------------------


def many_groups(count: int) -> None:
    from insightmesh.directory.models import Group

    with Group.batch_write() as batch:
        for n in range(count):
            batch.save(Group(f"team-{n:03d}", description=f"Team {n}"))


def test_the_grant_form_finds_any_of_1000_groups_by_the_start_of_its_name(console: ModuleType) -> None:
    many_groups(1000)
    browser = sign_in(console, ADMIN_ID)
    page = browser.request("GET", "/console/agents/meddic")
    assert 'role="search" aria-label="Find groups"' in page.body and "team-0" not in page.body  # no list of all
    found = browser.request("GET", "/console/agents/meddic", query={"group_q": "TEAM-99"})
    assert found.status == 200
    names = re.findall(r'aria-label="Choose the group (team-\d+)"', found.body)
    assert names == [f"team-{n}" for n in range(990, 1000)]
    assert '<option value="team-999"></option>' in found.body  # the datalist offers them too
    chosen = browser.request("GET", "/console/agents/meddic", query={"group_q": "team-99", "group": "team-999"})
    assert 'list="grant-group-choices" value="team-999"' in chosen.body
    none = browser.request("GET", "/console/agents/meddic", query={"group_q": "zzz"})
    assert "No group's name starts with “zzz”." in none.body
    csrf = browser.csrf(page)
    version = agent_version(browser, "meddic")
    assert browser.request("POST", "/console/agents/meddic",
                           form=settings(browser, csrf, version, visibility="restricted")).status == 303
    granted = browser.request("POST", "/console/agents/meddic/grants",
                              form={"csrf_token": csrf, "kind": "group", "group": "team-999", "effect": "allow"})
    assert granted.status == 303  # a group far past the first 100
    assert 'href="/console/groups/team-999"' in browser.request("GET", "/console/agents/meddic").body
    unknown = browser.request("POST", "/console/agents/meddic/grants",
                              form={"csrf_token": csrf, "kind": "group", "group": "team-x", "effect": "allow"})
    assert unknown.status == 200 and 'role="alert"' in unknown.body and 'value="team-x"' in unknown.body


def test_the_groups_list_pages_with_the_apis_cursor_first_and_next(console: ModuleType) -> None:
    many_groups(30)
    browser = sign_in(console, ADMIN_ID)
    first = browser.request("GET", "/console/groups")
    following = re.search(r'href="/console/groups\?cursor=([^"]+)">Next page</a>', first.body)
    assert following and "First page" not in first.body
    second = browser.request("GET", "/console/groups", query={"cursor": unquote(following.group(1))})
    assert second.status == 200 and '<a href="/console/groups">First page</a>' in second.body
    assert "team-029" in second.body and "team-000" not in second.body


def test_a_post_without_a_session_is_the_sign_in_page_and_a_members_a_403(console: ModuleType) -> None:
    for path in ("/console/groups", "/console/groups/sales/members", "/console/agents/meddic/grants"):
        page = Browser(console).request("POST", path, form={"csrf_token": "x", "name": "sales"})
        assert page.status == 401 and "Sign in to the InsightMesh console" in page.body, path
    member = sign_in(console, MEMBER_ID)
    refused = member.request("POST", "/console/agents/meddic/grants", form={"csrf_token": "x", "kind": "group"})
    assert refused.status == 403 and "requires an admin" in refused.body


def test_an_invalid_form_is_shown_again_with_the_422_in_place(console: ModuleType) -> None:
    browser = sign_in(console, ADMIN_ID)
    csrf = browser.csrf(browser.request("GET", "/console/groups"))
    assert browser.request("POST", "/console/groups", form={"csrf_token": csrf, "name": "sales"}).status == 303
    page = browser.request("POST", "/console/groups/sales", form={"csrf_token": csrf, "description": "x" * 2001})
    assert page.status == 200 and 'role="alert"' in page.body and "check these fields: description" in page.body
    bad = browser.request("POST", "/console/agents/meddic/grants", form={"csrf_token": csrf, "kind": "robot"})
    assert bad.status == 200 and 'role="alert"' in bad.body and "check these fields: kind" in bad.body


def test_an_agents_grants_page_from_its_detail_then_by_cursor_with_emails(console: ModuleType,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from insightmesh.directory.models import Grant, User, user_principal

    with User.batch_write() as users, Grant.batch_write() as grants:
        for n in range(120):
            users.save(User(f"u-{n:03d}", email=f"person{n:03d}@example.com", display_name=f"P{n}"))
            grants.save(Grant("meddic", user_principal(f"u-{n:03d}"), effect="deny", granted_by=ADMIN_ID))
    browser = sign_in(console, ADMIN_ID)
    api, called = console.app.api, []
    original = api.call
    monkeypatch.setattr(api, "call", lambda method, path, **kwargs: called.append(path) or original(method, path,
                                                                                                    **kwargs))
    first = browser.request("GET", "/console/agents/meddic")
    assert called == ["/auth/session", "/api/agents/meddic"]  # the grants come with the agent
    shown = re.findall(r'user <span title="u-(\d+)">person\d+@example.com</span>', first.body)
    assert shown == [f"{n:03d}" for n in range(100)]  # the detail's first page, e-mails included
    following = re.search(r'href="/console/agents/meddic\?cursor=([^"]+)">Next page</a>', first.body)
    assert following and "First page" not in first.body
    second = browser.request("GET", "/console/agents/meddic", query={"cursor": unquote(following.group(1))})
    shown = re.findall(r'user <span title="u-(\d+)">person\d+@example.com</span>', second.body)
    assert shown == [f"{n:03d}" for n in range(100, 120)]
    assert '<a href="/console/agents/meddic">First page</a>' in second.body and "Next page" not in second.body


def test_a_refused_session_lookup_is_its_page_not_the_sign_in_page(console: ModuleType,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from insightmesh.console.api import ApiResponse

    browser = sign_in(console, ADMIN_ID)
    api = console.app.api
    original = api.call
    limited = ApiResponse(429, {"error": {"code": "rate_limited", "message": "too many requests, retry in 20 s",
                                          "request_id": "r-1"}})
    monkeypatch.setattr(api, "call", lambda method, path, **kwargs: limited if path == "/auth/session"
                        else original(method, path, **kwargs))
    for path in ("/console", "/console/groups", "/console/agents/meddic"):
        page = browser.request("GET", path)
        assert page.status == 429 and "Too many requests" in page.body and "retry in 20 s" in page.body, path
        assert "Sign in to the InsightMesh console" not in page.body


def test_a_page_authenticates_its_browser_request_once_however_many_api_calls_it_makes(
        console: ModuleType, dynamo_calls: DynamoCalls) -> None:
    import os

    browser = sign_in(console, ADMIN_ID)
    limits, states, users = (os.environ[name] for name in ("RATE_LIMIT_TABLE", "AUTH_STATES_TABLE", "USERS_TABLE"))

    def my_access() -> None:
        assert browser.request("GET", "/console").status == 200

    for _ in range(2):  # nothing is remembered from one browser request to the next
        calls = dynamo_calls.during(my_access)
        # The session lookup, GET /api/me and GET /api/me/tokens: three API calls, one authentication
        # (the IP's and the principal's rate-limit hits, the session, the user; GET /api/me reads the
        # user once more, for the agents they may use). Without it: 6, 3 and 4.
        assert calls.count(f"UpdateItem:{limits}") == 2
        assert calls.count(f"GetItem:{states}") == 1
        assert calls.count(f"GetItem:{users}") == 2


def test_a_remembered_session_still_needs_the_csrf_token_on_every_change(console: ModuleType) -> None:
    from insightmesh.directory.models import Group

    browser = sign_in(console, ADMIN_ID)
    refused = browser.request("POST", "/console/groups", form={"name": "forged", "csrf_token": "not-the-token"})
    assert refused.status == 403 and "X-CSRF-Token" in refused.body
    assert Group.count("forged") == 0
