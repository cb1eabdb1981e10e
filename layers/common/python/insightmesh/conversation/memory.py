"""Thread memory: a bounded window of recent turns, the older ones folded into a summary.

The worker never re-reads Slack's history: the window lives in the thread item. When a turn
pushes the window past ``WINDOW_MESSAGES``, the oldest messages are summarised (with the previous
summary) by the LLM and dropped. If the summary cannot be made, they are dropped anyway and the
old summary kept: memory is best effort, the reply is not.
"""

from __future__ import annotations

from typing import Final

from insightmesh.llm.base import ChatMessage, ChatMessageDict, LlmClient, LlmError
from insightmesh.observability import get_logger

WINDOW_MESSAGES: Final = 12
MAX_MESSAGE_CHARS: Final = 4000
SUMMARY_PROMPT: Final = (
    "Summarize the conversation below in at most five sentences, keeping names, decisions, numbers "
    "and open questions. Start from the previous summary if there is one."
)


def as_messages(history: list[ChatMessageDict]) -> list[ChatMessage]:
    return [ChatMessage(item["role"], item["content"]) for item in history if item.get("role") in ("user", "assistant")]


def remember(
    history: list[ChatMessageDict],
    summary: str | None,
    user_text: str,
    reply_text: str,
    llm: LlmClient,
) -> tuple[list[ChatMessageDict], str | None]:
    """The window and summary after one more turn."""
    window: list[ChatMessageDict] = [
        *history,
        {"role": "user", "content": user_text[:MAX_MESSAGE_CHARS]},
        {"role": "assistant", "content": reply_text[:MAX_MESSAGE_CHARS]},
    ]
    if len(window) <= WINDOW_MESSAGES:
        return window, summary
    overflow, window = window[: len(window) - WINDOW_MESSAGES], window[len(window) - WINDOW_MESSAGES:]
    transcript = "\n".join(f"{m['role']}: {m['content']}" for m in overflow)
    if summary:
        transcript = f"Previous summary: {summary}\n\n{transcript}"
    try:
        summary = llm.complete([ChatMessage.user(transcript)], system=SUMMARY_PROMPT, max_tokens=300).text
    except LlmError as error:
        get_logger().warning("thread summary failed; older turns dropped", extra={"error": type(error).__name__})
    return window, summary
