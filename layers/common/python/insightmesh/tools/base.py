"""The tool protocol: a name, a JSON Schema (a pydantic model), a timeout, a check of who may use
it, and ``run``. Tools never see Slack, a queue or a table; what they need arrives in the
``ToolContext`` (the user, and the knowledge base searched with the access of everyone who will
read the answer — see ARCHITECTURE.md, "who may read an answer decides what it may use").

A tool returns ``ToolOutput``: text for the model, and the ``Source`` items it read, which the
answer cites (web pages and filings like documents).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol

from pydantic import BaseModel

from insightmesh.knowledge.base import Passage

SourceKind = Literal["web", "knowledge", "filing"]


@dataclass(frozen=True, slots=True)
class Source:
    """Something an answer may cite: a web page, a knowledge-base document, or a filing."""

    title: str
    url: str
    kind: SourceKind = "web"
    snippet: str = ""


@dataclass(frozen=True, slots=True)
class ToolOutput:
    text: str  # what the model reads (bounded by the tool)
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class ToolContext:
    user_id: str
    is_admin: bool = False
    # The knowledge base, searched for everyone who will read the answer (conversation.audience).
    retrieve: Callable[[str], Sequence[Passage]] = lambda _query: ()
    progress: Callable[[str], None] = lambda _text: None
    # Names of the tools admins enabled where the answer is read (agent ∩ channel); None: no limit.
    enabled: frozenset[str] | None = field(default=None)

    def enables(self, name: str) -> bool:
        """Whether admins enabled the tool ``name`` here (no limit set: every tool)."""
        return self.enabled is None or name in self.enabled


class ToolError(Exception):
    """A tool failed in a way the model (and the person) may be told: the message is safe to show."""


class Tool(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[type[BaseModel]]  # its JSON Schema is what the model is offered
    timeout_seconds: ClassVar[float]

    def allowed(self, context: ToolContext) -> bool:
        """Whether this person, here, may use the tool (fail closed)."""
        ...

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        """Run with validated ``arguments``; raise ``ToolError`` with a safe message on failure."""
        ...
