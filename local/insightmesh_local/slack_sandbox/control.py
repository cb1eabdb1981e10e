"""The sandbox's inspection and control endpoints, ``/_sandbox/*`` (not Slack; see the package
docstring for the list)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from insightmesh_local.slack_sandbox import assistant, views
from insightmesh_local.slack_sandbox.state import SANDBOX_WARNING, Reply, SandboxError
from insightmesh_local.slack_sandbox.web_api import SandboxState


def control_reply(state: SandboxState, verb: str, name: str, query: dict[str, str],
                  read_body: Callable[[Any], Any]) -> Reply:
    """Answer ``<verb> /_sandbox/<name>``; ``read_body(default)`` reads the request's JSON body."""
    if name == "messages" and verb == "GET":
        return Reply(200, state.messages(query.get("channel") or None, query.get("thread_ts") or None,
                                         query.get("since") or None))
    if name == "messages" and verb == "POST":
        body = _object(read_body)
        message = state.add_user_message(channel=str(body.get("channel") or ""), user=str(body.get("user") or ""),
                                         text=str(body.get("text") or ""), thread_ts=body.get("thread_ts"),
                                         ts=body.get("ts"))
        return Reply(200, {"ok": True, "ts": message["ts"], "message": message, "warning": SANDBOX_WARNING})
    if name == "calls" and verb == "GET":
        return Reply(200, state.calls(query.get("method") or None))
    if name == "reset" and verb == "POST":
        state.reset()
        assistant.reset(state)
        views.reset(state)
        return Reply(200, {"ok": True, "warning": SANDBOX_WARNING})
    if name == "fail" and verb == "POST":
        body = _object(read_body)
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
        body = read_body(None)
        users = body.get("users") if isinstance(body, dict) and "users" in body else body
        users = [users] if isinstance(users, dict) else users
        if not isinstance(users, list) or not all(isinstance(user, dict) for user in users):
            raise SandboxError("send a user object, a list of them, or {\"users\": [...]}")
        return Reply(200, {"ok": True, "users": state.add_users(users)})
    if name == "users/generate" and verb == "POST":
        body = _object(read_body)
        try:
            added = state.generate_users(body.get("count"), domain=str(body.get("domain") or "example.com"),
                                         start=body.get("start", 1), id_prefix=str(body.get("id_prefix") or "U"))
        except TypeError as error:
            raise SandboxError(str(error)) from error
        return Reply(200, {"ok": True, "count": len(added), "first": added[0], "last": added[-1]})
    if name == "users/remove" and verb == "POST":
        ids = _object(read_body).get("ids")
        if not isinstance(ids, list) or not all(isinstance(user_id, str) for user_id in ids):
            raise SandboxError("send {\"ids\": [\"U...\", ...]}")
        return Reply(200, {"ok": True, "removed": state.remove_users(ids)})
    if name == "response_urls" and verb == "POST":
        body = _object(read_body)
        url = state.response_url(channel=body.get("channel"), user=body.get("user"),
                                 message_ts=body.get("message_ts"), thread_ts=body.get("thread_ts"))
        return Reply(200, {"ok": True, "response_url": url})
    if name == "channels" and verb == "POST":
        body = _object(read_body)
        members = body.get("members") or []
        if not isinstance(members, list):
            raise SandboxError("members must be a list of user ids")
        channel = state.set_channel(str(body.get("id") or ""), members, kind=str(body.get("kind") or "public"),
                                    ext_shared=bool(body.get("ext_shared")), user=body.get("user"),
                                    name=body.get("name"), bot_member=body.get("bot_member", True) is not False)
        return Reply(200, {"ok": True, "channel": channel})
    if name.startswith("assistant"):
        found = _assistant(state, verb, name, query, read_body)
        if found is not None:
            return found
    if name == "views" and verb == "GET":  # views.open / views.publish (slack_sandbox.views)
        return Reply(200, {"ok": True, "views": views.views(state, user=query.get("user") or None,
                                                            method=query.get("method") or None)})
    if name == "ts" and verb == "POST":
        return Reply(200, {"ok": True, "ts": state.next_ts()})
    if name == "health" and verb == "GET":
        return Reply(200, {"ok": True, "sandbox": "slack-web-api", "warning": SANDBOX_WARNING,
                           "bot_user_id": state.bot_user_id, "team_id": state.team_id})
    return Reply(404, {"ok": False, "error": "not_found", "warning": SANDBOX_WARNING})


def _assistant(state: SandboxState, verb: str, name: str, query: dict[str, str],
               read_body: Callable[[Any], Any]) -> Reply | None:
    """``GET /_sandbox/assistant`` (the threads, their status, prompts and title), ``POST
    /_sandbox/assistant`` (open the container: ``{"user", "context_channel_id"}``) and ``POST
    /_sandbox/assistant/context`` (``{"channel", "thread_ts", "context_channel_id"}``)."""
    if name == "assistant" and verb == "GET":
        return Reply(200, {"ok": True, "threads": assistant.describe(state, query.get("channel") or None,
                                                                     query.get("thread_ts") or None)})
    if name == "assistant" and verb == "POST":
        body = _object(read_body)
        thread = assistant.start_thread(state, user=str(body.get("user") or ""),
                                        context_channel_id=body.get("context_channel_id") or None,
                                        channel=body.get("channel") or None)
        return Reply(200, {"ok": True, "thread": thread, "warning": SANDBOX_WARNING})
    if name == "assistant/context" and verb == "POST":
        body = _object(read_body)
        thread = assistant.change_context(state, channel=str(body.get("channel") or ""),
                                          thread_ts=str(body.get("thread_ts") or ""),
                                          context_channel_id=str(body.get("context_channel_id") or ""))
        return Reply(200, {"ok": True, "thread": thread, "warning": SANDBOX_WARNING})
    return None


def _object(read_body: Callable[[Any], Any]) -> dict[str, Any]:
    body = read_body({})
    if not isinstance(body, dict):
        raise SandboxError("the body must be a JSON object")
    return body
