"""Google credentials end to end: insightmesh.credentials against every table of the template and a
KMS key (moto, in-process), and the Google OAuth stand-in on loopback (tests/standins/google_oauth_server.py).

The routes are exercised through an app built as the tasks_api handler builds it (``create_app`` +
``register_credential_routes``), with API Gateway HTTP API (payload 2.0) events and bearer API
tokens. The browser is played by the test: it follows the authorization URL to the stand-in over
real HTTP, which consents at once and redirects to the callback with ``code`` and ``state``.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import httpx
import pytest

from insightmesh import resilience
from insightmesh.api import create_app
from insightmesh.api.control_plane import configure_openapi
from insightmesh.api.errors import ForbiddenError
from insightmesh.audit.log import AuditEntry
from insightmesh.auth import validation
from insightmesh.auth.sessions import issue_session
from insightmesh.auth.settings import get_auth_settings
from insightmesh.auth.tokens import create_token
from insightmesh.auth.validation import authenticate_before_validation
from insightmesh.config import get_settings
from insightmesh.credentials import google, service
from insightmesh.credentials.crypto import SealBrokenError, Sealed, seal, unseal
from insightmesh.credentials.errors import (
    AuthorizationStateError,
    CredentialError,
    CredentialExpiredError,
    CredentialNotFoundError,
    CredentialScopeError,
    CredentialUnavailableError,
)
from insightmesh.credentials.routes import register_credential_routes
from insightmesh.directory.models import User
from tests.standins.google_oauth_server import GoogleOAuthServer

CLIENT_ID = "insightmesh-google-test"
CLIENT_SECRET = "google-standin-secret-0123456789"
PUBLIC_BASE_URL = "https://api.example.com"
REDIRECT_URI = PUBLIC_BASE_URL + "/api/credentials/google/callback"
CALLBACK = "/api/credentials/google/callback"
AUTHORIZE = "/api/credentials/google/authorize"
DRIVE = "https://www.googleapis.com/auth/drive.readonly"
USERS = "https://www.googleapis.com/auth/admin.directory.user.readonly"
GROUPS = "https://www.googleapis.com/auth/admin.directory.group.readonly"
MEMBERS = "https://www.googleapis.com/auth/admin.directory.group.member.readonly"
ADMIN_ID, ADMIN_EMAIL = "u-admin", "admin@example.com"
OTHER_ADMIN_ID, OTHER_ADMIN_EMAIL = "u-admin-2", "other-admin@example.com"
MEMBER_ID, MEMBER_EMAIL = "u-member", "member@example.com"


# -- fixtures ------------------------------------------------------------------------------------


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    text: str
    cookies: list[str] = field(default_factory=list)  # Set-Cookie values

    @property
    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Env:
    google: GoogleOAuthServer
    app: Any
    tokens: dict[str, str]
    key_id: str
    tables: dict[str, str]
    http_event: Callable[..., dict[str, Any]]
    bodies: list[str] = field(default_factory=list)  # every response body, for the leak checks
    requests: int = 0
    browser: dict[str, str] = field(default_factory=dict)  # the admin's browser's cookies (name -> value)

    def call(self, method: str, path: str, *, as_: str | None = "admin", body: Any = None,
             query: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Result:
        self.requests += 1
        event = self.http_event(method, path, token=self.tokens[as_] if as_ else None, body=body, query=query,
                           headers=headers, request_id=f"req-{self.requests}")
        response = self.app.resolve(event, None)
        text = response.get("body") or ""
        self.bodies.append(text)
        for set_cookie in response.get("cookies") or []:  # the browser keeps what it is given
            name, _, rest = set_cookie.partition("=")
            value = rest.split(";", 1)[0]
            if value and "Max-Age=0" not in set_cookie:
                self.browser[name] = value
            else:
                self.browser.pop(name, None)
        return Result(response["statusCode"], response.get("headers") or {}, text,
                      list(response.get("cookies") or []))

    def browser_cookies(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.browser.items())

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        result = self.call(method, path, **kwargs)
        assert result.status == 200, (method, path, result.status, result.text)
        return result.json


class LogRecords:
    """Every log record any logger handles (powertools' included), before any formatting or redaction."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []

    def text(self) -> str:
        return "\n".join(f"{record.getMessage()} {record.__dict__!r}" for record in self.records)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [record.getMessage() for record in self.records if record.levelno >= level]


@pytest.fixture
def log_records(monkeypatch: pytest.MonkeyPatch) -> LogRecords:
    captured = LogRecords()
    original = logging.Logger.handle

    def handle(self: logging.Logger, record: logging.LogRecord) -> None:
        captured.records.append(record)
        original(self, record)

    monkeypatch.setattr(logging.Logger, "handle", handle)
    return captured


@pytest.fixture
def google_server() -> Iterator[GoogleOAuthServer]:
    server = GoogleOAuthServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris={REDIRECT_URI}).start()
    try:
        yield server
    finally:
        server.stop()


