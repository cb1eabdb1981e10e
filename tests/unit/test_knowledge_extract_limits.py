"""Hostile files are refused or cut short within the extraction limits, in a child process.

Every hostile file is built here, in memory: zip bombs (a huge member, a highly compressed part, a
lying header), a sheet declaring A1:XFD1048576, a PDF page tree of a million entries and a cyclic
one, deeply nested and grid-span-bombed DOCX tables. The isolation itself (wall clock, memory,
crash) is proven with test-only targets in ``tests/isolation_targets.py``.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zipfile

import pytest

from insightmesh.config import ConfigurationError
from insightmesh.knowledge import extract, isolation
from insightmesh.knowledge.extract import (
    DOCX,
    PDF,
    PPTX,
    XLSX,
    ExtractionError,
    ExtractionLimits,
    LimitExceeded,
    extract_text,
    failure_reason,
)
from tests.knowledge_fixtures import docx_bytes, minimal_pdf, pptx_bytes, xlsx_bytes

MB = 1024 * 1024
SMALL = ExtractionLimits(EXTRACT_MAX_EXPANDED_MB=5, EXTRACT_TIMEOUT_SECONDS=60)


def _rezip(original: bytes, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None) -> bytes:
    """``original`` (a zip) with members replaced or added, all deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, (replace or {}).get(info.filename, source.read(info.filename)))
        for name, data in (add or {}).items():
            target.writestr(name, data)
    return out.getvalue()


