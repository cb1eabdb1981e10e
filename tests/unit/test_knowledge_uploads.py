"""knowledge_ingest's upload handling: what reaches the pipeline, what is refused and why, and the
sweep rules — with the pipeline replaced by a recorder (no store, no AWS)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from insightmesh.knowledge import pipeline as pipeline_module
from insightmesh.knowledge import uploads
from insightmesh.knowledge.base import IngestReport, SourceDocument

EVENTS = Path(__file__).parents[2] / "events" / "knowledge_ingest"
SOURCE = "local:/home/dev/handbook"


def doc(name: str = "policy.md", content: bytes = b"# Policy\n\nText.\n", **overrides):
    entry = {"document_id": f"local:{name}-id", "title": name, "filename": name,
             "content_base64": base64.b64encode(content).decode(), "url": f"file:///home/dev/handbook/{name}",
             "modified_time": "2026-11-27T10:00:00+00:00", "acl": ["anyone"]}
    entry.update(overrides)
    return {key: value for key, value in entry.items() if value is not None}


class Pipeline:
    """Records the calls and answers like ingest_documents: every document new."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[dict] = []
        self.stop_after = stop_after

    def __call__(self, documents, *, sweep_source=None, should_stop=None, progress=None) -> IngestReport:
        documents = list(documents)
        report = IngestReport()
        for index in range(len(documents)):
            if should_stop is not None and should_stop():
                break
            report.seen += 1
            report.new += 1
            report.chunks_written += 2
            if self.stop_after is not None and index + 1 >= self.stop_after:
                self.clock.remaining = 0  # the next should_stop() says yes
        self.calls.append({"documents": documents, "sweep_source": sweep_source})
        return report


@pytest.fixture(autouse=True)
def audited(monkeypatch):
    """The audit entries the uploads would write (the log itself is tested with moto)."""
    entries: list[dict] = []
    monkeypatch.setattr(uploads, "record_ingest", lambda **entry: entries.append(entry) or True)
    return entries


@pytest.fixture
def pipeline(monkeypatch):
    recorder = Pipeline()
    monkeypatch.setattr(pipeline_module, "ingest_documents", recorder)
    return recorder


@pytest.fixture
def swept(monkeypatch):
    calls: list[tuple[str, set[str]]] = []

    def fake_sweep(source: str, keep: set[str]) -> int:
        calls.append((source, keep))
        return 3

    monkeypatch.setattr(uploads, "_sweep", fake_sweep)
    return calls


def test_documents_become_source_documents(pipeline):
    result = uploads.handle({"source": SOURCE, "documents": [
        doc("policy.md", b"# Policy\n"),
        doc("notes.txt", b"plain", mime_type=None, acl=["Anyone", "USER:Alice@Example.com", "anyone"],
            modified_time="2026-01-02T03:04:05"),
    ]})
    [call] = pipeline.calls
    policy, notes = call["documents"]
    assert isinstance(policy, SourceDocument) and call["sweep_source"] is None
    assert (policy.document_id, policy.source, policy.title, policy.mime_type, policy.content) == (
        "local:policy.md-id", SOURCE, "policy.md", "text/markdown", b"# Policy\n")
    assert policy.url == "file:///home/dev/handbook/policy.md"
    assert policy.modified_time == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert notes.mime_type == "text/plain"  # guessed from the file name
    assert notes.acl == ("anyone", "user:alice@example.com")
    assert notes.modified_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # naive means UTC
    assert result == {"seen": 2, "new": 2, "changed": 0, "unchanged": 0, "failed": 0, "removed": 0,
                      "chunks_written": 4, "errors": {}}


def test_the_sample_event_is_valid(pipeline):
    event = json.loads((EVENTS / "ingest_markdown.json").read_text())
    result = uploads.handle(event)
    assert result["new"] == 1 and result["failed"] == 0
    [document] = pipeline.calls[0]["documents"]
    assert document.mime_type == "text/markdown" and document.content.startswith(b"# Expense policy")


