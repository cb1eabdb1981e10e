"""`insightmesh chat`: the 👎 reason modal, the Home tab and the message shortcut, as Slack drives them.

After ``/click feedback_down`` the modal the app opened (``views.open``, recorded by the sandbox)
is shown with its reasons; ``/reason <reason> [text]`` submits it (a signed ``view_submission``
built from that very view). ``/home`` opens the app's Home tab (a signed ``app_home_opened``) and
prints what ``views.publish`` put there. ``/shortcut`` runs "Ask InsightMesh about this message"
(a signed ``message_action``) on your latest message in this conversation.

    /reason <reason> [text]   submit the 👎 modal: wrong, outdated, not_helpful, unsafe or other
    /home                     open the Home tab and show it
    /shortcut                 "Ask InsightMesh about this message" on your latest message here
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

from insightmesh_local.slack_sandbox.views import submission_payload
from insightmesh_local.slack_signing import FORM_CONTENT_TYPE, JSON_CONTENT_TYPE, event_callback, json_body

if TYPE_CHECKING:
    from insightmesh_local.chat import Conversation

HELP: Final = """\
  /reason <r> [text]      submit the 👎 modal (wrong, outdated, not_helpful, unsafe, other)
  /home                   open the app's Home tab and show it
  /shortcut               "Ask InsightMesh about this message" on your latest message here"""
REASONS: Final = ("wrong", "outdated", "not_helpful", "unsafe", "other")
WAIT_SECONDS: Final = 10.0

_seen: set[str] = set()  # the ids of the views already shown


def _views(chat: Conversation, method: str) -> list[dict[str, Any]]:
    found = chat.sandbox._call("views", query={"method": method, "user": chat.args.user})
    views = found.get("views") if isinstance(found, dict) else None
    shown: list[dict[str, Any]] = [entry["view"] for entry in views or []
                                   if isinstance(entry, dict) and isinstance(entry.get("view"), dict)]
    return shown


def _new_view(chat: Conversation, method: str, *, wait: float,
              about: set[str] | None = None) -> dict[str, Any] | None:
    """The newest view not shown yet (a modal: about one of the messages ``about``), waiting ``wait`` s."""
    deadline = time.monotonic() + wait
    while True:
        candidates: list[dict[str, Any]] = _views(chat, method)
        for view in reversed(candidates):
            if view.get("id") in _seen:
                continue
            if about is not None:
                try:
                    reply = json.loads(view.get("private_metadata") or "{}").get("m")
                except (json.JSONDecodeError, AttributeError):
                    continue
                if reply not in about:
                    continue
            _seen.add(str(view.get("id")))
            chosen: dict[str, Any] = view
            return chosen
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def _texts(view: dict[str, Any]) -> list[str]:
    lines = []
    for block in view.get("blocks") or []:
        text = (block.get("text") or {}).get("text") if isinstance(block, dict) else None
        if isinstance(text, str):
            lines.append(text)
    return lines


def after_click(chat: Conversation, action_id: str) -> None:
    """A 👎 opens the reason modal: show it and how to answer it."""
    if action_id != "feedback_down":
        return
    replies = {str(message.get("ts")) for message in chat.last_replies}
    chat._modal = _new_view(chat, "views.open", wait=WAIT_SECONDS, about=replies)  # type: ignore[attr-defined]
    if chat._modal is None:  # type: ignore[attr-defined]
        chat.print_fn("  (no modal was opened)")
        return
    title = (chat._modal.get("title") or {}).get("text", "")  # type: ignore[attr-defined]
    chat.print_fn(f"  [modal: {title} — /reason {'|'.join(REASONS)} [text], or carry on to cancel]")


def _reason(chat: Conversation, rest: str) -> None:
    modal: dict[str, Any] | None = getattr(chat, "_modal", None)
    if modal is None:
        chat.print_fn("  (no modal is open: /click feedback_down first)")
        return
    reason, _, text = rest.partition(" ")
    if reason not in REASONS:
        chat.print_fn(f"  usage: /reason {'|'.join(REASONS)} [text]")
        return
    values: dict[str, dict[str, Any]] = {
        "reason": {"reason": {"type": "radio_buttons", "selected_option": {"value": reason}}},
        "comment": {"comment": {"type": "plain_text_input", "value": text.strip() or None}}}
    payload = submission_payload(modal, user_id=chat.args.user, values=values, team_id=chat.team_id,
                                 api_app_id=chat.api_app_id)
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
    status, answer = chat.post("/slack/interactions", body, FORM_CONTENT_TYPE)
    if not chat._refused("/slack/interactions", status, answer):
        chat._modal = None  # type: ignore[attr-defined]
        chat.print_fn(f"  (sent: {reason}{' — ' + text.strip() if text.strip() else ''})")


def _home(chat: Conversation) -> None:
    _seen.update(str(view.get("id")) for view in _views(chat, "views.publish"))  # only the one this opening publishes
    event = {"type": "app_home_opened", "user": chat.args.user, "channel": f"D{chat.args.user}", "tab": "home",
             "event_ts": chat.sandbox.new_ts()}
    body = json_body(event_callback(chat.team_id, chat.api_app_id, event, bot_user_id=chat.bot_user_id))
    status, answer = chat.post("/slack/events", body, JSON_CONTENT_TYPE)
    if chat._refused("/slack/events", status, answer):
        return
    view = _new_view(chat, "views.publish", wait=chat.args.timeout)
    if view is None:
        chat.print_fn("  (no Home tab was published)")
        return
    for text in _texts(view):
        chat.print_fn("  home| " + text.replace("\n", "\n  home| "))


def _shortcut(chat: Conversation) -> None:
    channel, user = chat.args.channel, chat.args.user
    mine = [m for m in chat.sandbox.messages(channel=channel, thread_ts=chat.thread_ts)
            if m.get("user") == user and not m.get("is_bot")] if chat.thread_ts else []
    if not mine:
        chat.print_fn("  (no message of yours here yet: say something first)")
        return
    message = mine[-1]
    response_url = chat.sandbox.response_url(channel=channel, user=user, message_ts=message["ts"])
    payload = {
        "type": "message_action", "callback_id": "ask_about_message", "token": "sandbox-verification-token",
        "trigger_id": f"{int(time.time())}.1.{message['ts'].replace('.', '')}", "action_ts": chat.sandbox.new_ts(),
        "team": {"id": chat.team_id, "domain": "sandbox"}, "api_app_id": chat.api_app_id,
        "user": {"id": user, "name": user.lower(), "team_id": chat.team_id},
        "channel": {"id": channel, "name": channel.lower()}, "message_ts": message["ts"],
        "message": {"type": "message", "user": user, "ts": message["ts"], "text": message.get("text") or "",
                    **({"thread_ts": message["thread_ts"]} if message.get("thread_ts") else {})},
        "response_url": response_url, "is_enterprise_install": False, "enterprise": None,
    }
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
    status, answer = chat.post("/slack/interactions", body, FORM_CONTENT_TYPE)
    if chat._refused("/slack/interactions", status, answer):
        return
    thread = message.get("thread_ts") or message["ts"]
    chat.last_replies = chat.watcher.watch(channel=channel, thread_ts=thread, known=chat.known) or chat.last_replies


def command(chat: Conversation, line: str) -> bool:
    """Handle ``line`` if it is one of this module's commands."""
    word, _, rest = line.partition(" ")
    if word == "/reason":
        _reason(chat, rest.strip())
    elif word == "/home":
        _home(chat)
    elif word == "/shortcut":
        _shortcut(chat)
    else:
        return False
    return True


__all__ = ["HELP", "after_click", "command"]
