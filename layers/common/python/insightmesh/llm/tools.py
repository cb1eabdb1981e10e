"""Tool calling in the LLM context: the tool specs a model is offered, the calls it asks for,
the results it is given back, and the client port that speaks them.

A conversation with tools is a sequence of ``Turn``: plain ``ChatMessage`` turns, a
``ToolCallTurn`` (the assistant asking for one or more tools) and one ``ToolResultTurn`` per call
(what the tool returned). Each provider adapter translates them to its wire format:

* OpenAI-compatible: ``tools`` / ``tool_choice``, ``message.tool_calls`` and ``role: tool``
  messages with ``tool_call_id``;
* Bedrock Converse: ``toolConfig.tools[].toolSpec``, ``toolUse`` and ``toolResult`` content blocks;
* offline: a deterministic plan (see ``insightmesh.llm.offline``), so every path runs without keys.

The agent loop that drives these turns is ``insightmesh.tools.loop``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from insightmesh.llm.base import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    ChatMessage,
    Completion,
    LlmClient,
    Usage,
    check_request,
    estimate_tokens,
    last_user_message,
)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model sees it: a name, what it does, and its arguments' JSON Schema."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for ``name`` with ``arguments`` (already parsed from the provider's JSON)."""

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolCallTurn:
    """The assistant's turn that asked for tools (with any text it wrote before asking)."""

    calls: tuple[ToolCall, ...]
    text: str = ""


@dataclass(frozen=True, slots=True)
class ToolResultTurn:
    """What one tool returned for the call ``call_id`` (``is_error``: it failed; the text says why)."""

    call_id: str
    name: str
    content: str
    is_error: bool = False


Turn = ChatMessage | ToolCallTurn | ToolResultTurn


@dataclass(frozen=True, slots=True)
class ToolCompletion:
    """One model step: either ``tool_calls`` to run (then ``text`` may be empty), or the answer."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    model: str
    provider: str
    finish_reason: str | None = None


@runtime_checkable
class ToolCallingLlmClient(LlmClient, Protocol):
    """A provider that can offer tools to the model. Errors are those of ``LlmClient.complete``."""

    def complete_with_tools(
        self,
        turns: Sequence[Turn],
        *,
        tools: Sequence[ToolSpec],
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> ToolCompletion:
        ...


# -- helpers the adapters share (additive to the contract) -------------------------------------------

# A call whose arguments the provider could not parse as a JSON object (OpenAI sends them as a JSON
# string, and models do not always write valid JSON) carries its raw text under this key; the loop
# feeds it back to the model as an error result instead of crashing or running the tool.
INVALID_ARGUMENTS_KEY = "__invalid_arguments__"


def parse_arguments(raw: object) -> Mapping[str, Any]:
    """A call's ``arguments`` from the wire: a JSON object (or its text); anything else is kept,
    bounded, under ``INVALID_ARGUMENTS_KEY``."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}  # a function without parameters: OpenAI sends "" or "{}"
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return {INVALID_ARGUMENTS_KEY: raw[:500]}
        if isinstance(value, dict):
            return value
    return {INVALID_ARGUMENTS_KEY: str(raw)[:500]}


def check_turns(turns: Sequence[Turn], *, max_tokens: int, temperature: float) -> None:
    """``check_request`` for a conversation with tool turns (a programming error: ValueError)."""
    if not turns:
        raise ValueError("complete_with_tools() needs at least one turn")
    for turn in turns:
        if not isinstance(turn, ChatMessage | ToolCallTurn | ToolResultTurn):
            raise TypeError(f"turns must be ChatMessage, ToolCallTurn or ToolResultTurn, got {type(turn).__name__}")
    check_request([ChatMessage.user("-")], max_tokens=max_tokens, temperature=temperature)


def turn_text(turn: Turn) -> str:
    """What a turn says, as text (for token estimates and for a provider offered no tools)."""
    if isinstance(turn, ChatMessage):
        return turn.content
    if isinstance(turn, ToolCallTurn):
        calls = "; ".join(f"{call.name}({json.dumps(dict(call.arguments), sort_keys=True)})" for call in turn.calls)
        return f"{turn.text}\n[called tools: {calls}]".strip()
    prefix = "error from" if turn.is_error else "result of"
    return f"[{prefix} {turn.name}]\n{turn.content}"


def estimate_turn_tokens(turns: Sequence[Turn], system: str | None, tools: Sequence[ToolSpec] = ()) -> int:
    schema = sum(len(json.dumps(dict(spec.parameters))) + len(spec.description) for spec in tools)
    return (estimate_tokens(system or "") + schema // 4
            + sum(estimate_tokens(turn_text(turn)) for turn in turns))


def as_plain_messages(turns: Sequence[Turn]) -> list[ChatMessage]:
    """The conversation with its tool turns written out as text: what a provider is sent when no
    tools are offered (the loop's last call, asking for an answer). Bedrock, for one, refuses
    ``toolUse``/``toolResult`` blocks in a request without ``toolConfig``; text is accepted by all."""
    messages: list[ChatMessage] = []
    for turn in turns:
        if isinstance(turn, ChatMessage):
            messages.append(turn)
        elif isinstance(turn, ToolCallTurn):
            messages.append(ChatMessage.assistant(turn_text(turn)))
        else:
            messages.append(ChatMessage.user(turn_text(turn)))
    return messages


def last_user_text(turns: Sequence[Turn]) -> str:
    return last_user_message([turn for turn in turns if isinstance(turn, ChatMessage)])


def completion_with_tools(completion: Completion) -> ToolCompletion:
    """A plain ``Completion`` as a ``ToolCompletion`` that calls no tool."""
    return ToolCompletion(text=completion.text, tool_calls=(), usage=completion.usage, model=completion.model,
                          provider=completion.provider, finish_reason=completion.finish_reason)
