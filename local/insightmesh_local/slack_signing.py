"""Sign request bodies exactly as Slack does, and build real-shaped Slack request payloads.

Development and test helper (never deployed). Slack signs every request it sends to an app
with the app's signing secret (v0 scheme):

    X-Slack-Request-Timestamp: <unix seconds>
    X-Slack-Signature:         v0=hex(HMAC-SHA256(signing_secret, "v0:<timestamp>:<raw body>"))

``sign`` produces these headers with ``slack_sdk.signature.SignatureVerifier.generate_signature``
(the same code an app verifies with), so a body signed here passes any correct verifier and
fails it once the body, the secret or the timestamp (older than five minutes) is wrong.

The builders return what Slack posts to the three request URLs of the app manifest:

- ``event_callback(...)`` (JSON, to ``/slack/events``) wrapping ``app_mention_event(...)`` or
  ``message_event(...)`` (DMs, channel messages, edits ``message_changed``, deletions
  ``message_deleted``, bot messages with ``bot_id``);
- ``slash_command_body(...)`` (form-encoded, to ``/slack/commands``);
- ``block_actions_body(...)`` (form-encoded ``payload=<json>``, to ``/slack/interactions``).

The shapes follow Slack's Events API, slash command and ``block_actions`` payload references.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

DEFAULT_TEAM_ID = "TLOCAL0001"
DEFAULT_TEAM_DOMAIN = "insightmesh-local"
DEFAULT_APP_ID = "ALOCAL0001"
DEFAULT_BOT_USER_ID = "UBOTLOCAL"
DEFAULT_BOT_ID = "BBOTLOCAL"
DEFAULT_COMMAND = "/insightmesh"
# The deprecated verification token Slack still includes in payloads; apps must not rely on it.
VERIFICATION_TOKEN = "local-verification-token"  # noqa: S105 - a placeholder, not a secret

JSON_CONTENT_TYPE = "application/json"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


# -- signing ---------------------------------------------------------------------------------------
def sign(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The two signature headers Slack sends with ``body`` (timestamp defaults to now)."""
    stamp = str(int(time.time()) if timestamp is None else int(timestamp))
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=stamp, body=body)
    assert signature is not None  # only None when the timestamp is None
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}


def signed_headers(signing_secret: str, body: bytes, content_type: str, timestamp: int | None = None) -> dict[str, str]:
    """``sign`` plus the Content-Type and User-Agent Slack sends (``Slackbot 1.0``)."""
    return {
        "Content-Type": content_type,
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        **sign(signing_secret, body, timestamp),
    }


def new_ts(now: float | None = None) -> str:
    """A message timestamp as Slack writes them: ``"<seconds>.<microseconds>"``."""
    value = time.time() if now is None else now
    return f"{value:.6f}"


def new_event_id() -> str:
    return "Ev" + secrets.token_hex(5).upper()


def new_trigger_id() -> str:
    return f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def channel_type_of(channel: str) -> str:
    """``im`` for a DM (D...), ``channel`` otherwise (what message.im / message.channels carry)."""
    return "im" if channel.startswith("D") else "channel"


# -- rich text -------------------------------------------------------------------------------------
def rich_text_blocks(text: str) -> list[dict[str, Any]]:
    """The ``rich_text`` block Slack clients attach to a typed message (mentions as user elements)."""
    elements: list[dict[str, Any]] = []
    position = 0
    for found in _MENTION.finditer(text):
        if found.start() > position:
            elements.append({"type": "text", "text": text[position:found.start()]})
        elements.append({"type": "user", "user_id": found.group(1)})
        position = found.end()
    if position < len(text):
        elements.append({"type": "text", "text": text[position:]})
    return [{
        "type": "rich_text",
        "block_id": secrets.token_hex(3),
        "elements": [{"type": "rich_text_section", "elements": elements}],
    }]


