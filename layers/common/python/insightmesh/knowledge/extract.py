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

**Limits** (:class:`ExtractionLimits`, from the environment; a file is untrusted input, and a tiny
one can otherwise run for hours or take gigabytes). Every file is read in a child process
(:mod:`insightmesh.knowledge.isolation`, ~50 ms per file) with a wall-clock and a memory limit —
the text formats too: a regular expression or a library can go quadratic on one crafted line.

* Refused, with :class:`LimitExceeded` (an ``ExtractionError`` whose ``reason`` reads well after
  "it"): an OOXML zip whose members expand past ``EXTRACT_MAX_EXPANDED_MB`` (declared sizes first,
  then the real ones, read as a capped stream), whose member is compressed more than
  ``EXTRACT_MAX_RATIO`` to 1, or that has more than ``EXTRACT_MAX_ZIP_MEMBERS`` parts; XML nested
  deeper than libxml2's 256 levels; a PDF page tree of more than ``EXTRACT_MAX_PDF_PAGE_TREE``
  entries (pypdf also refuses a cyclic one); a child past ``EXTRACT_TIMEOUT_SECONDS`` or past
  ``EXTRACT_MEMORY_MB`` of address space.
* Cut short (``truncated``; what was read is kept): more than ``EXTRACT_MAX_CHARS`` characters,
  ``EXTRACT_MAX_SHEETS`` sheets, ``EXTRACT_MAX_ROWS`` rows in a sheet, ``EXTRACT_MAX_CELLS`` cells,
  ``EXTRACT_MAX_SLIDES`` slides or ``EXTRACT_MAX_PAGES`` pages. A sheet's declared dimension
  (``A1:XFD1048576``) is never trusted: its rows are read as they come.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Annotated, Any, Final

from annotated_types import Ge, Gt, Le

from insightmesh.file_types import CSV, DOCX, MARKDOWN, PDF, PLAIN, PPTX, SRT, TSV, VTT, XLSX, mime_type_for

MAX_TEXT_CHARS: Final = 5_000_000
MB: Final = 1024 * 1024
# A member smaller than this cannot be a bomb whatever its ratio (tiny XML parts compress very well).
RATIO_FLOOR_BYTES: Final = 1 * MB

_ALIASES: Final[dict[str, str]] = {
    "text/x-markdown": MARKDOWN,
    "application/csv": CSV,
    "text/srt": SRT,
    "text/x-srt": SRT,
    "application/srt": SRT,
}
SUPPORTED_MIME_TYPES: Final[frozenset[str]] = frozenset({PDF, DOCX, XLSX, PPTX, MARKDOWN, PLAIN, CSV, TSV, VTT, SRT,
                                                         *_ALIASES})
GOOGLE_NATIVE_PREFIX: Final = "application/vnd.google-apps."
HEADING_SEPARATOR: Final = " > "


class UnsupportedDocumentError(ValueError):
    """The MIME type is not one :func:`extract_text` reads."""


class ExtractionError(ValueError):
    """The content could not be read as its MIME type (corrupt, encrypted, no text layer, ...)."""


class LimitExceeded(ExtractionError):
    """The file breaks one of :class:`ExtractionLimits`: ``"report.xlsx expands to more than 50 MB"``.

    ``reason`` is the sentence without its subject (``"expands to more than 50 MB"``)."""

    def __init__(self, reason: str, name: str | None = None) -> None:
        super().__init__(f"{name or 'the file'} {reason}")
        self.reason = reason
        self.name = name


def failure_reason(error: ExtractionError | UnsupportedDocumentError) -> str:
    """Why a file could not be read, to follow "I couldn't read report.xlsx: "."""
    return f"it {error.reason}" if isinstance(error, LimitExceeded) else str(error)


