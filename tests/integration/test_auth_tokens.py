"""API tokens against DynamoDB (moto) — insightmesh.auth.tokens.

The tables are the template's (the ``auth_env`` fixture of tests/integration/conftest.py, shared
with the other auth tests).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from insightmesh.auth import tokens
from insightmesh.auth.tokens import DEFAULT_EXPIRES_IN, parse_expires_in
from tests.integration.conftest import items

# -- create ---------------------------------------------------------------------------------------


def test_create_returns_the_plaintext_once_and_stores_only_its_hash(auth_env: dict[str, str]) -> None:
    expires = datetime.now(UTC) + timedelta(days=30)
    plaintext, token = tokens.create_token("u-1", name="ci", scopes=["admin:read", "admin:write"],
                                                    created_by="u-admin", expires_at=expires)

    assert plaintext.startswith(f"imt_{token.token_id}_")
    assert len(token.token_id) == 16
    assert tokens.parse_token_id(plaintext) == token.token_id
    stored = items("API_TOKENS_TABLE")
    assert len(stored) == 1
    item = stored[0]
    assert item["token_hash"] == {"S": hashlib.sha256(plaintext.encode()).hexdigest()}
    assert item["user_id"] == {"S": "u-1"}
    assert item["name"] == {"S": "ci"}
    assert item["created_by"] == {"S": "u-admin"}
    assert item["scopes"] == {"L": [{"S": "admin:read"}, {"S": "admin:write"}]}
    assert "expires_at" in item and "revoked_at" not in item and "last_used_at" not in item
    secret = plaintext.split("_", 2)[2]
    assert secret not in repr(item) and plaintext not in repr(item)


def test_tokens_are_distinct_and_scopes_default_to_none(auth_env: dict[str, str]) -> None:
    first, token = tokens.create_token("u-1", name="a")
    second, _ = tokens.create_token("u-1", name="b")
    assert first != second
    assert token.scopes == []
    assert items("API_TOKENS_TABLE")[0]["scopes"] == {"L": []}


@pytest.mark.parametrize("kwargs", [
    {"name": " "},
    {"name": "x" * 101},
    {"name": "ok", "scopes": ["Admin Write"]},
    {"name": "ok", "expires_at": datetime(2020, 1, 1, tzinfo=UTC)},
    {"name": "ok", "expires_at": datetime(2999, 1, 1)},  # naive
])
def test_create_refuses_bad_input(auth_env: dict[str, str], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        tokens.create_token("u-1", **kwargs)
    assert items("API_TOKENS_TABLE") == []


# -- verify ---------------------------------------------------------------------------------------


def test_verify_accepts_a_valid_token(auth_env: dict[str, str]) -> None:
    plaintext, created = tokens.create_token("u-1", name="ci", scopes=["admin:read"])
    token = tokens.verify_token(plaintext)
    assert token is not None
    assert (token.token_id, token.user_id, token.scopes) == (created.token_id, "u-1", ["admin:read"])


@pytest.mark.parametrize("presented", [
    "",
    "imt_",
    "not-a-token",
    "imt_0123456789abcdef_short",
    "imt_0123456789ABCDEF_" + "a" * 43,  # upper-case id
    "imt_0123456789abcdef_" + "a" * 43 + "\n",
    "Bearer imt_0123456789abcdef_" + "a" * 43,
])
def test_verify_rejects_malformed_tokens_without_a_lookup(auth_env: dict[str, str], presented: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lookup(*_: Any, **__: Any) -> Any:
        raise AssertionError("a malformed token must not cost a read")

    monkeypatch.setattr(tokens.ApiToken, "get", no_lookup)
    assert tokens.verify_token(presented) is None


def test_verify_rejects_an_unknown_or_altered_token(auth_env: dict[str, str]) -> None:
    plaintext, _ = tokens.create_token("u-1", name="ci")
    altered = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    assert tokens.verify_token(altered) is None
    assert tokens.verify_token("imt_0123456789abcdef_" + "a" * 43) is None


def test_a_token_whose_id_was_swapped_is_refused(auth_env: dict[str, str]) -> None:
    plaintext, _ = tokens.create_token("u-1", name="ci")
    secret = plaintext.split("_", 2)[2]
    forged = f"imt_{'f' * 16}_{secret}"
    assert tokens.verify_token(forged) is None  # a different hash: unknown


def test_an_expired_token_is_refused(auth_env: dict[str, str]) -> None:
    plaintext, token = tokens.create_token("u-1", name="ci",
                                                    expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert tokens.verify_token(plaintext) is not None
    token.update(actions=[tokens.ApiToken.expires_at.set(datetime.now(UTC) - timedelta(seconds=1))])
    assert tokens.verify_token(plaintext) is None


def test_last_used_is_recorded_at_most_once_a_minute(auth_env: dict[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    plaintext, _ = tokens.create_token("u-1", name="ci")
    start = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    now = [start]
    monkeypatch.setattr(tokens, "utc_now", lambda: now[0])
    updates: list[Any] = []
    original_update = tokens.ApiToken.update

    def counting_update(self: Any, *args: Any, **kwargs: Any) -> Any:
        updates.append(kwargs.get("actions"))
        return original_update(self, *args, **kwargs)

    monkeypatch.setattr(tokens.ApiToken, "update", counting_update)

    def stored_last_used() -> str:
        return items("API_TOKENS_TABLE")[0]["last_used_at"]["S"]

    tokens.verify_token(plaintext)
    assert len(updates) == 1
    first = stored_last_used()
    assert first.startswith("2030-01-01T12:00:00")

    for seconds in (1, 30, 59):
        now[0] = start + timedelta(seconds=seconds)
        assert tokens.verify_token(plaintext) is not None
    assert len(updates) == 1  # no write within the minute
    assert stored_last_used() == first

    now[0] = start + timedelta(seconds=61)
    tokens.verify_token(plaintext)
    assert len(updates) == 2
    assert stored_last_used().startswith("2030-01-01T12:01:01")


def test_a_concurrent_last_used_write_is_not_repeated(auth_env: dict[str, str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Two containers that both read a stale last_used_at: the condition lets one write."""
    plaintext, _ = tokens.create_token("u-1", name="ci")
    stale = tokens.ApiToken.get(tokens.hash_token(plaintext))
    assert tokens.verify_token(plaintext) is not None  # container A records use
    recorded = items("API_TOKENS_TABLE")[0]["last_used_at"]
    tokens._touch(stale, datetime.now(UTC))  # container B, with its stale copy: refused quietly
    assert items("API_TOKENS_TABLE")[0]["last_used_at"] == recorded


