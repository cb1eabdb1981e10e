"""What produced an answer, kept with its reply state so that feedback can teach.

The worker records it on the request item when it marks the request answered (no extra write);
a vote on the reply copies it into the feedback item (:mod:`insightmesh.conversation.feedback`),
which is what ``GET /api/feedback`` returns. The request item expires after 7 days, the feedback
item after 365 (the README's retention): the question and the answer are kept bounded
(:data:`MAX_TEXT_CHARS` each, at most :data:`MAX_PASSAGES` passages).

* ``agent`` — the agent that answered; ``model`` — the LLM provider and model configured;
* ``prompt_version`` — a short hash of the agent's implementation (its prompts live in its
  module), so that feedback can be compared across prompt changes;
* ``passages`` — the ids and titles of the knowledge passages given to the agent;
* ``scope`` — whose access decided what it could use (``private``: the asker's; ``shared``:
  what every reader of the conversation may see; ``none``: nothing was searched);
* ``asker`` — the asker's directory user id, and for a shared answer ``readers``: the audience's
  principal lists (at most :data:`MAX_READERS`; a larger audience is left out, never cut) — so a
  👎 can become an evaluation case asked with the same access (:mod:`insightmesh.evaluation.cases`).
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Final, NotRequired, TypedDict

if TYPE_CHECKING:
    from insightmesh.conversation.audience import AudienceRetriever

MAX_TEXT_CHARS: Final = 4_000
MAX_PASSAGES: Final = 20
MAX_READERS: Final = 50


class PassageRef(TypedDict):
    id: str
    title: str


class Provenance(TypedDict):
    agent: str | None
    model: str | None
    prompt_version: str | None
    passages: list[PassageRef]
    scope: str
    question: str
    answer: str
    asker: NotRequired[str | None]
    readers: NotRequired[list[list[str]] | None]


@lru_cache(maxsize=1)
def configured_model() -> str | None:
    """``<provider>/<model>`` from the LLM settings (validated once; cached for the process)."""
    from insightmesh.llm.base import LlmConfigurationError
    from insightmesh.llm.factory import load_llm_settings

    try:
        settings = load_llm_settings()
    except LlmConfigurationError:
        return None
    return f"{settings.LLM_PROVIDER.value}/{settings.model}"


@lru_cache(maxsize=32)
def prompt_version(module_name: str) -> str | None:
    """A short hash of the agent module's source (its prompts), computed once per process."""
    module = sys.modules.get(module_name)
    if module is None:
        return None
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return None
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()[:12]


def agent_prompt_version(agent: object | None) -> str | None:
    return prompt_version(type(agent).__module__) if agent is not None else None


def capture(*, agent: str | None, agent_impl: object | None, passages: Mapping[str, str] | Iterable[tuple[str, str]],
            scope: str, question: str, answer: str, asker: str | None = None,
            readers: list[list[str]] | None = None) -> Provenance:
    """The provenance of one answer, bounded for a DynamoDB item."""
    pairs = list(passages.items()) if isinstance(passages, Mapping) else list(passages)
    made = Provenance(
        agent=agent,
        model=configured_model(),
        prompt_version=agent_prompt_version(agent_impl),
        passages=[PassageRef(id=str(pid)[:200], title=str(title)[:300]) for pid, title in pairs[:MAX_PASSAGES]],
        scope=scope,
        question=question[:MAX_TEXT_CHARS],
        answer=answer[:MAX_TEXT_CHARS],
    )
    if asker:
        made["asker"] = asker
    if readers is not None and len(readers) <= MAX_READERS:
        made["readers"] = readers
    return made


def of_answer(agent: str | None, retriever: AudienceRetriever | None, question: str,
              answer: str) -> Provenance | None:
    """The provenance of a turn an agent answered (None for a refusal or leaving agent mode)."""
    if agent is None:
        return None
    from insightmesh.agents.registry import implementation

    scope = retriever.scope if retriever is not None else "none"
    return capture(agent=agent, agent_impl=implementation(agent),
                   passages=retriever.titles if retriever is not None else {},
                   scope=scope, question=question, answer=answer,
                   asker=retriever.asker_user_id if retriever is not None else None,
                   readers=retriever.audience.principal_sets() if retriever is not None and scope == "shared" else None)


__all__ = ["MAX_TEXT_CHARS", "PassageRef", "Provenance", "capture", "configured_model", "of_answer", "prompt_version"]
