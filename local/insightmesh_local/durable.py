"""Lambda durable functions under ``insightmesh dev``: the service side, on loopback.

A durable function (``DurableConfig`` in the template) is not called once: the service keeps its
checkpoint log, invokes it with that log (``DurableExecutionInvocationInput``: the execution's ARN,
a checkpoint token, the operations so far), takes its checkpoints (``CheckpointDurableExecution``)
and log reads (``GetDurableExecutionState``), and invokes it again when a wait's timer fires, when
a step's retry is due, after it returned PENDING, or after its invocation failed (a crash). The
SDK's own testing package (``aws-durable-execution-sdk-python-testing``) implements that service:
its ``Executor`` (execution life cycle, timers, re-invocation, retries with back-off), its
``CheckpointProcessor`` (validates and applies checkpoints as the service does), its SQLite
``ExecutionStore`` (the log, on disk under the data dir) and its web handlers for the durable APIs.
This module only wires it to the local runtime:

* ``FunctionsInvoker`` (the package's ``Invoker`` protocol): invokes the function in its worker
  process (``functions.Functions``), one interpreter of its own, so it can be killed. A worker that
  died (or timed out) is a failed invocation, which the executor retries: the new worker replays
  the completed steps from the log and does not run them again.
* ``DurableService``: a WSGI server on 127.0.0.1 that speaks Lambda's REST API for what the
  functions and the launcher call — ``Invoke`` (``POST /2015-03-31/functions/{name}/invocations``;
  on a durable function with ``X-Amz-Durable-Execution-Name`` it starts, idempotently, an
  execution) and the durable APIs (``/2025-12-01/durable-executions/...``, served by the testing
  package's handlers). The functions reach it through ``AWS_ENDPOINT_URL_LAMBDA``. The package's
  own server is not used: it has test-only routes (``/start-durable-execution``, one that points
  invocations at another endpoint) and no way to refuse a browser.

Who may call it: a loopback ``Host``, no ``Origin`` (a web page's request always has one, and a
POST with a custom header needs a CORS preflight, which has one too), and the run's secret, in
``X-InsightMesh-Local-Token`` or as the AWS session token (``X-Amz-Security-Token``, which boto3
sends: the functions get the secret as ``AWS_SESSION_TOKEN``; the emulator ignores it).

Tests kill a durable function's worker mid-run with ``POST /_local/durable/kill`` and read an
execution's state with ``GET /_local/durable/executions[/<name or arn>]`` (``runtime.control``).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from aws_durable_execution_sdk_python.execution import DurableExecutionInvocationInput
from aws_durable_execution_sdk_python_testing.checkpoint.processor import CheckpointProcessor
from aws_durable_execution_sdk_python_testing.exceptions import (
    AwsApiException,
    DurableFunctionsTestError,
    ResourceNotFoundException,
    UnknownRouteError,
)
from aws_durable_execution_sdk_python_testing.executor import Executor
from aws_durable_execution_sdk_python_testing.invoker import InvokeResponse, LambdaInvoker
from aws_durable_execution_sdk_python_testing.model import StartDurableExecutionInput
from aws_durable_execution_sdk_python_testing.scheduler import Scheduler
from aws_durable_execution_sdk_python_testing.stores.base import ExecutionStore
from aws_durable_execution_sdk_python_testing.stores.memory import InMemoryExecutionStore
from aws_durable_execution_sdk_python_testing.stores.sqlite import SQLiteExecutionStore
from aws_durable_execution_sdk_python_testing.web import handlers as web_handlers
from aws_durable_execution_sdk_python_testing.web import routes as web_routes
from aws_durable_execution_sdk_python_testing.web.models import HTTPRequest, HTTPResponse
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response as WsgiResponse

from insightmesh_local import local_auth
from insightmesh_local.functions import FunctionNotFound, Functions, FunctionSpec
from insightmesh_local.template import ACCOUNT_ID, Template, merge_globals

SESSION_TOKEN_HEADER = "X-Amz-Security-Token"  # noqa: S105 - a header name
# A failed invocation (the worker died or timed out) is retried after this long; Lambda retries a
# durable function's failed invocation with back-off too. The package's default is 5 s.
RETRY_BACKOFF_SECONDS = 1
STATE_FILE = "executions.db"

# The durable APIs the functions and the launcher use, and the handlers that serve them (the
# testing package's). Its test-only routes are left out on purpose (see the module docstring).
_API_HANDLERS: dict[type[web_routes.Route], type[web_handlers.EndpointHandler]] = {
    web_routes.GetDurableExecutionRoute: web_handlers.GetDurableExecutionHandler,
    web_routes.CheckpointDurableExecutionRoute: web_handlers.CheckpointDurableExecutionHandler,
    web_routes.StopDurableExecutionRoute: web_handlers.StopDurableExecutionHandler,
    web_routes.GetDurableExecutionStateRoute: web_handlers.GetDurableExecutionStateHandler,
    web_routes.GetDurableExecutionHistoryRoute: web_handlers.GetDurableExecutionHistoryHandler,
    web_routes.ListDurableExecutionsByFunctionRoute: web_handlers.ListDurableExecutionsByFunctionHandler,
    web_routes.CallbackSuccessRoute: web_handlers.SendDurableExecutionCallbackSuccessHandler,
    web_routes.CallbackFailureRoute: web_handlers.SendDurableExecutionCallbackFailureHandler,
    web_routes.CallbackHeartbeatRoute: web_handlers.SendDurableExecutionCallbackHeartbeatHandler,
}


@dataclass(frozen=True)
class DurableFunction:
    """A function of the template with ``DurableConfig``."""

    logical_id: str
    name: str
    execution_timeout: int
    retention_days: int
    invocation_timeout: float


def durable_functions(template: Template, specs: Iterable[FunctionSpec]) -> dict[str, DurableFunction]:
    """The template's durable functions by physical name (``DurableConfig`` after Globals)."""
    found: dict[str, DurableFunction] = {}
    for spec in specs:
        resource = template.resources.get(spec.logical_id) or {}
        properties = merge_globals(template.function_globals, resource.get("Properties") or {})
        config = properties.get("DurableConfig")
        if not isinstance(config, dict):
            continue
        found[spec.name] = DurableFunction(
            logical_id=spec.logical_id,
            name=spec.name,
            execution_timeout=int(config.get("ExecutionTimeout", 900)),
            retention_days=int(config.get("RetentionPeriodInDays", 14)),
            invocation_timeout=spec.timeout,
        )
    return found


