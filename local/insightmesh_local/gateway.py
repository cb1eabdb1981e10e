"""API Gateway, locally: HTTP requests become the Lambda proxy events the template declares.

Routes come from every function's ``HttpApi`` and ``Api`` events. An ``HttpApi`` event gets the
payload format it declares (2.0 by default, or 1.0); an ``Api`` (REST) event gets the REST proxy
format. Route selection follows API Gateway: the most specific route wins (static segments, then
``{param}``, then ``{proxy+}``); an HttpApi event with no Path and Method is the ``$default``
route; with no match, 404, or 405 when the path exists with other methods. A trailing slash does
not change the route (``/console/`` is served by the ``/console`` route, with its raw path kept).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response as WsgiResponse

from insightmesh_local import local_auth
from insightmesh_local.functions import Functions, FunctionSpec, Invocation
from insightmesh_local.template import ACCOUNT_ID, TemplateError

# Content types API Gateway passes as text; every other body is base64-encoded in the event.
_TEXT_TYPES = re.compile(r"^(text/.*|application/(json|.*\+json|xml|.*\+xml|javascript|graphql))(;.*)?$", re.I)


@dataclass(frozen=True)
class Route:
    function: str
    method: str  # upper case, or ANY
    path: str  # /items/{id}, /{proxy+} or $default
    kind: str  # "http" (HttpApi) or "rest" (Api)
    payload_version: str  # "2.0" or "1.0"
    pattern: re.Pattern[str] | None

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    @property
    def specificity(self) -> tuple[int, int, int]:
        segments = [s for s in self.path.split("/") if s]
        static = sum(1 for s in segments if not s.startswith("{"))
        greedy = sum(1 for s in segments if s.endswith("+}"))
        return (-greedy, static, len(segments))


def _compile(path: str) -> re.Pattern[str]:
    regex = ""
    for segment in path.strip("/").split("/"):
        if not segment:
            continue
        if segment.startswith("{") and segment.endswith("+}"):
            regex += f"/(?P<{segment[1:-2]}>.+)"
        elif segment.startswith("{") and segment.endswith("}"):
            regex += f"/(?P<{segment[1:-1]}>[^/]+)"
        else:
            regex += "/" + re.escape(segment)
    return re.compile(f"^{regex or '/'}$")


def routes_from(specs: list[FunctionSpec]) -> list[Route]:
    routes = []
    for spec in specs:
        for event in spec.events.values():
            kind = event.get("Type")
            if kind not in ("HttpApi", "Api"):
                continue
            properties = event.get("Properties") or {}
            path = properties.get("Path")
            method = str(properties.get("Method", "ANY")).upper()
            if kind == "HttpApi" and path is None:
                path, method = "$default", "ANY"
            if not isinstance(path, str):
                raise TemplateError(f"{spec.logical_id}: an {kind} event needs a Path")
            version = str(properties.get("PayloadFormatVersion", "2.0")) if kind == "HttpApi" else "1.0"
            routes.append(Route(spec.logical_id, "ANY" if method == "X-AMAZON-APIGATEWAY-ANY-METHOD" else method,
                                path, "http" if kind == "HttpApi" else "rest", version,
                                None if path == "$default" else _compile(path)))
    return sorted(routes, key=lambda route: route.specificity, reverse=True)


def _match(routes: list[Route], method: str, path: str) -> tuple[Route | None, dict[str, str], set[str]]:
    other_methods: set[str] = set()
    default = None
    trimmed = path.rstrip("/") if len(path) > 1 and path.endswith("/") else None
    for route in routes:
        if route.pattern is None:
            default = route
            continue
        found = route.pattern.match(path) or (route.pattern.match(trimmed) if trimmed else None)
        if not found:
            continue
        if route.method in ("ANY", method):
            return route, found.groupdict(), other_methods
        other_methods.add(route.method)
    if default is not None:
        return default, {}, other_methods
    return None, {}, other_methods


def _body(request: Request) -> tuple[str | None, bool]:
    data = request.get_data(cache=False)
    if not data:
        return None, False
    content_type = request.headers.get("Content-Type", "")
    if _TEXT_TYPES.match(content_type):
        try:
            return data.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(data).decode("ascii"), True


def _request_context_common(request: Request, request_id: str, now: datetime) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT_ID,
        "apiId": "local",
        "domainName": request.host,
        "domainPrefix": request.host.split(".")[0].split(":")[0],
        "requestId": request_id,
        "stage": "$default",
    }


def build_v2_event(request: Request, route: Route, path_parameters: dict[str, str], request_id: str) -> dict[str, Any]:
    """The HTTP API payload format 2.0 event."""
    now = datetime.now(UTC)
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers.items():
        if name.lower() == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(request.query_string.decode(), keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    body, is_base64 = _body(request)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode(),
        "headers": headers,
        "requestContext": {
            **_request_context_common(request, request_id, now),
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": request.remote_addr or "127.0.0.1",
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "routeKey": route.route_key,
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body is not None:
        event["body"] = body
    return event


def build_v1_event(request: Request, route: Route, path_parameters: dict[str, str], request_id: str) -> dict[str, Any]:
    """The REST API proxy event (and HTTP API payload format 1.0, which adds ``version``)."""
    now = datetime.now(UTC)
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        multi_headers.setdefault(name, []).append(value)
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(request.query_string.decode(), keep_blank_values=True):
        multi_query.setdefault(name, []).append(value)
    body, is_base64 = _body(request)
    resource = "$default" if route.path == "$default" else route.path
    event: dict[str, Any] = {
        "resource": resource,
        "path": request.path,
        "httpMethod": request.method,
        "headers": {name: values[-1] for name, values in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            **_request_context_common(request, request_id, now),
            "resourceId": "local",
            "resourcePath": resource,
            "httpMethod": request.method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "path": request.path,
            "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "identity": {"sourceIp": request.remote_addr or "127.0.0.1",
                         "userAgent": request.headers.get("User-Agent", "")},
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }
    if route.kind == "http":
        event["version"] = "1.0"
        event["requestContext"]["stage"] = "$default"
    return event


def _gateway_error(status: int, message: str) -> WsgiResponse:
    return WsgiResponse(json.dumps({"message": message}), status=status, content_type="application/json")


def to_http_response(route: Route, invocation: Invocation) -> WsgiResponse:
    """Lambda's result → the HTTP response API Gateway would send."""
    if not invocation.ok:
        if (invocation.error or {}).get("errorType") == "Sandbox.Timedout":
            return _gateway_error(503, "Service Unavailable")
        return _gateway_error(500, "Internal Server Error")
    result = invocation.result
    if route.payload_version == "2.0" and not (isinstance(result, dict) and "statusCode" in result):
        # Payload 2.0 infers a 200 JSON response from any other return value.
        return WsgiResponse(result if isinstance(result, str) else json.dumps(result), status=200,
                            content_type="application/json")
    if not isinstance(result, dict) or "statusCode" not in result:
        return _gateway_error(502, "Internal server error")
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    response = WsgiResponse(data, status=int(result["statusCode"]))
    response.headers.pop("Content-Type", None)
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for name, values in (result.get("multiValueHeaders") or {}).items():
        response.headers.pop(name, None)
        for value in values:
            response.headers.add(name, str(value))
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response