# -- revoke and list ----------------------------------------------------------------------------


def test_revoke_refuses_the_token_afterwards(auth_env: dict[str, str]) -> None:
    plaintext, token = tokens.create_token("u-1", name="ci")
    assert tokens.revoke_token(token.token_id, user_id="u-1") is True
    assert tokens.verify_token(plaintext) is None
    assert "revoked_at" in items("API_TOKENS_TABLE")[0]
    assert tokens.revoke_token(token.token_id, user_id="u-1") is True  # idempotent


def test_revoke_never_touches_another_users_token(auth_env: dict[str, str]) -> None:
    plaintext, token = tokens.create_token("u-1", name="ci")
    assert tokens.revoke_token(token.token_id, user_id="u-2") is False
    assert tokens.revoke_token("0123456789abcdef", user_id="u-1") is False
    assert tokens.revoke_token("not-an-id", user_id="u-1") is False
    assert tokens.verify_token(plaintext) is not None


def test_list_returns_a_users_tokens_newest_first(auth_env: dict[str, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    moments = iter([datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC),
                    datetime(2030, 1, 3, tzinfo=UTC)])
    monkeypatch.setattr(tokens, "utc_now", lambda: next(moments))
    _, old = tokens.create_token("u-1", name="old")
    _, new = tokens.create_token("u-1", name="new")
    tokens.create_token("u-2", name="someone else's")

    listed = tokens.list_tokens("u-1")
    assert [token.token_id for token in listed] == [new.token_id, old.token_id]
    assert tokens.list_tokens("u-nobody") == []


# -- lifetimes (insightmesh token create --expires-in) ------------------------------------------


@pytest.mark.parametrize(("value", "lifetime"), [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)),
                                                 (" 1D ", timedelta(days=1)), ("never", None)])
def test_a_lifetime_is_days_or_hours_or_never(value: str, lifetime: timedelta | None) -> None:
    assert parse_expires_in(value) == lifetime


@pytest.mark.parametrize("value", ["", "90", "0d", "1w", "-1d", "99999d", "1.5d", "d"])
def test_a_bad_lifetime_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        parse_expires_in(value)


def test_the_default_lifetime_is_90_days() -> None:
    assert parse_expires_in(DEFAULT_EXPIRES_IN) == timedelta(days=90)


def test_token_state_shows_active_expired_and_revoked(auth_env: dict[str, str]) -> None:
    now = datetime.now(UTC)
    _, token = tokens.create_token("u-1", name="ci", expires_at=now + timedelta(hours=1))
    assert tokens.token_state(token, now) == "active"
    assert tokens.token_state(token, now + timedelta(hours=2)) == "expired"
    tokens.revoke_token(token.token_id, user_id="u-1")
    revoked = tokens.list_tokens("u-1")[0]
    assert tokens.token_state(revoked, now) == "revoked"
