"""Thread state: did the bot reply here, the sticky agent, the memory window, agents' state and
the files shared in the thread.

Loading is one Query (the thread item and its file items, see conversation.models); saving is one
PutItem of the thread item plus, when files came or went, one BatchWriteItem.

**Past 400 KB.** A DynamoDB item cannot exceed 400 KB, and a save that fails after the reply is
posted used to fail the whole request (five redeliveries, then the DLQ). So:

* file text lives in items of its own (``thread#file#<id>``), at most :data:`MAX_FILE_BYTES` a
  file and :data:`MAX_THREAD_FILE_BYTES` a thread (the oldest files leave first); written once,
  and again only when older than :data:`FILE_REFRESH_AFTER`, so they expire with the thread;
* JSON is stored as UTF-8 (``CompactJSONAttribute``), not ``\\u`` escapes;
* the thread item is measured as DynamoDB measures it (``models.item_size``) and kept under
  :data:`MAX_THREAD_ITEM_BYTES`: history within :data:`HISTORY_BUDGET_BYTES` (oldest turns
  leave first), the summary within :data:`MAX_SUMMARY_CHARS`, each agent's state within
  :data:`AGENT_STATE_BUDGET_BYTES` (its longest lists lose their oldest entries, then its
  longest strings are cut);
* :func:`save_thread_after_reply` never raises: a save that still fails is logged and counted
  (metric ``ThreadSaveFailed``), and the request stays answered.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # the ingress reads threads too: keep the LLM package out of its cold start
    from insightmesh.llm.base import ChatMessageDict

THREAD_TTL: Final = timedelta(days=30)
STICKY_SECONDS: Final = 60 * 60 * 4  # agent mode ends after 4 h without a message
MAX_THREAD_ITEM_BYTES: Final = 300_000  # of DynamoDB's 409,600: headroom for keys and metadata
HISTORY_BUDGET_BYTES: Final = 150_000
AGENT_STATE_BUDGET_BYTES: Final = 120_000
MAX_SUMMARY_CHARS: Final = 4_000
MAX_FILE_BYTES: Final = 200_000  # one file item, UTF-8
MAX_THREAD_FILE_BYTES: Final = 600_000  # every file of a thread together (one Query page < 1 MB)
FILE_REFRESH_AFTER: Final = timedelta(days=7)  # a file item older than this is rewritten with the thread


@dataclass
class ThreadState:
    key: str
    exists: bool = False
    bot_replied: bool = False
    sticky_agent: str | None = None
    sticky_by: str | None = None  # the Slack user who started agent mode (only they can end it)
    history: list[ChatMessageDict] = field(default_factory=list)
    summary: str | None = None
    agent_state: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, str]] = field(default_factory=list)  # shared in the thread: {"id", "name", "text"}
    stored_files: frozenset[str] = field(default_factory=frozenset, repr=False)  # file ids with an item
    # Stored files whose item expires before the thread would: rewritten (same added_at) on save.
    stale_files: dict[str, datetime] = field(default_factory=dict, repr=False)
    assistant: bool = False  # an AI app thread (conversation.assistant): statuses and a title
    context_channel: str | None = None  # there: the channel the user is looking at

    def active_sticky_agent(self) -> str | None:
        return self.sticky_agent


def bot_replied_in(thread_key: str) -> bool:
    """Whether the bot has replied in this thread (ingress, for follow-ups without a mention).
    Strongly consistent: a follow-up right after the bot's first reply must see it."""
    from insightmesh.conversation.models import ThreadRecord, thread_pk

    try:
        record = ThreadRecord.get(thread_pk(thread_key), "thread", consistent_read=True,
                                  attributes_to_get=["bot_replied"])
    except ThreadRecord.DoesNotExist:
        return False
    return bool(record.bot_replied)


