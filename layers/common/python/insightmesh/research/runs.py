"""The research runs table: one item per durable research run (a ``profile`` or a ``report``).

``RESEARCH_RUNS_TABLE`` — :class:`ResearchRun`, hash ``run_id`` (the durable execution's name).
Access patterns (each one request; no Scan anywhere):

- **get a run** (workflow, admin API, Stop button): ``GetItem run_id``.
- **the active run of a thread** (the worker: "stop" in a thread, and one run per thread at a
  time): ``Query`` the sparse GSI ``by-active-thread`` (hash ``active_thread`` =
  ``"<team>#<channel>#<thread_ts>"``, range ``created_sort``), newest first. ``active_thread``
  is set only while the run is ``queued`` or ``running`` and removed when it finishes, so the
  index holds active runs only and the query reads at most a handful of items.
- **a person's runs** (``GET /api/me/research-runs``): ``Query`` GSI ``by-user`` (hash
  ``user_id``, range ``created_sort``), newest first, one Query per page.
- **every run, or the runs in one status** (``GET /api/research-runs``): ``Query`` GSI
  ``by-listing`` (hash ``listing`` = ``"run"``) or GSI ``by-status`` (hash ``status``), both
  ranged by ``created_sort`` = ``"<UTC ISO created_at>#<run_id>"``, newest first.
- **writes**: ``PutItem`` if absent (create), ``UpdateItem`` for a step (a GetItem first; each
  step is its own key of the ``steps`` map, so parallel researchers never overwrite each other),
  usage (atomic ``ADD``),
  cancel (conditional on the run being active) and finish (conditional on it not having
  finished, so a replayed finish never overwrites the first outcome).

TTL ``expires_at``: a run is kept :data:`RUN_RETENTION_DAYS` days. ``steps`` is bounded
(:data:`MAX_STEPS`, each detail :data:`MAX_DETAIL`); ``document`` (kind ``report``: the agent's
``ReportDocument`` as JSON) is bounded by :data:`MAX_DOCUMENT_CHARS` — a DynamoDB item is at most
400 KB.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, cast

from pydantic import BaseModel, ConfigDict, Field
from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import PynamoDBException
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from insightmesh.agents.base import ReportDocument, ReportSection
from insightmesh.api.pagination import created_sort, key_cursor, query_page, start_key
from insightmesh.aws import condition_failed, model_meta
from insightmesh.clock import utc_now
from insightmesh.knowledge.base import Audience, Viewer
from insightmesh.research.base import RunStatus, TaskStatus
from insightmesh.tools.base import Source

logger = logging.getLogger(__name__)

RunKind = Literal["profile", "report"]
RUN_KINDS: Final[tuple[str, ...]] = ("profile", "report")
RUN_STATUSES: Final[tuple[str, ...]] = ("queued", "running", "succeeded", "failed", "cancelled", "capped")
ACTIVE: Final = frozenset({"queued", "running"})
FINISHED: Final = frozenset({"succeeded", "failed", "cancelled", "capped"})
LISTING: Final = "run"
RUN_RETENTION_DAYS: Final = 90
MAX_STEPS: Final = 40
MAX_DETAIL: Final = 500
MAX_TEXT: Final = 4000  # summary, error, question, subject
MAX_DOCUMENT_CHARS: Final = 200_000
MAX_AUDIENCE_CHARS: Final = 64_000


def thread_key(team_id: str, channel_id: str, thread_ts: str) -> str:
    return f"{team_id}#{channel_id}#{thread_ts}"


def _bounded(text: str | None, limit: int = MAX_TEXT) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class RunStep:
    """One step of a run as the board shows it: ``plan``, ``overview``, ``synthesis``, ``review``..."""

    name: str
    status: str  # TaskStatus
    started_at: datetime | None = None
    ended_at: datetime | None = None
    detail: str | None = None


def _raw_steps(run: ResearchRun) -> dict[str, Any]:
    value: Any = run.step_map
    if isinstance(value, MapAttribute):
        return dict(value.as_dict())  # type: ignore[no-untyped-call]  # untyped pynamodb method
    return dict(value or {})


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


class RunsByActiveThread(GlobalSecondaryIndex["ResearchRun"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-active-thread"
        projection = AllProjection()

    active_thread = UnicodeAttribute(hash_key=True)
    created_sort = UnicodeAttribute(range_key=True)


class RunsByUser(GlobalSecondaryIndex["ResearchRun"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-user"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)
    created_sort = UnicodeAttribute(range_key=True)


class RunsByStatus(GlobalSecondaryIndex["ResearchRun"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-status"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    created_sort = UnicodeAttribute(range_key=True)


class RunsByListing(GlobalSecondaryIndex["ResearchRun"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    class Meta:
        index_name = "by-listing"
        projection = AllProjection()

    listing = UnicodeAttribute(hash_key=True)
    created_sort = UnicodeAttribute(range_key=True)


class ResearchRun(Model):
    """One research run (see the module docstring for its access patterns)."""

    Meta = model_meta("RESEARCH_RUNS_TABLE")

    run_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()  # RunKind
    listing = UnicodeAttribute(default=LISTING)
    created_sort = UnicodeAttribute()
    subject = UnicodeAttribute(default="")
    question = UnicodeAttribute(default="")
    team_id = UnicodeAttribute()
    channel_id = UnicodeAttribute()
    thread_ts = UnicodeAttribute()
    user_id = UnicodeAttribute()
    active_thread = UnicodeAttribute(null=True)  # set while queued/running only (sparse index)
    status = UnicodeAttribute(default="queued")  # RunStatus
    # Step name → {status, detail, recorded_at, started_at, ended_at}: a map, so that parallel
    # researchers each SET their own key (a list would be read, changed and written back whole, and
    # concurrent writers would lose each other's steps). ``steps`` lists them in recorded order.
    step_map: MapAttribute[str, Any] = MapAttribute(default=dict, attr_name="steps")  # type: ignore[no-untyped-call]
    tokens_used = NumberAttribute(default=0)
    llm_calls = NumberAttribute(default=0)
    token_cap = NumberAttribute(default=0)
    cancel_requested = BooleanAttribute(default=False)
    cancel_requested_by = UnicodeAttribute(null=True)
    progress_ts = UnicodeAttribute(null=True)  # the progress message's ts (the board)
    report_file_id = UnicodeAttribute(null=True)
    summary = UnicodeAttribute(null=True)
    error = UnicodeAttribute(null=True)
    document = UnicodeAttribute(null=True)  # kind "report": the ReportDocument as JSON
    # The tools admins enabled where the answer is read (agent ∩ channel); None: the workflow's own.
    tools: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]
    audience = UnicodeAttribute(null=True)  # who reads the report (knowledge.base.Audience as JSON)
    created_at = UTCDateTimeAttribute(default=utc_now)
    updated_at = UTCDateTimeAttribute(default=utc_now)
    finished_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute(null=True)

    by_active_thread = RunsByActiveThread()
    by_user = RunsByUser()
    by_status = RunsByStatus()
    by_listing = RunsByListing()

    @property
    def steps(self) -> list[RunStep]:
        """The recorded steps, in the order they were first recorded."""
        raw = _raw_steps(self)
        entries = sorted(((name, entry) for name, entry in raw.items() if isinstance(entry, dict)),
                         key=lambda item: (str(item[1].get("recorded_at") or ""), item[0]))
        return [RunStep(name=name, status=str(entry.get("status") or "pending"),
                        started_at=_time(entry.get("started_at")), ended_at=_time(entry.get("ended_at")),
                        detail=entry.get("detail") or None) for name, entry in entries]


# -- the ReportDocument as JSON ---------------------------------------------------------------------


class DocumentTooLargeError(ValueError):
    """The report is larger than a run may store."""


def document_to_json(document: ReportDocument) -> str:
    return json.dumps(asdict(document), ensure_ascii=False, separators=(",", ":"))


def audience_to_json(audience: Audience | None) -> str | None:
    if audience is None:
        return None
    text = json.dumps({"scope": audience.scope, "viewers": [asdict(viewer) for viewer in audience.viewers]},
                      separators=(",", ":"))
    return text if len(text) <= MAX_AUDIENCE_CHARS else None


def stored_audience(run: ResearchRun) -> Audience | None:
    if not run.audience:
        return None
    raw = json.loads(run.audience)
    viewers = tuple(Viewer(email=v.get("email"), groups=tuple(v.get("groups") or ()),
                           domains=tuple(v.get("domains") or ())) for v in raw.get("viewers", ()))
    return Audience(viewers, str(raw.get("scope") or "members")) if viewers else None


def document_from_json(text: str) -> ReportDocument:
    raw = json.loads(text)
    return ReportDocument(
        title=str(raw["title"]),
        sections=tuple(ReportSection(heading=str(s["heading"]), body=str(s["body"])) for s in raw.get("sections", ())),
        sources=tuple(Source(title=str(s["title"]), url=str(s["url"]), kind=s.get("kind", "web"),
                             snippet=str(s.get("snippet", ""))) for s in raw.get("sources", ())),
        subtitle=str(raw.get("subtitle", "")),
        note=str(raw.get("note", "")),
    )


# -- writes ----------------------------------------------------------------------------------------


def create_run(*, kind: RunKind, team_id: str, channel_id: str, thread_ts: str, user_id: str,
               subject: str = "", question: str = "", token_cap: int = 0,
               document: ReportDocument | None = None, run_id: str | None = None,
               tools: Iterable[str] | None = None, audience: Audience | None = None) -> ResearchRun:
    """A new ``queued`` run (one conditional PutItem). Raises :class:`DocumentTooLargeError`.

    ``tools``: the tools enabled where the report will be read (None: no limit). ``audience``:
    everyone who will read it — the research searches the knowledge base only for them, and not at
    all without one (or when it is too large to keep on the run)."""
    now = utc_now()
    run_id = run_id or uuid.uuid4().hex
    document_json = document_to_json(document) if document is not None else None
    if document_json is not None and len(document_json) > MAX_DOCUMENT_CHARS:
        raise DocumentTooLargeError(f"the report is {len(document_json)} characters; at most {MAX_DOCUMENT_CHARS}")
    run = ResearchRun(
        run_id, kind=kind, listing=LISTING, created_sort=created_sort(now, run_id),
        subject=_bounded(subject) or "", question=_bounded(question) or "",
        team_id=team_id, channel_id=channel_id, thread_ts=thread_ts, user_id=user_id,
        # A report run (an agent's PDF) is short and not the thread's research: not in the index.
        active_thread=thread_key(team_id, channel_id, thread_ts) if kind == "profile" else None,
        status="queued", step_map={},
        tokens_used=0, llm_calls=0, token_cap=token_cap, cancel_requested=False,
        document=document_json, created_at=now, updated_at=now,
        tools=sorted(set(tools)) if tools is not None else None, audience=audience_to_json(audience),
        expires_at=now + timedelta(days=RUN_RETENTION_DAYS),
    )
    run.save(condition=ResearchRun.run_id.does_not_exist())
    return run


def get_run(run_id: str, *, consistent: bool = True) -> ResearchRun | None:
    """One GetItem (strongly consistent by default: the workflow reads what it just wrote)."""
    try:
        return ResearchRun.get(run_id, consistent_read=consistent)
    except ResearchRun.DoesNotExist:
        return None


def request_cancel(run_id: str, by_user_id: str) -> bool:
    """Ask an active run to stop (one conditional UpdateItem); ``False`` if it is not active.

    The workflow sees the flag at its next step boundary and ends ``cancelled``.
    """
    try:
        ResearchRun(run_id).update(
            actions=[ResearchRun.cancel_requested.set(True), ResearchRun.cancel_requested_by.set(by_user_id),
                     ResearchRun.updated_at.set(utc_now())],
            condition=ResearchRun.run_id.exists() & ResearchRun.status.is_in(*sorted(ACTIVE)),
        )
    except PynamoDBException as error:
        if condition_failed(error):
            return False
        raise
    return True


def active_runs_in_thread(team_id: str, channel_id: str, thread_ts: str) -> list[ResearchRun]:
    """The queued or running ``profile`` runs of a thread, newest first (one Query on the sparse
    index; a thread has one at a time, a few at most after a race)."""
    results = ResearchRun.by_active_thread.query(thread_key(team_id, channel_id, thread_ts),
                                                 scan_index_forward=False, limit=5)
    runs, _ = query_page(results, ResearchRun)
    return [run for run in runs if run.status in ACTIVE]


def active_run_in_thread(team_id: str, channel_id: str, thread_ts: str) -> ResearchRun | None:
    """The newest queued or running ``profile`` run of a thread (one Query), else None."""
    active = active_runs_in_thread(team_id, channel_id, thread_ts)
    return active[0] if active else None


def mark_running(run_id: str) -> None:
    """``queued`` → ``running`` (an UpdateItem; a no-op on a run that already finished)."""
    try:
        ResearchRun(run_id).update(
            actions=[ResearchRun.status.set("running"), ResearchRun.updated_at.set(utc_now())],
            condition=ResearchRun.status.is_in(*sorted(ACTIVE)),
        )
    except PynamoDBException as error:
        if not condition_failed(error):
            raise


def record_step(run_id: str, name: str, status: TaskStatus, detail: str = "", *,
                at: datetime | None = None) -> None:
    """Set step ``name``'s status (one GetItem + one UpdateItem of that step's key only): a new
    step is added (at most :data:`MAX_STEPS`), a known one updated — starting it sets
    ``started_at``, finishing it (``complete`` or ``error``) sets ``ended_at``. Idempotent: a
    replayed step writes the same. Steps of parallel researchers never overwrite each other: each
    writes its own key of the map (one step is written by one researcher, in order)."""
    run = get_run(run_id)
    if run is None:
        return
    now = (at or utc_now()).isoformat()
    raw = _raw_steps(run)
    entry = dict(raw.get(name) or {})
    if not entry and len(raw) >= MAX_STEPS:
        return
    entry.setdefault("recorded_at", now)
    entry["status"] = status
    if detail:
        entry["detail"] = _bounded(detail, MAX_DETAIL)
    if status == "in_progress" and not entry.get("started_at"):
        entry["started_at"] = now
    if status in ("complete", "error"):
        entry["started_at"] = entry.get("started_at") or now
        entry["ended_at"] = now
    ResearchRun(run_id).update(actions=[ResearchRun.step_map[name].set(entry),
                                        ResearchRun.updated_at.set(utc_now())])


def add_usage(run_id: str, *, tokens: int, llm_calls: int) -> tuple[int, int]:
    """Add to the run's tokens and LLM calls (one UpdateItem, atomic ``ADD``); the new totals."""
    run = ResearchRun(run_id)
    run.update(actions=[ResearchRun.tokens_used.add(max(0, tokens)), ResearchRun.llm_calls.add(max(0, llm_calls)),
                        ResearchRun.updated_at.set(utc_now())])
    return int(run.tokens_used), int(run.llm_calls)


