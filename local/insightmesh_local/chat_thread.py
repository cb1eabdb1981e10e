"""`insightmesh chat`'s ``/thread <who> <text>``: a message from another person in the chat's
thread, posted before you mention the bot — so a thread the bot was never part of can be built
up, then ``@insightmesh what did we decide above?`` asked in it.

``<who>`` is a Slack user id (``U0BOB``) or a name (``bob``: the sandbox user ``bob@example.com``,
registered on first use so ``users.info`` gives the bot that name). The message is recorded in
the sandbox (so ``conversations.replies`` returns it) and, as Slack does for a channel the app is
in, sent to the dev server as a signed ``message`` event; the bot answers it only if it would
answer such a message in Slack. With no thread yet, the message starts one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from insightmesh_local.slack_signing import JSON_CONTENT_TYPE, event_callback, json_body, message_event

if TYPE_CHECKING:
    from insightmesh_local.chat import Conversation

USAGE = "  usage: /thread <user id or name> <text>   (posts as that person in this thread)"
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


def user_of(chat: Conversation, who: str) -> str | None:
    """The Slack user id ``who`` names (a name is registered in the sandbox first); None if neither."""
    if _USER_ID.match(who):
        return who
    name = who.lower()
    if not _NAME.match(name):
        return None
    from insightmesh_local.chat import user_for_email

    email = f"{name}@example.com"
    user_id = user_for_email(email)
    chat.sandbox.register_user(user_id=user_id, email=email)
    return user_id


def post_in_thread(chat: Conversation, line: str) -> None:
    """Handle ``/thread <who> <text>`` (the whole line as typed)."""
    parts = line.split(maxsplit=2)
    if len(parts) < 3:
        chat.print_fn(USAGE)
        return
    user = user_of(chat, parts[1])
    if user is None:
        chat.print_fn(f"  (not a user id or a name: {parts[1]!r})")
        chat.print_fn(USAGE)
        return
    channel, text = chat.args.channel, parts[2]
    if channel.startswith("D"):
        chat.print_fn("  (a DM with the bot holds only you and the bot: start chat with --channel C... "
                      "to build a thread with other people)")
        return
    thread_ts = chat.thread_ts
    ts = chat.sandbox.add_user_message(channel=channel, user=user, text=text, thread_ts=thread_ts)
    if thread_ts is None:
        chat.thread_ts = ts
        chat.known.clear()
    event = message_event(user, channel, text, ts, thread_ts, team=chat.team_id)
    body = json_body(event_callback(chat.team_id, chat.api_app_id, event, bot_user_id=chat.bot_user_id))
    status, answer = chat.post("/slack/events", body, JSON_CONTENT_TYPE)
    if chat._refused("/slack/events", status, answer):
        return
    chat.print_fn(f"  ({user} in thread {chat.thread_ts}) {text}")