def _reset_google_state() -> None:
    google.reset_clients()
    resilience._breakers.pop("google-oauth", None)
    get_auth_settings.cache_clear()
    get_settings.cache_clear()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, google_server: GoogleOAuthServer, log_records: LogRecords,
        tables: dict[str, str], http_event: Callable[..., dict[str, Any]],
        make_user: Callable[..., User]) -> Iterator[Env]:
    monkeypatch.setenv("GOOGLE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("GOOGLE_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.delenv("GOOGLE_CLIENT_SECRET_SECRET_ID", raising=False)
    monkeypatch.setenv("GOOGLE_AUTHORIZE_URL", google_server.authorize_url)
    monkeypatch.setenv("GOOGLE_TOKEN_URL", google_server.token_url)
    monkeypatch.setenv("GOOGLE_REVOKE_URL", google_server.revoke_url)
    monkeypatch.setenv("PUBLIC_BASE_URL", PUBLIC_BASE_URL)
    monkeypatch.setenv("OAUTH_INSECURE_TRANSPORT", "true")  # the stand-in speaks http on loopback
    _reset_google_state()
    key_id = boto3.client("kms").create_key(Description="credentials")["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("CREDENTIALS_KMS_KEY_ID", key_id)
    make_user(ADMIN_ID, ADMIN_EMAIL, is_admin=True)
    make_user(OTHER_ADMIN_ID, OTHER_ADMIN_EMAIL, is_admin=True)
    make_user(MEMBER_ID, MEMBER_EMAIL)
    scopes = ["admin:read", "admin:write"]
    tokens = {"admin": create_token(ADMIN_ID, name="admin cli", scopes=scopes)[0],
              "other_admin": create_token(OTHER_ADMIN_ID, name="admin cli", scopes=scopes)[0],
              "member": create_token(MEMBER_ID, name="member cli", scopes=scopes)[0]}
    yield Env(google=google_server, app=build_app(), tokens=tokens, key_id=key_id, tables=tables,
              http_event=http_event)
    _reset_google_state()


def build_app(*, like_handler: bool = True) -> Any:
    """As functions/tasks_api/handler.py builds it (the credential part); or with nothing but the
    credential routes."""
    app = create_app("tasks_api", title="InsightMesh tasks API", openapi_path="/api/tasks/openapi.json",
                     json_only=True)
    if like_handler:
        configure_openapi(app, description="Scheduled jobs, their task runs, and provider credentials.", tags=[])
        authenticate_before_validation(app)
    register_credential_routes(app)
    return app


def set_admin(user_id: str, is_admin: bool) -> None:
    user = User.get(user_id)
    user.update(actions=[User.is_admin.set(is_admin)])


def raw_items(env: Env, variable: str) -> list[dict[str, Any]]:
    """Every item of a table (a test may scan; the code under test never does)."""
    return boto3.client("dynamodb").scan(TableName=env.tables[variable], ConsistentRead=True)["Items"]


def audit_entries(target: str) -> list[Any]:
    return list(AuditEntry.query(target, scan_index_forward=False, consistent_read=True))


def session_cookie(user_id: str) -> str:
    set_cookie, _ = issue_session(User.get(user_id))
    return set_cookie.split(";", 1)[0]


# -- the browser ---------------------------------------------------------------------------------


def authorize(env: Env, name: str = "Drive sync", scopes: tuple[str, ...] = ("drive.readonly",),
              as_: str = "admin") -> dict[str, Any]:
    return env.ok("POST", AUTHORIZE, as_=as_, body={"name": name, "scopes": list(scopes)})


def consent(url: str) -> dict[str, str]:
    """Follow the authorization URL to the stand-in: the query it sends to the redirect URI."""
    answer = httpx.get(url, follow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return dict(parse_qsl(urlsplit(location).query))


def callback(env: Env, query: dict[str, str], *, cookie: str | None = None, same_browser: bool = True) -> Result:
    """Google's redirect, in the browser that started the flow (its cookies, plus ``cookie``), or
    with ``same_browser=False`` in another one (only ``cookie``)."""
    cookies = "; ".join(part for part in (env.browser_cookies() if same_browser else "", cookie or "") if part)
    return env.call("GET", CALLBACK, as_=None, query=query, headers={"cookie": cookies} if cookies else None)


def binding(started: Any) -> str:
    """The im_connect cookie (``name=value``) of a flow started through the service functions."""
    return str(started.binding_cookie).split(";", 1)[0]


def connect(env: Env, name: str = "Drive sync", scopes: tuple[str, ...] = ("drive.readonly",)) -> dict[str, Any]:
    """The whole flow through the routes; the credential as listed."""
    started = authorize(env, name, scopes)
    page = callback(env, consent(started["authorization_url"]))
    assert page.status == 200, page.text
    listed = [item for item in env.ok("GET", "/api/credentials")["items"] if item["name"] == name.strip()]
    assert listed
    return listed[0]


def issued_tokens(env: Env) -> list[str]:
    return list(env.google.tokens())


def assert_no_token_leaked(env: Env, log_records: LogRecords, capfd: pytest.CaptureFixture[str]) -> None:
    secrets_ = [*issued_tokens(env), CLIENT_SECRET]
    assert len(secrets_) > 1
    output = capfd.readouterr()
    logged = log_records.text() + output.out + output.err
    for secret in secrets_:
        for body in env.bodies:
            assert secret not in body
        assert secret not in logged
    for item in raw_items(env, "CREDENTIALS_TABLE") + raw_items(env, "AUDIT_TABLE"):
        for secret in secrets_:
            assert secret not in repr(item)


# -- the connect flow ----------------------------------------------------------------------------


def test_connect_flow_through_the_routes(env: Env, log_records: LogRecords, capfd: pytest.CaptureFixture[str]) -> None:
    before = datetime.now(UTC)
    started = authorize(env, "Drive sync", ("drive.readonly", USERS))

    url = urlsplit(started["authorization_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == env.google.authorize_url
    params = dict(parse_qsl(url.query))
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == REDIRECT_URI
    assert params["response_type"] == "code"
    assert params["scope"].split() == [USERS, DRIVE]
    assert (params["access_type"], params["prompt"], params["include_granted_scopes"]) == ("offline", "consent", "true")
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 43
    expires = datetime.fromisoformat(started["state_expires_at"])
    assert before + timedelta(minutes=9) < expires <= datetime.now(UTC) + timedelta(minutes=10)

    page = callback(env, consent(started["authorization_url"]))

    assert page.status == 200, page.text
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "Drive sync" in page.text and "drive.readonly" in page.text
    assert "<script" not in page.text

    listing = env.ok("GET", "/api/credentials")
    assert listing["next_cursor"] is None
    [item] = listing["items"]
    assert item["name"] == "Drive sync"
    assert item["provider"] == "google"
    assert item["scopes"] == [USERS, DRIVE]
    assert (item["status"], item["status_reason"], item["refreshable"]) == ("active", None, True)
    assert item["last_used_at"] is None and item["created_by"] == ADMIN_ID
    assert env.ok("GET", f"/api/credentials/{item['id']}") == item
    assert set(item) == {"id", "name", "provider", "scopes", "status", "status_reason", "created_by", "created_at",
                         "last_used_at", "last_refreshed_at", "access_expires_at", "refreshable"}

    authorized, created = audit_entries(f"credential:{item['id']}")[::-1]
    assert (authorized.action, authorized.actor, authorized.outcome) == ("credential.authorize", ADMIN_EMAIL, "allowed")
    assert (created.action, created.actor_id, created.outcome) == ("credential.create", ADMIN_ID, "allowed")
    assert created.after["name"] == "Drive sync"
    assert_no_token_leaked(env, log_records, capfd)


def test_connect_flow_through_the_service_functions(env: Env, log_records: LogRecords,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    started = service.start_google_authorization(ADMIN_ID, "  Directory  ", ["admin.directory.user.readonly",
                                                                            GROUPS, "admin.directory.group.readonly"])
    query = consent(started.authorization_url)
    connected = service.complete_google_authorization(query["state"], query["code"], None,
                                                      session_user_id=ADMIN_ID, cookie_header=binding(started))

    assert connected.id == started.credential_id
    assert (connected.name, connected.scopes, connected.status) == ("Directory", [GROUPS, USERS], "active")
    assert "token" not in connected.model_dump_json().replace("refresh", "")  # no token-ish field but the flag
    token = service.google_access_token(connected.id, required_scopes=["admin.directory.user.readonly"])
    assert env.google.is_valid_access_token(token, USERS)
    assert not env.google.is_valid_access_token(token, DRIVE)
    assert service.get_credential_summary(connected.id).last_used_at is not None
    assert token not in repr(service.get_credential_summary(connected.id))
    assert_no_token_leaked(env, log_records, capfd)


def test_the_stored_item_holds_only_ciphertext(env: Env) -> None:
    credential = connect(env)
    [item] = raw_items(env, "CREDENTIALS_TABLE")
    for token in issued_tokens(env):
        assert token not in repr(item)
    assert {"key_id", "encrypted_data_key", "nonce", "ciphertext", "version"} <= set(item)
    assert item["kind"] == {"S": "credential"}
    assert item["created_sort"]["S"].endswith("#" + credential["id"])
    assert item["key_id"]["S"].endswith(env.key_id)
    assert len(item["nonce"]["B"]) == 12
    assert not {"plaintext", "data_key", "access_token", "refresh_token"} & set(item)

    # The data key only opens under the credential's own encryption context.
    from botocore.exceptions import ClientError

    kms = boto3.client("kms")
    with pytest.raises(ClientError):
        kms.decrypt(CiphertextBlob=item["encrypted_data_key"]["B"],
                    EncryptionContext={"credential_id": "another", "purpose": "insightmesh-credential"})
    opened = kms.decrypt(CiphertextBlob=item["encrypted_data_key"]["B"],
                         EncryptionContext={"credential_id": credential["id"], "purpose": "insightmesh-credential"})
    assert len(opened["Plaintext"]) == 32


def test_sealed_tokens_cannot_be_moved_to_another_credential(env: Env) -> None:
    sealed = seal("cred-a", {"access_token": "secret-value"})
    assert unseal("cred-a", sealed) == {"access_token": "secret-value"}
    assert "secret-value" not in repr(sealed)
    with pytest.raises(SealBrokenError):
        unseal("cred-b", sealed)
    tampered = type(sealed)(sealed.key_id, sealed.encrypted_data_key, sealed.nonce,
                            sealed.ciphertext[:-1] + bytes([sealed.ciphertext[-1] ^ 1]))
    with pytest.raises(SealBrokenError):
        unseal("cred-a", tampered)


def test_a_forged_state_is_refused_and_nothing_is_stored(env: Env) -> None:
    started = authorize(env)
    real = consent(started["authorization_url"])

    page = callback(env, {"state": "forged-" + real["state"][7:], "code": real["code"]})

    assert page.status == 400
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "Nothing was stored" in page.text
    assert raw_items(env, "CREDENTIALS_TABLE") == []
    assert len(raw_items(env, "CREDENTIAL_STATES_TABLE")) == 1  # the real flow is still open
    assert env.google.token_requests == []
    assert callback(env, {"code": real["code"]}).status == 400  # no state at all
    assert callback(env, real).status == 200  # the real one still completes


def test_a_replayed_state_is_refused(env: Env) -> None:
    query = consent(authorize(env)["authorization_url"])
    kept = env.browser_cookies()  # a replay with the browser's cookie too
    assert callback(env, query).status == 200

    replay = callback(env, query, cookie=kept, same_browser=False)

    assert replay.status == 400
    assert "already completed" in replay.text
    assert len(raw_items(env, "CREDENTIALS_TABLE")) == 1
    assert raw_items(env, "CREDENTIAL_STATES_TABLE") == []


def test_concurrent_callbacks_store_one_credential(env: Env) -> None:
    query = consent(authorize(env)["authorization_url"])
    cookies = env.browser_cookies()
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def complete() -> None:
        barrier.wait()
        try:
            service.complete_google_authorization(query["state"], query["code"], None, session_user_id=None,
                                                  cookie_header=cookies)
            statuses.append(200)
        except AuthorizationStateError:
            statuses.append(400)

    threads = [threading.Thread(target=complete) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(statuses) == [200, 400]
    assert len(raw_items(env, "CREDENTIALS_TABLE")) == 1


def test_an_expired_state_is_refused_even_before_ttl_deletes_it(env: Env) -> None:
    query = consent(authorize(env)["authorization_url"])
    client = boto3.client("dynamodb")
    [state] = raw_items(env, "CREDENTIAL_STATES_TABLE")
    past = int((datetime.now(UTC) - timedelta(seconds=1)).timestamp())
    client.update_item(TableName=env.tables["CREDENTIAL_STATES_TABLE"], Key={"state": state["state"]},
                       UpdateExpression="SET expires_at = :t", ExpressionAttributeValues={":t": {"N": str(past)}})

    page = callback(env, query)

    assert page.status == 400 and "expired" in page.text
    assert raw_items(env, "CREDENTIALS_TABLE") == []
    assert env.google.token_requests == []  # the code was never exchanged


def test_a_state_whose_admin_is_no_longer_admin_is_refused(env: Env) -> None:
    query = consent(authorize(env)["authorization_url"])
    set_admin(ADMIN_ID, False)

    page = callback(env, query)

    assert page.status == 400 and "no longer an active admin" in page.text
    assert raw_items(env, "CREDENTIALS_TABLE") == []


def test_a_non_admin_cannot_start_a_flow(env: Env) -> None:
    with pytest.raises(ForbiddenError):
        service.start_google_authorization(MEMBER_ID, "mine", ["drive.readonly"])
    assert raw_items(env, "CREDENTIAL_STATES_TABLE") == []


def test_a_callback_in_the_browser_of_another_user_is_refused(env: Env) -> None:
    query = consent(authorize(env)["authorization_url"])

    page = callback(env, query, cookie=session_cookie(OTHER_ADMIN_ID))

    assert page.status == 400 and "another user" in page.text
    assert raw_items(env, "CREDENTIALS_TABLE") == []
    assert callback(env, query, cookie=session_cookie(ADMIN_ID)).status == 400  # the state was spent


def test_the_connect_cookie_is_short_lived_http_only_and_scoped_to_the_callback(env: Env) -> None:
    answer = env.call("POST", AUTHORIZE, body={"name": "Drive sync", "scopes": ["drive.readonly"]})
    assert answer.status == 200
    [set_cookie] = [cookie for cookie in answer.cookies if cookie.startswith("im_connect=")]
    attributes = {part.strip() for part in set_cookie.split(";")[1:]}
    assert {"HttpOnly", "SameSite=Lax", f"Path={CALLBACK}", "Max-Age=600"} <= attributes


def test_a_callback_in_another_browser_is_refused_before_the_state_is_touched(env: Env) -> None:
    """A consent link (or a code) lured into a browser that did not start the flow — even the
    browser of a signed-in admin — connects nothing."""
    query = consent(authorize(env)["authorization_url"])

    page = callback(env, query, same_browser=False)
    assert page.status == 400 and "not started in this browser" in page.text
    with_session = callback(env, query, cookie=session_cookie(ADMIN_ID), same_browser=False)
    assert with_session.status == 400

    assert raw_items(env, "CREDENTIALS_TABLE") == []
    assert len(raw_items(env, "CREDENTIAL_STATES_TABLE")) == 1  # untouched: the real browser may still finish
    assert env.google.token_requests == []
    assert callback(env, query).status == 200
    assert "im_connect" not in env.browser  # the callback clears it


def test_the_connect_cookie_of_another_flow_does_not_bind(env: Env) -> None:
    first = consent(authorize(env, "First")["authorization_url"])
    authorize(env, "Second")  # the browser's cookie now names the second flow
    page = callback(env, first)
    assert page.status == 400 and "not started in this browser" in page.text
    assert raw_items(env, "CREDENTIALS_TABLE") == []


def test_a_callback_in_the_browser_of_the_same_admin_is_accepted(env: Env) -> None:
    query = consent(authorize(env)["authorization_url"])
    assert callback(env, query, cookie=session_cookie(ADMIN_ID)).status == 200
    assert len(raw_items(env, "CREDENTIALS_TABLE")) == 1


def test_denied_consent_stores_nothing(env: Env) -> None:
    env.google.deny = True
    query = consent(authorize(env)["authorization_url"])
    assert query["error"] == "access_denied" and "code" not in query

    page = callback(env, query)

    assert page.status == 400 and "access_denied" in page.text
    assert raw_items(env, "CREDENTIALS_TABLE") == []
    assert raw_items(env, "CREDENTIAL_STATES_TABLE") == []  # spent


def test_a_refused_code_stores_nothing(env: Env) -> None:
    query = consent(authorize(env)["authorization_url"])
    page = callback(env, {**query, "code": "4/not-a-code"})
    assert page.status == 400 and "refused the authorization code" in page.text
    assert raw_items(env, "CREDENTIALS_TABLE") == []


def test_partial_consent_stores_the_granted_scopes(env: Env) -> None:
    env.google.granted_scopes = {DRIVE}
    credential = connect(env, "Partial", ("drive.readonly", USERS))
    assert credential["scopes"] == [DRIVE]


def test_the_name_is_escaped_on_the_page(env: Env) -> None:
    name = "<script>alert(1)</script> & \"quotes\" 'too'"
    started = authorize(env, name)
    page = callback(env, consent(started["authorization_url"]))

    assert page.status == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot; &#x27;too&#x27;" in page.text
    assert env.ok("GET", "/api/credentials")["items"][0]["name"] == name  # JSON keeps it as text


@pytest.mark.parametrize("name", ["", "   ", "x" * 81, "two\nlines", "tab\there", "nul\x00", "bell\x07",
                                  "sep\u2028arator", 42, None])
def test_an_invalid_name_is_422(env: Env, name: Any) -> None:
    result = env.call("POST", AUTHORIZE, body={"name": name, "scopes": ["drive.readonly"]})
    assert result.status == 422, result.text
    assert result.json["error"]["code"] == "validation_error"
    assert raw_items(env, "CREDENTIAL_STATES_TABLE") == []


@pytest.mark.parametrize("name", ["x" * 80, "<b>&'\"", "Ünïcødé 日本", "  padded  "])
def test_a_valid_name_is_accepted(env: Env, name: str) -> None:
    authorize(env, name)
    [state] = raw_items(env, "CREDENTIAL_STATES_TABLE")
    assert state["name"]["S"] == name.strip()


@pytest.mark.parametrize("scopes", [[], ["https://www.googleapis.com/auth/drive"], ["gmail.readonly"],
                                    ["https://www.googleapis.com/auth/drive.readonly.evil"], "drive.readonly",
                                    ["openid"], [DRIVE] * 9, [""]])
def test_an_invalid_scope_is_422(env: Env, scopes: Any) -> None:
    result = env.call("POST", AUTHORIZE, body={"name": "ok", "scopes": scopes})
    assert result.status == 422, result.text
    assert raw_items(env, "CREDENTIAL_STATES_TABLE") == []


def test_unknown_fields_are_422(env: Env) -> None:
    result = env.call("POST", AUTHORIZE, body={"name": "ok", "scopes": [DRIVE], "refresh_token": "x"})
    assert result.status == 422


def test_scope_aliases_and_urls_are_accepted_and_deduplicated(env: Env) -> None:
    started = authorize(env, "all", ("drive.readonly", DRIVE, USERS, "admin.directory.group.readonly",
                                     "admin.directory.group.member.readonly"))
    scope = dict(parse_qsl(urlsplit(started["authorization_url"]).query))["scope"]
    assert scope.split() == sorted({DRIVE, USERS, GROUPS, MEMBERS})


def test_google_not_configured_is_503_with_a_clear_message(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLIENT_SECRET", "not-configured")
    result = env.call("POST", AUTHORIZE, body={"name": "ok", "scopes": [DRIVE]})
    assert result.status == 503
    assert result.json["error"]["code"] == "google_oauth_not_configured"
    assert "GOOGLE_CLIENT_SECRET" in result.json["error"]["message"]

    monkeypatch.delenv("GOOGLE_CLIENT_SECRET")
    monkeypatch.delenv("GOOGLE_CLIENT_ID")
    message = env.call("POST", AUTHORIZE, body={"name": "ok", "scopes": [DRIVE]}).json["error"]["message"]
    assert "GOOGLE_CLIENT_ID" in message and "GOOGLE_CLIENT_SECRET" in message


def test_http_endpoints_are_refused_without_insecure_transport(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTH_INSECURE_TRANSPORT", "false")
    get_settings.cache_clear()
    result = env.call("POST", AUTHORIZE, body={"name": "ok", "scopes": [DRIVE]})
    assert result.status == 503 and "https" in result.json["error"]["message"]


# -- listing ---------------------------------------------------------------------------------------


def test_the_list_is_newest_first_and_paginated(env: Env) -> None:
    for name in ("first", "second", "third"):
        connect(env, name)

    page = env.ok("GET", "/api/credentials", query={"limit": "2"})
    assert [item["name"] for item in page["items"]] == ["third", "second"]
    rest = env.ok("GET", "/api/credentials", query={"limit": "2", "cursor": page["next_cursor"]})
    assert [item["name"] for item in rest["items"]] == ["first"] and rest["next_cursor"] is None

    assert env.call("GET", "/api/credentials", query={"limit": "101"}).status == 422
    assert env.call("GET", "/api/credentials", query={"cursor": page["next_cursor"][:-2] + "xx"}).status == 422
    assert env.ok("GET", "/api/credentials", query={"limit": "100"})["next_cursor"] is None


def test_an_unknown_credential_is_404(env: Env) -> None:
    assert env.call("GET", "/api/credentials/0b7c4a6e-9d47-4cc1-a5a3-0c1f5d6b0000").status == 404
    assert env.call("DELETE", "/api/credentials/0b7c4a6e-9d47-4cc1-a5a3-0c1f5d6b0000").status == 404
    assert env.call("GET", "/api/credentials/bad%20id").status in (404, 422)


def test_status_without_a_refresh_token(env: Env) -> None:
    env.google.issue_refresh_tokens = False
    env.google.access_token_lifetime = 1800
    credential = connect(env, "offline-less")
    assert (credential["status"], credential["status_reason"], credential["refreshable"]) == \
        ("expiring", "no_refresh_token", False)
    assert service.google_access_token(credential["id"])  # still valid for half an hour

    boto3.client("dynamodb").update_item(
        TableName=env.tables["CREDENTIALS_TABLE"], Key={"credential_id": {"S": credential["id"]}},
        UpdateExpression="SET token_expires_at = :t",
        ExpressionAttributeValues={":t": {"S": "2020-01-01T00:00:00.000000+0000"}})
    assert env.ok("GET", f"/api/credentials/{credential['id']}")["status"] == "expired"
    with pytest.raises(CredentialExpiredError):
        service.google_access_token(credential["id"])


# -- access tokens for jobs: refresh -----------------------------------------------------------------


def test_a_token_near_expiry_is_refreshed_and_stored_again(env: Env, log_records: LogRecords,
                                                           capfd: pytest.CaptureFixture[str]) -> None:
    env.google.access_token_lifetime = 120  # under the five minutes margin
    credential = connect(env)
    [first] = [t for t, info in env.google.tokens().items() if info.kind == "access"]
    [before] = raw_items(env, "CREDENTIALS_TABLE")
    env.google.access_token_lifetime = 3600

    token = service.google_access_token(credential["id"], required_scopes=[DRIVE])

    assert token != first and env.google.is_valid_access_token(token, DRIVE)
    [after] = raw_items(env, "CREDENTIALS_TABLE")
    assert after["version"] == {"N": "2"}
    assert after["ciphertext"] != before["ciphertext"] and after["encrypted_data_key"] != before["encrypted_data_key"]
    summary = service.get_credential_summary(credential["id"])
    assert summary.last_refreshed_at is not None and summary.last_used_at is not None
    assert summary.access_expires_at is not None
    assert summary.access_expires_at > datetime.now(UTC) + timedelta(minutes=55)

    requests = len(env.google.token_requests)
    assert service.google_access_token(credential["id"]) == token  # fresh: no new refresh
    assert len(env.google.token_requests) == requests
    assert [r["form"]["grant_type"] for r in env.google.token_requests] == ["authorization_code", "refresh_token"]
    assert all(r["basic_auth"] for r in env.google.token_requests)
    assert_no_token_leaked(env, log_records, capfd)


def test_concurrent_refreshers_do_not_clobber_each_other(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.google.access_token_lifetime = 120
    credential = connect(env)
    env.google.access_token_lifetime = 3600
    original = service._store_refreshed
    inner: list[str] = []

    def store_after_another_refresher(*args: Any, **kwargs: Any) -> bool:
        if not inner:
            inner.append("running")
            inner.append(service.google_access_token(credential["id"]))  # another process refreshes and stores
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "_store_refreshed", store_after_another_refresher)
    token = service.google_access_token(credential["id"])

    assert token == inner[1]  # the loser of the race used what the winner stored
    assert [r["form"]["grant_type"] for r in env.google.token_requests].count("refresh_token") == 2
    [item] = raw_items(env, "CREDENTIALS_TABLE")
    assert item["version"] == {"N": "2"}

    stored = unseal(credential["id"], Sealed(item["key_id"]["S"], item["encrypted_data_key"]["B"], item["nonce"]["B"],
                                             item["ciphertext"]["B"]))
    assert stored["access_token"] == token


def test_a_refused_refresh_marks_the_credential_expired(env: Env) -> None:
    env.google.access_token_lifetime = 120
    credential = connect(env)
    [refresh_token] = [t for t, info in env.google.tokens().items() if info.kind == "refresh"]
    assert env.google.revoke_grant(refresh_token)

    with pytest.raises(CredentialExpiredError) as raised:
        service.google_access_token(credential["id"])
    assert isinstance(raised.value, CredentialError)
    shown = env.ok("GET", f"/api/credentials/{credential['id']}")
    assert (shown["status"], shown["status_reason"]) == ("expired", "refresh_refused")
    requests = len(env.google.token_requests)
    with pytest.raises(CredentialExpiredError):
        service.google_access_token(credential["id"])
    assert len(env.google.token_requests) == requests  # not asked again


def test_a_transient_google_failure_is_retried(env: Env) -> None:
    env.google.access_token_lifetime = 120
    credential = connect(env)
    env.google.fail_token_requests = 1
    assert env.google.is_valid_access_token(service.google_access_token(credential["id"]))


def test_google_down_is_unavailable_not_expired(env: Env) -> None:
    env.google.access_token_lifetime = 120
    credential = connect(env)
    env.google.fail_token_requests = 10
    with pytest.raises(CredentialUnavailableError):
        service.google_access_token(credential["id"])
    assert env.ok("GET", f"/api/credentials/{credential['id']}")["status"] == "active"


def test_missing_scope_and_missing_credential(env: Env) -> None:
    credential = connect(env)
    with pytest.raises(CredentialScopeError, match=r"admin\.directory\.user\.readonly"):
        service.google_access_token(credential["id"], required_scopes=["admin.directory.user.readonly"])
    with pytest.raises(CredentialNotFoundError):
        service.google_access_token("0b7c4a6e-9d47-4cc1-a5a3-0c1f5d6b0000")
    with pytest.raises(CredentialError):
        service.google_access_token(credential["id"], required_scopes=["gmail.readonly"])


# -- delete ------------------------------------------------------------------------------------------


def test_delete_revokes_at_google(env: Env, log_records: LogRecords, capfd: pytest.CaptureFixture[str]) -> None:
    credential = connect(env)
    [refresh_token] = [t for t, info in env.google.tokens().items() if info.kind == "refresh"]
    [access_token] = [t for t, info in env.google.tokens().items() if info.kind == "access"]

    deleted = env.ok("DELETE", f"/api/credentials/{credential['id']}")

    assert deleted["revoked"] is True and deleted["id"] == credential["id"] and deleted["name"] == "Drive sync"
    assert [(r.token, r.kind) for r in env.google.revocations] == [(refresh_token, "refresh")]
    assert not env.google.is_valid_access_token(access_token)
    assert raw_items(env, "CREDENTIALS_TABLE") == []
    assert env.call("GET", f"/api/credentials/{credential['id']}").status == 404
    entry = audit_entries(f"credential:{credential['id']}")[0]
    assert (entry.action, entry.actor, entry.after) == ("credential.delete", ADMIN_EMAIL, {"revoked": True})
    assert entry.before["name"] == "Drive sync"
    assert_no_token_leaked(env, log_records, capfd)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_delete_when_google_is_unreachable_still_deletes(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                         log_records: LogRecords) -> None:
    credential = connect(env)
    monkeypatch.setenv("GOOGLE_REVOKE_URL", f"http://127.0.0.1:{_closed_port()}/revoke")

    deleted = env.ok("DELETE", f"/api/credentials/{credential['id']}")

    assert deleted["revoked"] is False
    assert raw_items(env, "CREDENTIALS_TABLE") == []
    assert env.google.revocations == []
    assert any("not revoked" in message for message in log_records.messages(logging.WARNING))
    assert audit_entries(f"credential:{credential['id']}")[0].after == {"revoked": False}


def test_delete_of_an_already_revoked_grant_reports_revoked(env: Env) -> None:
    credential = connect(env)
    [refresh_token] = [t for t, info in env.google.tokens().items() if info.kind == "refresh"]
    env.google.revoke_grant(refresh_token)
    assert env.ok("DELETE", f"/api/credentials/{credential['id']}")["revoked"] is True


# -- who may call ------------------------------------------------------------------------------------

ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/credentials", None),
    ("GET", "/api/credentials/0b7c4a6e-9d47-4cc1-a5a3-0c1f5d6b0000", None),
    ("DELETE", "/api/credentials/0b7c4a6e-9d47-4cc1-a5a3-0c1f5d6b0000", None),
    ("POST", AUTHORIZE, {"name": "mine", "scopes": [DRIVE]}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_anonymous_is_401(env: Env, method: str, path: str, body: Any) -> None:
    result = env.call(method, path, as_=None, body=body)
    assert result.status == 401 and result.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("body", [{"name": "", "scopes": [DRIVE]}, {"name": "ok", "scopes": ["evil"]}, {}])
def test_anonymous_with_an_invalid_body_is_401_not_422(env: Env, body: Any) -> None:
    assert env.call("POST", AUTHORIZE, as_=None, body=body).status == 401
    assert env.call("GET", "/api/credentials", as_=None, query={"limit": "1000"}).status == 401


@pytest.mark.parametrize("like_handler", [True, False])
def test_an_invalid_request_is_authenticated_once(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                  like_handler: bool) -> None:
    env.app = build_app(like_handler=like_handler)
    calls: list[str] = []
    original = validation.authenticate

    def counting(app: Any) -> Any:
        calls.append(app.current_event.path)
        return original(app)

    monkeypatch.setattr(validation, "authenticate", counting)
    assert env.call("POST", AUTHORIZE, as_=None, body={"name": "", "scopes": [DRIVE]}).status == 401
    assert env.call("POST", AUTHORIZE, body={"name": "", "scopes": [DRIVE]}).status == 422
    assert env.call("GET", "/api/credentials", query={"limit": "0"}).status == 422
    assert calls == [AUTHORIZE, AUTHORIZE, "/api/credentials"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_a_member_is_403_and_audited(env: Env, method: str, path: str, body: Any) -> None:
    result = env.call(method, path, as_="member", body=body)

    assert result.status == 403 and result.json["error"]["code"] == "forbidden"
    denied = [entry for entry in AuditEntry.by_day.query(datetime.now(UTC).strftime("%Y-%m-%d"))
              if entry.outcome == "denied"]
    assert len(denied) == 1
    assert (denied[0].actor_id, denied[0].reason) == (MEMBER_ID, "requires an admin")
    assert denied[0].action.startswith("credential.")
    assert raw_items(env, "CREDENTIAL_STATES_TABLE") == []


def test_a_member_cannot_delete_a_credential(env: Env) -> None:
    credential = connect(env)
    assert env.call("DELETE", f"/api/credentials/{credential['id']}", as_="member").status == 403
    assert len(raw_items(env, "CREDENTIALS_TABLE")) == 1 and env.google.revocations == []


def test_the_openapi_document_lists_the_routes(env: Env) -> None:
    doc = env.ok("GET", "/api/tasks/openapi.json", as_=None)
    paths = doc["paths"]
    assert {"/api/credentials", "/api/credentials/{credential_id}", AUTHORIZE, CALLBACK} <= set(paths)
    assert "text/html; charset=utf-8" in paths[CALLBACK]["get"]["responses"]["200"]["content"]
    assert "credentials" in {tag["name"] for tag in doc["tags"]}
    schema = json.dumps(doc["components"]["schemas"])
    assert "access_token" not in schema and "ciphertext" not in schema
