"""``help``: the agents this user may use, with their aliases."""

from __future__ import annotations

from typing import Final

from insightmesh.agents.base import AgentContext, AgentReply
from insightmesh.agents.catalog import HELP_AGENT, AgentDefinition

_ASSISTANT: Final = "assistant"  # the default agent (agents.registry, which imports this module)
_NOT_EXAMPLES: Final = frozenset({HELP_AGENT, _ASSISTANT})  # an example of calling a specialised agent


class HelpAgent:
    definition = AgentDefinition(
        name=HELP_AGENT,
        display_name="Help",
        description="Lists the agents you may use and how to call them.",
        aliases=("?", "agents"),
        is_system=True,
        visibility="public",
    )

    def handle(self, context: AgentContext) -> AgentReply:
        # Only what this user may use is listed, and the example names one of those agents: help
        # never suggests an agent the user would be refused.
        agents = sorted(context.usable_agents(), key=lambda a: a.name)
        lines = [f"Hi {context.user.name}, these are the agents you may use:", ""]
        for agent in agents:
            aliases = ", ".join(f"`{alias}`" for alias in agent.aliases)
            also = f" (also {aliases})" if aliases else ""
            lines.append(f"- **{agent.display_name}** — `{agent.name}`{also}: {agent.description}")
        example = next((agent.name for agent in agents if agent.name not in _NOT_EXAMPLES), None)
        how = f" (`{example} ...` or `-{example} ...`)" if example else ""
        rest = " Anything else goes to the assistant." if _ASSISTANT in {agent.name for agent in agents} else ""
        lines += ["", f"Start a message with an agent's name{how} to use it; say `exit` to leave an agent.{rest}",
                  "To use another agent, ask an InsightMesh admin to grant it to you or to a group of yours."]
        return AgentReply(text="\n".join(lines))
