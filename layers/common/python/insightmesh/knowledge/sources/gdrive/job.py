"""Job type ``gdrive_ingest``: a Google Drive folder (recursively) or one file into the knowledge base.

**What it reads.** With a stored Google credential (scope ``drive.readonly``), through the Drive
API v3 (:class:`DriveApi`, base URL ``GOOGLE_DRIVE_API_URL``, default https://www.googleapis.com):

* the root: ``GET /drive/v3/files/{id}?fields=...&supportsAllDrives=true`` — ``folder_id`` must name
  a folder and ``file_id`` a file (else the run fails with :class:`DriveIngestError`, as it does for
  a root that is missing, trashed or not shared with the credential);
* a folder's children, page by page: ``GET /drive/v3/files?q='<folder>' in parents and trashed =
  false&fields=nextPageToken,files(...)&pageSize=&pageToken=&supportsAllDrives=true
  &includeItemsFromAllDrives=true`` (+ ``corpora=allDrives`` with ``include_shared_drives``);
  sub-folders (``application/vnd.google-apps.folder``) are descended into when ``recursive``;
* a file's permissions when the listing has none (Google leaves them out of Shared Drive items):
  ``GET /drive/v3/files/{id}/permissions?fields=nextPageToken,permissions(type,role,emailAddress,
  domain,deleted,allowFileDiscovery)&supportsAllDrives=true``, paged;
* its content: ``GET /drive/v3/files/{id}?alt=media`` for a file whose MIME type the extractors read
  (``insightmesh.knowledge.extract.SUPPORTED_MIME_TYPES``; a file Drive calls
  ``application/octet-stream`` is typed by its extension), ``GET /drive/v3/files/{id}/export
  ?mimeType=`` for Google Docs (``text/markdown``, or ``text/plain`` when Drive refuses Markdown),
  Sheets (``text/csv``: the first sheet) and Slides (``text/plain``).

Every call goes through :mod:`insightmesh.google_api` (shared with ``google_workspace_sync``):
one process-wide httpx client, the ``google_drive`` circuit breaker, bounded retries of 429, 5xx and
the ``userRateLimitExceeded``/``rateLimitExceeded`` 403s with backoff honouring ``Retry-After``
(``http_retries`` in the summary), and one token refetch on a 401 (a second 401 fails the run with
``GoogleAuthError``). The token comes from the job context's ``credential_token`` (the runner's stored credential;
injectable: ``GdriveIngest(token_provider=...)``).

**What it writes.** Each file becomes a :class:`~insightmesh.knowledge.base.SourceDocument`
(``document_id = "gdrive:<file id>"``, ``source = "gdrive:<folder_id or file_id>"``, the file's name,
the exported or actual MIME type, ``webViewLink``, ``modifiedTime``) handed to
:func:`insightmesh.knowledge.pipeline.ingest_documents` a listing page at a time; the pipeline
decides new / changed / unchanged by content hash and records a document it cannot read as failed.
Its **ACL** is the file's Drive permissions (inherited ones included, as Drive lists them) and its
owners: ``user`` → ``user:<email>``, ``group`` → ``group:<email>`` (and ``group:<name>`` when a
directory group has that e-mail: the groups are read once per invocation, ``Query Groups.by-kind``),
``domain`` → ``domain:<domain>``, lower-case, ``deleted`` permissions skipped
(:func:`acl_principals`). ``anyone`` becomes ``anyone`` only when the file is public on the web
(``allowFileDiscovery: true``). A file shared with "anyone with the link" (``allowFileDiscovery``
false or absent) is not for everyone — only for whoever holds the link — so it is stored with its
owners' domains (the organisation it was shared in) and its explicit principals, never ``anyone``. A
file with no principal left is skipped (``skipped_no_readers``).

**Not ingested, counted as skipped** (never failed): folders' other Google types (Forms, Drawings,
shortcuts, ...: ``skipped_google_type``), MIME types the extractors do not read
(``skipped_unsupported``), files larger than ``max_file_bytes`` by their listed ``size`` or by what
the download or export actually delivers — read no further than that — or that Drive will not
export for their size (``exportSizeLimitExceeded``) (``skipped_too_large``: a configured limit, not
an error; the log names each), and Shared Drive items when ``include_shared_drives`` is off
(``skipped_shared_drive``). A file deleted between the listing and its download is ``vanished``.

**Failures.** A file whose permissions or content Google refuses (403 ``cannotDownloadFile``, a 5xx
still failing after the retries, ...) or that the pipeline cannot read is counted ``failed`` with
its reason (the first :data:`MAX_ERRORS` in the summary's ``errors``) and the run goes on. Its
earlier version stays searchable, unless its ACL changed — then it is removed (fail closed, as the
pipeline does). When *every* file seen failed, the run raises :class:`DriveIngestError` (recorded
failed) and nothing is swept. A credential error, an open circuit or a store failure
(``KnowledgeStoreError``) fails the run at once; the next run resumes from the last checkpoint.

**Unchanged files are not downloaded.** The listing's ``modifiedTime``, name, ``webViewLink`` and
computed ACL are compared with the document's record (``KnowledgeDocument``, one ``BatchGetItem``
per page): a record ``indexed`` from this source with the same values is counted ``unchanged``
(``not_downloaded``) without a download. Sharing changes do not move ``modifiedTime`` in Drive, which
is why the ACL is compared too. The pipeline's content hash also covers its own version and the
embedding model, which a record does not show: after changing either, run the job once with
``redownload: true`` (every file downloaded, the pipeline re-indexes what needs it).

**Sweep** (``sweep``, a complete run only). The documents of the source are read at the start of a
run (``Query by-source``, ids only) and kept in the checkpoint as 6-byte digests of their ids; each
file seen — ingested, unchanged, or failed — strikes its digest; at the end the documents whose digest
is left are removed (:func:`insightmesh.knowledge.pipeline.remove_documents`; ``removed``). A file
that was seen but failed keeps its earlier version; a file skipped or vanished is removed. A digest
collision can only keep a document, never remove a seen one. A source of more than
:data:`MAX_SWEEP_DOCUMENTS` documents is not swept (``sweep_skipped`` says why: the checkpoint must fit
in a DynamoDB item).

**Checkpoints** (after each listing page, and when ``should_stop()`` — asked between files — says
so): ``{"version", "parameters", "source", "run_id", "root_done", "stack" (folders still to list),
"folder", "page_token" (of the page being worked), "page", "done" (ids of that page already handled),
"counts", "errors", "candidates" (the sweep digests), "sweep_skipped"}``. A resumed run re-reads the
page at ``page_token``, skips what ``done`` lists, and goes on with ``stack``; a checkpoint of other
parameters starts over, and so does one whose page token Google no longer accepts (HTTP 400) —
re-downloads are cheap, since the pipeline skips unchanged content. A stopped run never sweeps.

**Audit.** A listing page that wrote or failed a document is one ``knowledge.ingest`` entry in
the audit log (actor ``job:<job id>``, the documents and their ACLs:
:mod:`insightmesh.knowledge.ingest_audit`); a page where nothing changed writes none.

**Counts.** ``processed`` = ``seen`` (files considered for the knowledge base: new + changed +
unchanged + failed), ``succeeded`` = ``seen - failed``, ``failed``. The summary has ``seen``, ``new``,
``changed``, ``unchanged``, ``failed``, ``removed`` and ``skipped`` (with its kinds above),
``listed``, ``folders``, ``pages``, ``downloads``, ``exports``, ``bytes_downloaded``,
``not_downloaded``, ``permission_lookups``, ``chunks_written``, ``vanished``, ``http_retries``,
``reauthentications``, ``source``, ``resumed``, ``complete``, ``swept``, ``sweep_skipped`` and ``errors``.
"""


