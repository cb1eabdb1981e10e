"""conversation_dlq: a conversation message that reached the DLQ ends in an apology, once.

Never silent: the worker gave up on the message (``maxReceiveCount`` deliveries failed), so the
person who asked would otherwise look at "Thinking…" for ever. For each dead message:

1. **Claim the apology** — a conditional update of the request item (conversation.replies) to
   ``apologising``, allowed only when it is neither ``answered`` nor already ``apologising``. A
   request found ``answered`` (the worker did answer; only its bookkeeping failed) gets nothing.
2. **Apologise with a reference id** (the correlation id, else the request id):
   * a message or command with a placeholder (recorded, or found in the thread by its message
     metadata after a crash between posting and recording) — the placeholder is edited into the
     apology (``chat.update``; an edit is idempotent, so a retry shows nothing twice);
   * no placeholder — the apology is posted in the thread (a command without a thread: in its
     channel, or through its ``response_url`` when the bot cannot post there);
   * an edit Slack refuses (the placeholder was deleted, say) — posted in the thread instead;
   * a button press (an ACTION request) — an *ephemeral* apology to the person who pressed it: the
     click was theirs alone (feedback, leaving agent mode), and a public apology in the thread
     would tell everyone else about a button they never touched.
3. **Mark the request answered** with the apology's ts, so that nothing — a redelivered DLQ
   message, or an operator's redrive to the worker — answers it again.
4. **Record the failure** — a ``deadletter#<request id>`` item with its reason — and count it
   (powertools metric ``ConversationDeadLetters``, dimension ``reason``).

Nobody asked anything in a Home tab opened (``HOME``) or in a change of the channel the assistant
pane is looking at (``assistant_thread_context_changed``): such a request that died is recorded
and counted (reason ``unasked``) and shows nothing — an apology there would answer a question
nobody put.

A redelivery that finds the request ``apologising`` (this consumer crashed mid-way) looks for the
apology already posted (by its metadata) before posting; an ephemeral one cannot be found and is
not repeated. A workspace that uninstalled the app (or revoked its token) is shown nothing: no
Slack call is made for it (conversation.workspaces). Reasons: ``workspace_inactive``,
``unreadable`` (not a ConversationRequest), ``never_claimed`` (no request
item: the worker failed before its first write), ``failed_<status>`` (the request's reply state
when the worker last failed: received, posting, placeholder), ``already_answered``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError
from pynamodb.exceptions import UpdateError
from slack_sdk.errors import SlackApiError

from insightmesh.aws import put_if_absent
from insightmesh.conversation import workspaces
from insightmesh.conversation.models import DeadLetterRecord, RequestRecord, dead_letter_sk, request_sk
from insightmesh.conversation.replies import REQUEST_TTL, Status, request_pk
from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.observability import get_logger
from insightmesh.slack.assistant import CONTEXT_CHANGED
from insightmesh.slack.client import call_slack
from insightmesh.slack.thread_reply import posted_replies, reply_metadata

APOLOGISING: Final = "apologising"
DEAD_LETTER_TTL: Final = timedelta(days=90)
APOLOGY: Final = ("Sorry, something went wrong and I couldn't answer this. Please try again; "
                  "if it keeps happening, give an InsightMesh admin this reference: `{reference}`.")
BUTTON_APOLOGY: Final = ("Sorry, that didn't work and nothing was changed. Please try again; "
                         "reference: `{reference}`.")

logger = get_logger("conversation_dlq")


@dataclass(frozen=True)
class DeadLetter:
    """One record of the DLQ event, as the handler passes it."""

    message_id: str
    body: str
    receive_count: int | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    reason: str
    apology: str  # edited | posted | ephemeral | response_url | none
    reference: str


def reference_for(request: ConversationRequest) -> str:
    return request.correlation_id or request.request_id


def apology_text(reference: str, *, button: bool = False) -> str:
    return (BUTTON_APOLOGY if button else APOLOGY).format(reference=reference)


def unasked(request: ConversationRequest) -> bool:
    """A request nobody typed: a Home tab opened, or the assistant pane's context changing."""
    return request.kind is RequestKind.HOME or (request.kind is RequestKind.ASSISTANT_THREAD
                                                and request.action_id == CONTEXT_CHANGED)


