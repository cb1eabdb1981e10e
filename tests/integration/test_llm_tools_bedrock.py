"""Tool calling through the Bedrock Converse client, against the loopback Converse stand-in of
test_llm_bedrock (boto3 signs, serialises and validates the request against the service model, as
against AWS): ``toolConfig``, ``toolUse`` blocks parsed, ``toolResult`` blocks sent back."""

from __future__ import annotations

import pytest

from insightmesh.llm import BedrockClient, ChatMessage, LlmUnavailableError
from insightmesh.llm.tools import ToolCall, ToolCallingLlmClient, ToolCallTurn, ToolResultTurn, ToolSpec
from insightmesh.tools.base import ToolContext
from insightmesh.tools.knowledge_search import KnowledgeSearchTool
from insightmesh.tools.loop import run_tool_loop
from tests.integration import test_llm_bedrock as converse_standin
from tests.integration.test_llm_bedrock import ConverseServer

# The Converse stand-in and its fixtures, shared with test_llm_bedrock.
_fresh_llm = converse_standin._fresh_llm
converse, make_client, client = converse_standin.converse, converse_standin.make_client, converse_standin.client
breaker, clock, sleeps = converse_standin.breaker, converse_standin.clock, converse_standin.sleeps

SEARCH = ToolSpec("web_search", "Search the web.", {"type": "object", "properties": {"query": {"type": "string"}},
                                                    "required": ["query"]})
TOOL_USE = ([{"text": "Let me search."},
             {"toolUse": {"toolUseId": "tooluse_1", "name": "web_search", "input": {"query": "acme"}}}], "tool_use")


def test_tools_are_offered_as_tool_config_and_tool_use_is_parsed(converse: ConverseServer,
                                                                  client: BedrockClient) -> None:
    converse.state.answers.append(TOOL_USE)

    step = client.complete_with_tools([ChatMessage.user("Who is Acme?")], tools=[SEARCH], system="Be brief.")

    assert isinstance(client, ToolCallingLlmClient)
    assert step.tool_calls == (ToolCall("tooluse_1", "web_search", {"query": "acme"}),)
    assert step.text == "Let me search." and step.finish_reason == "tool_use"
    [request] = converse.state.requests
    assert request.body["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "web_search", "description": "Search the web.", "inputSchema": {"json": dict(SEARCH.parameters)}}}],
        "toolChoice": {"auto": {}}}
    assert request.body["system"] == [{"text": "Be brief."}]


def test_calls_go_back_as_tool_use_and_results_as_tool_result_blocks(converse: ConverseServer,
                                                                      client: BedrockClient) -> None:
    turns = [ChatMessage.user("Who is Acme?"),
             ToolCallTurn((ToolCall("tooluse_1", "web_search", {"query": "acme"}),
                           ToolCall("tooluse_2", "read_url", {"url": "https://acme.example/"})), text="Searching."),
             ToolResultTurn("tooluse_1", "web_search", "Acme makes anvils."),
             ToolResultTurn("tooluse_2", "read_url", "Error: timed out", is_error=True)]

    step = client.complete_with_tools(turns, tools=[SEARCH])

    assert step.text == "Bedrock says hello." and step.tool_calls == ()
    assert converse.state.requests[0].body["messages"] == [
        {"role": "user", "content": [{"text": "Who is Acme?"}]},
        {"role": "assistant", "content": [
            {"text": "Searching."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "web_search", "input": {"query": "acme"}}},
            {"toolUse": {"toolUseId": "tooluse_2", "name": "read_url", "input": {"url": "https://acme.example/"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "Acme makes anvils."}],
                            "status": "success"}},
            {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "Error: timed out"}],
                            "status": "error"}}]},
    ]


def test_offered_no_tools_the_request_has_no_tool_config_and_no_tool_blocks(converse: ConverseServer,
                                                                            client: BedrockClient) -> None:
    turns = [ChatMessage.user("Who is Acme?"), ToolCallTurn((ToolCall("t1", "web_search", {"query": "acme"}),)),
             ToolResultTurn("t1", "web_search", "Acme makes anvils.")]

    client.complete_with_tools(turns, tools=[])

    body = converse.state.requests[0].body
    assert "toolConfig" not in body
    assert all("text" in block for message in body["messages"] for block in message["content"])


def test_tool_steps_are_retried_and_fail_like_completions(converse: ConverseServer, client: BedrockClient,
                                                          sleeps: list[float]) -> None:
    converse.state.fail_next("throttle")
    converse.state.answers.append(TOOL_USE)
    assert client.complete_with_tools([ChatMessage.user("q")], tools=[SEARCH]).tool_calls
    assert [r.mode for r in converse.state.requests] == ["throttle", "ok"] and len(sleeps) == 1

    converse.state.mode = "error"
    with pytest.raises(LlmUnavailableError):
        client.complete_with_tools([ChatMessage.user("q")], tools=[SEARCH])


def test_the_loop_runs_knowledge_search_through_converse(converse: ConverseServer, client: BedrockClient) -> None:
    converse.state.answers += [
        ([{"toolUse": {"toolUseId": "t1", "name": "knowledge_search", "input": {"query": "anvils"}}}], "tool_use"),
        ([{"text": "Acme sells anvils [1]."}], "end_turn")]
    from insightmesh.knowledge.base import Passage

    passage = Passage("d1", "Acme handbook", "https://drive.example/a", "Acme sells anvils.", 1.0, 0)
    result = run_tool_loop(client, [ChatMessage.user("What does Acme sell?")], tools=[KnowledgeSearchTool()],
                           context=ToolContext(user_id="U1", retrieve=lambda _q: [passage]), system=None,
                           max_steps=3, max_tokens=10_000)

    assert result.text == "Acme sells anvils [1]." and result.stopped == "answer"
    [block] = converse.state.requests[1].body["messages"][-1]["content"]
    assert block["toolResult"]["toolUseId"] == "t1" and block["toolResult"]["status"] == "success"
    assert block["toolResult"]["content"][0]["text"].endswith("[1] Acme handbook — https://drive.example/a")
