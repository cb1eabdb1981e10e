"""Any OpenAI-compatible chat-completions server: OpenAI, Ollama, vLLM, LiteLLM, Anthropic's
OpenAI-compatible endpoint.

Wire format: ``POST {base_url}/chat/completions`` with ``{"model", "messages": [{"role",
"content"}], "max_tokens", "temperature"}`` and ``Authorization: Bearer <key>`` when a key is
configured; the answer is ``choices[0].message.content`` and ``usage.{prompt,completion}_tokens``
(when a server leaves ``usage`` out, it is estimated at four characters per token and flagged
``estimated``).

Resilience (see ``insightmesh.resilience``):

* one ``httpx.Client`` per base URL per process (``http_client``), explicit connect/read timeouts
  on every request;
* 429, 5xx, timeouts and connection failures are retried — 3 attempts in all, exponential backoff
  with full jitter, or the server's ``Retry-After`` when it sends one (a longer demand than
  ``max_retry_after`` is not waited for);
* every attempt goes through the circuit breaker ``llm:<provider>``; while it is open the call
  fails at once without touching the network;
* another 4xx is the server saying no to this request: it is neither retried nor counted against
  the breaker (the server is up), and raises ``LlmRequestError``;
* retries exhausted or the circuit open raise ``LlmUnavailableError``.

Streaming (``stream``): the same request with ``"stream": true`` and ``"stream_options":
{"include_usage": true}`` (as the openai SDK sends for ``stream=True``); the answer is
server-sent events, ``data: <chat.completion.chunk>`` lines up to ``data: [DONE]``, whose
``choices[0].delta.content`` pieces are handed to ``on_text`` as they arrive, and whose last
chunk carries ``usage`` (estimated, as above, when the server sends none). The same retries and
breaker apply until the first piece of text; a failure after it raises ``LlmUnavailableError``
at once, since the reader has already seen part of the answer.

Tool calling (``complete_with_tools``): the same request with ``"tools": [{"type": "function",
"function": {"name", "description", "parameters"}}]`` and ``"tool_choice": "auto"``; the model's
calls are ``choices[0].message.tool_calls[]`` (``{"id", "type": "function", "function": {"name",
"arguments"}}``, ``arguments`` a JSON string the model wrote — one that is not a JSON object is
kept under ``INVALID_ARGUMENTS_KEY``, and the loop feeds the error back to the model), with
``finish_reason: "tool_calls"``. They are sent back as ``{"role": "assistant", "content": <text or
null>, "tool_calls": [...]}`` followed by one ``{"role": "tool", "tool_call_id", "content"}`` per
call. Offered no tools (the loop's last call), the tool turns are sent as text. Same retries and
breaker as ``complete``.

Why httpx and not the openai SDK: the SDK would bring its own client, retries and timeouts (and a
second connection pool) beside the shared ``http_client`` and the ``insightmesh.resilience``
policy every dependency goes through; the wire format above is small and tested against the
stand-in (tests/standins/openai_server.py), so the adapter speaks it directly.

Logs carry the provider, model, status, attempt and token counts — never the key, the prompt or
the reply.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import httpx

from insightmesh.llm.base import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    ChatMessage,
    ChatMessageDict,
    Completion,
    LlmUnavailableError,
    TextSink,
    Usage,
    check_request,
    estimate_prompt_tokens,
    estimate_tokens,
)
from insightmesh.llm.resilient import Refusal, default_policy, run_with_resilience
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

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
DEFAULT_MODEL: Final = "gpt-4o-mini"
DEFAULT_TIMEOUTS: Final = Timeouts(connect=3.0, read=30.0)
DEFAULT_BREAKER_FAILURES: Final = 3
DEFAULT_BREAKER_COOL_DOWN: Final = 30.0
DEFAULT_ATTEMPTS: Final = 3
DEFAULT_MAX_RETRY_AFTER: Final = 10.0
# What the template's Secrets Manager secret holds until someone sets the LlmApiKey parameter.
KEY_PLACEHOLDER: Final = "not-configured"
USER_AGENT: Final = "insightmesh-llm/1"

_http_clients: dict[str, httpx.Client] = {}
_http_lock = threading.Lock()


def http_client(base_url: str) -> httpx.Client:
    """The process-wide ``httpx.Client`` of ``base_url`` (its connection pool is reused)."""
    with _http_lock:
        client = _http_clients.get(base_url)
        if client is None or client.is_closed:
            client = httpx.Client(
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
                # The default is overridden on every request; this only guards a forgotten one.
                timeout=httpx.Timeout(DEFAULT_TIMEOUTS.read, connect=DEFAULT_TIMEOUTS.connect),
            )
            _http_clients[base_url] = client
        return client


def close_http_clients() -> None:
    """Close every cached client (tests, and a process that is shutting down)."""
    with _http_lock:
        clients = list(_http_clients.values())
        _http_clients.clear()
    for client in clients:
        client.close()


def _error_code(response: httpx.Response) -> str | None:
    """``error.code`` or ``error.type`` of an OpenAI error body (never its message: it may quote input)."""
    try:
        payload = response.json()
    except ValueError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        for key in ("code", "type"):
            value = error.get(key)
            if isinstance(value, str) and value:
                return value[:64]
    return None


def _token_count(usage: Mapping[str, Any], key: str) -> int | None:
    value = usage.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _reported_tokens(payload: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """The answer's ``usage`` (prompt, completion tokens); None where it is missing or not a count."""
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None, None
    return _token_count(usage, "prompt_tokens"), _token_count(usage, "completion_tokens")


