"""GenAI spans of LLM calls (insightmesh.llm.telemetry): the OpenAI-compatible client over real HTTP
to the loopback stand-in, and the offline client; spans exported to an in-memory exporter."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from insightmesh import tracing
from insightmesh.llm import ChatMessage, LlmRequestError, LlmUnavailableError, OfflineClient, OpenAICompatibleClient
from insightmesh.llm.bedrock import BedrockClient
from insightmesh.llm.telemetry import provider_name
from insightmesh.llm.tools import ToolCall, ToolCallTurn, ToolResultTurn, ToolSpec
from tests.llm_fixtures import openai_client, openai_standin  # noqa: F401
from tests.standins.openai_server import OpenAIStandin, count_tokens
from tests.tracing_fixtures import all_text, attributes, traced_fixture  # noqa: F401

QUESTION = "What did the board decide about Nightingale? Mail jane.doe@example.com, key sk-abcdefghijklmnopqrstuv"
SEARCH = ToolSpec("web_search", "Search the web.", {"type": "object", "properties": {"query": {"type": "string"}}})


@pytest.fixture
def client(standin: OpenAIStandin) -> OpenAICompatibleClient:
    return openai_client(standin, breaker_name="llm:spans", failure_threshold=10)


def test_a_completion_is_one_client_span_with_the_genai_attributes_and_no_content(
        traced: InMemorySpanExporter, client: OpenAICompatibleClient, standin: OpenAIStandin) -> None:
    completion = client.complete([ChatMessage.user(QUESTION)], system="Be brief.", max_tokens=300, temperature=0.5)

    [span] = traced.get_finished_spans()
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    assert attributes(span) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.request.max_tokens": 300, "gen_ai.request.temperature": 0.5,
        "server.address": "127.0.0.1", "server.port": standin.port,
        "gen_ai.response.model": "gpt-4o-mini", "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": completion.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": count_tokens(completion.text),
    }
    leaked = all_text(traced)
    assert "Nightingale" not in leaked and "Be brief" not in leaked and "LLM:" not in leaked


def test_a_stream_is_one_span_from_request_to_last_piece(
        traced: InMemorySpanExporter, client: OpenAICompatibleClient) -> None:
    pieces: list[str] = []
    completion = client.stream([ChatMessage.user("Tell me about anvils")], on_text=pieces.append)

    [span] = traced.get_finished_spans()
    assert len(pieces) > 1 and "".join(pieces) == completion.text
    found = attributes(span)
    assert found["insightmesh.llm.stream"] is True
    assert found["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens > 0
    assert found["gen_ai.response.finish_reasons"] == ("stop",)
    assert "anvils" not in all_text(traced)


def test_tool_calling_steps_and_their_text_fallback_are_one_span_each(
        traced: InMemorySpanExporter, client: OpenAICompatibleClient, standin: OpenAIStandin) -> None:
    standin.script_replies({"tool_calls": [{"id": "call_a", "name": "web_search", "arguments": {"query": "acme"}}]})
    step = client.complete_with_tools([ChatMessage.user("Who is Acme?")], tools=[SEARCH])
    # Without tools the client falls back to complete(): still one span, not two.
    client.complete_with_tools([ChatMessage.user("Who is Acme?")], tools=())

    first, second = traced.get_finished_spans()
    assert step.tool_calls[0].id == "call_a"
    assert attributes(first)["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert attributes(first)["insightmesh.llm.tools"] == 1
    assert attributes(second)["insightmesh.llm.tools"] == 0 and second.name == "chat gpt-4o-mini"
    assert "acme" not in all_text(traced).lower()


def test_a_refusal_carries_the_providers_error_code(
        traced: InMemorySpanExporter, client: OpenAICompatibleClient, standin: OpenAIStandin) -> None:
    standin.require_api_key("sk-the-right-key-0123456789")

    with pytest.raises(LlmRequestError):
        client.complete([ChatMessage.user("hello")])

    [span] = traced.get_finished_spans()
    assert attributes(span)["error.type"] == "invalid_api_key"
    assert span.status.status_code is StatusCode.ERROR
    assert "gen_ai.response.model" not in attributes(span)


def test_retries_stay_inside_one_span_that_ends_unavailable(
        traced: InMemorySpanExporter, client: OpenAICompatibleClient, standin: OpenAIStandin) -> None:
    standin.set_mode("error")

    with pytest.raises(LlmUnavailableError):
        client.complete([ChatMessage.user("hello")])

    [span] = traced.get_finished_spans()
    assert len(standin.chat_requests()) == 3  # three attempts, one span
    assert attributes(span)["error.type"] == "LlmUnavailableError"
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


def test_content_capture_puts_redacted_messages_on_the_span(
        traced: InMemorySpanExporter, client: OpenAICompatibleClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracing.CAPTURE_CONTENT_VARIABLE, "true")
    client.complete([ChatMessage.user(QUESTION)], system="Be brief. Token xoxb-1234567890-abcdef")

    found = attributes(traced.get_finished_spans()[0])
    assert json.loads(str(found["gen_ai.system_instructions"])) == [
        {"type": "text", "content": "Be brief. Token [REDACTED]"}]
    [message] = json.loads(str(found["gen_ai.input.messages"]))
    assert message["role"] == "user"
    content = message["parts"][0]["content"]
    assert "Nightingale" in content and "j***@example.com" in content
    assert "sk-abcdef" not in content and "jane.doe" not in content
    [output] = json.loads(str(found["gen_ai.output.messages"]))
    assert output["role"] == "assistant" and output["finish_reason"] == "stop"
    assert output["parts"][0]["content"].startswith("LLM: What did the board decide")
    assert "jane.doe" not in output["parts"][0]["content"]


def test_content_capture_shows_tool_calls_and_results_in_the_conventions_shape(
        traced: InMemorySpanExporter, client: OpenAICompatibleClient, standin: OpenAIStandin,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracing.CAPTURE_CONTENT_VARIABLE, "true")
    standin.script_replies("Acme makes anvils [1].")
    turns = [ChatMessage.user("Who is Acme?"),
             ToolCallTurn((ToolCall("call_a", "web_search", {"query": "acme", "api_key": "hunter2"}),)),
             ToolResultTurn("call_a", "web_search", "Acme Corp makes anvils.")]

    client.complete_with_tools(turns, tools=[SEARCH])

    messages = json.loads(str(attributes(traced.get_finished_spans()[0])["gen_ai.input.messages"]))
    assert messages[1] == {"role": "assistant", "parts": [
        {"type": "tool_call", "id": "call_a", "name": "web_search",
         "arguments": {"query": "acme", "api_key": "[REDACTED]"}}]}
    assert messages[2] == {"role": "tool", "parts": [
        {"type": "tool_call_response", "id": "call_a", "result": "Acme Corp makes anvils."}]}


def test_the_offline_client_is_traced_once_per_call(traced: InMemorySpanExporter) -> None:
    pieces: list[str] = []
    OfflineClient().stream([ChatMessage.user("hello there")], on_text=pieces.append)  # stream calls complete

    [span] = traced.get_finished_spans()
    assert span.name == "chat offline"
    assert attributes(span)["gen_ai.provider.name"] == "insightmesh.offline"
    assert attributes(span)["insightmesh.llm.usage_estimated"] is True
    assert "hello" not in all_text(traced)


def test_provider_names_follow_the_conventions_registry(client: OpenAICompatibleClient) -> None:
    assert provider_name(BedrockClient()) == "aws.bedrock"
    assert provider_name(client) == "openai"


def test_sampled_out_calls_build_no_attributes(
        traced: InMemorySpanExporter, client: OpenAICompatibleClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from insightmesh import tracing_otel

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    tracing_otel.use_exporter(traced)  # a provider reading the sampler now

    completion = client.complete([ChatMessage.user("hello")])

    assert completion.text and traced.get_finished_spans() == ()


def test_tracing_off_makes_no_span_and_changes_nothing(client: OpenAICompatibleClient,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    tracing.reset_for_tests()

    assert client.complete([ChatMessage.user("hello")]).text == "LLM: hello"
    assert not tracing.enabled()