def _member(content: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return archive.read(name)


# -- before parsing: the zip ------------------------------------------------------------------------

def test_a_zip_bomb_member_is_refused_by_its_declared_size():
    bomb = _rezip(docx_bytes([("p", "hello")]), add={"word/media/bomb.bin": b"\0" * (8 * MB)})
    assert len(bomb) < 100_000
    with pytest.raises(LimitExceeded) as refused:
        extract_text(bomb, DOCX, filename="report.docx", limits=SMALL)
    assert str(refused.value) == "report.docx expands to more than 5 MB"
    assert failure_reason(refused.value) == "it expands to more than 5 MB"


def test_a_highly_compressed_part_is_refused_by_its_ratio():
    document = _member(docx_bytes([("p", "hello")]), "word/document.xml")
    padded = document.replace(b"<w:body>", b"<w:body>" + b" " * (3 * MB), 1)  # whitespace: ~1000 to 1
    bomb = _rezip(docx_bytes([("p", "hello")]), replace={"word/document.xml": padded})
    with pytest.raises(LimitExceeded, match=r"report\.docx is compressed more than 200 to 1"):
        extract_text(bomb, DOCX, filename="report.docx", limits=SMALL)


def test_a_header_that_understates_the_size_is_not_trusted():
    """The central directory says 100 bytes; the member inflates to 8 MB. Reading is capped by the
    declared size and the CRC then fails: refused, never parsed at the real size."""
    real = b"\0" * (8 * MB)
    original = _rezip(docx_bytes([("p", "hello")]), add={"word/media/liar.bin": real})
    central = original.rindex(b"PK\x01\x02", 0, original.index(b"word/media/liar.bin", original.index(b"PK\x01\x02")))
    lying = bytearray(original)
    struct.pack_into("<I", lying, central + 24, 100)  # uncompressed size in the central directory
    local = original.index(b"PK\x03\x04" + original[central + 6:central + 10])
    struct.pack_into("<I", lying, local + 22, 100)
    with pytest.raises(ExtractionError):
        extract.check_zip(bytes(lying), SMALL, name="liar.docx")
    with pytest.raises(ExtractionError):
        extract_text(bytes(lying), DOCX, filename="liar.docx", limits=SMALL)


def test_too_many_zip_parts_are_refused():
    many = _rezip(xlsx_bytes({"Data": [["a"]]}), add={f"xl/junk/{n}.xml": b"<x/>" for n in range(60)})
    with pytest.raises(LimitExceeded, match=r"sheet\.xlsx has more than 50 parts"):
        extract_text(many, XLSX, filename="sheet.xlsx", limits=ExtractionLimits(EXTRACT_MAX_ZIP_MEMBERS=50))


def test_normal_office_files_pass_the_zip_checks():
    for content in (docx_bytes([("p", "hello")]), xlsx_bytes({"S": [["a", 1]]}), pptx_bytes([("T", ["b"], None)])):
        extract.check_zip(content, SMALL)


# -- during parsing: counts -------------------------------------------------------------------------

def _billion_cells_sheet(rows: int) -> bytes:
    """A workbook of ``rows`` rows whose sheet declares the whole grid, A1:XFD1048576."""
    workbook = xlsx_bytes({"Big": [[f"row {n}", n] for n in range(1, rows + 1)]})
    sheet = _member(workbook, "xl/worksheets/sheet1.xml")
    declared, count = re.subn(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:XFD1048576"', sheet)
    assert count == 1
    return _rezip(workbook, replace={"xl/worksheets/sheet1.xml": declared})


def test_a_sheet_declaring_a_billion_cells_is_read_as_stored_and_capped_in_rows():
    content = _billion_cells_sheet(3_000)
    limits = ExtractionLimits(EXTRACT_MAX_ROWS=1_000, EXTRACT_TIMEOUT_SECONDS=60)
    document = extract_text(content, XLSX, filename="billion.xlsx", limits=limits)
    lines = document.sections[0].text.splitlines()
    assert lines[0] == "row 1\t1" and lines[-1] == "row 1000\t1000"
    assert len(lines) == 1_000 and document.truncated
    assert all(line.count("\t") == 1 for line in lines)  # never padded to the declared 16,384 columns


def test_a_tiny_sheet_declaring_a_billion_cells_reads_whole():
    document = extract_text(_billion_cells_sheet(3), XLSX, limits=SMALL)
    assert document.sections[0].text == "row 1\t1\nrow 2\t2\nrow 3\t3" and not document.truncated


def test_cells_sheets_slides_and_pages_are_capped():
    wide = xlsx_bytes({"W": [[f"c{r}.{c}" for c in range(10)] for r in range(100)]})
    document = extract_text(wide, XLSX, limits=ExtractionLimits(EXTRACT_MAX_CELLS=95))
    assert len(document.sections[0].text.splitlines()) == 9 and document.truncated

    sheets = xlsx_bytes({f"S{n}": [[n]] for n in range(5)})
    document = extract_text(sheets, XLSX, limits=ExtractionLimits(EXTRACT_MAX_SHEETS=2))
    assert [section.heading for section in document.sections] == ["S0", "S1"] and document.truncated

    deck = pptx_bytes([(f"Slide title {n}", [f"point {n}"], None) for n in range(6)])
    document = extract_text(deck, PPTX, limits=ExtractionLimits(EXTRACT_MAX_SLIDES=4))
    assert len(document.sections) == 4 and document.truncated

    pdf = minimal_pdf([[f"page {n}"] for n in range(12)])
    document = extract_text(pdf, PDF, limits=ExtractionLimits(EXTRACT_MAX_PAGES=5))
    assert [section.heading for section in document.sections] == [f"Page {n}" for n in range(1, 6)]
    assert document.truncated


def test_the_text_budget_stops_reading_early():
    content = xlsx_bytes({"S": [["x" * 50] for _ in range(1_000)], "Later": [["never read"]]})
    document = extract_text(content, XLSX, limits=ExtractionLimits(EXTRACT_MAX_CHARS=500))
    assert len(document.text) < 700 and document.truncated
    assert "never read" not in document.text


# -- PDF page trees ---------------------------------------------------------------------------------

def _pdf(objects: list[bytes], root: int) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref)
    return bytes(out)


def test_a_pdf_page_tree_of_a_million_pages_is_refused():
    """Three levels of 100 references to one node each: 10^6 pages in a ~2 KB file."""
    stream = b"BT /F1 11 Tf 72 720 Td (hi) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count 1000000 >>" % b" ".join([b"3 0 R"] * 100),
        b"<< /Type /Pages /Kids [%s] /Count 10000 >>" % b" ".join([b"4 0 R"] * 100),
        b"<< /Type /Pages /Kids [%s] /Count 100 >>" % b" ".join([b"5 0 R"] * 100),
        b"<< /Type /Page /MediaBox [0 0 612 792] /Contents 6 0 R /Resources << /Font << /F1 7 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    content = _pdf(objects, root=1)
    assert len(content) < 5_000
    with pytest.raises(LimitExceeded, match=r"^huge\.pdf has a page tree of more than 20,000 entries$"):
        extract_text(content, PDF, filename="huge.pdf", limits=SMALL)


def test_a_cyclic_pdf_page_tree_is_refused():
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Pages /Kids [2 0 R] /Count 1 /Parent 2 0 R >>",
    ]
    with pytest.raises(ExtractionError, match="cyclic"):
        extract_text(_pdf(objects, root=1), PDF, filename="loop.pdf", limits=SMALL)


# -- DOCX structure ---------------------------------------------------------------------------------

def _with_body(xml: bytes) -> bytes:
    base = docx_bytes([("p", "placeholder")])
    document = _member(base, "word/document.xml")
    start, end = document.index(b"<w:body>") + len(b"<w:body>"), document.index(b"</w:body>")
    return _rezip(base, replace={"word/document.xml": document[:start] + xml + document[end:]})