def split_function_name(identifier: str) -> tuple[str, str | None]:
    """``name``, ``name:qualifier``, ``arn:aws:lambda:region:account:function:name[:qualifier]`` or
    ``account:function:name[:qualifier]`` → (name, qualifier or None)."""
    parts = identifier.split(":")
    if "function" in parts:
        rest = parts[parts.index("function") + 1:]
        return rest[0], (rest[1] if len(rest) > 1 and rest[1] else None)
    if len(parts) == 2 and parts[1]:
        return parts[0], parts[1]
    return parts[0], None


class FunctionsInvoker(LambdaInvoker):
    """The testing package's invoker contract, invoking the function in its local worker process.
    ``create_invocation_input`` (the log, paginated, and a fresh checkpoint token) is the
    package's own; only the transport differs."""

    def __init__(self, functions: Functions, *, log: Callable[[str], None]) -> None:
        super().__init__(lambda_client=None)
        self._functions = functions
        self._log = log

    def invoke(self, function_name: str, input: DurableExecutionInvocationInput,
               endpoint_url: str | None = None, tenant_id: str | None = None, account_id: str | None = None,
               region_name: str | None = None) -> InvokeResponse:
        name, _qualifier = split_function_name(function_name)
        try:
            invocation = self._functions.invoke(name, input.to_json_dict(), trigger="durable execution")
        except FunctionNotFound as error:
            raise ResourceNotFoundException(f"Function not found: {function_name}") from error
        if not invocation.ok:
            # Lambda's answer to a crashed or timed-out invocation: the service invokes again.
            failure = invocation.error or {}
            raise DurableFunctionsTestError(f"{failure.get('errorType', 'Error')}: {failure.get('errorMessage', '')}")
        return InvokeResponse.from_output(invocation.result, invocation.request_id)


