"""A 👍/👎 on a reply: stored per reply and voter, and counted per agent and day.

The vote is one item of the conversations table (:class:`FeedbackRecord`, one per reply and
voter: a second click replaces the first). So that the dashboard can show votes per agent without a
Scan, the vote is also added to the agent's daily counters in the usage table
(:func:`insightmesh.llm.usage.record_feedback`, fail-soft). The agent is the one that answered the
request named by the button's value (its request item: one ``GetItem``); the voter's earlier vote
on the reply (one ``GetItem``) keeps a repeated or changed click from being counted twice. A
request item expires after 7 days: a vote on an older reply is stored but not counted.

The vote also copies what produced the answer from that request item (agent, model, prompt
version, passages, access scope, question and answer: :mod:`insightmesh.conversation.provenance`),
and a 👎's modal adds its reason and text (``feedback_reason``, stored as a 👎 of its own: a lost
or late click still leaves the reason). Feedback is kept 365 days (``expires_at``).

A 👎 with a reason also becomes a case of the evaluation set (:func:`insightmesh.evaluation.cases.case_from_feedback`:
one conditional PutItem, one case per reply however often it is voted), asked with the answer's
access (its asker, or its shared audience's principals; unknown: what anyone may see). Best effort:
the vote is stored whether or not the case can be.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pynamodb.exceptions import PynamoDBException
from pynamodb.expressions.condition import Condition

from insightmesh.api.errors import ValidationFailedError
from insightmesh.api.pagination import Page, key_cursor, query_page, start_key
from insightmesh.conversation.models import FeedbackRecord, RequestRecord, request_sk, thread_pk
from insightmesh.conversation.requests import ConversationRequest
from insightmesh.llm.usage import Vote, record_feedback
from insightmesh.observability import get_logger

if TYPE_CHECKING:
    from insightmesh.evaluation.cases import CaseScope

FEEDBACK_TTL: Final = timedelta(days=365)
FEEDBACK_KIND: Final = "feedback"  # the one partition of the feedback-by-time index
UNKNOWN_AGENT: Final = "-"  # feedback-by-agent's key for a reply whose agent is unknown
logger = get_logger()


def _answered(request: ConversationRequest) -> RequestRecord | None:
    """The request item of the reply voted on: its agent and what produced the answer."""
    if not request.thread_key or not request.action_value:
        return None
    try:
        return RequestRecord.get(thread_pk(request.thread_key), request_sk(request.action_value),
                                 attributes_to_get=["agent", "provenance"])
    except RequestRecord.DoesNotExist:
        return None


def vote_of(request: ConversationRequest) -> Vote:
    """👍 is up; 👎 and the 👎 modal's submission (``feedback_reason``) are down."""
    return "up" if request.action_id == "feedback_up" else "down"


def record_vote(request: ConversationRequest, *, reason: str | None = None, comment: str | None = None) -> None:
    """Store the vote of ``request`` (a ``feedback_up``/``feedback_down`` action, or the 👎 modal's
    ``feedback_reason`` with its ``reason`` and ``comment``) with what produced the answer, and count it."""
    now = datetime.now(UTC)
    vote = vote_of(request)
    given_reason = reason
    pk, sk = f"reply#{request.team_id}#{request.channel_id}#{request.ts}", f"user#{request.user_id}"
    try:
        earlier = FeedbackRecord.get(pk, sk, attributes_to_get=["vote", "reason", "comment"])
        previous: str | None = earlier.vote
    except FeedbackRecord.DoesNotExist:
        earlier, previous = None, None
    try:
        answered = _answered(request)
    except PynamoDBException as error:  # the count is best effort; the vote itself must be stored
        logger.warning("feedback's agent not found; storage unavailable", extra={"error": str(error)})
        answered = None
    agent = answered.agent if answered is not None else None
    if reason is None and earlier is not None and previous == vote:  # a repeated click keeps the reason
        reason, comment = earlier.reason, earlier.comment
    FeedbackRecord(pk, sk, vote=vote, request_id=request.action_value, agent=agent, created_at=now,
                   expires_at=now + FEEDBACK_TTL, feedback_agent=agent or UNKNOWN_AGENT,
                   feedback_kind=FEEDBACK_KIND, feedback_at=now.isoformat(), reason=reason, comment=comment,
                   provenance=answered.provenance if answered is not None else None).save()
    if agent:
        record_feedback(agent=agent, vote=vote, previous=previous, when=now)
    else:
        logger.info("feedback stored, not counted: the reply's agent is unknown", extra={"vote": vote})
    if vote == "down" and given_reason:
        _to_evaluation_set(request, pk, answered, given_reason, comment)


