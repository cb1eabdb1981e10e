"""Text out of documents: one :class:`ExtractedDocument` (a title and headed sections) per file.

=====================================================  ===========================================
MIME type (``SUPPORTED_MIME_TYPES``)                   sections
=====================================================  ===========================================
``application/pdf`` (pypdf)                            one per page, headed "Page n"
DOCX (python-docx)                                     one per ``Heading n``/``Title`` paragraph,
                                                       headed by the heading path; tables as rows
XLSX (openpyxl, read-only, cached values)              one per sheet, rows as tab-separated lines
PPTX (python-pptx)                                     one per slide, headed by its title (or
                                                       "Slide n"); tables, groups, speaker notes
``text/markdown``                                      one per ``#`` heading (fences respected),
                                                       headed by the heading path
``text/plain``                                         one
``text/csv``, ``text/tab-separated-values``            one, rows as tab-separated lines
``text/vtt``, ``application/x-subrip`` (webvtt-py)     one, a cue per line: ``[hh:mm:ss] who: text``
=====================================================  ===========================================

Google Docs, Sheets and Slides have no bytes of their own: Drive *exports* them (Docs as
``text/markdown`` or ``text/plain``, Sheets as ``text/csv`` — the first sheet —, Slides as
``text/plain``), and those exports are handled by the rows above. A native
``application/vnd.google-apps.*`` type is refused with a hint to export it.

Errors: :class:`UnsupportedDocumentError` for a type not in the table (nothing was attempted),
:class:`ExtractionError` for content that cannot be read as its type (corrupt, encrypted, a PDF
without a text layer). Parsers of binary formats can raise nearly anything on a corrupt file, so
their failures are converted to ``ExtractionError`` at this boundary (and chained, never lost).
Text beyond :data:`MAX_TEXT_CHARS` is cut (``truncated``): a Lambda has bounded memory.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Final

MAX_TEXT_CHARS: Final = 5_000_000

PDF: Final = "application/pdf"
DOCX: Final = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX: Final = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
MARKDOWN: Final = "text/markdown"
PLAIN: Final = "text/plain"
CSV: Final = "text/csv"
TSV: Final = "text/tab-separated-values"
VTT: Final = "text/vtt"
SRT: Final = "application/x-subrip"

_ALIASES: Final[dict[str, str]] = {
    "text/x-markdown": MARKDOWN,
    "application/csv": CSV,
    "text/srt": SRT,
    "text/x-srt": SRT,
    "application/srt": SRT,
}
SUPPORTED_MIME_TYPES: Final[frozenset[str]] = frozenset({PDF, DOCX, XLSX, PPTX, MARKDOWN, PLAIN, CSV, TSV, VTT, SRT,
                                                         *_ALIASES})
_EXTENSIONS: Final[dict[str, str]] = {
    ".pdf": PDF,
    ".docx": DOCX,
    ".xlsx": XLSX,
    ".pptx": PPTX,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".txt": PLAIN,
    ".vtt": VTT,
    ".srt": SRT,
    ".csv": CSV,
    ".tsv": TSV,
}
GOOGLE_NATIVE_PREFIX: Final = "application/vnd.google-apps."
HEADING_SEPARATOR: Final = " > "


class UnsupportedDocumentError(ValueError):
    """The MIME type is not one :func:`extract_text` reads."""


class ExtractionError(ValueError):
    """The content could not be read as its MIME type (corrupt, encrypted, no text layer, ...)."""


@dataclass(frozen=True)
class Section:
    heading: str | None
    text: str


@dataclass
class ExtractedDocument:
    title: str | None
    sections: list[Section] = field(default_factory=list)
    truncated: bool = False

    @property
    def text(self) -> str:
        """Every section, its heading on a line of its own before its text."""
        parts = []
        for section in self.sections:
            parts.append(f"{section.heading}\n{section.text}" if section.heading else section.text)
        return "\n\n".join(part for part in parts if part.strip())


def normalize_mime_type(mime_type: str) -> str:
    """``"Text/Plain; charset=UTF-8"`` → ``"text/plain"``, aliases resolved."""
    base = mime_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def mime_type_for(filename: str) -> str | None:
    """The MIME type of ``filename`` by its extension (case-insensitive), None when not supported."""
    match = re.search(r"(\.[A-Za-z0-9]+)$", filename.strip())
    return _EXTENSIONS.get(match.group(1).lower()) if match else None


def extract_text(content: bytes, mime_type: str, *, filename: str | None = None) -> ExtractedDocument:
    """The title and sections of ``content`` (see the module docstring).

    ``filename`` decides the type when ``mime_type`` is empty or ``application/octet-stream``.
    """
    kind = normalize_mime_type(mime_type or "")
    if kind in ("", "application/octet-stream") and filename:
        kind = mime_type_for(filename) or kind
    if kind.startswith(GOOGLE_NATIVE_PREFIX):
        raise UnsupportedDocumentError(
            f"{kind} is a native Google file: export it first (Docs as text/markdown or text/plain, "
            "Sheets as text/csv, Slides as text/plain)"
        )
    reader = _READERS.get(kind)
    if reader is None:
        raise UnsupportedDocumentError(f"unsupported document type {kind or mime_type!r}")
    budget = _Budget(MAX_TEXT_CHARS)
    try:
        document = reader(content, budget)
    except (ExtractionError, UnsupportedDocumentError):
        raise
    except Exception as error:
        # A corrupt file can make a parser raise anything (KeyError, zipfile.BadZipFile, struct.error,
        # RecursionError...): it is this document's failure, reported as such with its cause chained.
        raise ExtractionError(f"could not read the {_LABELS.get(kind, kind)} file: {type(error).__name__}: "
                              f"{str(error)[:200]}") from error
    document.truncated = budget.exhausted
    document.sections = [section for section in document.sections if section.text.strip()]
    return document


# -- helpers ----------------------------------------------------------------------------------


class _Budget:
    """Characters left before a document is cut (``MAX_TEXT_CHARS``)."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.exhausted = False

    def take(self, text: str) -> str:
        if len(text) <= self.left:
            self.left -= len(text)
            return text
        self.exhausted = True
        text, self.left = text[: self.left], 0
        return text

    @property
    def spent(self) -> bool:
        return self.left <= 0


