"""users.info user objects (the shapes of Slack's reference) → who is a bot, a guest, an outsider —
insightmesh.slack.profiles.profile_from_user and SlackProfile.is_outsider."""

from __future__ import annotations

from typing import Any

import pytest

from insightmesh.slack.profiles import profile_from_user

TEAM = "T123ABC456"


def user(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "U123ABC456", "team_id": TEAM, "name": "sherlock", "deleted": False,
                            "real_name": "Sherlock Holmes", "is_admin": False, "is_owner": False,
                            "is_restricted": False, "is_ultra_restricted": False, "is_bot": False,
                            "is_app_user": False, "profile": {"real_name": "Sherlock Holmes",
                                                              "display_name": "sherlock",
                                                              "email": "sherlock@corp.example"}}
    return base | fields


def test_a_full_member_is_neither_bot_nor_outsider() -> None:
    profile = profile_from_user(user())

    assert (profile.display_name, profile.real_name, profile.email) == ("sherlock", "Sherlock Holmes",
                                                                        "sherlock@corp.example")
    assert not profile.is_bot and not profile.is_app_user
    assert not profile.is_outsider(TEAM)


@pytest.mark.parametrize("fields", [{"is_restricted": True}, {"is_ultra_restricted": True}, {"is_stranger": True},
                                    {"team_id": "T0PARTNER1"}])
def test_guests_and_people_of_other_workspaces_are_outsiders(fields: dict[str, Any]) -> None:
    assert profile_from_user(user(**fields)).is_outsider(TEAM)


def test_an_enterprise_grid_member_of_this_workspace_is_not_an_outsider() -> None:
    grid = user(team_id="T0HOME0001", enterprise_user={"enterprise_id": "E1", "teams": ["T0HOME0001", TEAM]})
    elsewhere = user(team_id="T0HOME0001", enterprise_user={"enterprise_id": "E1", "teams": ["T0HOME0001"]})

    assert not profile_from_user(grid).is_outsider(TEAM)
    assert profile_from_user(elsewhere).is_outsider(TEAM)


@pytest.mark.parametrize("fields", [{"is_bot": True}, {"is_workflow_bot": True}, {"id": "USLACKBOT", "is_bot": False}])
def test_bots_workflow_bots_and_slackbot_are_bots(fields: dict[str, Any]) -> None:
    assert profile_from_user(user(**fields)).is_bot


def test_an_app_user_is_flagged() -> None:
    assert profile_from_user(user(is_app_user=True)).is_app_user
