"""Documents shared with directory groups by name (``group:sales``), the admin listing of the
knowledge base (``GET /api/knowledge/documents``) and the audit of ingests — moto tables from the
template, an embedded Qdrant in a temporary folder, offline embeddings."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from insightmesh.knowledge.base import ANYONE, Audience, IngestReport
from tests.integration.conftest import DYNAMO_CALLS, build_http_event, load_handler

SOURCE = "local:/srv/sales"
SALES_FACT = "The Q3 pipeline target for the sales team is twelve million euros."




def people() -> None:
    """Alice is in the admin-made group ``sales``; Bob is not; Carol is in the Google group."""
    from insightmesh.directory.models import Group, Membership, User

    Group("sales", description="made by an admin").save()
    Group("gw-eng", email="eng@corp.example", source="google", external_id="g-eng").save()
    for user_id, email, groups in (("U-ALICE", "alice@corp.example", ["sales", "all_users"]),
                                   ("U-BOB", "bob@corp.example", ["all_users"]),
                                   ("U-CAROL", "carol@corp.example", ["gw-eng", "sales"])):
        User(user_id, email=email, display_name=user_id).save()
        for group in groups:
            Membership(group, user_id).save()


def upload(*names_and_acls: tuple[str, list[str]], requested_by: str | None = "cli:alice",
           sweep: bool = False) -> dict[str, Any]:
    from insightmesh.knowledge import uploads

    event: dict[str, Any] = {"source": SOURCE, "sweep": sweep, "documents": [
        {"document_id": f"local:{name}", "title": name, "filename": name, "acl": acl,
         "content_base64": base64.b64encode(f"# {name}\n\n{SALES_FACT}\n".encode()).decode()}
        for name, acl in names_and_acls]}
    if requested_by:
        event["requested_by"] = requested_by
    return dict(uploads.handle(event, SimpleNamespace(aws_request_id="req-upload-1")))


def audit(target: str) -> list[Any]:
    from insightmesh.audit.log import AuditEntry

    return list(AuditEntry.query(target, scan_index_forward=True))


# -- who sees a group:<name> document ------------------------------------------------------------------


def test_a_document_shared_with_a_group_by_name_reaches_its_members_only(knowledge):
    from insightmesh.knowledge.retrieval import retrieve, viewer_for_user, viewers_for_users

    people()
    result = upload(("pipeline.md", ["group:Sales"]))
    assert result["new"] == 1 and result["failed"] == 0, result

    alice, bob, carol = (viewer_for_user(user) for user in ("U-ALICE", "U-BOB", "U-CAROL"))
    assert "group:sales" in alice.principals() and "group:sales" not in bob.principals()
    assert {"group:gw-eng", "group:eng@corp.example"} <= set(carol.principals())  # by name and by e-mail
    question = "what is the pipeline target for the sales team?"
    assert [p.title for p in retrieve(question, alice)] == ["pipeline.md"]
    assert retrieve(question, bob) == []

    # A shared conversation: every reader must be a viewer (the rule of every answer).
    viewers = viewers_for_users(["U-ALICE", "U-BOB", "U-CAROL"])
    assert retrieve(question, Audience((viewers["U-ALICE"], viewers["U-CAROL"]), "members"))
    assert retrieve(question, Audience((viewers["U-ALICE"], viewers["U-BOB"]), "members")) == []


def test_an_upload_naming_a_group_that_does_not_exist_is_rejected_and_audited(knowledge):
    people()
    result = upload(("typo.md", ["group:sles"]), ("ok.md", ["group:sales", "user:Bob@Corp.Example"]))
    assert result["new"] == 1 and result["failed"] == 1
    assert "no directory group named 'sles'" in result["errors"]["local:typo.md"]

    [entry] = audit(f"knowledge:{SOURCE}")
    assert (entry.action, entry.actor, entry.actor_id, entry.request_id) == (
        "knowledge.ingest", "cli:alice", "cli:alice", "req-upload-1")
    documents = {item["document_id"]: item for item in entry.after["documents"]}
    assert documents["local:ok.md"]["outcome"] == "new"
    assert documents["local:ok.md"]["acl"] == ["group:sales", "user:b***@corp.example"]  # e-mails redacted
    assert documents["local:typo.md"] == {"document_id": "local:typo.md", "title": "typo.md",
                                          "outcome": "rejected", "acl": ["group:sles"]}
    assert entry.after["counts"]["failed"] == 1

    upload(("ok.md", ["group:sales", "user:bob@corp.example"]), requested_by=None)  # unchanged: audited too
    again = audit(f"knowledge:{SOURCE}")[-1]
    assert again.actor == "unknown" and again.after["documents"][0]["outcome"] == "unchanged"


def test_the_drive_job_audits_only_pages_that_changed_something(knowledge):
    from insightmesh.knowledge.base import DocumentOutcome
    from insightmesh.knowledge.sources.gdrive.job import Knowledge

    unchanged = IngestReport(seen=1, unchanged=1, outcomes=[DocumentOutcome("gdrive:a", "A", "unchanged", (ANYONE,))])
    Knowledge().audit(unchanged, source="gdrive:folder1", job_id="job-1", run_id="run-1")
    assert audit("knowledge:gdrive:folder1") == []
    changed = IngestReport(seen=2, new=1, unchanged=1, outcomes=[
        *unchanged.outcomes, DocumentOutcome("gdrive:b", "B", "new", ("group:gw-eng", "group:eng@corp.example"))])
    Knowledge().audit(changed, source="gdrive:folder1", job_id="job-1", run_id="run-1")
    [entry] = audit("knowledge:gdrive:folder1")
    assert (entry.actor, entry.request_id) == ("job:job-1", "run-1")
    assert entry.after["documents"] == [{"document_id": "gdrive:b", "title": "B", "outcome": "new",
                                         "acl": ["group:gw-eng", "group:e***@corp.example"]}]


def test_a_drive_group_permission_maps_to_the_directory_group_too(knowledge):
    from insightmesh.knowledge.sources.gdrive.acl import acl_principals
    from insightmesh.knowledge.sources.gdrive.job import Knowledge

    people()
    groups = Knowledge().directory_groups()
    assert groups == {"eng@corp.example": "gw-eng"}  # admin-made groups have no e-mail
    permissions = [{"type": "group", "emailAddress": "Eng@Corp.Example"},
                   {"type": "group", "emailAddress": "other@corp.example"},
                   {"type": "user", "emailAddress": "eng@corp.example"}]
    assert acl_principals(permissions, (), groups) == (
        "group:eng@corp.example", "group:gw-eng", "group:other@corp.example", "user:eng@corp.example")
    assert acl_principals(permissions) == (
        "group:eng@corp.example", "group:other@corp.example", "user:eng@corp.example")


# -- the admin listing ---------------------------------------------------------------------------------


def records() -> None:
    from insightmesh.knowledge.models import FAILED, INDEXED, KnowledgeDocument

    when = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    for number in range(5):
        KnowledgeDocument(f"local:doc{number}", source=SOURCE, title=f"Doc {number}", status=INDEXED,
                          chunk_count=number + 1, acl=["group:sales"] if number % 2 == 0 else [ANYONE],
                          modified_time=when).save()
    KnowledgeDocument("gdrive:broken", source="gdrive:folder1", title="Broken.pdf", status=FAILED,
                      error="ExtractionError: not a PDF", acl=["group:sales", "domain:corp.example"]).save()
    KnowledgeDocument("gdrive:fine", source="gdrive:folder1", title="Fine", status=INDEXED, chunk_count=3,
                      acl=["domain:corp.example"]).save()


def every_page(limit: int = 3, **filters: Any) -> tuple[list[str], list[list[str]]]:
    """Every page of a listing, checking the calls each page costs."""
    from insightmesh.knowledge.listing import list_documents

    arguments: dict[str, Any] = {"source": None, "status": None, "acl": None, **filters}
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        found: list[Any] = []
        calls = DYNAMO_CALLS.during(
            lambda cursor=cursor, found=found: found.append(list_documents(limit=limit, cursor=cursor, **arguments)))
        assert all(call.startswith("Query:") for call in calls), calls  # never a Scan, never a GetItem loop
        assert len(calls) <= 2
        page = found[0]
        pages.append([item.document_id for item in page.items])
        if page.next_cursor is None:
            return [document for items in pages for document in items], pages
        cursor = page.next_cursor


def test_the_listing_queries_an_index_for_every_filter(knowledge):
    records()
    everything, pages = every_page()
    assert everything == ["gdrive:broken", "gdrive:fine", *(f"local:doc{n}" for n in range(5))]  # failed first
    assert all(len(page) <= 3 for page in pages)
    assert every_page(source=SOURCE)[0] == [f"local:doc{n}" for n in range(5)]
    assert every_page(status="failed")[0] == ["gdrive:broken"]
    assert every_page(acl="GROUP:Sales")[0] == ["gdrive:broken", "local:doc0", "local:doc2", "local:doc4"]
    assert every_page(source="gdrive:folder1", status="indexed")[0] == ["gdrive:fine"]
    assert every_page(source="gdrive:folder1", acl="domain:corp.example")[0] == ["gdrive:broken", "gdrive:fine"]
    assert every_page(acl="user:nobody@corp.example")[0] == []


def test_a_listing_cursor_is_bound_to_its_filters(knowledge):
    from insightmesh.api.errors import ValidationFailedError
    from insightmesh.knowledge.listing import list_documents

    records()
    first = list_documents(source=None, status=None, acl=None, limit=2, cursor=None)
    assert first.next_cursor is not None
    with pytest.raises(ValidationFailedError):
        list_documents(source=None, status="indexed", acl=None, limit=2, cursor=first.next_cursor)
    with pytest.raises(ValidationFailedError, match="not a principal"):
        list_documents(source=None, status=None, acl="sales", limit=2, cursor=None)


# -- GET /api/knowledge/documents over HTTP -------------------------------------------------------------

ADMIN, MEMBER = "U-ADMIN", "U-MEMBER"


@pytest.fixture
def api(knowledge) -> Iterator[tuple[ModuleType, dict[str, str]]]:
    from insightmesh.auth.settings import get_auth_settings
    from insightmesh.auth.tokens import create_token
    from insightmesh.directory.models import User

    get_auth_settings.cache_clear()
    User(ADMIN, email="admin@corp.example", is_admin=True).save()
    User(MEMBER, email="member@corp.example").save()
    tokens = {role: create_token(user, name=role, scopes=["admin:read"])[0]
              for role, user in (("admin", ADMIN), ("member", MEMBER))}
    yield load_handler(), tokens
    get_auth_settings.cache_clear()


def call(handler: ModuleType, token: str, query: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    import json

    response = handler.lambda_handler(build_http_event("GET", "/api/knowledge/documents", token=token, query=query),
                                      SimpleNamespace(function_name="admin_api", aws_request_id="r1"))
    return response["statusCode"], json.loads(response["body"])


def test_admins_list_documents_over_http_and_others_are_refused(api):
    handler, tokens = api
    records()
    status, body = call(handler, tokens["admin"], {"status": "failed"})
    assert status == 200, body
    assert body["items"] == [{"document_id": "gdrive:broken", "title": "Broken.pdf", "source": "gdrive:folder1",
                              "url": None, "mime_type": "", "acl": ["group:sales", "domain:corp.example"],
                              "status": "failed", "chunks": 0, "modified": None,
                              "updated_at": body["items"][0]["updated_at"],
                              "last_error": "ExtractionError: not a PDF"}]
    assert call(handler, tokens["admin"], {"acl": "not a principal"})[0] == 422
    assert call(handler, tokens["admin"], {"status": "gone"})[0] == 422
    assert call(handler, tokens["admin"], {"source": "local:/" + "é" * 600})[0] == 422  # past a key's 2,048 bytes
    assert call(handler, tokens["admin"], {"source": "local:/" + "é" * 500})[0] == 200
    assert call(handler, tokens["member"])[0] == 403

    from insightmesh.audit.log import AuditEntry

    denied = list(AuditEntry.query("knowledge:*"))
    assert [(entry.action, entry.outcome, entry.actor_id) for entry in denied] == [
        ("knowledge.read", "denied", MEMBER)]


# -- the Drive job: a Google group's permission names the mirrored directory group ---------------------


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """The Drive API stand-in (``GOOGLE_DRIVE_API_URL``) and an access token from the OAuth stand-in."""
    from tests.integration.test_gdrive_ingest import CLIENT_ID, CLIENT_SECRET, OWNER, REDIRECT_URI, issue_access_token
    from tests.standins.google_drive_server import GoogleDriveServer
    from tests.standins.google_oauth_server import GoogleOAuthServer

    oauth = GoogleOAuthServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris={REDIRECT_URI}).start()
    server = GoogleDriveServer(port=0, tokens=(), validator=oauth.is_valid_access_token, default_owner=OWNER).start()
    monkeypatch.setenv("GOOGLE_DRIVE_API_URL", server.url)
    try:
        yield server, issue_access_token(oauth)
    finally:
        server.stop()
        oauth.stop()


def test_the_drive_job_shares_a_google_groups_file_with_the_directory_group_and_audits_it(knowledge, google):
    from insightmesh.knowledge.models import KnowledgeDocument
    from insightmesh.knowledge.retrieval import retrieve, viewer_for_user
    from tests.integration.test_gdrive_ingest import Context, Tokens, drive_job, params
    from tests.job_context import run

    drive, token = google
    people()  # gw-eng mirrors eng@corp.example; Carol is in it
    folder = drive.add_folder("Engineering", permissions=["group:eng@corp.example"])
    runbook = drive.add_file("Runbook.md", parent=folder, mime_type="text/markdown",
                             content="# Runbook\n\nRestart the ingestion cluster with the blue lever.\n")
    first = run(drive_job(Tokens(token)), Context(params(folder_id=folder)))
    assert first.summary["new"] == 1
    record = KnowledgeDocument.get(f"gdrive:{runbook}")
    assert "group:gw-eng" in record.acl and "group:eng@corp.example" in record.acl
    assert [p.title for p in retrieve("blue lever restart", viewer_for_user("U-CAROL"))] == ["Runbook.md"]
    assert retrieve("blue lever restart", viewer_for_user("U-ALICE")) == []

    [entry] = audit(f"knowledge:gdrive:{folder}")
    assert (entry.action, entry.actor) == ("knowledge.ingest", "job:job-drive")
    assert [(item["title"], item["outcome"]) for item in entry.after["documents"]] == [("Runbook.md", "new")]
    assert "group:gw-eng" in entry.after["documents"][0]["acl"]

    again = run(drive_job(Tokens(token)), Context(params(folder_id=folder)))
    assert again.summary["unchanged"] == 1
    assert len(audit(f"knowledge:gdrive:{folder}")) == 1  # nothing changed: nothing audited


def test_an_ingest_entry_stays_bounded_however_many_documents_and_readers(knowledge):
    from insightmesh.knowledge.base import DocumentOutcome
    from insightmesh.knowledge.ingest_audit import IngestActor, record_ingest

    readers = tuple(f"user:reader{n}@corp.example" for n in range(60))
    report = IngestReport(seen=150, new=150, outcomes=[DocumentOutcome(f"gdrive:f{n}", "T" * 500, "new", readers)
                                                       for n in range(150)])
    assert record_ingest(actor=IngestActor("job:j", "job:j"), source="gdrive:big", report=report, request_id="r")
    [entry] = audit("knowledge:gdrive:big")
    assert len(entry.after["documents"]) == 100 and entry.after["documents_not_listed"] == 50
    first = entry.after["documents"][0]
    assert len(first["acl"]) == 20 and first["acl_not_listed"] == 40 and len(first["title"]) == 200
