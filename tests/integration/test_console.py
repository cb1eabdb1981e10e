"""The console function in-process (moto): sign-in links, My access, the 403 page, the CSP, static
files — every page through the admin and tasks APIs' own apps, with the browser's cookie."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.integration.conftest import ROOT, template_tables
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
    assert done.status == 303 and done.headers["Location"] == "/console/"
    assert "im_session" in browser.cookies
    return browser


def test_root_and_console_redirect_and_every_response_has_the_csp(console: ModuleType) -> None:
    browser = Browser(console)
    for path in ("/", "/console"):
        page = browser.request("GET", path)
        assert page.status == 303 and page.headers["Location"] == "/console/"
    for page in (browser.request("GET", "/console/"), browser.request("GET", "/console/nope"),
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

    create_token(MEMBER_ID, name="laptop script", scopes=["admin:read"])
    browser = sign_in(console, MEMBER_ID)
    home = browser.request("GET", "/console/")
    assert home.status == 200 and "laptop script" in home.body and "all_users" in home.body
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
    assert done.status == 303 and done.headers["Location"] == "/console/?notice=token-revoked"
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
