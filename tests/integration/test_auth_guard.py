"""The control plane's guard on a real resolver with DynamoDB (moto) — insightmesh.auth.guard.

A small app from ``create_app`` has routes that call ``authenticate`` and ``require_admin``;
requests are API Gateway HTTP API (payload 2.0) events, cookies in the top-level ``cookies`` list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from insightmesh.api import create_app
from insightmesh.api.app import InsightMeshResolver
from insightmesh.audit import log
from insightmesh.auth import guard, sessions, tokens
from insightmesh.config import Settings, load_settings
from insightmesh.directory.models import User
from tests.integration.conftest import DynamoCalls, build_http_event, items
from tests.integration.conftest import save_user as make_user

WINDOW_START = 1_900_000_020  # a multiple of 60


@pytest.fixture
def auth_env(auth_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://admin.example.com,http://localhost:3000")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://api.example.com")
    monkeypatch.setattr(guard, "_now", lambda: WINDOW_START + 10.0)  # every request in one window
    return auth_env


@pytest.fixture
def audit(auth_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The audit entries written, as insightmesh.audit.log records them (on the template's table)."""
    calls: list[dict[str, Any]] = []
    real_record = log.record

    def observed(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_record(**kwargs)

    monkeypatch.setattr(log, "record", observed)
    yield calls


def build_app() -> InsightMeshResolver:
    app = create_app("guarded", settings=load_settings(Settings))

    @app.get("/api/me")
    def me() -> dict[str, Any]:
        principal = guard.authenticate(app)
        return {"user_id": principal.user_id, "via": principal.via, "is_admin": principal.is_admin,
                "token_id": principal.token_id, "scopes": sorted(principal.scopes)}

    @app.post("/api/things")
    def change() -> dict[str, Any]:
        principal = guard.authenticate(app)
        return {"changed_by": principal.user_id}

    @app.delete("/api/agents/<name>")
    def delete_agent(name: str) -> dict[str, Any]:
        principal = guard.authenticate(app)
        guard.require_admin(app, principal, action="agent.delete", target=f"agent:{name}")
        return {"deleted": name}

    @app.post("/api/tokens-only")
    def scoped() -> dict[str, Any]:
        principal = guard.authenticate(app)
        guard.require_scope(app, principal, "admin:write", action="agent.update", target="agent:x")
        return {"ok": True}

    @app.get("/api/open")
    def open_read() -> dict[str, Any]:
        return {"user_id": guard.authenticate_scoped(app, action="open.read", target="open").user_id}

    @app.post("/api/open")
    def open_write() -> dict[str, Any]:
        return {"user_id": guard.authenticate_scoped(app, action="open.write", target="open").user_id}

    @app.get("/api/admin-only")
    def admin_read() -> dict[str, Any]:
        return {"user_id": guard.authenticate_admin(app, action="thing.read", target="thing").user_id}

    @app.post("/api/admin-only")
    def admin_write() -> dict[str, Any]:
        return {"user_id": guard.authenticate_admin(app, action="thing.write", target="thing").user_id}

    return app


def call(app: InsightMeshResolver, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    if method in ("POST", "PUT", "PATCH"):
        kwargs.setdefault("body", {})
    kwargs.setdefault("source_ip", "198.51.100.7")
    kwargs.setdefault("request_id", "req-1")
    response = app.resolve(build_http_event(method, path, **kwargs), None)  # type: ignore[arg-type]
    body = json.loads(response["body"]) if response.get("body") else None
    return response["statusCode"], response["headers"], body


def bearer(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}"}


def session_cookie(user: Any) -> tuple[str, str]:
    set_cookie, csrf = sessions.issue_session(user)
    return set_cookie.split(";", 1)[0], csrf


# -- bearer tokens --------------------------------------------------------------------------------


def test_a_valid_bearer_token_authenticates(auth_env: dict[str, str]) -> None:
    make_user("u-1")
    plaintext, token = tokens.create_token("u-1", name="ci", scopes=["admin:read"])
    status, _, body = call(build_app(), "GET", "/api/me", headers=bearer(plaintext))
    assert status == 200
    assert body == {"user_id": "u-1", "via": "token", "is_admin": False, "token_id": token.token_id,
                    "scopes": ["admin:read"]}


def test_bearer_requests_need_no_csrf(auth_env: dict[str, str]) -> None:
    make_user("u-1")
    plaintext, _ = tokens.create_token("u-1", name="ci")
    status, _, body = call(build_app(), "POST", "/api/things", headers=bearer(plaintext))
    assert (status, body) == (200, {"changed_by": "u-1"})


def test_no_credentials_is_401_with_the_envelope_and_a_bearer_challenge(auth_env: dict[str, str]) -> None:
    status, headers, body = call(build_app(), "GET", "/api/me", request_id="r-anon")
    assert status == 401
    assert body == {"error": {"code": "unauthorized", "message": "authentication required", "request_id": "r-anon"}}
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer imt_garbage", "Basic dXNlcjpwYXNz",
                                           "Bearer imt_0123456789abcdef_" + "a" * 43])
