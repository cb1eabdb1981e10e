"""The contract between the job runner and a job type.

A job type is a class with a ``name``, a pydantic ``Parameters`` model (validated when a job is
created or updated, and again when it runs) and ``run(context) -> JobResult``. The runner gives
it a :class:`JobContext`: the validated parameters, a deadline (``should_stop()``), progress
reporting, a checkpoint that survives the run, and ``step()`` to name what it is doing — the step
is recorded with the error when the job raises.

A job type raises to fail the run (the runner records the error type, message, traceback excerpt
and step). It returns ``JobResult(complete=False)`` when it stopped because ``should_stop()``
said so; the runner records ``timed_out`` and keeps the checkpoint, so the next run continues.
A complete result clears the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict


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

    def should_stop(self) -> bool:
        """True when the Lambda deadline is near: save a checkpoint and return incomplete."""

    def progress(self, *, processed: int, succeeded: int, failed: int,
                 summary: Mapping[str, Any] | None = None) -> None:
        """Cumulative counts so far (written to the task run, at most every few seconds)."""

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint an earlier, unfinished run of this job saved, if any."""

    def save_checkpoint(self, data: Mapping[str, Any]) -> None:
        """Persist where the work is (JSON-serialisable); the next run continues from it."""


class JobType(Protocol):
    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    Parameters: ClassVar[type[JobParameters]]

    def run(self, context: JobContext) -> JobResult: ...