@pytest.mark.parametrize(("entry", "reason"), [
    ({"document_id": "local:x", "filename": "x.md", "content_base64": ""}, "title: missing"),
    (doc(content_base64="not base64!"), "not valid base64"),
    (doc("diagram.png"), "unsupported file type"),
    (doc("archive.bin", mime_type="application/zip"), "unsupported file type application/zip"),
    (doc("big.txt", b"x" * (uploads.MAX_DOCUMENT_BYTES + 1)), "larger than 5 MB"),
    (doc(acl=["everyone"]), "not a principal"),
    (doc(acl=[]), "acl"),
    (doc(document_id="gdrive:abc"), "document_id"),
    (doc(url="javascript:alert(1)"), "file://, https:// or http://"),
    (doc(modified_time="yesterday"), "modified_time"),
    (doc(colour="blue"), "colour: Extra inputs are not permitted"),
])
def test_a_bad_document_is_rejected_with_its_reason_and_the_rest_is_ingested(pipeline, entry, reason):
    result = uploads.handle({"source": SOURCE, "documents": [entry, doc("fine.md")]})
    [call] = pipeline.calls
    assert [document.title for document in call["documents"]] == ["fine.md"]
    assert result["failed"] == 1 and result["new"] == 1 and result["seen"] == 2
    [(key, message)] = result["errors"].items()
    assert key == (entry.get("document_id") or "documents[0]")
    assert reason in message


def test_a_non_object_document_and_duplicates_are_rejected(pipeline):
    result = uploads.handle({"source": SOURCE, "documents": ["text", doc("a.md"), doc("a.md")]})
    assert result["errors"] == {"documents[0]": "a document must be an object",
                                "local:a.md-id": "duplicate document_id in this upload"}
    assert len(pipeline.calls[0]["documents"]) == 1


@pytest.mark.parametrize(("event", "reason"), [
    ([], "expected an object"),
    ({"documents": []}, "source: missing"),
    ({"source": SOURCE, "documents": "a.md"}, "documents"),
    ({"source": "gdrive:folder", "documents": []}, "source"),
    ({"source": SOURCE, "documents": [], "sweep": True, "extra": 1}, "extra: Extra inputs are not permitted"),
    ({"source": SOURCE, "documents": [], "keep_document_ids": ["local:a"]}, "keep_document_ids goes with"),
])
def test_an_event_of_the_wrong_shape_fails_the_invocation(pipeline, event, reason):
    with pytest.raises(ValueError, match="not a knowledge_ingest event") as error:
        uploads.handle(event)
    assert reason in str(error.value)
    assert not pipeline.calls


def test_a_sweep_without_keep_list_is_the_pipelines_own(pipeline):
    uploads.handle({"source": SOURCE, "documents": [doc("a.md")], "sweep": True})
    assert pipeline.calls[0]["sweep_source"] == SOURCE


def test_a_rejected_document_prevents_the_sweep_that_would_remove_it(pipeline):
    result = uploads.handle({"source": SOURCE, "documents": [doc("a.md"), doc("b.md", content_base64="%%")],
                             "sweep": True})
    assert pipeline.calls[0]["sweep_source"] is None
    assert result["removed"] == 0
    assert "not swept" in result["errors"][SOURCE]


def test_a_keep_list_sweeps_the_rest_of_the_source_after_the_batch(pipeline, swept):
    result = uploads.handle({"source": SOURCE, "documents": [doc("c.md"), doc("bad.md", content_base64="%%")],
                             "sweep": True, "keep_document_ids": ["local:a.md-id", "local:bad.md-id"]})
    assert pipeline.calls[0]["sweep_source"] is None  # the pipeline only ingests
    assert swept == [(SOURCE, {"local:a.md-id", "local:bad.md-id", "local:c.md-id"})]
    assert result["removed"] == 3 and result["failed"] == 1 and SOURCE not in result["errors"]


