"""Signed session cookies naming a revocable session record — insightmesh.auth.sessions, with
the auth tables in moto."""

from __future__ import annotations

import base64
import json
import time

import pytest

from insightmesh.auth import sessions
from insightmesh.directory.models import User
from tests.integration.conftest import items

PRODUCTION_KEY = "a-production-secret-key-that-is-long-enough-0123456789"
pytestmark = pytest.mark.usefixtures("auth_env")


def user(user_id: str = "u-1", email: str | None = "alice@example.com") -> User:
    return User(user_id, email=email, display_name="Alice")


def cookie_header(set_cookie: str) -> str:
    """What the browser sends back: ``name=value`` from the Set-Cookie value."""
    return set_cookie.split(";", 1)[0]


def attributes(set_cookie: str) -> list[str]:
    return [part.strip() for part in set_cookie.split(";")[1:]]


def test_issue_then_read_round_trips() -> None:
    set_cookie, csrf = sessions.issue_session(user())
    claims = sessions.read_session(cookie_header(set_cookie))
    assert claims is not None
    assert (claims.user_id, claims.email, claims.csrf) == ("u-1", "alice@example.com", csrf)
    assert claims.exp - claims.iat == 8 * 3600
    assert abs(claims.iat - time.time()) < 5
    assert len(csrf) >= 32


def test_cookie_flags_in_development() -> None:
    set_cookie, _ = sessions.issue_session(user())
    assert set_cookie.startswith("im_session=")
    flags = attributes(set_cookie)
    assert "HttpOnly" in flags
    assert "SameSite=Lax" in flags
    assert "Path=/" in flags
    assert "Max-Age=28800" in flags
    assert "Secure" not in flags  # plain http on a laptop


def test_cookie_is_secure_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", PRODUCTION_KEY)
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://admin.example.com")
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    set_cookie, _ = sessions.issue_session(user())
    assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} <= set(attributes(set_cookie))
    assert "Secure" in attributes(sessions.clear_session_cookie())


def test_each_session_has_its_own_csrf_token() -> None:
    _, first = sessions.issue_session(user())
    _, second = sessions.issue_session(user())
    assert first != second


def test_the_cookie_is_found_among_others() -> None:
    set_cookie, _ = sessions.issue_session(user())
    header = f"theme=dark; {cookie_header(set_cookie)}; other=1"
    assert sessions.read_session(header) is not None


@pytest.mark.parametrize("header", [None, "", "theme=dark", "im_session=", "im_session=garbage",
                                    "im_session=a.b.c", "im_session=" + "x" * 5000])
def test_absent_or_garbage_cookies_read_as_none(header: str | None) -> None:
    assert sessions.read_session(header) is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_tampered_payload_reads_as_none() -> None:
    set_cookie, _ = sessions.issue_session(user())
    value = cookie_header(set_cookie).split("=", 1)[1]
    header, payload, signature = value.split(".")
    claims = json.loads(_unb64(payload))
    claims["user_id"] = "u-admin"
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    assert sessions.read_session(f"im_session={forged}") is None


def test_an_unsigned_token_reads_as_none() -> None:
    now = int(time.time())
    claims = {"user_id": "u-admin", "email": None, "csrf": "x", "iat": now, "exp": now + 60,
              "pur": sessions.SESSION_PURPOSE}
    header = _b64(json.dumps({"alg": "none"}).encode())
    unsigned = f"{header}.{_b64(json.dumps(claims).encode())}."
    assert sessions.read_session(f"im_session={unsigned}") is None


def test_a_cookie_signed_with_another_key_reads_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "another-key-entirely-another-key-entirely")
    set_cookie, _ = sessions.issue_session(user())
    monkeypatch.delenv("SECRET_KEY")
    assert sessions.read_session(cookie_header(set_cookie)) is None


def test_a_value_signed_for_another_purpose_is_not_a_session() -> None:
    now = int(time.time())
    other = sessions.sign({"user_id": "u-1", "email": None, "csrf": "x", "iat": now, "exp": now + 60},
                          purpose="insightmesh/login/v1")
    assert sessions.read_session(f"im_session={other}") is None


def test_an_expired_session_reads_as_none() -> None:
    issued = time.time() - 8 * 3600 - 1
    set_cookie, _ = sessions.issue_session(user(), now=issued)
    assert sessions.read_session(cookie_header(set_cookie)) is None
    assert sessions.read_session(cookie_header(set_cookie), now=issued + 10) is not None


def test_clear_session_cookie_expires_it() -> None:
    cleared = sessions.clear_session_cookie()
    assert cleared.startswith("im_session=;")
    assert "Max-Age=0" in attributes(cleared)
    assert "Path=/" in attributes(cleared)


def test_raw_cookie_keeps_the_exact_set_cookie_value() -> None:
    set_cookie, _ = sessions.issue_session(user())
    raw = sessions.RawCookie(set_cookie)
    assert str(raw) == set_cookie
    assert raw.name == "im_session"


# -- server-side revocation -----------------------------------------------------------------------


def test_a_session_is_stored_with_its_expiry() -> None:
    issued = time.time()
    set_cookie, _ = sessions.issue_session(user(), now=issued)
    claims = sessions.read_session(cookie_header(set_cookie))
    assert claims is not None and claims.sid
    [record] = items("AUTH_STATES_TABLE")
    assert record["state"] == {"S": f"session#{claims.sid}"}
    assert record["user_id"] == {"S": "u-1"}
    assert int(record["expires_at"]["N"]) == int(issued) + sessions.SESSION_MAX_AGE  # the table's TTL


def test_logout_revokes_the_session_and_every_copy_of_its_cookie() -> None:
    set_cookie, _ = sessions.issue_session(user())
    copy = cookie_header(set_cookie)  # what someone who copied the cookie would send
    other, _ = sessions.issue_session(user())  # the same user's session in another browser
    assert sessions.read_session(copy) is not None

    assert sessions.revoke_session(copy) is True

    assert sessions.read_session(copy) is None
    assert sessions.read_session(cookie_header(other)) is not None  # only that session ended
    assert sessions.revoke_session(copy) is True  # idempotent
    assert sessions.revoke_session("im_session=garbage") is False


def test_a_signed_cookie_without_a_session_record_is_refused() -> None:
    """A cookie signed before sessions were recorded (no sid), or naming an unknown sid."""
    issued = int(time.time())
    legacy = sessions.sign({"user_id": "u-1", "email": None, "csrf": "c", "iat": issued, "exp": issued + 60},
                           purpose=sessions.SESSION_PURPOSE)
    unknown = sessions.sign({"user_id": "u-1", "email": None, "csrf": "c", "sid": "nope", "iat": issued,
                             "exp": issued + 60}, purpose=sessions.SESSION_PURPOSE)
    assert sessions.read_session(f"im_session={legacy}") is None
    assert sessions.read_session(f"im_session={unknown}") is None


def test_a_session_record_of_another_user_is_refused() -> None:
    set_cookie, _ = sessions.issue_session(user())
    claims = sessions.read_session(cookie_header(set_cookie))
    assert claims is not None
    forged = sessions.sign({"user_id": "u-2", "email": None, "csrf": "c", "sid": claims.sid,
                            "iat": claims.iat, "exp": claims.exp}, purpose=sessions.SESSION_PURPOSE)
    assert sessions.read_session(f"im_session={forged}") is None
