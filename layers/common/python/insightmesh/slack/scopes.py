"""The bot scopes behind every Slack Web API method InsightMesh calls, next to the client.

A real workspace answers ``missing_scope`` to a call whose scope the app was not granted, and the
Slack sandbox does not check scopes at all, so a missing scope is only found in production. This
table is what ``infra/slack-app-manifest.yaml`` must grant; ``tests/unit/test_slack_scopes.py``
scans the layer for Web API calls and fails when one has no entry here, or when the manifest
lacks a scope an entry names.

Each entry lists the scopes the method needs in *every* kind of conversation InsightMesh serves
(public and private channels, DMs, group DMs): Slack picks the scope by the conversation's kind
(``conversations.replies`` needs ``channels:history`` in a channel and ``mpim:history`` in a group
DM), so all of them are required. Sources: Slack's method and scope reference pages
(docs.slack.dev/reference/methods/<method>, docs.slack.dev/reference/scopes/<scope>).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

_HISTORY: Final = frozenset({"channels:history", "groups:history", "im:history", "mpim:history"})
_READ: Final = frozenset({"channels:read", "groups:read", "im:read", "mpim:read"})
_WRITE: Final = frozenset({"chat:write"})
# users.info / users.list: users:read; the e-mail field also needs users:read.email (the directory
# links Slack people by e-mail).
_USERS: Final = frozenset({"users:read", "users:read.email"})

METHOD_SCOPES: Final[Mapping[str, frozenset[str]]] = {
    "auth.test": frozenset(),
    "views.open": frozenset(),  # no scope: the interaction's trigger_id is the permission
    "views.publish": frozenset(),  # no scope: the app's own Home tab (the manifest's home tab feature)
    "chat.postMessage": _WRITE,
    "chat.postEphemeral": _WRITE,
    "chat.update": _WRITE,
    "chat.delete": _WRITE,
    "chat.startStream": _WRITE,  # the streaming methods need chat:write (conversation.streaming)
    "chat.appendStream": _WRITE,
    "chat.stopStream": _WRITE,
    "assistant.threads.setStatus": _WRITE,  # chat:write (Slack also still accepts assistant:write)
    "assistant.threads.setSuggestedPrompts": frozenset({"assistant:write"}),
    "assistant.threads.setTitle": frozenset({"assistant:write"}),
    "conversations.replies": _HISTORY,
    "conversations.history": _HISTORY,
    "conversations.members": _READ,
    "conversations.info": _READ,
    "users.info": _USERS,
    "users.list": _USERS,
    "reactions.add": frozenset({"reactions:write"}),
    "reactions.remove": frozenset({"reactions:write"}),
    # files_upload_v2 (slack/uploads.py): both steps need files:write.
    "files.getUploadURLExternal": frozenset({"files:write"}),
    "files.completeUploadExternal": frozenset({"files:write"}),
}

# Downloading a shared file from ``url_private_download`` (slack/files.py) is not a Web API method,
# but Slack's file host refuses a bot token without files:read.
FILE_DOWNLOAD_SCOPES: Final = frozenset({"files:read"})

# The Events API subscriptions the ingress handles, and the scope each one needs.
EVENT_SCOPES: Final[Mapping[str, frozenset[str]]] = {
    "app_mention": frozenset({"app_mentions:read"}),
    "message.channels": frozenset({"channels:history"}),
    "message.groups": frozenset({"groups:history"}),
    "message.im": frozenset({"im:history"}),
    "message.mpim": frozenset({"mpim:history"}),
    # Sent to a subscribed app with no scope (docs.slack.dev/reference/events/tokens_revoked,
    # /app_uninstalled): the workspace goes inactive.
    "app_uninstalled": frozenset(),
    # docs.slack.dev/reference/events/app_home_opened: no scope; the Home tab (slack.home).
    "app_home_opened": frozenset(),
    # The AI app container (docs.slack.dev/reference/events/assistant_thread_started): no scope of
    # their own, but Slack sends them only to an app with assistant:write and the assistant_view feature.
    "assistant_thread_started": frozenset({"assistant:write"}),
    "assistant_thread_context_changed": frozenset({"assistant:write"}),
    "tokens_revoked": frozenset(),
}


class UnknownSlackMethodError(KeyError):
    """A Web API method with no entry in ``METHOD_SCOPES``."""


def scopes_for(method: str) -> frozenset[str]:
    """The bot scopes ``method`` (``chat.postMessage``) needs; unknown methods raise, never pass."""
    try:
        return METHOD_SCOPES[method]
    except KeyError:
        raise UnknownSlackMethodError(f"no scope entry for Slack method {method!r}: add it to "
                                      "insightmesh/slack/scopes.py and the app manifest") from None


__all__ = ["EVENT_SCOPES", "FILE_DOWNLOAD_SCOPES", "METHOD_SCOPES", "UnknownSlackMethodError", "scopes_for"]