def test_bad_authorization_is_401_invalid_token(auth_env: dict[str, str], authorization: str) -> None:
    status, headers, body = call(build_app(), "GET", "/api/me", headers={"Authorization": authorization})
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]


def test_a_revoked_token_is_401(auth_env: dict[str, str]) -> None:
    make_user("u-1")
    plaintext, token = tokens.create_token("u-1", name="ci")
    app = build_app()
    assert call(app, "GET", "/api/me", headers=bearer(plaintext))[0] == 200
    tokens.revoke_token(token.token_id, user_id="u-1")
    assert call(app, "GET", "/api/me", headers=bearer(plaintext))[0] == 401


def test_an_expired_token_is_401(auth_env: dict[str, str]) -> None:
    make_user("u-1")
    plaintext, token = tokens.create_token("u-1", name="ci",
                                                    expires_at=datetime.now(UTC) + timedelta(minutes=5))
    token.update(actions=[tokens.ApiToken.expires_at.set(datetime.now(UTC) - timedelta(seconds=1))])
    assert call(build_app(), "GET", "/api/me", headers=bearer(plaintext))[0] == 401


def test_the_token_of_an_inactive_or_missing_user_is_401(auth_env: dict[str, str]) -> None:
    make_user("u-gone", is_active=False)
    inactive, _ = tokens.create_token("u-gone", name="ci")
    orphan, _ = tokens.create_token("u-never-existed", name="ci")
    app = build_app()
    assert call(app, "GET", "/api/me", headers=bearer(inactive))[0] == 401
    assert call(app, "GET", "/api/me", headers=bearer(orphan))[0] == 401


def test_a_bad_bearer_does_not_fall_back_to_the_cookie(auth_env: dict[str, str]) -> None:
    user = make_user("u-1")
    cookie, _ = session_cookie(user)
    status, _, _ = call(build_app(), "GET", "/api/me", headers=bearer("imt_nope"), cookies=[cookie])
    assert status == 401


# -- browser sessions and CSRF --------------------------------------------------------------------


def test_a_session_cookie_authenticates_a_read(auth_env: dict[str, str]) -> None:
    user = make_user("u-1", is_admin=True)
    cookie, _ = session_cookie(user)
    status, _, body = call(build_app(), "GET", "/api/me", cookies=["theme=dark", cookie])
    assert status == 200
    assert body["via"] == "session" and body["is_admin"] is True


def test_a_cookie_request_reads_its_session_once_and_a_revoked_one_is_401(auth_env: dict[str, str],
                                                                         dynamo_calls: DynamoCalls) -> None:
    user = make_user("u-1", is_admin=True)
    cookie, _ = session_cookie(user)
    app = build_app()
    calls = dynamo_calls.during(lambda: call(app, "GET", "/api/me", cookies=[cookie, cookie]))
    assert calls.count(f"GetItem:{auth_env['AUTH_STATES_TABLE']}") == 1  # one session lookup, however many cookies
    assert calls.count(f"GetItem:{auth_env['USERS_TABLE']}") == 1

    sessions.revoke_session(cookie)  # logout, elsewhere
    assert call(app, "GET", "/api/me", cookies=[cookie])[0] == 401


def test_a_cookie_header_works_too(auth_env: dict[str, str]) -> None:
    user = make_user("u-1")
    cookie, _ = session_cookie(user)
    assert call(build_app(), "GET", "/api/me", headers={"Cookie": cookie})[0] == 200


def test_a_tampered_or_foreign_cookie_is_401(auth_env: dict[str, str]) -> None:
    user = make_user("u-1")
    cookie, _ = session_cookie(user)
    status, headers, _ = call(build_app(), "GET", "/api/me", cookies=[cookie[:-2] + "xx"])
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")


def test_the_session_of_a_deactivated_user_is_401(auth_env: dict[str, str]) -> None:
    user = make_user("u-1")
    cookie, _ = session_cookie(user)
    user.update(actions=[User.is_active.set(False)])
    assert call(build_app(), "GET", "/api/me", cookies=[cookie])[0] == 401


def test_a_cookie_post_without_csrf_is_403(auth_env: dict[str, str]) -> None:
    user = make_user("u-1")
    cookie, _ = session_cookie(user)
    status, _, body = call(build_app(), "POST", "/api/things", cookies=[cookie], request_id="r-csrf")
    assert status == 403
    assert body["error"]["code"] == "forbidden" and body["error"]["request_id"] == "r-csrf"


