"""A Slack Web API stand-in for development and tests — a SANDBOX, NOT Slack.

Nothing sent here reaches Slack or any person: this is a small threaded HTTP server on
127.0.0.1 that speaks Slack's Web API wire format well enough for InsightMesh's worker (through
``slack_sdk.WebClient(base_url=sandbox.url)``) and records everything for tests and for
``insightmesh chat``. Every API response carries ``"warning": "development_sandbox_not_slack"``
and an ``X-InsightMesh-Sandbox`` header, and its log lines say so too.

Wire format (as Slack)
    ``POST /api/<method>`` (``GET`` too, with query parameters, as slack_sdk sends
    ``users.info`` and ``conversations.replies``); ``application/x-www-form-urlencoded`` or
    JSON bodies; the token in ``Authorization: Bearer xox...`` (or a ``token`` form field).
    Responses are HTTP 200 ``{"ok": true, ...}`` or ``{"ok": false, "error": "<code>"}``;
    rate limiting is HTTP 429 with ``Retry-After`` and ``{"ok": false, "error": "ratelimited"}``.

Methods
    ``auth.test``, ``chat.postMessage`` (channel, text, blocks, thread_ts, metadata),
    ``chat.update``, ``chat.postEphemeral``, ``chat.delete``, ``users.info``,
    ``users.list`` (``limit``: 0 or absent = the sandbox's page size of 1000, capped at 1000;
    ``cursor``: the previous page's ``response_metadata.next_cursor``, an empty string on the last
    page; members are the registered users in registration order; a cursor the sandbox did not
    issue answers ``invalid_cursor``), ``conversations.replies`` (metadata only with
    ``include_all_metadata``; ``limit``/``cursor``), ``reactions.add``/``reactions.remove`` and
    ``api.test``, ``conversations.info`` and ``conversations.members`` (see ``/_sandbox/channels``);
    any other method answers ``unknown_method``. Failure rules apply to every
    method, ``users.list`` included.

Files
    ``GET /files-pri/<id>/<name>`` serves a file registered with ``SlackSandbox.add_file(name,
    content, mimetype)`` (which returns the file object a message event carries, with
    ``url_private_download``) to a request bearing a bot token, as Slack's file host does; without
    one, 403. Downloads are recorded as calls of ``files.download``.

``response_url``
    ``POST /response/<id>`` takes Slack's response_url JSON (text, blocks, response_type,
    replace_original, delete_original, thread_ts). ``POST /_sandbox/response_urls`` (or
    ``SlackSandbox.response_url(...)``) issues one bound to a channel, user and message;
    an unissued id is accepted too (recorded without a channel unless the body names one).

Inspection and control (not Slack; for tests and ``insightmesh chat``)
    Every request needs a loopback ``Host`` and no foreign ``Origin`` (403); ``/_sandbox/*`` (but
    ``health``) also needs the run's secret in ``X-InsightMesh-Local-Token`` (401), as
    ``insightmesh dev``'s ``/_local/*`` does (see ``local_auth``). ``SlackSandbox(secret=...)``
    sets it (default: ``$INSIGHTMESH_LOCAL_TOKEN`` or a new one, in ``.secret``).
    ``GET  /_sandbox/messages?channel=&thread_ts=&since=``  recorded messages, oldest first
    ``POST /_sandbox/messages``   record a message a person wrote {channel, user, text, thread_ts}
    ``GET  /_sandbox/calls?method=``  every API call (token never recorded)
    ``POST /_sandbox/reset``      forget messages, calls, users, failures, response URLs
    ``POST /_sandbox/fail``       {"method", "mode": ratelimit|error|delay, "count", "retry_after",
                                   "delay", "error", "status"}: for the next ``count`` calls of
                                   ``method`` ("*" for any) answer 429, an ok:false error, or do
                                   the call (recording its message) and only then wait ``delay``
                                   seconds before answering (a worker that posts then times out);
                                   with "channel", only calls naming that channel count
    ``GET  /_sandbox/fail``       pending failure rules
    ``POST /_sandbox/users``      register users for users.info and users.list (a user object, a
                                   list, or {"users": [...]}; fields id, name, real_name,
                                   display_name, email (null: none), is_bot, deleted, is_restricted,
                                   is_admin, profile); re-registering an id replaces it in place.
                                   Other U.../W... ids get a generated users.info profile with the
                                   e-mail ``user-<id>@example.com`` (they are not in users.list)
    ``POST /_sandbox/users/generate``  {"count", "domain", "start", "id_prefix"}: register ``count``
                                   (≤ 100000) generated people at once (U00000001, user1@<domain>...)
    ``POST /_sandbox/users/remove``    {"ids": [...]}: forget registered users (gone from users.list)
    ``POST /_sandbox/channels``   {"id", "members", "kind": public|private|mpim|im, "ext_shared",
                                   "user" (an im's person)}: a conversation for conversations.info
                                   and conversations.members (an unregistered C/G id is a public
                                   channel of the bot and every registered user)
    ``POST /_sandbox/ts``         allocate a fresh message timestamp (a "since" reference point)
    ``GET  /_sandbox/health``     liveness

In-process: ``SlackSandbox(port=0).start()``, ``.url`` (``http://127.0.0.1:<port>/api/``),
``.messages(...)``, ``.calls(...)``, ``.fail(...)``, ``.add_users(...)``, ``.generate_users(...)``,
``.remove_users(...)``, ``.reset()``, ``.stop()``.
Standalone: ``python -m insightmesh_local.slack_sandbox --port 3001``.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from insightmesh_local import local_auth

SANDBOX_WARNING = "development_sandbox_not_slack"
SANDBOX_HEADER = "X-InsightMesh-Sandbox"
SANDBOX_HEADER_VALUE = "slack-web-api-development-stand-in"
DEFAULT_PORT = 3001
FAIL_MODES = ("ratelimit", "error", "delay")
USERS_LIST_MAX_LIMIT = 1000  # users.list's cap; also its page size when no limit is given
MAX_GENERATED_USERS = 100_000
_CURSOR_PREFIX = "user:"

log = logging.getLogger("insightmesh_local.slack_sandbox")


# -- records -------------------------------------------------------------------------------------------
@dataclass
class Message:
    """One message as the sandbox holds it (the inspection view is ``describe()``)."""

    seq: int
    channel: str | None
    ts: str
    user: str
    text: str
    source: str  # chat.postMessage, chat.postEphemeral, response_url, user
    thread_ts: str | None = None
    blocks: list[Any] | None = None
    metadata: dict[str, Any] | None = None
    bot_id: str | None = None
    app_id: str | None = None
    team: str | None = None
    ephemeral_for: str | None = None
    response_type: str | None = None
    edited: dict[str, str] | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False
    reactions: dict[str, list[str]] = field(default_factory=dict)
    updated_seq: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "updated_seq": self.updated_seq,
            "channel": self.channel,
            "ts": self.ts,
            "thread_ts": self.thread_ts,
            "user": self.user,
            "bot_id": self.bot_id,
            "is_bot": self.bot_id is not None,
            "text": self.text,
            "blocks": self.blocks,
            "metadata": self.metadata,
            "source": self.source,
            "ephemeral": self.ephemeral_for is not None,
            "ephemeral_for": self.ephemeral_for,
            "response_type": self.response_type,
            "edited": self.edited,
            "edits": list(self.edits),
            "deleted": self.deleted,
            "reactions": [{"name": name, "users": list(users), "count": len(users)}
                          for name, users in self.reactions.items()],
        }

    def api_view(self, *, include_metadata: bool = True) -> dict[str, Any]:
        """The message as Slack's API returns it (chat.postMessage, conversations.replies)."""
        view: dict[str, Any] = {"type": "message", "user": self.user, "text": self.text, "ts": self.ts}
        if self.team:
            view["team"] = self.team
        if self.bot_id:
            view["bot_id"] = self.bot_id
            view["app_id"] = self.app_id
            view["bot_profile"] = {"id": self.bot_id, "app_id": self.app_id, "name": "InsightMesh",
                                   "deleted": False, "team_id": self.team}
        if self.blocks is not None:
            view["blocks"] = self.blocks
        if self.thread_ts:
            view["thread_ts"] = self.thread_ts
        if self.edited:
            view["edited"] = dict(self.edited)
        if self.metadata is not None and include_metadata:
            view["metadata"] = self.metadata
        if self.reactions:
            view["reactions"] = [{"name": name, "users": list(users), "count": len(users)}
                                 for name, users in self.reactions.items()]
        return view


