"""Starting and stopping a research run's durable execution (Lambda durable functions).

A run is one durable execution of the research function, named by the run id: Lambda's Invoke
with ``DurableExecutionName`` is idempotent per name (the same name and payload while the
execution exists answers with that execution rather than starting a second one), so a redelivered
SQS message or a retried start never runs a study twice. The invoke is asynchronous
(``InvocationType=Event``): Lambda queues it and answers 202 at once, so the conversation worker
that starts a run is not held for its minutes. Durable functions must be invoked by a qualified
name (a version or alias): ``RESEARCH_FUNCTION_NAME`` is ``<function>:<alias>`` (the template
publishes the alias ``live``); locally, ``insightmesh dev`` serves Invoke and the durable APIs on a
loopback endpoint that the functions reach through ``AWS_ENDPOINT_URL_LAMBDA``.

``stop_execution`` is Lambda's ``StopDurableExecution``; it needs the execution's ARN, which a
``ListDurableExecutionsByFunction`` filtered by the name finds (one call, only when stopping).
The workflow's own cancel (``cancel_requested`` checked at every step boundary) is the graceful
way; stopping is the hard one, for a run that no longer answers.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from insightmesh import aws, tracing
from insightmesh.resilience import Timeouts

FUNCTION_ENV = "RESEARCH_FUNCTION_NAME"
# Lambda's DurableExecutionName: 1-64 of [a-zA-Z0-9-_].
_EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Invoke (Event) and the durable APIs answer quickly; a start that cannot reach Lambda fails fast.
_TIMEOUTS = Timeouts(connect=2, read=10)


class LaunchError(RuntimeError):
    """A research run's execution could not be started or stopped; the message says why."""


def _function_name() -> str:
    name = os.environ.get(FUNCTION_ENV, "").strip()
    if not name:
        raise LaunchError(f"{FUNCTION_ENV} is not set: the research function is not configured")
    return name


def _execution_name(run_id: str) -> str:
    if not _EXECUTION_NAME.match(run_id):
        raise LaunchError(f"run id {run_id!r} cannot name a durable execution (1-64 of A-Z a-z 0-9 - _)")
    return run_id


def _lambda() -> Any:
    # One reused client per process (insightmesh.aws caches it), three attempts in all.
    return aws.client("lambda", timeouts=_TIMEOUTS, attempts=3)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def start_execution(run_id: str) -> None:
    """Start the research run ``run_id`` (the workflow reads the run from its table by this id).
    Idempotent: starting a run already started is not an error."""
    name = _execution_name(run_id)
    function = _function_name()
    try:
        with tracing.span("start research", kind="producer", attributes={"insightmesh.research.run_id": run_id}):
            _lambda().invoke(
                FunctionName=function,
                InvocationType="Event",
                DurableExecutionName=name,
                # With the trace context (traceparent): the workflow's spans continue this trace.
                Payload=json.dumps(tracing.inject({"run_id": run_id})).encode(),
            )
    except ClientError as error:
        if _error_code(error) == "DurableExecutionAlreadyStartedException":
            return  # the name is taken by this run's own execution: the start already happened
        raise LaunchError(f"could not start research run {run_id}: {_error_code(error) or error}") from error
    except BotoCoreError as error:
        raise LaunchError(f"could not start research run {run_id}: {error}") from error


def _execution_arn(function: str, name: str) -> str | None:
    base, _, qualifier = function.partition(":") if not function.startswith("arn:") else (function, "", "")
    request: dict[str, Any] = {"FunctionName": base, "DurableExecutionName": name, "MaxItems": 10}
    if qualifier:
        request["Qualifier"] = qualifier
    page = _lambda().list_durable_executions_by_function(**request)
    for execution in page.get("DurableExecutions") or []:
        if execution.get("DurableExecutionName") == name and execution.get("Status") == "RUNNING":
            return str(execution["DurableExecutionArn"])
    return None


def stop_execution(run_id: str) -> None:
    """Stop run ``run_id``'s execution now (Lambda's StopDurableExecution); nothing to do when it
    is not running any more."""
    name = _execution_name(run_id)
    function = _function_name()
    try:
        arn = _execution_arn(function, name)
        if arn is None:
            return
        _lambda().stop_durable_execution(
            DurableExecutionArn=arn,
            Error={"ErrorType": "Stopped", "ErrorMessage": f"research run {run_id} was stopped"},
        )
    except ClientError as error:
        if _error_code(error) == "ResourceNotFoundException":
            return
        raise LaunchError(f"could not stop research run {run_id}: {_error_code(error) or error}") from error
    except BotoCoreError as error:
        raise LaunchError(f"could not stop research run {run_id}: {error}") from error


__all__ = ["FUNCTION_ENV", "LaunchError", "start_execution", "stop_execution"]