@dataclass(frozen=True)
class ExtractionLimits:
    """What one file may cost (see the module docstring). Field names are the variable names.

    A plain dataclass, validated by pydantic only when read from the environment: the child
    process imports this module for every file, and pydantic's import would double its start."""

    EXTRACT_TIMEOUT_SECONDS: Annotated[float, Gt(0), Le(900)] = 20.0
    EXTRACT_MEMORY_MB: Annotated[int, Ge(128), Le(10_240)] = 512
    EXTRACT_MAX_EXPANDED_MB: Annotated[float, Gt(0), Le(4096)] = 50.0
    EXTRACT_MAX_RATIO: Annotated[float, Ge(2)] = 200.0
    EXTRACT_MAX_ZIP_MEMBERS: Annotated[int, Ge(1)] = 10_000
    EXTRACT_MAX_CHARS: Annotated[int, Ge(1)] = MAX_TEXT_CHARS
    EXTRACT_MAX_SHEETS: Annotated[int, Ge(1)] = 100
    EXTRACT_MAX_ROWS: Annotated[int, Ge(1)] = 100_000
    EXTRACT_MAX_CELLS: Annotated[int, Ge(1)] = 2_000_000
    EXTRACT_MAX_SLIDES: Annotated[int, Ge(1)] = 1_000
    EXTRACT_MAX_PAGES: Annotated[int, Ge(1)] = 2_000
    EXTRACT_MAX_PDF_PAGE_TREE: Annotated[int, Ge(1)] = 20_000

    @property
    def max_expanded_bytes(self) -> int:
        return int(self.EXTRACT_MAX_EXPANDED_MB * MB)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> ExtractionLimits:
        """The limits set in ``environ`` (blank means the default); a bad value fails naming it."""
        from pydantic import TypeAdapter, ValidationError

        from insightmesh.config import ConfigurationError, describe_validation_error

        values = {item.name: environ[item.name].strip() for item in dataclasses.fields(cls)
                  if environ.get(item.name, "").strip()}
        try:
            return TypeAdapter(cls).validate_python(values)
        except ValidationError as error:
            raise ConfigurationError(describe_validation_error(error)) from error

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.cache
def extraction_limits() -> ExtractionLimits:
    """The limits from the environment, validated once per process."""
    return ExtractionLimits.from_environment()


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


def extract_text(content: bytes, mime_type: str, *, filename: str | None = None,
                 limits: ExtractionLimits | None = None) -> ExtractedDocument:
    """The title and sections of ``content`` (see the module docstring), within ``limits``
    (default: :func:`extraction_limits`, from the environment).

    ``filename`` decides the type when ``mime_type`` is empty or ``application/octet-stream``; it
    also names the file in a :class:`LimitExceeded` refusal.
    """
    kind = _kind_of(mime_type, filename)
    limits = limits or extraction_limits()
    from insightmesh.knowledge import isolation

    try:
        result = isolation.run_isolated(
            _CHILD_TARGET, content,
            {"kind": kind, "name": filename, "limits": limits.as_dict()},
            timeout=limits.EXTRACT_TIMEOUT_SECONDS, memory_bytes=limits.EXTRACT_MEMORY_MB * MB,
            preload=_PARSERS.get(kind, ()))
    except isolation.IsolationTimeout as error:
        raise LimitExceeded(f"took longer than {limits.EXTRACT_TIMEOUT_SECONDS:g} s to read", filename) from error
    except isolation.IsolationOutOfMemory as error:
        raise LimitExceeded(f"needs more than {limits.EXTRACT_MEMORY_MB} MB of memory to read", filename) from error
    except isolation.IsolatedFailure as error:
        if error.type_name == LimitExceeded.__name__ and error.reason:
            raise LimitExceeded(error.reason, filename) from error
        if error.type_name == UnsupportedDocumentError.__name__:
            raise UnsupportedDocumentError(error.message) from error
        raise ExtractionError(error.message) from error
    except isolation.IsolationCrashed as error:
        raise ExtractionError(f"the {_LABELS.get(kind, kind)} reader crashed on this file") from error
    return _document_from_json(result)


