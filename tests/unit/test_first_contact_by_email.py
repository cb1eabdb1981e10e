"""Which known user a Slack first contact joins by e-mail (directory.users._owner_by_email): only a
workspace member's address, only through an e-mail claim, only an active user that still has the
address — the rule the directory sync applies. (Joining end to end: tests/e2e/test_cli_errors.py.)"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from insightmesh.directory import users
from insightmesh.slack.profiles import SlackProfile

CLAIMS = {"email#boss@example.com": SimpleNamespace(user_id="u-boss"),
          "email#gone@example.com": SimpleNamespace(user_id="u-gone"),
          "email#moved@example.com": SimpleNamespace(user_id="u-moved")}
USERS = {"u-boss": SimpleNamespace(user_id="u-boss", is_active=True, email="boss@example.com"),
         "u-gone": SimpleNamespace(user_id="u-gone", is_active=False, email="gone@example.com"),
         "u-moved": SimpleNamespace(user_id="u-moved", is_active=True, email="elsewhere@example.com")}


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []

    def get_identity(key: str, *, consistent: bool) -> Any:
        asked.append(key)
        return CLAIMS.get(key)

    def get_user(user_id: str, *, consistent: bool) -> Any:
        asked.append(user_id)
        return USERS.get(user_id)

    monkeypatch.setattr(users, "_get_identity", get_identity)
    monkeypatch.setattr(users, "_get_user", get_user)
    return asked


def test_a_members_address_joins_the_active_user_its_claim_names(lookups: list[str]) -> None:
    owner = users._owner_by_email("T1", SlackProfile(email=" Boss@Example.com ", team_id="T1"))
    assert owner is not None and owner.user_id == "u-boss"
    assert lookups == ["email#boss@example.com", "u-boss"]


@pytest.mark.parametrize("profile", [
    SlackProfile(email="boss@example.com", is_restricted=True),  # a guest
    SlackProfile(email="boss@example.com", team_id="T2"),  # a person of another workspace
    SlackProfile(email="boss@example.com", is_bot=True),
    SlackProfile(email="boss@example.com", is_app_user=True),
    SlackProfile(email=None),
    None,  # Slack could not be asked
])
def test_guests_strangers_bots_and_unknown_profiles_are_never_joined(lookups: list[str], profile: Any) -> None:
    assert users._owner_by_email("T1", profile) is None
    assert lookups == []  # not even looked up


@pytest.mark.parametrize("email", ["nobody@example.com", "gone@example.com", "moved@example.com"])
def test_no_claim_an_inactive_user_or_a_changed_address_makes_a_new_user(lookups: list[str], email: str) -> None:
    assert users._owner_by_email("T1", SlackProfile(email=email)) is None
