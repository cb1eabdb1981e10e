"""The Bedrock Converse client (insightmesh.llm.bedrock) against a loopback Converse stand-in.

moto does not implement ``bedrock-runtime`` Converse, so a small HTTP server on 127.0.0.1 answers
``POST /model/{modelId}/converse`` in the real wire format (restJson1: errors carry
``X-Amzn-ErrorType``) and boto3 is pointed at it with ``AWS_ENDPOINT_URL``: the request is signed,
serialised and parsed by botocore exactly as against AWS.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import pytest

from insightmesh import resilience
from insightmesh.llm import BedrockClient, ChatMessage, LlmRequestError, LlmUnavailableError, get_llm_client
from insightmesh.llm.bedrock import bedrock_runtime, converse_request
from insightmesh.resilience import BreakerState, CircuitBreaker, Timeouts

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
ERRORS = {
    "throttle": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "error": (500, "InternalServerException", "Internal server error"),
    "unavailable": (503, "ServiceUnavailableException", "Service unavailable"),
    "validation": (400, "ValidationException", "messages: text field is blank"),
    "denied": (403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
}


@dataclass
class Recorded:
    path: str
    model_id: str
    headers: dict[str, str]
    body: Any
    mode: str


@dataclass
class ConverseState:
    mode: str = "ok"
    script: list[str] = field(default_factory=list)
    reply: str = "Bedrock says hello."
    include_usage: bool = True
    # Scripted Converse outputs (``output.message.content`` blocks and a ``stopReason``), one per request.
    answers: list[tuple[list[dict[str, Any]], str]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, *modes: str) -> None:
        with self.lock:
            self.script.extend(modes)


class ConverseServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ConverseHandler)
        self.state = ConverseState()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ConverseHandler(BaseHTTPRequestHandler):
    server: ConverseServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = self.path.split("/")
        if len(parts) != 4 or parts[1] != "model" or parts[3] != "converse":
            self._send(404, {"message": f"no route {self.path}"}, {"X-Amzn-ErrorType": "UnknownOperationException"})
            return
        with state.lock:
            mode = state.script.pop(0) if state.script else state.mode
            body = json.loads(raw)
            state.requests.append(Recorded(self.path, unquote(parts[2]), dict(self.headers.items()), body, mode))
        if mode in ERRORS:
            status, code, message = ERRORS[mode]
            self._send(status, {"message": message}, {"X-Amzn-ErrorType": f"{code}:http://internal.amazon.com/"})
            return
        if mode == "hang":
            state.release.wait(30)
        with state.lock:
            content, stop = state.answers.pop(0) if state.answers else ([{"text": state.reply}], "end_turn")
        answer: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "metrics": {"latencyMs": 12},
        }
        if state.include_usage:
            answer["usage"] = {"inputTokens": 21, "outputTokens": 5, "totalTokens": 26}
        self._send(200, answer)


@pytest.fixture(autouse=True)
def _fresh_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("LLM_PROVIDER", "LLM_MODEL", "LLM_BASE_URL", "LLM_TIMEOUT_SECONDS", "LLM_CONNECT_TIMEOUT_SECONDS",
                 "LLM_BREAKER_FAILURES", "LLM_BREAKER_COOLDOWN_SECONDS", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"):
        monkeypatch.delenv(name, raising=False)
    get_llm_client.cache_clear()
    resilience._breakers.clear()
    yield
    get_llm_client.cache_clear()
    resilience._breakers.clear()


@pytest.fixture
def converse(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConverseServer]:
    server = ConverseServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    try:
        yield server
    finally:
        server.state.release.set()
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("llm:bedrock", failure_threshold=3, cool_down=30.0, clock=clock)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(breaker: CircuitBreaker, sleeps: list[float]) -> Callable[..., BedrockClient]:
    def make(**overrides: Any) -> BedrockClient:
        options: dict[str, Any] = {
            "model": MODEL,
            "timeouts": Timeouts(connect=1.0, read=2.0),
            "breaker": breaker,
            "sleep": sleeps.append,
        }
        options.update(overrides)
        return BedrockClient(**options)

    return make


@pytest.fixture
def client(converse: ConverseServer, make_client: Callable[..., BedrockClient]) -> BedrockClient:
    return make_client()


def ask(client: BedrockClient, **kwargs: Any) -> Any:
    return client.complete([ChatMessage.user("What is MEDDIC?")], **kwargs)


# -- the happy path -----------------------------------------------------------------------------


def test_a_completion_speaks_the_converse_wire_format(converse: ConverseServer, client: BedrockClient) -> None:
    messages = [
        ChatMessage.user("What is MEDDIC?"),
        ChatMessage.assistant("A sales qualification framework."),
        ChatMessage.user("Who signs?"),
    ]
    completion = client.complete(messages, system="You are the meddic agent.", max_tokens=300, temperature=0.5)

    assert completion.text == "Bedrock says hello."
    assert completion.provider == "bedrock"
    assert completion.model == MODEL
    assert completion.finish_reason == "end_turn"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (21, 5)
    assert completion.usage.total == 26
    assert completion.usage.estimated is False

    [request] = converse.state.requests
    assert request.model_id == MODEL
    assert request.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-east-1/bedrock/aws4_request" in request.headers["Authorization"]
    assert request.body == {
        "messages": [
            {"role": "user", "content": [{"text": "What is MEDDIC?"}]},
            {"role": "assistant", "content": [{"text": "A sales qualification framework."}]},
            {"role": "user", "content": [{"text": "Who signs?"}]},
        ],
        "system": [{"text": "You are the meddic agent."}],
        "inferenceConfig": {"maxTokens": 300, "temperature": 0.5},
    }


def test_without_a_system_prompt_none_is_sent(converse: ConverseServer, client: BedrockClient) -> None:
    ask(client)
    assert "system" not in converse.state.requests[0].body


def test_missing_usage_is_estimated_and_flagged(converse: ConverseServer, client: BedrockClient) -> None:
    converse.state.include_usage = False
    completion = ask(client)
    assert completion.usage.estimated is True
    assert completion.usage.completion_tokens == len("Bedrock says hello.") // 4


def test_turns_are_reshaped_for_converse() -> None:
    messages = [
        ChatMessage.system("Answer in French."),
        ChatMessage.user("Hello"),
        ChatMessage.user("   "),
        ChatMessage.user("Are you there?"),
        ChatMessage.assistant("Oui."),
    ]
    conversation, system = converse_request(messages, "You are helpful.")

    assert system == [{"text": "You are helpful."}, {"text": "Answer in French."}]
    assert conversation == [
        {"role": "user", "content": [{"text": "Hello"}, {"text": "Are you there?"}]},
        {"role": "assistant", "content": [{"text": "Oui."}]},
    ]
    with pytest.raises(ValueError, match="non-blank"):
        converse_request([ChatMessage.system("only instructions")], None)


def test_the_runtime_client_is_created_once_without_botocore_retries(converse: ConverseServer) -> None:
    timeouts = Timeouts(connect=1.5, read=4.0)
    runtime = bedrock_runtime(timeouts)

    assert bedrock_runtime(timeouts) is runtime
    assert runtime.meta.endpoint_url == converse.endpoint
    assert runtime.meta.config.connect_timeout == 1.5
    assert runtime.meta.config.read_timeout == 4.0
    assert runtime.meta.config.retries["total_max_attempts"] == 1


# -- retries and refusals -----------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["throttle", "error", "unavailable"])
def test_throttling_and_5xx_are_retried(
    converse: ConverseServer, client: BedrockClient, sleeps: list[float], failure: str
) -> None:
    converse.state.fail_next(failure)

    assert ask(client).text == "Bedrock says hello."
    assert [request.mode for request in converse.state.requests] == [failure, "ok"]
    assert len(sleeps) == 1


def test_persistent_failures_give_up_after_three_requests(
    converse: ConverseServer, client: BedrockClient, sleeps: list[float]
) -> None:
    converse.state.mode = "throttle"

    with pytest.raises(LlmUnavailableError, match="ThrottlingException") as caught:
        ask(client)

    assert len(converse.state.requests) == 3  # ours are the only retries: botocore's are off
    assert len(sleeps) == 2
    assert caught.value.provider == "bedrock"


@pytest.mark.parametrize(("failure", "status"), [("validation", 400), ("denied", 403)])
def test_client_errors_are_refusals_neither_retried_nor_counted(
    converse: ConverseServer, client: BedrockClient, breaker: CircuitBreaker, failure: str, status: int
) -> None:
    converse.state.mode = failure

    for _ in range(4):
        with pytest.raises(LlmRequestError) as caught:
            ask(client)

    assert caught.value.status == status
    assert caught.value.code == ERRORS[failure][1]
    assert len(converse.state.requests) == 4
    assert breaker.state is BreakerState.CLOSED


def test_a_read_timeout_is_unavailable(converse: ConverseServer, make_client: Callable[..., BedrockClient]) -> None:
    converse.state.mode = "hang"
    client = make_client(timeouts=Timeouts(connect=1.0, read=0.2))

    with pytest.raises(LlmUnavailableError, match="ReadTimeoutError"):
        ask(client)
    assert len(converse.state.requests) == 3


def test_the_breaker_opens_and_fails_fast_then_recovers(
    converse: ConverseServer, client: BedrockClient, breaker: CircuitBreaker, clock: FakeClock
) -> None:
    converse.state.mode = "error"
    with pytest.raises(LlmUnavailableError):
        ask(client)
    assert breaker.state is BreakerState.OPEN

    with pytest.raises(LlmUnavailableError, match="circuit is open"):
        ask(client)
    assert len(converse.state.requests) == 3

    converse.state.mode = "ok"
    clock.now += 30.0
    assert ask(client).text == "Bedrock says hello."
    assert breaker.state is BreakerState.CLOSED


# -- the factory --------------------------------------------------------------------------------


def test_the_factory_builds_a_bedrock_client_from_the_environment(
    converse: ConverseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "bedrock")
    monkeypatch.setenv("LLM_BREAKER_FAILURES", "4")
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "12")

    client = get_llm_client()
    completion = client.complete([ChatMessage.user("hi")])

    assert isinstance(client, BedrockClient)
    assert client.name == "bedrock"
    assert client.breaker is resilience._breakers["llm:bedrock"]
    assert client.breaker.failure_threshold == 4
    assert client.timeouts == Timeouts(connect=3.0, read=12.0)
    assert completion.model == MODEL
    assert converse.state.requests[0].model_id == MODEL


def test_the_model_id_comes_from_llm_model(converse: ConverseServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "bedrock")
    monkeypatch.setenv("LLM_MODEL", "us.amazon.nova-lite-v1:0")

    get_llm_client().complete([ChatMessage.user("hi")])

    assert converse.state.requests[0].model_id == "us.amazon.nova-lite-v1:0"
    assert converse.state.requests[0].path == "/model/us.amazon.nova-lite-v1%3A0/converse"
