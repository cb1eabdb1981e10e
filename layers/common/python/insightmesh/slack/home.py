"""The App Home tab: the ``app_home_opened`` event and the ``home`` view ``views.publish`` shows.

Slack sends ``app_home_opened`` (scope none; the manifest subscribes to the event and enables the
home tab) each time someone opens the app's Home or Messages tab; ``event.tab`` says which. Only
the Home tab is published, for ``event.user`` (docs.slack.dev/reference/events/app_home_opened,
reference/methods/views.publish: a ``home`` view, at most 100 blocks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from insightmesh.slack.events import MalformedPayload

EVENT: Final = "app_home_opened"
MAX_AGENTS_SHOWN: Final = 40  # two blocks each, under Slack's 100 blocks per view


@dataclass(frozen=True)
class HomeAgent:
    """An agent as the Home tab lists it."""

    name: str
    display_name: str
    description: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class HomeOpened:
    team_id: str
    user_id: str
    channel_id: str
    event_id: str | None


def home_opened(payload: Mapping[str, Any]) -> HomeOpened | None:
    """An ``event_callback`` carrying ``app_home_opened`` on the Home tab; None otherwise."""
    event = payload.get("event")
    if not isinstance(event, Mapping) or event.get("type") != EVENT or event.get("tab") != "home":
        return None
    team, user, channel = payload.get("team_id"), event.get("user"), event.get("channel")
    if not isinstance(team, str) or not isinstance(user, str) or not team or not user:
        raise MalformedPayload("app_home_opened without team_id or user")
    event_id = payload.get("event_id")
    return HomeOpened(team_id=team, user_id=user, channel_id=channel if isinstance(channel, str) and channel else "-",
                      event_id=event_id if isinstance(event_id, str) else None)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def home_view(agents: Sequence[HomeAgent], *, bot_user_id: str, console_url: str | None) -> dict[str, Any]:
    """The Home tab: how to ask, the agents this user may use (and how to call each), and the
    console for an admin (``console_url``; None for everyone else)."""
    mention = f"<@{bot_user_id}>" if bot_user_id else "@InsightMesh"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "InsightMesh"}},
        _section(f"Ask me anything in a DM, mention {mention} in a channel or thread, or use "
                 "`/insightmesh <question>`. On any message, *More actions → Ask InsightMesh about this "
                 "message* answers about it in its thread."),
        {"type": "divider"},
        _section("*Agents you may use*" if agents else "_No agents are available to you yet: ask an admin._"),
    ]
    for agent in agents[:MAX_AGENTS_SHOWN]:
        aliases = ", ".join(f"`{alias}`" for alias in agent.aliases)
        how = f"`/insightmesh {agent.name} …` or {mention} {agent.name} …" + (f" (also {aliases})" if aliases else "")
        blocks.append(_section(f"*{agent.display_name or agent.name}* — {agent.description or 'no description'}\n"
                               f"{how}"))
    if console_url:
        blocks += [{"type": "divider"},
                   _section(f"You are an InsightMesh admin: <{console_url}|open the console> to manage agents, "
                            "access, knowledge and jobs.")]
    return {"type": "home", "blocks": blocks}


__all__ = ["EVENT", "HomeAgent", "HomeOpened", "home_opened", "home_view"]
