"""Slack's Web API methods, as the sandbox answers them (see the package docstring for the list):
:class:`SandboxState` is the store with its methods."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from insightmesh_local.slack_sandbox import assistant, history, streams, uploads, views
from insightmesh_local.slack_sandbox.state import (
    _CURSOR_PREFIX,
    SANDBOX_WARNING,
    USERS_LIST_MAX_LIMIT,
    Message,
    Reply,
    SandboxStore,
    _flag,
    _structured,
    _text,
    _ts_key,
    log,
)


class SandboxState(SandboxStore):
    """The store (:class:`SandboxStore`) and Slack's Web API over it; thread-safe."""

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
            "is_org_shared": False, "is_member": self.bot_user_id in found["members"],
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
                                  "text": text if text is not None else message.text, "blocks": blocks,
                                  "previous_blocks": message.blocks})
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
    "chat.startStream": streams.chat_start_stream,
    "chat.appendStream": streams.chat_append_stream,
    "chat.stopStream": streams.chat_stop_stream,
    "users.info": SandboxState.users_info,
    "users.list": SandboxState.users_list,
    "conversations.replies": SandboxState.conversations_replies,
    "conversations.info": SandboxState.conversations_info,
    "conversations.members": SandboxState.conversations_members,
    "reactions.add": SandboxState.reactions_add,
    "reactions.remove": SandboxState.reactions_remove,
    **assistant.METHODS,  # assistant.threads.setStatus / setSuggestedPrompts / setTitle
    **history.METHODS,  # conversations.history
    **views.METHODS,  # views.open / views.publish
    **uploads.METHODS,  # files.getUploadURLExternal / files.completeUploadExternal / files.info
}
