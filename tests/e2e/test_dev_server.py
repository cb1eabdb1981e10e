"""`insightmesh dev` as a user runs it: a separate process on free ports, spoken to over HTTP."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import httpx
import pytest

from insightmesh_local import local_auth
from insightmesh_local.template import load_template
from tests.e2e import dev_server
from tests.e2e.dev_server import ROOT, _env, run_cli, running, start
from tests.helpers import free_port, port_open, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def dev(dev_logs):
    with running(log_dir=dev_logs) as server:
        yield server


def test_liveness(http):
    response = http.get("/health", headers={"X-Request-Id": "e2e-live-1"})
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["x-request-id"] == "e2e-live-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


@pytest.fixture(scope="module")
def ops(dev):
    """The headers of an admin's API token (admin:read): the readiness detail needs one."""
    made = dev.cli("token", "create", "--email", "ops@example.com", "--admin")
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip()}"}


def test_anonymous_readiness_is_the_overall_status_only(http):
    response = http.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}


def test_readiness_checks_every_table_and_queue_of_the_template(http, ops):
    response = http.get("/health/ready", headers=ops)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "ok"
    names = {check["name"] for check in report["checks"]}
    template = load_template(ROOT / "infra" / "template.yaml")
    declared = {name for name in template.function_globals["Environment"]["Variables"]
                if name.endswith(("_TABLE", "_QUEUE_URL", "_DLQ_URL"))}
    assert names == declared | {"QDRANT_URL"}  # and the knowledge store (the dev stack's Qdrant)
    assert {"RATE_LIMIT_TABLE", "CONVERSATION_QUEUE_URL", "CONVERSATION_DLQ_URL", "USERS_TABLE"} <= names
    assert all(check["status"] == "ok" for check in report["checks"])


def test_readiness_degrades_when_the_dead_letter_queue_holds_messages(dev, http, ops):
    sqs = dev.aws("sqs")
    # The job DLQ: nothing consumes it (conversation_dlq drains the conversation DLQ at once).
    url = sqs.get_queue_url(QueueName="insightmesh-dev-JobDeadLetterQueue")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    try:
        # A report is reused for a few seconds: wait for one made after the message arrived.
        report = wait_for(lambda: (lambda r: r if r["status"] == "degraded" else None)(
            http.get("/health/ready", headers=ops).json()), timeout=30, interval=1.0,
            what="a degraded readiness report")
        dlq = next(check for check in report["checks"] if check["name"] == "JOB_DLQ_URL")
        assert dlq["status"] == "degraded" and "1 message" in dlq["detail"]
        assert http.get("/health/ready").json() == {"status": "degraded"}  # anonymous: no names, no depths
    finally:
        sqs.purge_queue(QueueUrl=url)


def test_unknown_path_gets_the_404_envelope(http):
    response = http.get("/definitely/not/here", headers={"X-Request-Id": "e2e-404"})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "no route for GET /definitely/not/here",
                                         "request_id": "e2e-404"}}


def test_wrong_method_gets_the_405_envelope(http):
    response = http.delete("/health")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET"


