"""``/api/eval-cases``: the answer-quality evaluation set (admins only; every change audited).

* ``GET /api/eval-cases`` — cases newest first, a page at a time (one Query; ``active`` filters);
* ``GET /api/eval-cases/<case_id>`` — one case (GetItem);
* ``POST`` — an admin marks a question: either ``{"request_id"}`` of an answered conversation
  request (its question and access scope copied from the answer's provenance; ``thread_ts`` names
  the thread of a reply inside one, ``scope`` overrides), or an explicit ``question`` and ``scope``;
  expected sources and notes in both;
* ``PATCH`` — notes, expected sources, active; ``DELETE`` — the case.

What a case is and how the ``answer_quality_eval`` job scores it: :mod:`insightmesh.evaluation`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, Cursor, Limit, responses
from insightmesh.api.errors import ConflictError, NotFoundError, ValidationFailedError
from insightmesh.api.pagination import DEFAULT_LIMIT, Page
from insightmesh.audit import log as audit_log
from insightmesh.audit.tx import Tx
from insightmesh.auth.guard import authenticate_admin
from insightmesh.auth.principal import Principal
from insightmesh.clock import utc_now
from insightmesh.evaluation.cases import (
    MAX_NOTES_CHARS,
    MAX_QUESTION_CHARS,
    MAX_SOURCES,
    CaseScope,
    EvalCase,
    EvalItem,
    case_item,
    case_pk,
    get_case,
    list_cases,
    new_case_id,
    scope_from_provenance,
)

CASE_ID_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,64}$"
CaseIdPath = Annotated[str, Path(pattern=CASE_ID_PATTERN, description="The case's id.")]
Sources = Annotated[list[Annotated[str, Field(min_length=1, max_length=300)]], Field(max_length=MAX_SOURCES)]


class EvalCaseIn(BaseModel):
    """A case to add: ``request_id`` (copied from an answered request) or ``question`` + ``scope``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str | None = Field(default=None, min_length=1, max_length=200,
                                   description="An answered conversation request (msg:<team>:<channel>:<ts>).")
    thread_ts: str | None = Field(default=None, pattern=r"^\d{1,12}\.\d{1,8}$",
                                  description="With request_id: the thread the message was answered in "
                                              "(default: the message itself).")
    question: str | None = Field(default=None, min_length=1, max_length=MAX_QUESTION_CHARS)
    scope: CaseScope | None = Field(default=None, description="Whose access the question is asked with.")
    expected_ids: Sources = Field(default_factory=list)
    expected_titles: Sources = Field(default_factory=list)
    notes: str = Field(default="", max_length=MAX_NOTES_CHARS)
    active: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> EvalCaseIn:
        if (self.request_id is None) == (self.question is None):
            raise ValueError("give either request_id or question")
        if self.question is not None and self.scope is None:
            raise ValueError("a question needs its scope (user_id or principals)")
        if self.thread_ts is not None and self.request_id is None:
            raise ValueError("thread_ts goes with request_id")
        return self


class EvalCasePatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    notes: str | None = Field(default=None, max_length=MAX_NOTES_CHARS)
    expected_ids: Sources | None = None
    expected_titles: Sources | None = None
    active: bool | None = None


def target(case_id: str) -> str:
    return f"eval-case:{case_id}"


def _answered(request_id: str, thread_ts: str | None) -> dict[str, Any]:
    """The provenance of an answered request (one GetItem), or 404/422."""
    from insightmesh.conversation.models import RequestRecord, request_sk, thread_pk
    from insightmesh.conversation.requests import thread_key

    parts = request_id.split(":")
    if request_id.startswith("msg:") and len(parts) == 4:
        pk = thread_pk(thread_key(parts[1], parts[2], thread_ts or parts[3]))
    elif thread_ts is None:
        pk = f"command#{request_id}"
    else:
        raise ValidationFailedError("thread_ts goes with a message's request_id (msg:<team>:<channel>:<ts>)")
    try:
        record = RequestRecord.get(pk, request_sk(request_id), attributes_to_get=["provenance"])
    except RequestRecord.DoesNotExist as error:
        raise NotFoundError(f"no request {request_id} (requests are kept 7 days)") from error
    made = record.provenance if isinstance(record.provenance, dict) else {}
    if not made.get("question"):
        raise ValidationFailedError(f"request {request_id} has no recorded answer to evaluate")
    return made


