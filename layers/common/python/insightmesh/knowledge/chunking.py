"""Chunks: the passages that are embedded, stored and retrieved.

A section longer than :data:`CHUNK_SIZE` (1,200 characters) is cut into windows of about that size
that overlap by about :data:`CHUNK_OVERLAP` (180 characters), each cut made at the best boundary
in the last part of the window — a paragraph break, else the end of a sentence, else a line break,
else a space — so that a word is split only when a single "word" is longer than the window. The
overlap starts at a word boundary too. Consecutive short sections are packed together (their
headings kept inline) so that a slide deck or a spreadsheet of small sheets does not become a
swarm of tiny chunks; a packed chunk carries the heading of its first section.

Every chunk carries its heading (the section's heading path) and its position ``index`` in the
document (0, 1, 2, ... in reading order). What is embedded — dense and sparse — is
:attr:`Chunk.embed_text`: ``"<title> — <heading>"`` (or just the title) on the first line, then
the text, so that a passage is found by what its document and section are about even when its
own words do not say it. The same document always yields the same chunks (the function is pure),
which with ``uuid5(NAMESPACE, "<document_id>#<index>")`` point ids makes re-ingestion an upsert.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from insightmesh.knowledge.extract import Section

CHUNK_SIZE: Final = 1200
CHUNK_OVERLAP: Final = 180
# Ids of chunk points: uuid5 of this namespace and "<document_id>#<index>". Never change it: every
# stored point id derives from it.
NAMESPACE: Final = uuid.UUID("6f1c6a0e-3f5b-5d2a-9c1e-6b6e73696768")
TITLE_SEPARATOR: Final = " — "

_BLANK_LINES: Final = re.compile(r"\n[ \t]*\n[\s]*")
_TRAILING_SPACE: Final = re.compile(r"[ \t]+\n")
_SENTENCE_END: Final = re.compile(r"[.!?\u3002\uff01\uff1f][\"')\]]*\s")


@dataclass(frozen=True)
class Chunk:
    index: int
    heading: str | None
    text: str
    embed_text: str


def chunk_id(document_id: str, index: int) -> str:
    """The Qdrant point id of chunk ``index`` of ``document_id`` (a UUID string, deterministic)."""
    return str(uuid.uuid5(NAMESPACE, f"{document_id}#{index}"))


def normalize(text: str) -> str:
    """Unix newlines, no trailing spaces, at most one blank line in a row, stripped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def context_line(title: str | None, heading: str | None) -> str:
    """``"title — heading"``, ``"title"`` or ``"heading"``."""
    title = (title or "").strip()
    heading = (heading or "").strip()
    if heading and title and heading != title:
        return f"{title}{TITLE_SEPARATOR}{heading}"
    return title or heading


def _cut(text: str, start: int, size: int) -> int:
    """Where the window starting at ``start`` ends: the best boundary in its last 40 %."""
    end = start + size
    if end >= len(text):
        return len(text)
    floor = start + int(size * 0.6)
    window = text[floor:end]
    candidates = (
        window.rfind("\n\n"),
        max((match.end() - 1 for match in _SENTENCE_END.finditer(window)), default=-1),
        window.rfind("\n"),
        max(window.rfind(" "), window.rfind("\t")),
    )
    for found in candidates:
        if found > 0:
            return floor + found
    # No boundary in the last 40 %: any space in the window, else a hard cut (one enormous "word").
    space = max(text.rfind(" ", start + 1, end), text.rfind("\n", start + 1, end))
    return space if space > start else end


def _overlap_start(text: str, end: int, overlap: int, previous_start: int) -> int:
    """Where the next window starts: ``overlap`` characters back from ``end``, at a word start."""
    if overlap <= 0:
        start = end
    else:
        start = max(end - overlap, previous_start + 1)
        if start > 0 and not text[start - 1].isspace():
            following = re.search(r"\s", text[start:end])
            start = start + following.end() if following else end
    while start < len(text) and text[start].isspace():
        start += 1
    return start


def split_text(text: str, *, size: int = CHUNK_SIZE, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """``text`` in overlapping windows of about ``size`` characters (see the module docstring)."""
    if size < 50 or not 0 <= overlap < size // 2:
        raise ValueError("chunk size must be at least 50 and overlap less than half of it")
    text = text.strip()
    if len(text) <= size:
        return [text] if text else []
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = _cut(text, start, size)
        piece = text[start:end].strip()
        if piece:
            pieces.append(piece)
        if end >= len(text):
            break
        start = _overlap_start(text, end, overlap, start)
    return pieces


def chunk_sections(
    sections: Sequence[Section],
    *,
    title: str | None,
    size: int = CHUNK_SIZE,
    overlap: int = CHUNK_OVERLAP,
) -> list[Chunk]:
    """The chunks of a document's sections, in order (see the module docstring)."""
    units: list[tuple[str | None, str]] = []  # (heading, text) before indexing
    packed_heading: str | None = None
    packed: list[str] = []

    def flush() -> None:
        nonlocal packed
        if packed:
            units.append((packed_heading, "\n\n".join(packed)))
        packed = []

    for section in sections:
        text = normalize(section.text)
        if not text:
            continue
        if len(text) > size:
            flush()
            units.extend((section.heading, piece) for piece in split_text(text, size=size, overlap=overlap))
            continue
        inline = f"{section.heading}\n{text}" if packed and section.heading else text
        if packed and sum(len(part) + 2 for part in packed) + len(inline) > size:
            flush()
            inline = text
        if not packed:
            packed_heading = section.heading
        packed.append(inline)
    flush()
    chunks = []
    for index, (heading, text) in enumerate(units):
        context = context_line(title, heading)
        chunks.append(Chunk(index=index, heading=heading, text=text,
                            embed_text=f"{context}\n\n{text}" if context else text))
    return chunks
