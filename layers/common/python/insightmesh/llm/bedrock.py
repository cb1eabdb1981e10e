"""Amazon Bedrock through the Converse API (``bedrock-runtime``, ``POST /model/{modelId}/converse``).

Request: ``modelId``; ``messages`` as ``[{"role": "user"|"assistant", "content": [{"text": ...}]}]``
(consecutive turns of the same role merged into one message, blank ones left out: Converse
rejects both); the system prompt and any ``system`` messages as ``system=[{"text": ...}]``;
``inferenceConfig={"maxTokens", "temperature"}``. Answer: the text blocks of
``output.message.content`` joined, ``usage.inputTokens``/``usage.outputTokens``, ``stopReason``.

boto3 is imported on first use (through ``insightmesh.aws.client``), not when this module is,
so a function that never calls Bedrock does not pay for it at cold start. The client is created
once per process with the configured connect/read timeouts and botocore's own retries off
(one attempt per call): the retries are ``insightmesh.resilience``'s, bounded and behind the
``llm:bedrock`` breaker, exactly as for the OpenAI-compatible client. Throttling
(``ThrottlingException``, ``ModelNotReadyException``), ``ModelTimeoutException``, any 429/5xx,
timeouts and connection errors are retried; other errors (``ValidationException``,
``AccessDeniedException``, ``ResourceNotFoundException``, ...) raise ``LlmRequestError`` at once.

Streaming (``stream``) is ``ConverseStream`` (boto3 ``converse_stream``, same request): the
``stream`` of events holds ``contentBlockDelta.delta.text`` pieces (handed to ``on_text`` as they
come), ``messageStop.stopReason`` and ``metadata.usage``. An error inside the stream (botocore's
``EventStreamError``, a ``ClientError``: ``throttlingException``, ``modelStreamErrorException``,
...) is retried only while no text has been streamed yet.

Tool calling (``complete_with_tools``) is Converse with ``toolConfig: {tools: [{toolSpec: {name,
description, inputSchema: {json: <JSON Schema>}}}], toolChoice: {auto: {}}}``. The model asks for
tools with ``stopReason: tool_use`` and ``toolUse`` blocks (``toolUseId``, ``name``, ``input``) in
its message; they go back in the assistant message as they came, and the results in the next user
message as ``toolResult`` blocks (``toolUseId``, ``content: [{text}]``, ``status: success|error``).
Offered no tools (the loop's last call), the tool turns are sent as text: Converse refuses
``toolUse``/``toolResult`` blocks in a request without ``toolConfig``. Same retries and breaker.

The endpoint is AWS's unless ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` (or ``AWS_ENDPOINT_URL``)
says otherwise — that is how tests point it at a loopback stand-in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypedDict

from insightmesh.llm.base import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    ChatMessage,
    Completion,
    LlmUnavailableError,
    TextSink,
    Usage,
    check_request,
    estimate_prompt_tokens,
    estimate_tokens,
)
from insightmesh.llm.resilient import C, Refusal, default_policy, run_with_resilience
from insightmesh.llm.telemetry import instrumented
from insightmesh.llm.tools import (
    ToolCall,
    ToolCallTurn,
    ToolCompletion,
    ToolSpec,
    Turn,
    as_plain_messages,
    check_turns,
    completion_with_tools,
    estimate_turn_tokens,
    parse_arguments,
)
from insightmesh.observability import get_logger
from insightmesh.resilience import CircuitBreaker, RetryableError, Timeouts, parse_retry_after

DEFAULT_MODEL: Final = "anthropic.claude-3-haiku-20240307-v1:0"
DEFAULT_TIMEOUTS: Final = Timeouts(connect=3.0, read=30.0)
RETRYABLE_CODES: Final = frozenset(
    {
        "ThrottlingException",
        "ModelNotReadyException",
        "ModelTimeoutException",
        "InternalServerException",
        "ServiceUnavailableException",
    }
)


class TextBlock(TypedDict):
    text: str


class ConverseMessage(TypedDict):
    role: str
    content: list[TextBlock]


def bedrock_runtime(timeouts: Timeouts) -> Any:
    """The process-wide ``bedrock-runtime`` client (boto3 imported here, on first use)."""
    from insightmesh import aws

    # One call per attempt: the resilience policy around it does the retrying.
    return aws.client("bedrock-runtime", timeouts=timeouts, attempts=1)


def converse_request(
    messages: Sequence[ChatMessage], system: str | None
) -> tuple[list[ConverseMessage], list[TextBlock]]:
    """``messages`` and ``system`` in Converse shape (see the module docstring)."""
    system_blocks: list[TextBlock] = [{"text": system}] if system and system.strip() else []
    conversation: list[ConverseMessage] = []
    for message in messages:
        if not message.content.strip():
            continue
        if message.role == "system":
            system_blocks.append({"text": message.content})
        elif conversation and conversation[-1]["role"] == message.role:
            conversation[-1]["content"].append({"text": message.content})
        else:
            conversation.append({"role": message.role, "content": [{"text": message.content}]})
    if not conversation:
        raise ValueError("Bedrock Converse needs at least one non-blank user or assistant message")
    return conversation, system_blocks


def _count(block: Any, key: str) -> int | None:
    value = block.get(key) if isinstance(block, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_converse_response(
    response: Any, *, model: str, messages: Sequence[ChatMessage], system: str | None
) -> Completion:
    """A ``Completion`` from a Converse response; LlmUnavailableError if it holds no message."""
    output = response.get("output") if isinstance(response, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        raise LlmUnavailableError("bedrock answered without output.message.content", provider="bedrock")
    text = "".join(
        block["text"] for block in content if isinstance(block, dict) and isinstance(block.get("text"), str)
    )
    usage_block = response.get("usage")
    input_tokens, output_tokens = _count(usage_block, "inputTokens"), _count(usage_block, "outputTokens")
    if input_tokens is None or output_tokens is None:
        usage = Usage(estimate_prompt_tokens(messages, system), estimate_tokens(text), estimated=True)
    else:
        usage = Usage(prompt_tokens=input_tokens, completion_tokens=output_tokens)
    stop_reason = response.get("stopReason")
    return Completion(
        text=text,
        usage=usage,
        model=model,
        provider="bedrock",
        finish_reason=stop_reason if isinstance(stop_reason, str) else None,
    )


@instrumented
class BedrockClient:
    """``LlmClient`` for Bedrock's Converse API (see the module docstring)."""

    name: Final = "bedrock"

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        breaker: CircuitBreaker | None = None,
        breaker_failures: int = 3,
        breaker_cool_down: float = 30.0,
        attempts: int = 3,
        max_retry_after: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.timeouts = timeouts
        self.breaker, self.retry = default_policy(
            "llm:bedrock",
            breaker=breaker,
            breaker_failures=breaker_failures,
            breaker_cool_down=breaker_cool_down,
            attempts=attempts,
            max_retry_after=max_retry_after,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"BedrockClient(model={self.model!r})"

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Completion:
        return self._call(messages, system, max_tokens, temperature, None)

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        on_text: TextSink,
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Completion:
        """ConverseStream (see the module docstring); ``on_text`` gets each piece of the answer."""
        return self._call(messages, system, max_tokens, temperature, on_text)

    def _call(
        self,
        messages: Sequence[ChatMessage],
        system: str | None,
        max_tokens: int,
        temperature: float,
        on_text: TextSink | None,
    ) -> Completion:
        check_request(messages, max_tokens=max_tokens, temperature=temperature)
        conversation, system_blocks = converse_request(messages, system)
        request: dict[str, Any] = {
            "modelId": self.model,
            "messages": conversation,
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": temperature},
        }
        if system_blocks:
            request["system"] = system_blocks
        client = bedrock_runtime(self.timeouts)
        logger = get_logger()
        log = {"provider": self.name, "model": self.model, "stream": on_text is not None}
        streamed = False

        def call() -> Completion:
            nonlocal streamed
            if on_text is None:
                response = client.converse(**request)
                return parse_converse_response(response, model=self.model, messages=messages, system=system)
            parts: list[str] = []
            final: dict[str, Any] = {}
            for event in client.converse_stream(**request).get("stream") or ():
                piece = stream_event_text(event, final)
                if piece:
                    streamed = True
                    parts.append(piece)
                    on_text(piece)
            return converse_stream_completion("".join(parts), final, model=self.model, messages=messages,
                                              system=system)

        def attempt(attempts: int) -> Completion | Refusal:
            return self._attempt(call, attempts, log, streamed=lambda: streamed)

        return run_with_resilience(self.name, self.breaker, self.retry, attempt, log=log, logger=logger)

    def _attempt(self, call: Callable[[], C], attempts: int, log: dict[str, Any], *,
                 streamed: Callable[[], bool] = lambda: False) -> C | Refusal:
        """One call to Bedrock, its failures classified: retried, refused, or unavailable."""
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        logger = get_logger()
        try:
            return call()
        except ClientError as error:
            details = error.response.get("Error", {})
            metadata = error.response.get("ResponseMetadata", {})
            code = str(details.get("Code") or "Unknown")
            status = int(metadata.get("HTTPStatusCode") or 0)
            if streamed():
                raise LlmUnavailableError(f"bedrock stream broke off: {code}", provider=self.name) from error
            if code[:1].upper() + code[1:] in RETRYABLE_CODES or code == "modelStreamErrorException" \
                    or status == 429 or status >= 500:
                headers = metadata.get("HTTPHeaders") or {}
                retry_after = parse_retry_after(headers.get("retry-after"))
                logger.warning(
                    "llm attempt refused",
                    extra={**log, "attempt": attempts, "status": status, "code": code, "retry_after": retry_after},
                )
                raise RetryableError(f"bedrock answered {code} (HTTP {status})", retry_after=retry_after) from error
            # Returned, not raised: the service is up and said no, which is not a breaker failure.
            return Refusal(status, code, f"bedrock refused the request: {code} (HTTP {status})")
        except (HTTPClientError, BotoConnectionError) as error:
            if streamed():
                raise LlmUnavailableError("bedrock stream broke off", provider=self.name) from error
            logger.warning("llm attempt failed", extra={**log, "attempt": attempts, "error": type(error).__name__})
            raise RetryableError(f"bedrock unreachable ({type(error).__name__})") from error
        except BotoCoreError as error:  # credentials, region, parameter validation: not transient
            raise LlmUnavailableError(
                f"bedrock call failed ({type(error).__name__})", provider=self.name
            ) from error


    def complete_with_tools(
        self,
        turns: Sequence[Turn],
        *,
        tools: Sequence[ToolSpec],
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> ToolCompletion:
        """One Converse step with ``toolConfig`` (see the module docstring)."""
        check_turns(turns, max_tokens=max_tokens, temperature=temperature)
        if not tools:  # Converse refuses toolUse/toolResult blocks without a toolConfig: text instead
            return completion_with_tools(self.complete(as_plain_messages(turns), system=system,
                                                       max_tokens=max_tokens, temperature=temperature))
        conversation, system_blocks = converse_tool_request(turns, system)
        request: dict[str, Any] = {
            "modelId": self.model,
            "messages": conversation,
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": temperature},
            "toolConfig": {"tools": [{"toolSpec": {"name": spec.name, "description": spec.description,
                                                   "inputSchema": {"json": dict(spec.parameters)}}}
                                     for spec in tools],
                           "toolChoice": {"auto": {}}},
        }
        if system_blocks:
            request["system"] = system_blocks
        client = bedrock_runtime(self.timeouts)
        log = {"provider": self.name, "model": self.model, "tools": len(tools)}

        def call() -> ToolCompletion:
            return parse_converse_tool_response(client.converse(**request), model=self.model, turns=turns,
                                                system=system, tools=tools)

        def attempt(attempts: int) -> ToolCompletion | Refusal:
            return self._attempt(call, attempts, log)

        return run_with_resilience(self.name, self.breaker, self.retry, attempt, log=log, logger=get_logger())


def converse_tool_request(turns: Sequence[Turn], system: str | None) -> tuple[list[dict[str, Any]], list[TextBlock]]:
    """``turns`` in Converse shape: a ``ToolCallTurn`` is an assistant message of ``toolUse``
    blocks (after its text, if any), the results a user message of ``toolResult`` blocks
    (``status: error`` for a failure); consecutive blocks of one role are merged into one message
    and blank text left out, as in ``converse_request``."""
    system_blocks: list[TextBlock] = [{"text": system}] if system and system.strip() else []
    conversation: list[dict[str, Any]] = []

    def add(role: str, block: dict[str, Any]) -> None:
        if conversation and conversation[-1]["role"] == role:
            conversation[-1]["content"].append(block)
        else:
            conversation.append({"role": role, "content": [block]})

    for turn in turns:
        if isinstance(turn, ChatMessage):
            if not turn.content.strip():
                continue
            if turn.role == "system":
                system_blocks.append({"text": turn.content})
            else:
                add(turn.role, {"text": turn.content})
        elif isinstance(turn, ToolCallTurn):
            if turn.text.strip():
                add("assistant", {"text": turn.text})
            for call in turn.calls:
                add("assistant", {"toolUse": {"toolUseId": call.id, "name": call.name, "input": dict(call.arguments)}})
        else:
            add("user", {"toolResult": {"toolUseId": turn.call_id, "content": [{"text": turn.content or "(empty)"}],
                                        "status": "error" if turn.is_error else "success"}})
    if not conversation:
        raise ValueError("Bedrock Converse needs at least one non-blank user or assistant message")
    return conversation, system_blocks


def parse_converse_tool_response(
    response: Any, *, model: str, turns: Sequence[Turn], system: str | None, tools: Sequence[ToolSpec]
) -> ToolCompletion:
    """A ``ToolCompletion`` from a Converse response: its text blocks joined and its ``toolUse``
    blocks as calls (``stopReason: tool_use``)."""
    output = response.get("output") if isinstance(response, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        raise LlmUnavailableError("bedrock answered without output.message.content", provider="bedrock")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        use = block.get("toolUse")
        if isinstance(use, dict) and isinstance(use.get("name"), str):
            use_id = use.get("toolUseId")
            calls.append(ToolCall(id=use_id if isinstance(use_id, str) and use_id else f"tooluse_{len(calls)}",
                                  name=use["name"], arguments=parse_arguments(use.get("input"))))
    text = "".join(texts)
    usage_block = response.get("usage")
    input_tokens, output_tokens = _count(usage_block, "inputTokens"), _count(usage_block, "outputTokens")
    if input_tokens is None or output_tokens is None:
        usage = Usage(estimate_turn_tokens(turns, system, tools), estimate_tokens(text), estimated=True)
    else:
        usage = Usage(prompt_tokens=input_tokens, completion_tokens=output_tokens)
    stop_reason = response.get("stopReason")
    return ToolCompletion(text=text, tool_calls=tuple(calls), usage=usage, model=model, provider="bedrock",
                          finish_reason=stop_reason if isinstance(stop_reason, str) else None)

def stream_event_text(event: Any, final: dict[str, Any]) -> str:
    """The text of one ConverseStream event (``contentBlockDelta``); ``messageStop`` and
    ``metadata`` are kept in ``final`` (``stopReason``, ``usage``)."""
    if not isinstance(event, dict):
        return ""
    stop = event.get("messageStop")
    if isinstance(stop, dict) and isinstance(stop.get("stopReason"), str):
        final["stopReason"] = stop["stopReason"]
    metadata = event.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("usage"), dict):
        final["usage"] = metadata["usage"]
    block = event.get("contentBlockDelta")
    delta = block.get("delta") if isinstance(block, dict) else None
    text = delta.get("text") if isinstance(delta, dict) else None
    return text if isinstance(text, str) else ""


def converse_stream_completion(
    text: str, final: dict[str, Any], *, model: str, messages: Sequence[ChatMessage], system: str | None
) -> Completion:
    """The ``Completion`` of a finished ConverseStream: its text, ``metadata.usage`` and stop reason."""
    return parse_converse_response(
        {"output": {"message": {"content": [{"text": text}]}}, **final}, model=model, messages=messages, system=system
    )