def create(body: EvalCaseIn, *, actor: Principal, request_id: str) -> EvalCase:
    if body.request_id is not None:
        made = _answered(body.request_id, body.thread_ts)
        scope = body.scope or scope_from_provenance(made)
        if scope is None:
            raise ValidationFailedError("the answer's access was not recorded: give scope", details=[
                {"loc": ["body", "scope"], "msg": "required for this request", "type": "value_error"}])
        question = str(made["question"])[:MAX_QUESTION_CHARS]
    else:
        question, scope = str(body.question), body.scope  # both set: checked by EvalCaseIn
    assert scope is not None
    case = EvalCase(case_id=new_case_id(), question=question, scope=scope, expected_ids=list(body.expected_ids),
                    expected_titles=list(body.expected_titles), notes=body.notes, origin="admin", active=body.active,
                    created_at=utc_now(), created_by=actor.label)
    tx = Tx()
    tx.put(case_item(case), condition=EvalItem.pk.does_not_exist(), error=ConflictError("the case exists; retry"))
    tx.audit(audit_log.entry(actor=actor, action="eval_case.create", target=target(case.case_id), after=case,
                             request_id=request_id))
    tx.commit()
    return case


def _existing(case_id: str) -> EvalCase:
    case = get_case(case_id)
    if case is None:
        raise NotFoundError(f"no evaluation case {case_id}")
    return case


def patch(case_id: str, body: EvalCasePatch, *, actor: Principal, request_id: str) -> EvalCase:
    before = _existing(case_id)
    changes = body.model_dump(exclude_unset=True)
    after = before.model_copy(update={**{k: v for k, v in changes.items() if v is not None},
                                      "updated_at": utc_now(), "updated_by": actor.label})
    tx = Tx()
    tx.put(case_item(after), condition=EvalItem.pk.exists(),
           error=NotFoundError(f"no evaluation case {case_id}"))
    tx.audit(audit_log.entry(actor=actor, action="eval_case.patch", target=target(case_id), before=before,
                             after=after, request_id=request_id))
    tx.commit()
    return after


def delete(case_id: str, *, actor: Principal, request_id: str) -> None:
    before = _existing(case_id)
    tx = Tx()
    tx.delete(EvalItem(case_pk(case_id), "case"), condition=EvalItem.pk.exists(),
              error=NotFoundError(f"no evaluation case {case_id}"))
    tx.audit(audit_log.entry(actor=actor, action="eval_case.delete", target=target(case_id), before=before,
                             request_id=request_id))
    tx.commit()


def register_eval_case_routes(app: InsightMeshResolver) -> None:
    def admin(action: str, case_id: str = "*") -> Principal:
        return authenticate_admin(app, action=action, target=target(case_id))

    @app.get("/api/eval-cases", summary="List the evaluation set", tags=["evaluation"], security=SECURITY,
             description="Admins only. Cases newest first; active=true|false filters.",
             responses=responses(200, "A page of cases", 403))
    def list_eval_cases(active: Annotated[bool | None, Query(description="Only active (or inactive) cases.")] = None,
                        limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[EvalCase]:
        admin("eval_case.read")
        return list_cases(limit=limit, cursor=cursor, active=active)

    @app.get("/api/eval-cases/<case_id>", summary="Show an evaluation case", tags=["evaluation"], security=SECURITY,
             description="Admins only.", responses=responses(200, "The case", 403, 404))
    def get_eval_case(case_id: CaseIdPath) -> EvalCase:
        admin("eval_case.read", case_id)
        return _existing(case_id)

    @app.post("/api/eval-cases", summary="Add a question to the evaluation set", tags=["evaluation"],
              security=SECURITY, status_code=201,
              description="Admins only; audited. From an answered request (request_id) or an explicit question "
                          "and scope.",
              responses=responses(201, "The case", 403, 404))
    def create_eval_case(body: Annotated[EvalCaseIn, Body()]) -> EvalCase:
        principal = admin("eval_case.create")
        return create(body, actor=principal, request_id=app.correlation_id)

    @app.patch("/api/eval-cases/<case_id>", summary="Change an evaluation case", tags=["evaluation"],
               security=SECURITY, description="Admins only; audited. Notes, expected sources, active.",
               responses=responses(200, "The case, changed", 403, 404))
    def patch_eval_case(case_id: CaseIdPath, body: Annotated[EvalCasePatch, Body()]) -> EvalCase:
        principal = admin("eval_case.patch", case_id)
        return patch(case_id, body, actor=principal, request_id=app.correlation_id)

    @app.delete("/api/eval-cases/<case_id>", summary="Remove an evaluation case", tags=["evaluation"],
                security=SECURITY, description="Admins only; audited.",
                responses=responses(204, "Removed", 403, 404))
    def delete_eval_case(case_id: CaseIdPath) -> Response[str]:
        principal = admin("eval_case.delete", case_id)
        delete(case_id, actor=principal, request_id=app.correlation_id)
        return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")
