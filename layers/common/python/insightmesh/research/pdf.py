"""A research report as a PDF: ``render_pdf(document) -> bytes``, with fpdf2 (pure Python, no system
packages, so it runs in Lambda; it lives in the ResearchLayer only, so this module is imported by
the research function alone — ``fpdf`` is imported here and nowhere else in the layer).

The layout: a title block (title, subtitle, the date), the document's ``note`` in a shaded box
right under it (e.g. "Partial report: the run reached its token cap."), the sections, then a
numbered Sources list whose URLs are links; every page's footer says "Page n of N", and the
sections are in the PDF's outline (bookmarks).

Section bodies are Markdown as the LLM writes it. They are turned into a small, escaped HTML subset
here and rendered by fpdf2's ``write_html``: paragraphs, ``-``/``*``/``1.`` lists, ``#`` headings,
``**bold**``, ``*italic*`` (set upright), ``[text](https://…)`` links, ``| tables |`` (plain cells: fpdf2's
tables take no inline tags). ``write_html`` rather than
``multi_cell(markdown=True)``, because fpdf2's markdown mode only does inline emphasis (no lists,
no headings), and rather than a Markdown library because none is in the layer and the subset is
small. A citation ``[n]`` becomes a link straight to source ``n``'s URL (one click to the page it
cites; the Sources list at the end shows every source with its URL).

Unicode: the text is set in DejaVu Sans (shipped in ``research/fonts``, 1.5 MB, Bitstream Vera
licence — see ``fonts/LICENSE-DejaVu.txt``), embedded as a subset with a ToUnicode map, so curly
quotes, dashes, accents, Greek and Cyrillic print and extract cleanly with pypdf. Characters the
font lacks (CJK, emoji) are first decomposed (NFKD) and otherwise printed as ``?``; the report then
says so in its note, rather than showing empty boxes silently.

Bounded: at most :data:`MAX_SECTIONS` sections, :data:`MAX_BODY_CHARS` characters of section text
and :data:`MAX_SOURCES` sources; beyond that the report is truncated and its note says so.
Deterministic: the same document gives the same text and layout (only the creation date, which
the caller may pin with ``generated_at``, differs).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Final

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace, TextStyle

from insightmesh.agents.base import ReportDocument, ReportSection
from insightmesh.observability import get_logger
from insightmesh.tools.base import Source

FONTS: Final = Path(__file__).with_name("fonts")
FAMILY: Final = "DejaVu"
MAX_SECTIONS: Final = 40
MAX_BODY_CHARS: Final = 80_000  # ~40 pages of text
MAX_SOURCES: Final = 150
MAX_TITLE_CHARS: Final = 300
MAX_URL_CHARS: Final = 500
REPLACEMENT: Final = "?"
LINE_HEIGHT: Final = 1.3  # of the font size: body text, list items

_INK: Final = (33, 37, 41)
_MUTED: Final = (108, 117, 125)
_ACCENT: Final = (22, 64, 120)
_LINK: Final = (13, 80, 180)
_NOTE_FILL: Final = (255, 243, 205)
_NOTE_BORDER: Final = (214, 158, 46)
_TABLE_FILL: Final = (241, 244, 248)

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+•]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+(.*)$")
_LINK_MD = re.compile(r"\[([^\[\]]{1,300})\]\((https?://[^\s()]{1,2000})\)")
_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)([^*]+?)(?<=\S)\*(?![*\w])")
_CODE = re.compile(r"`([^`]*)`")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")
MAX_TABLE_COLUMNS: Final = 8


@dataclass(frozen=True)
class _Prepared:
    document: ReportDocument
    notes: tuple[str, ...]


# -- text that the font can show -----------------------------------------------------------------------
@cache
def _glyphs() -> frozenset[int]:
    """Code points DejaVu Sans has a glyph for (read once from its cmap)."""
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]  # fpdf2's own dependency (no stubs)

    with TTFont(FONTS / "DejaVuSans.ttf", lazy=True) as font:
        return frozenset(font.getBestCmap())


class _Sanitizer:
    """Makes text printable in the embedded font, counting what it had to replace."""

    def __init__(self) -> None:
        self.replaced = 0

    def __call__(self, text: str) -> str:
        glyphs = _glyphs()
        text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    "))
        if all(ord(char) in glyphs or char == "\n" for char in text):
            return text
        out: list[str] = []
        for char in text:
            if ord(char) in glyphs or char == "\n":
                out.append(char)
                continue
            decomposed = "".join(part for part in unicodedata.normalize("NFKD", char) if ord(part) in glyphs
                                 and not unicodedata.combining(part))
            if decomposed:
                out.append(decomposed)
            else:
                self.replaced += 1
                out.append(REPLACEMENT)
        return "".join(out)


# -- bounding --------------------------------------------------------------------------------------------
def _bounded(document: ReportDocument) -> _Prepared:
    notes: list[str] = []
    sections: list[ReportSection] = []
    budget = MAX_BODY_CHARS
    given = document.sections
    left_out = 0
    for index, section in enumerate(given):
        if index >= MAX_SECTIONS or budget <= 0:
            left_out = len(given) - index
            break
        body = section.body
        if len(body) > budget:
            cut = body.rfind("\n", 0, budget)
            body = body[:cut if cut > budget // 2 else budget].rstrip() + "\n\n*(cut here: the report is too long)*"
        budget -= len(body)
        sections.append(ReportSection(heading=section.heading[:MAX_TITLE_CHARS], body=body))
    if left_out or sum(len(s.body) for s in given) > MAX_BODY_CHARS:
        notes.append(f"This PDF was truncated: the report is longer than {MAX_BODY_CHARS:,} characters "
                     f"or {MAX_SECTIONS} sections" + (f"; {left_out} section(s) were left out." if left_out else "."))
    sources = document.sources[:MAX_SOURCES]
    if len(document.sources) > MAX_SOURCES:
        notes.append(f"Only the first {MAX_SOURCES} of {len(document.sources)} sources are listed.")
    bounded = ReportDocument(title=document.title[:MAX_TITLE_CHARS] or "Report", sections=tuple(sections),
                             sources=tuple(sources), subtitle=document.subtitle[:MAX_TITLE_CHARS],
                             note=document.note[:2000])
    return _Prepared(bounded, tuple(notes))


# -- Markdown subset → HTML ------------------------------------------------------------------------------
def _inline(text: str, sources: Sequence[Source]) -> str:
    """One line of Markdown as escaped HTML with <b> and <a> (citations link to their source)."""
    escaped = html.escape(_CODE.sub(r"\1", text), quote=True)
    links: list[str] = []

    def keep(markup: str) -> str:  # links are set aside so emphasis never edits a URL
        links.append(markup)
        return f"\x00{len(links) - 1}\x00"

    escaped = _LINK_MD.sub(lambda m: keep(f'<a href="{m.group(2)}">{m.group(1)}</a>'), escaped)

    def cite(match: re.Match[str]) -> str:
        parts = []
        for number in (int(n) for n in re.findall(r"\d+", match.group(1))):
            if 1 <= number <= len(sources) and sources[number - 1].url.startswith(("http://", "https://")):
                url = html.escape(sources[number - 1].url[:MAX_URL_CHARS], quote=True)
                parts.append(keep(f'<a href="{url}">{number}</a>'))
            else:
                parts.append(str(number))
        return "[" + ", ".join(parts) + "]"

    escaped = _CITATION.sub(cite, escaped)
    escaped = _BOLD.sub(r"<b>\1</b>", escaped)
    escaped = _ITALIC.sub(r"\1", escaped)  # upright: see _ReportPdf
    return re.sub(r"\x00(\d+)\x00", lambda m: links[int(m.group(1))], escaped)


def _plain(text: str) -> str:
    """A table cell's text: fpdf2 tables take no inline tags (no links, no bold), so markup is dropped."""
    text = _LINK_MD.sub(r"\1", _CODE.sub(r"\1", text))
    return html.escape(text.replace("**", "").strip(), quote=True)


