"""``/api/models``: the models and their prices (admins only; every change audited in the same transaction).

* ``GET /api/models`` — every priced model, and the models that matter without a price: the
  configured ``LLM_MODEL``, the global ``LLM_FALLBACK_MODEL``, every budget's fallback model, and
  the models used this month. Three reads: a ``Query`` of the prices, a ``Query`` of the budgets,
  a ``GetItem`` of this month's ``index#model`` item (:mod:`insightmesh.llm.usage`).
* ``PUT /api/models/<model>`` — set its price (USD per 1M input and output tokens, 0 to 10,000);
  201 the first time, 200 after.
* ``DELETE /api/models/<model>`` — remove its price (404 without one): the model then costs the
  configured default (:mod:`insightmesh.llm.pricing`).

Prices are read by the recording path through a 60 s per-container cache: a change reaches every
container within a minute (this one at once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.models import Tag
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from pydantic import BaseModel, ConfigDict, Field
from pynamodb.expressions.condition import Condition

from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, configure_openapi, responses
from insightmesh.api.errors import ConflictError, NotFoundError
from insightmesh.audit import log as audit_log
from insightmesh.audit.tx import Tx
from insightmesh.auth.guard import authenticate_admin
from insightmesh.auth.principal import Principal
from insightmesh.clock import utc_now
from insightmesh.llm.pricing import (
    MAX_USD_PER_MILLION,
    PRICES_SUBJECT,
    ModelPrice,
    default_price,
    forget_prices,
    pricing_settings,
    read_prices,
)

MODEL_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$"
TAGS: Final = [Tag(name="models", description="The LLM models and their prices (USD per 1M tokens).")]
Source = Literal["priced", "configured", "fallback", "used"]

ModelPath = Annotated[str, Path(pattern=MODEL_PATTERN, description="The model's name as the provider reports it, "
                                                                   "e.g. gpt-4o-mini.")]
UsdPerMillion = Annotated[float, Field(ge=0, le=MAX_USD_PER_MILLION, allow_inf_nan=False)]


class ModelPriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True,
                              json_schema_extra={"examples": [{"input_usd_per_million": 0.15,
                                                               "output_usd_per_million": 0.6}]})

    input_usd_per_million: UsdPerMillion = Field(description="USD per 1M prompt (input) tokens.")
    output_usd_per_million: UsdPerMillion = Field(description="USD per 1M completion (output) tokens.")


class ModelOut(BaseModel):
    model: str
    input_usd_per_million: float | None = Field(description="None: no price; the default applies.")
    output_usd_per_million: float | None
    default_input_usd_per_million: float = Field(description="What an unpriced model costs per 1M input tokens.")
    default_output_usd_per_million: float
    sources: list[Source] = Field(description="Why it is listed: priced, configured (LLM_MODEL), fallback (a "
                                              "budget's or LLM_FALLBACK_MODEL), used (this month).")
    updated_at: datetime | None = None
    updated_by: str | None = None


class ModelList(BaseModel):
    items: list[ModelOut] = Field(description="By model name.")


def target(model: str) -> str:
    return f"model:{model}"


def _out(model: str, price: ModelPrice | None, sources: list[Source]) -> ModelOut:
    default = default_price()
    return ModelOut(model=model, input_usd_per_million=None if price is None else float(price.input_usd_per_million),
                    output_usd_per_million=None if price is None else float(price.output_usd_per_million),
                    default_input_usd_per_million=default.input_usd_per_million,
                    default_output_usd_per_million=default.output_usd_per_million, sources=sources,
                    updated_at=None if price is None else price.updated_at,
                    updated_by=None if price is None else price.updated_by)


def _fallback_models() -> set[str]:
    from insightmesh.budgets.models import BUDGET_SUBJECT, BudgetItem

    found = {str(item.fallback_model) for item in BudgetItem.query(BUDGET_SUBJECT) if item.fallback_model}
    configured = pricing_settings().LLM_FALLBACK_MODEL
    return found | ({configured} if configured else set())


def _used_this_month() -> set[str]:
    from insightmesh.llm.usage import UsageIndex, index_subject, period_key

    try:
        return set(UsageIndex.get(index_subject("model"), period_key("month")).members or ())
    except UsageIndex.DoesNotExist:
        return set()


def list_models() -> ModelList:
    from insightmesh.llm.factory import load_llm_settings

    priced = {item.model: item for item in read_prices()}
    listed: dict[str, set[Source]] = {name: {"priced"} for name in priced}
    for source, names in (("configured", {load_llm_settings().model}), ("fallback", _fallback_models()),
                          ("used", _used_this_month())):
        for name in names:
            listed.setdefault(name, set()).add(source)  # type: ignore[arg-type]
    order: tuple[Source, ...] = ("priced", "configured", "fallback", "used")
    return ModelList(items=[_out(name, priced.get(name), [s for s in order if s in listed[name]])
                            for name in sorted(listed)])


def _current(model: str) -> ModelPrice | None:
    try:
        return ModelPrice.get(PRICES_SUBJECT, model, consistent_read=True)
    except ModelPrice.DoesNotExist:
        return None


def _unchanged(before: ModelPrice) -> Condition:
    """The price is still the one read (a concurrent change makes the write a 409)."""
    if before.updated_at is None:
        return ModelPrice.period.exists() & ModelPrice.updated_at.does_not_exist()
    return ModelPrice.updated_at == before.updated_at


def put_price(model: str, body: ModelPriceIn, *, actor: Principal, request_id: str) -> tuple[ModelOut, bool]:
    """Set ``model``'s price, conditional on the price read (409 if it changed meanwhile), audited."""
    before = _current(model)
    record = ModelPrice(PRICES_SUBJECT, model, input_usd_per_million=body.input_usd_per_million,
                        output_usd_per_million=body.output_usd_per_million, updated_at=utc_now(),
                        updated_by=actor.label)
    condition = ModelPrice.period.does_not_exist() if before is None else _unchanged(before)
    after = _out(model, record, ["priced"])
    tx = Tx()
    tx.put(record, condition=condition, error=ConflictError(f"the price of {model} changed meanwhile; retry"))
    tx.audit(audit_log.entry(actor=actor, action="model.price.put", target=target(model),
                             before=None if before is None else _out(model, before, ["priced"]), after=after,
                             request_id=request_id))
    tx.commit()
    forget_prices()
    return after, before is None