# -- Events API ------------------------------------------------------------------------------------
def event_callback(
    team_id: str,
    api_app_id: str,
    event: dict[str, Any],
    event_id: str | None = None,
    event_time: int | None = None,
    authorizations: list[dict[str, Any]] | None = None,
    *,
    bot_user_id: str = DEFAULT_BOT_USER_ID,
) -> dict[str, Any]:
    """The ``event_callback`` envelope Slack POSTs to the Events API request URL."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": authorizations if authorizations is not None else [{
            "enterprise_id": None,
            "team_id": team_id,
            "user_id": bot_user_id,
            "is_bot": True,
            "is_enterprise_install": False,
        }],
        "is_ext_shared_channel": False,
        "event_context": "4-" + secrets.token_urlsafe(24),
    }


def url_verification(challenge: str | None = None) -> dict[str, Any]:
    """The handshake Slack sends when the Events API request URL is saved."""
    return {"token": VERIFICATION_TOKEN, "challenge": challenge or secrets.token_urlsafe(32),
            "type": "url_verification"}


def assistant_thread_event(kind: str, user: str, channel: str, thread_ts: str, *,
                           context_channel_id: str | None = None, team: str = DEFAULT_TEAM_ID) -> dict[str, Any]:
    """``assistant_thread_started`` or ``assistant_thread_context_changed`` (the AI app container),
    as docs.slack.dev/reference/events/assistant_thread_started shows them."""
    if kind not in ("assistant_thread_started", "assistant_thread_context_changed"):
        raise ValueError(f"not an assistant event: {kind!r}")
    context: dict[str, Any] = {"team_id": team, "enterprise_id": None}
    if context_channel_id:
        context["channel_id"] = context_channel_id
    return {"type": kind, "assistant_thread": {"user_id": user, "context": context, "channel_id": channel,
                                               "thread_ts": thread_ts},
            "event_ts": new_ts()}


def app_mention_event(
    user: str,
    channel: str,
    text: str,
    ts: str,
    thread_ts: str | None = None,
    bot_user_id: str = DEFAULT_BOT_USER_ID,
    *,
    team: str = DEFAULT_TEAM_ID,
) -> dict[str, Any]:
    """An ``app_mention`` event; ``text`` gets a leading ``<@bot_user_id>`` unless it mentions the bot."""
    if f"<@{bot_user_id}>" not in text:
        text = f"<@{bot_user_id}> {text}".rstrip()
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "ts": ts,
        "client_msg_id": str(uuid.uuid4()),
        "text": text,
        "team": team,
        "blocks": rich_text_blocks(text),
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts and thread_ts != ts:
        event["thread_ts"] = thread_ts
    return event


def message_event(
    user: str,
    channel: str,
    text: str,
    ts: str,
    thread_ts: str | None = None,
    *,
    channel_type: str | None = None,
    team: str = DEFAULT_TEAM_ID,
    subtype: str | None = None,
    bot_id: str | None = None,
    app_id: str | None = None,
    parent_user_id: str | None = None,
    previous_text: str | None = None,
    event_ts: str | None = None,
) -> dict[str, Any]:
    """A ``message`` event (message.im, message.channels, message.groups).

    - plain message: ``user`` wrote ``text`` at ``ts`` (in the thread ``thread_ts`` if given);
    - ``bot_id``: the message was posted by an app's bot user (``user`` is the bot user id);
    - ``subtype="message_changed"``: the message ``ts`` was edited to ``text`` (was
      ``previous_text``); the event itself has its own ``event_ts`` (default: now);
    - ``subtype="message_deleted"``: the message ``ts`` (whose text was ``previous_text`` or
      ``text``) was deleted.
    """
    kind = channel_type or channel_type_of(channel)
    if subtype == "message_changed":
        return message_changed_event(user, channel, text, ts, previous_text=previous_text or "",
                                     thread_ts=thread_ts, channel_type=kind, team=team, event_ts=event_ts)
    if subtype == "message_deleted":
        return message_deleted_event(user, channel, ts, previous_text=previous_text or text, thread_ts=thread_ts,
                                     channel_type=kind, team=team, event_ts=event_ts)
    event = _message(user, text, ts, thread_ts, team=team, bot_id=bot_id, app_id=app_id,
                     parent_user_id=parent_user_id)
    if subtype:
        event["subtype"] = subtype
    event.update({"channel": channel, "event_ts": event_ts or ts, "channel_type": kind})
    return event


def message_changed_event(
    user: str,
    channel: str,
    text: str,
    ts: str,
    *,
    previous_text: str,
    thread_ts: str | None = None,
    channel_type: str | None = None,
    team: str = DEFAULT_TEAM_ID,
    event_ts: str | None = None,
) -> dict[str, Any]:
    """``message`` / ``message_changed``: the message at ``ts`` now reads ``text``."""
    edit_ts = event_ts or new_ts()
    message = _message(user, text, ts, thread_ts, team=team)
    message["edited"] = {"user": user, "ts": edit_ts}
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": message,
        "previous_message": _message(user, previous_text, ts, thread_ts, team=team),
        "channel": channel,
        "hidden": True,
        "ts": edit_ts,
        "event_ts": edit_ts,
        "channel_type": channel_type or channel_type_of(channel),
    }


def message_deleted_event(
    user: str,
    channel: str,
    deleted_ts: str,
    *,
    previous_text: str,
    thread_ts: str | None = None,
    channel_type: str | None = None,
    team: str = DEFAULT_TEAM_ID,
    event_ts: str | None = None,
) -> dict[str, Any]:
    """``message`` / ``message_deleted``: the message at ``deleted_ts`` was removed."""
    stamp = event_ts or new_ts()
    return {
        "type": "message",
        "subtype": "message_deleted",
        "previous_message": _message(user, previous_text, deleted_ts, thread_ts, team=team),
        "channel": channel,
        "hidden": True,
        "deleted_ts": deleted_ts,
        "event_ts": stamp,
        "ts": stamp,
        "channel_type": channel_type or channel_type_of(channel),
    }


def _message(user: str, text: str, ts: str, thread_ts: str | None, *, team: str, bot_id: str | None = None,
             app_id: str | None = None, parent_user_id: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts, "team": team}
    if bot_id:
        message["bot_id"] = bot_id
        message["app_id"] = app_id or DEFAULT_APP_ID
        message["bot_profile"] = {"id": bot_id, "app_id": app_id or DEFAULT_APP_ID, "name": "InsightMesh",
                                  "deleted": False, "team_id": team}
    else:
        message["client_msg_id"] = str(uuid.uuid4())
    message["blocks"] = rich_text_blocks(text)
    if thread_ts and thread_ts != ts:
        message["thread_ts"] = thread_ts
        if parent_user_id:
            message["parent_user_id"] = parent_user_id
    return message


def json_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes to sign and send (compact JSON, as Slack sends it)."""
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


