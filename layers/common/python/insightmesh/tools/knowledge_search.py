"""``knowledge_search``: the knowledge base's retrieval as a tool.

It searches through ``ToolContext.retrieve``, which the worker builds for the audience of the
answer (conversation.audience): in a channel only what every reader may see, in a DM the asker's
access. So the tool itself needs no access check of its own (``allowed`` is always true), and it
can never show a reader a document they could not open.
"""

from __future__ import annotations

from typing import ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field

from insightmesh.knowledge.chunking import context_line
from insightmesh.tools.base import Source, ToolContext, ToolOutput

MAX_PASSAGES: Final = 6
PASSAGE_CHARS: Final = 900
SNIPPET_CHARS: Final = 200
NOTHING: Final = "Nothing in the knowledge base matches that query."


class KnowledgeSearchArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=500,
                       description="What to look for in the company's documents, in a few words.")


class KnowledgeSearchTool:
    name: ClassVar[str] = "knowledge_search"
    description: ClassVar[str] = ("Search the company's internal documents (the knowledge base) for passages about "
                                  "a topic. Returns the best passages with their document titles.")
    parameters: ClassVar[type[BaseModel]] = KnowledgeSearchArguments
    timeout_seconds: ClassVar[float] = 15.0

    def allowed(self, context: ToolContext) -> bool:
        return True  # context.retrieve is already limited to what every reader may see

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        assert isinstance(arguments, KnowledgeSearchArguments)
        passages = list(context.retrieve(arguments.query))[:MAX_PASSAGES]
        if not passages:
            return ToolOutput(text=NOTHING)
        blocks: list[str] = []
        sources: list[Source] = []
        for passage in passages:
            where = " ".join(context_line(passage.title, passage.heading).split()) or "Untitled"
            text = " ".join(passage.text.split())
            blocks.append(f"### {where}\n{text[:PASSAGE_CHARS]}")
            url = passage.url if passage.url and passage.url.startswith(("https://", "http://")) else ""
            sources.append(Source(title=passage.title or "Untitled", url=url, kind="knowledge",
                                  snippet=text[:SNIPPET_CHARS]))
        return ToolOutput(text="\n\n".join(blocks), sources=tuple(sources))
