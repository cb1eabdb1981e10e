"""Slack's file upload flow in the sandbox (what slack_sdk's ``files_upload_v2`` calls), and ``files.info``.

As Slack documents it (docs.slack.dev/reference/methods/files.getUploadURLExternal,
/files.completeUploadExternal, /files.info):

1. ``files.getUploadURLExternal`` — ``filename`` and ``length`` (bytes) required; answers
   ``{"ok": true, "upload_url", "file_id"}``. Missing arguments: ``invalid_arguments``; a
   ``length`` of 0: ``missing_argument`` (Slack's own words: "typically only occurs when the
   length provided is 0").
2. ``POST <upload_url>`` — the file's bytes, raw or as a multipart form (``file``/``filename``
   part); no token (the URL is the credential). HTTP 200 ``OK - <length>`` when the upload is
   accepted; any other status is a failure: 404 for a URL the sandbox did not issue, 400 when the
   bytes are not the ``length`` announced in step 1 (the sandbox's check: Slack only says non-200
   is a failure).
3. ``files.completeUploadExternal`` — ``files`` (JSON ``[{"id", "title"}]``), and optionally
   ``channel_id``, ``thread_ts`` (the parent's ts), ``initial_comment``. Shares the files in the
   channel as **one bot message** whose ``text`` is the initial comment and whose ``files`` are the
   file objects (a reply in ``thread_ts``'s thread), as Slack shows a file share; without a channel
   the files stay private. Answers ``{"ok": true, "files": [file objects]}``. Errors:
   ``invalid_arguments`` (no or malformed ``files``), ``file_not_found`` (an id the sandbox never
   issued, one whose bytes never arrived, or one already completed — "this method can only be
   called once"; the sandbox answers as for an unknown file), ``channel_not_found`` /
   ``not_in_channel`` (a channel the bot cannot post in).
4. ``files.info`` — ``file``: the file object (``comments`` empty) or ``file_not_found``.

A completed file is served at its ``url_private`` / ``url_private_download`` with the bot token,
as every sandbox file is (``GET /files-pri/<id>/<name>``, see ``SandboxStore.download_file``);
every upload is recorded as a call of ``files.upload`` (the POST to the upload URL), and
``/_sandbox/fail`` rules for ``files.upload`` make that POST fail.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any, Final

from insightmesh_local.slack_sandbox import history
from insightmesh_local.slack_sandbox.state import Reply, _structured, _text

if TYPE_CHECKING:
    from insightmesh_local.slack_sandbox.web_api import SandboxState

UPLOAD_PATH: Final = "/upload/v1/"
MAX_UPLOAD_BYTES: Final = 100 * 1024 * 1024  # the sandbox's own bound (Slack's is 1 GB)


def _file_object(state: SandboxState, file_id: str, ticket: dict[str, Any]) -> dict[str, Any]:
    name = ticket["name"]
    url = f"{state.base_url}files-pri/{file_id}/{name}"
    shares: dict[str, dict[str, list[dict[str, Any]]]] = {}
    channels: list[str] = []
    groups: list[str] = []
    ims: list[str] = []
    for share in ticket.get("shares", []):
        channel = share["channel"]
        kind = "public" if channel.startswith("C") else "private"
        shares.setdefault(kind, {}).setdefault(channel, []).append(
            {"ts": share["ts"], **({"thread_ts": share["thread_ts"]} if share.get("thread_ts") else {})})
        (channels if channel.startswith("C") else ims if channel.startswith("D") else groups).append(channel)
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else "binary"
    return {
        "id": file_id, "created": ticket["created"], "timestamp": ticket["created"], "name": name,
        "title": ticket.get("title") or name, "mimetype": ticket["mimetype"], "filetype": extension,
        "pretty_type": extension.upper(), "user": state.bot_user_id, "user_team": state.team_id,
        "editable": False, "size": ticket["length"], "mode": "hosted", "is_external": False,
        "external_type": "", "is_public": bool(channels), "public_url_shared": False, "display_as_bot": False,
        "username": "", "url_private": url, "url_private_download": url + "?download=1",
        "permalink": f"{state.base_url}files/{state.bot_user_id}/{file_id}/{name}",
        "channels": channels, "groups": groups, "ims": ims, "shares": shares,
        "has_rich_preview": False, "file_access": "visible",
    }


def files_get_upload_url_external(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    filename = _text(args, "filename")
    length_text = _text(args, "length")
    if filename is None or length_text is None:
        return {"ok": False, "error": "invalid_arguments"}
    try:
        length = int(length_text)
    except ValueError:
        return {"ok": False, "error": "invalid_arguments"}
    if length == 0:
        return {"ok": False, "error": "missing_argument"}
    if length < 0 or length > MAX_UPLOAD_BYTES:
        return {"ok": False, "error": "invalid_arguments"}
    token = secrets.token_urlsafe(16)
    with state._lock:
        file_id = f"F{state._next_seq():08d}U"
        state._uploads[token] = file_id
        state._files[file_id] = {
            "name": filename, "title": filename, "length": length, "content": b"", "uploaded": False,
            "completed": False, "created": int(time.time()), "shares": [],
            "mimetype": mimetypes.guess_type(filename)[0] or "application/octet-stream",
        }
    return {"ok": True, "upload_url": f"{state.base_url}{UPLOAD_PATH.lstrip('/')}{token}", "file_id": file_id}


def _multipart_file(body: bytes, content_type: str) -> bytes | None:
    """The file part of a multipart/form-data body (the part with a filename, else the ``file``
    field); None when there is none."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
                                                  + body)
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_filename() or part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else None
    return None


