# ruff: noqa: RUF001  (the Unicode test prints en dashes on purpose)
"""The research report PDF (research/pdf.py): read back with pypdf, as a person's PDF reader and the
e2e tests do — the title, date, sections, citations that link to their sources, a numbered
Sources list with its URLs, "Page n of N" on every page, the note, Unicode, and the bounds."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pypdf
import pytest

from insightmesh.agents.base import ReportDocument, ReportSection
from insightmesh.research import pdf
from insightmesh.research.pdf import markdown_html, render_pdf
from insightmesh.tools.base import Source

P = '<p line-height="1.3">'
WHEN = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
SOURCES = (
    Source("Acme Corp — About us", "https://acme.example.com/about"),
    Source("Acme Corp annual report 2024", "https://acme.example.com/investors/annual-report-2024.pdf"),
    Source("ACME 10-K (SEC EDGAR)", "https://www.sec.gov/cgi-bin/browse-edgar?action=getcompany&CIK=0000000001",
           kind="filing"),
)


def report(**overrides: object) -> ReportDocument:
    fields: dict[str, object] = {
        "title": "Acme Corp company profile",
        "subtitle": "Requested in #sales: profile Acme Corp",
        "sections": (
            ReportSection("Overview", "Acme Corp makes **industrial anvils** [1]. Revenue was $1.2 billion [2]."
                                      "\n\n- Founded in 1949\n- Based in Phoenix [1]\n\n"
                                      "## Leadership\nThe CEO is *W. Coyote*."),
            ReportSection("Financials and filings", "The 10-K reports 8% growth [3]."),
        ),
        "sources": SOURCES,
    }
    fields.update(overrides)
    return ReportDocument(**fields)  # type: ignore[arg-type]


def read(data: bytes) -> tuple[pypdf.PdfReader, list[str]]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return reader, [page.extract_text() for page in reader.pages]


def link_targets(reader: pypdf.PdfReader) -> list[str]:
    targets = []
    for page in reader.pages:
        for annotation in page.get("/Annots") or []:
            action = annotation.get_object().get("/A")
            if action is not None and action.get("/URI"):
                targets.append(str(action["/URI"]))
    return targets


def test_the_pdf_shows_title_date_sections_and_sources_with_their_urls():
    data = render_pdf(report(), generated_at=WHEN)
    assert data.startswith(b"%PDF-")
    reader, pages = read(data)
    text = "\n".join(pages)
    for expected in ("Acme Corp company profile", "Requested in #sales: profile Acme Corp", "07 December 2026",
                     "Overview", "Financials and filings", "Leadership", "industrial anvils", "Founded in 1949",
                     "Sources", "[1] Acme Corp — About us", "[3] ACME 10-K (SEC EDGAR)"):
        assert expected in text, expected
    for source in SOURCES:
        assert source.url in text
    assert reader.metadata is not None and reader.metadata.title == "Acme Corp company profile"
    assert [item.title for item in reader.outline] == ["Overview", "Financials and filings", "Sources"]  # type: ignore[union-attr]


def test_citations_and_source_urls_are_links_to_the_sources():
    reader, _pages = read(render_pdf(report(), generated_at=WHEN))
    targets = link_targets(reader)
    # [1] twice and [2], [3] once in the text, and each URL of the Sources list.
    assert targets.count(SOURCES[0].url) == 3
    assert targets.count(SOURCES[1].url) == 2
    assert targets.count(SOURCES[2].url) == 2


def test_every_page_is_numbered_page_n_of_total():
    long_body = "\n\n".join(f"Paragraph {n}: " + "The company sells anvils to coyotes. " * 20 for n in range(40))
    _reader, pages = read(render_pdf(report(sections=(ReportSection("Long", long_body),)), generated_at=WHEN))
    total = len(pages)
    assert total >= 3
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of {total}" in text


def test_the_note_is_shown_under_the_title_on_the_first_page():
    _reader, pages = read(render_pdf(report(note="Partial report: the run reached its token cap."),
                                     generated_at=WHEN))
    first = pages[0]
    assert "Note: Partial report: the run reached its token cap." in first
    assert first.index("token cap") < first.index("Overview")


def test_unicode_text_prints_and_extracts_and_what_the_font_lacks_is_said():
    body = "“Quoted” — en–dash, café, naïve, Zürich, Ελληνικά, Русский; 東京 🚀"
    _reader, pages = read(render_pdf(report(title="Société Générale – “profile”",
                                            sections=(ReportSection("Überblick", body),)), generated_at=WHEN))
    text = "\n".join(pages)
    for expected in ("Société Générale – “profile”", "Überblick", "“Quoted” — en–dash, café, naïve, Zürich",
                     "Ελληνικά, Русский"):
        assert expected in text, expected
    assert "3 character(s) the PDF font cannot show" in text  # 東, 京 and the emoji, shown as "?"


def test_a_document_too_long_is_truncated_and_says_so():
    sections = tuple(ReportSection(f"Part {n}", "Anvils and more anvils. " * 200) for n in range(pdf.MAX_SECTIONS + 20))
    _reader, pages = read(render_pdf(report(sections=sections), generated_at=WHEN))
    text = "\n".join(pages)
    assert "This PDF was truncated" in pages[0]
    assert "Part 0" in text
    assert f"Part {pdf.MAX_SECTIONS + 19}" not in text
    assert sum(len(page) for page in pages) < pdf.MAX_BODY_CHARS * 1.3


def test_too_many_sources_are_cut_and_said():
    sources = tuple(Source(f"Page {n}", f"https://example.com/{n}") for n in range(pdf.MAX_SOURCES + 5))
    _reader, pages = read(render_pdf(report(sources=sources), generated_at=WHEN))
    text = "\n".join(pages)
    assert f"Only the first {pdf.MAX_SOURCES} of {pdf.MAX_SOURCES + 5} sources are listed." in text
    assert f"https://example.com/{pdf.MAX_SOURCES - 1}" in text
    assert f"https://example.com/{pdf.MAX_SOURCES}\n" not in text + "\n"


def test_the_same_document_renders_the_same_pdf():
    assert render_pdf(report(), generated_at=WHEN) == render_pdf(report(), generated_at=WHEN)
    # Only the date differs otherwise: the text is the same.
    later = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    assert read(render_pdf(report(), generated_at=WHEN))[1] == read(render_pdf(report(), generated_at=later))[1]


def test_a_markdown_table_is_a_table_whose_cells_extract():
    body = "| Fiscal year | Revenue |\n|---|---|\n| 2025 | $1.24 bn [2] |\n| 2024 | $1.15 bn |\n\nAfter the table."
    _reader, pages = read(render_pdf(report(sections=(ReportSection("Financials", body),)), generated_at=WHEN))
    text = pages[0]
    assert "Fiscal year Revenue" in text and "2025 $1.24 bn [2]" in text and "After the table." in text
    assert "|" not in text


def test_markup_fpdf2_refuses_still_gives_the_section_as_plain_text(monkeypatch: pytest.MonkeyPatch):
    def refuse(self: object, text: str, **_options: object) -> None:
        raise NotImplementedError("Unsupported nested HTML tags")

    monkeypatch.setattr(pdf._ReportPdf, "write_html", refuse)
    _reader, pages = read(render_pdf(report(), generated_at=WHEN))
    assert "Acme Corp makes **industrial anvils** [1]." in pages[0]  # the Markdown, unrendered but there


def test_a_document_without_sections_or_sources_still_renders():
    _reader, pages = read(render_pdf(ReportDocument(title="", sections=()), generated_at=WHEN))
    assert "Report" in pages[0] and "Page 1 of 1" in pages[0]


@pytest.mark.parametrize(("markdown", "expected"), [
    ("a <script>alert(1)</script> & b", P + "a &lt;script&gt;alert(1)&lt;/script&gt; &amp; b</p>"),
    ("- one\n- two\n\n1. first", '<ul line-height="1.3"><li>one</li><li>two</li></ul>'
                                   '<ol line-height="1.3"><li>first</li></ol>'),
    ("**bold** and *it* and `code`", P + "<b>bold</b> and it and code</p>"),
    ("see [the site](https://x.example/a_b*c*) [1] [9]",
     P + 'see <a href="https://x.example/a_b*c*">the site</a> '
         '[<a href="https://acme.example.com/about">1</a>] [9]</p>'),
    ("# Heading\ntext", "<h3>Heading</h3>" + P + "text</p>"),
    ("| Year | **Revenue** |\n|---|---:|\n| 2025 | $1.2 bn [2] |\n| 2024 |",
     '<table width="100%"><thead><tr><th>Year</th><th>Revenue</th></tr></thead>'
     "<tbody><tr><td>2025</td><td>$1.2 bn [2]</td></tr><tr><td>2024</td><td></td></tr></tbody></table>"),
])
def test_the_markdown_subset_becomes_escaped_html(markdown: str, expected: str):
    assert markdown_html(markdown, SOURCES) == expected
