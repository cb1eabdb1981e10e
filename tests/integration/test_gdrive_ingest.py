"""``gdrive_ingest`` against the Drive API v3 stand-in over loopback HTTP, with real OAuth tokens.

The Drive stand-in (tests/standins/google_drive_server.py) checks every bearer token with the
Google OAuth stand-in's ``is_valid_access_token`` — so the job's tokens are real ones, issued by
the OAuth stand-in's authorization-code flow (or, in one test, refreshed from a credential stored
through ``insightmesh.credentials`` with a moto KMS key). The knowledge base is the real pipeline:
every table of the template in moto, an embedded Qdrant in a temporary folder, offline (sparse)
embeddings; what a person may see is checked with ``retrieve(question, Viewer(...))``. A small
recording :class:`Context` plays the job runner (steps, progress, checkpoints, ``should_stop``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from pydantic import ValidationError

from insightmesh.auth.settings import get_auth_settings
from insightmesh.config import get_settings
from insightmesh.credentials import google as google_oauth
from insightmesh.credentials import service
from insightmesh.credentials.errors import CredentialScopeError
from insightmesh.credentials.models import Credential
from insightmesh.directory.models import User
from insightmesh.google_api import GoogleApiError, GoogleAuthError
from insightmesh.jobs.registry import job_type, job_type_names
from insightmesh.knowledge.base import ANYONE, Viewer
from insightmesh.knowledge.models import INDEXED, KnowledgeDocument
from insightmesh.knowledge.retrieval import retrieve
from insightmesh.knowledge.sources.gdrive.acl import acl_principals
from insightmesh.knowledge.sources.gdrive.drive_api import DRIVE_SCOPE, parents_query
from insightmesh.knowledge.sources.gdrive.job import DriveIngestError, GdriveIngest
from insightmesh.resilience import CircuitBreaker
from tests.job_context import RecordingContext, run
from tests.knowledge_fixtures import docx_bytes, minimal_pdf
from tests.standins.google_drive_server import (
    GOOGLE_DOC,
    GOOGLE_SHEET,
    GOOGLE_SLIDES,
    GoogleDriveServer,
)
from tests.standins.google_oauth_server import GoogleOAuthServer, s256

pytestmark = pytest.mark.timeout(120)

CLIENT_ID, CLIENT_SECRET = "insightmesh-drive-test", "drive-test-client-secret-0123456789"
REDIRECT_URI = "https://api.example.com/api/credentials/google/callback"
OWNER = "owner@corp.example"
STAFF, SALES = "staff@corp.example", "sales@corp.example"


# -- the runner's part -----------------------------------------------------------------------------


class Context(RecordingContext):
    """A recording JobContext (tests/job_context.py) for gdrive_ingest."""

    def __init__(self, parameters: Mapping[str, Any], **options: Any) -> None:
        super().__init__(GdriveIngest, parameters, job_id="job-drive", **options)


# -- tokens ------------------------------------------------------------------------------------------


def issue_access_token(oauth: GoogleOAuthServer, scopes: tuple[str, ...] = (DRIVE_SCOPE,)) -> str:
    """An access token from the OAuth stand-in's authorization-code flow (PKCE), over HTTP."""
    verifier = secrets.token_urlsafe(48)
    consent = httpx.get(oauth.authorize_url, params={
        "client_id": oauth.client_id, "redirect_uri": REDIRECT_URI, "response_type": "code", "scope": " ".join(scopes),
        "state": secrets.token_urlsafe(8), "code_challenge": s256(verifier), "code_challenge_method": "S256"},
        follow_redirects=False, timeout=5)
    assert consent.status_code == 302, consent.text
    code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
    answer = httpx.post(oauth.token_url, data={"grant_type": "authorization_code", "code": code,
                                               "redirect_uri": REDIRECT_URI, "code_verifier": verifier,
                                               "client_id": oauth.client_id, "client_secret": oauth.client_secret},
                        timeout=5)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


