"""A poisoned file fails only its own document: the pipeline records the limit's reason as that
document's failure and indexes the others (moto tables, embedded Qdrant, as in test_knowledge)."""

from __future__ import annotations

import io
import zipfile

from insightmesh.knowledge.extract import DOCX, XLSX, extraction_limits
from insightmesh.knowledge.models import FAILED, INDEXED, KnowledgeDocument
from insightmesh.knowledge.pipeline import ingest_documents
from tests.integration.test_knowledge import SOURCE, doc
from tests.knowledge_fixtures import docx_bytes, xlsx_bytes


def _bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx_bytes([("p", "hello")]))) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        target.writestr("word/media/huge.bin", b"\0" * (8 * 1024 * 1024))
    return out.getvalue()


def test_a_file_past_a_limit_is_that_documents_failure_and_the_others_are_indexed(knowledge, monkeypatch):
    monkeypatch.setenv("EXTRACT_MAX_EXPANDED_MB", "5")
    extraction_limits.cache_clear()
    try:
        bomb = doc("report.docx", "", title="report.docx", mime_type=DOCX, content=_bomb())
        sheet = doc("budget.xlsx", "", mime_type=XLSX, content=xlsx_bytes({"Budget": [["Travel", 1200]]}))
        note = doc("note", "Expense reports are due on the fifth of each month.")
        report = ingest_documents([bomb, sheet, note], sweep_source=SOURCE)
    finally:
        monkeypatch.delenv("EXTRACT_MAX_EXPANDED_MB")
        extraction_limits.cache_clear()
    assert (report.seen, report.new, report.failed) == (3, 2, 1), report.errors
    assert "report.docx expands to more than 5 MB" in report.errors[bomb.document_id]
    record = KnowledgeDocument.get(bomb.document_id)
    assert record.status == FAILED and "expands to more than 5 MB" in record.error
    assert KnowledgeDocument.get(sheet.document_id).status == INDEXED