def _case_scope(made: dict[str, Any], request: ConversationRequest) -> CaseScope:
    """Whose access the answer was given with: its shared audience, its asker, else the public."""
    from insightmesh.evaluation.cases import CaseScope, scope_from_provenance

    recorded = scope_from_provenance(made)
    if recorded is not None:
        return recorded
    if made.get("scope") == "private" and not made.get("asker"):  # recorded before the asker: the voter asked
        from insightmesh.directory.users import users_for_slack_ids

        found = users_for_slack_ids(request.team_id, [request.user_id]).get(request.user_id)
        if found:
            return CaseScope(user_id=found)
    return CaseScope.public()


def _to_evaluation_set(request: ConversationRequest, reply_key: str, answered: RequestRecord | None, reason: str,
                       comment: str | None) -> None:
    """The 👎's answer as a case of the evaluation set (fail-soft, once per reply)."""
    made = answered.provenance if answered is not None and isinstance(answered.provenance, dict) else {}
    question = str(made.get("question") or "").strip()
    if not question:
        logger.info("👎 not added to the evaluation set: the answer's question is unknown")
        return
    from insightmesh.evaluation.cases import case_from_feedback

    listed = made.get("passages")
    passages = [(str(p.get("id")), str(p.get("title"))) for p in listed if isinstance(p, dict) and p.get("id")] \
        if isinstance(listed, list) else []
    try:
        created = case_from_feedback(reply_key=reply_key, question=question, passages=passages,
                                     scope=_case_scope(made, request), reason=reason, comment=comment,
                                     voter=request.user_id)
    except (PynamoDBException, ValueError) as error:
        logger.warning("👎 not added to the evaluation set", extra={"error": type(error).__name__,
                                                                    "detail": str(error)[:200]})
        return
    logger.info("👎 added to the evaluation set" if created else "👎's reply is already in the evaluation set")


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def list_feedback(*, agent: str | None, vote: str | None, start: datetime | None, end: datetime | None,
                  limit: int, cursor: str | None) -> Page[FeedbackRecord]:
    """Feedback newest first: one Query on ``feedback-by-agent`` (with ``agent``) or
    ``feedback-by-time``, between ``start`` and ``end`` (either open), ``vote`` as a filter."""
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and end < start:
        raise ValidationFailedError("end is before start", details=[
            {"loc": ["query", "end"], "msg": "end is before start", "type": "value_error"}])
    scope = "feedback:" + json.dumps([agent, vote, start and start.isoformat(), end and end.isoformat()])
    condition: Condition | None = None
    if start is not None and end is not None:
        condition = FeedbackRecord.feedback_at.between(start.isoformat(), end.isoformat())
    elif start is not None:
        condition = FeedbackRecord.feedback_at >= start.isoformat()
    elif end is not None:
        condition = FeedbackRecord.feedback_at <= end.isoformat()
    filters = FeedbackRecord.vote == vote if vote else None
    index = FeedbackRecord.by_agent if agent else FeedbackRecord.by_time
    results = index.query(agent or FEEDBACK_KIND, range_key_condition=condition, filter_condition=filters,
                          scan_index_forward=False, limit=limit, last_evaluated_key=start_key(cursor, scope=scope))
    items, last_key = query_page(results, FeedbackRecord)
    return Page[FeedbackRecord](items=items, next_cursor=key_cursor(last_key, scope=scope))


__all__ = ["FEEDBACK_KIND", "FEEDBACK_TTL", "UNKNOWN_AGENT", "list_feedback", "record_vote", "vote_of"]
