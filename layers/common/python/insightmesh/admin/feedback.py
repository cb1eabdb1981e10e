"""``GET /api/feedback``: the 👍/👎 votes on replies, with what produced each answer (admins only).

Newest first; filters: ``agent``, ``rating`` (up/down), ``start``/``end`` (ISO 8601). One Query
per page on a sparse index of the conversations table, never a Scan
(:func:`insightmesh.conversation.feedback.list_feedback`). The question and the answer are part of
the item: feedback is kept 365 days.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, Field

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, Cursor, Limit, responses
from insightmesh.api.pagination import DEFAULT_LIMIT
from insightmesh.auth.guard import authenticate_admin


class PassageOut(BaseModel):
    id: str
    title: str


class FeedbackOut(BaseModel):
    reply: str = Field(description="The reply voted on: <team>#<channel>#<reply ts>.")
    user_id: str = Field(description="The Slack user who voted.")
    rating: Literal["up", "down"]
    reason: str | None = Field(default=None, description="wrong, outdated, not_helpful, unsafe or other (👎 modal).")
    comment: str | None = Field(default=None, description="The 👎 modal's optional text.")
    at: datetime | None = None
    request_id: str | None = None
    agent: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    passages: list[PassageOut] = Field(default_factory=list)
    scope: str | None = Field(default=None, description="Whose access decided what the answer could use.")
    question: str | None = None
    answer: str | None = None


class FeedbackPage(BaseModel):
    items: list[FeedbackOut]
    next_cursor: str | None = None


def register_feedback_routes(app: InsightMeshResolver) -> None:
    @app.get("/api/feedback", summary="Feedback on replies, with what produced each answer", tags=["feedback"],
             security=SECURITY,
             description="Admins only. Newest first; filter by agent, rating (up/down) and a time range.",
             responses=responses(200, "A page of feedback", 403))
    def list_feedback(
        agent: Annotated[str | None, Query(min_length=1, max_length=64, description="The agent's name.")] = None,
        rating: Annotated[Literal["up", "down"] | None, Query(description="up or down")] = None,
        start: Annotated[datetime | None, Query(description="ISO 8601; UTC if no offset.")] = None,
        end: Annotated[datetime | None, Query(description="ISO 8601; UTC if no offset.")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> FeedbackPage:
        authenticate_admin(app, action="feedback.read", target="feedback")
        from insightmesh.conversation import feedback

        page = feedback.list_feedback(agent=agent, vote=rating, start=start, end=end, limit=limit, cursor=cursor)
        items = []
        for record in page.items:
            made = record.provenance if isinstance(record.provenance, dict) else {}
            listed = made.get("passages")
            passages: list[object] = listed if isinstance(listed, list) else []
            items.append(FeedbackOut(
                reply=record.pk.removeprefix("reply#"), user_id=record.sk.removeprefix("user#"),
                rating="up" if record.vote == "up" else "down", reason=record.reason, comment=record.comment,
                at=record.created_at, request_id=record.request_id, agent=record.agent, model=made.get("model"),
                prompt_version=made.get("prompt_version"),
                passages=[PassageOut(id=str(p.get("id")), title=str(p.get("title")))
                          for p in passages if isinstance(p, dict)],
                scope=made.get("scope"), question=made.get("question"), answer=made.get("answer")))
        return FeedbackPage(items=items, next_cursor=page.next_cursor)
