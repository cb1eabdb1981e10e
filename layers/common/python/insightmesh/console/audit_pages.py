"""The console's Audit page (admins): who did what to which resource, newest first.

One route, ``GET /console/audit``, a client of ``GET /api/audit``. The filters are the API's: actor
(e-mail or user id), action, target, and a date range. The range is chosen as days in the viewer's
sense: ``from`` and ``to`` are ``<input type="date">`` values read in the time zone the form sends
(``tz``, an IANA name ``console.js`` fills in from the browser; UTC without script, and the page
says which), turned into ISO 8601 bounds — the first and the last instant of those days there.
The API limits a range without a target to 31 days; its 422 (or any refused filter) is shown in
place with the filter values kept. The cursor links keep every filter, so the API's cursor, signed
for those filters, stays valid. Each entry's details (before, after, reason, request id) are its
JSON, pretty-printed and escaped in a ``<details>``; a target links to its console page.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from typing import Any, Final
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aws_lambda_powertools.event_handler import Response
from pydantic import Field, ValidationError, field_validator

from insightmesh.console.api import ApiFailure
from insightmesh.console.app import PAGE_SIZE, ConsoleResolver, _Form, invalid

PATH: Final = "/console/audit"
FILTERS: Final = ("actor", "action", "target", "from", "to", "tz")
# The console pages a target names (``kind:id``); knowledge sources open the Knowledge page filtered.
TARGET_PAGES: Final = {"agent": "/console/agents/", "group": "/console/groups/", "user": "/console/users/",
                       "job": "/console/jobs/"}


class AuditFilters(_Form):
    """What the filter form may send: the API's own bounds; days as ``YYYY-MM-DD`` in ``tz``."""

    actor: str = Field(default="", max_length=254)
    action: str = Field(default="", max_length=64)
    target: str = Field(default="", max_length=200)
    start_day: date | None = Field(default=None, alias="from")
    end_day: date | None = Field(default=None, alias="to")
    tz: str = Field(default="", max_length=64)

    @field_validator("start_day", "end_day", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as error:
                raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz or "UTC")

    def start(self) -> str:
        """The first instant of the ``from`` day in the viewer's zone, ISO 8601 (or empty)."""
        return datetime.combine(self.start_day, time.min, self.zone).isoformat() if self.start_day else ""

    def end(self) -> str:
        """The last instant of the ``to`` day in the viewer's zone, ISO 8601 (or empty)."""
        return datetime.combine(self.end_day, time.max, self.zone).isoformat() if self.end_day else ""


def target_href(target: str) -> str | None:
    """The console page of an audit target, where one exists (``agent:meddic`` → its agent page)."""
    kind, _, name = target.partition(":")
    if not name:
        return None
    if kind == "knowledge":
        return f"/console/knowledge?{urlencode({'source': name})}"
    page = TARGET_PAGES.get(kind)
    return f"{page}{quote(name, safe='')}" if page else None


def details(entry: dict[str, Any]) -> str:
    """An entry's details as indented JSON (the template escapes it)."""
    shown = {key: entry.get(key) for key in ("outcome", "reason", "before", "after", "actor_id", "request_id",
                                               "id")}
    return json.dumps(shown, indent=2, ensure_ascii=False, default=str)


def register(app: ConsoleResolver) -> None:
    """Add the Audit route to ``app``."""

    @app.get(PATH)
    def _audit() -> Response[str]:
        session = app.signed_in()  # a member's call is the API's 403, shown as a page
        raw = {name: app.query(name) or "" for name in FILTERS}
        cursor = app.query("cursor") or ""
        error: ApiFailure | None = None
        entries: list[dict[str, Any]] = []
        next_cursor = None
        zone = "UTC"
        try:
            filters = AuditFilters.model_validate(raw)
        except ValidationError as refused:
            error = invalid(refused)
        else:
            zone = filters.tz or "UTC"
            answer = app.call("GET", "/api/audit",
                              query={"limit": str(PAGE_SIZE), "cursor": cursor, "actor": filters.actor,
                                     "action": filters.action, "target": filters.target, "start": filters.start(),
                                     "end": filters.end()})
            if answer.status in (401, 403) or (not answer.ok and answer.status not in (400, 422)):
                return app.failure(answer.error, session=session)
            if answer.ok:
                next_cursor = answer.body.get("next_cursor")
                entries = [{**entry, "href": target_href(entry["target"]), "details": details(entry)}
                           for entry in answer.body["items"]]
            else:  # a range too long, end before start, a cursor of other filters: in place
                error = answer.error
        filtered = any(raw[name] for name in FILTERS if name != "tz")
        return app.page("audit.html", session=session, entries=entries, error=error, values=raw, zone=zone,
                        filtered=filtered, request_cursor=cursor, next_cursor=next_cursor)


__all__ = ["AuditFilters", "details", "register", "target_href"]
