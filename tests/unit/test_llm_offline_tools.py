"""The offline provider's deterministic tool plan (insightmesh.llm.offline.complete_with_tools)."""

from __future__ import annotations

from insightmesh.llm.base import ChatMessage
from insightmesh.llm.offline import OFFLINE_PREFIX, OfflineClient
from insightmesh.llm.tools import ToolCallingLlmClient, ToolCallTurn, ToolResultTurn, ToolSpec

SPECS = [ToolSpec(name, "d", {"type": "object"}) for name in ("read_url", "sec_filings", "web_search",
                                                             "knowledge_search")]
llm = OfflineClient()


def test_it_is_a_tool_calling_client() -> None:
    assert isinstance(llm, ToolCallingLlmClient)


def test_searches_first_in_one_turn_then_reads_up_to_two_urls_then_answers_with_markers() -> None:
    turns: list = [ChatMessage.user("earlier"), ChatMessage.assistant("ok"), ChatMessage.user("profile Acme Corp")]

    first = llm.complete_with_tools(turns, tools=SPECS)
    assert [(c.name, dict(c.arguments)) for c in first.tool_calls] == [
        ("knowledge_search", {"query": "profile Acme Corp"}), ("web_search", {"query": "profile Acme Corp"}),
        ("sec_filings", {"query": "profile Acme Corp"})]
    assert [c.id for c in first.tool_calls] == ["offline-0-0", "offline-0-1", "offline-0-2"]
    assert first.finish_reason == "tool_calls" and first.usage.estimated

    turns += [ToolCallTurn(first.tool_calls),
              ToolResultTurn("offline-0-0", "knowledge_search", "Handbook.\n\nSources:\n[1] Handbook — https://d/h"),
              ToolResultTurn("offline-0-1", "web_search",
                             "Acme sells anvils.\n\nSources:\n[2] Acme — https://acme.example/\n"
                             "[3] News — https://news.example/a\n[4] More — https://more.example/"),
              ToolResultTurn("offline-0-2", "sec_filings", "failed", is_error=True)]
    second = llm.complete_with_tools(turns, tools=SPECS)
    assert [(c.name, dict(c.arguments)) for c in second.tool_calls] == [
        ("read_url", {"url": "https://acme.example/"}), ("read_url", {"url": "https://news.example/a"})]

    turns += [ToolCallTurn(second.tool_calls),
              ToolResultTurn("offline-1-0", "read_url", "Acme Corp, founded 1949." + " x" * 400
                             + "\n\nSources:\n[2] Acme — https://acme.example/")]
    third = llm.complete_with_tools(turns, tools=SPECS)
    assert third.tool_calls == ()
    assert third.text.startswith(f"{OFFLINE_PREFIX} From the tools:")
    assert "- Handbook. [1]" in third.text and "- Acme sells anvils. [2] [3] [4]" in third.text
    assert "Acme Corp, founded 1949." in third.text and third.text.endswith("… [2]")
    assert "failed" not in third.text


def test_only_offered_tools_are_called_and_without_tools_it_answers() -> None:
    turns = [ChatMessage.user("hello")]
    only_web = llm.complete_with_tools(turns, tools=[ToolSpec("web_search", "d", {})])
    assert [c.name for c in only_web.tool_calls] == ["web_search"]

    plain = llm.complete_with_tools(turns, tools=[])
    assert plain.tool_calls == () and plain.text.startswith(f'{OFFLINE_PREFIX} You said: "hello"')
