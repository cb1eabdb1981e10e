"""Text extraction, chunking and the sparse encoder of the knowledge base — no network, no AWS.

Every fixture document is built here (python-docx, openpyxl, python-pptx write their formats; the
PDF is written by hand), then read back through ``extract_text`` as an ingestion would.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from insightmesh.knowledge.chunking import CHUNK_OVERLAP, CHUNK_SIZE, NAMESPACE, chunk_id, chunk_sections, split_text
from insightmesh.knowledge.extract import (
    DOCX,
    PPTX,
    SUPPORTED_MIME_TYPES,
    XLSX,
    ExtractedDocument,
    ExtractionError,
    Section,
    UnsupportedDocumentError,
    extract_text,
    mime_type_for,
)
from insightmesh.knowledge.sparse import (
    AVERAGE_CHUNK_TERMS,
    K1,
    bm25_weight,
    sparse_vector,
    stem,
    term_index,
    tokenize,
)
from tests.knowledge_fixtures import docx_bytes, minimal_pdf, pptx_bytes, xlsx_bytes

ROOT = Path(__file__).parents[2]

# -- MIME types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("filename", "expected"), [
    ("report.pdf", "application/pdf"),
    ("Plan.DOCX", DOCX),
    ("numbers.xlsx", XLSX),
    ("deck.pptx", PPTX),
    ("notes.md", "text/markdown"),
    ("notes.markdown", "text/markdown"),
    ("readme.txt", "text/plain"),
    ("meeting.vtt", "text/vtt"),
    ("meeting.srt", "application/x-subrip"),
    ("export.csv", "text/csv"),
    ("archive.zip", None),
    ("no-extension", None),
])
def test_mime_type_by_extension(filename, expected):
    assert mime_type_for(filename) == expected
    if expected is not None:
        assert expected in SUPPORTED_MIME_TYPES


# -- formats --------------------------------------------------------------------------------------


def test_pdf_pages_and_title():
    content = minimal_pdf([["Quarterly revenue grew 12 percent.", "Costs were flat (mostly)."],
                           ["Page two mentions the Lisbon office."]], title="Q3 Report")
    document = extract_text(content, "application/pdf")
    assert document.title == "Q3 Report"
    assert [section.heading for section in document.sections] == ["Page 1", "Page 2"]
    assert "Quarterly revenue grew 12 percent." in document.sections[0].text
    assert "Costs were flat (mostly)." in document.sections[0].text
    assert "Lisbon office" in document.sections[1].text
    assert "Lisbon office" in document.text


def test_pdf_without_text_layer_is_an_extraction_error():
    with pytest.raises(ExtractionError, match="no text layer"):
        extract_text(minimal_pdf([[]]), "application/pdf")


def test_docx_headings_give_the_sections_their_path_and_tables_become_rows():
    content = docx_bytes([
        ("title", "Employee Handbook"),
        ("p", "Welcome to the company."),
        ("h1", "Benefits"),
        ("p", "Everyone gets health insurance."),
        ("h2", "Dental"),
        ("p", "Dental cover starts after three months."),
        ("table", "Plan;Cost|Basic;10|Plus;25"),
        ("h1", "Travel"),
        ("p", "Book trains through the portal."),
    ])
    document = extract_text(content, DOCX)
    assert document.title == "Employee Handbook"
    assert [section.heading for section in document.sections] == [None, "Benefits", "Benefits > Dental", "Travel"]
    dental = document.sections[2].text
    assert "Dental cover starts after three months." in dental
    assert "Plan\tCost\nBasic\t10\nPlus\t25" in dental


def test_docx_core_title_wins_over_a_title_paragraph():
    document = extract_text(docx_bytes([("title", "Shown title"), ("p", "Body")], title="Core title"), DOCX)
    assert document.title == "Core title"
    assert "Shown title" in document.text


def test_xlsx_a_section_per_sheet_rows_tab_separated():
    content = xlsx_bytes({
        "Prices": [("Product", "Price", "In stock"), ("Widget", 9.5, True), (), ("Gadget", 12, False)],
        "Contacts": [("Name", "Email"), ("Ada", "ada@example.com")],
    })
    document = extract_text(content, XLSX)
    assert [section.heading for section in document.sections] == ["Prices", "Contacts"]
    assert document.sections[0].text == "Product\tPrice\tIn stock\nWidget\t9.5\tTRUE\nGadget\t12\tFALSE"
    assert document.sections[1].text == "Name\tEmail\nAda\tada@example.com"


def test_pptx_a_section_per_slide_titled_with_notes():
    content = pptx_bytes([
        ("Roadmap 2027", ["Launch in Brazil", "Hire 20 engineers"], "Mention the budget"),
        (None, ["A slide without a title"], None),
    ])
    document = extract_text(content, PPTX)
    assert [section.heading for section in document.sections] == ["Roadmap 2027", "Slide 2"]
    assert "Launch in Brazil\nHire 20 engineers" in document.sections[0].text
    assert "Notes: Mention the budget" in document.sections[0].text
    assert "Roadmap 2027" not in document.sections[0].text  # the title is the heading, not body text
    assert document.sections[1].text == "A slide without a title"


def test_markdown_headings_fences_and_title():
    text = (
        "# Onboarding Guide\n\nIntro paragraph.\n\n## Laptops\n\nAsk IT for a laptop.\n\n"
        "### Linux\n\nUbuntu is supported.\n\n```bash\n# not a heading\napt install things\n```\n\n"
        "## Badges\n\nBadges are issued at reception.\n"
    )
    document = extract_text(text.encode(), "text/markdown")
    assert document.title == "Onboarding Guide"
    headings = [section.heading for section in document.sections]
    assert headings == [None, "Laptops", "Laptops > Linux", "Badges"]
    assert "# not a heading" in document.sections[2].text


def test_markdown_with_several_top_level_headings_has_no_title():
    document = extract_text(b"# One\nfirst\n# Two\nsecond\n", "text/x-markdown")
    assert document.title is None
    assert [(s.heading, s.text) for s in document.sections] == [("One", "first"), ("Two", "second")]


def test_plain_text_and_its_encodings():
    assert extract_text("café au lait".encode(), "text/plain").text == "café au lait"
    assert extract_text("café".encode("cp1252"), "text/plain; charset=windows-1252").text == "café"
    assert extract_text("\ufeffbom".encode(), "TEXT/PLAIN").text == "bom"
    assert extract_text("utf16 text".encode("utf-16"), "text/plain").text == "utf16 text"


@pytest.mark.parametrize("mime_type", ["text/markdown", "text/plain"])
def test_google_docs_exports(mime_type):
    document = extract_text(b"Meeting policy\n\nMeetings end five minutes early.", mime_type)
    assert "Meetings end five minutes early." in document.text


def test_google_sheets_export_is_csv():
    document = extract_text(b'Region,Owner,Notes\nEMEA,Ana,"Covers ""UK"", FR"\n\nAPAC,Li,\n', "text/csv")
    assert document.sections[0].text == 'Region\tOwner\tNotes\nEMEA\tAna\tCovers "UK", FR\nAPAC\tLi'


def test_google_slides_export_is_plain_text():
    document = extract_text(b"Kickoff\nGoals for the quarter\n\nTimeline\nShip in May", "text/plain")
    assert "Ship in May" in document.text


def test_tsv():
    assert extract_text(b"a\tb\n1\t2\n", "text/tab-separated-values").text == "a\tb\n1\t2"


def test_vtt_cues_with_timestamps_and_voices():
    vtt = (
        "WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Alice>Welcome to the all-hands.\n\n"
        "00:01:05.500 --> 00:01:09.000\n<v Bob>Revenue is up <b>twelve</b> percent.\n\n"
        "01:02:03.000 --> 01:02:05.000\nThanks everyone\n"
    )
    document = extract_text(vtt.encode(), "text/vtt")
    assert document.sections[0].text.splitlines() == [
        "[00:00:01] Alice: Welcome to the all-hands.",
        "[00:01:05] Bob: Revenue is up twelve percent.",
        "[01:02:03] Thanks everyone",
    ]


def test_srt_cues_with_timestamps():
    srt = "1\n00:00:01,000 --> 00:00:03,000\nHello from the\nSRT file\n\n2\n00:00:04,500 --> 00:00:06,000\nGoodbye\n"
    document = extract_text(srt.encode(), "application/x-subrip")
    assert document.sections[0].text.splitlines() == ["[00:00:01] Hello from the SRT file", "[00:00:04] Goodbye"]
    assert extract_text(srt.encode(), "text/srt").text == document.text


def test_octet_stream_is_typed_by_filename():
    document = extract_text(b"# Title\nbody", "application/octet-stream", filename="notes.md")
    assert document.title == "Title"


@pytest.mark.parametrize("mime_type", ["application/zip", "image/png", "application/msword", ""])
def test_unsupported_types(mime_type):
    with pytest.raises(UnsupportedDocumentError):
        extract_text(b"whatever", mime_type)


def test_native_google_types_ask_for_an_export():
    with pytest.raises(UnsupportedDocumentError, match="export it first"):
        extract_text(b"", "application/vnd.google-apps.document")


@pytest.mark.parametrize(("mime_type", "content"), [
    ("application/pdf", b"%PDF-1.4\n1 0 obj <<>> garbage"),
    ("application/pdf", b"not a pdf at all"),
    (DOCX, b"PK\x03\x04 this is not a real zip"),
    (XLSX, b"not a spreadsheet"),
    (PPTX, b"\x00\x01\x02"),
    ("text/vtt", b"this is not WEBVTT\n00:00 --> nonsense"),
    ("application/x-subrip", b"garbage\nwithout cues"),
    ("text/plain", b"\x00\x01binary\x00"),
])
def test_corrupt_files_raise_extraction_errors(mime_type, content):
    with pytest.raises(ExtractionError):
        extract_text(content, mime_type)


def test_a_corrupt_file_error_keeps_its_cause():
    with pytest.raises(ExtractionError) as caught:
        extract_text(b"PK\x03\x04 broken", DOCX)
    assert caught.value.__cause__ is not None


# -- chunking ---------------------------------------------------------------------------------------

def _paragraphs(count: int) -> str:
    return "\n\n".join(
        f"Paragraph {n} explains topic number {n} in some detail. It has a second sentence about item {n}. "
        f"And a third sentence, so that the paragraph is long enough to matter for chunk {n}."
        for n in range(count)
    )


def test_a_short_document_is_one_chunk_prefixed_with_title_and_heading():
    chunks = chunk_sections([Section("Benefits > Dental", "Dental cover starts after three months.")],
                            title="Employee Handbook")
    assert len(chunks) == 1
    chunk = chunks[0]
    assert (chunk.index, chunk.heading) == (0, "Benefits > Dental")
    assert chunk.text == "Dental cover starts after three months."
    assert chunk.embed_text == "Employee Handbook — Benefits > Dental\n\nDental cover starts after three months."
    assert chunk_sections([Section(None, "Body")], title="Title")[0].embed_text == "Title\n\nBody"


def test_long_sections_are_split_with_overlap_at_word_boundaries():
    text = _paragraphs(30)
    chunks = chunk_sections([Section("Guide", text)], title="Doc")
    assert len(chunks) > 3
    words = set(text.split())
    for chunk in chunks:
        assert chunk.heading == "Guide"
        assert 0.5 * CHUNK_SIZE <= len(chunk.text) <= CHUNK_SIZE or chunk is chunks[-1]
        assert chunk.embed_text.startswith("Doc — Guide\n\n")
        first, last = chunk.text.split()[0], chunk.text.split()[-1]
        assert first in words and last in words, (first, last)  # never a piece of a word
    for previous, following in itertools.pairwise(chunks):
        overlap = following.text[:60]
        assert overlap in previous.text, "consecutive chunks overlap"
        shared = len(previous.text) - previous.text.index(following.text[:40])
        assert 0 < shared <= CHUNK_OVERLAP + 40
    # Everything is covered, in order.
    assert chunks[0].text.startswith("Paragraph 0 ") and chunks[-1].text.endswith("chunk 29.")


def test_a_word_longer_than_a_chunk_is_cut_hard():
    pieces = split_text("x" * 3000, size=1000, overlap=100)
    assert all(len(piece) <= 1000 for piece in pieces) and "".join(pieces).count("x") >= 3000


def test_small_sections_are_packed_with_their_headings_inline():
    sections = [Section(f"Slide {n}", f"Point {n} of the deck.") for n in range(1, 6)]
    chunks = chunk_sections(sections, title="Deck")
    assert len(chunks) == 1
    assert chunks[0].heading == "Slide 1"
    assert "Slide 3\nPoint 3 of the deck." in chunks[0].text


def test_chunking_is_deterministic_and_ids_are_uuid5():
    sections = [Section("A", _paragraphs(12)), Section("B", "short")]
    first = chunk_sections(sections, title="T")
    assert chunk_sections(sections, title="T") == first
    assert [chunk.index for chunk in first] == list(range(len(first)))
    assert chunk_id("gdrive:abc", 3) == str(uuid.uuid5(NAMESPACE, "gdrive:abc#3")) == chunk_id("gdrive:abc", 3)
    assert len({chunk_id("gdrive:abc", n) for n in range(50)}) == 50


def test_extracted_document_text_joins_headings_and_sections():
    document = ExtractedDocument("t", [Section("H", "one"), Section(None, "two")])
    assert document.text == "H\none\n\ntwo"


# -- the sparse encoder ------------------------------------------------------------------------------

def test_tokenizer_lowercases_drops_stop_words_and_stems():
    assert tokenize("The Policies of the COMPANY were approved") == ["policy", "company", "approv"]
    assert tokenize("policy approves approving") == ["policy", "approv", "approv"]
    assert tokenize("Zürich 2027 ünïcode_words") == ["zürich", "2027", "ünïcod", "word"]
    assert stem("status") == "status" and stem("class") == "class" and stem("analysis") == "analysis"


SPARSE_PROBE = (
    "from insightmesh.knowledge.sparse import sparse_vector\n"
    "print(sparse_vector('Revenue in Lisbon grew; Lisbon revenue doubled', query=False))\n"
)


def test_sparse_indices_are_stable_across_processes():
    here = sparse_vector("Revenue in Lisbon grew; Lisbon revenue doubled")
    outputs = set()
    for seed in ("1", "2", "random"):
        environment = {**os.environ, "PYTHONHASHSEED": seed,
                       "PYTHONPATH": str(ROOT / "layers" / "common" / "python")}
        result = subprocess.run([sys.executable, "-c", SPARSE_PROBE], capture_output=True, text=True, check=True,
                                env=environment, timeout=60)
        outputs.add(result.stdout.strip())
    assert outputs == {str(here)}
    assert term_index("lisbon") == 0x7FFF_FFFF & int.from_bytes(__import__("hashlib").blake2b(
        b"lisbon", digest_size=4).digest(), "big")
    assert all(0 <= index < 2**31 for index in here[0])


def test_bm25_term_frequency_saturates_and_normalises_length():
    weights = [bm25_weight(tf, int(AVERAGE_CHUNK_TERMS)) for tf in (1, 2, 4, 8, 100)]
    assert weights == sorted(weights) and weights[0] == pytest.approx(1.0)
    assert weights[-1] < K1 + 1  # saturation: never more than k1 + 1
    assert weights[1] - weights[0] > weights[2] - weights[1]  # diminishing returns
    assert bm25_weight(1, 20) > bm25_weight(1, 120) > bm25_weight(1, 600)  # short chunks weigh more


def test_document_and_query_vectors():
    indices, values = sparse_vector("Lisbon lisbon LISBON office")
    assert indices == sorted(indices) and len(indices) == 2
    by_index = dict(zip(indices, values, strict=True))
    assert by_index[term_index("lisbon")] > by_index[term_index(stem("office"))]
    assert sparse_vector("the lisbon office? the LISBON office!", query=True) == (
        sorted([term_index("lisbon"), term_index("offic")]), [1.0, 1.0])
    assert sparse_vector("the of and") == ([], [])