from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, ClassVar, Final

import httpx
from pydantic import Field, model_validator

from insightmesh.google_api import (
    AccessTokenProvider,
    ContentTooLarge,
    GoogleApiError,
    Reply,
    api_breaker,
    api_url,
    http_client,
)
from insightmesh.job_contract import (
    JobContext,
    JobParameters,
    JobResult,
    checkpoint_matches,
    parameters_fingerprint,
    parameters_of,
)
from insightmesh.knowledge.base import IngestReport, SourceDocument
from insightmesh.knowledge.sources.gdrive.acl import acl_principals
from insightmesh.knowledge.sources.gdrive.drive_api import (
    API_URL_VARIABLE,
    BREAKER,
    DEFAULT_API_URL,
    DRIVE_ID_PATTERN,
    DRIVE_ID_RE,
    DRIVE_SCOPE,
    EXPORTS,
    FOLDER,
    GOOGLE_PREFIX,
    MAX_PAGE_SIZE,
    DriveApi,
    parse_time,
)
from insightmesh.knowledge.sources.gdrive.state import (
    CHECKPOINT_VERSION,
    MAX_SWEEP_DOCUMENTS,
    State,
    digest,
)
from insightmesh.observability import get_logger
from insightmesh.resilience import CircuitBreaker

if TYPE_CHECKING:
    from insightmesh.knowledge.models import KnowledgeDocument