def decode_text(content: bytes) -> str:
    """Bytes of a text format as str: a BOM decides, else UTF-8, else Windows-1252, else Latin-1."""
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        return content.decode("utf-16")
    if b"\x00" in content[:8192]:
        raise ExtractionError("binary content where text was expected")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    return content.decode("latin-1")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return " ".join(str(value).split())


def _rows_text(rows: Iterable[Iterable[Any]], budget: _Budget) -> str:
    lines = []
    for row in rows:
        cells = [_cell(value) for value in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            continue
        lines.append(budget.take("\t".join(cells) + "\n"))
        if budget.spent:
            break
    return "".join(lines).rstrip("\n")


class _Sections:
    """Collects text under the current heading (a path of headings by level)."""

    def __init__(self, budget: _Budget) -> None:
        self.budget = budget
        self.sections: list[Section] = []
        self.path: list[tuple[int, str]] = []
        self.lines: list[str] = []

    @property
    def heading(self) -> str | None:
        return HEADING_SEPARATOR.join(text for _, text in self.path) or None

    def flush(self) -> None:
        text = "\n".join(self.lines).strip()
        if text:
            self.sections.append(Section(self.heading, text))
        self.lines = []

    def open(self, level: int, heading: str) -> None:
        self.flush()
        self.path = [(lvl, text) for lvl, text in self.path if lvl < level] + [(level, heading)]

    def add(self, line: str) -> None:
        if not self.budget.spent:
            self.lines.append(self.budget.take(line))

    def done(self) -> list[Section]:
        self.flush()
        return self.sections


# -- readers ----------------------------------------------------------------------------------


def _read_pdf(content: bytes, budget: _Budget) -> ExtractedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("the PDF is encrypted")
        pages = list(reader.pages)
    except PdfReadError as error:
        raise ExtractionError(f"not a readable PDF: {error}") from error
    sections = []
    for number, page in enumerate(pages, start=1):
        if budget.spent:
            break
        sections.append(Section(f"Page {number}", budget.take(page.extract_text() or "")))
    if pages and not any(section.text.strip() for section in sections):
        raise ExtractionError("the PDF has no text layer (a scanned document?)")
    metadata = reader.metadata
    title = metadata.title if metadata is not None else None
    return ExtractedDocument(title=title.strip() or None if isinstance(title, str) else None, sections=sections)


_DOCX_HEADING: Final = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def _read_docx(content: bytes, budget: _Budget) -> ExtractedDocument:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(io.BytesIO(content))
    title = (document.core_properties.title or "").strip() or None
    collected = _Sections(budget)
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows = []
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:
                    text = " ".join(cell.text.split())
                    if not cells or cells[-1] != text:  # a merged cell repeats in every grid slot
                        cells.append(text)
                rows.append(cells)
            collected.add(_rows_text(rows, _Budget(MAX_TEXT_CHARS)))
            continue
        if not isinstance(block, Paragraph):
            continue
        text = block.text.strip()
        if not text:
            continue
        style = (block.style.name if block.style is not None else "") or ""
        match = _DOCX_HEADING.match(style.strip())
        if style.strip().lower() == "title":
            if title is None:
                title = text
            else:
                collected.add(text)
        elif match:
            collected.open(int(match.group(1)), text)
        else:
            collected.add(text)
    return ExtractedDocument(title=title, sections=collected.done())


def _read_xlsx(content: bytes, budget: _Budget) -> ExtractedDocument:
    import openpyxl  # type: ignore[import-untyped]  # openpyxl ships no type information

    workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    try:
        title = (workbook.properties.title or "").strip() or None
        sections = []
        for sheet in workbook.worksheets:
            if budget.spent:
                break
            text = _rows_text(sheet.iter_rows(values_only=True), budget)
            sections.append(Section(str(sheet.title), text))
    finally:
        workbook.close()
    return ExtractedDocument(title=title, sections=sections)


def _shape_texts(shapes: Iterable[Any], skip: Any) -> Iterator[str]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:
        if skip is not None and shape.shape_id == skip.shape_id:
            continue
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shape_texts(shape.shapes, None)
        elif getattr(shape, "has_table", False) and shape.has_table:
            yield _rows_text(([cell.text for cell in row.cells] for row in shape.table.rows), _Budget(MAX_TEXT_CHARS))
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            text = shape.text_frame.text.strip()
            if text:
                yield text


def _read_pptx(content: bytes, budget: _Budget) -> ExtractedDocument:
    from pptx import Presentation

    presentation = Presentation(io.BytesIO(content))
    title = (presentation.core_properties.title or "").strip() or None
    sections = []
    for number, slide in enumerate(presentation.slides, start=1):
        if budget.spent:
            break
        title_shape = slide.shapes.title
        slide_title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
        lines = list(_shape_texts(slide.shapes, title_shape))
        if slide.has_notes_slide:
            notes_frame = slide.notes_slide.notes_text_frame
            notes = notes_frame.text.strip() if notes_frame is not None else ""
            if notes:
                lines.append(f"Notes: {notes}")
        sections.append(Section(slide_title or f"Slide {number}", budget.take("\n".join(lines))))
    return ExtractedDocument(title=title, sections=sections)


_MD_HEADING: Final = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_MD_FENCE: Final = re.compile(r"^\s{0,3}(```|~~~)")


def _read_markdown(content: bytes, budget: _Budget) -> ExtractedDocument:
    lines = decode_text(content).splitlines()
    headings = [(i, _MD_HEADING.match(line)) for i, line in enumerate(lines)]
    # A single top-level "# Title" is the document's title, not a level of every section's path.
    fence: str | None = None
    outside: list[tuple[int, re.Match[str]]] = []
    for index, match in headings:
        fenced = _MD_FENCE.match(lines[index])
        if fenced:
            fence = None if fence == fenced.group(1) else (fence or fenced.group(1))
            continue
        if fence is None and match:
            outside.append((index, match))
    top = [match for _, match in outside if len(match.group(1)) == 1]
    title = top[0].group(2).strip() if len(top) == 1 else None
    heading_lines = {index: match for index, match in outside}
    collected = _Sections(budget)
    for index, line in enumerate(lines):
        match = heading_lines.get(index)
        if match is None:
            collected.add(line)
            continue
        level, text = len(match.group(1)), match.group(2).strip()
        if title is not None and level == 1:
            collected.flush()
            collected.path = []
            continue
        collected.open(level, text)
    return ExtractedDocument(title=title, sections=collected.done())


def _read_plain(content: bytes, budget: _Budget) -> ExtractedDocument:
    return ExtractedDocument(title=None, sections=[Section(None, budget.take(decode_text(content)))])


def _read_delimited(delimiter: str) -> Callable[[bytes, _Budget], ExtractedDocument]:
    def read(content: bytes, budget: _Budget) -> ExtractedDocument:
        try:
            rows = csv.reader(io.StringIO(decode_text(content), newline=""), delimiter=delimiter)
            text = _rows_text(rows, budget)
        except csv.Error as error:
            raise ExtractionError(f"not a readable {'CSV' if delimiter == ',' else 'TSV'} file: {error}") from error
        return ExtractedDocument(title=None, sections=[Section(None, text)])

    return read


def _read_captions(format_: str) -> Callable[[bytes, _Budget], ExtractedDocument]:
    def read(content: bytes, budget: _Budget) -> ExtractedDocument:
        import webvtt
        from webvtt.errors import MalformedCaptionError, MalformedFileError

        try:
            captions = webvtt.from_buffer(io.StringIO(decode_text(content)), format=format_)
        except (MalformedFileError, MalformedCaptionError) as error:
            raise ExtractionError(f"not a readable {format_.upper()} file: {error}") from error
        lines = []
        for caption in captions.captions:
            text = " ".join(caption.text.split())
            if not text:
                continue
            voice = caption.voice
            stamp = caption.start.split(".", 1)[0]
            lines.append(budget.take(f"[{stamp}] {voice + ': ' if voice else ''}{text}"))
            if budget.spent:
                break
        return ExtractedDocument(title=None, sections=[Section(None, "\n".join(lines))])

    return read


_READERS: Final[dict[str, Callable[[bytes, _Budget], ExtractedDocument]]] = {
    PDF: _read_pdf,
    DOCX: _read_docx,
    XLSX: _read_xlsx,
    PPTX: _read_pptx,
    MARKDOWN: _read_markdown,
    PLAIN: _read_plain,
    CSV: _read_delimited(","),
    TSV: _read_delimited("\t"),
    VTT: _read_captions("vtt"),
    SRT: _read_captions("srt"),
}
_LABELS: Final[dict[str, str]] = {PDF: "PDF", DOCX: "DOCX", XLSX: "XLSX", PPTX: "PPTX"}
