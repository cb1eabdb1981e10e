"""``help``: the agents this user may use, with their aliases."""

from __future__ import annotations

from insightmesh.agents.base import AgentContext, AgentReply
from insightmesh.agents.catalog import AgentDefinition


class HelpAgent:
    definition = AgentDefinition(
        name="help",
        display_name="Help",
        description="Lists the agents you may use and how to call them.",
        aliases=("?", "agents"),
        is_system=True,
        is_public=True,
        requires_admin=False,
    )

    def handle(self, context: AgentContext) -> AgentReply:
        agents = context.usable_agents()
        lines = [f"Hi {context.user.name}, these are the agents you may use:", ""]
        for agent in sorted(agents, key=lambda a: a.name):
            aliases = ", ".join(f"`{alias}`" for alias in agent.aliases)
            also = f" (also {aliases})" if aliases else ""
            lines.append(f"- **{agent.display_name}** — `{agent.name}`{also}: {agent.description}")
        lines += ["", "Start a message with an agent's name (`meddic ...` or `-meddic ...`) to use it; "
                  "say `exit` to leave an agent. Anything else goes to the assistant."]
        return AgentReply(text="\n".join(lines))