def parse_chat_completion(
    payload: Any,
    *,
    provider: str,
    model: str,
    messages: Sequence[ChatMessage],
    system: str | None,
) -> Completion:
    """A ``Completion`` from a chat.completions response body; LlmUnavailableError if it is not one."""
    if not isinstance(payload, dict):
        raise LlmUnavailableError(f"{provider} answered with a non-object body", provider=provider)
    choices = payload.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise LlmUnavailableError(f"{provider} answered without choices[0].message", provider=provider)
    content = message.get("content")
    if not isinstance(content, str):
        refusal = message.get("refusal")
        if not isinstance(refusal, str):
            raise LlmUnavailableError(f"{provider} answered without text content", provider=provider)
        content = refusal
    finish_reason = choice.get("finish_reason") if isinstance(choice, dict) else None
    prompt_tokens, completion_tokens = _reported_tokens(payload)
    if prompt_tokens is None or completion_tokens is None:
        usage = Usage(
            prompt_tokens=estimate_prompt_tokens(messages, system),
            completion_tokens=estimate_tokens(content),
            estimated=True,
        )
    else:
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    reported_model = payload.get("model")
    return Completion(
        text=content,
        usage=usage,
        model=reported_model if isinstance(reported_model, str) and reported_model else model,
        provider=provider,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
    )


def wire_messages(messages: Sequence[ChatMessage], system: str | None) -> list[ChatMessageDict]:
    """The request's ``messages``: the system prompt first (when given), then the conversation."""
    wire: list[ChatMessageDict] = [{"role": "system", "content": system}] if system else []
    wire.extend(message.to_dict() for message in messages)
    return wire