class Gateway:
    """The WSGI app and its server. ``/_local/...`` is the runtime's own control surface: it answers
    only a loopback ``Host``, no foreign ``Origin`` and the run's ``secret`` (see ``local_auth``).
    The public routes (the API's, which API Gateway would serve) take any ``Host``, so a tunnel
    works; until ``ready`` is set they answer 503, so ``/health`` is 200 only once the whole
    runtime is up."""

    def __init__(self, functions: Functions, *, control: Callable[[Request], WsgiResponse | None] | None = None,
                 log: Callable[[str], None] = print, secret: str | None = None,
                 ready: threading.Event | None = None) -> None:
        if control is not None and not secret:
            raise ValueError("a gateway with a control surface needs the run's secret")
        self.functions = functions
        self.routes = routes_from(list(functions.specs.values()))
        self.control = control
        self.secret = secret or ""
        self.ready = ready
        self.log = log
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        if request.path.startswith("/_local/") and self.control is not None:
            presented = request.headers.get(local_auth.HEADER)
            if request.path.startswith("/_local/cfn-response/"):
                # A custom resource's ResponseURL carries the secret, as CloudFormation's carries
                # its signature: the function answering it sends no header of ours.
                presented = presented or request.args.get("token")
            refused = local_auth.refusal(request.headers.get("Host"), request.headers.get("Origin"), presented,
                                         self.secret)
            if refused is not None:
                self.log(f"gateway {request.method} {request.path} -> {refused[0]} (refused: {refused[1]})")
                return _gateway_error(*refused)(environ, start_response)
            response = self.control(request) or _gateway_error(404, "Not Found")
            return response(environ, start_response)
        if self.ready is not None and not self.ready.is_set():
            starting = _gateway_error(503, "the runtime is starting")
            starting.headers["Retry-After"] = "1"
            return starting(environ, start_response)
        return self.handle(request)(environ, start_response)

    def handle(self, request: Request) -> WsgiResponse:
        started = time.perf_counter()
        route, path_parameters, other_methods = _match(self.routes, request.method.upper(), request.path)
        if route is None:
            status, message = (405, "Method Not Allowed") if other_methods else (404, "Not Found")
            self.log(f"gateway {request.method} {request.path} -> {status} (no route)")
            return _gateway_error(status, message)
        request_id = str(uuid.uuid4())
        build = build_v2_event if route.payload_version == "2.0" else build_v1_event
        event = build(request, route, path_parameters, request_id)
        invocation = self.functions.invoke(route.function, event, trigger=f"http {request.method} {request.path}")
        response = to_http_response(route, invocation)
        response.headers.setdefault("Apigw-Requestid", request_id)
        self.log(f"gateway {request.method} {request.path} -> {response.status_code} "
                 f"({round((time.perf_counter() - started) * 1000, 1)}ms)")
        return response

    def start(self, host: str, port: int) -> None:
        self._server = make_server(host, port, self, threaded=True)
        self._server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="gateway", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