def count(reason: str) -> None:
    """One ``ConversationDeadLetters`` data point for ``reason`` (EMF, flushed at once)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name="ConversationDeadLetters", unit=MetricUnit.Count, value=1, namespace="InsightMesh",
                       default_dimensions={"reason": reason}):
        pass


def handle(letter: DeadLetter) -> Outcome:
    """Apologise for one dead message, at most once; record and count why it died."""
    try:
        request = ConversationRequest.model_validate_json(letter.body)
    except ValidationError:
        reference = letter.correlation_id or letter.message_id
        outcome = Outcome("unreadable", "none", reference)
        if not _record(f"deadletter#{letter.message_id}", "deadletter", outcome, letter, None, None):
            return outcome
        logger.error("dead letter is not a conversation request; nothing can be shown",
                     extra={"message_id": letter.message_id, "reference": reference})
        count(outcome.reason)
        return outcome
    pk, sk = request_pk(request), request_sk(request.request_id)
    before = _get(pk, sk)
    reason = "never_claimed" if before is None else f"failed_{before.status}"
    if before is not None and before.status == APOLOGISING:
        reason = "failed_apologising"
    reference = reference_for(request)
    if before is not None and before.status == Status.ANSWERED:
        outcome = Outcome("already_answered", "none", reference)
    elif unasked(request):
        outcome = Outcome("unasked", "none", reference)
    elif not workspaces.is_active(request.team_id, request_id=request.request_id):
        outcome = Outcome("workspace_inactive", "none", reference)  # uninstalled: no Slack call for it
    else:
        claimed = _claim(pk, sk, request)
        if claimed is None:  # answered meanwhile
            outcome = Outcome("already_answered", "none", reference)
        else:
            apology, ts = _apologise(request, claimed, reference, retry=before is not None and
                                     before.status == APOLOGISING)
            _answered(claimed, ts)
            outcome = Outcome("answered_unrecorded" if apology == "none" else reason, apology, reference)
    if not _record(pk, dead_letter_sk(request.request_id), outcome, letter, request, before):
        logger.info("dead letter already handled; nothing shown again", extra={"request_id": request.request_id})
        return outcome
    logger.warning("dead-lettered conversation request", extra={
        "request_id": request.request_id, "reason": outcome.reason, "apology": outcome.apology,
        "reference": reference, "attempts": before.attempts if before is not None else 0,
        "receive_count": letter.receive_count})
    count(outcome.reason)
    return outcome


def _get(pk: str, sk: str) -> RequestRecord | None:
    try:
        return RequestRecord.get(pk, sk, consistent_read=True)
    except RequestRecord.DoesNotExist:
        return None


def _claim(pk: str, sk: str, request: ConversationRequest) -> RequestRecord | None:
    """The request item moved to ``apologising`` (created if the worker never wrote it); None
    when it is answered. A request already ``apologising`` is claimed again (a crashed attempt)."""
    now = datetime.now(UTC)
    record = RequestRecord(pk, sk)
    try:
        record.update(
            actions=[RequestRecord.status.set(APOLOGISING),
                     RequestRecord.channel_id.set(RequestRecord.channel_id | request.channel_id),
                     RequestRecord.created_at.set(RequestRecord.created_at | now),
                     RequestRecord.expires_at.set(now + REQUEST_TTL)],
            condition=RequestRecord.status.does_not_exist() | (RequestRecord.status != Status.ANSWERED),
        )
    except UpdateError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
        return None
    return record


def _answered(record: RequestRecord, reply_ts: str | None) -> None:
    actions: list[Any] = [RequestRecord.status.set(Status.ANSWERED), RequestRecord.answered_at.set(datetime.now(UTC))]
    if reply_ts:
        actions.append(RequestRecord.reply_ts.set(reply_ts))
    record.update(actions=actions)


def _posted_in_thread(request: ConversationRequest) -> dict[str, str]:
    """This request's bot messages in its thread, metadata status → ts (placeholder, answered,
    apology), as the worker marks its messages (slack.thread_reply)."""
    try:
        return dict(posted_replies(request.channel_id, request.thread_ts, request.request_id))
    except SlackApiError as error:  # thread_not_found, say: nothing to find
        logger.info("thread not readable", extra={"error": error.response.get("error")})
        return {}


def _apologise(request: ConversationRequest, record: RequestRecord, reference: str,
               *, retry: bool) -> tuple[str, str | None]:
    """Show the apology; returns (how, its ts)."""
    if request.kind is RequestKind.ACTION:
        if not retry:  # an ephemeral message cannot be found again: never risk a second one
            call_slack(lambda c: c.chat_postEphemeral(channel=request.channel_id, user=request.user_id,
                                                      thread_ts=request.thread_ts,
                                                      text=apology_text(reference, button=True)))
        return "ephemeral", None
    text = apology_text(reference)
    channel = str(record.channel_id or request.channel_id)
    posted = _posted_in_thread(request)
    if "answered" in posted:  # the answer is in Slack; only recording it failed
        return "none", posted["answered"]
    if "apology" in posted:  # a previous attempt of this consumer showed it
        return "edited" if posted["apology"] == record.placeholder_ts else "posted", posted["apology"]
    # A streamed answer's message (conversation.streaming: reply_ts while streaming) replaced the placeholder.
    placeholder = record.reply_ts or record.placeholder_ts or posted.get("placeholder")
    if placeholder:
        try:
            call_slack(lambda c: c.chat_update(channel=channel, ts=str(placeholder), text=text,
                                               metadata=reply_metadata(request.request_id, "apology")))
            return "edited", str(placeholder)
        except SlackApiError as error:
            logger.warning("placeholder edit refused; posting the apology instead",
                           extra={"error": error.response.get("error")})
    if request.kind is RequestKind.COMMAND and not request.thread_ts and request.response_url:
        return _respond(request.response_url, text)
    response = call_slack(lambda c: c.chat_postMessage(channel=channel, thread_ts=request.thread_ts, text=text,
                                                       metadata=reply_metadata(request.request_id, "apology")))
    return "posted", str(response["ts"])


def _respond(response_url: str, text: str) -> tuple[str, str | None]:
    import httpx

    httpx.post(response_url, json={"response_type": "ephemeral", "text": text}, timeout=10).raise_for_status()
    return "response_url", None


def _record(pk: str, sk: str, outcome: Outcome, letter: DeadLetter, request: ConversationRequest | None,
            before: RequestRecord | None) -> bool:
    """The failure's item, written once (False: a previous delivery of this letter wrote it)."""
    now = datetime.now(UTC)
    record = DeadLetterRecord(
        pk, sk,
        reason=outcome.reason,
        reference=outcome.reference,
        request_id=request.request_id if request is not None else None,
        kind=request.kind.value if request is not None else None,
        request_status=before.status if before is not None else None,
        attempts=before.attempts if before is not None else None,
        receive_count=letter.receive_count,
        message_id=letter.message_id,
        apology=outcome.apology,
        created_at=now,
        expires_at=now + DEAD_LETTER_TTL,
    )
    return put_if_absent(record, DeadLetterRecord.pk.does_not_exist())
