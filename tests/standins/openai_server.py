"""A stand-in OpenAI-compatible chat-completions server on loopback, with switchable failure modes.

Start it in-process::

    server, base_url = start()          # base_url = "http://127.0.0.1:<port>/v1"
    try:
        ...                             # point LLM_BASE_URL (or OpenAICompatibleClient) at base_url
    finally:
        server.stop()

or as a process (for e2e tests; serves until SIGTERM/SIGINT, prints its base URL first)::

    python -m tests.standins.openai_server --port 8765 [--api-key KEY] [--mode ok] [--reply TEXT]
    # stdout: "openai stand-in listening on http://127.0.0.1:8765/v1"

Wire format (what OpenAI documents for ``POST /v1/chat/completions``, non-streaming):

* request: ``Content-Type: application/json``, ``Authorization: Bearer <key>`` (checked only when
  the stand-in has an ``api_key``: otherwise recorded but not required), body
  ``{"model": str, "messages": [{"role": "system"|"user"|"assistant"|"developer"|"tool",
  "content": str | [{"type": "text", "text": str}, ...]}, ...], "max_tokens"?: int,
  "max_completion_tokens"?: int, "temperature"?: number, "stream"?: false}``. Both
  ``/v1/chat/completions`` and ``/chat/completions`` are served.
* 200 answer::

    {"id": "chatcmpl-standin-<n>", "object": "chat.completion", "created": <unix time>,
     "model": <the request's model>, "system_fingerprint": "fp_standin",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": <reply>, "refusal": null},
                  "logprobs": null, "finish_reason": "stop" | "length"}],
     "usage": {"prompt_tokens": P, "completion_tokens": C, "total_tokens": P + C}}

  The reply is ``"LLM: " + <the last user message>`` unless a fixed reply is set. It is cut to
  ``max_tokens * 4`` characters (``finish_reason: "length"``) when longer. Token counts are
  ``count_tokens(text) = max(1, len(text) // 4)``: P over the concatenated message contents, C
  over the reply. ``usage`` is left out when ``include_usage`` is false.
* errors carry OpenAI's envelope ``{"error": {"message", "type", "param", "code"}}``: 400
  ``invalid_request_error`` (no model, no messages, bad role), 401
  ``invalid_api_key``, 404 for an unknown path, and the failure modes below.
* streaming (``"stream": true``, as the openai SDK sends for ``stream=True``): ``200
  text/event-stream``, one ``data: {"object": "chat.completion.chunk", "choices": [{"index": 0,
  "delta": {"content": <piece>}, "finish_reason": null}]}`` event per token (a word and the
  space after it), then a chunk with ``finish_reason``, then — with ``stream_options:
  {"include_usage": true}`` — a chunk with empty ``choices`` and ``usage``, then ``data: [DONE]``.
  ``stream_rate`` (tokens per second; 0, the default, is as fast as possible) paces the tokens,
  for benchmarks; ``POST /_control {"stream_rate": 50}`` sets it.
* tools (``"tools": [{"type": "function", "function": {"name", "description"?, "parameters"?}}]``,
  ``"tool_choice"?: "auto" | "none" | "required" | {"type": "function", ...}``): validated as
  OpenAI does (400 for a tool without a function name, an assistant message whose ``content`` is
  neither text nor null-with-``tool_calls``, a ``role: tool`` message without ``tool_call_id`` or
  not answering a ``tool_calls`` id of an earlier assistant message). Scripted answers
  (``script_replies(...)``, or ``POST /_control {"replies": [...]}``) are used one per chat
  request before the echo: a string is a text reply; ``{"tool_calls": [{"name", "arguments"
  (a JSON string, sent as is, or an object, serialised), "id"?}], "content"?}`` answers
  ``message.tool_calls`` (``id`` defaults to ``call_<n>``), ``content`` null unless given, and
  ``finish_reason: "tool_calls"``. In-process, ``set_responder(fn)`` makes the reply a function of
  the request (``fn(body) -> str``, or None to fall through to the echo or the fixed reply): a test's
  model that reacts to its prompt; a scripted answer still comes first.
* ``GET /v1/models`` lists one model (``gpt-4o-mini``).
* ``POST /v1/embeddings`` (and ``/embeddings``): body ``{"model": str, "input": str | [str, ...],
  "dimensions"?: int, "encoding_format"?: "float"}`` → ``{"object": "list", "data": [{"object":
  "embedding", "index": i, "embedding": [float, ...]}, ...], "model", "usage": {"prompt_tokens",
  "total_tokens"}}``. Vectors are deterministic (:func:`embed_text`): the text's lower-cased word
  tokens hashed into ``dimensions`` buckets with a hashed sign (feature hashing), L2-normalised —
  texts sharing words are close, so retrieval through them behaves sensibly. ``dimensions`` is
  ``dimensions`` when given, else the model's real default (1536 for text-embedding-3-small and
  ada-002, 3072 for -3-large) and :data:`DEFAULT_EMBEDDING_DIMENSIONS` (64) for any other model.
  An empty string in ``input``, an empty list, more than 2048 inputs, or an input longer than
  ``max_input_tokens`` (8192 by default, counted by :func:`count_tokens`; ``set_max_input_tokens``)
  is a 400, as at OpenAI.

Failure modes (``server.set_mode(...)``, or ``POST /_control {"mode": ...}``), applied to chat
and embeddings requests alike (``invalid`` answers an embeddings request with ``{"object": "list",
"data": []}``):

* ``ok`` — answer normally;
* ``429`` — ``429`` ``rate_limit_exceeded`` with ``Retry-After: <retry_after>`` (default ``"1"``;
  ``None`` omits the header);
* ``error`` (alias ``500``) — ``500`` ``server_error``;
* ``hang`` — wait ``hang_seconds`` (default 30; cut short by a mode change or ``stop()``), then
  answer normally: a client with a shorter read timeout times out;
* ``down`` — read the request and close the connection without answering (the client sees a
  protocol/connection error). To *refuse* connections, stop the server;
* ``invalid`` — ``200`` with a JSON body that is not a completion (``{"object":
  "chat.completion", "choices": []}``).

``fail_next("429", "error", ...)`` queues one-shot modes used by the next chat or embeddings
requests (one each) before falling back to the current mode: ``fail_next("429")`` is "429 once, then success".

HTTP control interface (same port, not under ``/v1``):

* ``POST /_control`` — JSON with any of ``mode``, ``script`` (list of one-shot modes, appended),
  ``retry_after`` (str/number/null), ``hang_seconds``, ``reply`` (str, or null for the echo),
  ``include_usage`` (bool), ``api_key`` (str or null), ``reset`` (true: back to the initial state,
  requests forgotten — applied first). Answers the state, as ``GET /_control`` does.
* ``GET /_control`` — ``{"mode", "script", "retry_after", "hang_seconds", "reply",
  "include_usage", "api_key_required", "requests"}`` (``requests`` is the count).
* ``GET /_requests`` — ``{"requests": [{"method", "path", "headers", "body", "mode"}, ...]}``: every
  API request in arrival order, with the mode it was answered with.
* ``DELETE /_requests`` — forget the recorded requests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from tests.standins.http import JsonHandler

HOST = "127.0.0.1"
MODES = ("ok", "429", "error", "hang", "down", "invalid")
_MODE_ALIASES = {"500": "error"}
ROLES = ("system", "user", "assistant", "developer", "tool")
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_EMBEDDING_DIMENSIONS = 64
MODEL_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
MAX_EMBEDDING_INPUTS = 2048
REPLY_PREFIX = "LLM: "


def count_tokens(text: str) -> int:
    """The stand-in's token count: one token per four characters, at least one."""
    return max(1, len(text) // 4)


def embed_text(text: str, dimensions: int) -> list[float]:
    """The stand-in's embedding of ``text``: hashed bag of words, signed, L2-normalised."""
    vector = [0.0] * dimensions
    for token in re.findall(r"\w+", text.lower()):
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "big") % dimensions
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0:
        return [1.0 / math.sqrt(dimensions)] * dimensions
    return [value / norm for value in vector]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _mode(value: Any) -> str:
    mode = _MODE_ALIASES.get(str(value), str(value))
    if mode not in MODES:
        raise ValueError(f"unknown mode {value!r}; expected one of {', '.join(MODES)}")
    return mode