def extract_in_process(content: bytes, kind: str, *, limits: ExtractionLimits,
                       name: str | None = None) -> ExtractedDocument:
    """:func:`extract_text` in this process, without its time and memory limits: the child
    process's half (and a benchmark's baseline). Never call it on a file from outside."""
    kind = _kind_of(kind, name)
    reader = _READERS[kind]
    budget = _Budget(limits.EXTRACT_MAX_CHARS, limits)
    try:
        if kind in _OOXML:
            check_zip(content, limits, name=name)
        document = reader(content, budget)
    except (ExtractionError, UnsupportedDocumentError):
        raise
    except MemoryError:
        raise  # the child's exit status reports it
    except Exception as error:
        # A corrupt file can make a parser raise anything (KeyError, zipfile.BadZipFile, struct.error,
        # RecursionError...): it is this document's failure, reported as such with its cause chained.
        refusal = _limit_in(error, limits, name)
        if refusal is not None:
            raise refusal from error
        raise ExtractionError(f"could not read the {_LABELS.get(kind, kind)} file: {type(error).__name__}: "
                              f"{str(error)[:200]}") from error
    document.truncated = budget.exhausted
    document.sections = [section for section in document.sections if section.text.strip()]
    return document


def _kind_of(mime_type: str, filename: str | None) -> str:
    kind = normalize_mime_type(mime_type or "")
    if kind in ("", "application/octet-stream") and filename:
        kind = mime_type_for(filename) or kind
    if kind.startswith(GOOGLE_NATIVE_PREFIX):
        raise UnsupportedDocumentError(
            f"{kind} is a native Google file: export it first (Docs as text/markdown or text/plain, "
            "Sheets as text/csv, Slides as text/plain)"
        )
    if kind not in _READERS:
        raise UnsupportedDocumentError(f"unsupported document type {kind or mime_type!r}")
    return kind


def _extract_in_child(content: bytes, *, kind: str, name: str | None, limits: dict[str, Any]) -> dict[str, Any]:
    """The target :mod:`~insightmesh.knowledge.isolation` runs in the child: a JSON-able document."""
    document = extract_in_process(content, kind, limits=ExtractionLimits(**limits), name=name)
    return {"title": document.title, "truncated": document.truncated,
            "sections": [[section.heading, section.text] for section in document.sections]}


_CHILD_TARGET = f"{__name__}:_extract_in_child"  # a test points it at a function that hangs or allocates


def _document_from_json(result: Any) -> ExtractedDocument:
    if not isinstance(result, dict):
        raise ExtractionError("the reader answered without a document")
    sections = [Section(heading, text) for heading, text in result.get("sections", [])]
    return ExtractedDocument(title=result.get("title"), sections=sections, truncated=bool(result.get("truncated")))


def _limit_in(error: Exception, limits: ExtractionLimits, name: str | None) -> LimitExceeded | None:
    """The limit a parser's own error stands for: libxml2's nesting depth, pypdf's page tree."""
    message = str(error)
    if type(error).__name__ == "XMLSyntaxError" and "depth" in message.lower():
        return LimitExceeded("nests its XML deeper than 256 levels", name)
    if type(error).__name__ == "LimitReachedError":
        if "page tree" in message.lower():
            return LimitExceeded(f"has a page tree of more than {limits.EXTRACT_MAX_PDF_PAGE_TREE:,} entries", name)
        return LimitExceeded(f"goes past a safety limit of the PDF reader ({message[:200]})", name)
    return None