@dataclass
class FailRule:
    method: str
    mode: str
    remaining: int
    retry_after: int = 1
    delay: float = 0.0
    error: str = "internal_error"
    status: int = 200
    channel: str | None = None  # only calls naming this channel (None: any)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "mode": self.mode, "remaining": self.remaining,
                "retry_after": self.retry_after, "delay": self.delay, "error": self.error, "status": self.status,
                "channel": self.channel}


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class SandboxError(ValueError):
    """A bad request to the sandbox's own control API (HTTP 400)."""


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = str(ts).partition(".")
    try:
        return int(seconds), int((micros or "0").ljust(6, "0")[:6])
    except ValueError as error:
        raise SandboxError(f"not a Slack timestamp: {ts!r}") from error


def _text(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _flag(args: dict[str, Any], key: str) -> bool:
    value = args.get(key)
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes") if value is not None else False


def _structured(args: dict[str, Any], key: str) -> Any:
    """A JSON-valued argument: native in JSON bodies, a JSON string in form bodies."""
    value = args.get(key)
    if isinstance(value, str):
        if not value.strip():
            return None
        return json.loads(value)
    return value


# -- state ---------------------------------------------------------------------------------------------
class SandboxState:
    """Everything the sandbox knows; every method is safe to call from any thread."""

    def __init__(self, *, bot_user_id: str = "UBOTLOCAL", bot_id: str = "BBOTLOCAL", team_id: str = "TLOCAL0001",
                 team: str = "InsightMesh Local Sandbox", app_id: str = "ALOCAL0001", bot_name: str = "insightmesh",
                 ) -> None:
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.team = team
        self.app_id = app_id
        self.bot_name = bot_name
        self.base_url = "http://127.0.0.1/"
        self._lock = threading.RLock()
        self._last_us = 0
        self._seq = 0
        self._messages: list[Message] = []
        self._calls: list[dict[str, Any]] = []
        self._failures: list[FailRule] = []
        self._users: dict[str, dict[str, Any]] = {}
        self._user_order: list[str] | None = None  # users.list order; rebuilt after a change
        self._user_positions: dict[str, int] = {}
        self._response_urls: dict[str, dict[str, Any]] = {}
        self._files: dict[str, dict[str, Any]] = {}  # file id -> {"name", "mimetype", "content"}
        self._channels: dict[str, dict[str, Any]] = {}  # channel id -> conversations.info fields + members

    # -- bookkeeping -------------------------------------------------------------------------------------
    def next_ts(self) -> str:
        with self._lock:
            self._last_us = max(int(time.time() * 1_000_000), self._last_us + 1)
            return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._calls.clear()
            self._failures.clear()
            self._users.clear()
            self._user_order = None
            self._response_urls.clear()
            self._files.clear()
            self._channels.clear()

    def set_channel(self, channel_id: str, members: Iterable[str], *, kind: str = "public",
                    ext_shared: bool = False, user: str | None = None, name: str | None = None) -> dict[str, Any]:
        """Register a conversation for ``conversations.info`` / ``conversations.members``: its
        ``kind`` (public, private, mpim, im), its members (the bot is added unless it is an im with
        ``user``), whether it is shared with another organisation."""
        if kind not in ("public", "private", "mpim", "im"):
            raise SandboxError("kind must be public, private, mpim or im")
        member_ids = [str(member) for member in members]
        if kind == "im":
            if not user:
                raise SandboxError("an im needs the user it is with")
            member_ids = [user, self.bot_user_id]
        elif self.bot_user_id not in member_ids:
            member_ids.append(self.bot_user_id)
        channel = {"id": channel_id, "name": name or channel_id.lower(), "kind": kind, "ext_shared": ext_shared,
                   "user": user if kind == "im" else None, "members": member_ids}
        with self._lock:
            self._channels[channel_id] = channel
        return {key: value for key, value in channel.items() if key != "members"} | {"num_members": len(member_ids)}

    def _conversation(self, channel_id: str | None) -> dict[str, Any] | None:
        """A registered conversation; an unregistered C/G id is a public channel holding the bot
        and every registered user (the sandbox's #general); other ids are unknown."""
        if not channel_id:
            return None
        with self._lock:
            known = self._channels.get(channel_id)
            if known is not None:
                return known
            if channel_id[0] not in "CG":
                return None
            members = [*self._users.keys(), self.bot_user_id]
        return {"id": channel_id, "name": channel_id.lower(), "kind": "public", "ext_shared": False, "user": None,
                "members": members}

    def conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """Slack's ``conversations.info`` (``num_members`` with ``include_num_members``)."""
        found = self._conversation(self._channel(args))
        if found is None:
            return {"ok": False, "error": "channel_not_found"}
        kind = found["kind"]
        channel: dict[str, Any] = {
            "id": found["id"], "created": 1700000000, "is_archived": False, "is_general": False,
            "is_channel": kind == "public", "is_group": kind == "private", "is_im": kind == "im",
            "is_mpim": kind == "mpim", "is_private": kind in ("private", "mpim", "im"),
            "is_shared": bool(found["ext_shared"]), "is_ext_shared": bool(found["ext_shared"]),
            "is_org_shared": False, "is_member": True,
        }
        if kind == "im":
            channel["user"] = found["user"]
        else:
            channel["name"] = found["name"]
            if _flag(args, "include_num_members"):
                channel["num_members"] = len(found["members"])
        return {"ok": True, "channel": channel}

    def conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        """Slack's ``conversations.members``: user ids, cursor-paginated (``limit`` default 100)."""
        found = self._conversation(self._channel(args))
        if found is None:
            return {"ok": False, "error": "channel_not_found"}
        try:
            limit = int(args.get("limit") or 100)
            offset = int(base64.b64decode(str(args.get("cursor") or "MA==")).decode()) if args.get("cursor") else 0
        except (TypeError, ValueError):
            return {"ok": False, "error": "invalid_cursor"}
        if not 0 < limit <= 1000:
            return {"ok": False, "error": "invalid_limit"}
        members = list(found["members"])
        following = offset + limit
        next_cursor = base64.b64encode(str(following).encode()).decode() if following < len(members) else ""
        return {"ok": True, "members": members[offset:following], "response_metadata": {"next_cursor": next_cursor}}

    def add_file(self, name: str, content: bytes, mimetype: str) -> dict[str, Any]:
        """Host a file as Slack does for a message's ``files``: the returned object (id, name,
        mimetype, size, url_private, url_private_download) goes in a message event."""
        with self._lock:
            file_id = f"F{self._next_seq():08d}"
            self._files[file_id] = {"name": name, "mimetype": mimetype, "content": content}
        url = f"{self.base_url}files-pri/{file_id}/{name}"
        return {"id": file_id, "name": name, "title": name, "mimetype": mimetype, "filetype": name.rsplit(".", 1)[-1],
                "size": len(content), "url_private": url, "url_private_download": url + "?download=1"}

    def download_file(self, file_id: str, token: str | None) -> tuple[int, dict[str, Any] | None]:
        """``GET /files-pri/<id>/<name>`` with the bot token (Slack redirects anonymous requests to
        a sign-in page: here a 403)."""
        with self._lock:
            found = self._files.get(file_id)
            self._calls.append({"seq": self._next_seq(), "at": time.time(), "method": "files.download",
                                "args": {"file": file_id}, "status": 200 if found else 404,
                                "ok": bool(found and token and token.startswith("xox")), "error": None,
                                "delayed": None})
        if not token or not token.startswith("xox"):
            return 403, None
        return (200, found) if found is not None else (404, None)

    def messages(self, channel: str | None = None, thread_ts: str | None = None,
                 since: str | None = None) -> list[dict[str, Any]]:
        """Recorded messages, oldest first; ``thread_ts`` includes the thread's parent;
        ``since`` keeps messages whose ts is later than it."""
        floor = _ts_key(since) if since else None
        with self._lock:
            chosen = [m for m in self._messages
                      if (channel is None or m.channel == channel)
                      and (thread_ts is None or m.thread_ts == thread_ts or m.ts == thread_ts)
                      and (floor is None or _ts_key(m.ts) > floor)]
            return [m.describe() for m in sorted(chosen, key=lambda m: _ts_key(m.ts))]

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(call) for call in self._calls if method is None or call["method"] == method]

    def fail(self, method: str, mode: str, count: int = 1, *, retry_after: int = 1, delay: float = 0.0,
             error: str | None = None, status: int | None = None, channel: str | None = None) -> FailRule:
        if mode not in FAIL_MODES:
            raise SandboxError(f"mode must be one of {', '.join(FAIL_MODES)}, got {mode!r}")
        if not method:
            raise SandboxError("method is required (a Web API method name, 'response_url' or '*')")
        if int(count) < 1 or int(retry_after) < 0 or float(delay) < 0:
            raise SandboxError("count must be >= 1, retry_after and delay >= 0")
        rule = FailRule(method=method, mode=mode, remaining=int(count), retry_after=int(retry_after),
                        delay=float(delay), error=error or ("ratelimited" if mode == "ratelimit" else "internal_error"),
                        status=int(status) if status is not None else (429 if mode == "ratelimit" else 200),
                        channel=str(channel) if channel else None)
        with self._lock:
            self._failures.append(rule)
        log.info("slack sandbox (development stand-in): next %d %s call(s) -> %s", rule.remaining, method, mode)
        return rule

    def failures(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.describe() for rule in self._failures]

    def _take_failure(self, method: str, channel: str | None = None) -> FailRule | None:
        with self._lock:
            for rule in self._failures:
                if rule.method in (method, "*") and rule.remaining > 0 and rule.channel in (None, channel):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._failures.remove(rule)
                    return rule
        return None

    def add_users(self, users: Iterable[dict[str, Any]]) -> list[str]:
        added = []
        with self._lock:
            for user in users:
                user_id = user.get("id")
                if not isinstance(user_id, str) or not user_id:
                    raise SandboxError("every user needs an 'id'")
                self._users[user_id] = dict(user)
                added.append(user_id)
            self._user_order = None
        return added

    def generate_users(self, count: int, *, domain: str = "example.com", start: int = 1,
                       id_prefix: str = "U") -> list[str]:
        """Register ``count`` generated people in one go (ids ``U00000001``..., e-mails
        ``user<n>@<domain>``): the bulk form of :meth:`add_users` for large directories."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_GENERATED_USERS:
            raise SandboxError(f"count must be an integer from 1 to {MAX_GENERATED_USERS}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise SandboxError("start must be a non-negative integer")
        if not domain or "@" in domain or not id_prefix or not id_prefix.isalnum() or id_prefix[0] not in "UW":
            raise SandboxError("domain must be a domain, id_prefix start with U or W and be alphanumeric")
        users = [{"id": f"{id_prefix}{number:08d}", "name": f"user{number}", "real_name": f"User {number}",
                  "display_name": f"user{number}", "email": f"user{number}@{domain}"}
                 for number in range(start, start + count)]
        return self.add_users(users)

    def remove_users(self, user_ids: Iterable[str]) -> list[str]:
        """Forget registered users: they are gone from ``users.list`` (as if never in the team)."""
        removed = []
        with self._lock:
            for user_id in user_ids:
                if self._users.pop(user_id, None) is not None:
                    removed.append(user_id)
            self._user_order = None
        return removed

    def _listing(self) -> tuple[list[str], dict[str, int]]:
        """Registered user ids in registration order, and each id's position (lock held)."""
        if self._user_order is None:
            self._user_order = list(self._users)
            self._user_positions = {user_id: position for position, user_id in enumerate(self._user_order)}
        return self._user_order, self._user_positions

    def response_url(self, *, channel: str | None, user: str | None = None, message_ts: str | None = None,
                     thread_ts: str | None = None) -> str:
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._response_urls[token] = {"channel": channel, "user": user, "message_ts": message_ts,
                                          "thread_ts": thread_ts, "uses": 0}
        return f"{self.base_url}response/{token}"

    def add_user_message(self, *, channel: str, user: str, text: str, thread_ts: str | None = None,
                         ts: str | None = None) -> dict[str, Any]:
        """Record a message a person wrote (so conversations.replies sees the whole thread)."""
        if not channel or not user:
            raise SandboxError("channel and user are required")
        with self._lock:
            if ts is not None:
                _ts_key(ts)
                if self._find(channel, ts) is not None:
                    raise SandboxError(f"a message {ts} already exists in {channel}")
            message = Message(seq=self._next_seq(), channel=channel, ts=ts or self.next_ts(), user=user, text=text,
                              source="user", thread_ts=thread_ts if thread_ts and thread_ts != ts else None,
                              team=self.team_id)
            message.updated_seq = message.seq
            self._messages.append(message)
            return message.describe()

    def _find(self, channel: str | None, ts: str | None) -> Message | None:
        for message in self._messages:
            if message.channel == channel and message.ts == ts:
                return message
        return None

    def _record_call(self, method: str, args: dict[str, Any], reply: Reply) -> None:
        body = reply.body if isinstance(reply.body, dict) else {}
        with self._lock:
            self._calls.append({
                "seq": self._next_seq(), "at": time.time(), "method": method,
                "args": {key: value for key, value in args.items() if key != "token"},
                "status": reply.status, "ok": bool(body.get("ok")), "error": body.get("error"),
                "delayed": reply.delay or None,
            })

    # -- the Web API --------------------------------------------------------------------------------------
    def api_call(self, method: str, args: dict[str, Any], token: str | None) -> Reply:
        if not token:
            reply = _api(200, {"ok": False, "error": "not_authed"})
        elif not token.startswith("xox"):
            reply = _api(200, {"ok": False, "error": "invalid_auth"})
        else:
            reply = self._dispatch(method, args)
        self._record_call(method, args, reply)
        body = reply.body
        log.info("slack sandbox (development stand-in): %s -> %s", method,
                 "ok" if body.get("ok") else f"{reply.status} {body.get('error')}")
        return reply

    def _dispatch(self, method: str, args: dict[str, Any]) -> Reply:
        rule = self._take_failure(method, _text(args, "channel"))
        if rule is not None and rule.mode == "ratelimit":
            return _api(rule.status, {"ok": False, "error": rule.error}, {"Retry-After": str(rule.retry_after)})
        if rule is not None and rule.mode == "error":
            return _api(rule.status, {"ok": False, "error": rule.error})
        implementation = _METHODS.get(method)
        if implementation is None:
            return _api(200, {"ok": False, "error": "unknown_method"})
        try:
            body = implementation(self, args)
        except json.JSONDecodeError:
            body = {"ok": False, "error": "invalid_arguments"}
        reply = _api(200, body)
        if rule is not None and rule.mode == "delay":
            reply.delay = rule.delay
        return reply

    def _channel(self, args: dict[str, Any]) -> str | None:
        channel = _text(args, "channel")
        if channel and channel[0] in "UW":  # posting to a user id goes to the bot's DM with them
            return "D" + channel
        return channel if channel and channel[0] in "CDG" else None

    def _content(self, args: dict[str, Any]) -> tuple[str | None, list[Any] | None, dict[str, Any] | None, str | None]:
        """(text, blocks, metadata, error) of a chat.* call."""
        text = _text(args, "text")
        try:
            blocks = _structured(args, "blocks")
        except json.JSONDecodeError:
            return None, None, None, "invalid_blocks_format"
        if blocks is not None and not (isinstance(blocks, list) and all(isinstance(b, dict) for b in blocks)):
            return None, None, None, "invalid_blocks"
        try:
            metadata = _structured(args, "metadata")
        except json.JSONDecodeError:
            return None, None, None, "invalid_metadata_format"
        if metadata is not None and not (isinstance(metadata, dict) and isinstance(metadata.get("event_type"), str)
                                         and isinstance(metadata.get("event_payload"), dict)):
            return None, None, None, "invalid_metadata_schema"
        return text, blocks, metadata, None

    def _bot_message(self, channel: str | None, text: str, source: str, *, thread_ts: str | None = None,
                     blocks: list[Any] | None = None, metadata: dict[str, Any] | None = None,
                     ephemeral_for: str | None = None, response_type: str | None = None) -> Message:
        with self._lock:
            message = Message(seq=self._next_seq(), channel=channel, ts=self.next_ts(), user=self.bot_user_id,
                              text=text, source=source, thread_ts=thread_ts, blocks=blocks, metadata=metadata,
                              bot_id=self.bot_id, app_id=self.app_id, team=self.team_id,
                              ephemeral_for=ephemeral_for, response_type=response_type)
            message.updated_seq = message.seq
            self._messages.append(message)
            return message

    def _edit(self, message: Message, text: str | None, blocks: list[Any] | None,
              metadata: dict[str, Any] | None = None, source: str = "chat.update") -> None:
        with self._lock:
            edit_ts = self.next_ts()
            message.edits.append({"ts": edit_ts, "source": source, "previous_text": message.text,
                                  "text": text if text is not None else message.text, "blocks": blocks})
            if text is not None:
                message.text = text
            if blocks is not None:
                message.blocks = blocks
            if metadata is not None:
                message.metadata = metadata
            message.edited = {"user": message.user, "ts": edit_ts}
            message.updated_seq = self._next_seq()

    def auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": self.base_url, "team": self.team, "user": self.bot_name, "team_id": self.team_id,
                "user_id": self.bot_user_id, "bot_id": self.bot_id, "is_enterprise_install": False}

    def api_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "args": {key: value for key, value in args.items() if key != "token"}}

    def chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        text, blocks, metadata, error = self._content(args)
        if error:
            return {"ok": False, "error": error}
        if text is None and not blocks and not args.get("attachments"):
            return {"ok": False, "error": "no_text"}
        thread_ts = _text(args, "thread_ts")
        message = self._bot_message(channel, text or "", "chat.postMessage", thread_ts=thread_ts, blocks=blocks,
                                    metadata=metadata)
        return {"ok": True, "channel": channel, "ts": message.ts, "message": message.api_view()}

    def chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        user = _text(args, "user")
        if user is None:
            return {"ok": False, "error": "user_not_in_channel"}
        text, blocks, _metadata, error = self._content(args)
        if error:
            return {"ok": False, "error": error}
        if text is None and not blocks and not args.get("attachments"):
            return {"ok": False, "error": "no_text"}
        message = self._bot_message(channel, text or "", "chat.postEphemeral", thread_ts=_text(args, "thread_ts"),
                                    blocks=blocks, ephemeral_for=user, response_type="ephemeral")
        return {"ok": True, "message_ts": message.ts}

    def chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            message = self._find(channel, _text(args, "ts"))
            if message is None or message.deleted or message.ephemeral_for is not None:
                return {"ok": False, "error": "message_not_found"}
            if message.bot_id != self.bot_id:
                return {"ok": False, "error": "cant_update_message"}
            text, blocks, metadata, error = self._content(args)
            if error:
                return {"ok": False, "error": error}
            if text is None and blocks is None and not args.get("attachments"):
                return {"ok": False, "error": "no_text"}
            self._edit(message, text, blocks, metadata)
            return {"ok": True, "channel": channel, "ts": message.ts, "text": message.text,
                    "message": message.api_view()}

    def chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        with self._lock:
            message = self._find(channel, _text(args, "ts"))
            if message is None or message.deleted:
                return {"ok": False, "error": "message_not_found"}
            if message.bot_id != self.bot_id:
                return {"ok": False, "error": "cant_delete_message"}
            message.deleted = True
            message.updated_seq = self._next_seq()
            return {"ok": True, "channel": channel, "ts": message.ts}

    def users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = _text(args, "user")
        with self._lock:
            registered = self._users.get(user_id or "")
        if registered is None and (not user_id or user_id[0] not in "UW" or not user_id.isalnum()):
            return {"ok": False, "error": "user_not_found"}
        assert user_id is not None
        if registered is None and user_id == self.bot_user_id:
            registered = {"id": user_id, "name": self.bot_name, "real_name": "InsightMesh", "is_bot": True,
                          "bot_id": self.bot_id}
        return {"ok": True, "user": self._user_object(user_id, registered or {})}

    def users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """Slack's ``users.list``: registered users in registration order, cursor-paginated."""
        try:
            limit = int(args.get("limit") or 0)
        except (TypeError, ValueError):
            return {"ok": False, "error": "invalid_limit"}
        if limit < 0:
            return {"ok": False, "error": "invalid_limit"}
        limit = min(limit or USERS_LIST_MAX_LIMIT, USERS_LIST_MAX_LIMIT)
        cursor = args.get("cursor") or ""
        with self._lock:
            order, positions = self._listing()
            offset = 0
            if cursor:
                try:
                    decoded = base64.b64decode(str(cursor).encode("ascii"), validate=True).decode("utf-8")
                except (ValueError, UnicodeError):
                    return {"ok": False, "error": "invalid_cursor"}
                position = positions.get(decoded[len(_CURSOR_PREFIX):]) if decoded.startswith(_CURSOR_PREFIX) \
                    else None
                if position is None:
                    return {"ok": False, "error": "invalid_cursor"}
                offset = position
            page_ids = order[offset:offset + limit]
            members = [self._user_object(user_id, self._users[user_id]) for user_id in page_ids]
            following = order[offset + limit] if offset + limit < len(order) else None
        next_cursor = base64.b64encode(f"{_CURSOR_PREFIX}{following}".encode()).decode("ascii") if following else ""
        return {"ok": True, "members": members, "cache_ts": int(time.time()),
                "response_metadata": {"next_cursor": next_cursor}}

    def _user_object(self, user_id: str, given: dict[str, Any]) -> dict[str, Any]:
        is_bot = bool(given.get("is_bot", False))
        name = given.get("name") or f"user-{user_id.lower()}"
        real_name = given.get("real_name") or f"Local User {user_id}"
        display_name = given.get("display_name", name)
        profile: dict[str, Any] = {
            "real_name": real_name, "real_name_normalized": real_name,
            "display_name": display_name, "display_name_normalized": display_name,
            "first_name": real_name.split(" ")[0], "last_name": " ".join(real_name.split(" ")[1:]),
            "title": given.get("title", ""), "team": self.team_id,
            "image_48": "", "image_72": "",
        }
        if not is_bot:
            email = given.get("email", f"user-{user_id}@example.com")
            if email:  # null or "": a user without an address (Slack then leaves the field out)
                profile["email"] = email
        else:
            profile["bot_id"] = given.get("bot_id", self.bot_id)
        profile.update(given.get("profile") or {})
        return {
            "id": user_id, "team_id": self.team_id, "name": name, "deleted": bool(given.get("deleted", False)),
            "real_name": real_name, "tz": given.get("tz", "Europe/London"), "tz_label": "Local time",
            "tz_offset": 0, "is_admin": bool(given.get("is_admin", False)), "is_owner": False,
            "is_restricted": bool(given.get("is_restricted", False)), "is_ultra_restricted": False,
            "is_bot": is_bot, "is_app_user": False, "updated": int(time.time()), "profile": profile,
        }

    def conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        ts = _text(args, "ts")
        if ts is None:
            return {"ok": False, "error": "thread_not_found"}
        include_metadata = _flag(args, "include_all_metadata")
        with self._lock:
            thread = sorted((m for m in self._messages
                             if m.channel == channel and not m.deleted and m.ephemeral_for is None
                             and (m.ts == ts or m.thread_ts == ts)), key=lambda m: _ts_key(m.ts))
            if not thread:
                return {"ok": False, "error": "thread_not_found"}
            replies = [m for m in thread if m.ts != ts]
            views = []
            for message in thread:
                view = message.api_view(include_metadata=include_metadata)
                if message.ts == ts and replies:
                    view.update({"thread_ts": ts, "reply_count": len(replies),
                                 "reply_users": sorted({m.user for m in replies}),
                                 "reply_users_count": len({m.user for m in replies}),
                                 "latest_reply": replies[-1].ts})
                elif message.ts != ts:
                    parent = next((m for m in thread if m.ts == ts), None)
                    if parent is not None:
                        view["parent_user_id"] = parent.user
                views.append(view)
        try:
            limit = max(1, min(int(args.get("limit") or 1000), 1000))
            cursor = args.get("cursor") or ""
            offset = int(base64.urlsafe_b64decode(str(cursor).encode()).decode().partition(":")[2]) if cursor else 0
        except ValueError:
            return {"ok": False, "error": "invalid_cursor"}
        page = views[offset:offset + limit]
        more = offset + limit < len(views)
        next_cursor = base64.urlsafe_b64encode(f"offset:{offset + limit}".encode()).decode() if more else ""
        return {"ok": True, "messages": page, "has_more": more, "response_metadata": {"next_cursor": next_cursor}}

    def reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._reaction(args, add=True)

    def reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._reaction(args, add=False)

    def _reaction(self, args: dict[str, Any], *, add: bool) -> dict[str, Any]:
        name = (_text(args, "name") or "").strip(":")
        if not name:
            return {"ok": False, "error": "invalid_name"}
        with self._lock:
            message = self._find(self._channel(args), _text(args, "timestamp"))
            if message is None or message.deleted:
                return {"ok": False, "error": "message_not_found"}
            users = message.reactions.setdefault(name, [])
            if add and self.bot_user_id in users:
                return {"ok": False, "error": "already_reacted"}
            if not add and self.bot_user_id not in users:
                return {"ok": False, "error": "no_reaction"}
            if add:
                users.append(self.bot_user_id)
            else:
                users.remove(self.bot_user_id)
                if not users:
                    del message.reactions[name]
            message.updated_seq = self._next_seq()
        return {"ok": True}

    # -- response_url -----------------------------------------------------------------------------------
    def response_url_post(self, token: str, body: Any) -> Reply:
        if not isinstance(body, dict):
            reply = Reply(400, {"ok": False, "error": "invalid_payload", "warning": SANDBOX_WARNING})
            self._record_call("response_url", {"id": token}, reply)
            return reply
        rule = self._take_failure("response_url")
        if rule is not None and rule.mode in ("ratelimit", "error"):
            headers = {"Retry-After": str(rule.retry_after)} if rule.mode == "ratelimit" else {}
            reply = Reply(rule.status, {"ok": False, "error": rule.error, "warning": SANDBOX_WARNING}, headers)
            self._record_call("response_url", {"id": token, **body}, reply)
            return reply
        with self._lock:
            context = self._response_urls.get(token, {})
            if context:
                context["uses"] += 1
            channel = context.get("channel") or body.get("channel")
            original = self._find(channel, context.get("message_ts")) if context.get("message_ts") else None
            text = body.get("text") if isinstance(body.get("text"), str) else None
            blocks = body.get("blocks") if isinstance(body.get("blocks"), list) else None
            if _flag(body, "delete_original"):
                if original is not None:
                    original.deleted = True
                    original.updated_seq = self._next_seq()
            elif _flag(body, "replace_original") and original is not None:
                self._edit(original, text if text is not None else "", blocks, source="response_url")
            else:
                response_type = body.get("response_type") or "ephemeral"
                self._bot_message(channel, text or "", "response_url",
                                  thread_ts=body.get("thread_ts") or context.get("thread_ts"), blocks=blocks,
                                  ephemeral_for=(context.get("user") or "unknown") if response_type != "in_channel"
                                  else None, response_type=response_type)
        reply = Reply(200, {"ok": True, "warning": SANDBOX_WARNING}, {}, rule.delay if rule is not None else 0.0)
        self._record_call("response_url", {"id": token, **body}, reply)
        log.info("slack sandbox (development stand-in): response_url %s -> ok", token)
        return reply