def _table(rows: Sequence[str]) -> str:
    """Markdown table lines as an HTML table (header row when a ``---`` rule follows the first)."""
    cells = [[cell for cell in row.strip().strip("|").split("|")] for row in rows if not _TABLE_RULE.match(row.strip())]
    if not cells:
        return ""
    has_header = len(rows) > 1 and bool(_TABLE_RULE.match(rows[1].strip()))
    width = min(max(len(row) for row in cells), MAX_TABLE_COLUMNS)
    cells = [(row + [""] * width)[:width] for row in cells]
    header, body = (cells[0], cells[1:]) if has_header else (None, cells)
    head = "<thead><tr>" + "".join(f"<th>{_plain(cell)}</th>" for cell in header) + "</tr></thead>" if header else ""
    rows_html = "".join("<tr>" + "".join(f"<td>{_plain(cell)}</td>" for cell in row) + "</tr>" for row in body)
    return f'<table width="100%">{head}<tbody>{rows_html}</tbody></table>'


def markdown_html(markdown: str, sources: Sequence[Source]) -> str:
    """The Markdown subset of a section body as the HTML ``write_html`` renders."""
    out: list[str] = []
    paragraph: list[str] = []
    table: list[str] = []
    list_tag: str | None = None

    def flush_paragraph() -> None:
        if paragraph:
            out.append(f'<p line-height="{LINE_HEIGHT}">' + " ".join(_inline(line, sources) for line in paragraph)
                       + "</p>")
            paragraph.clear()

    def close_list() -> None:
        nonlocal list_tag
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    def flush_table() -> None:
        if table:
            out.append(_table(table))
            table.clear()

    for raw in markdown.split("\n"):
        line = raw.rstrip()
        if line.lstrip().startswith("|") and line.rstrip().endswith("|") and len(line.strip()) > 1:
            flush_paragraph()
            close_list()
            table.append(line)
            continue
        flush_table()
        heading, bullet, numbered = _HEADING.match(line.strip()), _BULLET.match(line), _NUMBERED.match(line)
        if not line.strip():
            flush_paragraph()
            close_list()
        elif heading:
            flush_paragraph()
            close_list()
            tag = "h3" if len(heading.group(1)) <= 2 else "h4"
            out.append(f"<{tag}>{_inline(heading.group(2).strip('# '), sources)}</{tag}>")
        elif bullet or numbered:
            flush_paragraph()
            wanted = "ul" if bullet else "ol"
            if list_tag != wanted:
                close_list()
                out.append(f'<{wanted} line-height="{LINE_HEIGHT}">')
                list_tag = wanted
            item = (bullet or numbered)
            assert item is not None
            out.append(f"<li>{_inline(item.group(1), sources)}</li>")
        elif list_tag and raw[:1].isspace():  # a list item's continuation line
            out[-1] = out[-1][:-len("</li>")] + " " + _inline(line.strip(), sources) + "</li>"
        else:
            close_list()
            paragraph.append(line.strip())
    flush_paragraph()
    close_list()
    flush_table()
    return "".join(out)