def test_a_cookie_post_with_the_csrf_header_passes(auth_env: dict[str, str]) -> None:
    user = make_user("u-1")
    cookie, csrf = session_cookie(user)
    status, _, body = call(build_app(), "POST", "/api/things", cookies=[cookie], headers={"X-CSRF-Token": csrf})
    assert (status, body) == (200, {"changed_by": "u-1"})


def test_a_wrong_csrf_header_is_403(auth_env: dict[str, str]) -> None:
    user = make_user("u-1")
    cookie, _ = session_cookie(user)
    _, other_csrf = session_cookie(user)  # the token of another session of the same user
    assert call(build_app(), "POST", "/api/things", cookies=[cookie], headers={"X-CSRF-Token": other_csrf})[0] == 403


@pytest.mark.parametrize("headers", [
    {"Origin": "https://admin.example.com"},
    {"Origin": "http://localhost:3000"},
    {"Origin": "https://api.example.com"},  # PUBLIC_BASE_URL
    {"Origin": "https://API.example.com:443"},
    {"Referer": "https://admin.example.com/agents?x=1"},
])
def test_a_cookie_post_from_a_trusted_origin_passes(auth_env: dict[str, str], headers: dict[str, str]) -> None:
    user = make_user("u-1")
    cookie, _ = session_cookie(user)
    assert call(build_app(), "POST", "/api/things", cookies=[cookie], headers=headers)[0] == 200


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example.net"},
    {"Origin": "null"},
    {"Origin": "https://admin.example.com.evil.net"},
    {"Origin": "http://admin.example.com"},  # scheme differs
    {"Referer": "https://evil.example.net/https://admin.example.com"},
    {"Origin": "https://evil.example.net", "Referer": "https://admin.example.com/"},  # Origin wins
])
def test_a_cookie_post_from_another_origin_is_403(auth_env: dict[str, str], headers: dict[str, str]) -> None:
    user = make_user("u-1")
    cookie, _ = session_cookie(user)
    assert call(build_app(), "POST", "/api/things", cookies=[cookie], headers=headers)[0] == 403


# -- admin ----------------------------------------------------------------------------------------


def test_require_admin_lets_an_admin_through_without_auditing(auth_env: dict[str, str],
                                                               audit: list[dict[str, Any]]) -> None:
    make_user("u-admin", is_admin=True)
    plaintext, _ = tokens.create_token("u-admin", name="ci")
    status, _, body = call(build_app(), "DELETE", "/api/agents/meddic", headers=bearer(plaintext))
    assert (status, body) == (200, {"deleted": "meddic"})
    assert audit == []


def test_require_admin_refuses_and_audits_a_non_admin(auth_env: dict[str, str],
                                                      audit: list[dict[str, Any]]) -> None:
    make_user("u-1", email="bob@example.com")
    plaintext, token = tokens.create_token("u-1", name="ci")
    status, _, body = call(build_app(), "DELETE", "/api/agents/meddic", headers=bearer(plaintext),
                           request_id="r-denied")
    assert status == 403
    assert body["error"]["code"] == "forbidden" and body["error"]["request_id"] == "r-denied"
    assert len(audit) == 1
    call_args = audit[0]
    assert call_args["actor"].user_id == "u-1" and call_args["actor"].token_id == token.token_id
    assert {key: call_args[key] for key in ("action", "target", "outcome", "reason", "request_id")} == {
        "action": "agent.delete", "target": "agent:meddic", "outcome": "denied",
        "reason": "requires an admin", "request_id": "r-denied"}
    stored = items("AUDIT_TABLE")  # the real audit log: the entry is stored
    assert [(item["target"]["S"], item["outcome"]["S"], item["actor_id"]["S"]) for item in stored] == [
        ("agent:meddic", "denied", "u-1")]


def test_require_admin_refuses_a_session_non_admin_too(auth_env: dict[str, str],
                                                       audit: list[dict[str, Any]]) -> None:
    user = make_user("u-1")
    cookie, csrf = session_cookie(user)
    status, _, _ = call(build_app(), "DELETE", "/api/agents/x", cookies=[cookie], headers={"X-CSRF-Token": csrf})
    assert status == 403
    assert [entry["actor"].via for entry in audit] == ["session"]


def test_require_scope_binds_tokens_but_not_sessions(auth_env: dict[str, str],
                                                     audit: list[dict[str, Any]]) -> None:
    user = make_user("u-admin", is_admin=True)
    unscoped, _ = tokens.create_token("u-admin", name="read-only", scopes=["admin:read"])
    scoped, _ = tokens.create_token("u-admin", name="writer", scopes=["admin:read", "admin:write"])
    cookie, csrf = session_cookie(user)
    app = build_app()
    assert call(app, "POST", "/api/tokens-only", headers=bearer(unscoped))[0] == 403
    assert call(app, "POST", "/api/tokens-only", headers=bearer(scoped))[0] == 200
    assert call(app, "POST", "/api/tokens-only", cookies=[cookie], headers={"X-CSRF-Token": csrf})[0] == 200
    assert [entry["reason"] for entry in audit] == ["the api token lacks the admin:write scope"]


