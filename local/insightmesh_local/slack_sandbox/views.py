"""Slack's views in the sandbox: ``views.open`` (modals) and ``views.publish`` (the Home tab) as Slack
answers them, the views they opened or published (``GET /_sandbox/views``) for tests and
``insightmesh chat`` to read, and the ``view_submission`` payload Slack would send when someone
submits an opened modal (:func:`submission_payload`).

Slack's rules, as its method pages state them (docs.slack.dev/reference/methods/views.open and
views.publish): a ``trigger_id`` is exchanged once (``exchanged_trigger_id``) and expires 3 seconds
after the interaction that issued it (``expired_trigger_id``); one not shaped ``<n>.<n>.<hex>`` is
``invalid_trigger_id``. The time a trigger was issued is its first part (epoch seconds, as
``insightmesh_local.slack_signing.new_trigger_id`` makes it). A view is a JSON object of type
``modal`` (``views.open``) or ``home`` (``views.publish``, for ``user_id``); a modal's title
(plain_text, at most 24 characters) is required, ``submit`` too when it has input blocks; at most
100 blocks and 3,000 characters of ``private_metadata``; else ``invalid_arguments``. Other
arguments missing: ``invalid_arguments``. Any user id is known, as ``users.info`` makes one up.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import TYPE_CHECKING, Any, Final

from insightmesh_local.slack_sandbox.state import _structured, _text

if TYPE_CHECKING:
    from insightmesh_local.slack_sandbox.web_api import SandboxState

TRIGGER_TTL_SECONDS: Final = 3.0
_TRIGGER: Final = re.compile(r"^(\d+)\.(\d+)\.([0-9a-f]+)$")
MAX_BLOCKS: Final = 100
MAX_METADATA: Final = 3000
MAX_TITLE: Final = 24


def _store(state: SandboxState) -> dict[str, Any]:
    found: dict[str, Any] | None = getattr(state, "_views", None)
    if found is None:
        found = {"views": [], "exchanged": set()}
        state._views = found  # type: ignore[attr-defined]
    return found


def _plain(value: Any, limit: int) -> bool:
    return (isinstance(value, dict) and value.get("type") == "plain_text" and isinstance(value.get("text"), str)
            and 0 < len(value["text"]) <= limit)


def _view_error(view: Any, kind: str) -> str | None:
    if not isinstance(view, dict) or view.get("type") != kind:
        return "invalid_arguments"
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS or not all(isinstance(b, dict) for b in blocks):
        return "invalid_arguments"
    metadata = view.get("private_metadata")
    if metadata is not None and (not isinstance(metadata, str) or len(metadata) > MAX_METADATA):
        return "invalid_arguments"
    if kind == "modal":
        if not _plain(view.get("title"), MAX_TITLE):
            return "invalid_arguments"
        if any(block.get("type") == "input" for block in blocks) and not _plain(view.get("submit"), MAX_TITLE):
            return "invalid_arguments"
    return None


def _view_object(state: SandboxState, view: dict[str, Any], *, user: str | None) -> dict[str, Any]:
    view_id = "V" + secrets.token_hex(5).upper()
    return {
        "id": view_id, "team_id": state.team_id, "type": view["type"], "blocks": view.get("blocks", []),
        "private_metadata": view.get("private_metadata", ""), "callback_id": view.get("callback_id", ""),
        "state": {"values": {}}, "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
        "title": view.get("title"), "close": view.get("close"), "submit": view.get("submit"),
        "clear_on_close": bool(view.get("clear_on_close")), "notify_on_close": bool(view.get("notify_on_close")),
        "external_id": view.get("external_id", ""), "previous_view_id": None, "root_view_id": view_id,
        "app_id": state.app_id, "app_installed_team_id": state.team_id, "bot_id": state.bot_id,
        "user": user,
    }


def _parse_view(args: dict[str, Any]) -> Any:
    try:
        return _structured(args, "view")
    except json.JSONDecodeError:
        return None


def views_open(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    """``views.open``: a modal for the user whose interaction issued ``trigger_id``."""
    trigger = _text(args, "trigger_id")
    view = _parse_view(args)
    if trigger is None or view is None:
        return {"ok": False, "error": "invalid_arguments"}
    match = _TRIGGER.match(trigger)
    if match is None:
        return {"ok": False, "error": "invalid_trigger_id"}
    store = _store(state)
    with state._lock:
        if trigger in store["exchanged"]:
            return {"ok": False, "error": "exchanged_trigger_id"}
        if time.time() - int(match.group(1)) > TRIGGER_TTL_SECONDS + 1:  # issued in a whole second
            return {"ok": False, "error": "expired_trigger_id"}
        error = _view_error(view, "modal")
        if error:
            return {"ok": False, "error": error}
        store["exchanged"].add(trigger)
        opened = _view_object(state, view, user=None)
        store["views"].append({"method": "views.open", "trigger_id": trigger, "view": opened})
    return {"ok": True, "view": {key: value for key, value in opened.items() if key != "user"}}


def views_publish(state: SandboxState, args: dict[str, Any]) -> dict[str, Any]:
    """``views.publish``: the Home tab ``user_id`` sees (the latest one replaces the earlier)."""
    user = _text(args, "user_id")
    view = _parse_view(args)
    if user is None or view is None:
        return {"ok": False, "error": "invalid_arguments"}
    with state._lock:
        error = _view_error(view, "home")
        if error:
            return {"ok": False, "error": error}
        published = _view_object(state, view, user=user)
        _store(state)["views"].append({"method": "views.publish", "user_id": user, "view": published})
    return {"ok": True, "view": {key: value for key, value in published.items() if key != "user"}}


def views(state: SandboxState, *, user: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
    """The views opened or published, oldest first (``GET /_sandbox/views?user=&method=``)."""
    with state._lock:
        return [dict(entry) for entry in _store(state)["views"]
                if (method is None or entry["method"] == method)
                and (user is None or entry.get("user_id") in (None, user))]


def reset(state: SandboxState) -> None:
    with state._lock:
        store = _store(state)
        store["views"].clear()
        store["exchanged"].clear()


def submission_payload(opened: dict[str, Any], *, user_id: str, values: dict[str, dict[str, Any]],
                       team_id: str | None = None, api_app_id: str | None = None) -> dict[str, Any]:
    """The ``view_submission`` Slack sends when ``user_id`` submits ``opened`` (a view as
    ``views.open`` answered it) with ``values`` (``{block_id: {action_id: {type, value | selected_option}}}``)."""
    team = team_id or str(opened.get("team_id") or "")
    view = {key: value for key, value in opened.items() if key != "user"}
    view["state"] = {"values": values}
    return {
        "type": "view_submission", "team": {"id": team, "domain": "sandbox"},
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team},
        "api_app_id": api_app_id or str(opened.get("app_id") or ""), "token": "sandbox-verification-token",
        "trigger_id": f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}",
        "view": view, "response_urls": [], "is_enterprise_install": False, "enterprise": None,
    }


METHODS: Final = {"views.open": views_open, "views.publish": views_publish}

__all__ = ["METHODS", "submission_payload", "views", "views_open", "views_publish"]
