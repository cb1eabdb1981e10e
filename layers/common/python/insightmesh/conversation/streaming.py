"""The worker's one reply path: the answer streamed into Slack as the LLM writes it.

``open_reply`` gives the worker a ``ReplyStream`` for a request whose "thinking" placeholder is
posted. The agent's LLM hands it the answer piece by piece (``AgentContext.stream``); a
``StreamBuffer`` decides when a part goes out (at once for the first text, then at most every
``STREAM_INTERVAL`` seconds, never inside Markdown). ``finish`` applies the final formatting
(mrkdwn, Sources, the feedback buttons, the reply metadata) once the answer is complete.

* **Streaming** — where Slack supports it: a reply in a thread (``chat.startStream`` needs
  ``thread_ts``: streamed messages are replies to a user request), in a DM or a channel (outside
  a DM Slack needs ``recipient_team_id`` and ``recipient_user_id``: the asker). The first part
  starts the stream (slack_sdk's ``WebClient.chat_stream``), the stream's ``ts`` is recorded in
  the reply state (``replies.set_streaming``) and the placeholder is deleted, so the thread holds
  one message; later parts are ``chat.appendStream``; ``finish`` is ``chat.stopStream`` and then
  ``chat.update`` of that message with the final answer.
* **Elsewhere** (no thread: a command's answer) — throttled ``chat.update`` of the placeholder
  with the text so far, at most once every ``UPDATE_INTERVAL`` seconds; ``finish`` replaces it
  with the final answer as before.

Exactly one reply, after a crash: the record says ``streaming`` and holds the stream's ``ts`` as
soon as Slack answered ``chat.startStream`` (no extra write before it: the request path stays
lean). A redelivery that finds a ``ts`` never starts a second stream: it lets the agent answer
again, then stops that message's stream (if Slack still has it open) and replaces its text with
the whole final answer (``chat.update``). A redelivery that finds no ``ts`` (a crash between
Slack's answer and the record) looks for the stream in the thread first: the bot's message after
the placeholder that carries no reply metadata (the queue runs one request per thread at a time,
so it can only be this request's).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.chat_stream import ChatStream

from insightmesh.conversation import replies
from insightmesh.conversation.models import RequestRecord
from insightmesh.conversation.requests import ConversationRequest
from insightmesh.observability import get_logger
from insightmesh.slack import thread_reply
from insightmesh.slack.client import call_slack, get_slack_client
from insightmesh.slack.formatting import to_mrkdwn
from insightmesh.slack.stream_buffer import StreamBuffer

STREAM_INTERVAL: Final = 2.0  # seconds between chat.appendStream calls of one answer (after the first)
STREAM_MIN_CHARS: Final = 40  # and at least this much new text per call
UPDATE_INTERVAL: Final = 1.0  # seconds between chat.update edits of a placeholder (the fallback)
MORE: Final = " …"

logger = get_logger("conversation_worker")


def supports_streaming(request: ConversationRequest, placeholder_ts: str | None) -> bool:
    """Slack streams replies in threads of DMs and channels; a command's answer has no thread."""
    return bool(placeholder_ts and request.thread_ts and request.channel_id[:1] in "CDG")