class SseCompletion:
    """Reads a chat.completions event stream line by line: ``feed`` returns each line's new text."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider, self.model = provider, model
        self.parts: list[str] = []
        self.done = False
        self.finish_reason: str | None = None
        self.reported_model: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

    def feed(self, line: str) -> str:
        if not line.startswith("data:"):
            return ""  # blank separators, comments (": keep-alive"), event names
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            self.done = True
            return ""
        try:
            chunk = json.loads(data)
        except ValueError as error:
            raise LlmUnavailableError(f"{self.provider} streamed invalid JSON", provider=self.provider) from error
        if not isinstance(chunk, dict):
            raise LlmUnavailableError(f"{self.provider} streamed a non-object chunk", provider=self.provider)
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.reported_model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _token_count(usage, "prompt_tokens")
            self.completion_tokens = _token_count(usage, "completion_tokens")
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(choice, dict):
            return ""
        if isinstance(choice.get("finish_reason"), str):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str) and content:
            self.parts.append(content)
            return content
        return ""

    def completion(self, messages: Sequence[ChatMessage], system: str | None) -> Completion:
        text = "".join(self.parts)
        if self.prompt_tokens is None or self.completion_tokens is None:
            usage = Usage(estimate_prompt_tokens(messages, system), estimate_tokens(text), estimated=True)
        else:
            usage = Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)
        return Completion(text=text, usage=usage, model=self.reported_model or self.model, provider=self.provider,
                          finish_reason=self.finish_reason)


@instrumented
class OpenAICompatibleClient:
    """``LlmClient`` for an OpenAI-compatible server (see the module docstring).

    ``api_key`` is a string or a function returning one (called for each request, so a rotated
    secret is picked up once its cache expires); empty means no Authorization header.
    ``breaker`` replaces the process-wide ``llm:<provider>`` breaker (tests inject one with a
    fake clock); ``sleep`` is what the retry policy waits with.
    """

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        api_key: str | Callable[[], str] = "",
        provider: str = "openai",
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        breaker: CircuitBreaker | None = None,
        breaker_failures: int = DEFAULT_BREAKER_FAILURES,
        breaker_cool_down: float = DEFAULT_BREAKER_COOL_DOWN,
        attempts: int = DEFAULT_ATTEMPTS,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._provider = provider
        self._api_key = api_key
        self.timeouts = timeouts
        self.breaker, self.retry = default_policy(
            f"llm:{provider}",
            breaker=breaker,
            breaker_failures=breaker_failures,
            breaker_cool_down=breaker_cool_down,
            attempts=attempts,
            max_retry_after=max_retry_after,
            sleep=sleep,
        )

    @property
    def name(self) -> str:
        return self._provider

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def __repr__(self) -> str:  # never the key
        return f"OpenAICompatibleClient(provider={self._provider!r}, base_url={self.base_url!r}, model={self.model!r})"

    def _key(self) -> str:
        key = self._api_key() if callable(self._api_key) else self._api_key
        return "" if key == KEY_PLACEHOLDER else key

    def _request(
        self, messages: Sequence[ChatMessage], system: str | None, max_tokens: int, temperature: float
    ) -> tuple[dict[str, Any], dict[str, str], httpx.Timeout]:
        check_request(messages, max_tokens=max_tokens, temperature=temperature)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": wire_messages(messages, system),
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        headers = {"Content-Type": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(self.timeouts.read, connect=self.timeouts.connect, pool=self.timeouts.connect)
        return body, headers, timeout

    def _check_status(self, response: httpx.Response, attempts: int, log: Mapping[str, object]) -> Refusal | None:
        """None for a 200; a ``Refusal`` for a 4xx other than 429; raises for what is retried or garbled.
        A streamed response must have been read (``response.read()``) before a refusal's body is parsed."""
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            get_logger().warning(
                "llm attempt refused",
                extra={**log, "attempt": attempts, "status": status, "retry_after": retry_after},
            )
            raise RetryableError(f"{self._provider} answered HTTP {status}", retry_after=retry_after)
        if status >= 400:
            code = _error_code(response)
            return Refusal(
                status,
                code,
                f"{self._provider} refused the request: HTTP {status}" + (f" ({code})" if code else ""),
            )
        if status != 200:
            raise LlmUnavailableError(f"{self._provider} answered HTTP {status}", provider=self._provider)
        return None

    def _post_json(self, client: httpx.Client, body: Mapping[str, Any], headers: Mapping[str, str],
                   timeout: httpx.Timeout, attempts: int, log: Mapping[str, object]) -> Any:
        """One non-streamed attempt (``complete`` and ``complete_with_tools``): the answer's JSON, or a
        ``Refusal``; raises ``RetryableError`` for what is retried, ``LlmUnavailableError`` otherwise."""
        logger = get_logger()
        try:
            response = client.post(self.url, json=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as error:
            logger.warning("llm attempt timed out", extra={**log, "attempt": attempts})
            raise RetryableError(f"{self._provider} timed out ({type(error).__name__})") from error
        except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
            logger.warning("llm attempt failed to connect", extra={**log, "attempt": attempts})
            raise RetryableError(f"{self._provider} connection failed ({type(error).__name__})") from error
        except httpx.HTTPError as error:  # proxy or protocol misconfiguration: not transient
            raise LlmUnavailableError(
                f"{self._provider} request failed ({type(error).__name__})", provider=self._provider
            ) from error
        refusal = self._check_status(response, attempts, log)
        if refusal is not None:
            return refusal
        try:
            return response.json()
        except ValueError as error:
            raise LlmUnavailableError(
                f"{self._provider} answered with invalid JSON", provider=self._provider
            ) from error

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        on_text: TextSink,
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Completion:
        """Server-sent events (see the module docstring); ``on_text`` gets each piece of the answer."""
        body, headers, timeout = self._request(messages, system, max_tokens, temperature)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        headers["Accept"] = "text/event-stream"
        client = http_client(self.base_url)
        logger = get_logger()
        log = {"provider": self._provider, "model": self.model, "stream": True}
        streamed = False

        def attempt(attempts: int) -> Completion | Refusal:
            nonlocal streamed
            try:
                with client.stream("POST", self.url, json=body, headers=headers, timeout=timeout) as response:
                    if response.status_code != 200:
                        response.read()
                        refusal = self._check_status(response, attempts, log)
                        if refusal is not None:
                            return refusal
                    events = SseCompletion(self._provider, self.model)
                    for line in response.iter_lines():
                        piece = events.feed(line)
                        if piece:
                            streamed = True
                            on_text(piece)
                        if events.done:
                            break
            except httpx.TimeoutException as error:
                if streamed:
                    raise LlmUnavailableError(f"{self._provider} stream timed out", provider=self._provider) from error
                logger.warning("llm attempt timed out", extra={**log, "attempt": attempts})
                raise RetryableError(f"{self._provider} timed out ({type(error).__name__})") from error
            except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
                if streamed:
                    raise LlmUnavailableError(f"{self._provider} stream broke off", provider=self._provider) from error
                logger.warning("llm attempt failed to connect", extra={**log, "attempt": attempts})
                raise RetryableError(f"{self._provider} connection failed ({type(error).__name__})") from error
            except httpx.HTTPError as error:
                raise LlmUnavailableError(
                    f"{self._provider} request failed ({type(error).__name__})", provider=self._provider
                ) from error
            return events.completion(messages, system)

        return run_with_resilience(self._provider, self.breaker, self.retry, attempt, log=log, logger=logger)

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Completion:
        body, headers, timeout = self._request(messages, system, max_tokens, temperature)
        client = http_client(self.base_url)
        logger = get_logger()
        log = {"provider": self._provider, "model": self.model}

        def attempt(attempts: int) -> Completion | Refusal:
            payload = self._post_json(client, body, headers, timeout, attempts, log)
            if isinstance(payload, Refusal):
                return payload
            return parse_chat_completion(
                payload, provider=self._provider, model=self.model, messages=messages, system=system
            )

        return run_with_resilience(self._provider, self.breaker, self.retry, attempt, log=log, logger=logger)

    def complete_with_tools(
        self,
        turns: Sequence[Turn],
        *,
        tools: Sequence[ToolSpec],
        system: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> ToolCompletion:
        """One step of a conversation with ``tools`` offered (see the module docstring)."""
        check_turns(turns, max_tokens=max_tokens, temperature=temperature)
        if not tools:
            return completion_with_tools(self.complete(as_plain_messages(turns), system=system,
                                                       max_tokens=max_tokens, temperature=temperature))
        _, headers, timeout = self._request([ChatMessage.user("-")], system, max_tokens, temperature)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": wire_turns(turns, system),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "tools": [{"type": "function", "function": {"name": spec.name, "description": spec.description,
                                                        "parameters": dict(spec.parameters)}} for spec in tools],
            "tool_choice": "auto",
        }
        client = http_client(self.base_url)
        logger = get_logger()
        log = {"provider": self._provider, "model": self.model, "tools": len(tools)}

        def attempt(attempts: int) -> ToolCompletion | Refusal:
            payload = self._post_json(client, body, headers, timeout, attempts, log)
            if isinstance(payload, Refusal):
                return payload
            return parse_tool_completion(payload, provider=self._provider, model=self.model, turns=turns,
                                         system=system, tools=tools)

        return run_with_resilience(self._provider, self.breaker, self.retry, attempt, log=log, logger=logger)


