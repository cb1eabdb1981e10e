"""Browser sign-in end to end: the ``/auth/*`` routes on an in-process resolver, DynamoDB in moto
and the OIDC provider stand-in on loopback (tests/standins/oidc_server.py).

The browser is played by the test: it calls ``GET /auth/login``, follows the redirect to the
stand-in's ``/authorize`` over real HTTP, reads the ``code`` and ``state`` the stand-in sends back
to the redirect URI, and calls ``GET /auth/callback`` with them and the ``im_login`` cookie.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from insightmesh import resilience
from insightmesh.api import create_app
from insightmesh.api.app import InsightMeshResolver
from insightmesh.auth import login as login_module
from insightmesh.auth import oidc_provider, routes
from insightmesh.auth.routes import register_auth_routes
from insightmesh.auth.settings import get_auth_settings
from insightmesh.config import Settings, get_settings, load_settings
from insightmesh.observability import get_logger
from tests.integration.conftest import build_http_event, items
from tests.integration.conftest import save_user as make_user
from tests.standins import oidc_server
from tests.standins.oidc_server import OidcStandin, StandinUser

CLIENT_ID = "insightmesh-test-client"
CLIENT_SECRET = "standin-secret-0123456789"
PUBLIC_BASE_URL = "https://api.example.com"
REDIRECT_URI = PUBLIC_BASE_URL + "/auth/callback"


def login_states() -> list[dict[str, Any]]:
    """The login states stored (the table holds the sessions, ``session#<sid>``, too)."""
    return [item for item in items("AUTH_STATES_TABLE") if not item["state"]["S"].startswith("session#")]


@pytest.fixture
def idp() -> Iterator[OidcStandin]:
    server = oidc_server.start(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def env(idp: OidcStandin, auth_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    monkeypatch.setenv("OIDC_ISSUER", idp.issuer)
    monkeypatch.setenv("OIDC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("OIDC_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("OIDC_ALLOWED_DOMAINS", "example.com, @corp.example.org")
    monkeypatch.setenv("PUBLIC_BASE_URL", PUBLIC_BASE_URL)
    monkeypatch.setenv("OAUTH_INSECURE_TRANSPORT", "true")  # the stand-in speaks http on loopback
    monkeypatch.delitem(resilience._breakers, "oidc", raising=False)
    yield SimpleNamespace(idp=idp, app=build_app())
    resilience._breakers.pop("oidc", None)


def build_app() -> InsightMeshResolver:
    app = create_app("admin-api-test", settings=load_settings(Settings))
    register_auth_routes(app)
    return app


# -- the browser ---------------------------------------------------------------------------------


class Answer:
    """A response of the resolver, as a browser sees it."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.status: int = raw["statusCode"]
        self.headers: dict[str, str] = raw.get("headers") or {}
        self.set_cookies: list[str] = raw.get("cookies") or []
        body = raw.get("body")
        self.body: Any = json.loads(body) if body else None

    def cookie(self, name: str) -> str | None:
        """The ``name=value`` pair the browser stores from Set-Cookie ``name``, if set."""
        for set_cookie in self.set_cookies:
            pair = set_cookie.split(";", 1)[0]
            if pair.split("=", 1)[0] == name:
                return pair
        return None

    def set_cookie(self, name: str) -> str | None:
        return next((c for c in self.set_cookies if c.split("=", 1)[0] == name), None)


def request(app: InsightMeshResolver, method: str, path: str, **kwargs: Any) -> Answer:
    kwargs.setdefault("source_ip", "198.51.100.20")
    return Answer(app.resolve(build_http_event(method, path, **kwargs), None))  # type: ignore[arg-type]


@dataclass
class Login:
    login_cookie: str  # "im_login=..."
    callback: dict[str, str]  # the query the IdP sends to the redirect URI
    authorize: dict[str, str]  # the query of the authorization request


def start_login(env: SimpleNamespace, *, next_path: str | None = None, source_ip: str = "198.51.100.20") -> Login:
    """GET /auth/login, then follow the redirect to the stand-in, which answers with the code."""
    answer = request(env.app, "GET", "/auth/login", query={"next": next_path} if next_path else None,
                     source_ip=source_ip)
    assert answer.status == 302, answer.body
    location = answer.headers["Location"]
    assert location.startswith(env.idp.issuer + "/authorize?")
    login_cookie = answer.cookie("im_login")
    assert login_cookie is not None
    idp_answer = httpx.get(location, follow_redirects=False, timeout=5)
    assert idp_answer.status_code == 302, idp_answer.text
    redirect = urlsplit(idp_answer.headers["location"])
    assert f"{redirect.scheme}://{redirect.netloc}{redirect.path}" == REDIRECT_URI
    return Login(login_cookie, dict(parse_qsl(redirect.query)), dict(parse_qsl(urlsplit(location).query)))


def finish(env: SimpleNamespace, login: Login, *, query: dict[str, str] | None = None,
           cookies: list[str] | None = None, source_ip: str = "198.51.100.20") -> Answer:
    return request(env.app, "GET", "/auth/callback", query=login.callback if query is None else query,
                   cookies=[login.login_cookie] if cookies is None else cookies, source_ip=source_ip)


def assert_refused(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer.body
    assert answer.body["error"]["code"] == code
    assert answer.cookie("im_session") is None
    assert answer.set_cookie("im_login") is not None and "Max-Age=0" in answer.set_cookie("im_login")


def users() -> list[dict[str, Any]]:
    return items("USERS_TABLE")


# -- success -------------------------------------------------------------------------------------


def test_a_successful_sign_in_creates_the_user_and_a_session(env: SimpleNamespace) -> None:
    login = start_login(env, next_path="/agents?tab=grants")

    authorize = login.authorize
    assert authorize["response_type"] == "code"
    assert authorize["client_id"] == CLIENT_ID
    assert authorize["redirect_uri"] == REDIRECT_URI
    assert authorize["code_challenge_method"] == "S256"
    assert authorize["scope"] == "openid email profile"
    assert authorize["state"] and authorize["nonce"] and authorize["state"] != authorize["nonce"]
    assert len(login_states()) == 1

    answer = finish(env, login)

    assert answer.status == 302, answer.body
    assert answer.headers["Location"] == "/agents?tab=grants"
    session = answer.set_cookie("im_session")
    assert session is not None and "HttpOnly" in session and "SameSite=Lax" in session
    assert "Max-Age=0" in (answer.set_cookie("im_login") or "")
    assert login_states() == []  # consumed

    [user] = users()
    assert user["email"] == {"S": "alice@example.com"}
    assert user["is_admin"] == {"BOOL": False}
    assert user["primary_provider"] == {"S": "oidc"}
    assert user["display_name"] == {"S": "Alice Example"}
    assert "last_login_at" in user
    user_id = user["user_id"]["S"]
    assert [i["identity_key"]["S"] for i in items("IDENTITIES_TABLE")] == ["email#alice@example.com"]
    assert [(m["group_name"]["S"], m["user_id"]["S"]) for m in items("MEMBERSHIPS_TABLE")] == [
        ("all_users", user_id)]

    # The token request: authenticated client, the PKCE verifier, the registered redirect URI.
    [token_request] = env.idp.token_requests
    assert token_request["authorization"].startswith("Basic ")
    assert token_request["form"]["grant_type"] == "authorization_code"
    assert token_request["form"]["redirect_uri"] == REDIRECT_URI
    assert oidc_server.s256(token_request["form"]["code_verifier"]) == authorize["code_challenge"]
    assert "client_secret" not in token_request["form"]

    me = request(env.app, "GET", "/auth/session", cookies=[answer.cookie("im_session") or ""])
    assert me.status == 200
    assert me.body["user_id"] == user_id
    assert me.body["email"] == "alice@example.com"
    assert me.body["is_admin"] is False
    assert isinstance(me.body["csrf_token"], str) and len(me.body["csrf_token"]) >= 32


def test_the_pre_auth_cookie_is_short_lived_and_scoped(env: SimpleNamespace) -> None:
    answer = request(env.app, "GET", "/auth/login")
    set_cookie = answer.set_cookie("im_login") or ""
    assert {"HttpOnly", "SameSite=Lax", "Path=/auth", "Max-Age=600"} <= {p.strip() for p in set_cookie.split(";")}
    assert answer.headers["Cache-Control"] == "no-store"


def test_an_existing_user_signs_in_as_themselves(env: SimpleNamespace) -> None:
    make_user("u-existing", "alice@example.com", is_admin=True, groups=())
    answer = finish(env, start_login(env))
    assert answer.status == 302
    assert [u["user_id"]["S"] for u in users()] == ["u-existing"]
    me = request(env.app, "GET", "/auth/session", cookies=[answer.cookie("im_session") or ""])
    assert (me.body["user_id"], me.body["is_admin"]) == ("u-existing", True)


def test_signing_in_twice_gives_one_user(env: SimpleNamespace) -> None:
    first = finish(env, start_login(env))
    second = finish(env, start_login(env))
    assert first.status == second.status == 302
    assert len(users()) == 1
    assert first.cookie("im_session") != second.cookie("im_session")


def test_an_allowed_domain_is_matched_case_insensitively(env: SimpleNamespace) -> None:
    env.idp.user = StandinUser(sub="s-2", email="Carol@Corp.Example.org", name=None)
    answer = finish(env, start_login(env))
    assert answer.status == 302, answer.body
    assert users()[0]["email"] == {"S": "carol@corp.example.org"}


def test_client_secret_post_is_used_when_basic_is_not_offered(env: SimpleNamespace,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    discovery = env.idp.discovery
    monkeypatch.setattr(env.idp, "discovery", lambda: {**discovery(),
                                                       "token_endpoint_auth_methods_supported": ["client_secret_post"]})
    assert finish(env, start_login(env)).status == 302
    [token_request] = env.idp.token_requests
    assert token_request["authorization"] is None
    assert token_request["form"]["client_id"] == CLIENT_ID
    assert token_request["form"]["client_secret"] == CLIENT_SECRET


def test_a_rotated_signing_key_is_fetched(env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oidc_provider, "JWKS_MIN_REFRESH_SECONDS", 0)  # as if the last fetch were old enough
    assert finish(env, start_login(env)).status == 302
    jwks_fetches = env.idp.jwks_requests
    assert finish(env, start_login(env)).status == 302
    assert env.idp.jwks_requests == jwks_fetches  # a known kid: the cached key set serves
    env.idp.rotate_key()
    assert finish(env, start_login(env)).status == 302
    assert env.idp.jwks_requests == jwks_fetches + 1  # the unknown kid made it fetch the JWKS again
    assert env.idp.discovery_requests == 1  # the discovery document is cached


def test_unknown_key_ids_cannot_make_it_refetch_the_jwks_at_will(env: SimpleNamespace) -> None:
    assert finish(env, start_login(env)).status == 302
    fetches = env.idp.jwks_requests
    env.idp.tamper.sign_with_unknown_key = True
    for _ in range(3):
        assert_refused(finish(env, start_login(env)), 401, "login_refused")
    assert env.idp.jwks_requests == fetches  # refetches are at most one per JWKS_MIN_REFRESH_SECONDS


# -- the state and the browser binding -------------------------------------------------------------


def test_a_forged_state_is_refused_and_nothing_is_stored(env: SimpleNamespace) -> None:
    login = start_login(env)
    answer = finish(env, login, query={**login.callback, "state": "forged-state"})
    assert_refused(answer, 400, "invalid_login_state")
    assert users() == []
    assert len(login_states()) == 1  # the real login is untouched
    assert env.idp.token_requests == []  # the code was never exchanged


def test_a_missing_state_is_refused(env: SimpleNamespace) -> None:
    login = start_login(env)
    answer = finish(env, login, query={"code": login.callback["code"]})
    assert_refused(answer, 400, "invalid_login_state")
    assert users() == [] and env.idp.token_requests == []


def test_a_callback_without_the_pre_auth_cookie_is_refused(env: SimpleNamespace) -> None:
    login = start_login(env)
    answer = finish(env, login, cookies=[])
    assert_refused(answer, 400, "invalid_login_state")
    assert users() == [] and env.idp.token_requests == []
    assert len(login_states()) == 1


def test_another_browsers_callback_is_refused(env: SimpleNamespace) -> None:
    """Login CSRF: the attacker's callback (their code and state) in the victim's browser."""
    victim = start_login(env)
    attacker = start_login(env, source_ip="203.0.113.66")
    answer = finish(env, victim, query=attacker.callback)
    assert_refused(answer, 400, "invalid_login_state")
    assert users() == [] and env.idp.token_requests == []
    assert len(login_states()) == 2


def test_a_forged_pre_auth_cookie_is_refused(env: SimpleNamespace) -> None:
    login = start_login(env)
    name, value = login.login_cookie.split("=", 1)
    answer = finish(env, login, cookies=[f"{name}={value[:-3]}abc"])
    assert_refused(answer, 400, "invalid_login_state")
    assert users() == []


def test_a_replayed_callback_is_refused(env: SimpleNamespace) -> None:
    login = start_login(env)
    assert finish(env, login).status == 302
    replay = finish(env, login)
    assert_refused(replay, 400, "invalid_login_state")
    assert len(users()) == 1
    assert len(env.idp.token_requests) == 1  # the replay never reached the IdP


def test_a_replayed_code_is_refused(env: SimpleNamespace) -> None:
    first = start_login(env)
    assert finish(env, first).status == 302
    second = start_login(env)
    answer = finish(env, second, query={**second.callback, "code": first.callback["code"]})
    assert_refused(answer, 401, "login_refused")
    assert len(users()) == 1
    assert login_states() == []  # the second state was spent too


def test_an_idp_error_is_refused_and_spends_the_state(env: SimpleNamespace) -> None:
    login = start_login(env)
    answer = finish(env, login, query={"state": login.callback["state"], "error": "access_denied"})
    assert_refused(answer, 401, "login_refused")
    assert login_states() == [] and users() == []


# -- the ID token --------------------------------------------------------------------------------


@pytest.mark.parametrize("tamper", [
    {"nonce": "not-the-nonce"},
    {"audience": "another-client"},
    {"audience": [CLIENT_ID, "another-client"]},  # several audiences and no azp
    {"issuer": "https://accounts.evil.example"},
    {"expires_in": -120},  # expired beyond the minute of leeway
    {"issued_at_offset": 600},  # issued in the future
    {"sign_with_unknown_key": True},
    {"extra_claims": {"azp": "another-client"}},
])
def test_an_invalid_id_token_is_refused(env: SimpleNamespace, tamper: dict[str, Any]) -> None:
    for name, value in tamper.items():
        setattr(env.idp.tamper, name, value)
    answer = finish(env, start_login(env))
    assert_refused(answer, 401, "login_refused")
    assert users() == []
    assert items("IDENTITIES_TABLE") == []


def test_a_missing_nonce_is_refused(env: SimpleNamespace) -> None:
    login = start_login(env)
    env.idp.auto_approve = False
    code = env.idp.issue_code(nonce=None, code_challenge=login.authorize["code_challenge"],
                              redirect_uri=REDIRECT_URI)
    answer = finish(env, login, query={"state": login.callback["state"], "code": code})
    assert_refused(answer, 401, "login_refused")
    assert users() == []


def test_several_audiences_with_the_right_azp_are_accepted(env: SimpleNamespace) -> None:
    env.idp.tamper.audience = [CLIENT_ID, "another-client"]
    env.idp.tamper.extra_claims = {"azp": CLIENT_ID}
    assert finish(env, start_login(env)).status == 302


@pytest.mark.parametrize("verified", [False, "false", None])
def test_an_unverified_email_is_refused(env: SimpleNamespace, verified: Any) -> None:
    env.idp.user = StandinUser(email="alice@example.com", email_verified=verified)
    assert_refused(finish(env, start_login(env)), 401, "login_refused")
    assert users() == []


@pytest.mark.parametrize("email", ["mallory@evil.example", "mallory@example.com.evil.example",
                                   "mallory@sub.example.com"])
def test_a_domain_not_allowed_is_refused(env: SimpleNamespace, email: str) -> None:
    env.idp.user = StandinUser(email=email)
    assert_refused(finish(env, start_login(env)), 401, "login_refused")
    assert users() == []


def test_an_empty_domain_list_refuses_everyone(env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_ALLOWED_DOMAINS", "")
    oidc_provider.reset_caches()
    assert_refused(finish(env, start_login(env)), 401, "login_refused")
    assert users() == []


GOOGLE_CLAIMS: dict[str, Any] = {"email": "alice@example.com", "email_verified": True}


@pytest.mark.parametrize("hd", [None, "gmail.com", "evil.example", "", 42])
def test_google_requires_an_allowed_hosted_domain(env: SimpleNamespace, hd: Any) -> None:
    """A consumer Google account may carry a verified address of the company's domain: with
    Google as issuer, the Workspace hosted domain (``hd``) must be allowed too."""
    google = oidc_provider.OidcSettings(OIDC_ISSUER="https://accounts.google.com", OIDC_CLIENT_ID=CLIENT_ID,
                                   OIDC_ALLOWED_DOMAINS=["example.com"], PUBLIC_BASE_URL=PUBLIC_BASE_URL)
    claims = {**GOOGLE_CLAIMS, **({} if hd is None else {"hd": hd})}
    with pytest.raises(oidc_provider.LoginRefusedError, match="Google Workspace"):
        login_module._admitted_email(claims, google)


def test_google_admits_an_allowed_hosted_domain_and_other_issuers_need_none(env: SimpleNamespace) -> None:
    google = oidc_provider.OidcSettings(OIDC_ISSUER="https://accounts.google.com", OIDC_CLIENT_ID=CLIENT_ID,
                                   OIDC_ALLOWED_DOMAINS=["example.com"], PUBLIC_BASE_URL=PUBLIC_BASE_URL)
    assert google.is_google
    assert login_module._admitted_email({**GOOGLE_CLAIMS, "hd": "Example.com"}, google) == "alice@example.com"
    other = oidc_provider.get_oidc_settings()
    assert not other.is_google
    assert login_module._admitted_email(GOOGLE_CLAIMS, other) == "alice@example.com"


def test_a_deactivated_user_cannot_sign_in(env: SimpleNamespace) -> None:
    make_user("u-off", "alice@example.com", is_active=False, groups=())
    assert_refused(finish(env, start_login(env)), 401, "login_refused")


# -- the return path -----------------------------------------------------------------------------


@pytest.mark.parametrize(("next_path", "location"), [
    ("https://evil.example/phish", "/"),
    ("//evil.example/phish", "/"),
    ("/\\evil.example", "/"),
    ("/\\\\evil.example", "/"),
    ("javascript:alert(1)", "/"),
    ("agents", "/"),
    ("/ok\r\nSet-Cookie: x=1", "/"),
    ("/agents/meddic?tab=grants#top", "/agents/meddic?tab=grants#top"),
])
def test_next_path_only_ever_points_inside(env: SimpleNamespace, next_path: str, location: str) -> None:
    answer = finish(env, start_login(env, next_path=next_path))
    assert answer.status == 302
    assert answer.headers["Location"] == location


# -- the other routes ----------------------------------------------------------------------------


def test_session_without_a_cookie_is_401(env: SimpleNamespace) -> None:
    answer = request(env.app, "GET", "/auth/session")
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_logout_clears_the_session_cookie(env: SimpleNamespace) -> None:
    answer = request(env.app, "POST", "/auth/logout")
    assert answer.status == 204
    cleared = answer.set_cookie("im_session") or ""
    assert cleared.startswith("im_session=;") and "Max-Age=0" in cleared and "Path=/" in cleared


def test_logout_revokes_the_session_so_a_copied_cookie_stops_working(env: SimpleNamespace) -> None:
    signed_in = finish(env, start_login(env))
    cookie = signed_in.cookie("im_session") or ""
    copied = cookie  # e.g. lifted from the browser before the user signed out
    assert request(env.app, "GET", "/auth/session", cookies=[copied]).status == 200
    other = finish(env, start_login(env)).cookie("im_session") or ""  # the same person, another browser

    assert request(env.app, "POST", "/auth/logout", cookies=[cookie]).status == 204

    assert request(env.app, "GET", "/auth/session", cookies=[copied]).status == 401
    assert request(env.app, "GET", "/auth/session", cookies=[other]).status == 200


def test_login_and_callback_are_rate_limited_per_ip(env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGIN_RATE_LIMIT_PER_MINUTE", "3")
    monkeypatch.setattr(routes, "_now", lambda: 1_900_000_020 + 15.0)  # one window, 45 s left

    get_auth_settings.cache_clear()
    login = start_login(env, source_ip="192.0.2.99")  # 1
    assert request(env.app, "GET", "/auth/login", source_ip="192.0.2.99").status == 302  # 2
    assert finish(env, login, source_ip="192.0.2.99").status == 302  # 3: the callback counts too
    refused = request(env.app, "GET", "/auth/login", source_ip="192.0.2.99")
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "45"
    assert refused.body["error"]["code"] == "rate_limited"
    assert request(env.app, "GET", "/auth/callback", query=login.callback, cookies=[login.login_cookie],
                   source_ip="192.0.2.99").status == 429
    assert request(env.app, "GET", "/auth/login", source_ip="192.0.2.100").status == 302


def test_sign_in_not_configured_is_503(env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_CLIENT_ID", "")
    oidc_provider.reset_caches()
    answer = request(env.app, "GET", "/auth/login")
    assert answer.status == 503
    assert answer.body["error"]["code"] == "identity_provider_unavailable"


def test_an_unreachable_idp_is_503(env: SimpleNamespace) -> None:
    env.idp.stop()
    answer = request(env.app, "GET", "/auth/login")
    assert answer.status == 503
    assert answer.body["error"]["code"] == "identity_provider_unavailable"
    assert login_states() == []


def test_http_issuer_is_refused_without_insecure_transport(env: SimpleNamespace,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTH_INSECURE_TRANSPORT", "false")
    env.app = build_app()

    get_settings.cache_clear()
    oidc_provider.reset_caches()
    assert request(env.app, "GET", "/auth/login").status == 503


def test_no_code_token_or_secret_reaches_the_logs(env: SimpleNamespace) -> None:
    loggers = [get_logger(), env.app.logger]
    stream = io.StringIO()
    previous = [logger.registered_handler.setStream(stream) for logger in loggers]  # type: ignore[attr-defined]
    try:
        login = start_login(env)
        answer = finish(env, login)
        env.idp.tamper.nonce = "wrong"
        finish(env, start_login(env))
    finally:
        for logger, old in zip(loggers, previous, strict=True):
            logger.registered_handler.setStream(old)  # type: ignore[attr-defined]
    logs = stream.getvalue()
    assert answer.status == 302
    assert "signed in" in logs and "sign-in refused" in logs
    session_value = (answer.cookie("im_session") or "").split("=", 1)[1]
    for secret in (login.callback["code"], login.callback["state"], CLIENT_SECRET, session_value,
                   login.login_cookie.split("=", 1)[1], "eyJ"):
        assert secret not in logs
