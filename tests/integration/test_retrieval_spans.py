"""Retrieval as a span (insightmesh.knowledge.retrieval): k, hits, scores and document ids; the
question only with content capture on, redacted. An embedded Qdrant, moto tables, offline embeddings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from insightmesh import tracing
from insightmesh.knowledge.base import ANYONE, SourceDocument, Viewer
from insightmesh.knowledge.pipeline import ingest_documents
from insightmesh.knowledge.retrieval import retrieve
from tests.tracing_fixtures import all_text, attributes, spans_named, traced_fixture  # noqa: F401


def doc(name: str, text: str) -> SourceDocument:
    return SourceDocument(document_id=f"local:/kb/{name}", source="local:/kb", title=name.title(),
                          mime_type="text/plain", content=text.encode(), url=f"https://docs.example.com/{name}",
                          modified_time=datetime(2026, 11, 1, tzinfo=UTC), acl=(ANYONE,))


@pytest.fixture
def indexed(knowledge: dict[str, str]) -> None:
    ingest_documents([doc("cafeteria", "The cafeteria opens at noon on weekdays."),
                      doc("parking", "Parking permits are issued by the facilities team."),
                      doc("expenses", "Expenses are approved by your manager within a week.")])


def test_a_search_is_a_span_with_k_hits_scores_and_document_ids_but_not_the_question(
        indexed: None, traced: InMemorySpanExporter) -> None:
    passages = retrieve("When does the cafeteria open?", Viewer("someone@example.com"), k=3)

    [span] = spans_named(traced, "retrieve knowledge")
    found = attributes(span)
    assert found["insightmesh.retrieval.k"] == 3
    assert found["insightmesh.retrieval.hits"] == len(passages) >= 1
    assert list(found["insightmesh.retrieval.document_ids"]) == [passage.document_id for passage in passages]
    assert found["insightmesh.retrieval.document_ids"][0] == "local:/kb/cafeteria"
    assert list(found["insightmesh.retrieval.scores"]) == pytest.approx([passage.score for passage in passages])
    assert "insightmesh.retrieval.query" not in found and "cafeteria open" not in all_text(traced)


def test_the_question_is_on_the_span_redacted_with_content_capture(
        indexed: None, traced: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracing.CAPTURE_CONTENT_VARIABLE, "true")

    passages = retrieve("  parking permits for jane.doe@example.com?", Viewer("someone@example.com"), k=100)

    [span] = spans_named(traced, "retrieve knowledge")
    assert attributes(span)["insightmesh.retrieval.query"] == "parking permits for j***@example.com?"
    assert attributes(span)["insightmesh.retrieval.k"] == 50  # the cap
    assert passages[0].document_id == "local:/kb/parking"


def test_an_empty_question_is_a_span_with_no_hits(indexed: None, traced: InMemorySpanExporter) -> None:
    assert retrieve("   ", Viewer("someone@example.com")) == []

    [span] = spans_named(traced, "retrieve knowledge")
    assert attributes(span)["insightmesh.retrieval.hits"] == 0
    assert list(attributes(span)["insightmesh.retrieval.scores"]) == []
