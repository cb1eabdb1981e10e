"""The Agent protocol and the small, typed context an agent works with.

An agent sees the user, the thread, the memory (history and summary), its own saved state for
this thread, an LLM client (usage is recorded for it), the files shared in the thread (as text),
and three callbacks: ``progress`` (updates the "thinking" placeholder while it works),
``usable_agents`` (for listings) and ``retrieve`` (the knowledge base, searched with the access of
everyone who will read the reply: the asker's in a DM, only what every member may see in a
channel — see ``insightmesh.conversation.audience``). It never sees a Slack client, a queue or a
table: it returns an ``AgentReply`` and the worker does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from insightmesh.agents.catalog import AgentDefinition
from insightmesh.knowledge.base import Passage
from insightmesh.llm.base import ChatMessage, LlmClient
from insightmesh.tools.base import Source, ToolContext


@dataclass(frozen=True)
class AgentUser:
    id: str
    name: str
    is_admin: bool = False


@dataclass(frozen=True)
class SharedDocument:
    """A file shared in the thread, as text."""

    name: str
    text: str


@dataclass(frozen=True)
class AgentThread:
    key: str
    team_id: str
    channel_id: str
    thread_ts: str | None
    # In Slack's AI app container: the channel the user is looking at (assistant_thread_context_changed).
    context_channel_id: str | None = None


@dataclass(frozen=True)
class AgentSummary:
    name: str
    display_name: str
    description: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class ReportSection:
    heading: str
    body: str  # Markdown; citations as [n], numbered in ReportDocument.sources order (1-based)


@dataclass(frozen=True)
class ReportDocument:
    """A report to deliver as a PDF in the thread (the research function renders and uploads it)."""

    title: str
    sections: tuple[ReportSection, ...]
    sources: tuple[Source, ...] = ()
    subtitle: str = ""
    note: str = ""  # e.g. "Partial report: the run reached its token cap."


@dataclass(frozen=True)
class ResearchRequest:
    """Long research an agent hands to the durable research function (``kind`` names the workflow)."""

    kind: str  # "profile"
    subject: str  # "Acme Corp", "Jane Doe at Acme"
    question: str  # the person's words


def _no_research(_request: ResearchRequest) -> str:
    raise RuntimeError("research is not available here")


@dataclass
class AgentContext:
    user: AgentUser
    thread: AgentThread
    text: str  # the message, without the bot mention and the agent's name
    history: Sequence[ChatMessage]  # earlier turns of this thread, oldest first (bounded window)
    summary: str | None  # summary of the turns that left the window
    state: dict[str, Any]  # this agent's saved state for this thread (empty on the first turn)
    llm: LlmClient
    progress: Callable[[str], None] = lambda _text: None
    # The answer's text as it is written (the worker streams it into Slack): pass it as ``on_text``
    # to ``insightmesh.llm.base.stream_or_complete`` for the call that writes the reply.
    stream: Callable[[str], None] = lambda _text: None
    usable_agents: Callable[[], list[AgentSummary]] = list
    # Files shared in this thread, as text (the worker downloads and extracts them).
    documents: Sequence[SharedDocument] = ()
    # The knowledge base, searched for everyone who will read the reply (conversation.audience).
    retrieve: Callable[[str], Sequence[Passage]] = lambda _question: ()
    # Starts a durable research run for this thread and returns its id (the worker records it and
    # invokes the research function); the agent answers at once ("researching…").
    start_research: Callable[[ResearchRequest], str] = _no_research
    # The tools this agent may use here (agent ∩ channel, in ``enabled``), with the audience's
    # retrieval and the progress line; None: no tools (the worker sets it only when some are enabled).
    tools: ToolContext | None = None


@dataclass
class AgentReply:
    text: str  # Markdown; the worker converts it to Slack mrkdwn
    state: dict[str, Any] | None = None  # saved for the next turn; None keeps nothing
    stay: bool = False  # True keeps the thread in this agent's mode (sticky)
    details: dict[str, Any] = field(default_factory=dict)
    # A report to deliver as a PDF in the thread as well (rendered and uploaded by the research function).
    document: ReportDocument | None = None


class Agent(Protocol):
    definition: AgentDefinition

    def handle(self, context: AgentContext) -> AgentReply: ...