def check_zip(content: bytes, limits: ExtractionLimits, *, name: str | None = None) -> None:
    """Refuse an OOXML zip bomb before any parser sees it: too many parts, a declared or real
    uncompressed size past the limit, or a member compressed more than the ratio allows. The real
    size is counted while stream-reading each member with a cap, never taken from its header."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile as error:
        raise ExtractionError(f"not a readable Office file: {error}") from error
    cap = limits.max_expanded_bytes
    expands = LimitExceeded(f"expands to more than {limits.EXTRACT_MAX_EXPANDED_MB:g} MB", name)
    with archive:
        members = archive.infolist()
        if len(members) > limits.EXTRACT_MAX_ZIP_MEMBERS:
            raise LimitExceeded(f"has more than {limits.EXTRACT_MAX_ZIP_MEMBERS:,} parts", name)
        if sum(member.file_size for member in members) > cap:
            raise expands
        total = 0
        for member in members:
            size = 0
            ratio_cap = max(member.compress_size, 1) * limits.EXTRACT_MAX_RATIO
            try:
                with archive.open(member) as stream:
                    while chunk := stream.read(MB):
                        size += len(chunk)
                        if total + size > cap:
                            raise expands
                        if size > RATIO_FLOOR_BYTES and size > ratio_cap:
                            raise LimitExceeded(f"is compressed more than {limits.EXTRACT_MAX_RATIO:g} to 1 "
                                                "(a zip bomb?)", name)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as error:
                # a bad CRC (a header that lied about the size), corrupt data, an unknown method, encryption
                raise ExtractionError(f"not a readable Office file: {error}") from error
            total += size


# -- helpers ----------------------------------------------------------------------------------


class _Budget:
    """Characters left before a document is cut (``EXTRACT_MAX_CHARS``), and the count caps: a
    reader that stops at one marks the document ``truncated`` through :meth:`stop`."""

    def __init__(self, limit: int, limits: ExtractionLimits | None = None) -> None:
        self.left = limit
        self.exhausted = False
        self.limits = limits or ExtractionLimits()
        self.cells = self.limits.EXTRACT_MAX_CELLS

    def stop(self) -> None:
        self.exhausted = True

    def count_cells(self, count: int) -> bool:
        """Spend ``count`` cells; False (and the document truncated) once there are none left."""
        self.cells -= count
        if self.cells < 0:
            self.stop()
            return False
        return True

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


def _rows_text(rows: Iterable[Iterable[Any]], budget: _Budget, *, max_rows: int | None = None,
               charge: bool = True) -> str:
    """Rows as tab-separated lines, within the budget's cells, ``max_rows`` and (unless the caller
    charges the text itself: ``charge=False``) characters."""
    lines = []
    for number, row in enumerate(rows):
        if max_rows is not None and number >= max_rows:
            budget.stop()
            break
        values = row if isinstance(row, list | tuple) else list(row)
        if not budget.count_cells(len(values)):
            break
        cells = [_cell(value) for value in values]
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            continue
        line = "\t".join(cells) + "\n"
        lines.append(budget.take(line) if charge else line)
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
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import LimitReachedError, PdfReadError

    limits = budget.limits
    # pypdf walks the page tree with an explicit stack, refuses a cycle, and stops at this many
    # entries, so a tree of shared or huge /Kids cannot run away; streams inflate to our cap.
    with apply_configuration(page_tree_maximum_entries=limits.EXTRACT_MAX_PDF_PAGE_TREE,
                             zlib_maximum_output_length=limits.max_expanded_bytes):
        try:
            reader = PdfReader(io.BytesIO(content))
            if reader.is_encrypted and not reader.decrypt(""):
                raise ExtractionError("the PDF is encrypted")
            pages = reader.pages
            count = len(pages)
        except LimitReachedError:
            raise
        except PdfReadError as error:
            raise ExtractionError(f"not a readable PDF: {error}") from error
        sections = []
        for number in range(1, count + 1):
            if budget.spent:
                break
            if number > limits.EXTRACT_MAX_PAGES:
                budget.stop()
                break
            sections.append(Section(f"Page {number}", budget.take(pages[number - 1].extract_text() or "")))
    if count and not any(section.text.strip() for section in sections):
        raise ExtractionError("the PDF has no text layer (a scanned document?)")
    metadata = reader.metadata
    title = metadata.title if metadata is not None else None
    return ExtractedDocument(title=title.strip() or None if isinstance(title, str) else None, sections=sections)


_DOCX_HEADING: Final = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def _read_docx(content: bytes, budget: _Budget) -> ExtractedDocument:
    import docx
    from docx.table import Table, _Cell
    from docx.text.paragraph import Paragraph

    document = docx.Document(io.BytesIO(content))
    title = (document.core_properties.title or "").strip() or None
    collected = _Sections(budget)
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            # The row's own <w:tc> cells, not ``row.cells``: that expands every merge into its grid
            # slots, and a declared w:gridSpan of millions would be millions of cells.
            rows = ([" ".join(_Cell(tc, block).text.split()) for tc in tr.tc_lst] for tr in block._tbl.tr_lst)
            collected.add(_rows_text(rows, budget, charge=False))
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
        for number, sheet in enumerate(workbook.worksheets):
            if budget.spent:
                break
            if number >= budget.limits.EXTRACT_MAX_SHEETS:
                budget.stop()
                break
            # Never trust the declared dimension: with "A1:XFD1048576" openpyxl would pad every row
            # to 16,384 cells and yield a million rows. Without it, rows come as they are stored.
            sheet.reset_dimensions()
            text = _rows_text(sheet.iter_rows(values_only=True), budget, max_rows=budget.limits.EXTRACT_MAX_ROWS)
            sections.append(Section(str(sheet.title), text))
    finally:
        workbook.close()
    return ExtractedDocument(title=title, sections=sections)


MAX_GROUP_DEPTH: Final = 32


def _shape_texts(shapes: Iterable[Any], skip: Any, budget: _Budget, depth: int = 0) -> Iterator[str]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:
        if budget.spent:
            return
        if skip is not None and shape.shape_id == skip.shape_id:
            continue
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            if depth >= MAX_GROUP_DEPTH:
                budget.stop()
                continue
            yield from _shape_texts(shape.shapes, None, budget, depth + 1)
        elif getattr(shape, "has_table", False) and shape.has_table:
            # The table's own <a:tc> cells (the grid of merges is not expanded).
            yield _rows_text(([cell.text for cell in row.cells] for row in shape.table.rows), budget, charge=False)
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
        if number > budget.limits.EXTRACT_MAX_SLIDES:
            budget.stop()
            break
        title_shape = slide.shapes.title
        slide_title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
        lines = list(_shape_texts(slide.shapes, title_shape, budget))
        if slide.has_notes_slide:
            notes_frame = slide.notes_slide.notes_text_frame
            notes = notes_frame.text.strip() if notes_frame is not None else ""
            if notes:
                lines.append(f"Notes: {notes}")
        sections.append(Section(slide_title or f"Slide {number}", budget.take("\n".join(lines))))
    return ExtractedDocument(title=title, sections=sections)


# Linear on any line: the closing "##" is stripped in Python (_heading_text). The former
# r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$" backtracked cubically: "# a" + 5,000 spaces + "x" ran for minutes.
_MD_HEADING: Final = re.compile(r"^(#{1,6})[ \t]+(\S.*)$")
_MD_FENCE: Final = re.compile(r"^\s{0,3}(```|~~~)")


def _heading_text(raw: str) -> str:
    """A heading's text without its optional closing sequence (``## Title ##`` → ``Title``; as in
    CommonMark, the hashes close it only after a space: ``# C#`` stays ``C#``)."""
    text = raw.rstrip(" \t")
    without = text.rstrip("#")
    if without != text and (not without or without[-1] in " \t"):
        text = without
    return text.strip()


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
    title = _heading_text(top[0].group(2)) if len(top) == 1 else None
    heading_lines = {index: match for index, match in outside}
    collected = _Sections(budget)
    for index, line in enumerate(lines):
        match = heading_lines.get(index)
        if match is None:
            collected.add(line)
            continue
        level, text = len(match.group(1)), _heading_text(match.group(2))
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
_OOXML: Final = frozenset({DOCX, XLSX, PPTX})
# Imported once by the fork server, so that each file's child starts with its parser loaded.
_PARSERS: Final[dict[str, tuple[str, ...]]] = {PDF: ("pypdf",), DOCX: ("docx",), XLSX: ("openpyxl",),
                                               PPTX: ("pptx",), VTT: ("webvtt",), SRT: ("webvtt",)}
