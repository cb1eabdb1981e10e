"""knowledge_ingest: documents uploaded with ``insightmesh ingest``, validated and ingested.

The uploader never opens the knowledge base itself: it sends the files' bytes to this function (a
Lambda invocation in AWS, the dev server's ``/_local/functions/KnowledgeIngestFunction/invoke``
locally), which validates them, builds :class:`SourceDocument` values and hands them to
:func:`insightmesh.knowledge.pipeline.ingest_documents`.

Event::

    {"source": "local:<root>",
     "documents": [{"document_id": "local:<sha256 of the absolute path>", "title": "...",
                    "filename": "handbook.md", "content_base64": "...",
                    "mime_type": "text/markdown",          # optional: guessed from filename
                    "url": "file:///...",                  # optional
                    "modified_time": "2026-11-27T10:00:00+00:00",  # optional, ISO 8601
                    "acl": ["anyone"]}],                   # optional, default ["anyone"]
     "sweep": false,
     "keep_document_ids": ["local:..."],                     # optional, with "sweep": true
     "requested_by": "cli:alice"}                            # optional: who ran the upload (audit)

Result: ``{"seen", "new", "changed", "unchanged", "failed", "removed", "chunks_written",
"errors": {document_id: message}}`` — the pipeline's report, plus the documents rejected here.

**What is refused.** An event that is not of this shape (no ``source``, ``documents`` not a list,
unknown keys) fails the invocation with a message naming the field. A document with a missing or
malformed field, content that is not base64, more than :data:`MAX_DOCUMENT_BYTES` once decoded, a
type the extractors do not read, or a ``document_id`` already in the event is *rejected* on its
own: counted as failed with its reason, while the rest of the batch is ingested. Sources and
document ids must start with ``local:``: an upload cannot overwrite, or sweep away, documents of
another source (a Drive folder's ``gdrive:...``). An ACL naming a directory group
(``group:<name>``) that does not exist rejects the document (one ``BatchGetItem`` on
``GROUPS_TABLE`` per invocation): a misspelt group would share it with no one, silently.

**Audit.** Every invocation is one ``knowledge.ingest`` entry in the audit log, ``requested_by``
as its actor (:mod:`insightmesh.knowledge.ingest_audit`): which documents, with which ACL, and
what became of them.

**Sweep.** With ``"sweep": true`` the documents of ``source`` that are gone are removed:

* with ``"keep_document_ids": [...]`` (what the CLI sends, on the last batch of a folder), every
  document of ``source`` whose id is neither there nor in this event is removed — so a folder can
  be uploaded in several invocations and swept once, at the end, whatever happened to the earlier
  batches (the ids of files that failed to upload are kept, and so are their previous versions);
* without it, the pipeline sweeps by what this event carries (it must then carry every document
  of the source); when any document of the event is rejected, nothing is swept — its previous
  version would be removed for a problem of the upload — and the report says so under the
  source's key in ``errors``.

**Init.** The module imports the pipeline (and with it the vector store's client, seconds of
imports) on the first upload rather than at import: the function's init stays well inside
Lambda's 10-second init phase, and the import runs under the invocation's own timeout.

**Time.** The pipeline stops before a document once the invocation's remaining time is below the
smaller of 30 s and a fifth of its timeout; the documents not reached are reported failed ("run the
upload again": those already done are then unchanged) and nothing is swept.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from insightmesh.aws import LambdaContextLike
from insightmesh.file_types import mime_type_for
from insightmesh.knowledge import extract
from insightmesh.knowledge.base import ANYONE, IngestReport, SourceDocument, group_names, normalise_principals
from insightmesh.knowledge.ingest_audit import IngestActor, record_ingest
from insightmesh.knowledge.models import KnowledgeDocument
from insightmesh.observability import get_logger

logger = get_logger("knowledge_ingest")

MAX_DOCUMENT_BYTES: Final = 5 * 1024 * 1024
STOP_MARGIN_MS: Final = 30_000
UPLOAD_PREFIX: Final = "local:"
UNKNOWN_ACTOR: Final = "unknown"  # an upload that does not say who ran it (older CLIs)
_URL_SCHEMES: Final = ("file://", "https://", "http://")


class UploadResult(TypedDict):
    seen: int
    new: int
    changed: int
    unchanged: int
    failed: int
    removed: int
    chunks_written: int
    errors: dict[str, str]


class UploadError(ValueError):
    """One document of the event is not acceptable; the message says why."""


class UploadEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=len(UPLOAD_PREFIX) + 1, max_length=4096, pattern=r"^local:")
    documents: list[Any]
    sweep: bool = False
    keep_document_ids: list[str] | None = None
    requested_by: str | None = Field(default=None, min_length=1, max_length=200)


class UploadedDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    document_id: str = Field(min_length=len(UPLOAD_PREFIX) + 1, max_length=512, pattern=r"^local:\S+$")
    title: str = Field(min_length=1, max_length=1024)
    filename: str = Field(min_length=1, max_length=1024)
    content_base64: str
    mime_type: str | None = Field(default=None, max_length=255)
    url: str | None = Field(default=None, max_length=4096)
    modified_time: datetime | None = None
    acl: tuple[str, ...] = Field(default=(ANYONE,), min_length=1, max_length=100)

    @field_validator("acl")
    @classmethod
    def _principals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return normalise_acl(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not value.startswith(_URL_SCHEMES):
            raise ValueError("must be a file://, https:// or http:// URL")
        return value or None

    @field_validator("modified_time")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def normalise_acl(principals: Iterable[str]) -> tuple[str, ...]:
    """Principals lower-cased and deduplicated; ValueError names any that is not one."""
    return normalise_principals(principals)


def _describe(error: ValidationError) -> str:
    problems = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "event"
        message = "missing" if problem["type"] == "missing" else problem["msg"]
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def decode_content(text: str) -> bytes:
    """The document's bytes; UploadError when not base64 or over MAX_DOCUMENT_BYTES."""
    if len(text) > (MAX_DOCUMENT_BYTES + 2) // 3 * 4 + 4:  # checked before decoding a huge string
        raise UploadError(f"larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB")
    try:
        content = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UploadError(f"content_base64 is not valid base64 ({error})") from error
    if len(content) > MAX_DOCUMENT_BYTES:
        raise UploadError(f"larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB ({len(content)} bytes)")
    return content