def _error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    mode: str | None = None

    @property
    def json(self) -> Any:
        return self.body

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


class OpenAIStandin(ThreadingHTTPServer):
    """The server; its attributes are the knobs (change them through the methods: thread-safe)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0) -> None:
        super().__init__((HOST, port), _Handler)
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._thread: threading.Thread | None = None
        self._ids = 0
        self.requests: list[RecordedRequest] = []
        self.verbose = False
        self._initial_state()

    def _initial_state(self) -> None:
        self.mode = "ok"
        self.script: deque[str] = deque()
        self.retry_after: str | None = "1"
        self.hang_seconds = 30.0
        self.reply_text: str | None = None
        self.include_usage = True
        self.api_key: str | None = None
        self.max_input_tokens = 8192
        self.stream_rate = 0.0
        self.replies: deque[str | dict[str, Any]] = deque()
        self.responder: Callable[[dict[str, Any]], str | None] | None = None

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    # -- control -----------------------------------------------------------------------------

    def _release_hangs(self) -> None:
        self._release.set()
        self._release = threading.Event()

    def set_mode(self, mode: str, *, retry_after: str | float | None = "1", hang_seconds: float = 30.0) -> None:
        """Answer every following chat request in ``mode`` (see the module docstring).

        ``retry_after`` is the 429's ``Retry-After`` (None: no header); ``hang_seconds`` how long
        ``hang`` holds a request. Changing the mode releases requests that are hanging.
        """
        with self._lock:
            self.mode = _mode(mode)
            self.retry_after = None if retry_after is None else _retry_after_text(retry_after)
            self.hang_seconds = float(hang_seconds)
            self._release_hangs()

    def fail_next(self, *modes: str) -> None:
        """Answer the next ``len(modes)`` chat requests in these modes, one each, then ``mode``."""
        with self._lock:
            self.script.extend(_mode(mode) for mode in modes)

    def set_reply(self, text: str | None) -> None:
        """A fixed reply text, or None for the echo (``"LLM: " + last user message``)."""
        with self._lock:
            self.reply_text = text

    def script_replies(self, *replies: str | dict[str, Any]) -> None:
        """Answer the next chat requests with these, one each (see the module docstring: a text,
        or ``{"tool_calls": [...], "content"?}``), then with the echo or the fixed reply."""
        with self._lock:
            self.replies.extend(replies)

    def set_responder(self, responder: Callable[[dict[str, Any]], str | None] | None) -> None:
        """Answer chat requests with ``responder(body)`` when it returns text (see the module docstring)."""
        with self._lock:
            self.responder = responder

    def _take_reply(self) -> str | dict[str, Any] | None:
        with self._lock:
            return self.replies.popleft() if self.replies else None

    def require_api_key(self, key: str | None) -> None:
        """Refuse (401) chat requests without ``Authorization: Bearer <key>``; None accepts any."""
        with self._lock:
            self.api_key = key

    def reset(self) -> None:
        """Back to the initial state: mode ok, no script, echo reply, usage on, requests forgotten."""
        with self._lock:
            self._initial_state()
            self.requests.clear()
            self._release_hangs()

    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path.endswith("/chat/completions")]

    def set_max_input_tokens(self, tokens: int) -> None:
        """Refuse (400, as OpenAI's context limit does) embedding inputs longer than ``tokens``."""
        with self._lock:
            self.max_input_tokens = int(tokens)

    def embedding_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path.endswith("/embeddings")]

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "mode": self.mode,
                "script": list(self.script),
                "retry_after": self.retry_after,
                "hang_seconds": self.hang_seconds,
                "reply": self.reply_text,
                "include_usage": self.include_usage,
                "api_key_required": self.api_key is not None,
                "requests": len(self.requests),
                "stream_rate": self.stream_rate,
            }

    def apply_control(self, command: dict[str, Any]) -> None:
        """What ``POST /_control`` does (validated first, so a bad command changes nothing)."""
        unknown = set(command) - {"mode", "script", "retry_after", "hang_seconds", "reply", "include_usage",
                                  "api_key", "reset", "stream_rate", "replies"}
        if unknown:
            raise ValueError(f"unknown control fields: {', '.join(sorted(unknown))}")
        mode = _mode(command["mode"]) if "mode" in command else None
        script = [_mode(item) for item in command.get("script") or []]
        if command.get("reset"):
            self.reset()
        with self._lock:
            if "retry_after" in command:
                value = command["retry_after"]
                self.retry_after = None if value is None else _retry_after_text(value)
            if "hang_seconds" in command:
                self.hang_seconds = float(command["hang_seconds"])
            if "reply" in command:
                self.reply_text = None if command["reply"] is None else str(command["reply"])
            if "include_usage" in command:
                self.include_usage = bool(command["include_usage"])
            if "stream_rate" in command:
                self.stream_rate = max(float(command["stream_rate"]), 0.0)
            if "api_key" in command:
                self.api_key = None if command["api_key"] is None else str(command["api_key"])
            self.script.extend(script)
            self.replies.extend(command.get("replies") or [])
            if mode is not None:
                self.mode = mode
                self._release_hangs()

    # -- used by the handler -----------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_mode(self) -> str:
        with self._lock:
            return self.script.popleft() if self.script else self.mode

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    # -- lifecycle ---------------------------------------------------------------------------

    def start_in_thread(self) -> OpenAIStandin:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"openai-standin-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hanging requests and close the socket (idempotent)."""
        with self._lock:
            self._release_hangs()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()

    def __enter__(self) -> OpenAIStandin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _retry_after_text(value: str | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _Handler(JsonHandler):
    server: OpenAIStandin
    server_version = "openai-standin/1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # -- routes ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/_control":
            self._send(200, self.server.state())
        elif path == "/_requests":
            with self.server._lock:
                recorded = [asdict(request) for request in self.server.requests]
            self._send(200, {"requests": recorded})
        elif path in ("/v1/models", "/models"):
            self._record(b"")
            self._send(200, {"object": "list", "data": [
                {"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "insightmesh-standin"}]})
        else:
            self._send(404, _error(f"Unknown request URL: GET {path}", "invalid_request_error",
                                        "unknown_url"))

    def do_DELETE(self) -> None:
        if self.path.split("?", 1)[0] == "/_requests":
            with self.server._lock:
                self.server.requests.clear()
            self._send(200, {"requests": []})
        else:
            self._send(404, _error(f"Unknown request URL: DELETE {self.path}", "invalid_request_error",
                                        "unknown_url"))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        raw = self._read_body()
        if path == "/_control":
            try:
                command = json.loads(raw or b"{}")
                if not isinstance(command, dict):
                    raise ValueError("the control body must be a JSON object")
                self.server.apply_control(command)
            except (ValueError, TypeError) as error:
                self._send(400, {"error": str(error)})
                return
            self._send(200, self.server.state())
            return
        if path in ("/v1/embeddings", "/embeddings"):
            mode = self.server._take_mode()
            self._record(raw, mode=mode)
            self._embeddings(raw, mode)
            return
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._record(raw)
            self._send(404, _error(f"Unknown request URL: POST {path}", "invalid_request_error",
                                        "unknown_url"))
            return
        mode = self.server._take_mode()
        self._record(raw, mode=mode)
        self._chat(raw, mode)

    def _record(self, raw: bytes, *, mode: str | None = None) -> None:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.server._record(RecordedRequest(self.command, self.path, dict(self.headers.items()), body, mode))

    def _chat(self, raw: bytes, mode: str) -> None:
        server = self.server
        if mode == "down":
            self.close_connection = True  # nothing written: the client sees the connection drop
            return
        if mode == "429":
            headers = {"Retry-After": server.retry_after} if server.retry_after is not None else {}
            self._send(429, _error("Rate limit reached for requests (stand-in)", "requests",
                                        "rate_limit_exceeded"), headers)
            return
        if mode == "error":
            self._send(500, _error("The server had an error while processing your request.", "server_error"))
            return
        if mode == "invalid":
            self._send(200, {"id": "chatcmpl-standin-invalid", "object": "chat.completion", "choices": []})
            return
        if mode == "hang":
            release = server._release
            release.wait(server.hang_seconds)
        if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
            self._send(401, _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
            return
        try:
            request = json.loads(raw)
        except ValueError:
            self._send(400, _error("We could not parse the JSON body of your request.",
                                        "invalid_request_error"))
            return
        problem = _validate(request)
        if problem is not None:
            self._send(400, _error(problem[1], "invalid_request_error", param=problem[0]))
            return
        if request.get("stream"):
            self._stream(request)
            return
        self._send(200, _completion(server, request))

    def _stream(self, request: dict[str, Any]) -> None:
        """The completion as server-sent events (see the module docstring), paced by ``stream_rate``."""
        server = self.server
        answer = _completion(server, request)
        reply = answer["choices"][0]["message"]["content"] or ""  # a scripted tool_calls answer has no text
        with server._lock:
            rate = server.stream_rate
        options = request.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage")) and "usage" in answer
        base = {"id": answer["id"], "object": "chat.completion.chunk", "created": answer["created"],
                "model": answer["model"], "system_fingerprint": "fp_standin"}
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def event(chunk: dict[str, Any] | str) -> None:
            data = chunk if isinstance(chunk, str) else json.dumps({**base, **chunk})
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()

        try:
            event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
            for index, token in enumerate(re.findall(r"\S+\s*|\s+", reply)):
                if rate and index:
                    time.sleep(1.0 / rate)
                event({"choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]})
            event({"choices": [{"index": 0, "delta": {}, "finish_reason": answer["choices"][0]["finish_reason"]}]})
            if include_usage:
                event({"choices": [], "usage": answer["usage"]})
            event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away mid-stream

    def _embeddings(self, raw: bytes, mode: str) -> None:
        server = self.server
        if mode == "invalid":
            self._send(200, {"object": "list", "data": []})
            return
        if mode != "ok" and mode != "hang":
            self._chat(raw, mode)  # down / 429 / error: the same failures as chat
            return
        if mode == "hang":
            server._release.wait(server.hang_seconds)
        if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
            self._send(401, _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
            return
        try:
            request = json.loads(raw)
        except ValueError:
            self._send(400, _error("We could not parse the JSON body of your request.",
                                        "invalid_request_error"))
            return
        problem = _validate_embeddings(request, server.max_input_tokens)
        if problem is not None:
            self._send(400, _error(problem[1], "invalid_request_error", param=problem[0]))
            return
        self._send(200, _embeddings_answer(request))


def _validate_embeddings(request: Any, max_input_tokens: int) -> tuple[str | None, str] | None:
    if not isinstance(request, dict):
        return None, "The request body must be a JSON object."
    if not isinstance(request.get("model"), str) or not request["model"]:
        return "model", "you must provide a model parameter"
    inputs = request.get("input")
    inputs = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(inputs, list) or not inputs:
        return "input", "'input' must be a non-empty string or array of strings"
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        return "input", f"'input' must have at most {MAX_EMBEDDING_INPUTS} items"
    for index, item in enumerate(inputs):
        if not isinstance(item, str) or not item:
            return f"input[{index}]", f"'$.input[{index}]' is invalid: expected a non-empty string"
        if count_tokens(item) > max_input_tokens:
            return f"input[{index}]", (f"This model's maximum context length is {max_input_tokens} tokens, however "
                                       f"you requested {count_tokens(item)} tokens.")
    dimensions = request.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)
                                   or not 1 <= dimensions <= 3072):
        return "dimensions", "'dimensions' must be an integer between 1 and 3072"
    if request.get("encoding_format", "float") != "float":
        return "encoding_format", "only encoding_format 'float' is supported by this stand-in"
    return None


def _embeddings_answer(request: dict[str, Any]) -> dict[str, Any]:
    inputs = request["input"]
    inputs = [inputs] if isinstance(inputs, str) else inputs
    dimensions = request.get("dimensions") or MODEL_DIMENSIONS.get(request["model"], DEFAULT_EMBEDDING_DIMENSIONS)
    tokens = sum(count_tokens(text) for text in inputs)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": index, "embedding": embed_text(text, dimensions)}
                 for index, text in enumerate(inputs)],
        "model": request["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _validate(request: Any) -> tuple[str | None, str] | None:
    if not isinstance(request, dict):
        return None, "The request body must be a JSON object."
    if not isinstance(request.get("model"), str) or not request["model"]:
        return "model", "you must provide a model parameter"
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages", "'messages' must be a non-empty array"
    called: set[str] = set()
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages[{index}].role", f"Invalid value for 'role' in messages[{index}]"
        tool_calls = message.get("tool_calls")
        if message["role"] == "assistant" and tool_calls is not None:
            if not isinstance(tool_calls, list) or not tool_calls:
                return f"messages[{index}].tool_calls", f"Invalid value for 'tool_calls' in messages[{index}]"
            for call in tool_calls:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                        or not isinstance(function.get("arguments"), str) or not isinstance(call.get("id"), str) \
                        or call.get("type") != "function":
                    return f"messages[{index}].tool_calls", f"Invalid tool call in messages[{index}]"
                called.add(call["id"])
            if message.get("content") is None:
                continue
        if message["role"] == "tool" and message.get("tool_call_id") not in called:
            return (f"messages[{index}].tool_call_id", f"Invalid parameter: messages with role 'tool' must be a "
                    f"response to a preceding message with 'tool_calls' (messages[{index}]).")
        if not isinstance(message.get("content"), str | list):
            return f"messages[{index}].content", f"Invalid type for 'content' in messages[{index}]"
    tools = request.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools", "'tools' must be an array"
        for index, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict) \
                    or not isinstance(function.get("name"), str) or not function["name"]:
                return f"tools[{index}]", f"Missing required parameter: 'tools[{index}].function.name'."
            if "parameters" in function and not isinstance(function["parameters"], dict):
                return f"tools[{index}].function.parameters", "'parameters' must be a JSON Schema object"
    choice = request.get("tool_choice")
    if choice is not None and choice not in ("auto", "none", "required") and not isinstance(choice, dict):
        return "tool_choice", "Invalid value for 'tool_choice'"
    if choice is not None and not tools:
        return "tool_choice", "'tool_choice' is only allowed when 'tools' are specified."
    return None


def _completion(server: OpenAIStandin, request: dict[str, Any]) -> dict[str, Any]:
    messages = request["messages"]
    last_user = next((_text_of(m["content"]) for m in reversed(messages) if m["role"] == "user"), "")
    scripted = server._take_reply()
    if isinstance(scripted, dict):
        return _tool_calls_answer(server, request, scripted)
    with server._lock:
        reply = server.reply_text if server.reply_text is not None else REPLY_PREFIX + last_user
        include_usage = server.include_usage
        responder = server.responder
    if isinstance(scripted, str):
        reply = scripted
    elif responder is not None:
        reply = responder(request) or reply
    finish_reason = "stop"
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and len(reply) > limit * 4:
        reply, finish_reason = reply[: limit * 4], "length"
    prompt = count_tokens("".join(_text_of(m["content"]) for m in messages))
    return _chat_completion(server, request, {"role": "assistant", "content": reply, "refusal": None}, finish_reason,
                       usage=(prompt, count_tokens(reply)) if include_usage else None)


def _chat_completion(server: OpenAIStandin, request: dict[str, Any], message: dict[str, Any], finish_reason: str, *,
                     usage: tuple[int, int] | None) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice (``usage``: prompt and completion tokens, if reported)."""
    answer: dict[str, Any] = {
        "id": f"chatcmpl-standin-{server._next_id()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request["model"],
        "system_fingerprint": "fp_standin",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        prompt, completion = usage
        answer["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    return answer


def _tool_calls_answer(server: OpenAIStandin, request: dict[str, Any], scripted: dict[str, Any]) -> dict[str, Any]:
    """A scripted ``message.tool_calls`` answer (see the module docstring)."""
    calls = []
    for index, call in enumerate(scripted.get("tool_calls") or []):
        arguments = call.get("arguments", {})
        calls.append({"id": call.get("id") or f"call_{server._next_id()}_{index}", "type": "function",
                      "function": {"name": call["name"],
                                   "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}})
    content = scripted.get("content")
    with server._lock:
        include_usage = server.include_usage
    prompt = count_tokens(json.dumps(request["messages"]) + json.dumps(request.get("tools") or []))
    completion = count_tokens(json.dumps(calls) + (content or ""))
    return _chat_completion(server, request, {"role": "assistant", "content": content, "refusal": None,
                                         "tool_calls": calls}, "tool_calls",
                       usage=(prompt, completion) if include_usage else None)


def start(port: int = 0) -> tuple[OpenAIStandin, str]:
    """Start a stand-in on 127.0.0.1:``port`` (0 = any free port) in a daemon thread."""
    server = OpenAIStandin(port).start_in_thread()
    return server, server.base_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI-compatible chat-completions stand-in (127.0.0.1 only)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--api-key", default=None, help="require Authorization: Bearer <key>")
    parser.add_argument("--mode", default="ok", choices=[*MODES, "500"], help="initial failure mode")
    parser.add_argument("--reply", default=None, help="fixed reply text (default: echo the last user message)")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)

    server = OpenAIStandin(args.port)
    server.verbose = args.verbose
    server.set_mode(args.mode)
    server.set_reply(args.reply)
    server.require_api_key(args.api_key)

    def _terminate(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    print(f"openai stand-in listening on {server.base_url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        with server._lock:
            server._release_hangs()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
