"""The console's Knowledge page (admins): the knowledge base's documents and why some failed.

One route, ``GET /console/knowledge``, a client of ``GET /api/knowledge/documents``: each
document's title, source, ACL, status (a failed one with its reason), chunks and times. The
filters are the API's own (source, status, one ACL principal), sent as a GET form so the page
works without script and a filtered view can be bookmarked; the cursor links keep them. Without
a filter the API lists the failed documents first. No API lists the sources, so the source is
free text with an example (a source also links to its own filtered view). A filter the API
refuses (a 422, say an ACL principal it cannot read) is shown in place with the values kept.
"""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import Field, ValidationError

from insightmesh.console.api import ApiFailure
from insightmesh.console.app import PAGE_SIZE, ConsoleResolver, _Form, invalid

PATH = "/console/knowledge"


class KnowledgeFilters(_Form):
    """What the filter form may send (the API's own bounds)."""

    source: str = Field(default="", max_length=512)
    status: Literal["", "indexed", "failed"] = ""
    acl: str = Field(default="", max_length=320)


def register(app: ConsoleResolver) -> None:
    """Add the Knowledge route to ``app``."""

    @app.get(PATH)
    def _knowledge() -> Response[str]:
        session = app.signed_in()  # a member's call is the API's 403, shown as a page
        raw = {name: app.query(name) or "" for name in ("source", "status", "acl")}
        cursor = app.query("cursor") or ""
        error: ApiFailure | None = None
        documents: list[dict[str, object]] = []
        next_cursor = None
        try:
            filters = KnowledgeFilters.model_validate(raw)
        except ValidationError as refused:
            error = invalid(refused)
        else:
            answer = app.call("GET", "/api/knowledge/documents",
                              query={"limit": str(PAGE_SIZE), "cursor": cursor, "source": filters.source,
                                     "status": filters.status, "acl": filters.acl})
            if answer.status in (401, 403) or (not answer.ok and answer.status not in (400, 422)):
                return app.failure(answer.error, session=session)
            if answer.ok:
                documents, next_cursor = answer.body["items"], answer.body.get("next_cursor")
            else:  # a filter (or a cursor) the API refused: in place, with the values kept
                error = answer.error
        filtered = any(raw.values())
        return app.page("knowledge.html", session=session, documents=documents, error=error, values=raw,
                        filtered=filtered, request_cursor=cursor, next_cursor=next_cursor)


__all__ = ["KnowledgeFilters", "register"]