def wire_turns(turns: Sequence[Turn], system: str | None) -> list[dict[str, Any]]:
    """The request's ``messages`` for a conversation with tool turns (see the module docstring)."""
    wire: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for turn in turns:
        if isinstance(turn, ChatMessage):
            wire.append(dict(turn.to_dict()))
        elif isinstance(turn, ToolCallTurn):
            wire.append({
                "role": "assistant",
                "content": turn.text or None,
                "tool_calls": [{"id": call.id, "type": "function",
                                "function": {"name": call.name, "arguments": json.dumps(dict(call.arguments))}}
                               for call in turn.calls],
            })
        else:
            wire.append({"role": "tool", "tool_call_id": turn.call_id, "content": turn.content})
    return wire


def parse_tool_completion(
    payload: Any, *, provider: str, model: str, turns: Sequence[Turn], system: str | None,
    tools: Sequence[ToolSpec],
) -> ToolCompletion:
    """A ``ToolCompletion`` from a chat.completions body; LlmUnavailableError if it is not one."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise LlmUnavailableError(f"{provider} answered without choices[0].message", provider=provider)
    calls: list[ToolCall] = []
    for index, item in enumerate(message.get("tool_calls") or ()):
        function = item.get("function") if isinstance(item, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise LlmUnavailableError(f"{provider} answered a tool call without a function name", provider=provider)
        call_id = item.get("id")
        calls.append(ToolCall(id=call_id if isinstance(call_id, str) and call_id else f"call_{index}",
                              name=name, arguments=parse_arguments(function.get("arguments"))))
    content = message.get("content")
    if not isinstance(content, str):
        refusal = message.get("refusal")
        content = refusal if isinstance(refusal, str) else ""
    if not calls and not content:
        raise LlmUnavailableError(f"{provider} answered neither text nor tool calls", provider=provider)
    prompt_tokens, completion_tokens = _reported_tokens(payload)
    if prompt_tokens is None or completion_tokens is None:
        written = content + "".join(json.dumps(dict(call.arguments)) for call in calls)
        usage = Usage(estimate_turn_tokens(turns, system, tools), estimate_tokens(written), estimated=True)
    else:
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    reported_model = payload.get("model")
    finish_reason = choice.get("finish_reason") if isinstance(choice, dict) else None
    return ToolCompletion(
        text=content,
        tool_calls=tuple(calls),
        usage=usage,
        model=reported_model if isinstance(reported_model, str) and reported_model else model,
        provider=provider,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
    )
