"""research.launcher: errors become LaunchError; a name already taken by the run is a start that
happened. (Starting, idempotency and stopping against the local durable service:
tests/integration/test_durable_runtime.py.)"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from insightmesh import aws
from insightmesh.research import launcher


class LambdaStandIn:
    """Answers every Lambda call with one canned error (code, status) and records the requests."""

    def __init__(self, code: str, status: int) -> None:
        self.code, self.status = code, status
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.server = make_server("127.0.0.1", 0, self)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        request = Request(environ)
        self.requests.append((request.path, dict(request.headers)))
        body = json.dumps({"Type": "User", "message": "canned", "__type": self.code})
        return Response(body, status=self.status, headers={"X-Amzn-ErrorType": self.code},
                        content_type="application/json")(environ, start_response)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def lambda_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    servers: list[LambdaStandIn] = []

    def serve(code: str, status: int) -> LambdaStandIn:
        server = LambdaStandIn(code, status)
        servers.append(server)
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.url)
        monkeypatch.setenv(launcher.FUNCTION_ENV, "insightmesh-ResearchFunction:live")
        monkeypatch.setattr(aws, "_clients", {})
        return server

    yield serve
    for server in servers:
        server.server.shutdown()


def test_a_start_sends_an_asynchronous_named_invoke_and_a_taken_name_is_not_an_error(lambda_at) -> None:
    server = lambda_at("DurableExecutionAlreadyStartedException", 409)
    launcher.start_execution("run-42")
    [(path, headers)] = server.requests
    assert path == "/2015-03-31/functions/insightmesh-ResearchFunction%3Alive/invocations" or \
        path == "/2015-03-31/functions/insightmesh-ResearchFunction:live/invocations"
    assert headers["X-Amz-Invocation-Type"] == "Event"
    assert headers["X-Amz-Durable-Execution-Name"] == "run-42"


def test_a_refused_start_is_a_launch_error(lambda_at) -> None:
    lambda_at("ResourceNotFoundException", 404)
    with pytest.raises(launcher.LaunchError, match="ResourceNotFoundException"):
        launcher.start_execution("run-42")


def test_a_run_id_that_cannot_name_an_execution_and_a_missing_function_are_launch_errors(monkeypatch) -> None:
    monkeypatch.setenv(launcher.FUNCTION_ENV, "f:live")
    with pytest.raises(launcher.LaunchError, match="cannot name"):
        launcher.start_execution("has spaces/and slashes")
    monkeypatch.delenv(launcher.FUNCTION_ENV)
    with pytest.raises(launcher.LaunchError, match=launcher.FUNCTION_ENV):
        launcher.start_execution("run-42")
