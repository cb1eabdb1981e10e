"""`insightmesh chat --assistant`: chat in Slack's AI app container, as Slack drives it.

Opening the container (at start, and on ``/new``) records an assistant thread's root message in
the sandbox (``POST /_sandbox/assistant``) and sends the signed ``assistant_thread_started`` event;
the greeting is shown as a reply and the suggested prompts the worker set
(``assistant.threads.setSuggestedPrompts``) are listed. Each line is then a message in that thread
(a ``message.im`` event with its ``thread_ts``); after the answer, the statuses the worker set
while working (``assistant.threads.setStatus``) and the thread's title are shown.

    /prompt <n>        send suggested prompt n, as clicking it in Slack does
    /context <C…>      look at another channel (``assistant_thread_context_changed``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from insightmesh_local.slack_signing import JSON_CONTENT_TYPE, assistant_thread_event, event_callback, json_body

if TYPE_CHECKING:
    from insightmesh_local.chat import Conversation

HELP: Final = """\
  /prompt <n>             (--assistant) send suggested prompt n, as clicking it does
  /context <C…>           (--assistant) look at another channel while the container is open"""

_shown: dict[str, int] = {}  # thread_ts -> how many of its statuses were shown
_prompts: dict[str, list[dict[str, str]]] = {}


def enabled(chat: Conversation) -> bool:
    return bool(getattr(chat.args, "assistant", False))


def _thread(chat: Conversation) -> dict[str, Any] | None:
    if not chat.thread_ts:
        return None
    found = chat.sandbox._call("assistant", query={"channel": chat.args.channel, "thread_ts": chat.thread_ts})
    threads = found.get("threads") if isinstance(found, dict) else None
    return threads[0] if threads else None


def _send(chat: Conversation, kind: str, context: str | None) -> bool:
    assert chat.thread_ts is not None
    event = assistant_thread_event(kind, chat.args.user, chat.args.channel, chat.thread_ts,
                                   context_channel_id=context, team=chat.team_id)
    body = json_body(event_callback(chat.team_id, chat.api_app_id, event, bot_user_id=chat.bot_user_id))
    status, answer = chat.post("/slack/events", body, JSON_CONTENT_TYPE)
    return not chat._refused("/slack/events", status, answer)


def open_thread(chat: Conversation) -> None:
    """Open the container: a new assistant thread, its greeting and its suggested prompts."""
    context = getattr(chat.args, "assistant_context", None)
    thread = chat.sandbox._call("assistant", {"user": chat.args.user, "channel": chat.args.channel,
                                              "context_channel_id": context})["thread"]
    chat.thread_ts = str(thread["thread_ts"])
    chat.known.clear()
    chat.print_fn(f"  (assistant thread {chat.thread_ts} opened"
                  + (f", looking at {context})" if context else ")"))
    if not _send(chat, "assistant_thread_started", context):
        return
    chat.last_replies = chat.watcher.watch(channel=chat.args.channel, thread_ts=chat.thread_ts,
                                           known=chat.known) or chat.last_replies
    show_prompts(chat)


def show_prompts(chat: Conversation) -> None:
    thread = _thread(chat) or {}
    prompts = thread.get("prompts") or []
    _prompts[str(chat.thread_ts)] = prompts
    if prompts:
        chat.print_fn(f"  {thread.get('prompts_title') or 'Suggested prompts'}:")
        for number, prompt in enumerate(prompts, 1):
            chat.print_fn(f"    {number}. {prompt['title']}  → {prompt['message']}")


def after_answer(chat: Conversation) -> None:
    """The statuses set while the worker answered, and the thread's title."""
    thread = _thread(chat)
    if thread is None:
        return
    statuses = thread.get("statuses") or []
    start = _shown.get(str(chat.thread_ts), 0)
    shown = [status for status in statuses[start:] if status]
    _shown[str(chat.thread_ts)] = len(statuses)
    if shown:
        chat.print_fn("  (status: " + " → ".join(shown) + ")")
    if thread.get("title"):
        chat.print_fn(f"  (title: {thread['title']})")


def command(chat: Conversation, line: str) -> bool:
    """Handle an assistant-mode command; False when ``line`` is not one."""
    if not enabled(chat):
        return False
    word, _, rest = line.partition(" ")
    if word == "/new":
        open_thread(chat)
    elif word == "/prompt":
        prompts = _prompts.get(str(chat.thread_ts)) or []
        if not rest.strip().isdigit() or not 0 < int(rest) <= len(prompts):
            chat.print_fn(f"  usage: /prompt <1..{len(prompts)}>" if prompts else "  (no suggested prompts)")
        else:
            message = prompts[int(rest) - 1]["message"]
            chat.print_fn(f"you> {message}")
            chat.say(message)
            after_answer(chat)
    elif word == "/context":
        channel = rest.strip()
        if not channel or not chat.thread_ts:
            chat.print_fn("  usage: /context <channel id>")
        else:
            chat.sandbox._call("assistant/context", {"channel": chat.args.channel, "thread_ts": chat.thread_ts,
                                                     "context_channel_id": channel})
            if _send(chat, "assistant_thread_context_changed", channel):
                chat.print_fn(f"  (now looking at {channel})")
    else:
        return False
    return True