def set_progress_ts(run_id: str, progress_ts: str) -> None:
    ResearchRun(run_id).update(actions=[ResearchRun.progress_ts.set(progress_ts)])


def finish(run_id: str, status: RunStatus, *, summary: str | None = None, error: str | None = None,
           report_file_id: str | None = None) -> bool:
    """End the run (one conditional UpdateItem): sets the outcome, removes it from the active
    index. ``False`` if it had already finished (a replay never overwrites the first outcome)."""
    if status not in FINISHED:
        raise ValueError(f"{status!r} is not a final status")
    now = utc_now()
    actions: list[Any] = [ResearchRun.status.set(status), ResearchRun.active_thread.remove(),
                          ResearchRun.updated_at.set(now), ResearchRun.finished_at.set(now)]
    if summary is not None:
        actions.append(ResearchRun.summary.set(cast(str, _bounded(summary))))
    if error is not None:
        actions.append(ResearchRun.error.set(cast(str, _bounded(error))))
    if report_file_id is not None:
        actions.append(ResearchRun.report_file_id.set(report_file_id))
    try:
        ResearchRun(run_id).update(actions=actions,
                                   condition=ResearchRun.run_id.exists() & ResearchRun.status.is_in(*sorted(ACTIVE)))
    except PynamoDBException as error_:
        if condition_failed(error_):
            return False
        raise
    return True


