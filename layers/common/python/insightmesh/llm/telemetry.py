"""A span for every LLM call, following the OpenTelemetry GenAI semantic conventions — in one place.

Each adapter class is decorated with :func:`instrumented`, which wraps its ``complete``,
``stream`` and ``complete_with_tools``: the span covers the whole call (retries and the breaker
included, a stream from its request to its last piece). A call an adapter makes to itself (a
``complete_with_tools`` without tools falls back to ``complete``; the offline ``stream`` calls
``complete``) stays inside the outer span instead of opening a second one.

* **Name** ``"{gen_ai.operation.name} {gen_ai.request.model}"`` (``chat gpt-4o-mini``), kind CLIENT.
* **Attributes**: ``gen_ai.operation.name`` (``chat``), ``gen_ai.provider.name`` (``openai``,
  ``anthropic``, ``aws.bedrock``, ``insightmesh.offline``), ``gen_ai.request.model``,
  ``gen_ai.request.max_tokens``, ``gen_ai.request.temperature``, ``server.address``/``server.port``
  (OpenAI-compatible servers); when it answered ``gen_ai.response.model``,
  ``gen_ai.usage.input_tokens``/``output_tokens`` and ``gen_ai.response.finish_reasons``; when it
  failed ``error.type`` (the provider's error code or HTTP status for a refusal, else the exception's
  class: ``LlmUnavailableError``, ``ValueError``...) and the span's status is ERROR.
  ``insightmesh.llm.stream`` marks a streamed call, ``insightmesh.llm.tools`` counts the tools
  offered, ``insightmesh.llm.usage_estimated`` says the tokens are estimated (the provider sent none).
* **Content** (``gen_ai.system_instructions``, ``gen_ai.input.messages``, ``gen_ai.output.messages``,
  JSON strings in the conventions' parts shape, tool calls and results included) only when
  :func:`insightmesh.tracing.capture_message_content` is true, each text passed through
  :func:`insightmesh.observability.redact_text` (tool arguments through ``redact``). Off, no prompt
  or answer text reaches a span.

Off (tracing disabled) the wrapper costs one call and one check; nothing is built. Attributes are
built only for a span that records (a sampled-out span builds nothing either).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from functools import wraps
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from insightmesh import tracing
from insightmesh.llm.base import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, ChatMessage, LlmRequestError
from insightmesh.llm.tools import ToolCall, ToolCallTurn, ToolResultTurn

OPERATION: Final = "chat"
METHODS: Final = ("complete", "stream", "complete_with_tools")
# The conventions' well-known gen_ai.provider.name values where the adapter's name differs.
PROVIDER_NAMES: Final = {"bedrock": "aws.bedrock", "offline": "insightmesh.offline"}

T = TypeVar("T", bound=type)
_inside: ContextVar[bool] = ContextVar("insightmesh_llm_span", default=False)


def instrumented(cls: T) -> T:
    """Wrap ``cls``'s own ``complete``/``stream``/``complete_with_tools`` with the GenAI span."""
    for name in METHODS:
        method = cls.__dict__.get(name)
        if method is not None:
            setattr(cls, name, _traced(method, name))
    return cls


def _traced(method: Callable[..., Any], name: str) -> Callable[..., Any]:
    @wraps(method)
    def wrapper(client: Any, *args: Any, **kwargs: Any) -> Any:
        if not tracing.enabled() or _inside.get():
            return method(client, *args, **kwargs)
        token = _inside.set(True)
        try:
            return _call(method, name, client, args, kwargs)
        finally:
            _inside.reset(token)

    return wrapper


