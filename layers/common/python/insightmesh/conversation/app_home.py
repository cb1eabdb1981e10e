"""App Home: ``app_home_opened`` publishes the user's Home tab (``views.publish``).

The ingress queues the event (one SQS send, as for a message; no AWS read on the ack path); the
worker resolves the Slack user (the directory user, created on first contact), lists the agents
they may use (the catalog, then one membership Query and one grants BatchGetItem:
``agents_usable_by``) and publishes the view. An admin also gets a link to the console
(``PUBLIC_BASE_URL`` + ``/console``). Each opening is its own request (its event id), so a
redelivery publishes the same view again at worst: views.publish replaces, it never adds.
"""

from __future__ import annotations

import os

from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.observability import get_logger
from insightmesh.slack import home

logger = get_logger()


def home_request(opened: home.HomeOpened, *, correlation_id: str) -> ConversationRequest:
    return ConversationRequest(
        kind=RequestKind.HOME,
        request_id=f"home:{opened.team_id}:{opened.user_id}:{opened.event_id or correlation_id}",
        event_id=opened.event_id,
        team_id=opened.team_id,
        channel_id=opened.channel_id,
        user_id=opened.user_id,
        correlation_id=correlation_id,
    )


def console_url() -> str | None:
    base = os.environ.get("PUBLIC_BASE_URL", "").rstrip("/")
    return f"{base}/console" if base else None


def publish(request: ConversationRequest) -> None:
    """Publish ``request.user_id``'s Home tab (once per opening: the request is claimed)."""
    # The worker's modules: the ingress imports this one only to queue the event.
    from insightmesh.agents.catalog import list_agents
    from insightmesh.conversation import replies
    from insightmesh.directory.permissions import agents_usable_by
    from insightmesh.directory.users import resolve_slack_user
    from insightmesh.slack.client import bot_identity, call_slack
    from insightmesh.slack.profiles import slack_profile

    claim = replies.claim(request)
    if claim.record.status == replies.Status.ANSWERED:
        return
    user = resolve_slack_user(request.team_id, request.user_id,
                              profile=lambda: slack_profile(request.team_id, request.user_id))
    usable = [home.HomeAgent(a.name, a.display_name or a.name, a.description, tuple(a.aliases or ()))
              for a in agents_usable_by(user, list_agents())]
    view = home.home_view(usable, bot_user_id=bot_identity().user_id,
                          console_url=console_url() if user.is_admin else None)
    call_slack(lambda client: client.views_publish(user_id=request.user_id, view=view))
    replies.set_answered(claim.record, None, None)
    logger.info("home tab published", extra={"agents": len(usable), "admin": bool(user.is_admin)})


__all__ = ["console_url", "home_request", "publish"]