def test_openapi_document(http):
    document = http.get("/health/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert {"/health", "/health/ready"} <= set(document["paths"])


def test_every_invocation_is_logged_once(dev, http):
    http.get("/health", headers={"X-Request-Id": "log-line"})
    lines = [line for line in dev.output().splitlines() if "HealthFunction trigger=http GET /health " in line]
    assert lines and all("outcome=ok" in line and "duration=" in line for line in lines)


def test_sigterm_stops_everything_within_five_seconds(dev_logs):
    dev = start(log_dir=dev_logs)
    assert port_open(dev.port) and port_open(dev.emulator_port)
    assert dev.stop() < 5
    assert dev.process.returncode == 0
    assert not port_open(dev.port) and not port_open(dev.emulator_port)
    assert "stopped in" in dev.output()


def test_a_port_in_use_is_reported(dev):
    result = run_cli("dev", "--port", str(dev.port), timeout=30)
    assert result.returncode == 1
    assert f"port {dev.port}" in result.stderr


def test_a_start_that_lost_its_port_to_another_process_is_retried_on_new_ports(dev_logs, monkeypatch):
    # Parallel test runs: a free port can be taken between the probe and the server's bind.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        lost = taken.getsockname()[1]
        handed_out = iter([lost])
        monkeypatch.setattr(dev_server, "free_port", lambda: next(handed_out, None) or free_port())
        with running(log_dir=dev_logs) as server:
            assert server.port != lost
            assert httpx.get(f"{server.url}/health", timeout=20).status_code == 200
    first_try = (dev_logs / f"insightmesh-dev-{lost}.log").read_text()
    assert f"port {lost} on 127.0.0.1 is in use" in first_try


def test_a_broken_template_names_the_cause(tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text((ROOT / "infra" / "template.yaml").read_text().replace(
        "CodeUri: ../functions/health/", "CodeUri: ../functions/nowhere/"))
    result = run_cli("dev", "--port", str(free_port()), "--emulator-port", str(free_port()), "--template",
                     str(template), "--data-dir", str(tmp_path / "data"), timeout=30)
    assert result.returncode == 2
    assert "HealthFunction" in result.stderr and "CodeUri ../functions/nowhere/" in result.stderr


def test_a_missing_parameter_names_the_function_and_variable(tmp_path):
    template = tmp_path / "template.yaml"
    text = (ROOT / "infra" / "template.yaml").read_text().replace("CodeUri: ../", f"CodeUri: {ROOT}/")
    text = text.replace("  LogLevel:\n    Type: String\n    Default: INFO\n", "  LogLevel:\n    Type: String\n")
    template.write_text(text)
    result = run_cli("dev", "--port", str(free_port()), "--emulator-port", str(free_port()), "--template",
                     str(template), "--data-dir", str(tmp_path / "data"), timeout=30)
    assert result.returncode == 2
    assert "function HealthFunction" in result.stderr
    assert "LogLevel" in result.stderr and "--parameter-overrides" in result.stderr


# -- insightmesh invoke -------------------------------------------------------------------------------

# Each invoke gets its own data folder: the default (.insightmesh in the project) may be held by a
# developer's `make dev`, and its embedded store admits one process at a time.

def test_invoke_prints_the_result_as_json(tmp_path):
    result = run_cli("invoke", "health", "--event", "events/health/live.json", "--emulator-port", str(free_port()),
                     "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["status"] == "ok"
    assert response["headers"]["X-Request-Id"] == "sample-live-1"


def test_invoke_readiness_against_its_own_emulator(tmp_path):
    result = run_cli("invoke", "HealthFunction", "--event", "events/health/ready.json", "--emulator-port",
                     str(free_port()), "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(json.loads(result.stdout)["body"])["status"] == "ok"


def test_invoke_unknown_function_fails_with_the_list(tmp_path):
    result = run_cli("invoke", "nope", "--event", "events/health/live.json", "--emulator-port", str(free_port()),
                     "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2
    assert "no function 'nope'" in result.stderr and "HealthFunction" in result.stderr


def test_invoke_reports_a_function_error_and_exits_non_zero(tmp_path):
    event = tmp_path / "bad.json"
    event.write_text(json.dumps({"not": "an api event"}))
    result = run_cli("invoke", "health", "--event", str(event), "--emulator-port", str(free_port()),
                     "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1
    error = json.loads(result.stderr[result.stderr.index("{"):])
    assert error["errorType"] and error["errorMessage"]


def test_schedules_cli_talks_to_the_running_server(dev):
    result = dev.cli("schedules", "list", timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"schedules": []}
    missing = dev.cli("schedules", "fire", "nope", timeout=30)
    assert missing.returncode == 1 and "no schedule named" in missing.stderr


# -- the local runtime is not an open door ----------------------------------------------------------------

def _without_the_secret_in_the_environment() -> dict[str, str]:
    return {k: v for k, v in _env().items() if k != local_auth.ENVIRONMENT_VARIABLE}


def test_the_secret_is_in_the_data_dir_readable_only_by_its_owner(dev):
    path = Path(dev.data_dir) / local_auth.TOKEN_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == dev.secret


def test_the_control_surface_refuses_pages_foreign_hosts_and_requests_without_the_secret(dev, http):
    page = {"Content-Type": "text/plain", "Origin": "https://evil.example"}
    assert http.post("/_local/functions/HealthFunction/invoke", content=b"{}", headers=page).status_code == 403
    assert http.get("/_local/stack").status_code == 401
    assert http.get("/_local/stack", headers={"Host": "rebound.example",
                                              local_auth.HEADER: dev.secret}).status_code == 403
    assert http.get("/_local/stack", headers={local_auth.HEADER: dev.secret}).status_code == 200
    # The API's own routes take any Host: a tunnel to a real workspace keeps working.
    assert http.get("/health", headers={"Host": "abc.tunnel.example"}).status_code == 200


def test_the_cli_reads_the_secret_from_the_data_dir(dev, tmp_path):
    listed = dev.cli("schedules", "list", "--data-dir", dev.data_dir, env=_without_the_secret_in_the_environment(),
                     timeout=30)
    assert listed.returncode == 0, listed.stderr
    elsewhere = dev.cli("schedules", "list", "--data-dir", str(tmp_path), env=_without_the_secret_in_the_environment(),
                        timeout=30)
    assert elsewhere.returncode == 1
    assert "no valid secret" in elsewhere.stderr and str(tmp_path) in elsewhere.stderr


def test_the_dev_servers_slack_sandbox_wants_the_secret_too(dev):
    found = re.search(r"Slack Web API sandbox .* on (http://127\.0\.0\.1:\d+/)api/", dev.output())
    assert found, dev.output()
    root = found.group(1)
    assert httpx.get(root + "_sandbox/messages", timeout=10).status_code == 401
    assert httpx.get(root + "_sandbox/messages", headers={local_auth.HEADER: dev.secret},
                     timeout=10).status_code == 200
    assert httpx.get(root + "_sandbox/messages", headers={"Host": "evil.example", local_auth.HEADER: dev.secret},
                     timeout=10).status_code == 403