# -- the PDF -----------------------------------------------------------------------------------------------
class _ReportPdf(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.report_title = title
        self.set_margins(20, 18, 20)
        self.set_auto_page_break(auto=True, margin=20)
        self.add_font(FAMILY, "", str(FONTS / "DejaVuSans.ttf"))
        self.add_font(FAMILY, "B", str(FONTS / "DejaVuSans-Bold.ttf"))
        # No oblique face is shipped (another 0.6 MB) and no "I" style registered (each add_font
        # parses its TTF, ~0.3 s): *italic* is set as plain text, never lost.
        self.alias_nb_pages()

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font(FAMILY, "", 8)
        self.set_text_color(*_MUTED)
        self.cell(0, 5, self.report_title[:110], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(3)

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font(FAMILY, "", 8)
        self.set_text_color(*_MUTED)
        self.cell(0, 6, f"Page {self.page_no()} of {{nb}}", align="C")


_TAG_STYLES: Final = {
    "a": FontFace(color=_LINK, emphasis="UNDERLINE"),
    "h3": TextStyle(font_family=FAMILY, font_style="B", font_size_pt=12, color=_ACCENT, t_margin=3, b_margin=1),
    "h4": TextStyle(font_family=FAMILY, font_style="B", font_size_pt=10.5, color=_INK, t_margin=2, b_margin=1),
    # A t_margin of 0 would mean "one line" to write_html: these are the gaps wanted, in points.
    "p": TextStyle(font_family=FAMILY, font_size_pt=10.5, color=_INK, t_margin=1.5, b_margin=1.5),
    "li": TextStyle(font_family=FAMILY, font_size_pt=10.5, color=_INK, l_margin=6, t_margin=0.8),
    "ul": TextStyle(t_margin=1, b_margin=1.5),
    "ol": TextStyle(t_margin=1, b_margin=1.5),
}


def render_pdf(document: ReportDocument, *, generated_at: datetime | None = None) -> bytes:
    """The report as PDF bytes (see the module docstring for what it shows and its bounds)."""
    when = generated_at or datetime.now(UTC)
    prepared = _bounded(document)
    clean = _Sanitizer()
    doc = prepared.document
    title = clean(doc.title)
    sources = [Source(title=clean(s.title), url=s.url[:MAX_URL_CHARS], kind=s.kind) for s in doc.sources]
    sections = [(clean(s.heading), clean(s.body)) for s in doc.sections]
    subtitle, note = clean(doc.subtitle), clean(doc.note)
    notes = [n for n in (note, *prepared.notes) if n]
    if clean.replaced:
        notes.append(f"{clean.replaced} character(s) the PDF font cannot show (e.g. CJK or emoji) appear as "
                     f"\u201c{REPLACEMENT}\u201d; the summary in Slack has the original text.")

    pdf = _ReportPdf(title)
    pdf.set_title(title)
    pdf.set_author("InsightMesh")
    pdf.set_creator("InsightMesh research (fpdf2)")
    pdf.set_creation_date(when)
    pdf.add_page()
    _title_block(pdf, title, subtitle, when)
    if notes:
        _note_box(pdf, notes)
    for heading, body in sections:
        _section(pdf, heading, body, sources)
    if sources:
        _sources(pdf, sources)
    return bytes(pdf.output())


def _title_block(pdf: _ReportPdf, title: str, subtitle: str, when: datetime) -> None:
    pdf.set_font(FAMILY, "B", 20)
    pdf.set_text_color(*_ACCENT)
    pdf.multi_cell(0, 9, title, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if subtitle:
        pdf.ln(1)
        pdf.set_font(FAMILY, "", 12)
        pdf.set_text_color(*_INK)
        pdf.multi_cell(0, 6, subtitle, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)
    pdf.set_font(FAMILY, "", 9)
    pdf.set_text_color(*_MUTED)
    pdf.cell(0, 5, f"{when:%d %B %Y} \u00b7 InsightMesh research report", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.set_draw_color(*_ACCENT)
    pdf.set_line_width(0.5)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(5)


def _note_box(pdf: _ReportPdf, notes: Iterable[str]) -> None:
    pdf.set_fill_color(*_NOTE_FILL)
    pdf.set_draw_color(*_NOTE_BORDER)
    pdf.set_line_width(0.4)
    pdf.set_text_color(*_INK)
    pdf.set_font(FAMILY, "B", 10)
    text = "\n".join(notes)
    pdf.multi_cell(0, 5.5, "Note: " + text, border=1, fill=True, padding=3, align="L",
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(5)


def _section(pdf: _ReportPdf, heading: str, body: str, sources: Sequence[Source]) -> None:
    if pdf.get_y() > pdf.h - 50:  # a heading never sits alone at the foot of a page
        pdf.add_page()
    pdf.start_section(heading or "Section", level=0, strict=False)
    pdf.set_font(FAMILY, "B", 14)
    pdf.set_text_color(*_ACCENT)
    pdf.multi_cell(0, 7, heading, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1.5)
    pdf.set_font(FAMILY, "", 10.5)
    pdf.set_text_color(*_INK)
    pdf.set_fill_color(*_TABLE_FILL)  # write_html's tables fill with the current colour (not the note's)
    try:
        pdf.write_html(markdown_html(body, sources), tag_styles=_TAG_STYLES, ul_bullet_char="\u2022",
                       li_prefix_color=_ACCENT, warn_on_tags_not_matching=False)
    except (NotImplementedError, ValueError) as error:  # markup fpdf2 refuses: the report still goes out
        get_logger().warning("report section rendered as plain text", extra={"section": heading[:80],
                                                                              "error": str(error)[:200]})
        pdf.set_font(FAMILY, "", 10.5)
        pdf.multi_cell(0, 5.5, body, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)


def _sources(pdf: _ReportPdf, sources: Sequence[Source]) -> None:
    if pdf.get_y() > pdf.h - 50:
        pdf.add_page()
    pdf.start_section("Sources", level=0, strict=False)
    pdf.set_font(FAMILY, "B", 14)
    pdf.set_text_color(*_ACCENT)
    pdf.cell(0, 8, "Sources", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)
    for number, source in enumerate(sources, start=1):
        pdf.set_font(FAMILY, "B", 9.5)
        pdf.set_text_color(*_INK)
        label = f"[{number}] "
        pdf.cell(pdf.get_string_width(label) + 1, 5, label)
        pdf.set_font(FAMILY, "", 9.5)
        pdf.multi_cell(0, 5, source.title or source.url, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if source.url:
            pdf.set_x(pdf.l_margin + 8)
            pdf.set_font(FAMILY, "", 8.5)
            pdf.set_text_color(*_LINK)
            pdf.multi_cell(0, 4.5, source.url, align="L", link=source.url if source.url.startswith(("http://", "https://"))
                           else "", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1.5)


__all__ = ["MAX_BODY_CHARS", "MAX_SECTIONS", "MAX_SOURCES", "markdown_html", "render_pdf"]
