"""Slack's webhooks parsed into Slack-level inputs: a message, a slash command, a block action.

Which messages are for the bot is decided here, from the payload alone;
:mod:`insightmesh.conversation.intake` turns what is answered into a ``ConversationRequest``.

Answered: DMs, always; @mentions; follow-ups without a mention in threads where the bot has
already replied (the caller checks its own records for those: ``Decision.CHECK_THREAD``).
A top-level message in a channel or private channel that ends in "?" is
``Decision.QUESTION``: the caller queues it, and the channel's settings decide whether it is
answered ("every question" mode).
Ignored: the bot's own and other bots' and apps' messages (``bot_id``, ``app_id``, ``bot_profile``,
subtype ``bot_message``), Slackbot's (``USLACKBOT``, which carries no ``bot_id``), edits, deletions and
other subtypes, and the
``message`` copy of a mention (Slack sends a mention twice: as ``app_mention`` and as
``message``; the ``app_mention`` one is answered).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from insightmesh.slack.files import MAX_FILES, SlackFileRef
from insightmesh.slack.urls import slack_response_url

ANSWERED_SUBTYPES: Final = frozenset({None, "file_share", "thread_broadcast"})  # never "bot_message"
SLACKBOT_USER_ID: Final = "USLACKBOT"
WORKSPACE_EVENTS: Final = frozenset({"app_uninstalled", "tokens_revoked"})
ACTION_IDS: Final = frozenset({"exit_agent", "feedback_up", "feedback_down", "research_stop"})
QUESTION_CHANNEL_TYPES: Final = frozenset({"channel", "group"})  # message.channels, message.groups


class Decision(StrEnum):
    ANSWER = "answer"
    CHECK_THREAD = "check_thread"
    QUESTION = "question"  # a top-level channel question without a mention: for the channel's settings
    IGNORE = "ignore"


@dataclass(frozen=True)
class SlackMessage:
    """A message (or a mention) someone posted, as the Events API delivered it."""

    event_id: str | None
    team_id: str
    channel_id: str
    channel_type: str | None  # im, channel, group, mpim; a mention without one: "channel"
    user_id: str
    text: str
    ts: str
    thread_ts: str  # the thread to answer in: the event's thread_ts, or its own ts
    files: tuple[SlackFileRef, ...] = ()


@dataclass(frozen=True)
class SlackCommand:
    """A slash command, as Slack posts its form."""

    trigger: str  # trigger_id, or channel:user:text when Slack sent none
    team_id: str
    channel_id: str
    channel_type: str  # im for a DM, else channel
    user_id: str
    text: str
    response_url: str | None


@dataclass(frozen=True)
class SlackAction:
    """One InsightMesh button pressed (``block_actions``)."""

    team_id: str
    channel_id: str
    user_id: str
    message_ts: str | None
    thread_ts: str | None
    response_url: str | None
    action_id: str
    action_value: str | None
    action_ts: str


@dataclass(frozen=True)
class Classified:
    decision: Decision
    reason: str
    message: SlackMessage | None = None


class MalformedPayload(ValueError):
    """The body is not the Slack payload it claims to be (→ 400)."""


def _bot_user_id(payload: Mapping[str, Any]) -> str | None:
    authorizations = payload.get("authorizations")
    for authorization in authorizations if isinstance(authorizations, list) else []:
        if isinstance(authorization, Mapping) and authorization.get("is_bot"):
            return str(authorization.get("user_id") or "") or None
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int | float) and str(value) else None


def is_question(text: str) -> bool:
    """A message shaped like a question: it ends in a question mark (Slack's text, trailing
    spaces and formatting marks aside)."""
    return text.rstrip().rstrip("*_~`").rstrip().endswith("?")


def classify_event(payload: Mapping[str, Any]) -> Classified:
    """An ``event_callback`` payload → answer, check the thread, or ignore (with the reason)."""
    event = payload.get("event")
    if not isinstance(event, Mapping):
        raise MalformedPayload("event_callback without an event")
    kind = event.get("type")
    if kind not in ("message", "app_mention"):
        return Classified(Decision.IGNORE, f"event type {kind!r} is not a message")
    subtype = event.get("subtype")
    if not isinstance(subtype, str | None) or subtype not in ANSWERED_SUBTYPES:  # a list is unhashable
        return Classified(Decision.IGNORE, f"message subtype {subtype!r}")
    bot_user = _bot_user_id(payload)
    user = _str(event.get("user"))
    if user == SLACKBOT_USER_ID:  # Slackbot has no bot_id: "You have been removed from #…" and the like
        return Classified(Decision.IGNORE, "a Slackbot message")
    if event.get("bot_id") or event.get("app_id") or event.get("bot_profile") or not user \
            or (bot_user and user == bot_user):
        return Classified(Decision.IGNORE, "a bot's or an app's message")
    team = _str(payload.get("team_id")) or _str(event.get("team"))
    channel = _str(event.get("channel"))
    ts = _str(event.get("ts"))
    if not team or not channel or not ts:
        raise MalformedPayload("message event without team, channel or ts")
    text = str(event.get("text") or "")
    thread_ts = _str(event.get("thread_ts"))
    channel_type = _str(event.get("channel_type"))
    if kind == "message":
        if channel_type == "im":
            decision = Decision.ANSWER
        elif bot_user and f"<@{bot_user}>" in text:
            return Classified(Decision.IGNORE, "the app_mention event answers this message")
        elif thread_ts and thread_ts != ts:
            decision = Decision.CHECK_THREAD
        elif channel_type in QUESTION_CHANNEL_TYPES and is_question(text):
            decision = Decision.QUESTION
        else:
            return Classified(Decision.IGNORE, "a channel message that is not for the bot")
    else:
        decision = Decision.ANSWER
    message = SlackMessage(
        event_id=_str(payload.get("event_id")),
        team_id=team,
        channel_id=channel,
        channel_type=channel_type or ("channel" if kind == "app_mention" else None),
        user_id=user,
        text=text,
        ts=ts,
        thread_ts=thread_ts or ts,
        files=_files(event.get("files")),
    )
    return Classified(decision, kind, message)


@dataclass(frozen=True)
class WorkspaceEvent:
    """``app_uninstalled``, or ``tokens_revoked`` naming bot tokens: the workspace goes inactive."""

    team_id: str
    kind: str
    event_id: str | None


def workspace_event(payload: Mapping[str, Any]) -> WorkspaceEvent | None:
    """The workspace change an ``event_callback`` announces, if any. ``tokens_revoked`` that revokes
    only user (``oauth``) tokens leaves the bot's token, and so the workspace, working."""
    event = payload.get("event")
    if not isinstance(event, Mapping) or not isinstance(event.get("type"), str) \
            or event["type"] not in WORKSPACE_EVENTS:  # a list type is unhashable
        return None
    kind = str(event["type"])
    if kind == "tokens_revoked":
        tokens = event.get("tokens")
        bots = tokens.get("bot") if isinstance(tokens, Mapping) else None
        if not isinstance(bots, list) or not bots:
            return None
    team = _str(payload.get("team_id"))
    if not team:
        raise MalformedPayload(f"{kind} without a team_id")
    return WorkspaceEvent(team_id=team, kind=kind, event_id=_str(payload.get("event_id")))