# -- slash commands and interactivity ----------------------------------------------------------------
def slash_command_body(
    *,
    user_id: str,
    channel_id: str,
    text: str = "",
    response_url: str,
    command: str = DEFAULT_COMMAND,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    channel_name: str | None = None,
    user_name: str | None = None,
    api_app_id: str = DEFAULT_APP_ID,
    trigger_id: str | None = None,
) -> bytes:
    """The form-encoded body Slack POSTs to a slash command's request URL."""
    fields = [
        ("token", VERIFICATION_TOKEN),
        ("team_id", team_id),
        ("team_domain", team_domain),
        ("channel_id", channel_id),
        ("channel_name", channel_name or ("directmessage" if channel_id.startswith("D") else channel_id.lower())),
        ("user_id", user_id),
        ("user_name", user_name or user_id.lower()),
        ("command", command),
        ("text", text),
        ("api_app_id", api_app_id),
        ("is_enterprise_install", "false"),
        ("response_url", response_url),
        ("trigger_id", trigger_id or new_trigger_id()),
    ]
    return urlencode(fields).encode("utf-8")


def block_actions_payload(
    *,
    user_id: str,
    channel_id: str,
    message_ts: str,
    action_id: str,
    value: str | None = None,
    block_id: str | None = None,
    response_url: str,
    thread_ts: str | None = None,
    message_text: str = "",
    message_blocks: list[dict[str, Any]] | None = None,
    button_text: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = DEFAULT_APP_ID,
    bot_user_id: str = DEFAULT_BOT_USER_ID,
    bot_id: str = DEFAULT_BOT_ID,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """The ``block_actions`` payload for a button clicked in a bot message."""
    block = block_id or secrets.token_hex(3)
    message: dict[str, Any] = {
        "type": "message", "user": bot_user_id, "bot_id": bot_id, "app_id": api_app_id, "team": team_id,
        "text": message_text, "ts": message_ts, "blocks": message_blocks or [],
    }
    container: dict[str, Any] = {"type": "message", "message_ts": message_ts, "channel_id": channel_id,
                                 "is_ephemeral": False}
    if thread_ts and thread_ts != message_ts:
        message["thread_ts"] = thread_ts
        container["thread_ts"] = thread_ts
    action: dict[str, Any] = {
        "type": "button", "action_id": action_id, "block_id": block,
        "text": {"type": "plain_text", "text": button_text or action_id, "emoji": True},
        "action_ts": new_ts(),
    }
    if value is not None:
        action["value"] = value
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "container": container,
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "directmessage" if channel_id.startswith("D") else channel_id.lower()},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def block_actions_body(
    *,
    user_id: str,
    channel_id: str,
    message_ts: str,
    action_id: str,
    value: str | None = None,
    block_id: str | None = None,
    response_url: str,
    thread_ts: str | None = None,
    **more: Any,
) -> bytes:
    """``block_actions_payload(...)`` form-encoded as Slack sends it: ``payload=<json>``.

    ``more`` takes the remaining ``block_actions_payload`` options (message_text, message_blocks,
    team_id, api_app_id, ...)."""
    payload = block_actions_payload(user_id=user_id, channel_id=channel_id, message_ts=message_ts,
                                    action_id=action_id, value=value, block_id=block_id,
                                    response_url=response_url, thread_ts=thread_ts, **more)
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode("utf-8")


__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_BOT_ID",
    "DEFAULT_BOT_USER_ID",
    "DEFAULT_TEAM_ID",
    "FORM_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "app_mention_event",
    "assistant_thread_event",
    "block_actions_body",
    "block_actions_payload",
    "channel_type_of",
    "event_callback",
    "json_body",
    "message_changed_event",
    "message_deleted_event",
    "message_event",
    "new_ts",
    "rich_text_blocks",
    "sign",
    "signed_headers",
    "slash_command_body",
    "url_verification",
]