def _error(status: int, code: str, message: str) -> WsgiResponse:
    """Lambda's REST-JSON error: the code in ``X-Amzn-ErrorType`` and the body (botocore reads either)."""
    body = {"Type": "User", "message": message, "__type": code}
    return WsgiResponse(json.dumps(body), status=status, content_type="application/json",
                        headers={"X-Amzn-ErrorType": code})


class DurableService:
    """The durable execution service of one ``insightmesh dev`` run (see the module docstring)."""

    def __init__(self, functions: Functions, durable: dict[str, DurableFunction], *, secret: str,
                 state_dir: Path | None, region: str, log: Callable[[str], None]) -> None:
        self.functions = functions
        self.durable = durable
        self.secret = secret
        self.region = region
        self.log = log
        self.state_path: Path | None = None
        store: ExecutionStore
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
            self.state_path = state_dir / STATE_FILE
            store = SQLiteExecutionStore.create_and_initialize(self.state_path)
        else:
            store = InMemoryExecutionStore()
        self.store = store
        self.scheduler = Scheduler()
        processor = CheckpointProcessor(store, self.scheduler)
        longest = max((f.invocation_timeout for f in durable.values()), default=900.0)
        self.executor = Executor(
            store=store, scheduler=self.scheduler, invoker=FunctionsInvoker(functions, log=log),
            checkpoint_processor=processor, invocation_timeout_seconds=int(longest) + 30, region=region,
        )
        self.executor.RETRY_BACKOFF_SECONDS = RETRY_BACKOFF_SECONDS
        processor.add_execution_observer(self.executor)
        processor.set_chained_invoke_preflight(self.executor.preflight_chained_invoke)
        self.router = web_routes.Router()
        self.handlers = {route: handler(self.executor) for route, handler in _API_HANDLERS.items()}
        self._start_lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> None:
        self.scheduler.start()  # type: ignore[no-untyped-call]  # the package's scheduler is untyped
        self._server = make_server("127.0.0.1", 0, self, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="durable-service", daemon=True)
        self._thread.start()
        resumed = self.resume()
        kept = f"checkpoint log in {self.state_path}" if self.state_path else "checkpoint log in memory"
        self.log(f"durable functions service on {self.url} ({kept}"
                 + (f"; resumed {resumed} execution(s))" if resumed else ")"))

    def resume(self) -> int:
        """Executions still running when the previous ``insightmesh dev`` stopped go on from their
        log (Lambda's service would have kept them going)."""
        count = 0
        for execution in self.store.list_all():
            if execution.is_complete or split_function_name(execution.start_input.function_name)[0] not in self.durable:
                continue
            # The package has no public "resume after restart"; launching re-arms the execution's
            # timeout and schedules an invocation, which replays the log.
            self.executor._launch_execution(execution, execution.start_input.execution_timeout_seconds)
            count += 1
        return count

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.executor.shutdown()
        self.scheduler.stop()  # type: ignore[no-untyped-call]
        # The package's scheduler stops its event loop but never closes it; closed here, rather than
        # by the garbage collector at exit, which reports an "Exception ignored" traceback.
        self.scheduler._loop.close()

    def environment(self) -> dict[str, str]:
        """What every function needs to reach this service with boto3 (botocore reads the token
        from AWS_SECURITY_TOKEN before AWS_SESSION_TOKEN: both carry it)."""
        return {"AWS_ENDPOINT_URL_LAMBDA": self.url, "AWS_SESSION_TOKEN": self.secret,
                "AWS_SECURITY_TOKEN": self.secret}

    # -- starting an execution ----------------------------------------------------------------------
    def start_execution(self, function: DurableFunction, qualifier: str | None, name: str,
                        payload: str) -> str:
        """Start an execution named ``name`` unless one exists: the same name and payload is the same
        execution (its ARN is answered); another payload under a taken name is a conflict."""
        with self._start_lock:
            existing, _ = self.store.query(function_name=function.name, execution_name=name)
            for execution in existing:
                if (execution.start_input.input or "") == payload:
                    return execution.durable_execution_arn
                raise _Conflict(f"Execution {name} of {function.name} already started with another payload")
            start = StartDurableExecutionInput(
                account_id=ACCOUNT_ID, function_name=function.name, function_qualifier=qualifier or "$LATEST",
                execution_name=name, execution_timeout_seconds=function.execution_timeout,
                execution_retention_period_days=function.retention_days, input=payload,
            )
            arn = self.executor.start_execution(start).execution_arn
        self.log(f"{function.logical_id} durable execution {name} started")
        return str(arn)

    # -- the HTTP API --------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        presented = request.headers.get(local_auth.HEADER) or request.headers.get(SESSION_TOKEN_HEADER)
        refused = local_auth.refusal(request.headers.get("Host"), request.headers.get("Origin"), presented,
                                     self.secret)
        if refused is not None:
            response = _error(refused[0], "AccessDeniedException", refused[1])
        else:
            response = self.handle(request, str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.path))
        return response(environ, start_response)

    def handle(self, request: Request, raw_uri: str) -> WsgiResponse:
        raw_path = raw_uri.split("?", 1)[0]
        segments = [unquote(part) for part in raw_path.strip("/").split("/")]
        if len(segments) == 4 and segments[:2] == ["2015-03-31", "functions"] and segments[3] == "invocations" \
                and request.method == "POST":
            return self.invoke(request, segments[2])
        try:
            route = self.router.find_route(raw_path, request.method)
        except UnknownRouteError:
            return _error(404, "UnknownOperationException", f"{request.method} {raw_path} is not served here")
        handler = self.handlers.get(type(route))
        if handler is None:
            return _error(404, "UnknownOperationException", f"{request.method} {raw_path} is not served here")
        query = parse_qs(request.query_string.decode(), keep_blank_values=True)
        body = request.get_data()
        try:
            if isinstance(route, web_routes.BytesPayloadRoute):
                http_request = HTTPRequest.from_raw_bytes(body_bytes=body, method=request.method, path=route,
                                                          headers=dict(request.headers), query_params=query)
            else:
                http_request = HTTPRequest.from_bytes(body_bytes=body, operation_name=None, method=request.method,
                                                      path=route, headers=dict(request.headers), query_params=query)
            answer: HTTPResponse = handler.handle(route, http_request)
        except AwsApiException as error:
            answer = HTTPResponse.create_error_from_exception(error)
        return WsgiResponse(answer.body_to_bytes() if answer.body else b"", status=answer.status_code,
                            headers=answer.headers)

    def invoke(self, request: Request, identifier: str) -> WsgiResponse:
        name, qualifier = split_function_name(identifier)
        qualifier = request.args.get("Qualifier") or qualifier
        try:
            spec = self.functions.find(name)
        except FunctionNotFound:
            return _error(404, "ResourceNotFoundException", f"Function not found: {identifier}")
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        payload = request.get_data().decode() or "{}"
        function = self.durable.get(spec.name)
        if function is not None:
            execution_name = request.headers.get("X-Amz-Durable-Execution-Name") or str(uuid.uuid4())
            try:
                arn = self.start_execution(function, qualifier, execution_name, payload)
            except _Conflict as error:
                return _error(409, "DurableExecutionAlreadyStartedException", str(error))
            headers = {"X-Amz-Durable-Execution-Arn": arn, "X-Amz-Executed-Version": qualifier or "$LATEST"}
            if invocation_type == "Event":
                return WsgiResponse(b"", status=202, headers=headers)
            if invocation_type == "DryRun":
                return WsgiResponse(b"", status=204, headers=headers)
            self.executor.wait_until_complete(arn, timeout=900)
            details = self.executor.get_execution_details(arn)
            return WsgiResponse((details.result or "null").encode(), status=200, headers=headers,
                                content_type="application/json")
        try:
            event = json.loads(payload)
        except json.JSONDecodeError:
            return _error(400, "InvalidRequestContentException", "Could not parse request body into json")
        if invocation_type == "Event":
            self.functions.invoke_async(spec.logical_id, event, trigger="invoke (Event)")
            return WsgiResponse(b"", status=202)
        if invocation_type == "DryRun":
            return WsgiResponse(b"", status=204)
        invocation = self.functions.invoke(spec.logical_id, event, trigger="invoke")
        if invocation.ok:
            return WsgiResponse(json.dumps(invocation.result, default=str), status=200,
                                headers={"X-Amz-Executed-Version": "$LATEST"}, content_type="application/json")
        return WsgiResponse(json.dumps(invocation.error), status=200, content_type="application/json",
                            headers={"X-Amz-Function-Error": "Unhandled", "X-Amz-Executed-Version": "$LATEST"})

    # -- the local control surface: /_local/durable/... ---------------------------------------------
    def describe(self, execution_arn: str, *, operations: bool) -> dict[str, Any]:
        execution = self.store.load(execution_arn)
        details = self.executor.get_execution_details(execution_arn).to_dict()
        described: dict[str, Any] = {
            "arn": execution_arn,
            "name": execution.start_input.execution_name,
            "function": execution.start_input.function_name,
            "status": details.get("Status"),
            "started": details.get("StartTimestamp"),
            "ended": details.get("EndTimestamp"),
            "invocations": len(execution.invocation_completions),
            "operation_count": len(execution.operations),
        }
        if details.get("Result") is not None:
            described["result"] = details["Result"]
        if details.get("Error") is not None:
            described["error"] = details["Error"]
        if operations:
            described["operations"] = [_operation(op.to_json_dict()) for op in execution.operations]
        return described

    def find(self, key: str) -> str | None:
        """An execution's ARN from its ARN or its name."""
        for execution in self.store.list_all():
            if key in (execution.durable_execution_arn, execution.start_input.execution_name):
                return execution.durable_execution_arn
        return None

    def control(self, method: str, parts: list[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``GET executions``, ``GET executions/<name or arn>``, ``POST kill`` (body: optional
        ``function``, a logical id or name; default every durable function)."""
        if parts == ["executions"] and method == "GET":
            executions = [self.describe(e.durable_execution_arn, operations=False) for e in self.store.list_all()]
            return 200, {"executions": sorted(executions, key=lambda e: str(e["started"]))}
        if len(parts) >= 2 and parts[0] == "executions" and method == "GET":
            arn = self.find("/".join(parts[1:]))
            if arn is None:
                return 404, {"message": f"no durable execution {'/'.join(parts[1:])!r}"}
            return 200, self.describe(arn, operations=True)
        if parts == ["kill"] and method == "POST":
            wanted = body.get("function")
            names = [f.logical_id for f in self.durable.values()
                     if wanted in (None, f.logical_id, f.name)]
            if not names:
                return 404, {"message": f"no durable function {wanted!r}"}
            killed = {name: self.functions.kill_workers(name) for name in names}
            for name, pids in killed.items():
                if pids:
                    self.log(f"{name}: killed worker(s) {', '.join(map(str, pids))} (POST /_local/durable/kill)")
            return 200, {"killed": killed}
        return 404, {"message": "unknown durable control endpoint"}


class _Conflict(Exception):
    pass


def _operation(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One checkpointed operation, as the control surface shows it."""
    shown = {key: raw.get(key) for key in ("Id", "ParentId", "Name", "Type", "SubType", "Status") if raw.get(key)}
    for details in ("StepDetails", "WaitDetails", "ContextDetails", "CallbackDetails", "ChainedInvokeDetails"):
        if raw.get(details):
            shown[details] = raw[details]
    return shown


__all__ = ["DurableFunction", "DurableService", "FunctionsInvoker", "durable_functions", "split_function_name"]
