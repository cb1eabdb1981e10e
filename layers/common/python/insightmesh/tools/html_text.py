"""The main text of an HTML page, by readability-lxml: its title and article, whitespace normalised.

``extract_html`` runs in the child process of :mod:`insightmesh.knowledge.isolation` (a page from
the web is untrusted input: a crafted one can make a parser quadratic), so this module imports
nothing of the layer beyond what the child needs. readability-lxml rather than trafilatura: the
latter would add 53 MB (babel) to a common layer already at ~181 of Lambda's 250 MB.
"""

from __future__ import annotations

import re
from typing import Any, Final

_BLOCKS: Final = frozenset({
    "p", "div", "section", "article", "header", "footer", "li", "ul", "ol", "table", "tr", "blockquote",
    "pre", "h1", "h2", "h3", "h4", "h5", "h6", "br", "dd", "dt", "figcaption",
})
_INLINE_SPACE: Final = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES: Final = re.compile(r"\n\s*\n+")


def normalize_whitespace(text: str) -> str:
    """Runs of spaces to one, lines trimmed, at most one blank line between paragraphs."""
    lines = (_INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _text_of(fragment: str) -> str:
    import lxml.html  # type: ignore[import-untyped]  # lxml ships no stubs (lxml-stubs is not a dependency)

    if not fragment.strip():
        return ""
    root = lxml.html.fromstring(fragment)
    for element in root.iter():
        if not isinstance(element.tag, str):  # comments, processing instructions
            continue
        if element.tag in _BLOCKS:
            element.tail = "\n" + (element.tail or "")
            if element.tag not in ("br",):
                element.text = "\n" + (element.text or "")
    return normalize_whitespace(root.text_content())


def extract_html(content: bytes, *, charset: str | None = None, max_chars: int = 20_000) -> dict[str, Any]:
    """``{"title", "text", "truncated"}`` of a page; the child process's target."""
    from readability import Document  # type: ignore[import-untyped]

    markup: str | bytes = content
    if charset:
        try:
            markup = content.decode(charset, errors="replace")
        except LookupError:  # an unknown charset name: let readability sniff the bytes
            markup = content
    document = Document(markup)
    title = normalize_whitespace(document.short_title() or "").replace("\n", " ")
    text = _text_of(document.summary(html_partial=True))
    truncated = len(text) > max_chars
    return {"title": title, "text": text[:max_chars], "truncated": truncated}
