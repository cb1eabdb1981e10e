"""Answers from passages: the sources section, the LLM's grounding prompt, an extractive answer.

Documents are numbered by rank — the document of the best passage is ``1`` — and the numbers are
the same everywhere: in :func:`knowledge_prompt` (which asks the model to cite ``[n]``), in
:func:`extractive_answer`'s attributions and in :func:`sources_section`'s list, so a citation in an
answer points at the matching source. Output is Markdown (Slack replies are converted to mrkdwn
downstream).

:func:`extractive_answer` is what the ``offline`` LLM answers with: for the best few passages, the
sentences that share the most terms with the question (at most :data:`QUOTE_SENTENCES`, in their
original order, each trimmed), quoted; then the sources.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from insightmesh.knowledge.base import Passage
from insightmesh.knowledge.chunking import context_line
from insightmesh.knowledge.sparse import tokenize

NOTHING_FOUND: Final = "I found nothing in the knowledge base about that."
SOURCES_HEADING: Final = "*Sources*"
QUOTED_PASSAGES: Final = 3
QUOTE_SENTENCES: Final = 3
MAX_SENTENCE_CHARS: Final = 300
PROMPT_PASSAGE_CHARS: Final = 2000
PROMPT_MAX_CHARS: Final = 16_000

_SENTENCE: Final = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+|\n+")
# Only web links: a file:// URL (a local upload) means nothing to a reader in Slack, which would
# show its markup literally; such a source is listed by its title alone.
_URL_SCHEMES: Final = ("https://", "http://")


def _clean(text: str) -> str:
    return " ".join(text.split())


def _link_text(title: str) -> str:
    return re.sub(r"([\[\]\\])", r"\\\1", _clean(title) or "Untitled")


def _link_url(url: str | None) -> str | None:
    if not url or not url.strip().lower().startswith(_URL_SCHEMES):
        return None
    return url.strip().replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def document_numbers(passages: Sequence[Passage]) -> dict[str, int]:
    """document id → its number (1, 2, ...), in the rank order of its first passage."""
    numbers: dict[str, int] = {}
    for passage in passages:
        numbers.setdefault(passage.document_id, len(numbers) + 1)
    return numbers


def sources_section(passages: Sequence[Passage]) -> str:
    """``*Sources*`` then ``n. [Title](url)`` (the title alone without a URL) per distinct document,
    in rank order; empty when there are no passages."""
    listed: dict[str, tuple[str, str | None]] = {}
    for passage in passages:
        listed.setdefault(passage.document_id, (passage.title, passage.url))
    return numbered_sources(list(listed.values()))


def numbered_sources(sources: Sequence[tuple[str, str | None]]) -> str:
    """The Sources section of already-numbered ``(title, url)`` items: ``1.`` is the first — how
    documents and web pages a tool read are cited alike (``[n]`` in the answer); empty for none."""
    lines = [SOURCES_HEADING]
    for number, (title, url) in enumerate(sources, start=1):
        link = _link_url(url)
        lines.append(f"{number}. [{_link_text(title)}]({link})" if link else f"{number}. {_link_text(title)}")
    return "\n".join(lines) if sources else ""


def _trim(sentence: str) -> str:
    sentence = _clean(sentence)
    if len(sentence) <= MAX_SENTENCE_CHARS:
        return sentence
    cut = sentence[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"


def best_sentences(question: str, text: str, *, limit: int = QUOTE_SENTENCES) -> list[str]:
    """The ``limit`` sentences of ``text`` sharing the most terms with ``question``, in text order
    (the first ones when none shares any)."""
    sentences = [sentence for sentence in (_clean(part) for part in _SENTENCE.split(text)) if sentence]
    if not sentences:
        return []
    wanted = set(tokenize(question))
    scored = [(len(wanted & set(tokenize(sentence))), -position) for position, sentence in enumerate(sentences)]
    if not any(score for score, _ in scored):
        chosen = list(range(min(limit, len(sentences))))
    else:
        ranked = sorted(((score, order) for score, order in scored if score), reverse=True)[:limit]
        chosen = sorted(-order for _, order in ranked)
    return [_trim(sentences[position]) for position in chosen]


def extractive_answer(question: str, passages: Sequence[Passage]) -> str:
    """An answer made of the passages themselves (see the module docstring)."""
    if not passages:
        return NOTHING_FOUND
    numbers = document_numbers(passages)
    blocks = ["Here is what I found in the knowledge base:"]
    for passage in passages[:QUOTED_PASSAGES]:
        sentences = best_sentences(question, passage.text)
        if not sentences:
            continue
        where = _clean(context_line(passage.title, passage.heading)) or "Untitled"
        quote = "\n".join(f"> {sentence}" for sentence in sentences)
        blocks.append(f"**{where}** [{numbers[passage.document_id]}]\n{quote}")
    if len(blocks) == 1:
        return NOTHING_FOUND
    return "\n\n".join([*blocks, sources_section(passages)])


def knowledge_prompt(passages: Sequence[Passage]) -> str:
    """The passages for the LLM's system prompt, numbered by document, asking for citations."""
    if not passages:
        return ""
    numbers = document_numbers(passages)
    parts = [
        "Knowledge base passages that may answer the question are below, each under its document's number "
        "and title. Answer from them when they are relevant and cite the documents you used by number, "
        "like [1] or [2]; if they do not contain the answer, say so instead of guessing. Do not list the "
        "sources yourself: they are appended to your reply."
    ]
    used = len(parts[0])
    for passage in passages:
        header = f"[{numbers[passage.document_id]}] {_clean(context_line(passage.title, passage.heading))}"
        url = _link_url(passage.url)
        if url:
            header += f" ({url})"
        text = passage.text.strip()[:PROMPT_PASSAGE_CHARS]
        block = f"{header}\n{text}"
        if used + len(block) > PROMPT_MAX_CHARS:
            break
        parts.append(block)
        used += len(block) + 2
    return "\n\n".join(parts)