@pytest.mark.parametrize("path", ["/api/open", "/api/admin-only"])
def test_a_token_needs_admin_read_to_read_and_admin_write_to_change(auth_env: dict[str, str],
                                                                     audit: list[dict[str, Any]], path: str) -> None:
    make_user("u-admin", is_admin=True)
    none, _ = tokens.create_token("u-admin", name="none")
    read, _ = tokens.create_token("u-admin", name="read", scopes=["admin:read"])
    write, _ = tokens.create_token("u-admin", name="write", scopes=["admin:write"])
    both, _ = tokens.create_token("u-admin", name="both", scopes=["admin:read", "admin:write"])
    app = build_app()
    got = {name: (call(app, "GET", path, headers=bearer(token))[0], call(app, "POST", path, headers=bearer(token))[0])
           for name, token in {"none": none, "read": read, "write": write, "both": both}.items()}
    assert got == {"none": (403, 403), "read": (200, 403), "write": (403, 200), "both": (200, 200)}
    assert sorted({entry["reason"] for entry in audit}) == ["the api token lacks the admin:read scope",
                                                           "the api token lacks the admin:write scope"]


def test_a_session_needs_no_scope(auth_env: dict[str, str]) -> None:
    user = make_user("u-admin", is_admin=True)
    cookie, csrf = session_cookie(user)
    app = build_app()
    for path in ("/api/open", "/api/admin-only"):
        assert call(app, "GET", path, cookies=[cookie])[0] == 200
        assert call(app, "POST", path, cookies=[cookie], headers={"X-CSRF-Token": csrf})[0] == 200


def test_the_token_of_a_promoted_user_gains_no_scope(auth_env: dict[str, str],
                                                     audit: list[dict[str, Any]]) -> None:
    user = make_user("u-1")
    plaintext, _ = tokens.create_token("u-1", name="reader", scopes=["admin:read"])
    app = build_app()
    assert call(app, "GET", "/api/admin-only", headers=bearer(plaintext))[0] == 403  # not an admin yet

    user.update(actions=[User.is_admin.set(True)])  # promoted

    assert call(app, "GET", "/api/admin-only", headers=bearer(plaintext))[0] == 200
    status, _, body = call(app, "POST", "/api/admin-only", headers=bearer(plaintext))
    assert status == 403 and "admin:write" in body["error"]["message"]
    assert audit[-1]["reason"] == "the api token lacks the admin:write scope"


# -- rate limits ----------------------------------------------------------------------------------


def test_the_per_principal_limit_answers_429_with_retry_after(auth_env: dict[str, str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_RATE_LIMIT_PER_MINUTE", "2")
    guard.get_auth_settings.cache_clear()
    make_user("u-1")
    make_user("u-2")
    first, _ = tokens.create_token("u-1", name="a")
    second, _ = tokens.create_token("u-1", name="b")  # same principal, other token
    other, _ = tokens.create_token("u-2", name="c")
    app = build_app()
    assert call(app, "GET", "/api/me", headers=bearer(first))[0] == 200
    assert call(app, "GET", "/api/me", headers=bearer(second), source_ip="203.0.113.9")[0] == 200
    status, headers, body = call(app, "GET", "/api/me", headers=bearer(first), request_id="r-429")
    assert status == 429
    assert headers["Retry-After"] == "50"
    assert body["error"]["code"] == "rate_limited" and body["error"]["request_id"] == "r-429"
    assert call(app, "GET", "/api/me", headers=bearer(other))[0] == 200
    keys = {item["key"]["S"] for item in items("RATE_LIMIT_TABLE")}
    assert f"api-principal#u-1#{WINDOW_START}" in keys


def test_the_per_ip_limit_applies_before_authentication(auth_env: dict[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_IP_RATE_LIMIT_PER_MINUTE", "2")
    guard.get_auth_settings.cache_clear()
    app = build_app()
    statuses = [call(app, "GET", "/api/me", source_ip="192.0.2.50")[0] for _ in range(3)]
    assert statuses == [401, 401, 429]  # anonymous requests count: refused before any token lookup
    status, headers, _ = call(app, "GET", "/api/me", source_ip="192.0.2.50")
    assert status == 429 and headers["Retry-After"] == "50"
    assert call(app, "GET", "/api/me", source_ip="192.0.2.51")[0] == 401
    assert f"api-ip#192.0.2.50#{WINDOW_START}" in {item["key"]["S"] for item in items("RATE_LIMIT_TABLE")}