def test_a_deeply_nested_docx_is_refused():
    depth = 2_000
    paragraph = b"<w:p><w:r><w:t>deep</w:t></w:r></w:p>"
    nested = b"<w:tbl><w:tr><w:tc>" * depth + paragraph + b"</w:tc></w:tr></w:tbl>" * depth
    content = _with_body(nested + b"<w:p/>")
    assert len(content) < 50_000
    with pytest.raises(LimitExceeded, match=r"^deep\.docx nests its XML deeper than 256 levels$"):
        extract_text(content, DOCX, filename="deep.docx", limits=SMALL)


def test_a_table_cell_spanning_millions_of_grid_columns_is_read_as_one_cell():
    span = (b'<w:tbl><w:tr><w:tc><w:tcPr><w:gridSpan w:val="50000000"/></w:tcPr><w:p><w:r><w:t>wide</w:t></w:r>'
            b'</w:p></w:tc><w:tc><w:p><w:r><w:t>next</w:t></w:r></w:p></w:tc></w:tr></w:tbl><w:p/>')
    document = extract_text(_with_body(span), DOCX, filename="span.docx", limits=SMALL)
    assert document.text == "wide\tnext"


# -- isolation --------------------------------------------------------------------------------------

def test_the_child_returns_the_targets_result_and_reports_its_exception():
    assert isolation.run_isolated("tests.isolation_targets:echo", b"abc", {"kind": "x"}, timeout=60,
                                  memory_bytes=512 * MB) == {"length": 3, "arguments": {"kind": "x"}}
    with pytest.raises(isolation.IsolatedFailure) as failed:
        isolation.run_isolated("tests.isolation_targets:fail", b"", {}, timeout=60, memory_bytes=512 * MB)
    assert (failed.value.type_name, failed.value.message) == ("ValueError", "bad input")


def test_a_target_that_prints_does_not_corrupt_the_reply():
    assert isolation.run_isolated("tests.isolation_targets:chatty", b"", {}, timeout=60,
                                  memory_bytes=512 * MB) == "quiet result"


def test_a_hanging_child_is_killed_at_the_wall_clock_limit():
    with pytest.raises(isolation.IsolationTimeout):
        isolation.run_isolated("tests.isolation_targets:hang", b"", {}, timeout=2, memory_bytes=512 * MB)


def test_a_child_allocating_past_the_memory_limit_is_stopped():
    with pytest.raises(isolation.IsolationOutOfMemory):
        isolation.run_isolated("tests.isolation_targets:allocate", b"", {}, timeout=60, memory_bytes=256 * MB)


def test_a_crashing_child_is_reported_not_raised_through():
    with pytest.raises(isolation.IsolationCrashed):
        isolation.run_isolated("tests.isolation_targets:crash", b"", {}, timeout=60, memory_bytes=512 * MB)


def test_the_fork_server_outlives_a_killed_child_and_is_replaced_when_it_dies():
    with pytest.raises(isolation.IsolationTimeout):
        isolation.run_isolated("tests.isolation_targets:hang", b"", {}, timeout=1, memory_bytes=512 * MB)
    server = isolation._server
    assert server is not None and server.poll() is None  # only the child was killed
    assert isolation.run_isolated("tests.isolation_targets:echo", b"ab", {}, timeout=60,
                                  memory_bytes=512 * MB)["length"] == 2
    assert isolation._server is server
    server.kill()
    server.wait()
    assert isolation.run_isolated("tests.isolation_targets:echo", b"abc", {}, timeout=60,
                                  memory_bytes=512 * MB)["length"] == 3
    assert isolation._server is not server


def test_a_forked_copy_of_the_caller_starts_its_own_server():
    assert extract_text(b"hello", "text/plain", limits=SMALL).text == "hello"
    parent_server = isolation._server
    pid = os.fork()
    if pid == 0:  # the copy: its own server, never the parent's pipes
        code = 1
        try:
            read = extract_text(b"child text", "text/plain", limits=SMALL).text == "child text"
            code = 0 if read and isolation._server is not parent_server else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert isolation._server is parent_server and parent_server is not None and parent_server.poll() is None
    assert extract_text(b"again", "text/plain", limits=SMALL).text == "again"


def test_a_file_is_read_in_a_child_not_in_this_process():
    isolation.stop_server()
    extract_text(docx_bytes([("p", "hello")]), DOCX, limits=SMALL)
    assert isolation._server is not None and isolation._server.poll() is None


def test_the_child_gets_no_secrets_from_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret")
    environment = isolation.child_environment()
    assert "AWS_SECRET_ACCESS_KEY" not in environment and "SLACK_BOT_TOKEN" not in environment
    assert "PYTHONPATH" in environment