def _files(value: Any) -> tuple[SlackFileRef, ...]:
    """The message's files, as references for the worker to download (at most ``MAX_FILES``)."""
    if not isinstance(value, list):
        return ()
    found = []
    for item in value[:MAX_FILES]:
        if not isinstance(item, Mapping) or not _str(item.get("id")):
            continue
        size = item.get("size")
        found.append(SlackFileRef(id=str(item["id"])[:64], name=str(item.get("name") or "")[:255],
                                  mimetype=str(item.get("mimetype") or "")[:255],
                                  size=size if isinstance(size, int) and size >= 0 else 0,
                                  url=str(item.get("url_private_download") or item.get("url_private") or "")[:2048]))
    return tuple(found)


def parse_command(form: Mapping[str, str]) -> SlackCommand:
    """A slash command (form fields as Slack posts them)."""
    try:
        trigger = form.get("trigger_id") or f"{form['channel_id']}:{form['user_id']}:{form.get('text', '')}"
        return SlackCommand(
            trigger=trigger,
            team_id=form["team_id"],
            channel_id=form["channel_id"],
            channel_type="im" if form["channel_id"].startswith("D") else "channel",
            user_id=form["user_id"],
            text=form.get("text", "").strip(),
            response_url=slack_response_url(form.get("response_url")),
        )
    except KeyError as missing:
        raise MalformedPayload(f"slash command without {missing}") from missing


def parse_actions(payload: Mapping[str, Any]) -> list[SlackAction]:
    """``block_actions`` → one action per InsightMesh button pressed (other actions ignored)."""
    if payload.get("type") != "block_actions":
        return []
    try:
        team = str((payload.get("team") or {})["id"])
        user = str((payload.get("user") or {})["id"])
        channel = str((payload.get("channel") or (payload.get("container") or {})).get("id")
                      or (payload.get("container") or {})["channel_id"])
    except (KeyError, TypeError, AttributeError) as missing:
        raise MalformedPayload(f"block_actions without {missing}") from missing
    message, container = _mapping(payload.get("message")), _mapping(payload.get("container"))
    message_ts = _str(message.get("ts")) or _str(container.get("message_ts"))
    thread_ts = _str(message.get("thread_ts")) or _str(container.get("thread_ts")) or message_ts
    pressed = []
    actions = payload.get("actions")
    for action in actions if isinstance(actions, list) else []:
        action_id = action.get("action_id") if isinstance(action, Mapping) else None
        if not isinstance(action_id, str) or action_id not in ACTION_IDS:
            continue
        action_ts = _str(action.get("action_ts")) or _str(payload.get("trigger_id")) or ""
        pressed.append(SlackAction(
            team_id=team,
            channel_id=channel,
            user_id=user,
            message_ts=message_ts,
            thread_ts=thread_ts,
            response_url=slack_response_url(_str(payload.get("response_url"))),
            action_id=str(action_id),
            action_value=_str(action.get("value")),
            action_ts=action_ts,
        ))
    return pressed
