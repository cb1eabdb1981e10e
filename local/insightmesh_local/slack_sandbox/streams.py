"""Slack's streaming methods in the sandbox: ``chat.startStream``, ``chat.appendStream``, ``chat.stopStream``.

As Slack documents them (docs.slack.dev/reference/methods/chat.startStream and its siblings):

* ``chat.startStream`` — ``channel`` (required) and ``thread_ts`` (streamed messages are replies to
  a user request; only a channel may take a top-level stream), ``markdown_text`` or ``chunks``
  (``[{"type": "markdown_text", "text": ...}]``, what slack_sdk's ``chat_stream`` helper sends), and
  outside a DM ``recipient_team_id`` and ``recipient_user_id`` (else ``invalid_arguments``).
  Answers ``{"ok": true, "channel", "ts"}``: a new bot message in the thread, streaming.
* ``chat.appendStream`` — ``channel``, ``ts``, the text to append; ``message_not_found`` for an
  unknown message, ``message_not_in_streaming_state`` once it was stopped. ``markdown_text`` is at
  most 12,000 characters (``msg_too_long``).
* ``chat.stopStream`` — ``channel``, ``ts``, optionally more text, ``blocks`` (rendered below the
  text) and ``metadata``; the message is final from then on.

Every append is recorded as an edit of the message (source ``chat.appendStream``), so the
sandbox's message view, the tests and ``insightmesh chat`` see the text grow; ``describe()`` says
``streaming: true`` until the stream stops.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from insightmesh_local.slack_sandbox.state import _structured, _text

if TYPE_CHECKING:
    from insightmesh_local.slack_sandbox.web_api import SandboxState

MARKDOWN_LIMIT: Final = 12_000


def _markdown(args: dict[str, Any]) -> tuple[str, str | None]:
    """(the text of ``markdown_text`` and every markdown_text chunk, error)."""
    text = _text(args, "markdown_text") or ""
    try:
        chunks = _structured(args, "chunks")
    except json.JSONDecodeError:
        return "", "invalid_chunks"
    if chunks is not None:
        if not isinstance(chunks, list) or not all(isinstance(chunk, dict) for chunk in chunks):
            return "", "invalid_chunks"
        for chunk in chunks:
            if chunk.get("type") == "markdown_text":
                if not isinstance(chunk.get("text"), str):
                    return "", "invalid_chunks"
                text += chunk["text"]
    if len(text) > MARKDOWN_LIMIT:
        return "", "msg_too_long"
    return text, None


def chat_start_stream(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    channel = state._channel(args)
    if channel is None:
        return {"ok": False, "error": "channel_not_found"}
    thread_ts = _text(args, "thread_ts")
    if thread_ts is None and not channel.startswith("C"):
        return {"ok": False, "error": "invalid_arguments"}
    if not channel.startswith("D") and not (_text(args, "recipient_team_id") and _text(args, "recipient_user_id")):
        return {"ok": False, "error": "invalid_arguments"}  # required when streaming outside a DM
    text, error = _markdown(args)
    if error:
        return {"ok": False, "error": error}
    message = state._bot_message(channel, text, "chat.startStream", thread_ts=thread_ts)
    with state._lock:
        message.streaming = True
    return {"ok": True, "channel": channel, "ts": message.ts}


def _streaming_message(state: SandboxState, args: dict[str, Any]) -> tuple[Any, str | None]:
    channel = state._channel(args)
    if channel is None:
        return None, "channel_not_found"
    message = state._find(channel, _text(args, "ts"))
    if message is None or message.deleted or message.bot_id != state.bot_id:
        return None, "message_not_found"
    if not message.streaming:
        return None, "message_not_in_streaming_state"
    return message, None


def chat_append_stream(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    text, error = _markdown(args)
    if error:
        return {"ok": False, "error": error}
    if not text:
        return {"ok": False, "error": "no_text"}
    with state._lock:
        message, error = _streaming_message(state, args)
        if error:
            return {"ok": False, "error": error}
        state._edit(message, message.text + text, None, source="chat.appendStream")
        return {"ok": True, "channel": message.channel, "ts": message.ts}


def chat_stop_stream(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    text, error = _markdown(args)
    if error:
        return {"ok": False, "error": error}
    _text_arg, blocks, metadata, error = state._content(args)
    if error:
        return {"ok": False, "error": error}
    with state._lock:
        message, error = _streaming_message(state, args)
        if error:
            return {"ok": False, "error": error}
        message.streaming = False
        if blocks is not None:
            blocks = [*(message.blocks or []), *blocks]
        state._edit(message, message.text + text, blocks, metadata, source="chat.stopStream")
        return {"ok": True, "channel": message.channel, "ts": message.ts, "message": message.api_view()}
