"""Which tools an agent may use where it answers, and the ``ToolContext`` it gets.

The enabled set is the agent's ``tools`` (admins set them: ``PATCH /api/agents/{name}``) narrowed
by the channel's ``tools`` setting (``/api/channels/{id}``; unset: the agent's; ``[]``: none). A DM
has no channel settings: the agent's tools. Nothing is read for it: the agent record is in the
catalog the worker already listed, the channel's settings in its per-process cache
(conversation.channel_settings), so an answer without tools costs nothing more than before.

The tools search the knowledge base through the same audience-bound ``retrieve`` as the agent
(conversation.audience: what every reader may see), and report through the same ``progress``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from insightmesh.agents.catalog import AgentRecord
from insightmesh.conversation import channel_settings
from insightmesh.conversation.requests import ConversationRequest
from insightmesh.knowledge.base import Passage
from insightmesh.tools.base import ToolContext


def enabled_tools(request: ConversationRequest, record: AgentRecord) -> frozenset[str]:
    """The agent's tools ∩ the channel's (a DM, or a channel without a tools setting: the agent's)."""
    agent_tools = record.tools or ()
    if not agent_tools:
        return frozenset()
    return channel_settings.for_request(request).enabled_tools(agent_tools)


def research_tools(request: ConversationRequest, record: AgentRecord) -> frozenset[str] | None:
    """The tools a research run started here may use: the agent's ∩ the channel's when admins set
    the agent's; else the channel's setting when it has one; else None (the workflow's own)."""
    if record.tools:
        return enabled_tools(request, record)
    tools = channel_settings.for_request(request).tools
    return frozenset(tools) if tools is not None else None


def tool_context(request: ConversationRequest, record: AgentRecord, *, user_id: str, is_admin: bool,
                 retrieve: Callable[[str], Sequence[Passage]],
                 progress: Callable[[str], None]) -> ToolContext | None:
    """The agent's ``ToolContext`` here, or None when no tool is enabled (the agent answers as before)."""
    enabled = enabled_tools(request, record)
    if not enabled:
        return None
    return ToolContext(user_id=user_id, is_admin=is_admin, retrieve=retrieve, progress=progress, enabled=enabled)
