"""The evaluation set and its results: the eval table (``EVAL_TABLE``; template: ``EvalTable``).

A **case** is a question the assistant should keep answering well: the question, the sources a good
answer uses (document ids and/or titles), notes on what the answer must say, and the **access
scope** it is asked with — a directory user (``{"user_id": ...}``: their access at evaluation
time) or a fixed audience (``{"principals": [[...], ...]}``: one principal list per reader, what a
shared conversation's readers could see, as :meth:`insightmesh.knowledge.base.Audience.principal_sets`
gives). Its ``origin`` says where it came from: ``feedback`` (a 👎 with a reason: one case per
reply, :func:`case_from_feedback`), ``admin`` (``/api/eval-cases``) or ``file`` (``insightmesh eval
--cases``, never stored).

Items, one table, addressed by key (never a Scan):

* case — pk ``case#<case id>``, sk ``case``; GSI ``by-kind``: ``list_kind`` = ``case``,
  ``list_sort`` = ``<created_at>#<case id>``. Read by id (GetItem), listed newest first a page at a
  time (one Query on ``by-kind``; ``active`` as a filter for the job), created by a conditional
  PutItem (a feedback case's id derives from its reply, so the same reply's 👎 twice makes one case),
  changed and deleted by the API with their audit entry in one transaction.
* result — pk ``run#<run id>``, sk ``result#<case id>``: one case's scores in one evaluation run
  (PutItem); a run's results are one Query on its pk.
* run — pk ``run#<run id>``, sk ``run``: the run's totals, whether it regressed, and the run it was
  compared with; GSI ``by-kind``: ``list_kind`` = ``run#<source>`` (the job's id, or ``cli``),
  ``list_sort`` = ``<created_at>#<run id>``. The baseline of a run is the newest earlier run of the
  same source that did not regress: one Query on ``by-kind``, newest first.

Results and runs expire after :data:`RESULT_RETENTION_DAYS` days (``expires_at``, TTL); cases do not.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from insightmesh.api.pagination import Page, created_sort, key_cursor, query_page, start_key
from insightmesh.aws import model_meta, put_if_absent
from insightmesh.clock import utc_now

CASE_KIND: Final = "case"
CASE_SK: Final = "case"
RUN_SK: Final = "run"
RESULT_SK_PREFIX: Final = "result#"
RESULT_RETENTION_DAYS: Final = 90
MAX_QUESTION_CHARS: Final = 4_000
MAX_NOTES_CHARS: Final = 2_000
MAX_SOURCES: Final = 20
MAX_READERS: Final = 50  # principal lists of a fixed audience
MAX_PRINCIPALS: Final = 50  # per reader
LIST_SCOPE: Final = "eval-cases"
Origin = Literal["feedback", "admin", "file"]


class CaseScope(BaseModel):
    """Whose access the question is asked with: exactly one of ``user_id`` and ``principals``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str | None = Field(default=None, min_length=1, max_length=128,
                                description="A directory user: their access when the case runs.")
    principals: list[list[str]] | None = Field(
        default=None, min_length=1, max_length=MAX_READERS,
        description="A fixed audience: one list of principals (anyone, user:<e-mail>, domain:<d>, group:<g>) "
                    "per reader; a document qualifies when every reader may see it.")

    @model_validator(mode="after")
    def _one(self) -> CaseScope:
        if (self.user_id is None) == (self.principals is None):
            raise ValueError("give exactly one of user_id and principals")
        for reader in self.principals or []:
            if not 1 <= len(reader) <= MAX_PRINCIPALS or not all(0 < len(p) <= 320 for p in reader):
                raise ValueError(f"each reader has 1 to {MAX_PRINCIPALS} principals of 1 to 320 characters")
        return self

    @classmethod
    def public(cls) -> CaseScope:
        """What anyone may see: the scope of a case whose audience is unknown (fail closed)."""
        return cls(principals=[["anyone"]])