class Tokens:
    """A token provider: hands out ``tokens`` in turn (the last one again and again), recording calls."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, credential_id: str, *, required_scopes: Any) -> str:
        self.calls.append((credential_id, tuple(required_scopes)))
        return self.tokens[min(len(self.calls), len(self.tokens)) - 1]


# -- fixtures ---------------------------------------------------------------------------------------




@pytest.fixture
def oauth() -> Iterator[GoogleOAuthServer]:
    server = GoogleOAuthServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris={REDIRECT_URI}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def drive(monkeypatch: pytest.MonkeyPatch, oauth: GoogleOAuthServer) -> Iterator[GoogleDriveServer]:
    server = GoogleDriveServer(port=0, tokens=(), validator=oauth.is_valid_access_token,
                               default_owner=OWNER).start()
    monkeypatch.setenv("GOOGLE_DRIVE_API_URL", server.url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def token(oauth: GoogleOAuthServer) -> str:
    return issue_access_token(oauth)


def drive_job(tokens: Tokens, **extra: Any) -> GdriveIngest:
    # A breaker of its own per test: the process-wide one would carry failures across tests.
    return GdriveIngest(token_provider=tokens, breaker=CircuitBreaker("google-drive-test"), **extra)


def params(**extra: Any) -> dict[str, Any]:
    return {"credential_id": "cred-drive", **extra}


@dataclass
class Tree:
    handbook: str
    policies: str
    security: str
    leave: str
    onboarding: str
    budget: str
    kickoff: str
    notes: str
    travel: str
    passwords: str
    logo: str
    survey: str
    sales_drive: str
    playbooks: str
    discovery: str
    pricing: str

    @property
    def handbook_documents(self) -> set[str]:
        return {f"gdrive:{file_id}" for file_id in (self.leave, self.onboarding, self.budget, self.kickoff, self.notes,
                                                    self.travel, self.passwords)}


def build_tree(drive: GoogleDriveServer) -> Tree:
    """My Drive: Handbook/ (shared with staff@) holding files and Policies/Security/; a Shared Drive
    "Sales" (members: sales@) holding Playbooks/."""
    handbook = drive.add_folder("Handbook", permissions=[f"group:{STAFF}"])
    leave = drive.add_file("Leave policy.md", parent=handbook, mime_type="text/markdown",
                           content="# Leave policy\n\nEvery employee has 27 days of paid parental leave and "
                                   "holiday allowance per year.\n")
    onboarding = drive.add_file("Onboarding", parent=handbook, mime_type=GOOGLE_DOC,
                                content="# Onboarding\n\n## First week\n\nYour buddy walks you through the "
                                        "**espresso machine** ritual on day one.\n")
    budget = drive.add_file("Budget 2026", parent=handbook, mime_type=GOOGLE_SHEET,
                            content=[["team", "quarter", "amount"], ["marketing", "Q1", "120000"],
                                     ["engineering", "Q1", "480000"]])
    kickoff = drive.add_file("Kickoff deck", parent=handbook, mime_type=GOOGLE_SLIDES,
                             content="Kickoff\n\nOur north star metric is weekly active teams.")
    notes = drive.add_file("notes.txt", parent=handbook, mime_type="text/plain",
                           content="The parking garage closes at nine in the evening.")
    logo = drive.add_file("logo.png", parent=handbook, mime_type="image/png", content=b"\x89PNG\r\n\x1a\n....")
    survey = drive.add_file("Survey", parent=handbook, mime_type="application/vnd.google-apps.form", content="")
    policies = drive.add_folder("Policies", parent=handbook, permissions=["user:HR-Lead@Corp.Example"])
    travel = drive.add_file("Travel policy.pdf", parent=policies, mime_type="application/pdf",
                            content=minimal_pdf([["Travel policy", "Book trains for trips under four hours."]]))
    security = drive.add_folder("Security", parent=policies)
    passwords = drive.add_file(
        "Passwords.docx", parent=security, permissions=["user:ciso@corp.example:writer"],
        mime_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        content=docx_bytes([("h1", "Passwords"), ("p", "Rotate the vault master passphrase every ninety days.")]))
    sales_drive = drive.add_shared_drive("Sales", members=[f"group:{SALES}"])
    playbooks = drive.add_folder("Playbooks", parent=sales_drive)
    discovery = drive.add_file("Discovery call.md", parent=playbooks, mime_type="text/markdown",
                               content="# Discovery call\n\nAsk about the champion and the decision criteria.",
                               permissions=["user:partner@agency.example"])
    pricing = drive.add_file("Pricing", parent=playbooks, mime_type=GOOGLE_DOC,
                             content="# Pricing\n\nEnterprise seats cost forty dollars per month.")
    return Tree(handbook, policies, security, leave, onboarding, budget, kickoff, notes, travel, passwords, logo,
                survey, sales_drive, playbooks, discovery, pricing)


def titles(question: str, viewer: Viewer, k: int = 5) -> list[str]:
    return [passage.title for passage in retrieve(question, viewer, k=k)]


def record(file_id: str) -> KnowledgeDocument:
    return KnowledgeDocument.get(f"gdrive:{file_id}", consistent_read=True)


def source_documents(source: str) -> set[str]:
    return {item.document_id for item in KnowledgeDocument.by_source.query(source)}


# -- parameters and vocabulary ------------------------------------------------------------------------


def test_parameters_are_validated_and_the_type_is_registered():
    parameters = GdriveIngest.Parameters
    defaults = parameters.model_validate({"credential_id": "c", "folder_id": "1AbC_d-9"}).model_dump()
    assert defaults == {"credential_id": "c", "folder_id": "1AbC_d-9", "file_id": None, "recursive": True,
                        "include_shared_drives": True, "page_size": 100, "max_file_bytes": 20 * 1024 * 1024,
                        "sweep": True, "redownload": False}
    assert parameters.model_validate({"credential_id": "c", "file_id": "1xyz"}).model_dump()["folder_id"] is None
    for bad in ({"credential_id": "c"}, {"credential_id": "c", "folder_id": "a", "file_id": "b"},
                {"folder_id": "a"}, {"credential_id": "", "folder_id": "a"},
                {"credential_id": "c", "folder_id": "x' in parents or name contains '"},  # nothing injected into q
                {"credential_id": "c", "folder_id": "a", "page_size": 0},
                {"credential_id": "c", "folder_id": "a", "page_size": 1001},
                {"credential_id": "c", "folder_id": "a", "max_file_bytes": 0},
                {"credential_id": "c", "folder_id": "a", "surprise": True}):
        with pytest.raises(ValidationError):
            parameters.model_validate(bad)
    assert "gdrive_ingest" in job_type_names() and job_type("gdrive_ingest") is GdriveIngest
    schema = parameters.model_json_schema()
    assert schema["required"] == ["credential_id"] and schema["additionalProperties"] is False
    assert parents_query("1AbC") == "'1AbC' in parents and trashed = false"
    with pytest.raises(ValueError):
        parents_query("a' or 'b")


def test_drive_permissions_map_to_principals():
    permissions = [
        {"type": "user", "role": "owner", "emailAddress": "Ada@Corp.Example"},
        {"type": "user", "role": "reader", "emailAddress": "gone@corp.example", "deleted": True},
        {"type": "group", "role": "writer", "emailAddress": "Eng@Corp.Example"},
        {"type": "domain", "role": "reader", "domain": "Corp.Example"},
        {"type": "anyone", "role": "reader", "allowFileDiscovery": True},  # public on the web
        {"type": "user", "role": "reader"},  # no address: nothing to match
        {"type": "robot", "role": "reader", "emailAddress": "x@y.example"},
    ]
    assert acl_principals(permissions, [{"emailAddress": "Boss@Corp.Example"}]) == (
        "anyone", "domain:corp.example", "group:eng@corp.example", "user:ada@corp.example", "user:boss@corp.example")
    assert acl_principals([{"type": "user", "emailAddress": "a@b.example", "deleted": True}]) == ()


def test_anyone_with_the_link_is_not_anyone():
    """A link-shared file (allowFileDiscovery false, as Drive sends it, or absent) is for the
    organisation it was shared in and its explicit readers — never for everyone."""
    link = {"type": "anyone", "role": "reader", "allowFileDiscovery": False}
    owners = [{"emailAddress": "Ada@Corp.Example"}]
    assert acl_principals([link, {"type": "user", "emailAddress": "pat@agency.example"}], owners) == (
        "domain:corp.example", "user:ada@corp.example", "user:pat@agency.example")
    assert acl_principals([{"type": "anyone", "role": "reader"}], owners) == ("domain:corp.example",
                                                                             "user:ada@corp.example")
    assert acl_principals([link]) == ()  # no owner known: no one to infer, so skipped_no_readers
    assert ANYONE not in acl_principals([link, {"type": "domain", "domain": "corp.example",
                                                "allowFileDiscovery": False}], owners)


# -- a folder tree, then a Shared Drive folder --------------------------------------------------------


def test_folder_tree_is_ingested_with_exports_permissions_and_counts(knowledge, drive, token):
    tree = build_tree(drive)
    tokens = Tokens(token)
    context = Context(params(folder_id=tree.handbook, page_size=3))
    result = run(drive_job(tokens), context)

    assert result.complete is True
    summary = result.summary
    assert (summary["seen"], summary["new"], summary["changed"], summary["unchanged"], summary["failed"]) == (
        7, 7, 0, 0, 0)
    assert (result.processed, result.succeeded, result.failed) == (7, 7, 0)
    assert (summary["skipped"], summary["skipped_unsupported"], summary["skipped_google_type"]) == (2, 1, 1)
    assert (summary["listed"], summary["folders"], summary["exports"], summary["downloads"]) == (9, 2, 3, 4)
    assert summary["removed"] == 0 and summary["swept"] is True and summary["source"] == f"gdrive:{tree.handbook}"
    assert summary["permission_lookups"] == 0  # My Drive items carry their permissions in the listing
    assert tokens.calls == [("cred-drive", (DRIVE_SCOPE,))]
    assert source_documents(f"gdrive:{tree.handbook}") == tree.handbook_documents

    # Pages of 3: Handbook has 8 items (3 pages), Policies 2, Security 1.
    listings = [step for step in context.steps if step.startswith("list folder")]
    assert listings == [f"list folder {tree.handbook} page {n}" for n in (1, 2, 3)] + [
        f"list folder {tree.policies} page 1", f"list folder {tree.security} page 1"]
    assert "download Travel policy.pdf" in context.steps and "export Onboarding as text/markdown" in context.steps
    assert [report["processed"] for report in context.reports][-1] == 7
    lists = drive.calls("list")
    assert all(call["query"]["corpora"] == "allDrives" and call["query"]["supportsAllDrives"] == "true"
               and call["query"]["includeItemsFromAllDrives"] == "true" for call in lists)
    assert lists[0]["query"]["q"] == f"'{tree.handbook}' in parents and trashed = false"
    assert lists[1]["query"]["pageToken"] and lists[0]["query"]["pageSize"] == "3"
    assert {call["query"]["mimeType"] for call in drive.calls("export")} == {"text/markdown", "text/csv",
                                                                             "text/plain"}
    assert [call["status"] for call in drive.calls()] == [200] * len(drive.calls())

    onboarding = record(tree.onboarding)
    assert (onboarding.status, onboarding.mime_type, onboarding.title) == (INDEXED, "text/markdown", "Onboarding")
    assert onboarding.url == f"https://docs.google.com/document/d/{tree.onboarding}/edit?usp=drivesdk"
    assert onboarding.acl == [f"group:{STAFF}", f"user:{OWNER}"]
    assert record(tree.budget).mime_type == "text/csv" and record(tree.kickoff).mime_type == "text/plain"
    assert record(tree.passwords).acl == ["group:staff@corp.example", "user:ciso@corp.example",
                                          "user:hr-lead@corp.example", f"user:{OWNER}"]  # inherited, lower-cased

    # Who sees what: staff see the handbook; the CISO alone (of non-staff) the passwords document.
    staff_member = Viewer("someone@corp.example", groups=(STAFF,))
    assert titles("espresso machine ritual", staff_member)[0] == "Onboarding"
    assert titles("engineering budget amount", staff_member)[0] == "Budget 2026"
    assert titles("trains for trips under four hours", staff_member)[0] == "Travel policy.pdf"
    assert titles("espresso machine ritual", Viewer("outsider@else.example")) == []
    assert titles("vault master passphrase", Viewer("ciso@corp.example"))[0] == "Passwords.docx"
    assert titles("vault master passphrase", Viewer("hr-lead@corp.example"))[0] == "Passwords.docx"
    assert "Passwords.docx" not in titles("vault master passphrase", Viewer("intern@corp.example"))
    assert titles("parking garage", Viewer(OWNER))[0] == "notes.txt"  # the owner sees their files

    # A Shared Drive folder: permissions through the permissions endpoint (Google lists none inline).
    shared = run(drive_job(Tokens(token)), Context(params(folder_id=tree.playbooks)))
    assert (shared.summary["seen"], shared.summary["new"], shared.summary["permission_lookups"]) == (2, 2, 2)
    assert all(call["query"]["supportsAllDrives"] == "true" for call in drive.calls("permissions"))
    assert record(tree.pricing).acl == [f"group:{SALES}"]
    assert record(tree.discovery).acl == [f"group:{SALES}", "user:partner@agency.example"]
    seller = Viewer("sam@corp.example", groups=(SALES,))
    assert titles("enterprise seats cost", seller)[0] == "Pricing"
    assert titles("enterprise seats cost", staff_member) == []
    assert titles("champion decision criteria", Viewer("partner@agency.example"))[0] == "Discovery call.md"
    assert source_documents(f"gdrive:{tree.handbook}") == tree.handbook_documents  # its own source untouched


# -- later runs: unchanged, changed, removed ----------------------------------------------------------


def test_second_run_downloads_nothing_then_changes_removals_and_sharing_are_picked_up(knowledge, drive, token):
    tree = build_tree(drive)
    source = f"gdrive:{tree.handbook}"
    run(drive_job(Tokens(token)), Context(params(folder_id=tree.handbook)))
    drive.reset()

    second = run(drive_job(Tokens(token)), Context(params(folder_id=tree.handbook)))
    summary = second.summary
    assert (summary["seen"], summary["new"], summary["changed"], summary["unchanged"]) == (7, 0, 0, 7)
    assert summary["not_downloaded"] == 7 and summary["removed"] == 0
    assert drive.calls("media") == [] and drive.calls("export") == []  # Drive said nothing changed

    drive.reset()
    drive.update_file(tree.notes, content="The parking garage now closes at midnight.")
    drive.remove_file(tree.kickoff)
    drive.remove_file(tree.budget, trash=True)
    drive.remove_file(tree.security)  # with Passwords.docx
    drive.update_file(tree.leave, permissions=["user:contractor@vendor.example"])  # sharing: same modifiedTime
    third = run(drive_job(Tokens(token)), Context(params(folder_id=tree.handbook)))
    summary = third.summary
    assert (summary["seen"], summary["new"], summary["changed"], summary["unchanged"]) == (4, 0, 2, 2)
    assert summary["removed"] == 3 and summary["not_downloaded"] == 2 and summary["swept"] is True
    assert {call["file_id"] for call in drive.calls("media")} == {tree.notes, tree.leave}
    assert source_documents(source) == {f"gdrive:{tree.leave}", f"gdrive:{tree.onboarding}",
                                        f"gdrive:{tree.notes}", f"gdrive:{tree.travel}"}
    assert titles("parking garage midnight", Viewer("a@corp.example", groups=(STAFF,)))[0] == "notes.txt"
    assert titles("weekly active teams", Viewer("a@corp.example", groups=(STAFF,))) == []  # removed
    assert "user:contractor@vendor.example" in record(tree.leave).acl
    assert titles("paid parental leave", Viewer("contractor@vendor.example"))[0] == "Leave policy.md"

    no_sweep = run(drive_job(Tokens(token)), Context(params(folder_id=tree.handbook, sweep=False)))
    assert no_sweep.summary["swept"] is False and no_sweep.summary["unchanged"] == 4
    drive.remove_file(tree.notes)
    kept = run(drive_job(Tokens(token)), Context(params(folder_id=tree.handbook, sweep=False)))
    assert kept.summary["removed"] == 0 and f"gdrive:{tree.notes}" in source_documents(source)

    drive.reset()
    redownload = run(drive_job(Tokens(token)), Context(params(folder_id=tree.handbook, redownload=True)))
    assert (redownload.summary["unchanged"], redownload.summary["not_downloaded"]) == (3, 0)
    assert redownload.summary["removed"] == 1  # notes.txt, kept by the sweep-less runs, goes now
    assert len(drive.calls("media")) + len(drive.calls("export")) == 3


# -- failures -------------------------------------------------------------------------------------------


def test_a_failing_file_does_not_fail_the_run(knowledge, drive, token):
    tree = build_tree(drive)
    drive.fail_file(tree.travel)  # 403 cannotDownloadFile, every time
    drive.add_file("broken.pdf", parent=tree.handbook, mime_type="application/pdf", content=b"%PDF-1.4 not really")
    result = run(drive_job(Tokens(token)), Context(params(folder_id=tree.handbook)))

    assert result.complete is True
    summary = result.summary
    assert (summary["seen"], summary["new"], summary["failed"]) == (8, 6, 2)
    assert (result.processed, result.succeeded, result.failed) == (8, 6, 2)
    errors = summary["errors"]
    assert "cannotDownloadFile" in errors[f"gdrive:{tree.travel}"] and len(errors) == 2
    assert any("ExtractionError" in message for message in errors.values())  # the pipeline's failure
    with pytest.raises(KnowledgeDocument.DoesNotExist):
        record(tree.travel)  # never downloaded: no record

    # Fixed: the next run ingests it. Then it changes but fails again: its indexed version stays...
    drive.clear_failures()
    assert run(drive_job(Tokens(token)), Context(params(folder_id=tree.handbook))).summary["new"] == 1
    drive.update_file(tree.travel, content=minimal_pdf([["Travel policy v2", "Planes are fine now."]]))
    drive.fail_file(tree.travel, status=500, reason="backendError", message="Backend Error", count=4)
    again = run(drive_job(Tokens(token), sleep=lambda _: None), Context(params(folder_id=tree.handbook)))
    assert again.summary["failed"] == 2 and again.summary["http_retries"] == 3  # 4 attempts in all
    assert "still failing after 4 attempts" in again.summary["errors"][f"gdrive:{tree.travel}"]
    assert record(tree.travel).status == INDEXED and record(tree.travel).acl  # kept (same ACL), not swept
    assert titles("trains for trips", Viewer("a@corp.example", groups=(STAFF,)))[0] == "Travel policy.pdf"

    # ...unless its sharing changed meanwhile: then its old version goes (fail closed).
    drive.update_file(tree.travel, permissions=["user:only-me@corp.example"])
    drive.update_file(tree.policies, permissions=[])
    drive.update_file(tree.handbook, permissions=[])
    drive.fail_file(tree.travel)
    closed = run(drive_job(Tokens(token)), Context(params(folder_id=tree.handbook)))
    assert closed.complete is True and closed.summary["failed"] == 2
    with pytest.raises(KnowledgeDocument.DoesNotExist):
        record(tree.travel)
    assert titles("trains for trips", Viewer("a@corp.example", groups=(STAFF,))) == []


def test_when_every_file_fails_the_run_fails_and_nothing_is_swept(knowledge, drive, token):
    tree = build_tree(drive)
    source = f"gdrive:{tree.playbooks}"
    run(drive_job(Tokens(token)), Context(params(folder_id=tree.playbooks)))
    extra = drive.add_file("Extra.md", parent=tree.playbooks, mime_type="text/markdown", content="# Extra")
    drive.remove_file(tree.discovery)
    drive.update_file(tree.pricing, content="# Pricing\n\nSeats cost fifty dollars now.")
    for file_id in (tree.pricing, extra):
        drive.fail_file(file_id)
    context = Context(params(folder_id=tree.playbooks))
    with pytest.raises(DriveIngestError) as failed:
        run(drive_job(Tokens(token)), context)
    assert "every one of the 2 files" in str(failed.value) and "cannotDownloadFile" in str(failed.value)
    assert source_documents(source) == {f"gdrive:{tree.discovery}", f"gdrive:{tree.pricing}"}  # nothing swept
    assert context.saved is not None and context.saved["finished"] is True

    drive.clear_failures()  # the next run starts over (a finished checkpoint is not resumed)
    again = run(drive_job(Tokens(token)), Context(params(folder_id=tree.playbooks), checkpoint=context.saved))
    assert again.summary["resumed"] is False
    assert (again.summary["new"], again.summary["changed"], again.summary["removed"]) == (1, 1, 1)
    assert source_documents(source) == {f"gdrive:{extra}", f"gdrive:{tree.pricing}"}


def test_rate_limits_and_server_errors_are_retried_honouring_retry_after(knowledge, drive, token):
    tree = build_tree(drive)
    drive.fail_next("429", 1, retry_after=1, endpoint="list")
    drive.fail_next("userRateLimitExceeded", 1, retry_after=1, endpoint="media")
    drive.fail_next("rateLimitExceeded", 1, retry_after=0, endpoint="export")
    drive.fail_next("5xx", 1, status=503, endpoint="permissions")
    result = run(drive_job(Tokens(token)), Context(params(folder_id=tree.playbooks)))
    assert result.complete is True and result.summary["new"] == 2 and result.summary["failed"] == 0
    assert result.summary["http_retries"] == 4

    limited, answered = drive.calls("list")[:2]
    assert (limited["status"], answered["status"]) == (429, 200)
    assert answered["at"] - limited["at"] >= 1.0  # Retry-After honoured
    media = drive.calls("media")
    assert (media[0]["status"], media[1]["status"]) == (403, 200) and media[1]["at"] - media[0]["at"] >= 1.0
    assert [call["status"] for call in drive.calls("export")] == [403, 200]
    assert [call["status"] for call in drive.calls("permissions")][:2] == [503, 200]

    # A Retry-After beyond the bound (30 s) is not waited for: the run fails with the status, and resumes later.
    drive.fail_next("429", 1, retry_after=120, endpoint="list")
    context = Context(params(folder_id=tree.handbook))
    with pytest.raises(Exception, match="429") as refused:
        run(drive_job(Tokens(token)), context)
    assert getattr(refused.value, "status", None) == 429 and context.steps[-1] == f"list folder {tree.handbook} page 1"


def test_401_fetches_the_token_again_once_then_fails_clearly(knowledge, drive, oauth, token):
    tree = build_tree(drive)
    refreshed = Tokens("ya29.expired-token", token)
    result = run(drive_job(refreshed), Context(params(folder_id=tree.playbooks)))
    assert result.complete is True and result.summary["reauthentications"] == 1 and len(refreshed.calls) == 2
    assert [call["status"] for call in drive.calls("get")] == [401, 200]

    oauth.revoke_grant(token)  # the person disconnected the app in their Google account
    revoked = Tokens(token)
    context = Context(params(folder_id=tree.playbooks))
    with pytest.raises(GoogleAuthError) as refused:
        run(drive_job(revoked), context)
    assert refused.value.status == 401 and "reconnect" in str(refused.value) and len(revoked.calls) == 2
    assert context.steps[-1] == f"read root {tree.playbooks}"

    # A token without a content scope: a credential problem, not each file's — the run fails at once.
    metadata_only = Tokens(issue_access_token(oauth, ("https://www.googleapis.com/auth/drive.metadata.readonly",)))
    with pytest.raises(GoogleApiError) as forbidden:
        run(drive_job(metadata_only), Context(params(folder_id=tree.playbooks, redownload=True)))
    assert (forbidden.value.status, forbidden.value.reason) == (403, "insufficientPermissions")
    assert len(drive.calls("media")) + len(drive.calls("export")) == 2 + 1  # the first run's two, then one


# -- checkpoints -----------------------------------------------------------------------------------------


def test_stopped_runs_resume_from_their_checkpoint_and_sweep_only_when_complete(knowledge, drive, token):
    tree = build_tree(drive)
    source = f"gdrive:{tree.handbook}"
    run(drive_job(Tokens(token)), Context(params(folder_id=tree.handbook)))
    drive.remove_file(tree.notes)  # to be swept — by a complete run only
    drive.update_file(tree.leave, content="# Leave\n\nThe lighthouse keeper takes leave in winter.")
    drive.update_file(tree.onboarding, content="# Onboarding\n\nThe lighthouse keeper greets newcomers.")
    drive.update_file(tree.travel, content=minimal_pdf([["The lighthouse keeper travels by boat."]]))
    drive.update_file(tree.passwords, content=docx_bytes([("p", "The lighthouse keeper keeps the vault key.")]))
    drive.reset()

    def after_downloads(count: int) -> Callable[[Context], bool]:
        return lambda context: len(drive.calls("media")) + len(drive.calls("export")) >= count

    first = Context(params(folder_id=tree.handbook, page_size=3), stop_when=after_downloads(1))
    stopped = run(drive_job(Tokens(token)), first)
    assert stopped.complete is False and stopped.summary["complete"] is False and stopped.summary["swept"] is False
    assert stopped.summary["changed"] == 1 and stopped.processed == stopped.summary["seen"]
    saved = first.saved
    assert saved is not None and saved["folder"] == tree.handbook and saved["done"] and saved["candidates"]
    assert f"gdrive:{tree.notes}" in source_documents(source)  # no sweep on an incomplete run

    second = Context(params(folder_id=tree.handbook, page_size=3), checkpoint=saved, stop_when=after_downloads(3))
    resumed = run(drive_job(Tokens(token)), second)
    assert resumed.complete is False and resumed.summary["resumed"] is True
    assert resumed.summary["changed"] == 3 and second.saved is not None
    lists = drive.calls("list")
    assert lists[len(lists) - len([s for s in second.steps if s.startswith("list folder")])]["query"].get(
        "pageToken") == saved["page_token"]  # the interrupted page was read again, from its token

    last = Context(params(folder_id=tree.handbook, page_size=3), checkpoint=second.saved)
    done = run(drive_job(Tokens(token)), last)
    summary = done.summary
    assert done.complete is True and summary["resumed"] is True and summary["swept"] is True
    assert (summary["seen"], summary["changed"], summary["unchanged"], summary["removed"]) == (6, 4, 2, 1)
    assert f"gdrive:{tree.notes}" not in source_documents(source)
    downloaded = [call["file_id"] for call in drive.calls("media") + drive.calls("export")]
    assert sorted(downloaded) == sorted({tree.leave, tree.onboarding, tree.travel, tree.passwords})  # each once
    assert not any(step == f"read root {tree.handbook}" for step in last.steps)


def test_a_page_token_google_no_longer_accepts_restarts_that_folder(knowledge, drive, token):
    tree = build_tree(drive)
    first = Context(params(folder_id=tree.handbook, page_size=3),
                    stop_when=lambda context: any(step.endswith("page 2") for step in context.steps)
                    and context.stop_checks > 8)
    assert run(drive_job(Tokens(token)), first).complete is False
    saved = dict(first.saved or {})
    assert saved["page_token"]
    saved["page_token"] = "~!forged"
    drive.reset()
    result = run(drive_job(Tokens(token)), Context(params(folder_id=tree.handbook, page_size=3), checkpoint=saved))
    assert result.complete is True and result.summary["seen"] >= 7
    refused, restarted = drive.calls("list")[:2]
    assert (refused["status"], refused["query"]["pageToken"]) == (400, "~!forged")
    assert restarted["status"] == 200 and "pageToken" not in restarted["query"]
    assert source_documents(f"gdrive:{tree.handbook}") == tree.handbook_documents


# -- one file, the root's checks, limits ---------------------------------------------------------------


def test_one_file_and_roots_that_are_not_what_the_parameters_say(knowledge, drive, token):
    tree = build_tree(drive)
    single = run(drive_job(Tokens(token)), Context(params(file_id=tree.pricing)))
    assert (single.summary["seen"], single.summary["new"], single.summary["source"]) == (1, 1, f"gdrive:{tree.pricing}")
    assert single.summary["permission_lookups"] == 1 and drive.calls("list") == []
    assert record(tree.pricing).source == f"gdrive:{tree.pricing}"
    again = run(drive_job(Tokens(token)), Context(params(file_id=tree.pricing)))
    assert (again.summary["unchanged"], again.summary["not_downloaded"], again.summary["removed"]) == (1, 1, 0)

    for parameters, message in ((params(file_id=tree.handbook), "is a folder; use folder_id"),
                                (params(folder_id=tree.notes), "is not a folder"),
                                (params(folder_id="1NoSuchFolder"), "not found, or not shared"),
                                (params(folder_id=tree.playbooks, include_shared_drives=False), "Shared Drive")):
        context = Context(parameters)
        with pytest.raises(DriveIngestError, match=message):
            run(drive_job(Tokens(token)), context)
        assert context.steps[-1].startswith("read root ")
    drive.remove_file(tree.kickoff, trash=True)
    with pytest.raises(DriveIngestError, match="trash"):
        run(drive_job(Tokens(token)), Context(params(file_id=tree.kickoff)))


def test_limits_fallbacks_and_files_that_vanish(knowledge, drive, token):
    tree = build_tree(drive)
    drive.markdown_export = False  # Drive refuses text/markdown: Docs come as text/plain
    big_file = drive.add_file("Big.md", parent=tree.handbook, mime_type="text/markdown",
                              content="# Big\n\n" + "word " * 400)
    big_doc = drive.add_file("Big doc", parent=tree.handbook, mime_type=GOOGLE_DOC,
                             content="# Big doc\n\n" + "word " * 400)
    readme = drive.add_file("README.md", parent=tree.handbook, mime_type="application/octet-stream",
                            content="# Readme\n\nThe octopus mascot is named Inky.")
    drive.fail_file(tree.notes, status=404, reason="notFound", message="File not found: deleted meanwhile.")
    context = Context(params(folder_id=tree.handbook, max_file_bytes=1000, recursive=False))
    result = run(drive_job(Tokens(token)), context)

    summary = result.summary
    assert (summary["skipped_too_large"], summary["vanished"], summary["failed"]) == (2, 1, 0)
    assert (summary["seen"], summary["new"]) == (5, 5)  # leave, onboarding, budget, kickoff, README.md
    assert summary["folders"] == 1 and not any(tree.policies in step for step in context.steps)  # not recursive
    documents = source_documents(f"gdrive:{tree.handbook}")
    assert f"gdrive:{tree.travel}" not in documents and f"gdrive:{tree.notes}" not in documents
    assert f"gdrive:{big_file}" not in documents and f"gdrive:{big_doc}" not in documents
    assert drive.calls("media", file_id=big_file) == []  # its listed size was enough to skip it
    assert [call["status"] for call in drive.calls("export", file_id=big_doc)] == [400, 200]  # read up to the cap

    onboarding = record(tree.onboarding)
    assert onboarding.mime_type == "text/plain"  # the fallback export
    exports = [(call["query"]["mimeType"], call["status"]) for call in drive.calls("export", file_id=tree.onboarding)]
    assert exports == [("text/markdown", 400), ("text/plain", 200)]
    assert record(readme).mime_type == "text/markdown"  # typed by its extension
    assert titles("octopus mascot", Viewer("x@corp.example", groups=(STAFF,)))[0] == "README.md"
    assert titles("espresso machine ritual", Viewer("x@corp.example", groups=(STAFF,)))[0] == "Onboarding"


def test_a_stored_credential_is_used_and_refreshed(knowledge, drive, oauth, monkeypatch):
    """Through insightmesh.credentials: a connected credential (sealed with a moto KMS key), its
    access token expired — the job's token provider refreshes it at the OAuth stand-in."""
    for name, value in (("GOOGLE_CLIENT_ID", CLIENT_ID), ("GOOGLE_CLIENT_SECRET", CLIENT_SECRET),
                        ("GOOGLE_AUTHORIZE_URL", oauth.authorize_url), ("GOOGLE_TOKEN_URL", oauth.token_url),
                        ("GOOGLE_REVOKE_URL", oauth.revoke_url), ("PUBLIC_BASE_URL", "https://api.example.com"),
                        ("OAUTH_INSECURE_TRANSPORT", "true")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GOOGLE_CLIENT_SECRET_SECRET_ID", raising=False)
    monkeypatch.setenv("CREDENTIALS_KMS_KEY_ID", boto3.client("kms").create_key()["KeyMetadata"]["KeyId"])
    google_oauth.reset_clients()
    get_auth_settings.cache_clear()
    get_settings.cache_clear()
    try:
        User("u-admin", email="admin@corp.example", display_name="Admin", is_admin=True).save()

        def connect(scopes: list[str]) -> str:
            started = service.start_google_authorization("u-admin", f"Drive {len(scopes)}", scopes)
            consent = httpx.get(started.authorization_url, follow_redirects=False, timeout=5)
            query = {key: values[0] for key, values in parse_qs(urlsplit(consent.headers["location"]).query).items()}
            return service.complete_google_authorization(
                query["state"], query["code"], None, session_user_id=None,
                cookie_header=started.binding_cookie.split(";", 1)[0]).id

        credential_id = connect(["drive.readonly"])
        tree = build_tree(drive)
        oauth.expire_access_tokens()  # and the credential knows it: its token ends within the refresh margin
        stored = Credential.get(credential_id)
        stored.update(actions=[Credential.token_expires_at.set(datetime.now(UTC) + timedelta(minutes=1))])
        before = len(oauth.token_requests)
        job = GdriveIngest(breaker=CircuitBreaker("google-drive-credential-test"))  # the stored credential
        result = run(job, Context({"credential_id": credential_id, "folder_id": tree.playbooks}))
        assert result.complete is True and result.summary["new"] == 2
        assert len(oauth.token_requests) == before + 1  # refreshed once, then reused for every call
        assert oauth.token_requests[-1]["form"]["grant_type"] == "refresh_token"
        assert [call["status"] for call in drive.calls()] == [200] * len(drive.calls())
        assert len({call["token_sha256"] for call in drive.calls()}) == 1

        directory_only = connect(["admin.directory.user.readonly"])
        context = Context({"credential_id": directory_only, "folder_id": tree.playbooks})
        with pytest.raises(CredentialScopeError, match=r"drive\.readonly"):
            run(job, context)
        assert context.steps[-1] == f"read root {tree.playbooks}"
    finally:
        google_oauth.reset_clients()
        get_auth_settings.cache_clear()
        get_settings.cache_clear()