# -- listings --------------------------------------------------------------------------------------


class RunStepOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    status: str = Field(description="pending, in_progress, complete or error")
    started_at: datetime | None = None
    ended_at: datetime | None = None
    detail: str | None = None


class ResearchRunOut(BaseModel):
    """A research run as the API shows it (the stored report document is not included)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    kind: str = Field(description="profile or report")
    subject: str
    question: str
    team_id: str
    channel_id: str
    thread_ts: str
    user_id: str
    status: str = Field(description="queued, running, succeeded, failed, cancelled or capped")
    steps: list[RunStepOut]
    tokens_used: int
    llm_calls: int
    token_cap: int
    cancel_requested: bool
    report_file_id: str | None = None
    summary: str | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


class ResearchRunPage(BaseModel):
    """One page of research runs, newest first (the shape of every list: api.pagination)."""

    model_config = ConfigDict(frozen=True)

    items: list[ResearchRunOut]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= to get the next page; "
                                                               "null when there is none.")


def run_out(run: ResearchRun) -> ResearchRunOut:
    return ResearchRunOut(
        run_id=run.run_id, kind=run.kind, subject=run.subject or "", question=run.question or "",
        team_id=run.team_id, channel_id=run.channel_id, thread_ts=run.thread_ts, user_id=run.user_id,
        status=run.status,
        steps=[RunStepOut(name=step.name, status=step.status, started_at=step.started_at, ended_at=step.ended_at,
                          detail=step.detail) for step in (run.steps or [])],
        tokens_used=int(run.tokens_used or 0), llm_calls=int(run.llm_calls or 0), token_cap=int(run.token_cap or 0),
        cancel_requested=bool(run.cancel_requested), report_file_id=run.report_file_id, summary=run.summary,
        error=run.error, created_at=run.created_at, updated_at=run.updated_at, finished_at=run.finished_at,
    )


def list_runs(*, status: str | None = None, limit: int = 50, cursor: str | None = None) -> ResearchRunPage:
    """Every run (or those in ``status``), newest first: one Query per page."""
    scope = f"research-runs|{status or ''}"
    last = start_key(cursor, scope=scope)
    if status is not None:
        results = ResearchRun.by_status.query(status, scan_index_forward=False, limit=limit, last_evaluated_key=last)
    else:
        results = ResearchRun.by_listing.query(LISTING, scan_index_forward=False, limit=limit,
                                               last_evaluated_key=last)
    runs, last_key = query_page(results, ResearchRun)
    return ResearchRunPage(items=[run_out(run) for run in runs], next_cursor=key_cursor(last_key, scope=scope))


def list_user_runs(user_id: str, *, limit: int = 50, cursor: str | None = None) -> ResearchRunPage:
    """One person's runs, newest first: one Query per page."""
    scope = f"research-runs|user|{user_id}"
    results = ResearchRun.by_user.query(user_id, scan_index_forward=False, limit=limit,
                                        last_evaluated_key=start_key(cursor, scope=scope))
    runs, last_key = query_page(results, ResearchRun)
    return ResearchRunPage(items=[run_out(run) for run in runs], next_cursor=key_cursor(last_key, scope=scope))


def stored_document(run: ResearchRun) -> ReportDocument | None:
    return document_from_json(run.document) if run.document else None


__all__: Sequence[str] = (
    "ACTIVE", "FINISHED", "RUN_KINDS", "RUN_STATUSES", "DocumentTooLargeError", "ResearchRun", "ResearchRunOut",
    "ResearchRunPage", "RunKind", "RunStep", "active_run_in_thread", "active_runs_in_thread", "add_usage", "create_run",
    "document_from_json",
    "document_to_json", "finish", "get_run", "list_runs", "list_user_runs", "mark_running", "record_step",
    "request_cancel", "run_out", "set_progress_ts", "stored_audience", "stored_document",
)