class ReplyStream:
    """Receives the answer's text (call it with each piece) and shows it in Slack (module docstring)."""

    def __init__(self, request: ConversationRequest, record: RequestRecord, channel: str,
                 placeholder_ts: str | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.request, self.record, self.channel, self.placeholder_ts = request, record, channel, placeholder_ts
        self.streaming = supports_streaming(request, placeholder_ts)
        self.buffer = StreamBuffer(interval=STREAM_INTERVAL if self.streaming else UPDATE_INTERVAL,
                                   min_chars=STREAM_MIN_CHARS if self.streaming else 1, clock=clock)
        self.stream: ChatStream | None = None
        self.ts: str | None = str(record.reply_ts) if record.reply_ts else None  # the stream's message
        self.failed = False  # Slack refused a part: the rest waits for finish()
        redelivered = (record.attempts or 1) > 1
        if redelivered and self.ts is None and placeholder_ts and \
                record.status in (replies.Status.PLACEHOLDER, replies.Status.STREAMING):
            self.ts = _find_stream(channel, request.thread_ts, placeholder_ts)
            if self.ts:
                replies.set_streaming(record, self.ts)
        self.recovered = self.ts is not None  # a previous delivery started this message's stream

    def __call__(self, piece: str) -> None:
        self.buffer.add(piece)
        if self.failed or self.recovered or not self.buffer.due():  # a recovered message is finished whole
            return
        part = self.buffer.take()
        if not part:
            return
        try:
            self._show(part)
        except SlackApiError as error:
            if self.streaming and self.ts is None:  # Slack would not start a stream here: edit the placeholder
                self.streaming = False
                self.buffer.interval = UPDATE_INTERVAL
            else:
                self.failed = True  # the final answer still replaces the message in finish()
            logger.warning("streamed part not shown", extra={"error": error.response.get("error"),
                                                            "request_id": self.request.request_id})

    @property
    def reply_ts(self) -> str | None:
        """The ts of the one reply message: the stream's, or the placeholder's."""
        return self.ts or self.placeholder_ts

    def _show(self, part: str) -> None:
        if not self.streaming:
            target = self.reply_ts
            assert target is not None
            call_slack(lambda c: c.chat_update(channel=self.channel, ts=target,
                                               text=to_mrkdwn(self.buffer.shown) + MORE))
            return
        if self.stream is None:
            self._start(part)
        else:
            stream = self.stream
            call_slack(lambda _c: stream.append(markdown_text=part))

    def _start(self, part: str) -> None:
        request = self.request
        extra: dict[str, Any] = {}
        if not request.channel_id.startswith("D"):  # outside a DM Slack needs the recipient
            extra = {"recipient_team_id": request.team_id, "recipient_user_id": request.user_id}
        assert request.thread_ts is not None
        thread_ts = request.thread_ts
        self.stream = get_slack_client().chat_stream(channel=self.channel, thread_ts=thread_ts, buffer_size=1,
                                                     **extra)
        stream = self.stream
        call_slack(lambda _c: stream.append(markdown_text=part))
        self.ts = stream.ts
        if self.ts:
            replies.set_streaming(self.record, self.ts)
            self._delete_placeholder()

    def _delete_placeholder(self) -> None:
        ts = self.placeholder_ts
        if not ts or ts == self.ts:
            return
        try:
            call_slack(lambda c: c.chat_delete(channel=self.channel, ts=ts))
        except SlackApiError as error:
            if error.response.get("error") != "message_not_found":  # deleted by the delivery before
                raise

    def _stop_quietly(self, ts: str) -> None:
        """Stop a stream a previous delivery left open; Slack refuses one that is not streaming."""
        try:
            call_slack(lambda c: c.chat_stopStream(channel=self.channel, ts=ts))
        except SlackApiError as error:
            logger.info("stream already stopped", extra={"error": error.response.get("error")})

    def finish(self, final: str, *, agent_mode: str | None) -> str | None:
        """Show the final answer (already mrkdwn) on the one reply message; its ts."""
        if self.stream is not None and self.ts:
            stream = self.stream
            try:
                call_slack(lambda _c: stream.stop())
            except (SlackApiError, SlackRequestError) as error:
                logger.warning("stream not stopped", extra={"error": str(error)})
        elif self.recovered and self.ts:
            self._stop_quietly(self.ts)
            self._delete_placeholder()
        target = self.reply_ts
        if target is not None:
            thread_reply.show_answer(self.channel, target, final, self.request.request_id, agent_mode=agent_mode)
        return target


def _find_stream(channel: str, thread_ts: str | None, placeholder_ts: str) -> str | None:
    """The bot's message after the placeholder without reply metadata: a stream a crash left unrecorded."""
    if not thread_ts:
        return None
    response = call_slack(lambda c: c.conversations_replies(channel=channel, ts=thread_ts,
                                                            include_all_metadata=True, limit=200))
    for message in response.get("messages") or []:
        ts = str(message.get("ts") or "")
        if message.get("bot_id") and not message.get("metadata") and float(ts or 0) > float(placeholder_ts):
            return ts
    return None
