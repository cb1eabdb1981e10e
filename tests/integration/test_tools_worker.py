"""The worker wires tools through to the assistant: tables in moto, Slack as the sandbox over
loopback, the knowledge base embedded, the offline LLM (whose tool plan runs without keys). With
``knowledge_search`` enabled on the assistant, a DM is answered through the tool loop — the
placeholder shows "Searching the knowledge base for …", the answer quotes the passage with its
``[1]`` and ends with the Sources section — and usage is recorded per step; without it, the
answer is the plain path's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from insightmesh.agents.catalog import AgentRecord, seed_agents
from insightmesh.agents.registry import builtin_definitions
from insightmesh.conversation import worker
from insightmesh.conversation.requests import ConversationRequest, RequestKind, message_request_id
from insightmesh.knowledge.base import ANYONE, SourceDocument
from insightmesh.knowledge.pipeline import ingest_documents
from insightmesh.llm import get_llm_client
from insightmesh.llm.usage import agent_subject, period_of, usage_for
from insightmesh_local.slack_sandbox import SlackSandbox
from tests.integration import test_assistant_surface as surface

pytestmark = pytest.mark.timeout(120)
env = surface.env  # the sandbox, the offline LLM and the Slack client pointed at it


@pytest.fixture
def acme(env: SlackSandbox, knowledge: dict[str, str]) -> Iterator[None]:
    get_llm_client.cache_clear()
    seed_agents(builtin_definitions())
    document = SourceDocument(document_id="local:/plans/acme", source="local:/plans", title="Acme account plan",
                              mime_type="text/plain", url="https://drive.example/acme", modified_time=None,
                              acl=(ANYONE,), content=b"Acme Corp buys anvils every quarter from the desert depot.")
    assert ingest_documents([document]).new == 1
    yield
    get_llm_client.cache_clear()


def ask(sandbox: SlackSandbox, text: str) -> str:
    ts = str(sandbox.add_user_message(channel=surface.DM, user=surface.ALICE, text=text)["ts"])
    worker.process(ConversationRequest(kind=RequestKind.MESSAGE, request_id=message_request_id(surface.TEAM,
                                                                                                surface.DM, ts),
                                       team_id=surface.TEAM, channel_id=surface.DM, channel_type="im",
                                       user_id=surface.ALICE, text=text, ts=ts, thread_ts=ts))
    return ts


def final_text(sandbox: SlackSandbox, ts: str) -> str:
    messages = [m for m in surface.bot_messages(sandbox, ts) if not m.get("deleted")]
    return str(messages[-1]["text"])


def test_enabled_tools_reach_the_assistant_through_the_worker(env: SlackSandbox, acme: None) -> None:
    AgentRecord.get("assistant").update(actions=[AgentRecord.tools.set(["knowledge_search"])])

    ts = ask(env, "What does Acme buy?")

    text = final_text(env, ts)
    assert "From the tools" in text and "Acme Corp buys anvils every quarter" in text and "[1]" in text
    assert "Sources" in text and "Acme account plan" in text and "https://drive.example/acme" in text
    shown = [c["args"].get("text", "") for c in env.calls("chat.update")]
    assert any("Searching the knowledge base for “What does Acme buy?”" in str(t) for t in shown)
    usage = usage_for(agent_subject("assistant"), period_of())
    assert usage is not None and int(usage.calls or 0) == 2  # the tool step and the answer, each recorded


def test_without_tools_the_worker_answers_on_the_plain_path(env: SlackSandbox, acme: None) -> None:
    ts = ask(env, "What does Acme buy?")

    text = final_text(env, ts)
    assert "extractive answer" in text and "From the tools" not in text
    shown = [str(c["args"].get("text", "")) for c in env.calls("chat.update")]
    assert not any("Searching the knowledge base for “" in t for t in shown)