class EvalCaseSpec(BaseModel):
    """A case's content, as stored, sent to the API or read from a cases file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    scope: CaseScope
    expected_ids: list[str] = Field(default_factory=list, max_length=MAX_SOURCES,
                                    description="Document ids a good answer is grounded in.")
    expected_titles: list[str] = Field(default_factory=list, max_length=MAX_SOURCES,
                                       description="Or their titles (case-insensitive).")
    notes: str = Field(default="", max_length=MAX_NOTES_CHARS, description="What a good answer says.")
    case_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    active: bool = True


class EvalByKind(GlobalSecondaryIndex["EvalItem"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    """Cases (``case``) and each source's runs (``run#<source>``), newest first by ``list_sort``."""

    class Meta:
        index_name = "by-kind"
        projection = AllProjection()

    list_kind = UnicodeAttribute(hash_key=True)
    list_sort = UnicodeAttribute(range_key=True)


class EvalItem(Model):
    """One item of the eval table: a case, a result or a run (see the module docstring)."""

    Meta = model_meta("EVAL_TABLE")

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    list_kind = UnicodeAttribute(null=True)
    list_sort = UnicodeAttribute(null=True)
    # case
    case_id = UnicodeAttribute(null=True)
    question = UnicodeAttribute(null=True)
    scope = JSONAttribute(null=True)
    expected_ids: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]
    expected_titles: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]
    notes = UnicodeAttribute(null=True)
    origin = UnicodeAttribute(null=True)
    active = BooleanAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True)
    created_by = UnicodeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)
    updated_by = UnicodeAttribute(null=True)
    # result and run
    run_id = UnicodeAttribute(null=True)
    data = JSONAttribute(null=True)  # a result's scores, or a run's totals and comparison
    expires_at = TTLAttribute(null=True)

    by_kind = EvalByKind()


class EvalCase(BaseModel):
    """A stored case, as the API and the evaluation read it."""

    case_id: str
    question: str
    scope: CaseScope
    expected_ids: list[str] = Field(default_factory=list)
    expected_titles: list[str] = Field(default_factory=list)
    notes: str = ""
    origin: str = "admin"
    active: bool = True
    created_at: datetime | None = None
    created_by: str | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None

    @classmethod
    def of(cls, item: EvalItem) -> EvalCase:
        return cls(case_id=str(item.case_id), question=str(item.question), scope=CaseScope.model_validate(item.scope),
                   expected_ids=list(item.expected_ids or []), expected_titles=list(item.expected_titles or []),
                   notes=item.notes or "", origin=item.origin or "admin", active=bool(item.active),
                   created_at=item.created_at, created_by=item.created_by, updated_at=item.updated_at,
                   updated_by=item.updated_by)

    @classmethod
    def from_spec(cls, spec: EvalCaseSpec, *, origin: str, default_id: str) -> EvalCase:
        return cls(case_id=spec.case_id or default_id, question=spec.question, scope=spec.scope,
                   expected_ids=list(spec.expected_ids), expected_titles=list(spec.expected_titles),
                   notes=spec.notes, origin=origin, active=spec.active)


def case_pk(case_id: str) -> str:
    return f"case#{case_id}"


def run_pk(run_id: str) -> str:
    return f"run#{run_id}"


def new_case_id() -> str:
    return uuid.uuid4().hex[:16]


def case_item(case: EvalCase) -> EvalItem:
    created = case.created_at or utc_now()
    return EvalItem(
        case_pk(case.case_id), CASE_SK, list_kind=CASE_KIND, list_sort=created_sort(created, case.case_id),
        case_id=case.case_id, question=case.question, scope=case.scope.model_dump(exclude_none=True),
        expected_ids=list(case.expected_ids) or None, expected_titles=list(case.expected_titles) or None,
        notes=case.notes or None, origin=case.origin, active=case.active, created_at=created,
        created_by=case.created_by, updated_at=case.updated_at, updated_by=case.updated_by)


def create_case(case: EvalCase) -> bool:
    """Store ``case`` unless a case of that id exists (one conditional PutItem): True if stored."""
    return put_if_absent(case_item(case), EvalItem.pk.does_not_exist())


def get_case(case_id: str) -> EvalCase | None:
    try:
        return EvalCase.of(EvalItem.get(case_pk(case_id), CASE_SK, consistent_read=True))
    except EvalItem.DoesNotExist:
        return None


