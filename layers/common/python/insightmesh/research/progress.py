"""A research run's progress in its Slack thread: one message, a task list, and a **Stop** button.

``board_for(run)`` gives the :class:`~insightmesh.research.base.ProgressBoard` of a run: the plan as
a Block Kit message (a section per task: ✅ done, ⏳ running, ⬜ to do, ⚠️ failed, with its detail),
edited with ``chat.update`` as steps start and finish, at most once per :data:`INTERVAL` (a change
that comes sooner is shown when the interval is over: the latest state, never a stale one), with
a **Stop** button (``action_id`` :data:`STOP_ACTION`, value the run id) until :meth:`close`.

Why not Slack's streamed task updates (``chat.startStream`` with ``task_display_mode="plan"`` and
``task_update``/``plan_update`` chunks, which slack_sdk's ``chat_stream`` supports): a streamed
message cannot carry an interactive button while it streams (Slack documents ``blocks`` on
``chat.stopStream`` only, "rendered at the bottom of the finalized message", and a message cannot
be ``chat.update``-d while it streams), and a run is many Lambda invocations over minutes with
durable waits between them — Slack documents no lifetime for an open stream, and a stopped one
cannot be reopened. An edited message keeps the button, survives any pause, and can be rebuilt
by whichever invocation comes next.

Idempotent across replays (a durable step may run again, in another process): the message's ts
is stored on the run (``research.runs``, ``progress_ts``) and reused; the board's state rides in
the message's metadata (``event_type`` :data:`EVENT_TYPE`), so a fresh process that was not told
the plan (its step was replayed from the checkpoint, not re-run) reads it back with one
``conversations.replies``; and a crash between posting and storing the ts is recovered by finding
the run's message in the thread by that metadata rather than posting a second board. No Slack
failure is raised (progress is best effort): each is logged.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException
from slack_sdk.errors import SlackApiError, SlackClientError

from insightmesh.observability import get_logger
from insightmesh.research.base import PlanTask, TaskStatus
from insightmesh.resilience import CircuitOpenError
from insightmesh.slack.client import call_slack
from insightmesh.slack.formatting import escape

EVENT_TYPE: Final = "insightmesh_research_progress"
STOP_ACTION: Final = "research_stop"
INTERVAL: Final = 1.0  # seconds between two edits of the board (chat.update is Tier 3, per channel ~1/s)
ICONS: Final[dict[str, str]] = {"complete": "✅", "in_progress": "⏳", "pending": "⬜", "error": "⚠️"}
_DETAIL_LIMIT: Final = 300
_MAX_TASKS: Final = 40  # a message holds 50 blocks: the tasks, a header, a footer and the button
# What a failed Slack call can raise here: Slack's refusal, the client's own errors (connection,
# bad response), the open breaker, and the socket's.
_SLACK_FAILURES: Final = (SlackApiError, SlackClientError, CircuitOpenError, OSError)

logger = get_logger("research")


class BoardRun(Protocol):
    """What the board needs of a run (``research.runs``' record has these)."""

    @property
    def run_id(self) -> str: ...
    @property
    def channel_id(self) -> str: ...
    @property
    def thread_ts(self) -> str | None: ...
    @property
    def progress_ts(self) -> str | None: ...


@dataclass
class _State:
    """One run's board in this process (shared by every ``board_for`` of that run)."""

    run_id: str
    channel: str
    thread_ts: str | None
    subject: str
    ts: str | None
    tasks: list[PlanTask] = field(default_factory=list)
    footer: str = ""
    closed: bool = False
    stopping: bool = False
    loaded: bool = False  # the tasks are known here (shown, or read back from the message)
    last_sent: float | None = None
    dirty: bool = False
    cancel_flush: Callable[[], None] | None = None  # a trailing edit is scheduled
    lock: threading.RLock = field(default_factory=threading.RLock)
    calls: int = 0  # chat.postMessage + chat.update made for this board (benchmarks, tests)


_boards: dict[str, _State] = {}
_boards_lock = threading.Lock()
Scheduler = Callable[[float, Callable[[], None]], Callable[[], None]]  # (delay, action) -> cancel


def _timer(delay: float, action: Callable[[], None]) -> Callable[[], None]:
    """Run ``action`` in ``delay`` seconds on a daemon thread; returns how to cancel it."""
    timer = threading.Timer(max(delay, 0.0), action)
    timer.daemon = True
    timer.start()
    return timer.cancel


def _default_save_ts(run_id: str, ts: str) -> None:
    from insightmesh.research import runs  # the run's table: imported where used (tests stub it)

    runs.set_progress_ts(run_id, ts)


def board_for(run: BoardRun, *, save_ts: Callable[[str, str], None] | None = None,
              clock: Callable[[], float] = time.monotonic, interval: float = INTERVAL,
              schedule: Scheduler = _timer) -> SlackProgressBoard:
    """The run's board on Slack: shared per run within a process, rebuilt from the message elsewhere."""
    with _boards_lock:
        state = _boards.get(run.run_id)
        if state is None:
            state = _State(run_id=run.run_id, channel=run.channel_id, thread_ts=run.thread_ts,
                           subject=str(getattr(run, "subject", "") or ""), ts=run.progress_ts)
            _boards[run.run_id] = state
        elif state.ts is None and run.progress_ts:
            state.ts = run.progress_ts
    return SlackProgressBoard(state, save_ts=save_ts or _default_save_ts, clock=clock, interval=interval,
                              schedule=schedule)


def forget(run_id: str) -> None:
    """Drop a run's board from this process (after close; tests)."""
    with _boards_lock:
        state = _boards.pop(run_id, None)
    if state is not None and state.cancel_flush is not None:
        state.cancel_flush()


def reset_for_tests() -> None:
    for run_id in list(_boards):
        forget(run_id)


def task_line(task: PlanTask) -> str:
    icon = ICONS.get(task.status, "⬜")
    detail = f" — {escape(task.detail[:_DETAIL_LIMIT])}" if task.detail else ""
    return f"{icon} *{escape(task.title)}*{detail}"


def board_blocks(state: _State) -> list[dict[str, Any]]:
    title = f"Researching *{escape(state.subject)}*" if state.subject else "Research plan"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": title}}]
    blocks += [{"type": "section", "block_id": f"task_{task.id}"[:255],
                "text": {"type": "mrkdwn", "text": task_line(task)}} for task in state.tasks[:_MAX_TASKS]]
    if state.footer:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": state.footer}]})
    if not state.closed and not state.stopping:
        blocks.append({"type": "actions", "block_id": "research_actions", "elements": [
            {"type": "button", "action_id": STOP_ACTION, "style": "danger", "value": state.run_id[:2000],
             "text": {"type": "plain_text", "text": "Stop"}}]})
    return blocks


def board_text(state: _State) -> str:
    """The notification / fallback text: where the run is."""
    done = sum(task.status == "complete" for task in state.tasks)
    head = f"Researching {state.subject}" if state.subject else "Research"
    if state.closed:
        return f"{head}: {state.footer}" if state.footer else head
    return f"{head}: {done}/{len(state.tasks)} steps done" + (" (stopping…)" if state.stopping else "")


def _metadata(state: _State) -> dict[str, Any]:
    # Slack's event_payload holds flat values: the tasks travel as one JSON string.
    tasks = [[task.id, task.title, task.status, task.detail[:_DETAIL_LIMIT]] for task in state.tasks[:_MAX_TASKS]]
    return {"event_type": EVENT_TYPE, "event_payload": {
        "run_id": state.run_id, "tasks": json.dumps(tasks, ensure_ascii=False), "footer": state.footer,
        "closed": state.closed, "stopping": state.stopping}}


def _tasks_of(payload: dict[str, Any]) -> list[PlanTask]:
    try:
        rows = json.loads(str(payload.get("tasks") or "[]"))
    except json.JSONDecodeError:
        return []
    tasks: list[PlanTask] = []
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, list) and len(row) == 4 and row[2] in ICONS:
            tasks.append(PlanTask(id=str(row[0]), title=str(row[1]), status=row[2], detail=str(row[3])))
    return tasks


