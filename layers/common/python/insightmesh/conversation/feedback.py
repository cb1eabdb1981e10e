"""A 👍/👎 on a reply: stored per reply and voter, and counted per agent and day.

The vote is one item of the conversations table (:class:`FeedbackRecord`, one per reply and
voter: a second click replaces the first). So that the dashboard can show votes per agent without a
Scan, the vote is also added to the agent's daily counters in the usage table
(:func:`insightmesh.llm.usage.record_feedback`, fail-soft). The agent is the one that answered the
request named by the button's value (its request item: one ``GetItem``); the voter's earlier vote
on the reply (one ``GetItem``) keeps a repeated or changed click from being counted twice. A
request item expires after 7 days: a vote on an older reply is stored but not counted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from pynamodb.exceptions import PynamoDBException

from insightmesh.conversation.models import FeedbackRecord, RequestRecord, request_sk, thread_pk
from insightmesh.conversation.requests import ConversationRequest
from insightmesh.llm.usage import Vote, record_feedback
from insightmesh.observability import get_logger

FEEDBACK_TTL: Final = timedelta(days=365)
logger = get_logger()


def _answering_agent(request: ConversationRequest) -> str | None:
    if not request.thread_key or not request.action_value:
        return None
    try:
        answered = RequestRecord.get(thread_pk(request.thread_key), request_sk(request.action_value),
                                     attributes_to_get=["agent"])
    except RequestRecord.DoesNotExist:
        return None
    return answered.agent


def record_vote(request: ConversationRequest) -> None:
    """Store the vote of ``request`` (a ``feedback_up``/``feedback_down`` action) and count it."""
    now = datetime.now(UTC)
    vote: Vote = "up" if request.action_id == "feedback_up" else "down"
    pk, sk = f"reply#{request.team_id}#{request.channel_id}#{request.ts}", f"user#{request.user_id}"
    try:
        previous: str | None = FeedbackRecord.get(pk, sk, attributes_to_get=["vote"]).vote
    except FeedbackRecord.DoesNotExist:
        previous = None
    try:
        agent = _answering_agent(request)
    except PynamoDBException as error:  # the count is best effort; the vote itself must be stored
        logger.warning("feedback's agent not found; storage unavailable", extra={"error": str(error)})
        agent = None
    FeedbackRecord(pk, sk, vote=vote, request_id=request.action_value, agent=agent, created_at=now,
                   expires_at=now + FEEDBACK_TTL).save()
    if agent:
        record_feedback(agent=agent, vote=vote, previous=previous, when=now)
    else:
        logger.info("feedback stored, not counted: the reply's agent is unknown", extra={"vote": vote})


__all__ = ["record_vote"]