def _query_thread(pk: str) -> list[dict[str, Any]]:
    """The thread item and its file items: one Query (paged only past 1 MB)."""
    from insightmesh.conversation.models import THREAD_SK, ThreadRecord

    connection = ThreadRecord._get_connection()
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        page = connection.query(pk, range_key_condition=ThreadRecord.sk.startswith(THREAD_SK),
                                consistent_read=True, exclusive_start_key=start)
        items.extend(page.get("Items") or [])
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def load_thread(thread_key: str) -> ThreadState:
    from insightmesh.conversation.models import THREAD_SK, ThreadFileRecord, ThreadRecord, thread_pk

    record: ThreadRecord | None = None
    file_records: list[ThreadFileRecord] = []
    for item in _query_thread(thread_pk(thread_key)):
        if item["sk"]["S"] == THREAD_SK:
            record = ThreadRecord.from_raw_data(item)
        else:
            file_records.append(ThreadFileRecord.from_raw_data(item))
    if record is None:
        return ThreadState(key=thread_key)
    file_records.sort(key=lambda f: (f.added_at, f.file_id))
    files = [{"id": f.file_id, "name": f.name, "text": f.text} for f in file_records]
    stored = frozenset(f.file_id for f in file_records)
    refresh_before = datetime.now(UTC) + THREAD_TTL - FILE_REFRESH_AFTER
    stale = {f.file_id: f.added_at for f in file_records if f.expires_at is None or f.expires_at < refresh_before}
    files += [dict(f) for f in (record.files or []) if f.get("id") not in stored]  # kept inline before
    sticky: str | None = record.sticky_agent
    if sticky and record.sticky_until is not None and record.sticky_until < time.time():
        sticky = None
    return ThreadState(
        key=thread_key,
        exists=True,
        bot_replied=bool(record.bot_replied),
        sticky_agent=sticky,
        sticky_by=record.sticky_by if sticky else None,
        history=list(record.history or []),
        summary=record.summary,
        agent_state=dict(record.agent_state or {}),
        files=files,
        stored_files=stored,
        stale_files=stale,
        assistant=bool(record.assistant),
        context_channel=record.context_channel,
    )


def mark_bot_replied(thread_key: str) -> None:
    from insightmesh.conversation.models import ThreadRecord, thread_pk

    now = datetime.now(UTC)
    ThreadRecord(thread_pk(thread_key), "thread").update(actions=[
        ThreadRecord.bot_replied.set(True),
        ThreadRecord.updated_at.set(now),
        ThreadRecord.expires_at.set(now + THREAD_TTL),
    ])


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _cut(text: str, max_bytes: int) -> str:
    """``text`` within ``max_bytes`` of UTF-8, cut on a character boundary."""
    encoded = text.encode()
    return text if len(encoded) <= max_bytes else encoded[:max_bytes].decode(errors="ignore")


def _lists_and_strings(value: Any, lists: list[list[Any]], owners: list[tuple[Any, Any]]) -> None:
    """Every list (with more than one entry) and every (container, key) holding a string."""
    entries = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    if isinstance(value, list) and len(value) > 1:
        lists.append(value)
    for key, entry in entries:
        if isinstance(entry, str):
            owners.append((value, key))
        else:
            _lists_and_strings(entry, lists, owners)


