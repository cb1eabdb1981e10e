"""The resolver factory: error envelope, size limit, security headers, CORS, OpenAPI (insightmesh.api)."""

from __future__ import annotations

import base64
import io
import json
from typing import Annotated, Any

import pytest
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, Field

from insightmesh.api import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    InsightMeshResolver,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
    UnauthorizedError,
    create_app,
)
from insightmesh.api.app import HSTS
from insightmesh.config import Settings, load_settings

OPENAPI_PATH = "/openapi.json"
SECRET_IN_ERROR = "database password is hunter2"


class NewItem(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    quantity: int = Field(ge=1)


class FakeLambdaContext:
    function_name = "test-function"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    memory_limit_in_mb = 256
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name = "/aws/lambda/test-function"
    log_stream_name = "2024/01/01/[$LATEST]abcdef"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def http_event(
    method: str,
    path: str,
    *,
    body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    base64_body: bool = False,
    request_id: str = "JKJaXmPLvHcESHA=",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event, as Lambda receives it."""
    encoded: str | None
    if body is None:
        encoded = None
    elif base64_body:
        raw = body if isinstance(body, bytes) else body.encode()
        encoded = base64.b64encode(raw).decode()
    else:
        encoded = body if isinstance(body, str) else body.decode()
    all_headers = {
        "accept": "application/json",
        "content-length": str(len(encoded or "")),
        "host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "user-agent": "pytest",
        "x-forwarded-for": "192.0.2.10",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if body is not None:
        all_headers["content-type"] = "application/json"
    all_headers.update(headers or {})
    raw_query = "&".join(f"{key}={value}" for key, value in (query or {}).items())
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.10",
                "userAgent": "pytest",
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": "21/Oct/2025:07:28:00 +0000",
            "timeEpoch": 1761031680000,
        },
        "isBase64Encoded": base64_body,
    }
    if query:
        event["queryStringParameters"] = query
    if encoded is not None:
        event["body"] = encoded
    return event


def build_app(settings: Settings) -> InsightMeshResolver:
    app = create_app("test-api", settings=settings, openapi_path=OPENAPI_PATH)

    @app.get("/items/<item_id>")
    def get_item(item_id: str) -> dict[str, str]:
        if item_id == "missing":
            raise NotFoundError(f"item {item_id!r} does not exist")
        return {"id": item_id}

    @app.delete("/items/<item_id>")
    def delete_item(item_id: str) -> Response[str]:
        return Response(status_code=204, content_type=content_types.TEXT_PLAIN, body="")

    @app.post("/items")
    def create_item(item: NewItem) -> dict[str, Any]:
        return {"name": item.name, "quantity": item.quantity}

    @app.get("/search")
    def search(limit: Annotated[int, Query(ge=1, le=100)] = 50) -> dict[str, int]:
        return {"limit": limit}

    @app.post("/echo")
    def echo() -> dict[str, int]:
        return {"bytes": len(app.current_event.decoded_body or "")}

    @app.post("/conflict")
    def conflict() -> None:
        raise ConflictError("an item with that name already exists")

    @app.get("/bad")
    def bad() -> None:
        raise BadRequestError("the cursor is not valid")

    @app.get("/unauthorized")
    def unauthorized() -> None:
        raise UnauthorizedError()

    @app.get("/forbidden")
    def forbidden() -> None:
        raise ForbiddenError("you may not use the meddic agent")

    @app.get("/limited")
    def limited() -> None:
        raise RateLimitedError("slow down", headers={"Retry-After": "17"})

    @app.get("/unavailable")
    def unavailable() -> None:
        raise ServiceUnavailableError("the knowledge base is syncing")

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(SECRET_IN_ERROR)

    return app


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MAX_REQUEST_BYTES", "2048")
    return load_settings(Settings)


@pytest.fixture
def app(settings: Settings) -> InsightMeshResolver:
    return build_app(settings)


@pytest.fixture
def production_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", "p" * 40)
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://admin.example.com")
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    return load_settings(Settings)


def call(app: InsightMeshResolver, event: dict[str, Any]) -> dict[str, Any]:
    return app.resolve(event, FakeLambdaContext())  # type: ignore[arg-type]


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def headers_of(response: dict[str, Any]) -> dict[str, str]:
    return {name.lower(): value for name, value in (response.get("headers") or {}).items()}


def assert_envelope(response: dict[str, Any], status: int, code: str, request_id: str) -> dict[str, Any]:
    assert response["statusCode"] == status
    assert headers_of(response)["content-type"].startswith("application/json")
    envelope = body_of(response)
    assert set(envelope) == {"error"}
    error = envelope["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["request_id"] == request_id
    return error


# -- success paths ------------------------------------------------------------------------------


def test_a_route_with_a_path_parameter_answers(app: InsightMeshResolver) -> None:
    response = call(app, http_event("GET", "/items/abc-123"))
    assert response["statusCode"] == 200
    assert body_of(response) == {"id": "abc-123"}


def test_a_valid_body_reaches_the_route(app: InsightMeshResolver) -> None:
    response = call(app, http_event("POST", "/items", body=json.dumps({"name": "widget", "quantity": 2})))
    assert response["statusCode"] == 200
    assert body_of(response) == {"name": "widget", "quantity": 2}


def test_a_valid_query_parameter_is_converted(app: InsightMeshResolver) -> None:
    response = call(app, http_event("GET", "/search", query={"limit": "20"}))
    assert body_of(response) == {"limit": 20}


# -- the error envelope -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "message"),
    [
        ("GET", "/bad", 400, "bad_request", "the cursor is not valid"),
        ("GET", "/unauthorized", 401, "unauthorized", "Unauthorized"),
        ("GET", "/forbidden", 403, "forbidden", "you may not use the meddic agent"),
        ("GET", "/items/missing", 404, "not_found", "item 'missing' does not exist"),
        ("POST", "/conflict", 409, "conflict", "an item with that name already exists"),
        ("GET", "/unavailable", 503, "service_unavailable", "the knowledge base is syncing"),
    ],
)
def test_domain_errors_become_the_error_envelope(
    app: InsightMeshResolver, method: str, path: str, status: int, code: str, message: str
) -> None:
    response = call(app, http_event(method, path, headers={"x-request-id": "req-1"}))
    error = assert_envelope(response, status, code, "req-1")
    assert error["message"] == message
    assert "details" not in error


def test_an_unknown_path_is_a_404_envelope(app: InsightMeshResolver) -> None:
    response = call(app, http_event("GET", "/nope", headers={"x-request-id": "req-404"}))
    error = assert_envelope(response, 404, "not_found", "req-404")
    assert error["message"] == "no route for GET /nope"


def test_a_known_path_with_another_method_is_a_405_with_allow(app: InsightMeshResolver) -> None:
    response = call(app, http_event("PUT", "/items/abc", body="{}", headers={"x-request-id": "req-405"}))

    error = assert_envelope(response, 405, "method_not_allowed", "req-405")
    assert error["message"] == "PUT is not allowed on /items/abc"
    assert headers_of(response)["allow"] == "DELETE, GET"


def test_a_static_path_with_another_method_is_a_405(app: InsightMeshResolver) -> None:
    response = call(app, http_event("GET", "/conflict", headers={"x-request-id": "req-405"}))
    assert_envelope(response, 405, "method_not_allowed", "req-405")
    assert headers_of(response)["allow"] == "POST"


def test_a_rate_limited_error_keeps_its_retry_after(app: InsightMeshResolver) -> None:
    response = call(app, http_event("GET", "/limited", headers={"x-request-id": "req-429"}))
    assert_envelope(response, 429, "rate_limited", "req-429")
    assert headers_of(response)["retry-after"] == "17"


def test_an_invalid_body_is_a_422_with_details(app: InsightMeshResolver) -> None:
    event = http_event("POST", "/items", body=json.dumps({"name": "", "quantity": 0}),
                       headers={"x-request-id": "req-422"})
    response = call(app, event)

    error = assert_envelope(response, 422, "validation_error", "req-422")
    # The message names the first problem by its field, and says there are more.
    assert error["message"].startswith("the request is not valid: name: ")
    assert error["message"].endswith("(and 1 more problem)")
    locations = {tuple(detail["loc"]) for detail in error["details"]}
    assert ("body", "name") in locations
    assert ("body", "quantity") in locations
    assert all(detail["msg"] and detail["type"] for detail in error["details"])


def test_a_validators_own_message_is_the_422s_message(app: InsightMeshResolver) -> None:
    from insightmesh.api.app import validation_summary

    details = [{"loc": ["body", "schedule", "expression"], "type": "value_error",
                "msg": "Value error, at(2020-01-01T00:00:00) is in the past"}]
    assert validation_summary(details) == (
        "the request is not valid: schedule.expression: at(2020-01-01T00:00:00) is in the past")
    assert validation_summary([{"loc": ["body"], "msg": "Field required", "type": "missing"}]) == (
        "the request is not valid: body: Field required")
    assert validation_summary([]) == "the request is not valid"


def test_a_missing_body_field_is_a_422(app: InsightMeshResolver) -> None:
    response = call(app, http_event("POST", "/items", body=json.dumps({"name": "widget"})))
    error = assert_envelope(response, 422, "validation_error", "JKJaXmPLvHcESHA")  # API Gateway's id, cleaned
    assert {tuple(detail["loc"]) for detail in error["details"]} == {("body", "quantity")}


def test_a_body_that_is_not_json_is_a_422(app: InsightMeshResolver) -> None:
    response = call(app, http_event("POST", "/items", body="{not json", headers={"x-request-id": "r"}))
    assert_envelope(response, 422, "validation_error", "r")


def test_an_invalid_query_parameter_is_a_422(app: InsightMeshResolver) -> None:
    response = call(app, http_event("GET", "/search", query={"limit": "1000"}, headers={"x-request-id": "r"}))
    error = assert_envelope(response, 422, "validation_error", "r")
    assert [detail["loc"] for detail in error["details"]] == [["query", "limit"]]


def test_an_unexpected_error_is_a_500_that_leaks_nothing(app: InsightMeshResolver) -> None:
    stream = io.StringIO()
    previous = app.logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        response = call(app, http_event("GET", "/boom", headers={"x-request-id": "req-500"}))
    finally:
        app.logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]

    error = assert_envelope(response, 500, "internal_error", "req-500")
    assert error["message"] == "an internal error occurred"
    assert "hunter2" not in response["body"]
    assert "RuntimeError" not in response["body"]
    assert "Traceback" not in response["body"]
    # ...but it is logged once, with its correlation id and type, for whoever investigates.
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (logged,) = [line for line in lines if line["message"] == "unhandled error"]
    assert logged["level"] == "ERROR"
    assert logged["correlation_id"] == "req-500"
    assert logged["error_type"] == "RuntimeError"


# -- request ids --------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["x-request-id", "X-Request-Id"])
def test_the_request_id_sent_is_echoed(app: InsightMeshResolver, header: str) -> None:
    response = call(app, http_event("GET", "/items/a", headers={header: "client-chosen-id"}))
    assert headers_of(response)["x-request-id"] == "client-chosen-id"


def test_without_x_request_id_the_api_gateway_request_id_is_used(app: InsightMeshResolver) -> None:
    response = call(app, http_event("POST", "/conflict", request_id="Zx9yW8vU7tS6r5Q="))
    assert headers_of(response)["x-request-id"] == "Zx9yW8vU7tS6r5Q"
    assert body_of(response)["error"]["request_id"] == "Zx9yW8vU7tS6r5Q"


def test_each_request_gets_its_own_request_id(app: InsightMeshResolver) -> None:
    first = call(app, http_event("POST", "/conflict", headers={"x-request-id": "first"}))
    second = call(app, http_event("POST", "/conflict", headers={"x-request-id": "second"}))
    assert body_of(first)["error"]["request_id"] == "first"
    assert body_of(second)["error"]["request_id"] == "second"


# -- the request size limit ---------------------------------------------------------------------


def test_a_body_at_the_limit_is_accepted(app: InsightMeshResolver) -> None:
    response = call(app, http_event("POST", "/echo", body="a" * 2048))
    assert response["statusCode"] == 200
    assert body_of(response) == {"bytes": 2048}


def test_a_body_over_the_limit_is_a_413(app: InsightMeshResolver) -> None:
    response = call(app, http_event("POST", "/echo", body="a" * 2049, headers={"x-request-id": "req-413"}))
    error = assert_envelope(response, 413, "payload_too_large", "req-413")
    assert error["message"] == "the request body exceeds 2048 bytes"


def test_the_limit_counts_bytes_not_characters(app: InsightMeshResolver) -> None:
    response = call(app, http_event("POST", "/echo", body="é" * 1100, headers={"x-request-id": "r"}))
    assert_envelope(response, 413, "payload_too_large", "r")


def test_an_oversized_body_is_refused_before_any_route_runs(app: InsightMeshResolver) -> None:
    # Even a path without a route (or a body that is not valid) answers 413, not 404 or 422.
    response = call(app, http_event("POST", "/nope", body="{" * 4096, headers={"x-request-id": "r"}))
    assert_envelope(response, 413, "payload_too_large", "r")


def test_a_base64_body_over_the_limit_is_a_413(app: InsightMeshResolver) -> None:
    response = call(app, http_event("POST", "/echo", body=b"\x00" * 2049, base64_body=True,
                                    headers={"x-request-id": "r"}))
    assert_envelope(response, 413, "payload_too_large", "r")


def test_a_base64_body_is_measured_decoded(app: InsightMeshResolver) -> None:
    event = http_event("POST", "/echo", body=b"a" * 2000, base64_body=True)
    assert len(event["body"]) > 2048  # the encoded form is over the limit, the body is not

    response = call(app, event)

    assert response["statusCode"] == 200
    assert body_of(response) == {"bytes": 2000}


# -- security headers, HSTS ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/items/a", None),
        ("POST", "/conflict", None),
        ("GET", "/nope", None),
        ("PUT", "/items/a", None),
        ("POST", "/items", "{}"),
        ("GET", "/boom", None),
        ("POST", "/echo", "a" * 5000),
        ("GET", OPENAPI_PATH, None),
    ],
)
def test_security_headers_are_on_every_response(
    app: InsightMeshResolver, method: str, path: str, body: str | None
) -> None:
    headers = headers_of(call(app, http_event(method, path, body=body)))

    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in headers  # not outside production
    assert headers["x-request-id"]


def test_hsts_is_sent_in_production(production_settings: Settings) -> None:
    app = build_app(production_settings)
    for event in (http_event("GET", "/items/a"), http_event("GET", "/nope"), http_event("GET", "/boom")):
        headers = headers_of(call(app, event))
        assert headers["strict-transport-security"] == HSTS
        assert headers["x-frame-options"] == "DENY"


def test_hsts_is_sent_on_a_413_in_production(production_settings: Settings) -> None:
    app = build_app(production_settings)
    response = call(app, http_event("POST", "/echo", body="a" * (production_settings.MAX_REQUEST_BYTES + 1)))
    assert response["statusCode"] == 413
    assert headers_of(response)["strict-transport-security"] == HSTS


# -- CORS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:3000"])
def test_cors_headers_for_an_allowed_origin(app: InsightMeshResolver, origin: str) -> None:
    headers = headers_of(call(app, http_event("GET", "/items/a", headers={"origin": origin})))

    assert headers["access-control-allow-origin"] == origin
    assert headers["access-control-allow-credentials"] == "true"
    assert "X-Request-Id" in headers["access-control-expose-headers"]


def test_cors_headers_on_errors_for_an_allowed_origin(app: InsightMeshResolver) -> None:
    headers = headers_of(call(app, http_event("POST", "/conflict", headers={"origin": "http://localhost:3000"})))
    assert headers["access-control-allow-origin"] == "http://localhost:3000"


@pytest.mark.parametrize("origin", ["https://evil.example.com", "http://localhost:3001", "null"])
def test_no_cors_headers_for_a_disallowed_origin(app: InsightMeshResolver, origin: str) -> None:
    response = call(app, http_event("GET", "/items/a", headers={"origin": origin}))

    assert response["statusCode"] == 200  # the server answers; the browser withholds the answer
    assert not [name for name in headers_of(response) if name.startswith("access-control-")]


def test_no_cors_headers_without_an_origin(app: InsightMeshResolver) -> None:
    headers = headers_of(call(app, http_event("GET", "/items/a")))
    assert not [name for name in headers if name.startswith("access-control-")]


def test_a_preflight_from_an_allowed_origin_is_answered(app: InsightMeshResolver) -> None:
    event = http_event("OPTIONS", "/items", headers={
        "origin": "http://localhost:3000",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-request-id",
    })
    response = call(app, event)

    assert response["statusCode"] == 204
    headers = headers_of(response)
    assert headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "POST" in headers["access-control-allow-methods"]
    assert "X-Request-Id" in headers["access-control-allow-headers"]
    assert headers["access-control-max-age"] == "600"


def test_production_cors_allows_only_the_configured_origin(production_settings: Settings) -> None:
    app = build_app(production_settings)

    allowed = headers_of(call(app, http_event("GET", "/items/a", headers={"origin": "https://admin.example.com"})))
    refused = headers_of(call(app, http_event("GET", "/items/a", headers={"origin": "http://localhost:3000"})))

    assert allowed["access-control-allow-origin"] == "https://admin.example.com"
    assert "access-control-allow-origin" not in refused


# -- OpenAPI ------------------------------------------------------------------------------------


def test_the_openapi_document_is_served(app: InsightMeshResolver, settings: Settings) -> None:
    response = call(app, http_event("GET", OPENAPI_PATH))

    assert response["statusCode"] == 200
    assert headers_of(response)["content-type"].startswith("application/json")
    document = json.loads(response["body"])
    assert document["openapi"] == "3.1.0"
    assert document["info"] == {"title": "InsightMesh test-api", "version": settings.APP_VERSION}
    paths = document["paths"]
    assert {"/items/{item_id}", "/items", "/search", "/conflict"} <= set(paths)
    assert set(paths["/items/{item_id}"]) == {"get", "delete"}
    assert "post" in paths["/items"]
    assert OPENAPI_PATH not in paths


def test_the_openapi_document_describes_the_body_model(app: InsightMeshResolver) -> None:
    document = json.loads(call(app, http_event("GET", OPENAPI_PATH))["body"])
    schemas = document["components"]["schemas"]
    assert set(schemas["NewItem"]["required"]) == {"name", "quantity"}


def test_openapi_title_can_be_given(settings: Settings) -> None:
    app = create_app("titled", settings=settings, title="Admin API", openapi_path="/docs/openapi.json")
    response = call(app, http_event("GET", "/docs/openapi.json"))
    assert json.loads(response["body"])["info"]["title"] == "Admin API"


def test_without_openapi_path_no_document_is_served(settings: Settings) -> None:
    app = create_app("plain", settings=settings)
    response = call(app, http_event("GET", OPENAPI_PATH, headers={"x-request-id": "r"}))
    assert_envelope(response, 404, "not_found", "r")


def test_create_app_falls_back_to_the_process_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_REQUEST_BYTES", "1024")
    app = create_app("from-env")
    assert app.settings.MAX_REQUEST_BYTES == 1024
