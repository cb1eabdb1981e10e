"""The built-in agents by name, and the routing words that leave agent mode."""

from __future__ import annotations

from typing import Final

from insightmesh.agents.base import Agent
from insightmesh.agents.builtin.assistant import AssistantAgent
from insightmesh.agents.builtin.help import HelpAgent
from insightmesh.agents.builtin.meddic import MeddicAgent
from insightmesh.agents.builtin.profile import ProfileAgent
from insightmesh.agents.catalog import AgentDefinition

DEFAULT_AGENT: Final = "assistant"
EXIT_WORDS: Final = frozenset({"exit", "stop", "done", "end", "clear"})

_BUILTINS: Final[dict[str, Agent]] = {
    agent.definition.name: agent for agent in (AssistantAgent(), HelpAgent(), MeddicAgent(), ProfileAgent())
}


def builtin_definitions() -> list[AgentDefinition]:
    return [agent.definition for agent in _BUILTINS.values()]


def implementation(name: str) -> Agent | None:
    return _BUILTINS.get(name)
