"""Who may talk to the bot, and how often — checked by the worker before any model call.

For a message or a slash command, in this order:

1. **Bots and apps are never answered.** ``users.info`` (:func:`insightmesh.slack.profiles.slack_profile`,
   cached per process) saying ``is_bot`` or ``is_app_user`` — or the user being Slackbot
   — means nothing is posted at all (fail closed: the ingress already ignores bot messages; this
   catches the ones that slip through).
2. **Guests and outsiders.** Slack guests (``is_restricted``, ``is_ultra_restricted``) and people of
   other workspaces (``is_stranger``, a ``team_id`` that is not the request's, or a user Slack will
   not describe) may use the bot only when ``SLACK_GUEST_POLICY=allow`` (default ``deny``); denied,
   they get :data:`GUEST_REFUSAL` privately. Allowed, they are still never put in ``all_users``
   (:func:`insightmesh.directory.users.resolve_slack_user`).
3. **Per-person rate limit.** At most ``SLACK_USER_RATE_LIMIT_PER_MINUTE`` requests per person per
   minute (default 20; 0 = no limit), counted in the rate-limit table
   (:class:`insightmesh.api.ratelimit.RateLimiter`: one UpdateItem per request; it fails open).
   Past it, a friendly private reply and no model call.

Refusals are ephemeral (``chat.postEphemeral``, or the command's Slack ``response_url``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from slack_sdk.errors import SlackApiError

from insightmesh.api.errors import RateLimitedError
from insightmesh.api.ratelimit import RateLimiter
from insightmesh.config import load_settings
from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.observability import get_logger
from insightmesh.slack.client import call_slack
from insightmesh.slack.events import SLACKBOT_USER_ID
from insightmesh.slack.profiles import SlackProfile, slack_profile
from insightmesh.slack.urls import slack_response_url

GUEST_REFUSAL: Final = ("Sorry, InsightMesh isn't available to guests or people outside this workspace. "
                        "Ask a workspace admin if you think you should have access.")
RATE_REFUSAL: Final = ("You're sending me requests faster than I can keep up with (at most {limit} a minute). "
                       "Please wait a minute and ask again.")

logger = get_logger("conversation_worker")


class GateSettings(BaseSettings):
    """Field names are the environment variable names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    SLACK_GUEST_POLICY: Literal["deny", "allow"] = "deny"
    SLACK_USER_RATE_LIMIT_PER_MINUTE: int = Field(default=20, ge=0, le=100_000)


class Verdict(StrEnum):
    ADMIT = "admit"
    SILENT = "silent"  # a bot or an app: post nothing
    REFUSED = "refused"  # a clear private reply was posted


@dataclass(frozen=True)
class Gate:
    verdict: Verdict
    reason: str
    profile: SlackProfile | None = None


def admit(request: ConversationRequest) -> Gate:
    """Bots → silent; denied guests and outsiders, and people over the rate limit → refused (the
    private reply already posted); everyone else → admitted."""
    settings = load_settings(GateSettings)
    if request.user_id == SLACKBOT_USER_ID:
        return Gate(Verdict.SILENT, "Slackbot")
    profile = slack_profile(request.team_id, request.user_id)
    if profile is not None and (profile.is_bot or profile.is_app_user):
        logger.info("a bot or app user; nothing posted", extra={"request_id": request.request_id})
        return Gate(Verdict.SILENT, "a bot or app user", profile)
    outsider = profile is None or profile.is_outsider(request.team_id)
    if outsider and settings.SLACK_GUEST_POLICY != "allow":
        logger.info("a guest or outsider; refused", extra={"request_id": request.request_id})
        tell(request, GUEST_REFUSAL)
        return Gate(Verdict.REFUSED, "a guest or outsider", profile)
    limit = settings.SLACK_USER_RATE_LIMIT_PER_MINUTE
    try:
        RateLimiter("slack-user", limit, window=60).hit(f"{request.team_id}:{request.user_id}")
    except RateLimitedError:
        logger.info("per-user rate limit reached; refused", extra={"request_id": request.request_id})
        tell(request, RATE_REFUSAL.format(limit=limit))
        return Gate(Verdict.REFUSED, "rate limited", profile)
    return Gate(Verdict.ADMIT, "admitted", profile)


def tell(request: ConversationRequest, text: str) -> None:
    """A short private reply to the request's user: ``chat.postEphemeral`` in the thread, or the
    command's Slack ``response_url`` (a command may come from a channel the bot is not in)."""
    response_url = slack_response_url(request.response_url)
    if request.kind is RequestKind.COMMAND and response_url:
        httpx.post(response_url, json={"response_type": "ephemeral", "text": text}, timeout=10).raise_for_status()
        return
    try:
        call_slack(lambda client: client.chat_postEphemeral(channel=request.channel_id, user=request.user_id,
                                                            thread_ts=request.thread_ts, text=text))
    except SlackApiError as error:
        if not response_url:
            raise
        logger.info("ephemeral refused; answering through response_url",
                    extra={"error": error.response.get("error")})
        httpx.post(response_url, json={"response_type": "ephemeral", "text": text}, timeout=10).raise_for_status()
