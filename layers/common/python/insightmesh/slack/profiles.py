"""Who a Slack user is, as ``users.info`` describes them: bot or app, guest, outsider, names, e-mail.

:func:`slack_profile` caches each answer per process for :data:`PROFILE_CACHE_SECONDS`: the
conversation gate asks before every message, and the directory creates a user from it on first
contact.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from slack_sdk.errors import SlackApiError

from insightmesh.observability import get_logger
from insightmesh.slack.client import call_slack
from insightmesh.slack.events import SLACKBOT_USER_ID

PROFILE_CACHE_SECONDS: Final = 300.0
PROFILE_CACHE_SIZE: Final = 5000

logger = get_logger("conversation_worker")
_profiles: dict[str, tuple[float, SlackProfile | None]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class SlackProfile:
    """What Slack's ``users.info`` says about a user; every field may be unknown."""

    display_name: str | None = None
    real_name: str | None = None
    email: str | None = None
    is_bot: bool = False
    is_app_user: bool = False
    is_restricted: bool = False  # a multi-channel guest
    is_ultra_restricted: bool = False  # a single-channel guest
    is_stranger: bool = False  # from another workspace, met in a Slack Connect channel
    team_id: str | None = None  # the user's own workspace
    org_team_ids: tuple[str, ...] = ()  # Enterprise Grid: every workspace of the org the user belongs to

    def is_outsider(self, workspace_team_id: str) -> bool:
        """A guest, or someone whose home is not ``workspace_team_id`` (Slack Connect, external)."""
        elsewhere = (self.team_id is not None and self.team_id != workspace_team_id
                     and workspace_team_id not in self.org_team_ids)
        return self.is_restricted or self.is_ultra_restricted or self.is_stranger or elsewhere


def profile_from_user(user: Any) -> SlackProfile:
    """users.info's ``user`` object → :class:`SlackProfile`."""
    given = user if isinstance(user, dict) else {}
    profile = given.get("profile") or {}
    enterprise: Any = given.get("enterprise_user")
    teams: Any = enterprise.get("teams") if isinstance(enterprise, dict) else None
    if not isinstance(teams, list):
        teams = []
    return SlackProfile(
        display_name=profile.get("display_name") or given.get("name"),
        real_name=profile.get("real_name") or given.get("real_name"),
        email=profile.get("email"),
        is_bot=bool(given.get("is_bot") or given.get("is_workflow_bot")) or given.get("id") == SLACKBOT_USER_ID,
        org_team_ids=tuple(str(team) for team in teams),
        is_app_user=bool(given.get("is_app_user")),
        is_restricted=bool(given.get("is_restricted")),
        is_ultra_restricted=bool(given.get("is_ultra_restricted")),
        is_stranger=bool(given.get("is_stranger")),
        team_id=str(given.get("team_id") or "") or None,
    )


def slack_profile(team_id: str, slack_user_id: str) -> SlackProfile | None:
    """What ``users.info`` says about the user (cached). ``None`` when Slack refuses to describe
    them (``user_not_found``, ...): the gate treats that as an outsider. Slack outages (5xx,
    429 after slack_sdk's own retries, an open breaker) propagate, so the message is retried
    rather than refused."""
    key = f"{team_id}:{slack_user_id}"
    now = time.monotonic()
    with _lock:
        cached = _profiles.get(key)
    if cached is not None and now - cached[0] < PROFILE_CACHE_SECONDS:
        return cached[1]
    try:
        response = call_slack(lambda client: client.users_info(user=slack_user_id))
        found: SlackProfile | None = profile_from_user(response.get("user"))
    except SlackApiError as error:
        status = getattr(error.response, "status_code", 200)
        if status >= 500 or status == 429:  # Slack unwell or busy: retry the message, refuse no one
            raise
        logger.warning("users.info refused; the user is treated as an outsider",
                       extra={"error": error.response.get("error")})
        found = None
    with _lock:
        if len(_profiles) >= PROFILE_CACHE_SIZE:
            _profiles.clear()
        _profiles[key] = (time.monotonic(), found)
    return found


def clear_cache() -> None:
    with _lock:
        _profiles.clear()