class SlackProgressBoard:
    """The :class:`~insightmesh.research.base.ProgressBoard` of one run on Slack (module docstring)."""

    def __init__(self, state: _State, *, save_ts: Callable[[str, str], None],
                 clock: Callable[[], float] = time.monotonic, interval: float = INTERVAL,
                 schedule: Scheduler = _timer) -> None:
        self.state, self.save_ts, self.clock, self.interval = state, save_ts, clock, interval
        self.schedule = schedule

    @property
    def ts(self) -> str | None:
        return self.state.ts

    # -- the protocol ------------------------------------------------------------------------------
    def show_plan(self, tasks: Sequence[PlanTask]) -> None:
        state = self.state
        with state.lock:
            if state.ts is not None:
                self._load()  # a replayed plan step, maybe in another process: what the board shows now
            known = {task.id: task for task in state.tasks}
            # A replayed plan keeps what later steps already reported (never shows progress going back);
            # a task the plan itself gives a status (the plan step, complete) shows that status.
            state.tasks = [known[task.id] if task.status == "pending" and task.id in known else task
                           for task in tasks]
            state.loaded = True
            self._send(force=True)

    def update(self, task_id: str, status: TaskStatus, detail: str = "") -> None:
        state = self.state
        with state.lock:
            self._load()
            if state.closed:  # a step replayed after the run ended: the board says how it ended
                return
            for index, task in enumerate(state.tasks):
                if task.id == task_id:
                    state.tasks[index] = replace(task, status=status, detail=detail or task.detail)
                    break
            else:
                state.tasks.append(PlanTask(id=task_id, title=task_id.replace("_", " ").capitalize(),
                                            status=status, detail=detail))
            self._send(force=False)

    def close(self, text: str) -> None:
        state = self.state
        with state.lock:
            self._load()
            state.closed, state.footer = True, text
            self._send(force=True)
        forget(state.run_id)

    # -- beyond the protocol -----------------------------------------------------------------------
    def stopping(self, by_user: str | None = None) -> None:
        """Someone asked the run to stop: say so, and take the Stop button away."""
        state = self.state
        with state.lock:
            self._load()
            if state.closed:
                return
            state.stopping = True
            state.footer = "⏹ Stopping… the research ends at its next step" + (f" (asked by <@{by_user}>)"
                                                                                if by_user else "") + "."
            self._send(force=True)

    # -- Slack -------------------------------------------------------------------------------------
    def _load(self) -> None:
        """Tasks shown by another process: read them back from the message's metadata (one call)."""
        state = self.state
        if state.loaded:
            return
        state.loaded = True
        found = self._find_message()
        if found is None:
            return
        ts, payload = found
        state.ts = state.ts or ts
        state.tasks = _tasks_of(payload) or state.tasks
        state.footer = state.footer or str(payload.get("footer") or "")
        state.stopping = state.stopping or bool(payload.get("stopping"))
        state.closed = state.closed or bool(payload.get("closed"))

    def _find_message(self) -> tuple[str, dict[str, Any]] | None:
        """(ts, payload) of this run's board in its thread, by its metadata."""
        state = self.state
        thread_ts = state.thread_ts
        if not thread_ts:
            return None
        try:
            response = call_slack(lambda c: c.conversations_replies(channel=state.channel, ts=thread_ts,
                                                                    include_all_metadata=True, limit=200))
        except _SLACK_FAILURES as error:
            logger.warning("research board not read back", extra={"run_id": state.run_id, "error": _why(error)})
            return None
        for message in response.get("messages") or []:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == EVENT_TYPE and payload.get("run_id") == state.run_id and \
                    (state.ts is None or message.get("ts") == state.ts):
                return str(message["ts"]), dict(payload)
        return None

    def _send(self, *, force: bool) -> None:
        state = self.state
        now = self.clock()
        if not force and state.last_sent is not None and now - state.last_sent < self.interval:
            state.dirty = True
            self._flush_later(self.interval - (now - state.last_sent))
            return
        if state.cancel_flush is not None:
            state.cancel_flush()
            state.cancel_flush = None
        state.dirty = False
        state.last_sent = now
        blocks, text, metadata = board_blocks(state), board_text(state), _metadata(state)
        try:
            if state.ts is None:
                found = self._find_message()  # posted before a crash, its ts never stored
                if found is not None:
                    state.ts = found[0]
                    self._store_ts(found[0])
            if state.ts is None:
                response = call_slack(lambda c: c.chat_postMessage(channel=state.channel, thread_ts=state.thread_ts,
                                                                   text=text, blocks=blocks, metadata=metadata))
                state.calls += 1
                state.ts = str(response["ts"])
                self._store_ts(state.ts)
            else:
                ts = state.ts
                call_slack(lambda c: c.chat_update(channel=state.channel, ts=ts, text=text, blocks=blocks,
                                                   metadata=metadata))
                state.calls += 1
        except _SLACK_FAILURES as error:
            logger.warning("research board not updated", extra={"run_id": state.run_id, "error": _why(error)})

    def _store_ts(self, ts: str) -> None:
        try:
            self.save_ts(self.state.run_id, ts)
        except (BotoCoreError, ClientError, PynamoDBException) as error:  # logged: the board is best effort
            logger.warning("research board ts not stored", extra={"run_id": self.state.run_id,
                                                                  "error": type(error).__name__})

    def _flush_later(self, delay: float) -> None:
        """A change that came within the interval: shown when it is over (the latest state then)."""
        state = self.state
        if state.cancel_flush is not None:
            return

        def flush() -> None:
            with state.lock:
                state.cancel_flush = None
                if state.dirty and not state.closed:
                    self._send(force=True)

        state.cancel_flush = self.schedule(delay, flush)


def _why(error: BaseException) -> str:
    if isinstance(error, SlackApiError):
        return str(error.response.get("error"))
    return type(error).__name__
