"""Paginated lists: opaque signed cursors, page parameters and the page every list endpoint returns.

Every list endpoint answers ``{"items": [...], "next_cursor": "..." | null}`` and takes ``limit``
(default :data:`DEFAULT_LIMIT`, at most :data:`MAX_LIMIT`) and ``cursor`` (the ``next_cursor`` of
the previous page). A ``limit`` above the cap is refused with 422 rather than silently lowered:
a client that asked for 500 items and got 100 could mistake the page for the whole list.

A cursor is ``base64url(JSON position) "." base64url(HMAC-SHA256)``. The position is usually a
DynamoDB ``LastEvaluatedKey``; the MAC is keyed by a key derived from ``SECRET_KEY`` for this
purpose only and covers a *scope* naming the list (and its filters), so a client can neither
forge a start key nor replay the cursor of one list on another. A cursor that does not verify is
a 422 (``validation_error``). Cursors do not expire; they carry no secret, only item keys.

:func:`query_page` runs exactly **one** DynamoDB ``Query`` for a page: with a filter expression
a page may hold fewer than ``limit`` items (even none) and still have a ``next_cursor`` — the
cost of a page stays constant whatever the filter's selectivity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pynamodb.models import Model
from pynamodb.pagination import ResultIterator

from insightmesh.api.errors import ValidationFailedError
from insightmesh.config import get_settings

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 100
MAX_CURSOR_LENGTH: Final = 2048
LIMIT_DESCRIPTION: Final = (
    f"Page size: default {DEFAULT_LIMIT}, at most {MAX_LIMIT}. A larger value is refused with 422 "
    "(not silently lowered). A page may hold fewer items than the limit and still have a next_cursor."
)
CURSOR_DESCRIPTION: Final = (
    "The next_cursor of the previous page (opaque and signed). A cursor that was altered, or that "
    "belongs to another list or other filters, is refused with 422."
)
_PURPOSE: Final = b"insightmesh/pagination-cursor/v1"
_KEY_TYPES: Final = frozenset({"S", "N", "B"})

T = TypeVar("T")
M = TypeVar("M", bound=Model)

# A DynamoDB key in the wire format: {"attribute": {"S": "value"}, ...}.
DynamoKey = dict[str, dict[str, Any]]


class PageParams(BaseModel):
    """``limit`` and ``cursor`` of a list request, validated (422 on a bad value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=LIMIT_DESCRIPTION)
    cursor: str | None = Field(default=None, min_length=1, max_length=MAX_CURSOR_LENGTH,
                               description=CURSOR_DESCRIPTION)


class Page(BaseModel, Generic[T]):
    """One page of a list; ``next_cursor`` is ``null`` on the last page."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    items: list[T]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= to get the next page; "
                                                               "null when there is none.")


def invalid_cursor(message: str = "the cursor is not valid") -> ValidationFailedError:
    return ValidationFailedError(
        message, details=[{"loc": ["query", "cursor"], "msg": message, "type": "value_error"}]
    )


def _signing_key() -> bytes:
    # A key for this purpose only: a MAC made here can never verify as a session or token.
    return hmac.new(get_settings().secret_key().encode(), _PURPOSE, hashlib.sha256).digest()


def _mac(scope: str, payload: str) -> str:
    digest = hmac.new(_signing_key(), f"{scope}\n{payload}".encode(), hashlib.sha256).digest()
    return _b64encode(digest)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(position: Mapping[str, Any], *, scope: str) -> str:
    """An opaque cursor for ``position`` (JSON-serialisable), valid only for ``scope``."""
    payload = _b64encode(json.dumps(dict(position), separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_mac(scope, payload)}"


def decode_cursor(cursor: str, *, scope: str) -> dict[str, Any]:
    """The position of a cursor made by :func:`encode_cursor` for ``scope``; else 422."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid_cursor()
    payload, dot, mac = cursor.partition(".")
    if not dot or not payload or not hmac.compare_digest(mac.encode(), _mac(scope, payload).encode()):
        raise invalid_cursor()
    try:
        position = json.loads(_b64decode(payload))
    except (binascii.Error, ValueError) as error:  # json.JSONDecodeError and UnicodeDecodeError too
        raise invalid_cursor() from error
    if not isinstance(position, dict):
        raise invalid_cursor()
    return position


def is_dynamo_key(value: Any) -> bool:
    """Whether ``value`` looks like a DynamoDB key: ``{name: {"S"|"N"|"B": str}}``, 1 to 4 entries."""
    return (
        isinstance(value, dict) and 0 < len(value) <= 4
        and all(isinstance(name, str) and isinstance(typed, dict) and len(typed) == 1
                and next(iter(typed)) in _KEY_TYPES and isinstance(next(iter(typed.values())), str)
                for name, typed in value.items())
    )


def key_cursor(key: DynamoKey | None, *, scope: str) -> str | None:
    """The cursor of a ``LastEvaluatedKey`` (``None`` at the end of the list)."""
    return None if key is None else encode_cursor({"k": key}, scope=scope)


def start_key(cursor: str | None, *, scope: str) -> DynamoKey | None:
    """The ``ExclusiveStartKey`` a :func:`key_cursor` cursor carries (``None`` without cursor)."""
    if cursor is None:
        return None
    key = decode_cursor(cursor, scope=scope).get("k")
    if not is_dynamo_key(key):
        raise invalid_cursor()
    return dict(key)  # type: ignore[arg-type]  # checked by is_dynamo_key


def created_sort(moment: datetime, item_id: str) -> str:
    """The range key of a newest-first listing index: fixed-width UTC time, then the id (never collides)."""
    return f"{moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{item_id}"


def query_page(results: ResultIterator[M], model: type[M]) -> tuple[list[M], DynamoKey | None]:
    """Run exactly one request of ``results`` (a ``Model.query(...)`` or ``Index.query(...)``
    created with ``limit``) and return its items and ``LastEvaluatedKey``.

    Iterating a ``ResultIterator`` would keep requesting pages until ``limit`` items passed the
    filter — a number of calls that grows with the data. One page is one call.
    """
    pages = results.page_iter
    page = next(pages, None)
    if page is None:
        return [], None
    items = [model.from_raw_data(raw) for raw in page.get("Items", [])]
    return items, pages.last_evaluated_key
