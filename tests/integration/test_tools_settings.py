"""Tools per agent and per channel, through the real admin_api handler (moto): admins enable an
agent's tools (``PATCH /api/agents/{name}``, validated against the tool registry, audited), a
channel narrows them (``PUT/PATCH /api/channels/{id}``), the worker's ``ToolContext`` holds the
agent's tools ∩ the channel's (a DM: the agent's), and the assistant then answers through the
tool loop with a Sources section — or exactly as before when no tool is enabled."""

from __future__ import annotations

from typing import Any

import pytest

from insightmesh.agents.base import AgentContext, AgentThread, AgentUser
from insightmesh.agents.builtin.assistant import AssistantAgent
from insightmesh.agents.catalog import get_agent
from insightmesh.conversation import channel_settings
from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.conversation.tool_access import enabled_tools, tool_context
from insightmesh.knowledge.base import Passage
from insightmesh.llm.offline import OfflineClient
from tests.integration.test_admin_api import Api, assert_envelope, audit_entries, latest_audit
from tests.integration.test_admin_api import api as api

CHANNEL = "C0SALES"
PASSAGE = Passage(document_id="gdrive:1", title="Acme account plan", url="https://drive.example/acme",
                  text="Acme Corp buys anvils every quarter.", score=1.0, chunk_index=0)


def _request(channel: str, channel_type: str = "channel") -> ConversationRequest:
    return ConversationRequest(kind=RequestKind.MESSAGE, request_id=f"msg:T1:{channel}:1.0", team_id="T1",
                               channel_id=channel, channel_type=channel_type, user_id="U1", text="acme?",
                               ts="1.0", thread_ts="1.0")


def _enable(api: Api, agent: str, tools: list[str]) -> dict[str, Any]:
    version = api.ok("GET", f"/api/agents/{agent}")["version"]
    return api.ok("PATCH", f"/api/agents/{agent}", body={"version": version, "tools": tools})


def test_admins_enable_an_agents_tools_and_the_change_is_audited(api: Api) -> None:
    assert api.ok("GET", "/api/agents/assistant")["tools"] == []

    changed = _enable(api, "assistant", ["knowledge_search", "web_search"])

    assert changed["tools"] == ["knowledge_search", "web_search"]
    assert get_agent("assistant").tools == ["knowledge_search", "web_search"]
    entry = latest_audit("agent:assistant")
    assert entry.action == "agent.update" and entry.before["tools"] == [] \
        and entry.after["tools"] == ["knowledge_search", "web_search"]
    assert _enable(api, "assistant", [])["tools"] == []
    assert get_agent("assistant").tools is None


@pytest.mark.parametrize("tools", [["delete_everything"], ["web_search", "web_search"], "web_search"])
def test_unknown_or_repeated_tools_are_a_422_and_nothing_is_written(api: Api, tools: Any) -> None:
    version = api.ok("GET", "/api/agents/assistant")["version"]
    before = len(audit_entries("agent:assistant"))
    result = api.call("PATCH", "/api/agents/assistant", body={"version": version, "tools": tools})
    assert_envelope(result, 422, "validation_error")
    assert len(audit_entries("agent:assistant")) == before and get_agent("assistant").tools is None


def test_members_may_not_enable_tools(api: Api) -> None:
    result = api.call("PATCH", "/api/agents/assistant", as_="member", body={"version": 1, "tools": ["web_search"]})
    assert result.status == 403 and get_agent("assistant").tools is None


def test_a_channel_narrows_the_agents_tools_and_a_dm_keeps_them(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANNEL_SETTINGS_CACHE_SECONDS", "0")
    _enable(api, "assistant", ["knowledge_search", "web_search"])
    record = get_agent("assistant")
    assert record is not None
    assert enabled_tools(_request(CHANNEL), record) == {"knowledge_search", "web_search"}  # no setting: the agent's

    put = api.ok("PUT", f"/api/channels/{CHANNEL}", 201, body={"tools": ["web_search", "read_url"]})
    assert put["tools"] == ["web_search", "read_url"]
    assert latest_audit(f"channel:{CHANNEL}").after["tools"] == ["web_search", "read_url"]
    assert enabled_tools(_request(CHANNEL), record) == {"web_search"}  # agent ∩ channel

    assert "• Tools: `web_search`, `read_url`" in channel_settings.describe(channel_settings.read(CHANNEL))
    patched = api.ok("PATCH", f"/api/channels/{CHANNEL}", body={"tools": [], "version": 1})
    assert "• Tools: none" in channel_settings.describe(channel_settings.read(CHANNEL))
    assert patched["tools"] == []
    assert enabled_tools(_request(CHANNEL), record) == frozenset()
    assert tool_context(_request(CHANNEL), record, user_id="U1", is_admin=False, retrieve=lambda _q: [],
                        progress=lambda _t: None) is None
    assert enabled_tools(_request("D0DM", "im"), record) == {"knowledge_search", "web_search"}  # a DM: the agent's

    assert_envelope(api.call("PATCH", f"/api/channels/{CHANNEL}", body={"tools": ["nope"]}), 422, "validation_error")
    assert api.ok("PATCH", f"/api/channels/{CHANNEL}", body={"tools": None})["tools"] is None


def _context(tools: Any, progress: list[str]) -> AgentContext:
    return AgentContext(user=AgentUser(id="U1", name="Ada"), thread=AgentThread(key="k", team_id="T1",
                                                                                channel_id=CHANNEL, thread_ts="1.0"),
                        text="What does Acme buy?", history=[], summary=None, state={}, llm=OfflineClient(),
                        progress=progress.append, retrieve=lambda _q: [PASSAGE], tools=tools)


def test_the_assistant_answers_through_the_tools_enabled_here_with_sources(api: Api,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANNEL_SETTINGS_CACHE_SECONDS", "0")
    _enable(api, "assistant", ["knowledge_search"])
    record = get_agent("assistant")
    assert record is not None
    progress: list[str] = []
    searched: list[str] = []
    context = tool_context(_request(CHANNEL), record, user_id="U1", is_admin=False,
                           retrieve=lambda q: searched.append(q) or [PASSAGE], progress=progress.append)

    reply = AssistantAgent().handle(_context(context, progress))

    assert searched == ["What does Acme buy?"]  # through the audience's retrieve
    assert progress == ["Searching the knowledge base for “What does Acme buy?”…"]
    assert "Acme Corp buys anvils every quarter. [1]" in reply.text
    assert reply.text.endswith("*Sources*\n1. [Acme account plan](https://drive.example/acme)")
    assert reply.details["tools"] == ["knowledge_search"] and reply.details["stopped"] == "answer"


def test_without_tools_the_assistant_answers_as_before(api: Api) -> None:
    reply = AssistantAgent().handle(_context(None, []))
    assert reply.text.startswith("[offline LLM — extractive answer]")
    assert "tools" not in reply.details
