"""One way to find or create a user by e-mail (``insightmesh.directory.email_users``), used by OIDC
sign-in, the CLI and the directory sync: one id scheme, and users created before it (uuid4 ids)
are found, never duplicated. Tables from infra/template.yaml in moto."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from insightmesh.auth.login import user_for_claims
from insightmesh.clock import utc_now
from insightmesh.directory.email_users import (
    EMAIL_PROVIDER,
    InvalidEmailError,
    claim_key,
    find_or_create_user_by_email,
    find_user_by_email,
    new_user_id,
)
from insightmesh.directory.models import Identity, Membership, User
from insightmesh.directory.sync import ProviderUser, sync_users
from insightmesh.directory.users import ALL_USERS, resolve_slack_user
from insightmesh.slack.profiles import SlackProfile

pytestmark = pytest.mark.usefixtures("tables")


def users() -> list[User]:
    return list(User.scan(consistent_read=True))


def claims() -> list[Identity]:
    return [identity for identity in Identity.scan(consistent_read=True) if identity.provider_type == EMAIL_PROVIDER]


def old_style_user(email: str, *, provider: str) -> str:
    """A user as sign-in and the CLI created them before the one id scheme: a uuid4 id."""
    user_id = str(uuid.uuid4())
    now = utc_now()
    Identity(claim_key(email), provider_type=EMAIL_PROVIDER, provider_user_id=email, user_id=user_id,
             provider_email=email, is_primary=True, is_active=True, created_at=now).save()
    Membership(ALL_USERS, user_id, added_at=now, added_by=provider).save()
    User(user_id, email=email, display_name="Old", is_active=True, is_admin=False, primary_provider=provider,
         created_at=now).save()
    return user_id


@pytest.mark.parametrize("provider", ["oidc", "email"])
def test_a_user_created_the_old_way_is_found_not_duplicated(provider: str) -> None:
    old_id = old_style_user("ada@example.com", provider=provider)

    assert find_or_create_user_by_email("Ada@Example.com", added_by="cli").user_id == old_id  # the CLI
    assert user_for_claims("ada@example.com", {"name": "Ada"}).user_id == old_id  # OIDC sign-in
    sync_users("google", [[ProviderUser(provider_user_id="g-ada", email="ada@example.com", display_name="Ada")]],
               run_id="run-1")  # the directory sync links the Google account to the same user
    assert find_user_by_email("ada@example.com") is not None
    assert [user.user_id for user in users()] == [old_id]
    assert [claim.user_id for claim in claims()] == [old_id]
    assert Identity.get("google#g-ada").user_id == old_id


def test_a_new_user_gets_the_one_id_scheme_and_every_path_finds_it() -> None:
    created = user_for_claims("grace@example.com", {"name": " Grace Hopper "})
    assert created.user_id == new_user_id(claim_key("grace@example.com"))
    assert (created.display_name, created.real_name, created.primary_provider) == ("Grace Hopper", "Grace Hopper",
                                                                                     "oidc")
    assert created.is_admin is False
    assert Membership.get(ALL_USERS, created.user_id).added_by == "oidc"

    assert find_or_create_user_by_email("grace@example.com", create=False).user_id == created.user_id
    sync_users("google", [[ProviderUser(provider_user_id="g-grace", email="grace@example.com")]], run_id="run-1")
    assert [user.user_id for user in users()] == [created.user_id]


def test_the_cli_names_a_user_by_the_address() -> None:
    user = find_or_create_user_by_email(" Linus@Example.com ", added_by="cli")
    assert (user.email, user.display_name, user.real_name, user.primary_provider) == \
        ("linus@example.com", "linus", None, EMAIL_PROVIDER)
    assert Membership.get(ALL_USERS, user.user_id).added_by == "cli"


def test_users_the_sync_or_a_slack_first_contact_created_are_found() -> None:
    sync_users("google", [[ProviderUser(provider_user_id="g-1", email="synced@example.com")]], run_id="run-1")
    synced = find_or_create_user_by_email("synced@example.com")
    assert synced.user_id == new_user_id("google#g-1")  # the sync's id: derived from its identity

    slack = resolve_slack_user("T1", "U1", profile=lambda: SlackProfile(display_name="S", email="slack@example.com"))
    assert find_or_create_user_by_email("slack@example.com").user_id == slack.user_id  # no claim: by-email
    assert user_for_claims("slack@example.com", {}).user_id == slack.user_id
    assert len(users()) == 2


def test_concurrent_creators_make_one_user() -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(lambda n: find_or_create_user_by_email("race@example.com", added_by=f"c{n}").user_id,
                              range(8)))
    assert set(found) == {new_user_id(claim_key("race@example.com"))}
    assert len(users()) == 1 and len(claims()) == 1


def test_a_claim_without_its_user_is_completed() -> None:
    """A creator that stopped after the claim: the next call writes the user with the claim's id."""
    user_id = str(uuid.uuid4())
    Identity(claim_key("half@example.com"), provider_type=EMAIL_PROVIDER, provider_user_id="half@example.com",
             user_id=user_id, provider_email="half@example.com", is_primary=True, is_active=True,
             created_at=utc_now()).save()
    with pytest.raises(LookupError):
        find_or_create_user_by_email("half@example.com", create=False)
    assert find_user_by_email("half@example.com") is None
    assert find_or_create_user_by_email("half@example.com").user_id == user_id
    assert Membership.get(ALL_USERS, user_id) is not None


def test_unknown_and_invalid_addresses() -> None:
    with pytest.raises(LookupError):
        find_or_create_user_by_email("nobody@example.com", create=False)
    for bad in ("", "no-at-sign", "a b@example.com", "x" * 250 + "@example.com"):
        with pytest.raises(InvalidEmailError):
            find_or_create_user_by_email(bad)
    assert users() == [] and claims() == []
