"""Slack's AI app surface in the sandbox: ``assistant.threads.setStatus``, ``setSuggestedPrompts``
and ``setTitle`` as Slack answers them, and the assistant threads they set, for tests and
``insightmesh chat`` to read (``GET /_sandbox/assistant``).

An assistant thread lives in the app's DM with the user (a ``D`` channel): ``start_thread``
(``POST /_sandbox/assistant``) records the thread's root message as Slack does when someone opens
the container (subtype ``assistant_app_thread``); the caller then signs and posts the
``assistant_thread_started`` event (``insightmesh_local.slack_signing.assistant_thread_event``).

Errors, as Slack's method pages list them: ``channel_not_found`` (not a DM the sandbox holds),
``invalid_thread_ts`` / ``message_not_found`` (no such thread), ``invalid_arguments`` (a required
argument missing or mis-shaped: prompts must be a list of up to four ``{"title", "message"}``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from insightmesh_local.slack_sandbox.state import Message, SandboxError, _structured, _text

if TYPE_CHECKING:
    from insightmesh_local.slack_sandbox.web_api import SandboxState

MAX_PROMPTS: Final = 4
ROOT_SUBTYPE: Final = "assistant_app_thread"


def _threads(state: SandboxState) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] | None = getattr(state, "_assistant_threads", None)
    if found is None:
        found = {}
        state._assistant_threads = found  # type: ignore[attr-defined]
    return found


def _root(state: SandboxState, args: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the thread's record, None) or (None, Slack's error)."""
    channel, thread_ts = _text(args, "channel_id"), _text(args, "thread_ts")
    if channel is None:
        return None, "invalid_arguments"
    if not channel.startswith("D"):
        return None, "channel_not_found"
    if thread_ts is None:
        return None, "invalid_thread_ts"
    with state._lock:
        root: Message | None = state._find(channel, thread_ts)
        if root is None or root.deleted or root.thread_ts not in (None, thread_ts):
            return None, "invalid_thread_ts"
        return _threads(state).setdefault((channel, thread_ts), {
            "channel_id": channel, "thread_ts": thread_ts, "user": root.user, "status": "", "statuses": [],
            "title": None, "prompts": [], "prompts_title": None, "context_channel_id": None}), None


def set_status(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    """``assistant.threads.setStatus``: ``status`` is required; an empty one clears it."""
    if "status" not in args or not isinstance(args["status"], str):
        return {"ok": False, "error": "invalid_arguments"}
    thread, error = _root(state, args)
    if thread is None:
        return {"ok": False, "error": error}
    with state._lock:
        thread["status"] = args["status"]
        thread["statuses"].append(args["status"])
    return {"ok": True}


def set_suggested_prompts(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    """``assistant.threads.setSuggestedPrompts``: up to four prompts, each a title and a message."""
    try:
        prompts = _structured(args, "prompts")
    except json.JSONDecodeError:
        return {"ok": False, "error": "invalid_arguments"}
    if not isinstance(prompts, list) or not 0 < len(prompts) <= MAX_PROMPTS or not all(
            isinstance(p, dict) and isinstance(p.get("title"), str) and isinstance(p.get("message"), str)
            and p["title"] and p["message"] for p in prompts):
        return {"ok": False, "error": "invalid_arguments"}
    thread, error = _root(state, args)
    if thread is None:
        return {"ok": False, "error": error}
    with state._lock:
        thread["prompts"] = [{"title": p["title"], "message": p["message"]} for p in prompts]
        thread["prompts_title"] = _text(args, "title")
    return {"ok": True}


def set_title(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    """``assistant.threads.setTitle``: ``title`` is required."""
    title = _text(args, "title")
    if title is None:
        return {"ok": False, "error": "invalid_arguments"}
    thread, error = _root(state, args)
    if thread is None:
        return {"ok": False, "error": error}
    with state._lock:
        thread["title"] = title
    return {"ok": True}


def start_thread(state: SandboxState, *, user: str, context_channel_id: str | None = None,
                 channel: str | None = None) -> dict[str, Any]:
    """Open the assistant container for ``user``: the thread's root message in their DM with the app."""
    if not user or user[0] not in "UW":
        raise SandboxError("user must be a Slack user id (U… or W…)")
    channel = channel or f"D{user}"
    if not channel.startswith("D"):
        raise SandboxError("an assistant thread lives in a DM (a D… channel)")
    root = state.add_user_message(channel=channel, user=user, text="New chat")
    with state._lock:
        message = state._find(channel, root["ts"])
        if message is not None:
            message.source = ROOT_SUBTYPE
        thread = _threads(state).setdefault((channel, root["ts"]), {
            "channel_id": channel, "thread_ts": root["ts"], "user": user, "status": "", "statuses": [],
            "title": None, "prompts": [], "prompts_title": None, "context_channel_id": None})
        thread["context_channel_id"] = context_channel_id
        return dict(thread)


def change_context(state: SandboxState, *, channel: str, thread_ts: str, context_channel_id: str) -> dict[str, Any]:
    """The user looks at another channel while the container is open."""
    with state._lock:
        thread = _threads(state).get((channel, thread_ts))
        if thread is None:
            raise SandboxError(f"no assistant thread {thread_ts} in {channel}")
        thread["context_channel_id"] = context_channel_id
        return dict(thread)


def describe(state: SandboxState, channel: str | None = None, thread_ts: str | None = None) -> list[dict[str, Any]]:
    """The assistant threads (all, one DM's, or one), as the methods set them."""
    with state._lock:
        return [json.loads(json.dumps(thread)) for (ch, ts), thread in _threads(state).items()
                if (channel is None or ch == channel) and (thread_ts is None or ts == thread_ts)]


def reset(state: SandboxState) -> None:
    with state._lock:
        _threads(state).clear()


METHODS: Final = {
    "assistant.threads.setStatus": set_status,
    "assistant.threads.setSuggestedPrompts": set_suggested_prompts,
    "assistant.threads.setTitle": set_title,
}
