"""The default assistant: a conversation with the LLM, with the user's name in the system prompt."""

from __future__ import annotations

from typing import Final

from insightmesh.agents.base import AgentContext, AgentReply
from insightmesh.agents.catalog import AgentDefinition
from insightmesh.llm.base import ChatMessage

SYSTEM_PROMPT: Final = (
    "You are InsightMesh, a helpful assistant in the company's Slack. You are talking with {name}. "
    "Answer concisely and accurately; use Markdown; say so when you do not know."
)


class AssistantAgent:
    definition = AgentDefinition(
        name="assistant",
        display_name="Assistant",
        description="General questions: a conversation with the company's AI assistant.",
        aliases=("ask", "ai"),
        is_system=True,
        is_public=True,
        requires_admin=False,
    )

    def handle(self, context: AgentContext) -> AgentReply:
        system = SYSTEM_PROMPT.format(name=context.user.name)
        if context.summary:
            system += f"\n\nSummary of the earlier conversation in this thread:\n{context.summary}"
        messages = [*context.history, ChatMessage.user(context.text or "Hello")]
        completion = context.llm.complete(messages, system=system)
        return AgentReply(text=completion.text, details={"model": completion.model})