def receive_upload(state: SandboxState, token: str, body: bytes, content_type: str) -> Reply:
    """``POST <upload_url>``: store the bytes for the ticket (raw body or multipart form). A failure
    rule for ``files.upload`` (``/_sandbox/fail``, mode ``error`` with a ``status``) answers that
    status instead, storing nothing."""
    rule = state._take_failure("files.upload")
    if rule is not None and rule.mode in ("error", "ratelimit"):
        reply = Reply(rule.status if rule.status != 200 else 500, rule.error)
        _record(state, token, state._uploads.get(token), reply, len(body))
        return reply
    if content_type.lower().startswith("multipart/form-data"):
        data = _multipart_file(body, content_type)
        if data is None:
            reply = Reply(400, "missing file part")
            _record(state, token, None, reply, len(body))
            return reply
    else:
        data = body
    with state._lock:
        file_id = state._uploads.get(token)
        ticket = state._files.get(file_id) if file_id else None
        if ticket is None or ticket["completed"]:
            reply = Reply(404, "upload URL not found")
        elif len(data) != ticket["length"]:
            reply = Reply(400, f"length mismatch: expected {ticket['length']} bytes, got {len(data)}")
        else:
            ticket["content"] = data
            ticket["uploaded"] = True
            reply = Reply(200, f"OK - {len(data)}")
    _record(state, token, file_id, reply, len(data))
    return reply


def _record(state: SandboxState, token: str, file_id: str | None, reply: Reply, size: int) -> None:
    with state._lock:
        state._calls.append({"seq": state._next_seq(), "at": time.time(), "method": "files.upload",
                             "args": {"file": file_id, "upload": token[:6] + "…", "bytes": size},
                             "status": reply.status, "ok": reply.status == 200,
                             "error": None if reply.status == 200 else reply.body, "delayed": None})


def files_complete_upload_external(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    try:
        wanted = _structured(args, "files")
    except json.JSONDecodeError:
        return {"ok": False, "error": "invalid_arguments"}
    if not isinstance(wanted, list) or not wanted or not all(
            isinstance(item, dict) and isinstance(item.get("id"), str) for item in wanted):
        return {"ok": False, "error": "invalid_arguments"}
    channel_arg = _text(args, "channel_id")
    channel = state._channel({"channel": channel_arg}) if channel_arg else None
    if channel_arg and channel is None:
        return {"ok": False, "error": "channel_not_found"}
    if channel is not None:
        refused = history.readable(state, channel)
        if refused is not None:
            return {"ok": False, "error": refused}
    thread_ts = _text(args, "thread_ts")
    comment = _text(args, "initial_comment") or ""
    with state._lock:
        tickets = []
        for item in wanted:
            ticket = state._files.get(item["id"])
            if ticket is None or "completed" not in ticket or ticket["completed"] or not ticket["uploaded"]:
                return {"ok": False, "error": "file_not_found"}
            tickets.append((item["id"], ticket, item.get("title")))
        for file_id, ticket, title in tickets:
            ticket["completed"] = True
            if isinstance(title, str) and title:
                ticket["title"] = title
            for token, issued in list(state._uploads.items()):
                if issued == file_id:
                    del state._uploads[token]
        if channel is not None:
            message = state._bot_message(channel, comment, "files.completeUploadExternal", thread_ts=thread_ts)
            for _file_id, ticket, _title in tickets:
                ticket["shares"].append({"channel": channel, "ts": message.ts, "thread_ts": thread_ts})
            message.files = [_file_object(state, file_id, ticket) for file_id, ticket, _title in tickets]
        return {"ok": True, "files": [_file_object(state, file_id, ticket) for file_id, ticket, _title in tickets]}


def files_info(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    file_id = _text(args, "file")
    with state._lock:
        ticket = state._files.get(file_id or "")
        if ticket is None or not ticket.get("completed", True):
            return {"ok": False, "error": "file_not_found"}
        if "completed" not in ticket:  # a file added with SlackSandbox.add_file (a person's upload)
            ticket = {**ticket, "length": len(ticket["content"]), "created": 0, "shares": []}
        return {"ok": True, "file": _file_object(state, file_id or "", ticket), "comments": [],
                "response_metadata": {"next_cursor": ""}}


METHODS: Final = {
    "files.getUploadURLExternal": files_get_upload_url_external,
    "files.completeUploadExternal": files_complete_upload_external,
    "files.info": files_info,
}