def test_the_sweep_removes_what_the_source_has_beyond_the_keep_list(monkeypatch):
    queried, removed = [], []
    records = [SimpleNamespace(document_id=f"local:{name}") for name in ("a", "b", "c")]
    monkeypatch.setattr(uploads.KnowledgeDocument.by_source, "query",
                        lambda source, **kwargs: queried.append(source) or iter(records))
    monkeypatch.setattr(pipeline_module, "remove_documents", lambda ids: removed.extend(ids) or len(removed))
    assert uploads._sweep(SOURCE, {"local:a", "local:z"}) == 2
    assert queried == [SOURCE] and removed == ["local:b", "local:c"]


class Clock:
    def __init__(self, remaining: int) -> None:
        self.remaining = remaining

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining


def test_running_out_of_time_reports_the_rest_and_sweeps_nothing(monkeypatch, swept):
    recorder = Pipeline(stop_after=1)
    recorder.clock = Clock(300_000)
    monkeypatch.setattr(pipeline_module, "ingest_documents", recorder)
    result = uploads.handle({"source": SOURCE, "documents": [doc("a.md"), doc("b.md"), doc("c.md")],
                             "sweep": True, "keep_document_ids": []}, recorder.clock)
    assert result["new"] == 1 and result["failed"] == 2 and result["seen"] == 3
    assert "ran out of time" in result["errors"]["local:b.md-id"]
    assert "not swept" in result["errors"][SOURCE]
    assert swept == []


def test_acl_principals_are_normalised_or_refused():
    assert uploads.normalise_acl([" Domain:Example.COM ", "group:Sales@example.com"]) == (
        "domain:example.com", "group:sales@example.com")
    with pytest.raises(ValueError, match="user:bob"):
        uploads.normalise_acl(["user:bob"])


def test_a_directory_group_is_named_by_its_name():
    assert uploads.normalise_acl(["group:Sales", "group:sales@example.com"]) == ("group:sales",
                                                                                 "group:sales@example.com")
    for bad in ("group:s", "group:sales team", "group:-sales", "group:"):
        with pytest.raises(ValueError, match="group:<group name>"):
            uploads.normalise_acl([bad])


def test_a_document_shared_with_a_group_that_does_not_exist_is_rejected(pipeline, audited, monkeypatch):
    asked: list[set[str]] = []
    monkeypatch.setattr(uploads, "missing_groups", lambda names: asked.append(set(names)) or {"sles"})
    result = uploads.handle({"source": SOURCE, "requested_by": "cli:alice", "documents": [
        doc("typo.md", acl=["group:sles"]), doc("ok.md", acl=["group:sales", "user:bob@example.com"])]})
    assert asked == [{"sles", "sales"}]
    assert [d.document_id for d in pipeline.calls[0]["documents"]] == ["local:ok.md-id"]
    assert result["failed"] == 1 and "no directory group named 'sles'" in result["errors"]["local:typo.md-id"]
    assert "POST /api/groups" in result["errors"]["local:typo.md-id"]
    [entry] = audited
    assert entry["actor"].label == "cli:alice" and entry["source"] == SOURCE
    assert entry["rejected"] == {"local:typo.md-id": ("typo.md", ("group:sles",))}


def test_an_upload_without_groups_reads_no_group_table(pipeline, audited, monkeypatch):
    monkeypatch.setattr(uploads, "missing_groups", lambda names: pytest.fail("no group to look up"))
    uploads.handle({"source": SOURCE, "documents": [doc("a.md", acl=["group:sales@example.com"])]})
    assert audited[0]["actor"].label == uploads.UNKNOWN_ACTOR


def test_the_function_imports_no_vector_store_client_at_init():
    """Its init stays inside Lambda's 10 s init phase on a slow machine: qdrant_client (seconds of
    imports) is loaded by the first upload, not by the handler module."""
    import subprocess
    import sys

    root = Path(__file__).parents[2]
    heavy = ("qdrant_client", "insightmesh.knowledge.pipeline")
    probe = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import handler; "
             f"print(sorted(name for name in {heavy!r} if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, str(root / "layers" / "common" / "python"),
                           str(root / "functions" / "knowledge_ingest")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
