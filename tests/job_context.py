"""A JobContext for testing job types without the runner: it records what the job tells the runner
(steps, progress, checkpoints) and stops when the test says so. The runner itself is tested in
tests/integration/test_job_runner.py."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from insightmesh.job_contract import JobResult


class RecordingContext:
    def __init__(self, job_type: Any, parameters: Mapping[str, Any], *, job_id: str = "job-1",
                 checkpoint: Mapping[str, Any] | None = None,
                 stop_when: Callable[[Any], bool] | None = None) -> None:
        self.job_id = job_id
        self.run_id = uuid.uuid4().hex
        self.parameters = job_type.Parameters.model_validate(dict(parameters))
        self.steps: list[str] = []
        self.warnings: list[str] = []
        self.reports: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.saved = copy.deepcopy(dict(checkpoint)) if checkpoint is not None else None
        self.stop_when = stop_when
        self.stop_checks = 0

    def step(self, name: str) -> None:
        self.steps.append(name)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def should_stop(self) -> bool:
        self.stop_checks += 1
        return self.stop_when is not None and self.stop_when(self)

    def progress(self, *, processed: int, succeeded: int, failed: int,
                 summary: Mapping[str, Any] | None = None) -> None:
        self.reports.append({"processed": processed, "succeeded": succeeded, "failed": failed,
                             "summary": json.loads(json.dumps(dict(summary or {})))})

    def load_checkpoint(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.saved)

    def save_checkpoint(self, data: Mapping[str, Any]) -> None:
        value = json.loads(json.dumps(dict(data)))  # JSON-serialisable, as the runner requires
        self.checkpoints.append(value)
        self.saved = value

    def credential_token(self, credential_id: str, *, required_scopes: Sequence[str]) -> str:
        """As the runner does: the stored credential's token, through insightmesh.credentials."""
        from insightmesh.credentials.service import google_access_token

        return google_access_token(credential_id, required_scopes=tuple(required_scopes))


def run(job: Any, context: RecordingContext) -> JobResult:
    """``job.run(context)`` as the runner would: the summary must be JSON, and a complete run's
    checkpoint is cleared."""
    result: JobResult = job.run(context)
    json.dumps(dict(result.summary))  # the runner stores it as JSON
    if result.complete:
        context.saved = None
    return result
