"""The OpenAI-compatible client against the loopback stand-in (insightmesh.llm.openai).

Every test talks real HTTP to ``tests.standins.openai_server`` on 127.0.0.1; waits between
retries go to a recording ``sleep`` and the breaker runs on a fake clock, so nothing sleeps for real.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from insightmesh import resilience
from insightmesh.llm import (
    ChatMessage,
    LlmConfigurationError,
    LlmRequestError,
    LlmUnavailableError,
    OpenAICompatibleClient,
    get_llm_client,
)
from insightmesh.llm.openai import close_http_clients, http_client
from insightmesh.observability import get_logger
from insightmesh.resilience import BreakerState, CircuitBreaker, Timeouts
from tests.helpers import free_port, wait_for
from tests.llm_fixtures import openai_client, openai_standin  # noqa: F401
from tests.standins.openai_server import OpenAIStandin, count_tokens

ROOT = Path(__file__).parents[2]
API_KEY = "sk-standin-0123456789abcdefghij"
SECRET_QUESTION = "What did the board decide about project Nightingale?"
LLM_VARIABLES = (
    "LLM_PROVIDER",
    "LLM_BASE_URL",
    "LLM_MODEL",
    "LLM_API_KEY",
    "LLM_API_KEY_SECRET_ID",
    "LLM_API_KEY_PARAMETER",
    "LLM_TIMEOUT_SECONDS",
    "LLM_CONNECT_TIMEOUT_SECONDS",
    "LLM_BREAKER_FAILURES",
    "LLM_BREAKER_COOLDOWN_SECONDS",
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _fresh_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in LLM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    get_llm_client.cache_clear()
    resilience._breakers.clear()
    yield
    get_llm_client.cache_clear()
    resilience._breakers.clear()
    close_http_clients()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("llm:openai", failure_threshold=3, cool_down=30.0, clock=clock)


@pytest.fixture
def make_client(
    standin: OpenAIStandin, breaker: CircuitBreaker, sleeps: list[float]
) -> Callable[..., OpenAICompatibleClient]:
    def make(**overrides: Any) -> OpenAICompatibleClient:
        return openai_client(standin, **{"api_key": API_KEY, "breaker": breaker, "sleep": sleeps.append, **overrides})

    return make


@pytest.fixture
def client(make_client: Callable[..., OpenAICompatibleClient]) -> OpenAICompatibleClient:
    return make_client()


def ask(client: OpenAICompatibleClient, question: str = "What is MEDDIC?", **kwargs: Any) -> Any:
    return client.complete([ChatMessage.user(question)], **kwargs)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    logger = get_logger()
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]


# -- the happy path -----------------------------------------------------------------------------


def test_a_completion_speaks_the_chat_completions_wire_format(
    standin: OpenAIStandin, client: OpenAICompatibleClient
) -> None:
    messages = [
        ChatMessage.user("What is MEDDIC?"),
        ChatMessage.assistant("A sales qualification framework."),
        ChatMessage.user("Who is the economic buyer?"),
    ]
    completion = client.complete(messages, system="You are the meddic agent.", max_tokens=300, temperature=0.5)

    assert completion.text == "LLM: Who is the economic buyer?"
    assert completion.provider == "openai"
    assert completion.model == "gpt-4o-mini"
    assert completion.finish_reason == "stop"
    prompt = "You are the meddic agent." + "".join(message.content for message in messages)
    assert completion.usage.prompt_tokens == count_tokens(prompt)
    assert completion.usage.completion_tokens == count_tokens(completion.text)
    assert completion.usage.estimated is False

    [request] = standin.chat_requests()
    assert request.path == "/v1/chat/completions"
    assert request.header("Authorization") == f"Bearer {API_KEY}"
    assert request.header("Content-Type") == "application/json"
    assert request.body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are the meddic agent."},
            {"role": "user", "content": "What is MEDDIC?"},
            {"role": "assistant", "content": "A sales qualification framework."},
            {"role": "user", "content": "Who is the economic buyer?"},
        ],
        "max_tokens": 300,
        "temperature": 0.5,
    }


def test_the_configured_model_is_sent_and_the_reported_one_returned(
    standin: OpenAIStandin, make_client: Callable[..., OpenAICompatibleClient]
) -> None:
    completion = ask(make_client(model="llama3.1:8b"))

    assert standin.chat_requests()[0].body["model"] == "llama3.1:8b"
    assert completion.model == "llama3.1:8b"


def test_without_a_key_no_authorization_header_is_sent(
    standin: OpenAIStandin, make_client: Callable[..., OpenAICompatibleClient]
) -> None:
    ask(make_client(api_key=""))
    ask(make_client(api_key="not-configured"))  # the template's placeholder secret

    assert [request.header("Authorization") for request in standin.chat_requests()] == [None, None]


def test_a_key_function_is_asked_for_each_request(
    standin: OpenAIStandin, make_client: Callable[..., OpenAICompatibleClient]
) -> None:
    keys = iter(["sk-first-key-0000000000", "sk-rotated-key-111111111"])
    client = make_client(api_key=lambda: next(keys))
    ask(client)
    ask(client)

    assert [request.header("Authorization") for request in standin.chat_requests()] == [
        "Bearer sk-first-key-0000000000",
        "Bearer sk-rotated-key-111111111",
    ]


def test_missing_usage_is_estimated_and_flagged(standin: OpenAIStandin, client: OpenAICompatibleClient) -> None:
    standin.apply_control({"include_usage": False})
    standin.set_reply("The economic buyer signs the cheque.")

    completion = ask(client, "Who is the economic buyer, exactly?", system="Be brief.")

    assert completion.usage.estimated is True
    assert completion.usage.prompt_tokens == len("Be brief.") // 4 + len("Who is the economic buyer, exactly?") // 4
    assert completion.usage.completion_tokens == len("The economic buyer signs the cheque.") // 4


def test_a_cut_reply_reports_its_finish_reason(standin: OpenAIStandin, client: OpenAICompatibleClient) -> None:
    completion = ask(client, "x" * 100, max_tokens=5)
    assert completion.text == "LLM: xxxxxxxxxxxxxxx"
    assert completion.finish_reason == "length"


def test_one_http_client_is_reused_per_base_url(standin: OpenAIStandin, client: OpenAICompatibleClient) -> None:
    ask(client)
    pooled = http_client(standin.base_url)
    ask(client)

    assert http_client(standin.base_url) is pooled
    assert http_client(standin.base_url + "/other") is not pooled
    assert pooled.follow_redirects is False


# -- retries ------------------------------------------------------------------------------------


def test_a_429_is_retried_after_the_servers_retry_after(
    standin: OpenAIStandin, client: OpenAICompatibleClient, sleeps: list[float], breaker: CircuitBreaker
) -> None:
    standin.set_mode("ok", retry_after="2")
    standin.fail_next("429")

    completion = ask(client)

    assert completion.text == "LLM: What is MEDDIC?"
    assert [request.mode for request in standin.chat_requests()] == ["429", "ok"]
    assert sleeps == [2.0]
    assert breaker.state is BreakerState.CLOSED


def test_5xx_and_429_without_retry_after_back_off_with_jitter(
    standin: OpenAIStandin, client: OpenAICompatibleClient, sleeps: list[float]
) -> None:
    standin.set_mode("ok", retry_after=None)
    standin.fail_next("error", "429")

    assert ask(client).text == "LLM: What is MEDDIC?"
    assert len(standin.chat_requests()) == 3
    assert len(sleeps) == 2
    assert 0.0 <= sleeps[0] <= 0.5 and 0.0 <= sleeps[1] <= 1.0  # base 0.5 s, doubling, full jitter


def test_persistent_5xx_give_up_after_three_attempts(
    standin: OpenAIStandin, client: OpenAICompatibleClient, sleeps: list[float]
) -> None:
    standin.set_mode("error")

    with pytest.raises(LlmUnavailableError) as caught:
        ask(client)

    assert len(standin.chat_requests()) == 3
    assert len(sleeps) == 2
    error = caught.value
    assert error.provider == "openai"
    assert "HTTP 500" in str(error)
    assert error.user_message == "The AI service is temporarily unavailable. Please try again in a few minutes."


def test_a_retry_after_longer_than_the_limit_is_not_waited_for(
    standin: OpenAIStandin, client: OpenAICompatibleClient, sleeps: list[float]
) -> None:
    standin.set_mode("429", retry_after="120")

    with pytest.raises(LlmUnavailableError) as caught:
        ask(client)

    assert len(standin.chat_requests()) == 1
    assert sleeps == []
    assert caught.value.retry_after == resilience.MAX_RETRY_AFTER_SECONDS


def test_a_timeout_is_retried_then_reported_without_waiting_for_the_server(
    standin: OpenAIStandin, make_client: Callable[..., OpenAICompatibleClient]
) -> None:
    standin.set_mode("hang", hang_seconds=30)
    client = make_client(timeouts=Timeouts(connect=1.0, read=0.2))

    started = time.monotonic()
    with pytest.raises(LlmUnavailableError) as caught:
        ask(client)
    elapsed = time.monotonic() - started

    assert "timed out" in str(caught.value)
    assert len(standin.chat_requests()) == 3
    assert elapsed < standin.hang_seconds  # each attempt gave up at its read timeout


def test_a_dropped_connection_is_retried(
    standin: OpenAIStandin, client: OpenAICompatibleClient, sleeps: list[float]
) -> None:
    standin.fail_next("down")

    assert ask(client).text == "LLM: What is MEDDIC?"
    assert [request.mode for request in standin.chat_requests()] == ["down", "ok"]


def test_a_refused_connection_is_unavailable(make_client: Callable[..., OpenAICompatibleClient]) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there

    with pytest.raises(LlmUnavailableError, match="connection failed"):
        ask(client)


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [(API_KEY, 400, None), ("sk-wrong-key-000000000000000", 401, "invalid_api_key")],
)
def test_other_4xx_are_refusals_neither_retried_nor_counted(
    standin: OpenAIStandin,
    make_client: Callable[..., OpenAICompatibleClient],
    breaker: CircuitBreaker,
    sleeps: list[float],
    key: str,
    status: int,
    code: str | None,
) -> None:
    standin.require_api_key(API_KEY)
    # An empty model makes the stand-in answer 400 invalid_request_error, as OpenAI does.
    client = make_client(api_key=key, model="" if status == 400 else "gpt-4o-mini")

    for _ in range(4):  # more than the breaker's threshold
        with pytest.raises(LlmRequestError) as caught:
            ask(client)

    assert caught.value.status == status
    assert caught.value.code == (code or "invalid_request_error")
    assert len(standin.chat_requests()) == 4  # one request per call: no retry
    assert sleeps == []
    assert breaker.state is BreakerState.CLOSED


def test_a_garbled_answer_is_unavailable_and_not_retried(
    standin: OpenAIStandin, client: OpenAICompatibleClient, breaker: CircuitBreaker
) -> None:
    standin.set_mode("invalid")  # 200 with a body that holds no choices

    with pytest.raises(LlmUnavailableError, match="choices"):
        ask(client)

    assert len(standin.chat_requests()) == 1  # asking again would get the same
    assert breaker._failures == 1  # but it counts: a server answering garbage is not healthy


# -- the circuit breaker ------------------------------------------------------------------------


def test_the_breaker_opens_fails_fast_and_recovers_after_the_cool_down(
    standin: OpenAIStandin, client: OpenAICompatibleClient, breaker: CircuitBreaker, clock: FakeClock
) -> None:
    standin.set_mode("error")
    with pytest.raises(LlmUnavailableError):
        ask(client)  # three failed attempts: the threshold
    assert breaker.state is BreakerState.OPEN
    assert len(standin.chat_requests()) == 3

    with pytest.raises(LlmUnavailableError) as caught:
        ask(client)
    assert "circuit is open" in str(caught.value)
    assert caught.value.retry_after == pytest.approx(30.0)
    assert len(standin.chat_requests()) == 3  # the server was not called

    standin.set_mode("ok")
    clock.advance(29.0)
    with pytest.raises(LlmUnavailableError):
        ask(client)  # still cooling down
    assert len(standin.chat_requests()) == 3

    clock.advance(1.0)
    assert ask(client).text == "LLM: What is MEDDIC?"  # the half-open trial call
    assert breaker.state is BreakerState.CLOSED
    assert len(standin.chat_requests()) == 4


def test_a_failed_trial_call_opens_the_breaker_again(
    standin: OpenAIStandin, client: OpenAICompatibleClient, breaker: CircuitBreaker, clock: FakeClock
) -> None:
    standin.set_mode("error")
    with pytest.raises(LlmUnavailableError):
        ask(client)
    clock.advance(30.0)

    with pytest.raises(LlmUnavailableError):
        ask(client)  # the one trial call fails; the retry then meets an open circuit
    assert len(standin.chat_requests()) == 4
    assert breaker.state is BreakerState.OPEN


def test_the_breaker_is_shared_per_provider_and_configured_from_the_environment(
    standin: OpenAIStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("LLM_BASE_URL", standin.base_url)
    monkeypatch.setenv("LLM_BREAKER_FAILURES", "2")
    monkeypatch.setenv("LLM_BREAKER_COOLDOWN_SECONDS", "5")
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "7.5")
    monkeypatch.setenv("LLM_CONNECT_TIMEOUT_SECONDS", "0.5")

    client = get_llm_client()

    assert isinstance(client, OpenAICompatibleClient)
    assert client.breaker is resilience._breakers["llm:openai"]
    assert (client.breaker.failure_threshold, client.breaker.cool_down) == (2, 5.0)
    assert client.timeouts == Timeouts(connect=0.5, read=7.5)
    assert client.retry.attempts == 3

    standin.set_mode("error")
    client.retry = resilience.RetryPolicy(attempts=3, sleep=lambda _: None)
    with pytest.raises(LlmUnavailableError, match="circuit"):
        ask(client)  # two failures open it; the third attempt meets the open circuit
    assert len(standin.chat_requests()) == 2


# -- secrets and logs ---------------------------------------------------------------------------


def test_logs_never_contain_the_key_or_the_conversation(
    standin: OpenAIStandin, client: OpenAICompatibleClient, log_stream: io.StringIO
) -> None:
    ask(client, SECRET_QUESTION)
    standin.set_mode("error")
    with pytest.raises(LlmUnavailableError):
        ask(client, SECRET_QUESTION)

    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "llm completion",
        "llm attempt refused",
        "llm attempt refused",
        "llm attempt refused",
        "llm unavailable",
    ]
    assert lines[0]["usage"]["completion"] == count_tokens("LLM: " + SECRET_QUESTION)
    output = log_stream.getvalue()
    assert API_KEY not in output
    assert "Nightingale" not in output
    assert API_KEY not in repr(client)


def test_the_factory_client_reads_its_key_from_secrets_manager(
    standin: OpenAIStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name="llm-key", SecretString=API_KEY)["ARN"]
        monkeypatch.setenv("LLM_PROVIDER", "openai")
        monkeypatch.setenv("LLM_BASE_URL", standin.base_url)
        monkeypatch.setenv("LLM_MODEL", "gpt-4.1-mini")
        monkeypatch.setenv("LLM_API_KEY_SECRET_ID", arn)

        completion = get_llm_client().complete([ChatMessage.user("hello")])

    assert completion.text == "LLM: hello"
    [request] = standin.chat_requests()
    assert request.header("Authorization") == f"Bearer {API_KEY}"
    assert request.body["model"] == "gpt-4.1-mini"


@pytest.mark.parametrize("key", [None, "", "not-configured"])
def test_the_openai_api_without_a_key_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, key: str | None
) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    if key is not None:
        monkeypatch.setenv("LLM_API_KEY", key)

    with pytest.raises(LlmConfigurationError, match="LLM_API_KEY"):
        get_llm_client()


def test_anthropic_goes_through_its_openai_compatible_endpoint(
    standin: OpenAIStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "anthropic")
    monkeypatch.setenv("LLM_BASE_URL", standin.base_url)
    monkeypatch.setenv("LLM_API_KEY", API_KEY)

    client = get_llm_client()
    completion = client.complete([ChatMessage.user("hello")])

    assert client.name == "anthropic"
    assert completion.provider == "anthropic"
    assert completion.model == "claude-3-5-haiku-latest"
    assert "llm:anthropic" in resilience._breakers


# -- the stand-in as a process (what e2e tests use) ---------------------------------------------


def test_the_standin_runs_as_a_process_switchable_over_http() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.standins.openai_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"openai stand-in listening on {base}/v1"
        with httpx.Client(timeout=5.0) as http:
            wait_for(lambda: http.get(f"{base}/_control").status_code == 200, timeout=10, what="the stand-in")
            assert http.post(f"{base}/v1/chat/completions", json=chat).json()["choices"][0]["message"] == {
                "role": "assistant", "content": "LLM: hi", "refusal": None}

            state = http.post(f"{base}/_control", json={"mode": "429", "retry_after": 3}).json()
            assert state["mode"] == "429" and state["retry_after"] == "3"
            refused = http.post(f"{base}/v1/chat/completions", json=chat)
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "3"
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"

            assert http.post(f"{base}/_control", json={"mode": "error"}).status_code == 200
            assert http.post(f"{base}/v1/chat/completions", json=chat).status_code == 500

            assert http.post(f"{base}/_control", json={"mode": "sideways"}).status_code == 400
            assert http.get(f"{base}/_control").json()["mode"] == "error"  # a bad command changes nothing

            http.post(f"{base}/_control", json={"mode": "ok", "reply": "fixed", "script": ["429"]})
            assert http.post(f"{base}/v1/chat/completions", json=chat).status_code == 429
            assert http.post(f"{base}/v1/chat/completions", json=chat).json()["choices"][0]["message"][
                "content"] == "fixed"

            recorded = http.get(f"{base}/_requests").json()["requests"]
            assert [request["mode"] for request in recorded] == ["ok", "429", "error", "429", "ok"]
            assert recorded[0]["body"] == chat
            assert http.post(f"{base}/_control", json={"reset": True}).json()["requests"] == 0
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()
    assert process.returncode == 0
