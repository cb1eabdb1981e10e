"""GET /api/feedback (admins): votes with what produced the answer, filtered by agent, rating
and time, paginated by cursor, one Query on a sparse index per page (never a Scan)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from insightmesh.conversation import feedback, provenance, replies
from insightmesh.conversation.models import FeedbackRecord, RequestRecord
from insightmesh.conversation.requests import ConversationRequest, RequestKind
from tests.integration.conftest import DynamoCalls
from tests.integration.test_admin_api import Api, api  # noqa: F401 - the fixture

TEAM, CHANNEL, THREAD = "T0FB", "C0FB", "1796100000.000100"


def answered(request_id: str, agent: str, question: str) -> None:
    """A request the worker answered, with its provenance on the reply state."""
    message = ConversationRequest(kind=RequestKind.MESSAGE, request_id=request_id, team_id=TEAM,
                                  channel_id=CHANNEL, user_id="U0ASKER", text=question, thread_ts=THREAD)
    claim = replies.claim(message)
    made = provenance.capture(agent=agent, agent_impl=None, passages={"doc-1": "Refund policy"}, scope="shared",
                              question=question, answer=f"answer to {question}")
    replies.set_answered(claim.record, "1796100000.000200", agent, made)


def votes_table() -> str:
    import os

    return os.environ["CONVERSATIONS_TABLE"]


def vote(request_id: str, action_id: str, *, user: str, reply_ts: str, reason: str | None = None,
         comment: str | None = None) -> None:
    request = ConversationRequest(kind=RequestKind.ACTION, request_id=f"act:{request_id}:{user}:{action_id}",
                                  team_id=TEAM, channel_id=CHANNEL, user_id=user, ts=reply_ts, thread_ts=THREAD,
                                  action_id=action_id, action_value=request_id)
    feedback.record_vote(request, reason=reason, comment=comment)


@pytest.fixture
def votes(api: Api) -> Api:  # noqa: F811 - the fixture
    answered("msg:a", "assistant", "what is the refund policy?")
    answered("msg:m", "meddic", "score this deal")
    vote("msg:a", "feedback_up", user="U1", reply_ts="1.1")
    vote("msg:a", "feedback_down", user="U2", reply_ts="1.1")
    vote("msg:a", "feedback_reason", user="U2", reply_ts="1.1", reason="outdated", comment="policy changed in May")
    vote("msg:m", "feedback_down", user="U3", reply_ts="2.2")
    return api


def test_a_vote_carries_what_produced_the_answer_and_the_modal_reason(votes: Api) -> None:
    page = votes.ok("GET", "/api/feedback", query={"agent": "assistant", "rating": "down"})
    assert len(page["items"]) == 1
    item = page["items"][0]
    assert item["user_id"] == "U2" and item["rating"] == "down"
    assert item["reason"] == "outdated" and item["comment"] == "policy changed in May"
    assert item["agent"] == "assistant" and item["scope"] == "shared"
    assert item["question"] == "what is the refund policy?" and item["answer"] == "answer to what is the refund policy?"
    assert item["passages"] == [{"id": "doc-1", "title": "Refund policy"}]
    assert item["model"] == provenance.configured_model() and item["model"]


def test_the_modal_reason_does_not_count_the_down_vote_twice(votes: Api) -> None:
    from insightmesh.llm.usage import FeedbackCounts, feedback_subject, period_of

    counts = FeedbackCounts.get(feedback_subject("assistant"), period_of(datetime.now(UTC)))
    assert (counts.up, counts.down) == (1, 1)


def test_filters_by_agent_rating_and_time(votes: Api) -> None:
    everything = votes.ok("GET", "/api/feedback")["items"]
    assert sorted(item["user_id"] for item in everything) == ["U1", "U2", "U3"]
    assert [i["user_id"] for i in votes.ok("GET", "/api/feedback", query={"agent": "meddic"})["items"]] == ["U3"]
    assert [i["user_id"] for i in votes.ok("GET", "/api/feedback", query={"rating": "up"})["items"]] == ["U1"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert votes.ok("GET", "/api/feedback", query={"start": later})["items"] == []
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert len(votes.ok("GET", "/api/feedback", query={"start": earlier, "end": later})["items"]) == 3
    refused = votes.call("GET", "/api/feedback", query={"start": later, "end": earlier})
    assert refused.status == 422
    assert votes.call("GET", "/api/feedback", query={"rating": "meh"}).status == 422


def test_pages_follow_the_cursor_newest_first(votes: Api) -> None:
    seen, cursor = [], None
    while True:
        query = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = votes.ok("GET", "/api/feedback", query=query)
        seen += [item["at"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 3 and seen == sorted(seen, reverse=True)
    other = votes.call("GET", "/api/feedback", query={"agent": "meddic", "cursor": cursor or "x.y"})
    assert other.status == 422


def test_members_are_refused(votes: Api) -> None:
    result = votes.call("GET", "/api/feedback", as_="member")
    assert result.status == 403 and result.body["error"]["code"] == "forbidden"


def test_a_page_is_one_query_never_a_scan(votes: Api, dynamo_calls: DynamoCalls) -> None:
    dynamo_calls.start()
    votes.ok("GET", "/api/feedback", query={"agent": "assistant"})
    dynamo_calls.stop()
    on_table = [call for call in dynamo_calls.calls if "Conversations" in call]
    assert on_table == [f"Query:{votes_table()}"]


def test_feedback_items_are_kept_a_year(votes: Api) -> None:
    record = next(FeedbackRecord.by_agent.query("meddic"))
    assert record.expires_at is not None and record.created_at is not None
    assert record.expires_at == (record.created_at + feedback.FEEDBACK_TTL).replace(microsecond=0)  # TTL: seconds
    assert feedback.FEEDBACK_TTL == timedelta(days=365)
    assert RequestRecord.get(f"thread#{TEAM}#{CHANNEL}#{THREAD}", "request#msg:m").provenance["agent"] == "meddic"
