"""The offline LLM, the LLM vocabulary and the provider factory (insightmesh.llm) — no network."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from insightmesh import resilience
from insightmesh.config import ConfigurationError
from insightmesh.llm import (
    ChatMessage,
    Completion,
    LlmClient,
    LlmConfigurationError,
    LlmError,
    LlmRequestError,
    LlmSettings,
    LlmUnavailableError,
    OfflineClient,
    Usage,
    get_llm_client,
    load_llm_settings,
)

ROOT = Path(__file__).parents[2]
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


@pytest.fixture(autouse=True)
def _fresh_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in LLM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    get_llm_client.cache_clear()
    resilience._breakers.clear()
    yield
    get_llm_client.cache_clear()
    resilience._breakers.clear()


@pytest.fixture
def llm() -> OfflineClient:
    return OfflineClient()


def conversation() -> list[ChatMessage]:
    return [
        ChatMessage.user("What is MEDDIC?"),
        ChatMessage.assistant("A sales qualification framework."),
        ChatMessage.user("Which letter stands for the economic buyer?"),
    ]


# -- the offline client -------------------------------------------------------------------------


def test_the_reply_is_labelled_and_echoes_the_last_user_message(llm: OfflineClient) -> None:
    completion = llm.complete(conversation())

    assert completion.text == (
        '[offline LLM] You said: "Which letter stands for the economic buyer?" (3 messages in the conversation)'
    )
    assert completion.provider == "offline"
    assert completion.model == "offline"
    assert completion.finish_reason == "stop"


def test_the_same_request_gets_the_same_completion(llm: OfflineClient) -> None:
    assert llm.complete(conversation(), system="Be brief.") == OfflineClient().complete(
        conversation(), system="Be brief."
    )


def test_usage_is_computed_from_the_characters(llm: OfflineClient) -> None:
    messages = conversation()
    system = "You are the help agent of Example Corp."
    completion = llm.complete(messages, system=system)

    expected_prompt = len(system) // 4 + sum(len(message.content) // 4 for message in messages)
    assert completion.usage == Usage(
        prompt_tokens=expected_prompt, completion_tokens=len(completion.text) // 4, estimated=True
    )
    assert completion.usage.total == expected_prompt + len(completion.text) // 4


def test_a_long_message_is_echoed_in_part_on_one_line(llm: OfflineClient) -> None:
    long_question = "why " * 150 + "\nis the sky blue?"
    completion = llm.complete([ChatMessage.user(long_question)])

    echoed = completion.text.split('"')[1]
    assert len(echoed) == 200
    assert echoed.endswith("…")
    assert echoed[:-1].strip() == long_question[:199].strip()
    assert "\n" not in completion.text
    assert "sky blue" not in completion.text


@pytest.mark.parametrize("system", ["Summarize this thread.", "Please SUMMARISE the conversation", "summary"])
def test_a_system_prompt_asking_for_a_summary_gets_a_summary_line(llm: OfflineClient, system: str) -> None:
    completion = llm.complete(conversation(), system=system)

    assert completion.text == (
        "[offline LLM] Summary of 3 messages (10 words): "
        "What is MEDDIC? Which letter stands for the economic buyer?"
    )


def test_a_system_message_in_the_conversation_can_ask_for_the_summary_too(llm: OfflineClient) -> None:
    messages = [ChatMessage.system("Summarize what the user said."), ChatMessage.user("Deploy on Friday.")]
    completion = llm.complete(messages)

    assert completion.text == "[offline LLM] Summary of 2 messages (3 words): Deploy on Friday."


def test_max_tokens_cuts_the_reply(llm: OfflineClient) -> None:
    completion = llm.complete([ChatMessage.user("x" * 400)], max_tokens=10)

    assert completion.text == '[offline LLM] You said: "xxxxxxxxxxxxxxx'
    assert len(completion.text) == 40
    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 10


def test_without_a_user_message_the_echo_is_empty(llm: OfflineClient) -> None:
    completion = llm.complete([ChatMessage.assistant("Hello, how can I help?")])
    assert completion.text == '[offline LLM] You said: "" (1 message in the conversation)'


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"messages": []}, "at least one message"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
    ],
)
def test_impossible_requests_are_refused(llm: OfflineClient, kwargs: dict[str, object], problem: str) -> None:
    arguments: dict[str, object] = {"messages": conversation(), **kwargs}
    with pytest.raises(ValueError, match=problem):
        llm.complete(**arguments)  # type: ignore[arg-type]


def test_messages_must_be_chat_messages(llm: OfflineClient) -> None:
    with pytest.raises(TypeError):
        llm.complete([{"role": "user", "content": "hi"}])  # type: ignore[list-item]


def test_the_offline_client_is_an_llm_client(llm: OfflineClient) -> None:
    assert isinstance(llm, LlmClient)
    assert llm.name == "offline"


# -- vocabulary ---------------------------------------------------------------------------------


def test_a_message_has_one_of_three_roles() -> None:
    assert ChatMessage.user("hi").to_dict() == {"role": "user", "content": "hi"}
    assert ChatMessage.system("s").role == "system"
    assert ChatMessage.assistant("a").role == "assistant"
    with pytest.raises(ValueError, match="role"):
        ChatMessage("tool", "x")  # type: ignore[arg-type]


def test_messages_and_completions_are_immutable() -> None:
    message = ChatMessage.user("hi")
    with pytest.raises(AttributeError):
        message.content = "changed"  # type: ignore[misc]
    completion = Completion(text="t", usage=Usage(1, 2), model="m", provider="p")
    with pytest.raises(AttributeError):
        completion.text = "changed"  # type: ignore[misc]
    assert completion.usage.total == 3
    assert completion.usage.estimated is False


def test_every_llm_error_carries_a_user_safe_message() -> None:
    unavailable = LlmUnavailableError("openai answered HTTP 503", provider="openai", retry_after=2.0)
    refused = LlmRequestError("HTTP 400", status=400, code="context_length_exceeded")
    misconfigured = LlmConfigurationError("LLM_API_KEY: not set")

    assert all(isinstance(error, LlmError) for error in (unavailable, refused, misconfigured))
    assert isinstance(misconfigured, ConfigurationError)  # cold-start handling treats it the same
    assert "temporarily unavailable" in unavailable.user_message
    assert "503" not in unavailable.user_message
    assert unavailable.retry_after == 2.0
    assert refused.status == 400 and refused.code == "context_length_exceeded"
    assert "administrator" in misconfigured.user_message
    assert LlmUnavailableError("x", user_message="custom").user_message == "custom"


# -- the factory --------------------------------------------------------------------------------


def test_the_default_provider_is_offline_and_the_client_is_built_once() -> None:
    client = get_llm_client()

    assert isinstance(client, OfflineClient)
    assert get_llm_client() is client
    assert client.complete([ChatMessage.user("ping")]).text.startswith("[offline LLM]")


def test_offline_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(LlmConfigurationError, match="LLM_PROVIDER=offline"):
        get_llm_client()


def test_plain_http_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("LLM_BASE_URL", "http://llm.internal:8000/v1")
    with pytest.raises(LlmConfigurationError, match="LLM_BASE_URL must use https"):
        load_llm_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LLM_PROVIDER", "gpt"),
        ("LLM_TIMEOUT_SECONDS", "0"),
        ("LLM_CONNECT_TIMEOUT_SECONDS", "soon"),
        ("LLM_BREAKER_FAILURES", "0"),
        ("LLM_BREAKER_COOLDOWN_SECONDS", "-1"),
        ("LLM_BASE_URL", "ftp://example.com"),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(LlmConfigurationError, match=name):
        get_llm_client()


def test_empty_values_mean_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # The template passes empty stack parameters through as empty variables.
    monkeypatch.setenv("LLM_MODEL", "")
    monkeypatch.setenv("LLM_BASE_URL", "")
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    settings = load_llm_settings()

    assert settings.model == "gpt-4o-mini"
    assert settings.base_url == "https://api.openai.com/v1"
    assert settings.timeouts == resilience.Timeouts(connect=3.0, read=30.0)
    assert (settings.LLM_BREAKER_FAILURES, settings.LLM_BREAKER_COOLDOWN_SECONDS) == (3, 30.0)


def test_each_provider_has_its_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "bedrock")
    assert LlmSettings().model == "anthropic.claude-3-haiku-20240307-v1:0"
    monkeypatch.setenv("LLM_MODEL", "amazon.nova-lite-v1:0")
    assert LlmSettings().model == "amazon.nova-lite-v1:0"


def test_anthropic_needs_an_openai_compatible_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "anthropic")
    with pytest.raises(LlmConfigurationError, match="LLM_BASE_URL"):
        get_llm_client()
    monkeypatch.setenv("LLM_BASE_URL", "https://api.openai.com/v1")  # the template's default
    with pytest.raises(LlmConfigurationError, match="LLM_BASE_URL"):
        get_llm_client()


def test_importing_the_context_loads_no_provider_sdk() -> None:
    # Cold start: httpx, boto3 and pynamodb are imported by the adapter that uses them, on first use.
    code = (
        "import sys, insightmesh.llm as llm; llm.get_llm_client(); "
        "print(sorted(m for m in ('httpx', 'boto3', 'botocore', 'pynamodb') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "", "LLM_PROVIDER": "offline"},
        check=True,
    )
    assert result.stdout.strip() == "[]"