def _api(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    body.setdefault("warning", SANDBOX_WARNING)
    body.setdefault("response_metadata", {})
    body["response_metadata"].setdefault("warnings", [SANDBOX_WARNING])
    return Reply(status, body, headers or {})


_METHODS = {
    "auth.test": SandboxState.auth_test,
    "api.test": SandboxState.api_test,
    "chat.postMessage": SandboxState.chat_post_message,
    "chat.postEphemeral": SandboxState.chat_post_ephemeral,
    "chat.update": SandboxState.chat_update,
    "chat.delete": SandboxState.chat_delete,
    "users.info": SandboxState.users_info,
    "users.list": SandboxState.users_list,
    "conversations.replies": SandboxState.conversations_replies,
    "conversations.info": SandboxState.conversations_info,
    "conversations.members": SandboxState.conversations_members,
    "reactions.add": SandboxState.reactions_add,
    "reactions.remove": SandboxState.reactions_remove,
}


# -- HTTP ----------------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    secret = ""  # the control endpoints' secret (SlackSandbox sets it; empty refuses every control call)

    def __init__(self, port: int, state: SandboxState, stopping: threading.Event) -> None:
        self.state = state
        self.stopping = stopping
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "InsightMeshSlackSandbox/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("slack sandbox (development stand-in): " + format, *args)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, verb: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        path = url.path
        # Every request: a loopback Host (DNS rebinding) and no foreign Origin; the control
        # endpoints also need the run's secret (local_auth). The Web API needs only a bot token.
        control = path.startswith("/_sandbox/") and path != "/_sandbox/health"
        refused = local_auth.refusal(self.headers.get("Host"), self.headers.get("Origin"),
                                     self.headers.get(local_auth.HEADER), self.server.secret if control else None)
        if refused is not None:
            self._raw()
            self._send(Reply(refused[0], {"ok": False, "error": "forbidden" if refused[0] == 403 else "not_authed",
                                          "message": refused[1], "warning": SANDBOX_WARNING}))
            return
        try:
            if path.startswith("/api/"):
                reply = self._web_api(path[len("/api/"):], query)
            elif path.startswith("/files-pri/") and verb == "GET":
                self._send_file(path[len("/files-pri/"):].split("/", 1)[0])
                return
            elif path.startswith("/response/") and verb == "POST":
                reply = state.response_url_post(path[len("/response/"):], self._json_body(default=None))
            elif path.startswith("/_sandbox/"):
                reply = self._control(verb, path[len("/_sandbox/"):], query)
            elif path == "/" and verb == "GET":
                reply = Reply(200, {"ok": True, "warning": SANDBOX_WARNING, "api": state.base_url + "api/",
                                    "about": "Slack Web API development stand-in for InsightMesh (not Slack)"})
            else:
                reply = Reply(404, {"ok": False, "error": "not_found", "warning": SANDBOX_WARNING})
        except SandboxError as error:
            reply = Reply(400, {"ok": False, "error": "bad_request", "message": str(error), "warning": SANDBOX_WARNING})
        self._send(reply)

    def _raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _json_body(self, default: Any) -> Any:
        raw = self._raw()
        if not raw.strip():
            return default
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def _web_api(self, method: str, query: dict[str, str]) -> Reply:
        state = self.server.state
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        raw = self._raw()
        args: dict[str, Any] = dict(query)
        if raw:
            if content_type == "application/json":
                try:
                    parsed = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return _api(200, {"ok": False, "error": "invalid_json"})
                if not isinstance(parsed, dict):
                    return _api(200, {"ok": False, "error": "json_not_object"})
                args.update(parsed)
            elif content_type in ("application/x-www-form-urlencoded", ""):
                args.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
            else:
                return _api(200, {"ok": False, "error": "invalid_form_data"})
        authorization = self.headers.get("Authorization") or ""
        token = authorization[len("Bearer "):].strip() if authorization.startswith("Bearer ") else None
        token = token or (args.get("token") if isinstance(args.get("token"), str) else None)
        return state.api_call(method, args, token)

    def _control(self, verb: str, name: str, query: dict[str, str]) -> Reply:
        state = self.server.state
        if name == "messages" and verb == "GET":
            return Reply(200, state.messages(query.get("channel") or None, query.get("thread_ts") or None,
                                             query.get("since") or None))
        if name == "messages" and verb == "POST":
            body = self._object_body()
            message = state.add_user_message(channel=str(body.get("channel") or ""), user=str(body.get("user") or ""),
                                             text=str(body.get("text") or ""), thread_ts=body.get("thread_ts"),
                                             ts=body.get("ts"))
            return Reply(200, {"ok": True, "ts": message["ts"], "message": message, "warning": SANDBOX_WARNING})
        if name == "calls" and verb == "GET":
            return Reply(200, state.calls(query.get("method") or None))
        if name == "reset" and verb == "POST":
            state.reset()
            return Reply(200, {"ok": True, "warning": SANDBOX_WARNING})
        if name == "fail" and verb == "POST":
            body = self._object_body()
            try:
                rule = state.fail(str(body.get("method") or ""), str(body.get("mode") or ""),
                                  int(body.get("count", 1)), retry_after=int(body.get("retry_after", 1)),
                                  delay=float(body.get("delay", 0.0)), error=body.get("error"),
                                  status=body.get("status"), channel=body.get("channel"))
            except (TypeError, ValueError) as error:
                raise SandboxError(str(error)) from error
            return Reply(200, {"ok": True, "rule": rule.describe(), "pending": state.failures()})
        if name == "fail" and verb == "GET":
            return Reply(200, {"ok": True, "pending": state.failures()})
        if name == "users" and verb == "POST":
            body = self._json_body(default=None)
            users = body.get("users") if isinstance(body, dict) and "users" in body else body
            users = [users] if isinstance(users, dict) else users
            if not isinstance(users, list) or not all(isinstance(user, dict) for user in users):
                raise SandboxError("send a user object, a list of them, or {\"users\": [...]}")
            return Reply(200, {"ok": True, "users": state.add_users(users)})
        if name == "users/generate" and verb == "POST":
            body = self._object_body()
            try:
                added = state.generate_users(body.get("count"), domain=str(body.get("domain") or "example.com"),
                                             start=body.get("start", 1), id_prefix=str(body.get("id_prefix") or "U"))
            except TypeError as error:
                raise SandboxError(str(error)) from error
            return Reply(200, {"ok": True, "count": len(added), "first": added[0], "last": added[-1]})
        if name == "users/remove" and verb == "POST":
            ids = self._object_body().get("ids")
            if not isinstance(ids, list) or not all(isinstance(user_id, str) for user_id in ids):
                raise SandboxError("send {\"ids\": [\"U...\", ...]}")
            return Reply(200, {"ok": True, "removed": state.remove_users(ids)})
        if name == "response_urls" and verb == "POST":
            body = self._object_body()
            url = state.response_url(channel=body.get("channel"), user=body.get("user"),
                                     message_ts=body.get("message_ts"), thread_ts=body.get("thread_ts"))
            return Reply(200, {"ok": True, "response_url": url})
        if name == "channels" and verb == "POST":
            body = self._object_body()
            members = body.get("members") or []
            if not isinstance(members, list):
                raise SandboxError("members must be a list of user ids")
            channel = state.set_channel(str(body.get("id") or ""), members, kind=str(body.get("kind") or "public"),
                                        ext_shared=bool(body.get("ext_shared")), user=body.get("user"),
                                        name=body.get("name"))
            return Reply(200, {"ok": True, "channel": channel})
        if name == "ts" and verb == "POST":
            return Reply(200, {"ok": True, "ts": state.next_ts()})
        if name == "health" and verb == "GET":
            return Reply(200, {"ok": True, "sandbox": "slack-web-api", "warning": SANDBOX_WARNING,
                               "bot_user_id": state.bot_user_id, "team_id": state.team_id})
        return Reply(404, {"ok": False, "error": "not_found", "warning": SANDBOX_WARNING})

    def _object_body(self) -> dict[str, Any]:
        body = self._json_body(default={})
        if not isinstance(body, dict):
            raise SandboxError("the body must be a JSON object")
        return body

    def _send_file(self, file_id: str) -> None:
        authorization = self.headers.get("Authorization") or ""
        token = authorization[len("Bearer "):].strip() if authorization.startswith("Bearer ") else None
        status, found = self.server.state.download_file(file_id, token)
        data = found["content"] if found is not None else b"<html>sign in to Slack</html>"
        self.send_response(status)
        self.send_header("Content-Type", found["mimetype"] if found is not None else "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.send_header(SANDBOX_HEADER, SANDBOX_HEADER_VALUE)
        self.end_headers()
        self.wfile.write(data)

    def _send(self, reply: Reply) -> None:
        if reply.delay:
            # The call already happened (its message is recorded); only the answer is late.
            self.server.stopping.wait(reply.delay)
        data = json.dumps(reply.body).encode("utf-8")
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header(SANDBOX_HEADER, SANDBOX_HEADER_VALUE)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("slack sandbox (development stand-in): the client went away before the answer")


# -- in-process API --------------------------------------------------------------------------------------
class SlackSandbox:
    """The sandbox server, for tests and ``insightmesh dev`` (127.0.0.1 only)."""

    def __init__(self, port: int = 0, *, secret: str | None = None, **identity: str) -> None:
        self.port = port
        self.secret = secret or local_auth.new_secret()  # for /_sandbox/* over HTTP (X-InsightMesh-Local-Token)
        self.state = SandboxState(**identity)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def url(self) -> str:
        """The Web API base URL, for ``WebClient(base_url=...)`` and ``SLACK_API_URL``."""
        return self.root + "api/"

    def start(self) -> SlackSandbox:
        self._stopping.clear()
        self._server = _Server(self.port, self.state, self._stopping)
        self._server.secret = self.secret
        self.port = int(self._server.server_address[1])
        self.state.base_url = self.root
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="slack-sandbox", daemon=True)
        self._thread.start()
        log.info("Slack Web API development sandbox (a stand-in, NOT Slack) on %s", self.url)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def __enter__(self) -> SlackSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection and control ------------------------------------------------------------------------
    def messages(self, channel: str | None = None, thread_ts: str | None = None,
                 since: str | None = None) -> list[dict[str, Any]]:
        return self.state.messages(channel, thread_ts, since)

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        return self.state.calls(method)

    def reset(self) -> None:
        self.state.reset()

    def fail(self, method: str, mode: str, count: int = 1, **options: Any) -> dict[str, Any]:
        return self.state.fail(method, mode, count, **options).describe()

    def add_users(self, *users: dict[str, Any] | Iterable[dict[str, Any]]) -> list[str]:
        """Register users: ``add_users(u1, u2)`` or ``add_users([u1, u2, ...])``."""
        flat: list[dict[str, Any]] = []
        for given in users:
            if isinstance(given, dict):
                flat.append(given)
            else:
                flat.extend(given)
        return self.state.add_users(flat)

    def generate_users(self, count: int, *, domain: str = "example.com", start: int = 1,
                       id_prefix: str = "U") -> list[str]:
        return self.state.generate_users(count, domain=domain, start=start, id_prefix=id_prefix)

    def remove_users(self, *user_ids: str) -> list[str]:
        return self.state.remove_users(user_ids)

    def add_file(self, name: str, content: bytes, mimetype: str) -> dict[str, Any]:
        return self.state.add_file(name, content, mimetype)

    def set_channel(self, channel_id: str, members: Iterable[str], **options: Any) -> dict[str, Any]:
        return self.state.set_channel(channel_id, members, **options)

    def response_url(self, *, channel: str | None, user: str | None = None, message_ts: str | None = None,
                     thread_ts: str | None = None) -> str:
        return self.state.response_url(channel=channel, user=user, message_ts=message_ts, thread_ts=thread_ts)

    def add_user_message(self, *, channel: str, user: str, text: str, thread_ts: str | None = None) -> dict[str, Any]:
        return self.state.add_user_message(channel=channel, user=user, text=text, thread_ts=thread_ts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m insightmesh_local.slack_sandbox",
                                     description="Slack Web API development stand-in (NOT Slack), on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--quiet", action="store_true", help="do not log every call")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s [slack-sandbox] %(message)s", stream=sys.stderr)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        sandbox = SlackSandbox(port=args.port).start()
    except OSError as error:
        print(f"slack sandbox: cannot listen on 127.0.0.1:{args.port}: {error}", file=sys.stderr)
        return 1
    given = bool(os.environ.get(local_auth.ENVIRONMENT_VARIABLE))
    secret = f"${local_auth.ENVIRONMENT_VARIABLE}" if given else \
        f"export {local_auth.ENVIRONMENT_VARIABLE}={sandbox.secret}  (for insightmesh chat)"
    print(f"Slack Web API development sandbox — NOT Slack, nothing leaves this machine.\n"
          f"  SLACK_API_URL={sandbox.url}\n  inspect: {sandbox.root}_sandbox/messages  (Ctrl-C to stop)\n"
          f"  /_sandbox/* needs the header {local_auth.HEADER}: {secret}",
          file=sys.stderr, flush=True)
    while not stopping.wait(0.5):
        pass
    sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["SANDBOX_WARNING", "FailRule", "Message", "SandboxState", "SlackSandbox", "main"]