SOURCE_PREFIX: Final = "gdrive:"
DEFAULT_MAX_FILE_BYTES: Final = 20 * 1024 * 1024
MAX_FILE_BYTES_LIMIT: Final = 200 * 1024 * 1024
MAX_ERRORS: Final = 20  # file errors kept in the summary
UTF8_BOM: Final = b"\xef\xbb\xbf"
# 403s about the credential, not the file: every other file would fail the same way, so the run fails.
CREDENTIAL_REASONS: Final = frozenset({"insufficientPermissions", "authError", "forbidden", "domainPolicy"})


# -- parameters ------------------------------------------------------------------------------------


class GdriveIngestParameters(JobParameters):
    """Exactly one of ``folder_id`` (its files, recursively) and ``file_id`` (that file)."""

    credential_id: str = Field(min_length=1, max_length=200, pattern=r"^\S+$")
    folder_id: str | None = Field(default=None, pattern=DRIVE_ID_PATTERN)
    file_id: str | None = Field(default=None, pattern=DRIVE_ID_PATTERN)
    recursive: bool = True
    include_shared_drives: bool = True
    page_size: int = Field(default=100, ge=1, le=MAX_PAGE_SIZE)
    max_file_bytes: int = Field(default=DEFAULT_MAX_FILE_BYTES, ge=1, le=MAX_FILE_BYTES_LIMIT,
                                description="Larger files are skipped (counted skipped_too_large), not failed.")
    sweep: bool = Field(default=True, description="Remove the documents of this source no longer in the folder.")
    redownload: bool = Field(default=False, description="Download every file, even those Drive reports unchanged "
                                                        "since they were indexed (after changing the embedding "
                                                        "model).")

    @model_validator(mode="after")
    def _one_root(self) -> GdriveIngestParameters:
        if (self.folder_id is None) == (self.file_id is None):
            raise ValueError("give exactly one of folder_id and file_id")
        return self

    @property
    def root_id(self) -> str:
        root = self.folder_id or self.file_id
        assert root is not None  # the validator guarantees one
        return root


# -- errors ----------------------------------------------------------------------------------------


class DriveIngestError(Exception):
    """The run cannot do its work: a root that is not usable, or every file failed."""


class _FileFailed(Exception):
    """One file could not be read from Drive (its reason is the message)."""