def resolve_mime_type(given: str | None, filename: str) -> str:
    """The declared type (normalised), else the one the file name implies; it must be one we read."""
    declared = extract.normalize_mime_type(given) if given else ""
    mime_type = declared if declared and declared != "application/octet-stream" else mime_type_for(filename)
    if not mime_type:
        raise UploadError(f"unsupported file type: cannot tell the type of {filename!r}")
    if mime_type not in extract.SUPPORTED_MIME_TYPES:
        raise UploadError(f"unsupported file type {mime_type} ({filename})")
    return mime_type


def to_source_document(raw: object, source: str) -> SourceDocument:
    """One event document as a SourceDocument; UploadError says what is wrong with it."""
    if not isinstance(raw, Mapping):
        raise UploadError("a document must be an object")
    try:
        document = UploadedDocument.model_validate(raw)
    except ValidationError as error:
        raise UploadError(_describe(error)) from error
    return SourceDocument(
        document_id=document.document_id,
        source=source,
        title=document.title,
        mime_type=resolve_mime_type(document.mime_type, document.filename),
        content=decode_content(document.content_base64),
        url=document.url,
        modified_time=document.modified_time,
        acl=document.acl,
    )


def missing_groups(names: Iterable[str]) -> set[str]:
    """The directory group names among ``names`` that no group has (one ``BatchGetItem`` per 100)."""
    from insightmesh.directory.models import Group

    wanted = sorted(set(names))
    found: set[str] = set()
    for start in range(0, len(wanted), 100):
        found.update(str(group.name) for group in Group.batch_get(wanted[start:start + 100],
                                                                   attributes_to_get=["name"]))
    return set(wanted) - found


def _refuse_unknown_groups(documents: list[SourceDocument], rejected: dict[str, str]) -> list[SourceDocument]:
    """``documents`` without those whose ACL names a group that does not exist (moved to ``rejected``)."""
    names = {name for document in documents for name in group_names(document.acl)}
    missing = missing_groups(names) if names else set()
    if not missing:
        return documents
    kept = []
    for document in documents:
        unknown = [name for name in group_names(document.acl) if name in missing]
        if unknown:
            rejected[document.document_id] = (
                f"acl: no directory group named {', '.join(repr(name) for name in unknown)}: create it first "
                "(POST /api/groups) or check the name (GET /api/groups lists them)")
        else:
            kept.append(document)
    return kept


def _key(raw: object, index: int) -> str:
    if isinstance(raw, Mapping) and isinstance(raw.get("document_id"), str) and raw["document_id"].strip():
        return str(raw["document_id"]).strip()
    return f"documents[{index}]"