def shrink_json(value: Any, budget: int) -> Any:
    """``value`` (JSON-shaped, changed in place) within ``budget`` bytes: the largest list loses
    its oldest entry, and when no list can shrink the longest string is halved."""
    while _json_bytes(value) > budget:
        lists: list[list[Any]] = []
        owners: list[tuple[Any, Any]] = []
        _lists_and_strings(value, lists, owners)
        if lists:
            max(lists, key=_json_bytes).pop(0)
            continue
        longest = max(owners, key=lambda owner: len(owner[0][owner[1]].encode()), default=None)
        if longest is None or not longest[0][longest[1]]:
            return {} if isinstance(value, dict) else None
        container, key = longest
        container[key] = _cut(container[key], len(container[key].encode()) // 2)
    return value


def bound_state(state: ThreadState) -> None:
    """Keep history, summary and agent state within their budgets (see the module docstring)."""
    while len(state.history) > 2 and _json_bytes(state.history) > HISTORY_BUDGET_BYTES:
        del state.history[:2]  # one turn: the user's message and the reply
    if _json_bytes(state.history) > HISTORY_BUDGET_BYTES:
        shrink_json(state.history, HISTORY_BUDGET_BYTES)
    if state.summary and len(state.summary) > MAX_SUMMARY_CHARS:
        state.summary = state.summary[:MAX_SUMMARY_CHARS]
    for name, agent_state in list(state.agent_state.items()):
        if _json_bytes(agent_state) > AGENT_STATE_BUDGET_BYTES:
            state.agent_state[name] = shrink_json(agent_state, AGENT_STATE_BUDGET_BYTES)


def bound_files(files: list[dict[str, str]]) -> None:
    """Each file within :data:`MAX_FILE_BYTES`, all within :data:`MAX_THREAD_FILE_BYTES` (the
    oldest leave first; changed in place)."""
    for item in files:
        item["text"] = _cut(item.get("text", ""), MAX_FILE_BYTES)
    while files and sum(len(item.get("text", "").encode()) for item in files) > MAX_THREAD_FILE_BYTES:
        del files[0]


def _thread_record(state: ThreadState, now: datetime) -> Any:
    from insightmesh.conversation.models import ThreadRecord, thread_pk

    return ThreadRecord(
        thread_pk(state.key),
        "thread",
        bot_replied=state.bot_replied,
        sticky_agent=state.sticky_agent,
        sticky_until=int(time.time()) + STICKY_SECONDS if state.sticky_agent else None,
        sticky_by=state.sticky_by if state.sticky_agent else None,
        history=list(state.history),
        summary=state.summary,
        agent_state=state.agent_state,
        assistant=state.assistant or None,
        context_channel=state.context_channel,
        updated_at=now,
        expires_at=now + THREAD_TTL,
    )


def _save_files(state: ThreadState, now: datetime) -> None:
    """New files get their item, dropped ones lose it: one BatchWriteItem (none when unchanged)."""
    from insightmesh.conversation.models import ThreadFileRecord, thread_file_sk, thread_pk

    bound_files(state.files)
    current = {item["id"]: item for item in state.files if item.get("id")}
    written = [item for file_id, item in current.items()
               if file_id not in state.stored_files or file_id in state.stale_files]
    dropped = state.stored_files - set(current)
    if not written and not dropped:
        return
    pk = thread_pk(state.key)
    with ThreadFileRecord.batch_write() as batch:
        for offset, item in enumerate(written):
            added_at = state.stale_files.get(item["id"]) or now + timedelta(microseconds=offset)
            batch.save(ThreadFileRecord(pk, thread_file_sk(item["id"]), file_id=item["id"],
                                        name=item.get("name") or item["id"], text=item.get("text", ""),
                                        added_at=added_at, expires_at=now + THREAD_TTL))
        for file_id in dropped:
            batch.delete(ThreadFileRecord(pk, thread_file_sk(file_id)))
    state.stored_files = frozenset(current)
    state.stale_files = {}


def save_thread(state: ThreadState) -> None:
    """Write the whole thread state after a turn (threads are processed one message at a time:
    the FIFO group serialises them, so there is no concurrent writer to lose an update to)."""
    from insightmesh.conversation.models import MAX_ITEM_BYTES, item_size

    now = datetime.now(UTC)
    _save_files(state, now)
    bound_state(state)
    record = _thread_record(state, now)
    size = item_size(record.serialize())
    if size > MAX_THREAD_ITEM_BYTES:  # budgets hold unless new parts appear: history goes first
        state.history = state.history[-2:]
        shrink_json(state.agent_state, AGENT_STATE_BUDGET_BYTES // 4)
        record = _thread_record(state, now)
        size = item_size(record.serialize())
    if size > MAX_ITEM_BYTES:
        raise ThreadTooLargeError(f"thread item is {size} bytes, over DynamoDB's {MAX_ITEM_BYTES}")
    record.save()


class ThreadTooLargeError(ValueError):
    pass


def save_thread_after_reply(state: ThreadState) -> bool:
    """:func:`save_thread` once the reply is posted: a failure is logged and counted, never raised
    (the reply stands; the thread loses this turn's memory). Returns whether it was saved."""
    from botocore.exceptions import BotoCoreError, ClientError
    from pynamodb.exceptions import PynamoDBException

    try:
        save_thread(state)
        return True
    except (PynamoDBException, BotoCoreError, ClientError, ThreadTooLargeError) as error:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        from insightmesh.observability import get_logger

        get_logger("conversation_worker").warning(
            "thread save failed after the reply; the reply stands",
            extra={"error": type(error).__name__, "detail": str(error)[:300]})
        with single_metric(name="ThreadSaveFailed", unit=MetricUnit.Count, value=1,
                           namespace="InsightMesh", default_dimensions={"reason": type(error).__name__}):
            pass
        return False


def clear_sticky_agent(thread_key: str) -> None:
    from insightmesh.conversation.models import ThreadRecord, thread_pk

    ThreadRecord(thread_pk(thread_key), "thread").update(actions=[
        ThreadRecord.sticky_agent.remove(),
        ThreadRecord.sticky_until.remove(),
        ThreadRecord.sticky_by.remove(),
    ])