class _FileSkipped(Exception):
    """One file is not ingested on purpose (``kind`` is the summary counter)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Vanished(Exception):
    """The file was deleted between the listing and its download."""


def document_id(file_id: str) -> str:
    return SOURCE_PREFIX + file_id


# -- the knowledge base (imported on use: only the function that runs the job loads it) -------------


class Knowledge:
    """What the job asks of ``insightmesh.knowledge``: ingest, the records of a page, the sweep."""

    def ingest(self, documents: Iterable[SourceDocument],
               progress: Callable[[IngestReport], None]) -> IngestReport:
        from insightmesh.knowledge.pipeline import ingest_documents

        return ingest_documents(documents, progress=progress)

    def records(self, document_ids: Sequence[str]) -> dict[str, KnowledgeDocument]:
        """The records of these documents (``BatchGetItem``, ≤ 100 keys a call), by id."""
        from insightmesh.knowledge.models import KnowledgeDocument

        if not document_ids:
            return {}
        return {record.document_id: record
                for record in KnowledgeDocument.batch_get(list(dict.fromkeys(document_ids)), consistent_read=True)}

    def source_documents(self, source: str) -> Iterator[str]:
        """The ids of the documents of ``source`` (``Query by-source``, ids only)."""
        from insightmesh.knowledge.models import KnowledgeDocument

        for record in KnowledgeDocument.by_source.query(source, attributes_to_get=["document_id"]):
            yield str(record.document_id)

    def directory_groups(self) -> dict[str, str]:
        """The directory groups that have an e-mail, by e-mail: ``Query Groups.by-kind`` (paged; the
        groups a Workspace sync mirrors), once per invocation."""
        from insightmesh.directory.models import GROUP_KIND, Group

        return {group.email.strip().lower(): str(group.name) for group in Group.by_kind.query(GROUP_KIND)
                if group.email and group.email.strip()}

    def audit(self, report: IngestReport, *, source: str, job_id: str, run_id: str) -> None:
        """A ``knowledge.ingest`` audit entry for a page that wrote or failed documents."""
        from insightmesh.knowledge.ingest_audit import IngestActor, record_ingest

        record_ingest(actor=IngestActor(f"job:{job_id}", f"job:{job_id}"), source=source, report=report,
                      request_id=run_id, changes_only=True)

    def remove(self, document_ids: Sequence[str]) -> int:
        from insightmesh.knowledge.pipeline import remove_documents

        return remove_documents(document_ids)

    def supported(self, mime_type: str, name: str) -> str | None:
        """The type the extractors read this file as (by its extension when Drive says octet-stream)."""
        from insightmesh.file_types import mime_type_for
        from insightmesh.knowledge.extract import SUPPORTED_MIME_TYPES, normalize_mime_type

        kind = normalize_mime_type(mime_type)
        if kind in ("", "application/octet-stream"):
            kind = mime_type_for(name) or kind
        return kind if kind in SUPPORTED_MIME_TYPES else None


# -- the job ----------------------------------------------------------------------------------------


class GdriveIngest:
    """Ingest a Google Drive folder (or one file) into the knowledge base."""

    name: ClassVar[str] = "gdrive_ingest"
    title: ClassVar[str] = "Google Drive ingestion"
    description: ClassVar[str] = (
        "Reads a Google Drive folder (recursively, Shared Drives included) or one file with a connected Google "
        "credential (drive.readonly) into the knowledge base: Google Docs, Sheets and Slides exported as text, "
        "PDF, Office, Markdown, text and caption files extracted; each document keeps its Drive permissions, "
        "and documents no longer in the folder are removed.")
    Parameters: ClassVar[type[JobParameters]] = GdriveIngestParameters

    def __init__(self, token_provider: AccessTokenProvider | None = None, *, http: httpx.Client | None = None,
                 base_url: str | None = None, breaker: CircuitBreaker | None = None,
                 sleep: Callable[[float], None] = time.sleep, knowledge: Knowledge | None = None) -> None:
        self.token_provider: AccessTokenProvider | None = token_provider  # None: the context's
        self.http = http
        self.base_url = base_url
        self.breaker = breaker
        self.sleep = sleep
        self.knowledge = knowledge or Knowledge()

    def run(self, context: JobContext) -> JobResult:
        return _Run(self, context).run()


class _Run:
    """One invocation of the job."""

    def __init__(self, job: GdriveIngest, context: JobContext) -> None:
        self.parameters = parameters_of(context, GdriveIngestParameters)
        self.context = context
        self.knowledge = job.knowledge
        credential_id = self.parameters.credential_id
        tokens: AccessTokenProvider = job.token_provider or context.credential_token
        self.api = DriveApi(
            base_url=job.base_url or api_url(API_URL_VARIABLE, DEFAULT_API_URL),
            token=lambda: tokens(credential_id, required_scopes=(DRIVE_SCOPE,)),
            http=job.http or http_client(), breaker=job.breaker or api_breaker(BREAKER), sleep=job.sleep)
        self.source = SOURCE_PREFIX + self.parameters.root_id
        self.state = State(fingerprint=parameters_fingerprint(self.parameters), source=self.source,
                           run_id=context.run_id)
        self.resumed = False
        self.complete = False
        self.swept = False
        self.stopped = False
        self._retries_base = (0, 0)
        self._seen_here: set[str] = set()  # file ids handled by this invocation (a file in two folders once)
        self._in_flight = IngestReport()  # the pipeline's running report of the current page
        self._directory_groups: dict[str, str] | None = None  # group e-mail -> directory group name
        self.log = get_logger()

    # -- the whole run ---------------------------------------------------------------------------

    def run(self) -> JobResult:
        self._restore(self.context.load_checkpoint())
        state = self.state
        if not state.root_done:
            self._start()
        while not self.stopped and (state.folder is not None or state.stack):
            if state.folder is None:
                state.folder, state.page_token, state.page, state.done = state.stack.pop(), None, 1, []
            if self.context.should_stop():
                self.stopped = True
                break
            self._folder_page()
        if self.stopped:
            return self._stopped()
        counts = state.counts
        if counts.seen and counts.failed == counts.seen:
            state.finished = True
            self._save()
            raise DriveIngestError(f"every one of the {counts.seen} files of {self.source} failed; nothing was "
                                   "swept. First errors: " + "; ".join(f"{key}: {value}" for key, value in
                                                                       list(state.errors.items())[:3]))
        if self.parameters.sweep:
            self._sweep()
        self.complete = True
        summary = self.summary()
        self.log.info("google drive ingestion finished", extra={"summary": summary})
        return JobResult(processed=counts.seen, succeeded=counts.seen - counts.failed, failed=counts.failed,
                         summary=summary, complete=True)

    def _restore(self, saved: Mapping[str, Any] | None) -> None:
        if not saved:
            return
        if (not checkpoint_matches(saved, version=CHECKPOINT_VERSION, fingerprint=self.state.fingerprint,
                                   source=self.source) or saved.get("finished")):
            self.log.warning("google drive ingestion checkpoint not resumable (other parameters, format, or a "
                             "finished run); starting over", extra={"source": self.source})
            return
        try:
            self.state = State.restore(saved)
        except (KeyError, TypeError, ValueError) as error:
            self.log.warning("google drive ingestion checkpoint unreadable; starting over",
                             extra={"source": self.source, "error": str(error)[:200]})
            return
        self._retries_base = (self.state.counts.http_retries, self.state.counts.reauthentications)
        self.resumed = True

    def _start(self) -> None:
        """Read the root; note the sweep's candidates; a folder's listing starts, a file is ingested."""
        parameters, state = self.parameters, self.state
        root_id = parameters.root_id
        self.context.step(f"read root {root_id}")
        try:
            root = self.api.file(root_id)
        except GoogleApiError as error:
            if error.status == 404:
                raise DriveIngestError(f"Drive {'folder' if parameters.folder_id else 'file'} {root_id} not found, "
                                       "or not shared with the credential's account") from error
            raise
        kind = root.get("mimeType")
        if root.get("trashed") is True:
            raise DriveIngestError(f"Drive item {root_id} is in the trash")
        if parameters.folder_id and kind != FOLDER:
            raise DriveIngestError(f"folder_id {root_id} is not a folder ({kind}); use file_id for a file")
        if parameters.file_id and kind == FOLDER:
            raise DriveIngestError(f"file_id {root_id} is a folder; use folder_id for a folder")
        if root.get("driveId") and not parameters.include_shared_drives:
            raise DriveIngestError(f"{root_id} is in a Shared Drive and include_shared_drives is off")
        if parameters.sweep:
            self._note_candidates()
        if parameters.folder_id:
            state.folder, state.page_token, state.page, state.done = root_id, None, 1, []
            state.root_done = True
            self._save()
            return
        state.counts.listed += 1
        self._ingest_items([root], page_label="file")
        state.root_done = not self.stopped
        self._report()

    def _note_candidates(self) -> None:
        self.context.step(f"read documents of {self.source}")
        candidates: set[bytes] = set()
        for identifier in self.knowledge.source_documents(self.source):
            candidates.add(digest(identifier))
            if len(candidates) > MAX_SWEEP_DOCUMENTS:
                self.state.candidates = None
                self.state.sweep_skipped = (f"the source has more than {MAX_SWEEP_DOCUMENTS} documents; "
                                            "documents no longer in Drive are not removed")
                self.log.warning("google drive sweep disabled for this run: too many documents",
                                 extra={"source": self.source})
                return
        self.state.candidates = candidates

    def _stopped(self) -> JobResult:
        self._save()
        summary = self.summary()
        self.log.info("google drive ingestion stopped at the deadline; the next run resumes",
                      extra={"summary": summary})
        counts = self.state.counts
        return JobResult(processed=counts.seen, succeeded=counts.seen - counts.failed, failed=counts.failed,
                         summary=summary, complete=False)

    # -- listing ---------------------------------------------------------------------------------

    def _folder_page(self) -> None:
        """List one page of the current folder and ingest its files (the folders go on the stack)."""
        state = self.state
        folder = state.folder
        assert folder is not None
        self.context.step(f"list folder {folder} page {state.page}")
        try:
            page = self.api.children(folder, page_size=self.parameters.page_size, page_token=state.page_token,
                                     all_drives=self.parameters.include_shared_drives)
        except GoogleApiError as error:
            if error.status == 400 and state.page_token is not None and self.resumed:
                self.log.warning("saved page token refused; listing the folder again", extra={"folder": folder})
                state.page_token, state.page, state.done = None, 1, []
                page = self.api.children(folder, page_size=self.parameters.page_size, page_token=None,
                                         all_drives=self.parameters.include_shared_drives)
            elif error.status == 404 and folder != self.parameters.root_id:
                self.log.warning("google drive folder vanished while listing", extra={"folder": folder})
                state.folder = None
                return
            else:
                raise
        state.counts.pages += 1
        files: list[Mapping[str, Any]] = []
        done = set(state.done)
        subfolders: list[str] = []
        for item in page.items:
            identifier = item.get("id")
            if not isinstance(identifier, str) or not DRIVE_ID_RE.match(identifier) or identifier in done:
                continue
            if item.get("mimeType") == FOLDER:
                state.done.append(identifier)
                state.counts.folders += 1
                if self.parameters.recursive and self._in_scope(item):
                    subfolders.append(identifier)
                continue
            state.counts.listed += 1
            files.append(item)
        state.stack.extend(reversed(subfolders))  # the first sub-folder is listed first
        self._ingest_items(files, page_label=f"{folder} page {state.page}")
        if self.stopped:
            return
        state.page_token = page.next_token or None
        state.done = []
        if state.page_token is None:
            state.folder = None
        else:
            state.page += 1
        self._report()

    def _in_scope(self, item: Mapping[str, Any]) -> bool:
        if item.get("driveId") and not self.parameters.include_shared_drives:
            self.state.counts.skipped_shared_drive += 1
            self.state.counts.skipped += 1
            return False
        return True

    # -- files -----------------------------------------------------------------------------------

    def _ingest_items(self, items: Sequence[Mapping[str, Any]], *, page_label: str) -> None:
        """Hand a page's files to the pipeline, one document at a time (``should_stop`` between files)."""
        if not items:
            return
        records = self.knowledge.records([document_id(str(item["id"])) for item in items])
        self._in_flight = IngestReport()
        report = self.knowledge.ingest(self._documents(items, records), self._pipeline_progress)
        self._in_flight = IngestReport()
        counts = self.state.counts
        counts.add_report(report)
        for key, message in report.errors.items():
            self._error(key, message)
        self.knowledge.audit(report, source=self.source, job_id=self.context.job_id, run_id=self.context.run_id)
        self.log.debug("google drive page ingested", extra={"page": page_label, "seen": report.seen})

    def _documents(self, items: Sequence[Mapping[str, Any]],
                   records: Mapping[str, KnowledgeDocument]) -> Iterator[SourceDocument]:
        state = self.state
        for item in items:
            if self.context.should_stop():
                self.stopped = True
                return
            file_id = str(item["id"])
            if file_id in self._seen_here:
                state.done.append(file_id)
                continue
            self._seen_here.add(file_id)
            document = self._document(item, records.get(document_id(file_id)))
            state.done.append(file_id)  # saved only once the pipeline has returned (a page at a time)
            if document is not None:
                yield document

    def _document(self, item: Mapping[str, Any], record: KnowledgeDocument | None) -> SourceDocument | None:
        """The document of one listed file, or None when it is skipped, unchanged, or failed (counted)."""
        counts = self.state.counts
        file_id, name = str(item["id"]), str(item.get("name") or item["id"])
        key = document_id(file_id)
        acl: tuple[str, ...] | None = None
        try:
            plan = self._plan(item, name)
            acl = self._acl(item, name)
            if not acl:
                raise _FileSkipped("skipped_no_readers", "no permission maps to a principal")
            if record is not None and not self.parameters.redownload and self._unchanged(item, name, acl, plan,
                                                                                         record):
                self._strike(key)
                counts.seen += 1
                counts.unchanged += 1
                counts.not_downloaded += 1
                return None
            content, mime_type = self._content(file_id, name, plan)
        except _FileSkipped as skipped:
            setattr(counts, skipped.kind, getattr(counts, skipped.kind) + 1)
            counts.skipped += 1
            self.log.info("google drive file skipped", extra={"file_id": file_id, "file_name": name,
                                                              "kind": skipped.kind, "reason": str(skipped)})
            return None
        except _Vanished:
            counts.vanished += 1
            return None
        except _FileFailed as failure:
            self._strike(key)  # seen: its earlier version is not swept (but see _fail_closed)
            counts.seen += 1
            counts.failed += 1
            self._error(key, str(failure))
            self._fail_closed(key, record, acl)
            self.log.warning("google drive file failed", extra={"file_id": file_id, "file_name": name,
                                                                "error": str(failure)[:300]})
            return None
        self._strike(key)
        link = item.get("webViewLink")
        return SourceDocument(document_id=key, source=self.source, title=name, mime_type=mime_type, content=content,
                              url=link if isinstance(link, str) and link else None,
                              modified_time=parse_time(item.get("modifiedTime")), acl=acl)

    def _plan(self, item: Mapping[str, Any], name: str) -> tuple[str, ...]:
        """``("media", type)`` or ``("export", type, fallback...)``; _FileSkipped when not ingested."""
        mime_type = str(item.get("mimeType") or "")
        if item.get("driveId") and not self.parameters.include_shared_drives:
            raise _FileSkipped("skipped_shared_drive", "in a Shared Drive")
        if mime_type in EXPORTS:
            return ("export", *EXPORTS[mime_type])
        if mime_type.startswith(GOOGLE_PREFIX):
            raise _FileSkipped("skipped_google_type", f"{mime_type} has no text export")
        kind = self.knowledge.supported(mime_type, name)
        if kind is None:
            raise _FileSkipped("skipped_unsupported", f"unsupported type {mime_type or 'unknown'}")
        size = str(item.get("size") or "")
        if size.isdigit() and int(size) > self.parameters.max_file_bytes:
            raise _FileSkipped("skipped_too_large", f"{size} bytes > max_file_bytes")
        return ("media", kind)

    def _acl(self, item: Mapping[str, Any], name: str) -> tuple[str, ...]:
        listed = item.get("permissions")
        owners = item.get("owners")
        owner_items = [owner for owner in owners if isinstance(owner, Mapping)] if isinstance(owners, list) else []
        if self._directory_groups is None:
            self._directory_groups = self.knowledge.directory_groups()
        if isinstance(listed, list):
            return acl_principals([p for p in listed if isinstance(p, Mapping)], owner_items, self._directory_groups)
        self.context.step(f"permissions of {name}")
        self.state.counts.permission_lookups += 1
        try:
            permissions = self.api.permissions(str(item["id"]))
        except GoogleApiError as error:
            if error.status == 404:
                raise _Vanished from error
            if error.reason not in CREDENTIAL_REASONS and (error.status in (400, 403) or (error.status or 0) >= 500):
                raise _FileFailed(f"permissions unavailable: {error}") from error
            raise
        return acl_principals(permissions, owner_items, self._directory_groups)

    def _unchanged(self, item: Mapping[str, Any], name: str, acl: tuple[str, ...], plan: tuple[str, ...],
                   record: KnowledgeDocument) -> bool:
        """Whether the record shows this very file (the module doc's "Unchanged files")."""
        types = plan[1:] if plan[0] == "export" else (plan[1],)
        modified = parse_time(item.get("modifiedTime"))
        url = item.get("webViewLink") if isinstance(item.get("webViewLink"), str) else None
        return (record.status == "indexed" and record.content_hash is not None and record.source == self.source
                and modified is not None and record.modified_time == modified and record.title == name
                and (record.url or None) == url and record.mime_type in types
                and sorted(record.acl or []) == list(acl))

    def _content(self, file_id: str, name: str, plan: tuple[str, ...]) -> tuple[bytes, str]:
        counts, limit = self.state.counts, self.parameters.max_file_bytes
        try:
            if plan[0] == "media":
                self.context.step(f"download {name}")
                reply = self.api.media(file_id, max_bytes=limit)
                counts.downloads += 1
                mime_type = plan[1]
            else:
                reply, mime_type = self._export(file_id, name, plan[1:], limit)
                counts.exports += 1
        except ContentTooLarge as error:
            raise _FileSkipped("skipped_too_large", f"more than {limit} bytes") from error
        except GoogleApiError as error:
            if error.status == 404:
                raise _Vanished from error
            if error.reason == "exportSizeLimitExceeded":
                raise _FileSkipped("skipped_too_large", "Drive will not export a file this large") from error
            if error.reason in CREDENTIAL_REASONS:
                raise
            if error.status is None or error.status in (400, 403) or error.status >= 500:
                raise _FileFailed(str(error)) from error
            raise
        counts.bytes_downloaded += len(reply.content)
        content = reply.content
        if mime_type.startswith("text/") and content.startswith(UTF8_BOM):
            content = content[len(UTF8_BOM):]  # Drive's text exports start with one
        return content, mime_type

    def _export(self, file_id: str, name: str, targets: Sequence[str], limit: int) -> tuple[Reply, str]:
        for index, target in enumerate(targets):
            self.context.step(f"export {name} as {target}")
            try:
                return self.api.export(file_id, target, max_bytes=limit), target
            except GoogleApiError as error:
                if error.status == 400 and index + 1 < len(targets):
                    continue  # this conversion is refused: the next one
                raise
        raise AssertionError("EXPORTS lists at least one type per Google type")

    def _fail_closed(self, key: str, record: KnowledgeDocument | None, acl: tuple[str, ...] | None) -> None:
        """A file that failed keeps its indexed version only while that version's ACL is still right."""
        if record is None or (acl is not None and sorted(record.acl or []) == list(acl)):
            return
        self.knowledge.remove([key])
        self.log.warning("google drive file failed and its permissions changed or are unknown: its indexed "
                         "version was removed", extra={"document_id": key})

    def _strike(self, key: str) -> None:
        if self.state.candidates is not None:
            self.state.candidates.discard(digest(key))

    def _error(self, key: str, message: str) -> None:
        if len(self.state.errors) < MAX_ERRORS or key in self.state.errors:
            self.state.errors[key] = message[:300]

    def _pipeline_progress(self, report: IngestReport) -> None:
        self._in_flight = report
        self._report(save=False)

    # -- the sweep -------------------------------------------------------------------------------

    def _sweep(self) -> None:
        state = self.state
        if state.candidates is None:
            return
        self.context.step(f"sweep {self.source}")
        doomed = [identifier for identifier in self.knowledge.source_documents(self.source)
                  if digest(identifier) in state.candidates]
        if doomed:
            state.counts.removed += self.knowledge.remove(doomed)
        state.candidates = set()
        self.swept = True

    # -- reporting -------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        state = self.state
        counts = state.counts
        counts.http_retries = self._retries_base[0] + self.api.retries
        counts.reauthentications = self._retries_base[1] + self.api.reauthentications
        return {**asdict(counts), "source": self.source, "run_id": state.run_id, "resumed": self.resumed,
                "complete": self.complete, "swept": self.swept, "sweep_skipped": state.sweep_skipped,
                "errors": dict(state.errors)}

    def _save(self) -> None:
        self.summary()  # folds this invocation's retry counters into the state
        self.context.save_checkpoint(self.state.checkpoint())

    def _report(self, *, save: bool = True) -> None:
        if save:
            self._save()
        summary = self.summary()
        flight = self._in_flight
        for name in ("seen", "new", "changed", "unchanged", "failed", "chunks_written"):
            summary[name] = int(summary[name]) + int(getattr(flight, name))
        seen, failed = int(summary["seen"]), int(summary["failed"])
        self.context.progress(processed=seen, succeeded=seen - failed, failed=failed, summary=summary)