class _Deadline:
    """``should_stop`` for the pipeline: true once the invocation's remaining time drops below a
    margin (the smaller of 30 s and a fifth of the time it started with), remembering it fired."""

    def __init__(self, context: LambdaContextLike | None) -> None:
        self.context = context if callable(getattr(context, "get_remaining_time_in_millis", None)) else None
        start = self.context.get_remaining_time_in_millis() if self.context is not None else 0
        self.margin_ms = min(STOP_MARGIN_MS, start // 5)
        self.fired = False

    def __call__(self) -> bool:
        if self.context is not None and self.context.get_remaining_time_in_millis() < self.margin_ms:
            self.fired = True
        return self.fired


def _sweep(source: str, keep: set[str]) -> int:
    """Remove the documents of ``source`` whose ids are not in ``keep``; how many were removed."""
    known = [record.document_id for record in KnowledgeDocument.by_source.query(
        source, attributes_to_get=["document_id"])]
    from insightmesh.knowledge import pipeline

    return pipeline.remove_documents(document_id for document_id in known if document_id not in keep)


def handle(event: Mapping[str, Any], context: LambdaContextLike | None = None) -> UploadResult:
    """The Lambda handler's body: validate the upload, ingest what is acceptable, sweep, report."""
    if not isinstance(event, Mapping):
        raise ValueError("not a knowledge_ingest event: expected an object with source and documents")
    try:
        upload = UploadEvent.model_validate(event)
    except ValidationError as error:
        raise ValueError(f"not a knowledge_ingest event: {_describe(error)}") from error
    if upload.keep_document_ids is not None and not upload.sweep:
        raise ValueError("not a knowledge_ingest event: keep_document_ids goes with \"sweep\": true")

    documents: list[SourceDocument] = []
    seen_ids: set[str] = set()
    rejected: dict[str, str] = {}
    for index, raw in enumerate(upload.documents):
        key = _key(raw, index)
        try:
            document = to_source_document(raw, upload.source)
            if document.document_id in seen_ids:
                raise UploadError("duplicate document_id in this upload")
        except UploadError as error:
            rejected[key if key not in rejected else f"{key} (documents[{index}])"] = str(error)
            continue
        seen_ids.add(document.document_id)
        documents.append(document)
    parsed = {document.document_id: document for document in documents}
    documents = _refuse_unknown_groups(documents, rejected)

    errors: dict[str, str] = dict(rejected)
    deadline = _Deadline(context)
    keep = None if upload.keep_document_ids is None else {*upload.keep_document_ids, *seen_ids}
    # Without a keep list the pipeline sweeps by what this event carries — so not when part of it
    # was rejected (its previous version would be removed for a problem of the upload).
    native_sweep = upload.sweep and keep is None and not rejected
    if upload.sweep and keep is None and rejected:
        errors[upload.source] = (f"not swept: {len(rejected)} document(s) of the upload were rejected, "
                                 "so nothing was removed")
    from insightmesh.knowledge import pipeline  # the vector store's client: on the first upload, not at init

    report: IngestReport = pipeline.ingest_documents(
        documents, sweep_source=upload.source if native_sweep else None, should_stop=deadline)
    errors.update(report.errors)
    unprocessed = documents[report.seen:] if deadline.fired else []
    for document in unprocessed:
        errors[document.document_id] = "not ingested: the invocation ran out of time; run the upload again"
    removed = report.removed
    if deadline.fired and upload.sweep:
        errors[upload.source] = "not swept: the invocation ran out of time before the end of the upload"
    elif keep is not None:
        removed += _sweep(upload.source, keep)
    failed = report.failed + len(rejected) + len(unprocessed)
    result = UploadResult(seen=report.seen + len(rejected) + len(unprocessed), new=report.new,
                          changed=report.changed, unchanged=report.unchanged, failed=failed, removed=removed,
                          chunks_written=report.chunks_written, errors=errors)
    refused = {key: (parsed[key].title, parsed[key].acl) if key in parsed else ("", ()) for key in rejected}
    record_ingest(actor=IngestActor(upload.requested_by or UNKNOWN_ACTOR, upload.requested_by or UNKNOWN_ACTOR),
                  source=upload.source, report=report, rejected=refused, removed=removed,
                  request_id=str(getattr(context, "aws_request_id", "") or "-"))
    logger.info("upload ingested", extra={
        "source": upload.source, "sweep": upload.sweep, **{k: v for k, v in result.items() if k != "errors"},
        "failed_documents": sorted(errors)[:20]})
    return result
