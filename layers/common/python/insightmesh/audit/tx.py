"""One ``TransactWriteItems`` per control-plane mutation, its audit entry included.

A mutation and its audit entry are written together or not at all, so the log can neither miss
a change nor record one that did not happen. Each operation carries the :class:`ApiError` its
failed condition means ("no such group" → 404, "already exists" → 409, "changed meanwhile" →
409); when DynamoDB cancels the transaction the first failed condition's error is raised. A
conflict with another transaction in flight is a 409 too (the client retries).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Final, Literal, TypeVar

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from insightmesh.api.errors import ApiError, ConflictError
from insightmesh.audit.log import AuditEntry
from insightmesh.aws import aws_region

M = TypeVar("M", bound=Model)
Kind = Literal["check", "delete", "put", "update"]
# The order in which pynamodb sends a transaction's items (CancellationReasons use this order).
_ORDER: Final[tuple[Kind, ...]] = ("check", "delete", "put", "update")
MAX_ITEMS: Final = 100


@lru_cache(maxsize=4)
def _connection_for(region: str, host: str | None) -> Connection:
    return Connection(region=region, host=host, connect_timeout_seconds=2, read_timeout_seconds=5,
                      max_retry_attempts=2)


def _connection() -> Connection:
    """One connection per process (a botocore client costs ~0.2 s to create), like the models'."""
    return _connection_for(aws_region(), os.environ.get("AWS_ENDPOINT_URL") or None)


class Tx:
    """Collects the operations of one mutation; :meth:`commit` writes them atomically."""

    def __init__(self) -> None:
        self._write = TransactWrite(connection=_connection())
        self._errors: dict[Kind, list[ApiError]] = {kind: [] for kind in _ORDER}

    def __len__(self) -> int:
        return sum(len(errors) for errors in self._errors.values())

    def check(self, model: type[M], hash_key: Any, range_key: Any = None, *, condition: Condition,
              error: ApiError) -> None:
        self._write.condition_check(model, hash_key, range_key, condition=condition)
        self._errors["check"].append(error)

    def put(self, item: Model, *, condition: Condition | None, error: ApiError) -> None:
        self._write.save(item, condition=condition)
        self._errors["put"].append(error)

    def update(self, item: Model, actions: list[Action], *, condition: Condition | None, error: ApiError,
               add_version_condition: bool = True) -> None:
        self._write.update(item, actions, condition=condition, add_version_condition=add_version_condition)
        self._errors["update"].append(error)

    def delete(self, item: Model, *, condition: Condition | None, error: ApiError,
               add_version_condition: bool = True) -> None:
        self._write.delete(item, condition=condition, add_version_condition=add_version_condition)
        self._errors["delete"].append(error)

    def audit(self, entry: AuditEntry) -> None:
        self.put(entry, condition=AuditEntry.put_condition(),
                 error=ConflictError("the audit entry could not be written; retry"))

    def commit(self) -> None:
        """Write everything, or raise the error of the first condition that failed."""
        if len(self) > MAX_ITEMS:
            raise ValueError(f"a transaction holds at most {MAX_ITEMS} items, not {len(self)}")
        try:
            with self._write:
                pass  # leaving the block commits
        except TransactWriteError as failure:
            if failure.cause_response_code != "TransactionCanceledException":
                raise
            errors = [error for kind in _ORDER for error in self._errors[kind]]
            codes = [reason.code if reason is not None else None for reason in failure.cancellation_reasons]
            for error, code in zip(errors, codes, strict=False):
                if code == "ConditionalCheckFailed":
                    raise error from failure
            if "TransactionConflict" in codes:
                raise ConflictError("another change to the same items is in progress; retry") from failure
            raise