def list_cases(*, limit: int, cursor: str | None, active: bool | None = None) -> Page[EvalCase]:
    """Cases newest first, one Query on ``by-kind`` per page; ``active`` filters."""
    scope = f"{LIST_SCOPE}:{active}"
    results = EvalItem.by_kind.query(CASE_KIND, filter_condition=(EvalItem.active == active) if active is not None
                                     else None, scan_index_forward=False, limit=limit,
                                     last_evaluated_key=start_key(cursor, scope=scope))
    items, last_key = query_page(results, EvalItem)
    return Page[EvalCase](items=[EvalCase.of(item) for item in items], next_cursor=key_cursor(last_key, scope=scope))


def active_cases(max_cases: int | None = None) -> Iterator[EvalCase]:
    """Every active case, newest first (Query pages on ``by-kind``), at most ``max_cases``."""
    count = 0
    for item in EvalItem.by_kind.query(CASE_KIND, filter_condition=EvalItem.active == True,  # noqa: E712
                                       scan_index_forward=False, page_size=100):
        if max_cases is not None and count >= max_cases:
            return
        count += 1
        yield EvalCase.of(item)


def scope_from_provenance(made: Mapping[str, Any]) -> CaseScope | None:
    """The access an answer was given with, from its provenance (:mod:`insightmesh.conversation.provenance`):
    a shared answer's readers, or a private answer's asker; None when it was not recorded, or when
    the audience is too large for a case (the caller then fails closed)."""
    readers, asker = made.get("readers"), made.get("asker")
    try:
        if made.get("scope") == "shared" and isinstance(readers, list) and readers:
            return CaseScope(principals=readers)
        if made.get("scope") == "private" and asker:
            return CaseScope(user_id=str(asker))
    except ValueError:
        return None
    return None


def feedback_case_id(reply_key: str) -> str:
    """The case of a reply's 👎: the same reply always names the same case."""
    return "fb-" + hashlib.sha256(reply_key.encode()).hexdigest()[:20]


def case_from_feedback(*, reply_key: str, question: str, passages: Sequence[tuple[str, str]], scope: CaseScope,
                       reason: str, comment: str | None, voter: str) -> bool:
    """A 👎 with a reason becomes a case (once per reply): the question, the passages the answer
    had as its expected sources (an admin corrects them), the reason and comment as notes."""
    notes = f"👎 {reason}" + (f": {comment}" if comment else "")
    case = EvalCase(case_id=feedback_case_id(reply_key), question=question[:MAX_QUESTION_CHARS], scope=scope,
                    expected_ids=[pid for pid, _ in passages][:MAX_SOURCES], notes=notes[:MAX_NOTES_CHARS],
                    origin="feedback", active=True, created_by=f"slack:{voter}")
    return create_case(case)


# -- results and runs ----------------------------------------------------------------------------------


def _expiry(moment: datetime) -> datetime:
    return moment + timedelta(days=RESULT_RETENTION_DAYS)


def save_result(run_id: str, case_id: str, data: dict[str, Any]) -> None:
    now = utc_now()
    EvalItem(run_pk(run_id), f"{RESULT_SK_PREFIX}{case_id}", run_id=run_id, case_id=case_id, data=data,
             created_at=now, expires_at=_expiry(now)).save()


def run_results(run_id: str) -> list[dict[str, Any]]:
    """A run's per-case results (Query on the run's pk)."""
    return [dict(item.data or {}) for item in
            EvalItem.query(run_pk(run_id), EvalItem.sk.startswith(RESULT_SK_PREFIX))]


def save_run(run_id: str, source: str, data: dict[str, Any]) -> None:
    now = utc_now()
    EvalItem(run_pk(run_id), RUN_SK, list_kind=f"run#{source}", list_sort=created_sort(now, run_id), run_id=run_id,
             data=data, created_at=now, expires_at=_expiry(now)).save()


def baseline(source: str) -> tuple[str, dict[str, Any]] | None:
    """The newest run of ``source`` that did not regress: (run id, its data), or None."""
    for item in EvalItem.by_kind.query(f"run#{source}", scan_index_forward=False, page_size=20):
        data = dict(item.data or {})
        if not data.get("regressed"):
            return str(item.run_id), data
    return None


__all__ = ["CaseScope", "EvalCase", "EvalCaseSpec", "EvalItem", "active_cases", "baseline", "case_from_feedback",
           "case_item", "create_case", "feedback_case_id", "get_case", "list_cases", "new_case_id", "run_results",
           "save_result", "save_run", "scope_from_provenance"]
