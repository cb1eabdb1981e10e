"""What a model costs: USD per 1M input and per 1M output tokens, and the cost of one completion.

Prices live in the usage table (``USAGE_TABLE``), beside the counters they price:

* item ``subject = "prices"``, ``period = <model name>`` (``gpt-4o-mini``), attributes
  ``input_usd_per_million``, ``output_usd_per_million``, ``updated_at``, ``updated_by``.

Access patterns:

* every price — ``Query`` on ``subject = "prices"`` (one call; the admin list and the cache below);
* one price — ``GetItem`` on ``("prices", <model>)`` (the admin API's before-image);
* set / remove a price — ``PutItem`` / ``DeleteItem`` with the audit entry in one transaction
  (:mod:`insightmesh.admin.models`).

Why there and not in a table of their own: a handful of items, read together, never on their own
request path (the cache below), and the table is already bound to every function that records usage.

Recording does not read prices each call: :func:`prices` is cached per container for
``PRICE_CACHE_SECONDS`` (60 s) in a :class:`~insightmesh.caching.TtlCache`, so a changed price
reaches every container within a minute (at once in the container that changed it).

Settings (validated once per container): ``LLM_DEFAULT_INPUT_USD_PER_MILLION`` and
``LLM_DEFAULT_OUTPUT_USD_PER_MILLION`` (``0``, at most 10,000), ``LLM_FALLBACK_MODEL`` (unset; a
budget's global fallback, :mod:`insightmesh.budgets`), ``USAGE_REQUEST_RETENTION_DAYS`` (``90``):
how long the per-completion records of :mod:`insightmesh.llm.usage` are kept.

A model without a price costs the configured default, ``LLM_DEFAULT_INPUT_USD_PER_MILLION`` and
``LLM_DEFAULT_OUTPUT_USD_PER_MILLION`` (``0``: unknown models are free until priced), and a warning
is logged once per container and model, so an operator sees which model to price. When prices
cannot be read (a DynamoDB error) the defaults are used for that call and the error logged: cost
accounting never costs anyone their reply.

Costs are integers in millionths of a US dollar ("micros"): a price of P USD per 1M tokens is P
micros per token, so ``cost = round(prompt_tokens * input + completion_tokens * output)``
(decimal arithmetic, half up) — integers add exactly in the counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model

from insightmesh.aws import model_meta
from insightmesh.caching import TtlCache
from insightmesh.config import load_settings
from insightmesh.llm.base import Usage
from insightmesh.observability import get_logger

PRICES_SUBJECT: Final = "prices"
PRICE_CACHE_SECONDS: Final = 60.0
MAX_USD_PER_MILLION: Final = 10_000.0  # far above any model's list price; a typo's guard


class PricingSettings(BaseSettings):
    """The price of a model nobody priced, and the per-request records' retention."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, env_ignore_empty=True)

    LLM_DEFAULT_INPUT_USD_PER_MILLION: float = Field(default=0.0, ge=0, le=MAX_USD_PER_MILLION)
    LLM_DEFAULT_OUTPUT_USD_PER_MILLION: float = Field(default=0.0, ge=0, le=MAX_USD_PER_MILLION)
    LLM_FALLBACK_MODEL: str | None = Field(default=None, max_length=256)  # a budget's global fallback
    USAGE_REQUEST_RETENTION_DAYS: int = Field(default=90, ge=1, le=3650)


@lru_cache(maxsize=1)
def pricing_settings() -> PricingSettings:
    """Validated once per container (tests call ``pricing_settings.cache_clear()``)."""
    return load_settings(PricingSettings)


class ModelPrice(Model):
    """The price of one model (see the module docstring for its key and access patterns)."""

    Meta = model_meta("USAGE_TABLE", connect_timeout=1, read_timeout=2)

    subject = UnicodeAttribute(hash_key=True)  # always PRICES_SUBJECT
    period = UnicodeAttribute(range_key=True)  # the model's name
    input_usd_per_million = NumberAttribute()
    output_usd_per_million = NumberAttribute()
    updated_at = UTCDateTimeAttribute(null=True)
    updated_by = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)  # the table's TTL attribute: never set on a price

    @property
    def model(self) -> str:
        return str(self.period)


@dataclass(frozen=True, slots=True)
class Price:
    input_usd_per_million: float
    output_usd_per_million: float


_cache: TtlCache[str, dict[str, Price]] = TtlCache(PRICE_CACHE_SECONDS, max_entries=1)
_warned: set[str] = set()


def read_prices() -> list[ModelPrice]:
    """Every stored price, by model name: one Query."""
    return list(ModelPrice.query(PRICES_SUBJECT))


def prices() -> dict[str, Price]:
    """Model name → price, read at most ``PRICE_CACHE_SECONDS`` ago in this container."""
    return _cache.get_or_load("all", lambda: {
        item.model: Price(float(item.input_usd_per_million), float(item.output_usd_per_million))
        for item in read_prices()})


def forget_prices() -> None:
    """Drop this container's cached prices (after it changed one; tests)."""
    _cache.invalidate()


def default_price() -> Price:
    settings = pricing_settings()
    return Price(settings.LLM_DEFAULT_INPUT_USD_PER_MILLION, settings.LLM_DEFAULT_OUTPUT_USD_PER_MILLION)


def price_of(model: str) -> Price:
    """The model's price; the configured default (with a warning, once per model) when it has none
    or prices cannot be read."""
    try:
        known = prices().get(model)
    except PynamoDBException as error:
        get_logger().warning("model prices unreadable; the default price is used",
                             extra={"model": model, "error": str(error)})
        return default_price()
    if known is None:
        if model not in _warned:
            _warned.add(model)
            get_logger().warning("model has no price; the default price is used", extra={"model": model})
        return default_price()
    return known


def cost_of(price: Price, usage: Usage) -> int:
    """``usage`` at ``price``, in micro-USD (half up)."""
    exact = (Decimal(usage.prompt_tokens) * Decimal(str(price.input_usd_per_million))
             + Decimal(usage.completion_tokens) * Decimal(str(price.output_usd_per_million)))
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


def cost_micros(model: str, usage: Usage) -> int:
    """What one completion of ``model`` with ``usage`` cost, in millionths of a US dollar."""
    return cost_of(price_of(model), usage)


__all__ = [
    "MAX_USD_PER_MILLION",
    "PRICES_SUBJECT",
    "ModelPrice",
    "Price",
    "PricingSettings",
    "cost_micros",
    "cost_of",
    "default_price",
    "forget_prices",
    "price_of",
    "prices",
    "pricing_settings",
    "read_prices",
]
