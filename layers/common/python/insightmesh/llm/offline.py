"""The offline LLM: no network, no key, the same answer for the same input.

It is the development default (``LLM_PROVIDER=offline``; production refuses it) and what tests
use to run a conversation end to end (``stream`` hands the same answer over in pieces of three
words). Every reply starts with ``[offline LLM]`` so nobody can take it for a model's answer:

* normally: ``[offline LLM] You said: "<first 200 characters of the last user message>"
  (<n> messages in the conversation)``;
  ``<n>`` counts every message passed, whatever its role;
* when the system prompt asks for a summary (it, or a ``system`` message, contains ``summar``, any case):
  ``[offline LLM] Summary of <n> messages (<w> words): <first 200 characters of the user
  messages, joined>``.

Usage is computed, not measured (``estimated`` is true): prompt tokens are the characters of the
system prompt and every message divided by four (each floored), completion tokens those of the
reply. A reply longer than ``max_tokens`` tokens is cut to ``max_tokens * 4`` characters and its
``finish_reason`` is ``length`` (otherwise ``stop``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from insightmesh.llm.base import (
    CHARS_PER_TOKEN,
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    ChatMessage,
    Completion,
    TextSink,
    Usage,
    check_request,
    estimate_prompt_tokens,
    estimate_tokens,
    last_user_message,
)

OFFLINE_PREFIX: Final = "[offline LLM]"
OFFLINE_MODEL: Final = "offline"
ECHO_CHARS: Final = 200
STREAM_WORDS: Final = 3  # words per streamed piece


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int = ECHO_CHARS) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class OfflineClient:
    """A deterministic ``LlmClient`` for development and tests (see the module docstring)."""

    name: Final = "offline"

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Completion:
        check_request(messages, max_tokens=max_tokens, temperature=temperature)
        instructions = " ".join(
            [system or ""] + [message.content for message in messages if message.role == "system"]
        )
        count = _plural(len(messages), "message")
        if "summar" in instructions.lower():
            said = " ".join(message.content for message in messages if message.role == "user")
            words = len(said.split())
            text = f"{OFFLINE_PREFIX} Summary of {count} ({_plural(words, 'word')}): {_clip(said)}"
        else:
            text = f'{OFFLINE_PREFIX} You said: "{_clip(last_user_message(messages))}" ({count} in the conversation)'
        finish_reason = "stop"
        if estimate_tokens(text) > max_tokens:
            text = text[: max_tokens * CHARS_PER_TOKEN]
            finish_reason = "length"
        usage = Usage(
            prompt_tokens=estimate_prompt_tokens(messages, system),
            completion_tokens=estimate_tokens(text),
            estimated=True,
        )
        return Completion(
            text=text, usage=usage, model=OFFLINE_MODEL, provider=self.name, finish_reason=finish_reason
        )

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        on_text: TextSink,
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Completion:
        """The same answer as ``complete``, handed to ``on_text`` in pieces of a few words."""
        completion = self.complete(messages, system=system, max_tokens=max_tokens, temperature=temperature)
        for piece in stream_pieces(completion.text):
            on_text(piece)
        return completion


def stream_pieces(text: str, words: int = STREAM_WORDS) -> list[str]:
    """``text`` cut after every ``words`` words (whitespace kept), so the pieces join back to it."""
    tokens = re.findall(r"\S+\s*|\s+", text)
    return ["".join(tokens[i:i + words]) for i in range(0, len(tokens), words)]
