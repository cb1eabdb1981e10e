"""The vocabulary of the LLM context: messages, usage, completions, the client port and its errors.

Every provider adapter (``offline``, ``openai``, ``bedrock``) implements ``LlmClient``; callers
(the conversation worker, agents) depend on this module only and get their client from
``insightmesh.llm.get_llm_client()``.

Errors are domain errors, each with a short ``user_message`` that is safe to post back in Slack:

* ``LlmUnavailableError`` — the provider could not answer: transient failures (429, 5xx,
  timeouts, connection errors) still failing after the bounded retries, its circuit breaker is
  open, or it answered something that is not a completion. Try again later.
* ``LlmRequestError`` — the provider refused this request (a 4xx other than 429: bad request,
  context too long, authentication). Retrying the same request will not help.
* ``LlmConfigurationError`` — the environment does not describe a usable provider (also a
  ``insightmesh.config.ConfigurationError``, so cold-start handling treats it the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypedDict, get_args, runtime_checkable

from insightmesh.config import ConfigurationError

Role = Literal["system", "user", "assistant"]
ROLES: Final[frozenset[str]] = frozenset(get_args(Role))

DEFAULT_MAX_TOKENS: Final = 1024
DEFAULT_TEMPERATURE: Final = 0.2
MAX_TEMPERATURE: Final = 2.0
CHARS_PER_TOKEN: Final = 4

UNAVAILABLE_MESSAGE: Final = "The AI service is temporarily unavailable. Please try again in a few minutes."
REFUSED_MESSAGE: Final = "The AI service could not process this request."
MISCONFIGURED_MESSAGE: Final = "The AI service is not configured correctly. Please tell an administrator."


class ChatMessageDict(TypedDict):
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation. ``role`` is ``system``, ``user`` or ``assistant``."""

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"ChatMessage.role must be one of {sorted(ROLES)}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError("ChatMessage.content must be a str")

    @classmethod
    def system(cls, content: str) -> ChatMessage:
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> ChatMessage:
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str) -> ChatMessage:
        return cls("assistant", content)

    def to_dict(self) -> ChatMessageDict:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one completion. ``estimated`` is true when the provider did not report them."""

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """The assistant's reply: its text, the tokens it cost, and who produced it."""

    text: str
    usage: Usage
    model: str
    provider: str
    finish_reason: str | None = None


@runtime_checkable
class LlmClient(Protocol):
    """A chat-completion provider. Implementations are thread-safe and reused for the process."""

    @property
    def name(self) -> str:
        """The provider name: ``offline``, ``openai``, ``anthropic`` or ``bedrock``."""
        ...

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Completion:
        """Answer the conversation ``messages`` (oldest first), with an optional system prompt.

        Raises ``LlmUnavailableError``, ``LlmRequestError`` or ``LlmConfigurationError``.
        """
        ...


TextSink = Callable[[str], None]
"""Receives a streamed answer's text, piece by piece, in order (each piece is new text)."""


@runtime_checkable
class StreamingLlmClient(LlmClient, Protocol):
    """A provider that can also stream: ``on_text`` gets the answer's text as the model writes it,
    and the returned ``Completion`` (whole text, usage) is the same ``complete`` would return.

    A transient failure before any text was streamed is retried like ``complete``'s; after text
    was streamed it is not (the reader has seen it): ``LlmUnavailableError`` is raised.
    """

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        on_text: TextSink,
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Completion:
        ...


def stream_or_complete(
    client: LlmClient,
    messages: Sequence[ChatMessage],
    *,
    on_text: TextSink,
    system: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
) -> Completion:
    """Stream through ``client`` when it can; otherwise complete and hand ``on_text`` the whole text."""
    if isinstance(client, StreamingLlmClient):
        return client.stream(messages, on_text=on_text, system=system, max_tokens=max_tokens,
                             temperature=temperature)
    completion = client.complete(messages, system=system, max_tokens=max_tokens, temperature=temperature)
    if completion.text:
        on_text(completion.text)
    return completion


class LlmError(Exception):
    """Base of the LLM context's errors; ``user_message`` is safe to show to the person asking."""

    default_user_message: str = UNAVAILABLE_MESSAGE

    def __init__(self, message: str, *, user_message: str | None = None, provider: str | None = None) -> None:
        super().__init__(message)
        self.user_message = user_message or self.default_user_message
        self.provider = provider


class LlmUnavailableError(LlmError):
    """The provider cannot answer now (retries exhausted, circuit open, or a garbled answer).

    ``retry_after`` is the provider's or the breaker's advice in seconds, when known.
    """

    default_user_message = UNAVAILABLE_MESSAGE

    def __init__(
        self,
        message: str,
        *,
        user_message: str | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, user_message=user_message, provider=provider)
        self.retry_after = retry_after


class LlmRequestError(LlmError):
    """The provider refused the request (a 4xx other than 429); retrying it would not help."""

    default_user_message = REFUSED_MESSAGE

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        user_message: str | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message, user_message=user_message, provider=provider)
        self.status = status
        self.code = code


class LlmConfigurationError(LlmError, ConfigurationError):
    """The LLM settings are missing or invalid; the message names the environment variable."""

    default_user_message = MISCONFIGURED_MESSAGE


def check_request(messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float) -> None:
    """Reject a request no provider could answer (a programming error, hence ValueError)."""
    if not messages:
        raise ValueError("complete() needs at least one message")
    for message in messages:
        if not isinstance(message, ChatMessage):
            raise TypeError(f"messages must be ChatMessage instances, got {type(message).__name__}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise ValueError(f"temperature must be between 0 and {MAX_TEMPERATURE}, got {temperature}")


def estimate_tokens(text: str) -> int:
    """A provider-independent estimate: about four characters per token."""
    return len(text) // CHARS_PER_TOKEN


def estimate_prompt_tokens(messages: Sequence[ChatMessage], system: str | None = None) -> int:
    return estimate_tokens(system or "") + sum(estimate_tokens(message.content) for message in messages)


def last_user_message(messages: Sequence[ChatMessage]) -> str:
    """The content of the most recent ``user`` message, or an empty string."""
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return ""
