"""A stand-in for the Google Drive API v3 on loopback (stdlib ``ThreadingHTTPServer``, 127.0.0.1).

Start it in-process::

    drive = GoogleDriveServer(port=0).start()              # drive.url = "http://127.0.0.1:<port>"
    folder = drive.add_folder("Handbook", permissions=["group:staff@corp.example"])
    drive.add_file("Leave.md", parent=folder, mime_type="text/markdown", content="# Leave\\n...")
    drive.add_file("Plan", parent=folder, mime_type=GOOGLE_DOC, content="# Plan\\n...")
    ...                                                     # GOOGLE_DRIVE_API_URL = drive.url
    drive.stop()

or as a process: ``python -m tests.standins.google_drive_server --port 8767 --token T``.

Wire format (as Google documents it; ``Authorization: Bearer <access token>``; JSON unless noted):

* ``GET /drive/v3/files?q=&pageSize=(1-1000, default 100)&pageToken=&fields=&corpora=user|drive|allDrives
  &driveId=&supportsAllDrives=&includeItemsFromAllDrives=`` → ``{"kind": "drive#fileList",
  "incompleteSearch": false, "files": [...], "nextPageToken"?}``. ``q`` is a conjunction (``and``) of
  ``'<id>' in parents``, ``trashed = true|false``, ``mimeType = '<type>'`` and ``mimeType != '<type>'``;
  anything else is 400 ``invalid``. Items of a Shared Drive are listed only with
  ``includeItemsFromAllDrives=true`` and ``corpora=allDrives`` (or ``corpora=drive&driveId=``);
  ``includeItemsFromAllDrives=true`` without ``supportsAllDrives=true`` is 400 (the stand-in's rule).
  Order: the order the files were added. Page tokens are opaque and bound to their listing.
* ``GET /drive/v3/files/{id}?fields=&supportsAllDrives=`` → the file's metadata (a Shared Drive's id is
  its root folder). A Shared Drive item without ``supportsAllDrives=true`` → 404 ``notFound``, as Google.
* ``GET /drive/v3/files/{id}?alt=media`` → the bytes, ``Content-Type`` = the file's MIME type; a
  Google Docs Editors file → 403 ``fileNotDownloadable``; a folder → 403 ``fileNotDownloadable``.
* ``GET /drive/v3/files/{id}/export?mimeType=`` → a Google Doc (stored as Markdown) as ``text/markdown``
  (unless :attr:`markdown_export` is off), ``text/plain`` or ``text/html``; a Sheet (stored as CSV
  text or a list of rows) as ``text/csv`` or ``text/tab-separated-values``; Slides (stored as text)
  as ``text/plain``. Another target → 400 ``badRequest`` ("The requested conversion is not
  supported."); a file that is not a Docs Editors file → 403 ``fileNotExportable``; a body larger
  than :attr:`export_size_limit` → 403 ``exportSizeLimitExceeded``.
* ``GET /drive/v3/files/{id}/permissions?fields=&pageSize=(1-100, default 100)&pageToken=&supportsAllDrives=``
  → ``{"kind": "drive#permissionList", "permissions": [...], "nextPageToken"?}``.
* Metadata: ``kind, id, name, mimeType, parents, trashed, createdTime, modifiedTime, version,
  webViewLink`` for every file; ``size`` and ``md5Checksum`` for binary files; ``driveId`` for
  Shared Drive items; ``owners`` and ``permissions`` only for My Drive items (Google leaves
  ``permissions`` out of Shared Drive items: read them with the permissions endpoint). Permissions
  are the file's own plus those of its folders (inherited, as Drive lists them), and for Shared
  Drive items the drive's members (``permissionDetails`` mark them inherited). A permission:
  ``kind, id, type (user|group|domain|anyone), role, emailAddress | domain, displayName, deleted?``.
  ``fields`` is honoured (partial response ``a,b(c,d)``; ``*`` selects everything); without it only
  ``kind, id, name, mimeType`` (and ``nextPageToken``/``files`` of a listing) come back, as Google.
  ``modifiedTime`` changes with the content or the name (not with sharing); ``version`` with every change.
* Errors are Google's envelope ``{"error": {"code", "message", "errors": [{"message", "domain",
  "reason", "location"?}]}}``: 401 ``authError`` for a missing or refused token, 403
  ``insufficientPermissions`` for a valid token without a Drive scope for the call.

Tokens: ``validator(token, scope) -> bool`` decides (the Google OAuth stand-in's
``is_valid_access_token``): metadata calls accept ``drive``, ``drive.readonly``, ``drive.metadata``
and ``drive.metadata.readonly``; content calls (``alt=media``, ``export``) only ``drive`` and
``drive.readonly``. Without a validator, the tokens registered with ``tokens=`` / :meth:`add_token`
are accepted for everything.

Failure injection: :meth:`fail_next` — the next ``count`` calls of an endpoint (``list``, ``get``,
``permissions``, ``media``, ``export`` or ``*``) answer 429 with ``Retry-After``, 403
``userRateLimitExceeded`` / ``rateLimitExceeded``, a 5xx or 401; :meth:`fail_file` — a file's content
(``alt=media`` / ``export``) fails with the given status and reason (always, or ``count`` times).
Every API call is recorded (:meth:`calls`: method, endpoint, path, file id, query, status, the
token's SHA-256 prefix — never the token). Control over HTTP (not Google): ``POST /_control/fail``,
``GET /_control/calls``, ``POST /_control/reset``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.standins.google_directory_server import parse_fields, select_fields
from tests.standins.http import JsonHandler, StandinServer, serve_until_signalled

HOST = "127.0.0.1"
SCOPE_ROOT = "https://www.googleapis.com/auth/"
CONTENT_SCOPES = tuple(SCOPE_ROOT + s for s in ("drive", "drive.readonly"))
METADATA_SCOPES = (*CONTENT_SCOPES, *(SCOPE_ROOT + s for s in ("drive.metadata", "drive.metadata.readonly")))
DEFAULT_TOKEN = "ya29.standin-drive-token"
PREFIX = "/drive/v3/files"

FOLDER = "application/vnd.google-apps.folder"
GOOGLE_DOC = "application/vnd.google-apps.document"
GOOGLE_SHEET = "application/vnd.google-apps.spreadsheet"
GOOGLE_SLIDES = "application/vnd.google-apps.presentation"
GOOGLE_PREFIX = "application/vnd.google-apps."
EXPORTS: dict[str, tuple[str, ...]] = {
    GOOGLE_DOC: ("text/markdown", "text/plain", "text/html"),
    GOOGLE_SHEET: ("text/csv", "text/tab-separated-values"),
    GOOGLE_SLIDES: ("text/plain",),
}
FAIL_MODES = ("429", "userRateLimitExceeded", "rateLimitExceeded", "5xx", "401")
ENDPOINTS = ("list", "get", "permissions", "media", "export")
ROLE_RANK = {"reader": 0, "commenter": 1, "writer": 2, "fileOrganizer": 3, "organizer": 4, "owner": 5}
EPOCH = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)

Validator = Callable[[str, str], bool]
Reply = tuple[int, Any, dict[str, str]]  # status, JSON body or bytes, headers


def _error(code: int, message: str, reason: str, *, location: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"message": message, "domain": "global", "reason": reason}
    if location:
        detail.update(locationType="parameter", location=location)
    return {"error": {"code": code, "message": message, "errors": [detail]}}


def _select(value: Any, spec: str | None, default: str) -> Any:
    text = spec if spec else default
    if text.strip() == "*":
        return value
    return select_fields(value, _star(parse_fields(text)))


def _star(tree: dict[str, Any]) -> dict[str, Any]:
    """``files(*)`` selects everything below ``files`` (as ``files``)."""
    return {key: ({} if "*" in sub else _star(sub)) for key, sub in tree.items()}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _digits(value: str, length: int = 20) -> str:
    return str(int(hashlib.sha256(value.encode()).hexdigest()[:24], 16))[:length]


# -- permissions ------------------------------------------------------------------------------------


def permission(spec: str | Mapping[str, Any], role: str = "reader") -> dict[str, Any]:
    """A Drive permission from ``"user:ada@x"``, ``"group:g@x"``, ``"domain:x"``, ``"anyone"`` (an
    optional ``":<role>"`` suffix: ``"user:ada@x:writer"``) or a dict of the wire fields."""
    if isinstance(spec, Mapping):
        result = {"role": role, **{key: value for key, value in spec.items()}}
        result.setdefault("type", "user")
    else:
        kind, _, rest = spec.partition(":")
        if kind == "anyone":
            result = {"type": "anyone", "role": rest or role}
        else:
            value, _, named_role = rest.partition(":")
            if kind in ("user", "group"):
                result = {"type": kind, "role": named_role or role, "emailAddress": value}
            elif kind == "domain":
                result = {"type": kind, "role": named_role or role, "domain": value}
            else:
                raise ValueError(f"unknown permission type in {spec!r}")
    kind = str(result["type"])
    if kind not in ("user", "group", "domain", "anyone"):
        raise ValueError(f"unknown permission type {kind!r}")
    if result["role"] not in ROLE_RANK:
        raise ValueError(f"unknown role {result['role']!r}")
    identity = str(result.get("emailAddress") or result.get("domain") or "")
    result.setdefault("id", "anyoneWithLink" if kind == "anyone" else _digits(f"{kind}:{identity.lower()}"))
    result.setdefault("kind", "drive#permission")
    if kind in ("user", "group"):
        result.setdefault("displayName", identity.partition("@")[0].replace(".", " ").title())
    if kind in ("domain", "anyone"):
        result.setdefault("allowFileDiscovery", False)
    return result


def _identity(perm: Mapping[str, Any]) -> tuple[str, str]:
    return str(perm["type"]), str(perm.get("emailAddress") or perm.get("domain") or "").lower()


# -- state ------------------------------------------------------------------------------------------


@dataclass
class FailRule:
    mode: str
    remaining: int
    endpoint: str = "*"
    retry_after: int | None = 1
    status: int = 503


@dataclass
class FileFailure:
    status: int
    reason: str
    message: str
    remaining: int | None  # None: every time


@dataclass
class DriveFile:
    id: str
    name: str
    mime_type: str
    parents: list[str]
    drive_id: str | None
    content: Any  # bytes (binary), str (Docs/Slides, Sheets as CSV) or rows (Sheets); None for folders
    own_permissions: list[dict[str, Any]]
    owner: str | None
    created: datetime
    modified: datetime
    version: int = 1
    trashed: bool = False

    @property
    def is_google(self) -> bool:
        return self.mime_type.startswith(GOOGLE_PREFIX)

    def data(self) -> bytes:
        if isinstance(self.content, bytes):
            return self.content
        if isinstance(self.content, str):
            return self.content.encode("utf-8")
        return b""


@dataclass
class SharedDrive:
    id: str
    name: str
    members: list[dict[str, Any]] = field(default_factory=list)


class GoogleDriveServer(StandinServer):
    thread_name = "google-drive-standin"
    """The server and its Drive (every method is thread-safe)."""

    def __init__(self, port: int = 0, *, tokens: Iterable[str] = (DEFAULT_TOKEN,),
                 validator: Validator | None = None, default_owner: str = "owner@corp.example") -> None:
        self.port = port
        self.validator = validator
        self.default_owner = default_owner
        self.markdown_export = True  # off: a Doc's text/markdown export is refused (400), as older Drive
        self.export_size_limit = 10 * 1024 * 1024  # Google's limit on exported content
        self._tokens = set(tokens)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._clock = EPOCH
        self._files: dict[str, DriveFile] = {}  # insertion order = listing order
        self._drives: dict[str, SharedDrive] = {}
        self._failures: list[FailRule] = []
        self._file_failures: dict[str, FileFailure] = {}
        self._calls: list[dict[str, Any]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.root_id = self._new_id("0A")
        self._files[self.root_id] = DriveFile(self.root_id, "My Drive", FOLDER, [], None, None, [], default_owner,
                                              self._tick(), self._clock)

    # -- lifecycle -------------------------------------------------------------------------------

    def _new_server(self, port: int) -> _Server:
        return _Server(port, self)

    # -- tokens ----------------------------------------------------------------------------------

    def add_token(self, token: str) -> None:
        with self._lock:
            self._tokens.add(token)

    def authorised(self, token: str | None, scopes: Sequence[str]) -> bool:
        if not token:
            return False
        if self.validator is not None:
            return any(self.validator(token, scope) for scope in scopes)
        with self._lock:
            return token in self._tokens

    # -- the Drive -------------------------------------------------------------------------------

    def _new_id(self, prefix: str = "1") -> str:
        digest = hashlib.sha256(f"drive-standin-{next(self._ids)}".encode()).digest()
        return prefix + base64.urlsafe_b64encode(digest).decode().rstrip("=")[:31]

    def _tick(self, at: datetime | str | None = None) -> datetime:
        """The stand-in's clock: a minute on at every change (or the time given)."""
        if at is not None:
            moment = datetime.fromisoformat(at.replace("Z", "+00:00")) if isinstance(at, str) else at
            self._clock = max(self._clock, moment)
            return moment
        self._clock += timedelta(minutes=1)
        return self._clock

    def _parent(self, parent: str | None) -> tuple[str, str | None]:
        key = self.root_id if parent in (None, "root") else str(parent)
        item = self._files.get(key)
        if item is None or item.mime_type != FOLDER:
            raise KeyError(f"no folder {parent!r}")
        return key, item.drive_id

    def add_shared_drive(self, name: str, *, members: Iterable[str | Mapping[str, Any]] = (),
                         drive_id: str | None = None) -> str:
        """A Shared Drive (its id is also its root folder's); ``members``: permissions (role
        ``organizer`` unless given)."""
        with self._lock:
            identifier = drive_id or self._new_id("0A")
            self._drives[identifier] = SharedDrive(identifier, name,
                                                   [permission(m, "organizer") for m in members])
            moment = self._tick()
            self._files[identifier] = DriveFile(identifier, name, FOLDER, [], identifier, None, [], None,
                                                moment, moment)
            return identifier

    def add_folder(self, name: str, *, parent: str | None = None, permissions: Iterable[str | Mapping[str, Any]] = (),
                   owner: str | None = None, folder_id: str | None = None) -> str:
        return self.add_file(name, parent=parent, mime_type=FOLDER, content=None, permissions=permissions,
                             owner=owner, file_id=folder_id)

    def add_file(self, name: str, *, parent: str | None = None, mime_type: str = "text/plain",
                 content: bytes | str | Sequence[Sequence[str]] | None = b"",
                 permissions: Iterable[str | Mapping[str, Any]] = (), owner: str | None = None,
                 file_id: str | None = None, modified_time: datetime | str | None = None) -> str:
        """Add a file (``parent``: a folder id, a Shared Drive id or None for My Drive's root).
        Google Docs/Slides take text (Docs in Markdown), Sheets CSV text or rows; others bytes or text.
        My Drive items get ``owner`` (default :attr:`default_owner`) as an owner permission."""
        with self._lock:
            parent_id, drive_id = self._parent(parent)
            identifier = file_id or self._new_id()
            moment = self._tick(modified_time)
            if mime_type == FOLDER:
                stored: Any = None
            elif mime_type.startswith(GOOGLE_PREFIX):
                stored = [list(row) for row in content] if isinstance(content, list | tuple) else \
                    (content.decode() if isinstance(content, bytes) else str(content or ""))
            else:
                stored = content if isinstance(content, bytes) else str(content or "").encode("utf-8")
            self._files[identifier] = DriveFile(
                identifier, name, mime_type, [parent_id], drive_id, stored,
                [permission(p) for p in permissions], None if drive_id else (owner or self.default_owner),
                moment, moment)
            return identifier

    def update_file(self, file_id: str, *, content: bytes | str | Sequence[Sequence[str]] | None = None,
                    name: str | None = None, permissions: Iterable[str | Mapping[str, Any]] | None = None,
                    parent: str | None = None, mime_type: str | None = None,
                    modified_time: datetime | str | None = None) -> None:
        """Change a file: content or name (new ``modifiedTime``), sharing (``permissions`` replaces the
        file's own; ``modifiedTime`` unchanged, as Drive) or folder. ``version`` grows with each."""
        with self._lock:
            item = self._file(file_id)
            if mime_type is not None:
                item.mime_type = mime_type
            if content is not None:
                if item.is_google:
                    item.content = [list(row) for row in content] if isinstance(content, list | tuple) else \
                        (content.decode() if isinstance(content, bytes) else str(content))
                else:
                    item.content = content if isinstance(content, bytes) else str(content).encode("utf-8")
            if name is not None:
                item.name = name
            if content is not None or name is not None or mime_type is not None:
                item.modified = self._tick(modified_time)
            if permissions is not None:
                item.own_permissions = [permission(p) for p in permissions]
            if parent is not None:
                parent_id, drive_id = self._parent(parent)
                item.parents, item.drive_id = [parent_id], drive_id
            item.version += 1

    def remove_file(self, file_id: str, *, trash: bool = False) -> None:
        """Delete a file (a folder with everything below it), or move it to the trash."""
        with self._lock:
            item = self._file(file_id)
            if trash:
                item.trashed = True
                item.version += 1
                return
            doomed = {item.id}
            grew = True
            while grew:
                below = {f.id for f in self._files.values() if set(f.parents) & doomed} - doomed
                grew = bool(below)
                doomed |= below
            for identifier in doomed:
                self._files.pop(identifier, None)
                self._file_failures.pop(identifier, None)

    def file(self, file_id: str) -> dict[str, Any]:
        """A file's full metadata as Google would list it (every field)."""
        with self._lock:
            return self._resource(self._file(file_id))

    def _file(self, file_id: str) -> DriveFile:
        item = self._files.get(unquote(file_id))
        if item is None:
            raise KeyError(f"no file {file_id!r}")
        return item

    def effective_permissions(self, item: DriveFile) -> list[dict[str, Any]]:
        """Own, then inherited from the folders above, then the Shared Drive's members (best role once)."""
        found: dict[tuple[str, str], dict[str, Any]] = {}

        def add(perm: Mapping[str, Any], inherited_from: str | None) -> None:
            key = _identity(perm)
            current = found.get(key)
            if current is not None and ROLE_RANK[current["role"]] >= ROLE_RANK[str(perm["role"])]:
                return
            value = dict(perm)
            if inherited_from is not None and item.drive_id:
                value["permissionDetails"] = [{"permissionType": "file" if inherited_from != item.drive_id
                                               else "member", "role": value["role"], "inherited": True,
                                               "inheritedFrom": inherited_from}]
            found[key] = value

        if item.owner:
            add(permission(f"user:{item.owner}", "owner"), None)
        for perm in item.own_permissions:
            add(perm, None)
        seen: set[str] = {item.id}
        pending = list(item.parents)
        while pending:
            parent = self._files.get(pending.pop(0))
            if parent is None or parent.id in seen:
                continue
            seen.add(parent.id)
            for perm in parent.own_permissions:
                add(perm, parent.id)
            pending.extend(parent.parents)
        if item.drive_id and item.drive_id in self._drives:
            for perm in self._drives[item.drive_id].members:
                add(perm, item.drive_id)
        return list(found.values())

    def _resource(self, item: DriveFile) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "kind": "drive#file", "id": item.id, "name": item.name, "mimeType": item.mime_type,
            "parents": list(item.parents), "trashed": item.trashed, "createdTime": _rfc3339(item.created),
            "modifiedTime": _rfc3339(item.modified), "version": str(item.version),
            "webViewLink": self._link(item)}
        if not item.is_google:
            data = item.data()
            resource["size"] = str(len(data))
            resource["md5Checksum"] = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if item.drive_id:
            resource["driveId"] = item.drive_id
        else:
            if item.owner:
                resource["owners"] = [{"kind": "drive#user", "displayName": item.owner.partition("@")[0].title(),
                                       "emailAddress": item.owner, "me": False,
                                       "permissionId": _digits(f"user:{item.owner.lower()}")}]
            resource["permissions"] = self.effective_permissions(item)
        if item.id in self._drives:
            resource["parents"] = []
        return resource

    @staticmethod
    def _link(item: DriveFile) -> str:
        if item.mime_type == FOLDER:
            return f"https://drive.google.com/drive/folders/{item.id}"
        kinds = {GOOGLE_DOC: "document", GOOGLE_SHEET: "spreadsheets", GOOGLE_SLIDES: "presentation"}
        if item.mime_type in kinds:
            return f"https://docs.google.com/{kinds[item.mime_type]}/d/{item.id}/edit?usp=drivesdk"
        return f"https://drive.google.com/file/d/{item.id}/view?usp=drivesdk"

    # -- failures and calls ----------------------------------------------------------------------

    def fail_next(self, mode: str, count: int = 1, *, retry_after: int | None = 1, status: int = 503,
                  endpoint: str = "*") -> None:
        """The next ``count`` calls of ``endpoint`` answer ``mode`` (see the module doc) instead."""
        if mode not in FAIL_MODES or count < 1 or endpoint not in ("*", *ENDPOINTS):
            raise ValueError(f"mode one of {FAIL_MODES}, count >= 1, endpoint one of {ENDPOINTS} or *")
        if mode == "5xx" and not 500 <= status <= 599:
            raise ValueError("status must be 5xx")
        with self._lock:
            self._failures.append(FailRule(mode, count, endpoint, retry_after, status))

    def fail_file(self, file_id: str, *, status: int = 403, reason: str = "cannotDownloadFile",
                  message: str = "The user does not have sufficient permissions to download this file.",
                  count: int | None = None) -> None:
        """The content of ``file_id`` (``alt=media`` or ``export``) fails: always, or ``count`` times."""
        with self._lock:
            self._file(file_id)
            self._file_failures[file_id] = FileFailure(status, reason, message, count)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._file_failures.clear()

    def _take_failure(self, endpoint: str) -> FailRule | None:
        with self._lock:
            for rule in self._failures:
                if rule.endpoint in ("*", endpoint):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._failures.remove(rule)
                    return rule
        return None

    def calls(self, endpoint: str | None = None, *, file_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(call) for call in self._calls if (endpoint is None or call["endpoint"] == endpoint)
                    and (file_id is None or call["file_id"] == file_id)]

    def reset(self) -> None:
        """Forget calls and pending failures (the Drive stays)."""
        with self._lock:
            self._calls.clear()
            self.clear_failures()

    # -- requests --------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], authorization: str | None) -> Reply:
        token = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else None
        endpoint, file_id = self._route(path, query)
        reply: Reply
        if endpoint is None:
            reply = (404, _error(404, "Not Found", "notFound"), {})
        elif method != "GET":
            reply = (405, _error(405, "Method not allowed", "httpMethodNotAllowed"), {})
        elif not token or not self.authorised(token, METADATA_SCOPES):
            message = ("The request is missing a valid API key." if not token else
                       "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                       "cookie or other valid authentication credential.")
            reply = (401, _error(401, message, "authError", location="Authorization"),
                     {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        elif endpoint in ("media", "export") and not self.authorised(token, CONTENT_SCOPES):
            reply = (403, _error(403, "Request had insufficient authentication scopes.", "insufficientPermissions"),
                     {})
        else:
            reply = self._failure(endpoint) or self._answer(endpoint, file_id, query)
        with self._lock:
            self._calls.append({"at": time.time(), "method": method, "endpoint": endpoint, "path": path,
                                "file_id": file_id, "query": dict(query), "status": reply[0],
                                "token_sha256": hashlib.sha256(token.encode()).hexdigest()[:12] if token else None})
        return reply

    @staticmethod
    def _route(path: str, query: Mapping[str, str]) -> tuple[str | None, str | None]:
        if path == PREFIX:
            return "list", None
        if not path.startswith(PREFIX + "/"):
            return None, None
        parts = [unquote(part) for part in path[len(PREFIX) + 1:].split("/")]
        if len(parts) == 1 and parts[0]:
            return ("media" if query.get("alt") == "media" else "get"), parts[0]
        if len(parts) == 2 and parts[0] and parts[1] in ("export", "permissions"):
            return parts[1], parts[0]
        return None, None

    def _failure(self, endpoint: str) -> Reply | None:
        rule = self._take_failure(endpoint)
        if rule is None:
            return None
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        if rule.mode == "429":
            return 429, _error(429, "Rate Limit Exceeded", "rateLimitExceeded"), headers
        if rule.mode == "userRateLimitExceeded":
            return 403, _error(403, "User Rate Limit Exceeded", "userRateLimitExceeded"), headers
        if rule.mode == "rateLimitExceeded":
            return 403, _error(403, "Rate Limit Exceeded", "rateLimitExceeded"), headers
        if rule.mode == "401":
            return (401, _error(401, "Request had invalid authentication credentials.", "authError"),
                    {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        return rule.status, _error(rule.status, "Backend Error", "backendError"), {}

    def _answer(self, endpoint: str, file_id: str | None, query: dict[str, str]) -> Reply:
        try:
            with self._lock:
                if endpoint == "list":
                    return self._list(query)
                assert file_id is not None
                item = self._files.get(file_id)
                shared_ok = query.get("supportsAllDrives") == "true" or endpoint == "export"
                if item is None or (item.drive_id and not shared_ok):
                    return 404, _error(404, f"File not found: {file_id}.", "notFound", location="fileId"), {}
                if endpoint == "get":
                    return 200, _select(self._resource(item), query.get("fields"), "kind,id,name,mimeType"), {}
                if endpoint == "permissions":
                    return self._permissions(item, query)
                return self._content(endpoint, item, query)
        except ValueError as error:
            return 400, _error(400, f"Invalid Value: {error}", "invalid", location="fields"), {}

    def _list(self, query: dict[str, str]) -> Reply:
        try:
            size = int(query.get("pageSize") or 100)
        except ValueError:
            size = 0
        if not 1 <= size <= 1000:
            return 400, _error(400, f"Invalid value '{query.get('pageSize')}'. Values must be within the range: "
                                    "[1, 1000]", "invalid", location="pageSize"), {}
        all_drives = query.get("includeItemsFromAllDrives") == "true"
        if all_drives and query.get("supportsAllDrives") != "true":
            return 400, _error(400, "The includeItemsFromAllDrives parameter can only be set to true when "
                                    "supportsAllDrives is set to true.", "invalid",
                               location="includeItemsFromAllDrives"), {}
        corpora = query.get("corpora") or "user"
        if corpora not in ("user", "drive", "allDrives", "domain"):
            return 400, _error(400, f"Invalid Value: corpora={corpora}", "invalid", location="corpora"), {}
        drive_id = query.get("driveId")
        if corpora == "drive" and (not drive_id or drive_id not in self._drives):
            return 404, _error(404, f"Shared drive not found: {drive_id}", "notFound", location="driveId"), {}
        try:
            matches = _query(query.get("q") or "")
        except ValueError as error:
            return 400, _error(400, f"Invalid Value: {error}", "invalid", location="q"), {}
        items = []
        for item in self._files.values():
            if item.id == self.root_id or item.id in self._drives or not matches(item):
                continue
            if item.drive_id and not (all_drives and corpora in ("allDrives", "drive")):
                continue
            if corpora == "drive" and item.drive_id != drive_id:
                continue
            items.append(self._resource(item))
        listing_key = json.dumps([query.get("q"), corpora, drive_id, all_drives], sort_keys=True)
        offset = 0
        if query.get("pageToken"):
            offset = _offset(query["pageToken"], listing_key)
            if offset < 0:
                return 400, _error(400, "Invalid Value", "invalid", location="pageToken"), {}
        page = items[offset:offset + size]
        body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False, "files": page}
        if offset + size < len(items):
            body["nextPageToken"] = _token(offset + size, listing_key)
        return 200, _select(body, query.get("fields"), "kind,incompleteSearch,nextPageToken,files(kind,id,name,"
                                                       "mimeType)"), {}

    def _permissions(self, item: DriveFile, query: dict[str, str]) -> Reply:
        try:
            size = int(query.get("pageSize") or 100)
        except ValueError:
            size = 0
        if not 1 <= size <= 100:
            return 400, _error(400, "Invalid Value", "invalid", location="pageSize"), {}
        items = self.effective_permissions(item)
        listing_key = f"permissions:{item.id}"
        offset = _offset(query["pageToken"], listing_key) if query.get("pageToken") else 0
        if offset < 0:
            return 400, _error(400, "Invalid Value", "invalid", location="pageToken"), {}
        body: dict[str, Any] = {"kind": "drive#permissionList", "permissions": items[offset:offset + size]}
        if offset + size < len(items):
            body["nextPageToken"] = _token(offset + size, listing_key)
        return 200, _select(body, query.get("fields"), "kind,nextPageToken,permissions(kind,id,type,role)"), {}

    def _content(self, endpoint: str, item: DriveFile, query: dict[str, str]) -> Reply:
        failure = self._file_failures.get(item.id)
        if failure is not None:
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self._file_failures[item.id]
            return failure.status, _error(failure.status, failure.message, failure.reason), {}
        if endpoint == "media":
            if item.is_google:
                return 403, _error(403, "Only files with binary content can be downloaded. Use Export with Docs "
                                        "Editors files.", "fileNotDownloadable", location="alt"), {}
            return 200, item.data(), {"Content-Type": item.mime_type}
        target = query.get("mimeType") or ""
        if not target:
            return 400, _error(400, "Required parameter: mimeType", "required", location="mimeType"), {}
        if item.mime_type not in EXPORTS:
            return 403, _error(403, "Export only supports Docs Editors files.", "fileNotExportable"), {}
        if target not in EXPORTS[item.mime_type] or (target == "text/markdown" and not self.markdown_export):
            return 400, _error(400, "The requested conversion is not supported.", "badRequest",
                               location="convertTo"), {}
        data = _export(item, target)
        if len(data) > self.export_size_limit:
            return 403, _error(403, "This file is too large to be exported.", "exportSizeLimitExceeded"), {}
        return 200, data, {"Content-Type": f"{target}; charset=utf-8"}


# -- q, page tokens, exports ------------------------------------------------------------------------

_CLAUSE = re.compile(r"\s*(?:'(?P<parent>(?:[^'\\]|\\.)*)'\s+in\s+parents"
                     r"|trashed\s*=\s*(?P<trashed>true|false)"
                     r"|mimeType\s*(?P<op>=|!=)\s*'(?P<mime>(?:[^'\\]|\\.)*)')\s*", re.IGNORECASE)


def _query(q: str) -> Callable[[DriveFile], bool]:
    """The predicate of a ``q`` conjunction (see the module doc); ValueError for anything else."""
    tests: list[Callable[[DriveFile], bool]] = []
    position = 0
    text = q.strip()
    while text and position < len(text):
        match = _CLAUSE.match(text, position)
        if match is None:
            raise ValueError(f"q: cannot parse at {text[position:position + 30]!r}")
        if match.group("parent") is not None:
            parent = match.group("parent").replace("\\'", "'")
            tests.append(lambda item, parent=parent: parent in item.parents)
        elif match.group("trashed") is not None:
            wanted = match.group("trashed").lower() == "true"
            tests.append(lambda item, wanted=wanted: item.trashed == wanted)
        else:
            mime, equal = match.group("mime"), match.group("op") == "="
            tests.append(lambda item, mime=mime, equal=equal: (item.mime_type == mime) == equal)
        position = match.end()
        if position < len(text):
            conjunction = re.compile(r"and\s+", re.IGNORECASE).match(text, position)
            if conjunction is None:
                raise ValueError(f"q: expected 'and' at {text[position:position + 30]!r}")
            position = conjunction.end()
    return lambda item: all(test(item) for test in tests)


def _token(offset: int, listing_key: str) -> str:
    raw = json.dumps({"o": offset, "k": hashlib.sha256(listing_key.encode()).hexdigest()[:16]})
    return "~!" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _offset(token: str, listing_key: str) -> int:
    try:
        if not token.startswith("~!"):
            return -1
        body = token[2:]
        decoded = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        offset = int(decoded["o"])
        if decoded["k"] != hashlib.sha256(listing_key.encode()).hexdigest()[:16] or offset < 0:
            return -1
        return offset
    except (ValueError, KeyError, TypeError):
        return -1


def _rows(item: DriveFile) -> list[list[str]]:
    if isinstance(item.content, list):
        return [[str(cell) for cell in row] for row in item.content]
    return [list(row) for row in csv.reader(io.StringIO(str(item.content or "")))]


def _export(item: DriveFile, target: str) -> bytes:
    if item.mime_type == GOOGLE_SHEET:
        out = io.StringIO()
        writer = csv.writer(out, delimiter="\t" if target == "text/tab-separated-values" else ",",
                            lineterminator="\r\n")
        writer.writerows(_rows(item))
        return out.getvalue().encode("utf-8")
    text = str(item.content or "")
    if target == "text/markdown":
        return text.encode("utf-8")
    plain = "\n".join(re.sub(r"^#{1,6}\s+", "", line).replace("**", "").replace("__", "")
                      for line in text.splitlines())
    if target == "text/html":
        paragraphs = "".join(f"<p>{line}</p>" for line in plain.splitlines() if line.strip())
        return f"<html><body>{paragraphs}</body></html>".encode()
    return ("\ufeff" + plain).encode("utf-8")  # Drive's text/plain exports start with a BOM


# -- HTTP -------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, drive: GoogleDriveServer) -> None:
        self.drive = drive
        super().__init__((HOST, port), _Handler)


class _Handler(JsonHandler):
    server: _Server
    server_version = "GoogleDriveStandin/1.0"
    json_content_type = "application/json; charset=UTF-8"

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, verb: str) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        raw = self._read_body()
        if url.path.startswith("/_control/"):
            status, body = self._control(verb, url.path[len("/_control/"):], raw)
            headers: dict[str, str] = {}
        else:
            status, body, headers = self.server.drive.handle(verb, url.path, query, self.headers.get("Authorization"))
        self._send(status, body, headers)

    def _control(self, verb: str, name: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        drive = self.server.drive
        try:
            body = json.loads(raw) if raw.strip() else {}
            if name == "fail" and verb == "POST":
                drive.fail_next(str(body.get("mode")), int(body.get("count", 1)),
                                retry_after=body.get("retry_after", 1), status=int(body.get("status", 503)),
                                endpoint=str(body.get("endpoint", "*")))
                return 200, {"ok": True}
            if name == "calls" and verb == "GET":
                return 200, {"calls": drive.calls()}
            if name == "reset" and verb == "POST":
                drive.reset()
                return 200, {"ok": True}
        except (ValueError, TypeError, AttributeError, KeyError) as error:
            return 400, {"error": str(error)}
        return 404, {"error": "not found"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.standins.google_drive_server",
                                     description="Google Drive API v3 stand-in on 127.0.0.1 (NOT Google).")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--token", action="append", default=[], help="an accepted access token (repeatable)")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long (bounded)")
    args = parser.parse_args(argv)
    server = GoogleDriveServer(port=args.port, tokens=args.token or [DEFAULT_TOKEN]).start()
    folder = server.add_folder("Handbook", permissions=["anyone"])
    server.add_file("Welcome", parent=folder, mime_type=GOOGLE_DOC, content="# Welcome\n\nHello from the stand-in.")
    print(f"google drive stand-in listening on {server.url} (folder {folder})", flush=True)
    serve_until_signalled(server, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
