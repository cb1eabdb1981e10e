"""The contract between the job runner and a job type.

A job type is a class with a ``name``, a pydantic ``Parameters`` model (validated when a job is
created or updated, and again when it runs) and ``run(context) -> JobResult``. The runner gives
it a :class:`JobContext`: the validated parameters, a deadline (``should_stop()``), progress
reporting, a checkpoint that survives the run, a stored credential's access token
(``credential_token()``), ``step()`` to name what it is doing — the step
is recorded with the error when the job raises — and ``warn()``: short warnings ("listed 0 users")
recorded on the run and shown by the API, whatever the run's outcome.

A job type raises to fail the run (the runner records the error type, message, traceback excerpt
and step). It returns ``JobResult(complete=False)`` when it stopped because ``should_stop()``
said so; the runner records ``timed_out`` and keeps the checkpoint, so the next run continues.
A complete result clears the checkpoint.

What every job type's checkpoint shares (:func:`parameters_fingerprint`, :func:`checkpoint_matches`,
:func:`load_counts`): a checkpoint records its format ``version`` and the ``parameters`` fingerprint
it was made with, and is resumed only when both (and the type's own keys) still match; its counters
are dataclasses of ints, read back leniently (a missing counter is 0).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Counts = TypeVar("_Counts", bound="DataclassInstance")
_Parameters = TypeVar("_Parameters", bound="JobParameters")


class JobParameters(BaseModel):
    """Base of every job type's parameters: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class JobResult:
    """What a run did. Counts are of provider records (users, groups, files...)."""

    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    summary: Mapping[str, Any] = field(default_factory=dict)  # JSON-serialisable, shown on the run
    complete: bool = True  # False: stopped at the deadline; the checkpoint holds where


class JobContext(Protocol):
    """What the runner offers a running job (see the module docstring)."""

    @property
    def job_id(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def parameters(self) -> JobParameters: ...

    def step(self, name: str) -> None:
        """Name the current step ("fetch users.list page 3"); recorded if the job fails."""

    def warn(self, message: str) -> None:
        """A short warning for the admin ("listed 0 users"), recorded on the run whatever its outcome."""

    def should_stop(self) -> bool:
        """True when the Lambda deadline is near: save a checkpoint and return incomplete."""

    def progress(self, *, processed: int, succeeded: int, failed: int,
                 summary: Mapping[str, Any] | None = None) -> None:
        """Cumulative counts so far (written to the task run, at most every few seconds)."""

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint an earlier, unfinished run of this job saved, if any."""

    def save_checkpoint(self, data: Mapping[str, Any]) -> None:
        """Persist where the work is (JSON-serialisable); the next run continues from it. An empty
        mapping clears the checkpoint: the next run starts over."""

    def credential_token(self, credential_id: str, *, required_scopes: Sequence[str]) -> str:
        """An access token of the stored credential ``credential_id`` holding ``required_scopes``.
        The runner resolves it through ``insightmesh.credentials``, so a job type needs no import of
        it; its errors (not found, scope missing, expired or revoked) fail the run."""


class JobType(Protocol):
    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    Parameters: ClassVar[type[JobParameters]]

    def run(self, context: JobContext) -> JobResult: ...


def parameters_of(context: JobContext, cls: type[_Parameters]) -> _Parameters:
    """The context's parameters as the job type's own model (validated again if given as another)."""
    given = context.parameters
    return given if isinstance(given, cls) else cls.model_validate(given.model_dump())


# -- checkpoints ------------------------------------------------------------------------------------


def parameters_fingerprint(parameters: JobParameters) -> str:
    """A short digest of the parameters: a checkpoint of other parameters is not resumed."""
    canonical = json.dumps(parameters.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def checkpoint_matches(saved: Mapping[str, Any], *, version: int, fingerprint: str, present: Iterable[str] = (),
                       **expected: Any) -> bool:
    """Whether ``saved`` can be resumed: its ``version`` and ``parameters`` fingerprint are these,
    each key of ``present`` is set, and each of ``expected`` has that value."""
    return (saved.get("version") == version and saved.get("parameters") == fingerprint
            and all(saved.get(key) for key in present)
            and all(saved.get(key) == value for key, value in expected.items()))


def load_counts(cls: type[_Counts], data: Any) -> _Counts:
    """A counters dataclass (int fields) from its checkpointed dict; what is missing counts 0."""
    given = data if isinstance(data, Mapping) else {}
    make: Any = cls  # a dataclass: its fields are its keyword arguments
    counts: _Counts = make(**{item.name: int(given.get(item.name) or 0) for item in fields(cls)})
    return counts
