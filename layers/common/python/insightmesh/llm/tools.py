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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from insightmesh.llm.base import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, ChatMessage, LlmClient, Usage


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