def _call(method: Callable[..., Any], name: str, client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    model = str(getattr(client, "model", "") or client.name)
    with tracing.span(f"{OPERATION} {model}", kind="client") as span:
        recording = span.is_recording()
        if recording:
            span.set_attributes(request_attributes(client, model, name, args, kwargs))
        try:
            result = method(client, *args, **kwargs)
        except Exception as error:
            span.set_attribute("error.type", error_type(error))
            raise
        if recording:
            span.set_attributes(response_attributes(result))
        return result


def provider_name(client: Any) -> str:
    name = str(client.name)
    return PROVIDER_NAMES.get(name, name)


def error_type(error: BaseException) -> str:
    if isinstance(error, LlmRequestError):
        return error.code or str(error.status)
    return type(error).__qualname__


def request_attributes(client: Any, model: str, method: str, args: Sequence[Any],
                       kwargs: Mapping[str, Any]) -> dict[str, tracing.AttributeValue]:
    attributes: dict[str, tracing.AttributeValue] = {
        "gen_ai.operation.name": OPERATION,
        "gen_ai.provider.name": provider_name(client),
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": int(kwargs.get("max_tokens", DEFAULT_MAX_TOKENS)),
        "gen_ai.request.temperature": float(kwargs.get("temperature", DEFAULT_TEMPERATURE)),
    }
    base_url = getattr(client, "base_url", None)
    if isinstance(base_url, str):
        parts = urlsplit(base_url)
        if parts.hostname:
            attributes["server.address"] = parts.hostname
            attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    if method == "stream":
        attributes["insightmesh.llm.stream"] = True
    if method == "complete_with_tools":
        attributes["insightmesh.llm.tools"] = len(kwargs.get("tools") or ())
    if tracing.capture_message_content():
        conversation = args[0] if args else kwargs.get("messages", kwargs.get("turns", ()))
        attributes["gen_ai.input.messages"] = _json([_message(turn) for turn in conversation])
        system = kwargs.get("system")
        if system:
            attributes["gen_ai.system_instructions"] = _json([_text(system)])
    return attributes


def response_attributes(result: Any) -> dict[str, tracing.AttributeValue]:
    """What a ``Completion`` or ``ToolCompletion`` tells: the model, tokens, why it stopped (and its
    text and tool calls, with content capture on)."""
    attributes: dict[str, tracing.AttributeValue] = {
        "gen_ai.response.model": result.model,
        "gen_ai.usage.input_tokens": result.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": result.usage.completion_tokens,
    }
    if result.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [result.finish_reason]
    if result.usage.estimated:
        attributes["insightmesh.llm.usage_estimated"] = True
    if tracing.capture_message_content():
        parts = [_text(result.text)] if result.text else []
        parts.extend(_tool_call(call) for call in getattr(result, "tool_calls", ()))
        attributes["gen_ai.output.messages"] = _json(
            [{"role": "assistant", "parts": parts, "finish_reason": result.finish_reason or ""}])
    return attributes


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# Content is built only with capture on; the redaction rules (and their logging imports) load then.
def _text(content: str) -> dict[str, Any]:
    from insightmesh.observability import redact_text

    return {"type": "text", "content": redact_text(content)}


def _tool_call(call: ToolCall) -> dict[str, Any]:
    from insightmesh.observability import redact

    return {"type": "tool_call", "id": call.id, "name": call.name, "arguments": redact(dict(call.arguments))}


def _message(turn: Any) -> dict[str, Any]:
    """One input message in the conventions' shape: a role and its parts."""
    if isinstance(turn, ChatMessage):
        return {"role": turn.role, "parts": [_text(turn.content)]}
    if isinstance(turn, ToolCallTurn):
        parts = [_text(turn.text)] if turn.text else []
        return {"role": "assistant", "parts": parts + [_tool_call(call) for call in turn.calls]}
    if isinstance(turn, ToolResultTurn):
        return {"role": "tool", "parts": [{"type": "tool_call_response", "id": turn.call_id,
                                           "result": _text(turn.content)["content"]}]}
    return {"role": "user", "parts": [_text(str(turn))]}


__all__ = ["PROVIDER_NAMES", "error_type", "instrumented", "provider_name", "request_attributes",
           "response_attributes"]
