"""The sandbox's records and its store: messages, calls, users, channels, files, failure rules and
response URLs (the Web API methods over them are :mod:`.web_api`)."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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
    streaming: bool = False  # chat.startStream until chat.stopStream (slack_sandbox.streams)
    files: list[dict[str, Any]] | None = None  # a file share (files.completeUploadExternal: slack_sandbox.uploads)

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
            "streaming": self.streaming,
            "files": self.files,
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
        if self.files:
            view["files"] = self.files
            view["upload"] = False
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
class SandboxStore:
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
        self._uploads: dict[str, str] = {}  # upload URL token -> file id (slack_sandbox.uploads)
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
            self._uploads.clear()
            self._channels.clear()

    def set_channel(self, channel_id: str, members: Iterable[str], *, kind: str = "public",
                    ext_shared: bool = False, user: str | None = None, name: str | None = None,
                    bot_member: bool = True) -> dict[str, Any]:
        """Register a conversation for ``conversations.info`` / ``conversations.members``: its
        ``kind`` (public, private, mpim, im), its members (the bot is added unless it is an im with
        ``user``, or ``bot_member`` is false), whether it is shared with another organisation."""
        if kind not in ("public", "private", "mpim", "im"):
            raise SandboxError("kind must be public, private, mpim or im")
        member_ids = [str(member) for member in members]
        if kind == "im":
            if not user:
                raise SandboxError("an im needs the user it is with")
            member_ids = [user, self.bot_user_id]
        elif bot_member and self.bot_user_id not in member_ids:
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
            if found is not None and found.get("completed") is False:  # an upload not completed yet
                found = None
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

    def generate_users(self, count: object, *, domain: str = "example.com", start: object = 1,
                       id_prefix: str = "U") -> list[str]:
        """Register ``count`` generated people in one go (ids ``U00000001``..., e-mails
        ``user<n>@<domain>``): the bulk form of :meth:`add_users` for large directories.
        ``count`` and ``start`` may come straight from a control request's JSON: they are checked here."""
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