def delete_price(model: str, *, actor: Principal, request_id: str) -> ModelOut:
    before = _current(model)
    if before is None:
        raise NotFoundError(f"model {model} has no price")
    tx = Tx()
    tx.delete(ModelPrice(PRICES_SUBJECT, model), condition=_unchanged(before),
              error=ConflictError(f"the price of {model} changed meanwhile; retry"))
    tx.audit(audit_log.entry(actor=actor, action="model.price.delete", target=target(model),
                             before=_out(model, before, ["priced"]), after=None, request_id=request_id))
    tx.commit()
    forget_prices()
    return _out(model, None, [])


def register_model_routes(app: InsightMeshResolver) -> None:
    """Add ``/api/models`` to ``app`` (see the module docstring)."""
    configure_openapi(app, description="", tags=TAGS)

    def admin(action: str, model: str = "*") -> Principal:
        return authenticate_admin(app, action=action, target=target(model))

    @app.get("/api/models", summary="List models and their prices", tags=["models"], security=SECURITY,
             description="Admins only. Priced models, and the configured, fallback and this month's models even "
                         "without a price (their price fields null: the default applies).",
             responses=responses(200, "The models, by name", 403))
    def get_models() -> ModelList:
        admin("model.read")
        return list_models()

    @app.put("/api/models/<model>", summary="Set a model's price", tags=["models"], security=SECURITY,
             description=f"Admins only; audited. USD per 1M input and output tokens, 0 to {MAX_USD_PER_MILLION:,.0f}. "
                         "Recording picks it up within a minute.",
             responses={**responses(200, "The price, replaced", 403, 404, 409),
                        201: {"description": "The price, set for the first time"}})
    def put_model(model: ModelPath, body: Annotated[ModelPriceIn, Body()]) -> Response[ModelOut]:
        principal = admin("model.price.put", model)
        out, created = put_price(model, body, actor=principal, request_id=app.correlation_id)
        return Response(status_code=201 if created else 200, content_type=content_types.APPLICATION_JSON, body=out)

    @app.delete("/api/models/<model>", summary="Remove a model's price", tags=["models"], security=SECURITY,
                description="Admins only; audited. The model then costs the default. 404 without a price.",
                responses=responses(200, "The model, now without a price", 403, 404, 409))
    def delete_model(model: ModelPath) -> ModelOut:
        principal = admin("model.price.delete", model)
        return delete_price(model, actor=principal, request_id=app.correlation_id)


__all__ = ["ModelList", "ModelOut", "ModelPriceIn", "register_model_routes"]