def test_a_file_whose_reading_hangs_is_refused_with_the_time_limit(monkeypatch):
    monkeypatch.setattr(extract, "_CHILD_TARGET", "tests.isolation_targets:hang")
    with pytest.raises(LimitExceeded) as refused:
        extract_text(xlsx_bytes({"S": [["a"]]}), XLSX, filename="report.xlsx",
                     limits=ExtractionLimits(EXTRACT_TIMEOUT_SECONDS=2))
    assert str(refused.value) == "report.xlsx took longer than 2 s to read"
    assert failure_reason(refused.value) == "it took longer than 2 s to read"


def test_a_file_whose_reading_allocates_too_much_is_refused_with_the_memory_limit(monkeypatch):
    monkeypatch.setattr(extract, "_CHILD_TARGET", "tests.isolation_targets:allocate")
    with pytest.raises(LimitExceeded) as refused:
        extract_text(docx_bytes([("p", "x")]), DOCX, filename="report.docx",
                     limits=ExtractionLimits(EXTRACT_MEMORY_MB=256, EXTRACT_TIMEOUT_SECONDS=60))
    assert str(refused.value) == "report.docx needs more than 256 MB of memory to read"


def test_a_crash_while_reading_is_an_extraction_error(monkeypatch):
    monkeypatch.setattr(extract, "_CHILD_TARGET", "tests.isolation_targets:crash")
    with pytest.raises(ExtractionError, match="the PDF reader crashed"):
        extract_text(minimal_pdf([["x"]]), PDF, limits=SMALL)


# -- configuration ----------------------------------------------------------------------------------

def test_limits_come_from_the_environment_and_a_bad_value_names_its_variable():
    limits = ExtractionLimits.from_environment({"EXTRACT_MAX_EXPANDED_MB": "10", "EXTRACT_TIMEOUT_SECONDS": " ",
                                                "EXTRACT_MAX_ROWS": "7"})
    assert (limits.EXTRACT_MAX_EXPANDED_MB, limits.EXTRACT_TIMEOUT_SECONDS, limits.EXTRACT_MAX_ROWS) == (10, 20, 7)
    with pytest.raises(ConfigurationError, match="EXTRACT_MEMORY_MB"):
        ExtractionLimits.from_environment({"EXTRACT_MEMORY_MB": "lots"})


# -- text formats -----------------------------------------------------------------------------------

def test_a_markdown_line_built_to_backtrack_is_read_at_once():
    """'# a' + 5,000 spaces + 'x' made the former heading pattern backtrack for minutes."""
    line = "# a" + " " * 5_000 + "x"
    document = extract_text(f"{line}\n\nbody text\n".encode(), "text/markdown", limits=SMALL)
    assert document.title == line[2:] and "body text" in document.text


def test_markdown_closing_hashes_follow_commonmark():
    document = extract_text(b"## Setup ##\nsteps\n\n## C#\nlanguage\n", "text/markdown", limits=SMALL)
    assert [section.heading for section in document.sections] == ["Setup", "C#"]


def test_text_formats_are_read_in_the_child_too(monkeypatch):
    monkeypatch.setattr(extract, "_CHILD_TARGET", "tests.isolation_targets:hang")
    with pytest.raises(LimitExceeded, match=r"^notes\.md took longer than 1 s to read$"):
        extract_text(b"# Notes\n", "text/markdown", filename="notes.md",
                     limits=ExtractionLimits(EXTRACT_TIMEOUT_SECONDS=1))


@pytest.mark.parametrize(("kind", "part"), [(XLSX, "xl/worksheets/sheet1.xml"), (DOCX, "word/document.xml")])
def test_a_billion_laughs_entity_bomb_is_refused(kind, part):
    base = xlsx_bytes({"S": [["x"]]}) if kind == XLSX else docx_bytes([("p", "x")])
    laughs = b'<!DOCTYPE lolz [<!ENTITY lol0 "lollollollollollollollollollol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (n, b"&lol%d;" % (n - 1) * 10) for n in range(1, 10)) + b"]>"
    xml = _member(base, part)
    declaration_end = xml.index(b"?>") + 2 if xml.startswith(b"<?xml") else 0
    xml = xml[:declaration_end] + laughs + xml[declaration_end:]
    xml = xml.replace(b"<t>x</t>", b"<t>&lol9;</t>").replace(b"<w:t>x</w:t>", b"<w:t>&lol9;</w:t>")
    assert b"&lol9;" in xml
    with pytest.raises(ExtractionError):
        extract_text(_rezip(base, replace={part: xml}), kind, filename="laughs", limits=SMALL)


def test_a_large_file_and_a_large_text_cross_the_pipes_whole():
    content = ("0123456789 abcdefghij\n" * 400_000).encode()  # 8.8 MB in, 5,000,000 characters back
    document = extract_text(content, "text/plain", limits=SMALL)
    assert len(document.text) == 5_000_000 and document.truncated
    assert document.text.startswith("0123456789 abcdefghij\n0123456789")
