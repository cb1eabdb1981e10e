"""Which agent answers a message: the thread's sticky agent, else the message's first word
(an agent's name or alias, with or without a leading dash), else the default assistant.
Exit words leave agent mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from insightmesh.agents.catalog import AgentRecord, find_agent
from insightmesh.agents.registry import DEFAULT_AGENT, EXIT_WORDS


@dataclass(frozen=True)
class Route:
    agent_name: str
    text: str  # what the agent gets: without the routing word
    exit: bool = False
    by: str = "default"  # "sticky", "name" or "default"


def route_message(text: str, sticky_agent: str | None, agents: Sequence[AgentRecord]) -> Route:
    words = text.strip().split(maxsplit=1)
    first = words[0] if words else ""
    rest = words[1] if len(words) > 1 else ""
    if first.lower().lstrip("-").rstrip(".!") in EXIT_WORDS and (sticky_agent or not rest):
        return Route(agent_name=sticky_agent or DEFAULT_AGENT, text="", exit=True, by="exit")
    if sticky_agent:
        return Route(agent_name=sticky_agent, text=text.strip(), by="sticky")
    named = find_agent(first, list(agents)) if first else None
    if named is not None:
        return Route(agent_name=named.name, text=rest, by="name")
    return Route(agent_name=DEFAULT_AGENT, text=text.strip(), by="default")
