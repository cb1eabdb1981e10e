"""Tool calling through the OpenAI-compatible client, over loopback HTTP to the stand-in
(tests/standins/openai_server.py): the ``tools``/``tool_choice`` request, ``message.tool_calls``
parsed, the calls and results sent back as OpenAI documents them, and the agent loop end to end."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from insightmesh.llm import ChatMessage, LlmUnavailableError, OpenAICompatibleClient
from insightmesh.llm.tools import (
    INVALID_ARGUMENTS_KEY,
    ToolCall,
    ToolCallingLlmClient,
    ToolCallTurn,
    ToolResultTurn,
    ToolSpec,
)
from insightmesh.tools.base import Source, ToolContext, ToolOutput
from insightmesh.tools.loop import run_tool_loop
from tests.llm_fixtures import openai_client, openai_standin  # noqa: F401
from tests.standins.openai_server import OpenAIStandin

SEARCH = ToolSpec("web_search", "Search the web.", {"type": "object", "properties": {"query": {"type": "string"}},
                                                    "required": ["query"]})


@pytest.fixture
def client(standin: OpenAIStandin) -> OpenAICompatibleClient:
    return openai_client(standin, failure_threshold=3)


def test_tools_are_offered_and_tool_calls_parsed(standin: OpenAIStandin, client: OpenAICompatibleClient) -> None:
    standin.script_replies({"tool_calls": [{"id": "call_a", "name": "web_search", "arguments": '{"query": "acme"}'},
                                           {"id": "call_b", "name": "web_search", "arguments": "{not json"}]})

    step = client.complete_with_tools([ChatMessage.user("Who is Acme?")], tools=[SEARCH], system="Be brief.",
                                      max_tokens=200)

    assert isinstance(client, ToolCallingLlmClient)
    assert step.tool_calls[0] == ToolCall("call_a", "web_search", {"query": "acme"})
    assert step.tool_calls[1].id == "call_b" and INVALID_ARGUMENTS_KEY in step.tool_calls[1].arguments
    assert step.finish_reason == "tool_calls" and step.text == "" and not step.usage.estimated
    [request] = standin.chat_requests()
    assert request.body["tools"] == [{"type": "function", "function": {
        "name": "web_search", "description": "Search the web.", "parameters": dict(SEARCH.parameters)}}]
    assert request.body["tool_choice"] == "auto"
    assert request.body["messages"] == [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "Who is Acme?"}]


def test_calls_and_results_go_back_as_assistant_tool_calls_and_tool_messages(
        standin: OpenAIStandin, client: OpenAICompatibleClient) -> None:
    standin.script_replies("Acme makes anvils [1].")
    turns = [ChatMessage.user("Who is Acme?"),
             ToolCallTurn((ToolCall("call_a", "web_search", {"query": "acme"}),), text="Let me look."),
             ToolResultTurn("call_a", "web_search", "Acme makes anvils.\n\nSources:\n[1] Acme — https://acme.example/")]

    step = client.complete_with_tools(turns, tools=[SEARCH])

    assert step.text == "Acme makes anvils [1]." and step.tool_calls == ()
    sent = standin.chat_requests()[0].body["messages"]
    assert sent[1] == {"role": "assistant", "content": "Let me look.", "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "web_search", "arguments": '{"query": "acme"}'}}]}
    assert sent[2] == {"role": "tool", "tool_call_id": "call_a",
                       "content": "Acme makes anvils.\n\nSources:\n[1] Acme — https://acme.example/"}


def test_offered_no_tools_the_tool_turns_are_sent_as_text(standin: OpenAIStandin,
                                                          client: OpenAICompatibleClient) -> None:
    turns = [ChatMessage.user("Who is Acme?"), ToolCallTurn((ToolCall("call_a", "web_search", {"query": "acme"}),)),
             ToolResultTurn("call_a", "web_search", "Acme makes anvils.")]

    step = client.complete_with_tools(turns, tools=[])

    body = standin.chat_requests()[0].body
    assert "tools" not in body and "tool_choice" not in body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert "[result of web_search]\nAcme makes anvils." == body["messages"][2]["content"]
    assert step.text.startswith("LLM: ")


def test_tool_steps_are_retried_like_completions(standin: OpenAIStandin, client: OpenAICompatibleClient) -> None:
    standin.fail_next("429")
    standin.script_replies({"tool_calls": [{"name": "web_search", "arguments": {"query": "x"}}]})
    step = client.complete_with_tools([ChatMessage.user("q")], tools=[SEARCH])
    assert [r.mode for r in standin.chat_requests()] == ["429", "ok"]
    assert step.tool_calls[0].arguments == {"query": "x"}

    standin.set_mode("error")
    with pytest.raises(LlmUnavailableError):
        client.complete_with_tools([ChatMessage.user("q")], tools=[SEARCH])


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str


class WebSearch:
    name: ClassVar[str] = "web_search"
    description: ClassVar[str] = "Search the web."
    parameters: ClassVar[type[BaseModel]] = Query
    timeout_seconds: ClassVar[float] = 5.0

    def allowed(self, context: ToolContext) -> bool:
        return True

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        return ToolOutput("Acme makes anvils.", (Source("Acme", "https://acme.example/"),))


def test_the_loop_over_http_feeds_a_malformed_call_back_and_finishes(standin: OpenAIStandin,
                                                                     client: OpenAICompatibleClient) -> None:
    standin.script_replies({"tool_calls": [{"id": "c1", "name": "web_search", "arguments": "{oops"}]},
                           {"tool_calls": [{"id": "c2", "name": "web_search", "arguments": {"query": "acme"}}]},
                           "Acme makes anvils [1].")

    result = run_tool_loop(client, [ChatMessage.user("Who is Acme?")], tools=[WebSearch()],
                           context=ToolContext(user_id="U1"), system=None, max_steps=4, max_tokens=100_000)

    assert result.stopped == "answer" and result.text == "Acme makes anvils [1]." and result.steps == 3
    assert [s.url for s in result.sources] == ["https://acme.example/"]
    second = standin.chat_requests()[1].body["messages"]
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "c1"
    assert "not a JSON object" in second[-1]["content"]
    third = standin.chat_requests()[2].body["messages"]
    assert third[-1]["content"].endswith("[1] Acme — https://acme.example/")
    assert json.loads(third[-2]["tool_calls"][0]["function"]["arguments"]) == {"query": "acme"}
    assert not result.usage.estimated and result.usage.total > 0


def test_the_standin_refuses_a_tool_message_that_answers_no_call(standin: OpenAIStandin,
                                                                 client: OpenAICompatibleClient) -> None:
    from insightmesh.llm import LlmRequestError

    with pytest.raises(LlmRequestError):
        client.complete_with_tools([ChatMessage.user("q"), ToolResultTurn("nope", "web_search", "x")], tools=[SEARCH])
