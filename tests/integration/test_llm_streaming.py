"""Streaming LLM answers (issue 14): OpenAI-compatible SSE against the loopback stand-in, Bedrock
ConverseStream's events, the offline provider's pieces, and ``stream_or_complete``'s fallback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import EventStreamError

from insightmesh.llm import ChatMessage, LlmUnavailableError, OfflineClient
from insightmesh.llm import bedrock as bedrock_module
from insightmesh.llm.base import Completion, StreamingLlmClient, Usage, stream_or_complete
from insightmesh.llm.bedrock import BedrockClient
from insightmesh.llm.offline import stream_pieces
from insightmesh.llm.openai import DEFAULT_TIMEOUTS, OpenAICompatibleClient
from insightmesh.resilience import CircuitBreaker
from tests.llm_fixtures import openai_client, openai_standin  # noqa: F401
from tests.standins.openai_server import OpenAIStandin

QUESTION = [ChatMessage.user("Tell me about streaming")]


def streaming_client(standin: OpenAIStandin) -> OpenAICompatibleClient:
    return openai_client(standin, failure_threshold=5, timeouts=DEFAULT_TIMEOUTS)


def test_openai_streams_the_answer_in_pieces_with_the_usage_of_its_last_chunk(standin: OpenAIStandin) -> None:
    standin.set_reply("one two three four five")
    pieces: list[str] = []
    completion = streaming_client(standin).stream(QUESTION, on_text=pieces.append, system="Be brief.")
    assert pieces == ["one ", "two ", "three ", "four ", "five"]
    assert completion.text == "one two three four five"
    assert completion.usage == Usage(prompt_tokens=8, completion_tokens=5)  # measured, not estimated
    assert completion.finish_reason == "stop"
    body = standin.chat_requests()[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_openai_stream_is_retried_before_its_first_text(standin: OpenAIStandin) -> None:
    standin.fail_next("error")
    pieces: list[str] = []
    completion = streaming_client(standin).stream(QUESTION, on_text=pieces.append)
    assert "".join(pieces) == completion.text == "LLM: Tell me about streaming"
    assert len(standin.chat_requests()) == 2


def test_openai_stream_without_usage_is_estimated(standin: OpenAIStandin) -> None:
    standin.apply_control({"include_usage": False})
    completion = streaming_client(standin).stream(QUESTION, on_text=lambda _t: None)
    assert completion.usage.estimated


def test_offline_pieces_join_back_to_the_complete_answer() -> None:
    client = OfflineClient()
    pieces: list[str] = []
    completion = client.stream(QUESTION, on_text=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == completion.text == client.complete(QUESTION).text
    assert stream_pieces("a  b c d\n\ne") == ["a  b c ", "d\n\ne"]


def test_a_client_that_cannot_stream_hands_over_its_whole_answer() -> None:
    class Plain:
        name = "plain"

        def complete(self, messages: Any, **kwargs: Any) -> Completion:
            return Completion(text="whole", usage=Usage(1, 1), model="m", provider="plain")

    pieces: list[str] = []
    assert not isinstance(Plain(), StreamingLlmClient)
    assert stream_or_complete(Plain(), QUESTION, on_text=pieces.append).text == "whole"
    assert pieces == ["whole"]


class FakeBedrock:
    def __init__(self, events: list[dict[str, Any]], fail_after: int | None = None) -> None:
        self.events, self.fail_after, self.calls = events, fail_after, 0

    def converse_stream(self, **request: Any) -> dict[str, Any]:
        self.calls += 1

        def stream() -> Iterator[dict[str, Any]]:
            for index, event in enumerate(self.events):
                if self.fail_after is not None and index == self.fail_after:
                    raise EventStreamError({"Error": {"Code": "throttlingException", "Message": "slow down"}},
                                           "ConverseStream")
                yield event
        return {"stream": stream()}


EVENTS: list[dict[str, Any]] = [
    {"messageStart": {"role": "assistant"}},
    {"contentBlockDelta": {"delta": {"text": "Hello "}, "contentBlockIndex": 0}},
    {"contentBlockDelta": {"delta": {"text": "there."}, "contentBlockIndex": 0}},
    {"contentBlockStop": {"contentBlockIndex": 0}},
    {"messageStop": {"stopReason": "end_turn"}},
    {"metadata": {"usage": {"inputTokens": 11, "outputTokens": 3, "totalTokens": 14}, "metrics": {"latencyMs": 9}}},
]


def bedrock(monkeypatch: pytest.MonkeyPatch, fake: FakeBedrock) -> BedrockClient:
    monkeypatch.setattr(bedrock_module, "bedrock_runtime", lambda _timeouts: fake)
    return BedrockClient(sleep=lambda _s: None, breaker=CircuitBreaker("llm:b", failure_threshold=5, cool_down=1.0))


def test_bedrock_converse_stream_events_become_pieces_usage_and_stop_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    pieces: list[str] = []
    completion = bedrock(monkeypatch, FakeBedrock(EVENTS)).stream(QUESTION, on_text=pieces.append)
    assert pieces == ["Hello ", "there."]
    assert completion.text == "Hello there."
    assert completion.usage == Usage(prompt_tokens=11, completion_tokens=3)
    assert completion.finish_reason == "end_turn"


def test_bedrock_stream_error_before_any_text_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeBedrock(EVENTS, fail_after=1)
    client = bedrock(monkeypatch, fake)
    with pytest.raises(LlmUnavailableError):
        client.stream(QUESTION, on_text=lambda _t: None)
    assert fake.calls == 3  # every attempt failed before its first text


def test_bedrock_stream_error_after_text_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeBedrock(EVENTS, fail_after=2)
    pieces: list[str] = []
    with pytest.raises(LlmUnavailableError):
        bedrock(monkeypatch, fake).stream(QUESTION, on_text=pieces.append)
    assert fake.calls == 1 and pieces == ["Hello "]  # nothing repeated to the reader
