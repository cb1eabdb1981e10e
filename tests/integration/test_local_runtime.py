"""The local runtime against a fixture stack: gateway events, SQS mapping, schedules, TTL, errors."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import httpx
import pytest
from boto3.dynamodb.conditions import Key

from insightmesh_local import local_auth
from insightmesh_local.runtime import LocalRuntime
from tests.helpers import free_port, port_open, wait_for

FIXTURE = Path(__file__).parents[1] / "fixtures" / "runtime" / "template.yaml"
pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def runtime():
    logs: list[str] = []
    rt = LocalRuntime(template_path=FIXTURE, port=free_port(), emulator_port=free_port(),
                      stack_name="fixture", ttl_interval=3600, log=logs.append)
    rt.start()
    rt.logs = logs
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def http(runtime):
    """A client of the runtime that, like the CLI, presents the run's secret to /_local/*."""
    with httpx.Client(base_url=f"http://127.0.0.1:{runtime.port}", timeout=20,
                      headers={local_auth.HEADER: runtime.secret}) as client:
        yield client


@pytest.fixture(scope="module")
def stranger(runtime):
    """A client without the secret (a web page, a tunnel, another user's script)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{runtime.port}", timeout=20) as client:
        yield client


@pytest.fixture(scope="module")
def aws(runtime):
    def client(service):
        return boto3.client(service, region_name="us-east-1", endpoint_url=runtime.emulator.url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return client


@pytest.fixture(scope="module")
def results(runtime, aws):
    resource = boto3.resource("dynamodb", region_name="us-east-1", endpoint_url=runtime.emulator.url,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
    return resource.Table(runtime.stack.physical["ResultsTable"].ref)


def echo(http, method, url, **kwargs):
    response = http.request(method, url, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


# -- resources from the template -------------------------------------------------------------------

def test_every_declared_resource_exists_with_its_settings(runtime, aws):
    physical = runtime.stack.physical
    table = aws("dynamodb").describe_table(TableName=physical["ResultsTable"].ref)["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "by-kind"
    ttl = aws("dynamodb").describe_time_to_live(TableName=physical["ResultsTable"].ref)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}

    sqs = aws("sqs")
    work = sqs.get_queue_attributes(QueueUrl=physical["WorkQueue"].ref, AttributeNames=["All"])["Attributes"]
    assert work["VisibilityTimeout"] == "1"
    assert json.loads(work["RedrivePolicy"]) == {
        "deadLetterTargetArn": physical["WorkDeadLetterQueue"].attrs["Arn"], "maxReceiveCount": 2}
    ordered = sqs.get_queue_attributes(QueueUrl=physical["OrderedQueue"].ref, AttributeNames=["All"])["Attributes"]
    assert ordered["FifoQueue"] == "true" and physical["OrderedQueue"].ref.endswith(".fifo")

    assert aws("kms").describe_key(KeyId=physical["DataKey"].ref)["KeyMetadata"]["Description"] == "test key"
    secret = aws("secretsmanager").get_secret_value(SecretId=physical["ApiSecret"].ref)["SecretString"]
    assert len(secret) == 40 and secret.isalnum()
    assert aws("ssm").get_parameter(Name=physical["FeatureFlag"].ref)["Parameter"]["Value"] == "on"
    schedule = aws("scheduler").get_schedule(Name="fixture-hourly")
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert schedule["Target"]["Arn"].endswith(":function:fixture-TickFunction")


# -- functions: environment, context, cold start ----------------------------------------------------

def test_function_environment_is_resolved_from_the_template(runtime, http):
    body = echo(http, "GET", "/items/1")
    env = body["env"]
    physical = runtime.stack.physical
    assert env["GREETING"] == "hello"
    assert env["SHARED"] == "overridden"  # the function's own value wins over Globals
    assert env["RESULTS_TABLE"] == physical["ResultsTable"].ref
    assert env["QUEUE_URL"] == physical["WorkQueue"].ref
    assert env["QUEUE_ARN"] == physical["WorkQueue"].attrs["Arn"]
    assert env["KEY_ARN"] == physical["DataKey"].attrs["Arn"]
    assert env["SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert env["SUBSTITUTED"] == f"us-east-1/{physical['ResultsTable'].ref}/hello"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fixture-EchoFunction"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_ENDPOINT_URL"] == runtime.emulator.url
    assert body["context"]["function_name"] == "fixture-EchoFunction"
    assert 0 < body["context"]["remaining_ms"] <= 5000


def test_functions_are_warm_after_the_first_call(http):
    first = echo(http, "GET", "/items/1")
    second = echo(http, "GET", "/items/2")
    assert first["pid"] == second["pid"]  # the same execution environment, imported once


# -- gateway ---------------------------------------------------------------------------------------

def test_http_api_v2_event(http):
    event = echo(http, "GET", "/items/42?tag=a&tag=b&empty=", headers={"X-Request-Id": "r-1",
                                                                      "Cookie": "a=1; b=2"})["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/42"
    assert event["rawQueryString"] == "tag=a&tag=b&empty="
    assert event["queryStringParameters"] == {"tag": "a,b", "empty": ""}
    assert event["pathParameters"] == {"id": "42"}
    assert event["headers"]["x-request-id"] == "r-1"
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["requestContext"]["http"]["method"] == "GET"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert event["isBase64Encoded"] is False
    assert "body" not in event


def test_static_route_beats_parameter_and_greedy_proxy(http):
    assert echo(http, "GET", "/items/special")["event"]["routeKey"] == "GET /items/special"
    event = echo(http, "DELETE", "/files/a/b/c.txt")["event"]
    assert event["routeKey"] == "ANY /files/{proxy+}"
    assert event["pathParameters"] == {"proxy": "a/b/c.txt"}


def test_bodies_text_and_base64(http):
    text = echo(http, "POST", "/echo", json={"x": 1})["event"]
    assert text["isBase64Encoded"] is False and json.loads(text["body"]) == {"x": 1}
    form = echo(http, "POST", "/echo", content="a=1&b=2",
                headers={"Content-Type": "application/x-www-form-urlencoded"})["event"]
    assert form["isBase64Encoded"] is True and base64.b64decode(form["body"]) == b"a=1&b=2"
    raw = echo(http, "POST", "/echo", content=b"\x00\xff\x10", headers={"Content-Type": "application/octet-stream"})
    assert base64.b64decode(raw["event"]["body"]) == b"\x00\xff\x10"


def test_binary_response_is_decoded(http):
    response = http.get("/binary")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == b"\x89PNG\r\n\x1a\nbinary"


def test_response_headers_multi_values_and_cookies(http):
    response = http.get("/items/1")
    assert response.headers.get_list("x-multi") == ["a", "b"]
    assert response.headers["set-cookie"] == "session=abc; HttpOnly"


def test_payload_format_1_0_and_rest_api_events(http):
    legacy = echo(http, "GET", "/v1/items/7?tag=a&tag=b")["event"]
    assert legacy["version"] == "1.0"
    assert legacy["httpMethod"] == "GET" and legacy["resource"] == "/v1/items/{id}"
    assert legacy["multiValueQueryStringParameters"] == {"tag": ["a", "b"]}
    assert legacy["queryStringParameters"] == {"tag": "b"}
    assert legacy["pathParameters"] == {"id": "7"}
    rest = echo(http, "GET", "/rest/items/9")["event"]
    assert "version" not in rest
    assert rest["requestContext"]["resourcePath"] == "/rest/items/{id}"
    assert rest["pathParameters"] == {"id": "9"}


def test_unknown_route_and_wrong_method(http):
    missing = http.get("/no/such/thing")
    assert missing.status_code == 404 and missing.json() == {"message": "Not Found"}
    wrong = http.put("/echo")
    assert wrong.status_code == 405 and wrong.json() == {"message": "Method Not Allowed"}


def test_a_broken_function_fails_alone_and_is_named_in_the_log(runtime, http):
    response = http.get("/broken")
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert any("BrokenFunction error Runtime.ImportModuleError" in line and "insightmesh_no_such_module" in line
               for line in runtime.logs)
    assert http.get("/items/1").status_code == 200  # the others keep serving


def test_a_function_past_its_timeout_is_stopped(runtime, http):
    started = time.monotonic()
    response = http.get("/slow")
    assert response.status_code == 503
    assert time.monotonic() - started < 3  # killed at its 1 s timeout, not after its 3 s sleep
    assert any("SlowFunction" in line and "Sandbox.Timedout" in line for line in runtime.logs)


def test_one_log_line_per_invocation(runtime, http):
    http.get("/items/55")
    lines = [line for line in runtime.logs if line.startswith("EchoFunction trigger=http GET /items/55")]
    assert len(lines) == 1
    assert "duration=" in lines[0] and lines[0].endswith("outcome=ok")


# -- SQS event source mapping -------------------------------------------------------------------------

def _receives(results, message_id):
    return results.query(KeyConditionExpression=Key("pk").eq(f"msg#{message_id}"))["Items"]


def test_sqs_success_deletes_the_batch(runtime, aws, results):
    sqs = aws("sqs")
    queue = runtime.stack.physical["WorkQueue"].ref
    for i in range(3):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"id": f"ok-{i}"}))
    for i in range(3):
        wait_for(lambda i=i: _receives(results, f"ok-{i}"), what=f"ok-{i} processed")
    time.sleep(2.5)  # past the 1 s visibility timeout: a message not deleted would be back (or dead-lettered)
    # Deleted: neither in the queue (visible or in flight) nor in its dead-letter queue. (Counting
    # deliveries would not tell: on a loaded machine an invocation can outlast the 1 s visibility
    # timeout, and SQS then legitimately delivers the message again before the batch is deleted.)
    for url in (queue, runtime.stack.physical["WorkDeadLetterQueue"].ref):
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        assert counts == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}, url
    assert all(_receives(results, f"ok-{i}") for i in range(3))


def test_sqs_partial_failure_retries_only_failed_messages_then_dead_letters(runtime, aws, results):
    sqs = aws("sqs")
    queue = runtime.stack.physical["WorkQueue"].ref
    dlq = runtime.stack.physical["WorkDeadLetterQueue"].ref
    sqs.send_message_batch(QueueUrl=queue, Entries=[
        {"Id": "1", "MessageBody": json.dumps({"id": "good"})},
        {"Id": "2", "MessageBody": json.dumps({"id": "bad", "fail": True})},
    ])
    # maxReceiveCount 2: the failed message is received twice, then moves to the DLQ.
    wait_for(lambda: len(_receives(results, "bad")) >= 2, timeout=15, what="the failed message retried")
    dead = wait_for(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages"), timeout=15,
                    what="the failed message in the DLQ")
    assert json.loads(dead[0]["Body"]) == {"id": "bad", "fail": True}
    assert len(_receives(results, "good")) == 1  # the succeeded one was deleted, not redelivered
    assert [item["sk"] for item in _receives(results, "bad")] == ["receive#1", "receive#2"]


def test_sqs_function_error_returns_the_whole_batch(runtime, aws, results):
    sqs = aws("sqs")
    queue = runtime.stack.physical["WorkQueue"].ref
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"id": "crash", "crash": True}))
    wait_for(lambda: len(_receives(results, "crash")) >= 2, timeout=15, what="the crashed batch redelivered")


def test_sqs_batching_window_gathers_a_batch_from_a_fifo_queue(runtime, aws, results):
    sqs = aws("sqs")
    queue = runtime.stack.physical["OrderedQueue"].ref
    sqs.send_message_batch(QueueUrl=queue, Entries=[
        {"Id": str(i), "MessageBody": json.dumps({"id": f"fifo-{i}"}), "MessageGroupId": "thread-1",
         "MessageDeduplicationId": f"fifo-{i}"} for i in range(4)])
    items = [wait_for(lambda i=i: _receives(results, f"fifo-{i}"), what=f"fifo-{i}")[0] for i in range(4)]
    assert sum(int(item["batch_size"]) for item in items) >= 4
    assert max(int(item["batch_size"]) for item in items) > 1  # the window gathered more than one
    assert all(item["source"] == runtime.stack.physical["OrderedQueue"].attrs["Arn"] for item in items)


# -- schedules ------------------------------------------------------------------------------------------

def _ticks(results):
    items = results.query(KeyConditionExpression=Key("pk").eq("tick"))["Items"]
    return [json.loads(item["event"]) for item in items]


def test_schedules_from_the_template_are_listed_with_their_next_fire_time(http):
    schedules = {s["name"]: s for s in http.get("/_local/schedules").json()["schedules"]}
    nightly = schedules["fixture-nightly"]
    assert nightly["source"] == "rule" and nightly["expression"] == "cron(0 3 * * ? *)"
    assert datetime.fromisoformat(nightly["next_fire"]).strftime("%H:%M") == "03:00"
    hourly = schedules["fixture-hourly"]
    assert hourly["source"] == "scheduler" and hourly["timezone"] == "Europe/Paris"
    assert datetime.fromisoformat(hourly["next_fire"]).minute == 0


def test_firing_a_rule_delivers_the_scheduled_event(http, results):
    before = len(_ticks(results))
    assert http.post("/_local/schedules/fixture-nightly/fire").status_code == 202
    events = wait_for(lambda: [e for e in _ticks(results) if e.get("source") == "aws.events"][0:1]
                      if len(_ticks(results)) > before else None, what="the scheduled event")
    event = events[0]
    assert event["detail-type"] == "Scheduled Event"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/fixture-nightly"]
    assert event["detail"] == {}


def test_firing_a_scheduler_schedule_fills_context_attributes(http, results):
    assert http.post("/_local/schedules/fixture-hourly/fire").status_code == 202
    event = wait_for(lambda: next((e for e in _ticks(results) if e.get("job") == "hourly"), None),
                     what="the hourly input")
    assert datetime.strptime(event["at"], "%Y-%m-%dT%H:%M:%SZ")


def test_a_schedule_created_at_run_time_fires_by_itself(runtime, aws, results):
    when = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    aws("scheduler").create_schedule(
        Name="created-at-run-time", ScheduleExpression=f"at({when})", FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={"Arn": "arn:aws:lambda:us-east-1:123456789012:function:fixture-TickFunction",
                "RoleArn": "arn:aws:iam::123456789012:role/r", "Input": '{"job": "one-off"}'})
    wait_for(lambda: any(e.get("job") == "one-off" for e in _ticks(results)), timeout=15, what="the one-off run")
    # ActionAfterCompletion=DELETE: the schedule is gone once it has fired.
    wait_for(lambda: not any(s["Name"] == "created-at-run-time"
                             for s in aws("scheduler").list_schedules()["Schedules"]), what="deletion")


def test_unknown_schedule_is_404(http):
    assert http.post("/_local/schedules/nope/fire").status_code == 404


# -- TTL --------------------------------------------------------------------------------------------------

def test_ttl_expired_items_are_deleted(http, results):
    now = int(time.time())
    results.put_item(Item={"pk": "ttl", "sk": "expired", "kind": "t", "expires_at": now - 10})
    results.put_item(Item={"pk": "ttl", "sk": "alive", "kind": "t", "expires_at": now + 3600})
    results.put_item(Item={"pk": "ttl", "sk": "forever", "kind": "t"})
    assert http.post("/_local/ttl/sweep").json()["deleted"] >= 1
    left = {item["sk"] for item in results.query(KeyConditionExpression=Key("pk").eq("ttl"))["Items"]}
    assert left == {"alive", "forever"}


# -- the control surface is not an open door ------------------------------------------------------------

def _invocations(runtime, function):
    return sum(1 for line in runtime.logs if f"{function} trigger=invoke " in line)


def test_a_cross_origin_text_plain_post_cannot_invoke_a_function(runtime, stranger, http):
    # What any web page can send without a CORS preflight.
    before = _invocations(runtime, "EchoFunction")
    page = {"Content-Type": "text/plain", "Origin": "https://evil.example"}
    assert stranger.post("/_local/functions/EchoFunction/invoke", content=b"{}", headers=page).status_code == 403
    # Even with the secret (a page cannot read it), a foreign Origin is refused.
    with_secret = {**page, local_auth.HEADER: runtime.secret}
    assert stranger.post("/_local/functions/EchoFunction/invoke", content=b"{}", headers=with_secret).status_code \
        == 403
    assert stranger.post("/_local/functions/EchoFunction/invoke", content=b"{}",
                         headers={**with_secret, "Origin": "null"}).status_code == 403
    assert _invocations(runtime, "EchoFunction") == before


def test_a_foreign_host_is_refused_by_the_control_surface(runtime, stranger):
    # DNS rebinding: a name the attacker controls, resolved to 127.0.0.1; a tunnel forwards its own Host.
    for host in ("evil.example", f"evil.example:{runtime.port}", "127.0.0.1.evil.example", "10.0.0.5:3000"):
        response = stranger.get("/_local/schedules", headers={"Host": host, local_auth.HEADER: runtime.secret})
        assert response.status_code == 403, host


def test_a_request_without_the_secret_is_refused(runtime, stranger):
    before = _invocations(runtime, "EchoFunction")
    assert stranger.get("/_local/schedules").status_code == 401
    assert stranger.get("/_local/stack").status_code == 401
    assert stranger.post("/_local/ttl/sweep").status_code == 401
    assert stranger.post("/_local/functions/EchoFunction/invoke", json={}).status_code == 401
    wrong = {local_auth.HEADER: runtime.secret[:-1] + ("x" if runtime.secret[-1] != "x" else "y")}
    assert stranger.post("/_local/functions/EchoFunction/invoke", json={}, headers=wrong).status_code == 401
    assert stranger.put("/_local/cfn-response/forged", json={"Status": "SUCCESS"}).status_code == 401
    assert "forged" not in runtime.cfn_responses
    assert _invocations(runtime, "EchoFunction") == before


def test_loopback_names_and_the_same_origin_are_accepted_with_the_secret(runtime, stranger):
    for host in (f"127.0.0.1:{runtime.port}", f"localhost:{runtime.port}", f"[::1]:{runtime.port}", "localhost"):
        response = stranger.get("/_local/schedules", headers={"Host": host, local_auth.HEADER: runtime.secret})
        assert response.status_code == 200, host
    same_origin = {"Origin": f"http://127.0.0.1:{runtime.port}", local_auth.HEADER: runtime.secret}
    assert stranger.get("/_local/functions", headers=same_origin).status_code == 200


def test_the_cli_client_with_the_secret_works(runtime, tmp_path, monkeypatch):
    monkeypatch.delenv(local_auth.ENVIRONMENT_VARIABLE, raising=False)
    path = local_auth.write_secret(tmp_path, runtime.secret)
    assert path.stat().st_mode & 0o777 == 0o600
    listed = local_auth.ControlClient(runtime.port, tmp_path).request("functions")["functions"]
    names = {function["logical_id"] for function in listed}
    assert "EchoFunction" in names
    with pytest.raises(local_auth.ControlError, match="no valid secret"):
        local_auth.ControlClient(runtime.port, tmp_path / "elsewhere").request("functions")


def test_public_routes_answer_any_host_so_a_tunnel_works(stranger):
    response = stranger.get("/items/7", headers={"Host": "abc123.ngrok-free.app"})
    assert response.status_code == 200
    assert response.json()["event"]["requestContext"]["domainName"] == "abc123.ngrok-free.app"


def test_nothing_answers_as_ready_before_every_part_is_up(tmp_path, monkeypatch):
    """/health (any public route) and the control surface say "starting" until seeding and the
    pollers, scheduler and sweeper are up; a CLI client waits for that rather than failing."""
    monkeypatch.delenv(local_auth.ENVIRONMENT_VARIABLE, raising=False)
    logs: list[str] = []
    seeding = threading.Event()
    rt = LocalRuntime(template_path=FIXTURE, port=free_port(), emulator_port=free_port(),
                      stack_name="starting", ttl_interval=3600, log=logs.append)
    local_auth.write_secret(tmp_path, rt.secret)
    run_custom_resources = rt.run_custom_resources

    def slow_seeding(stack):
        seeding.wait(60)  # the bootstrap custom resource still seeding
        run_custom_resources(stack)

    rt.run_custom_resources = slow_seeding
    starter = threading.Thread(target=rt.start, daemon=True)
    starter.start()
    try:
        wait_for(lambda: port_open(rt.port), timeout=60, what="the gateway listening")
        with httpx.Client(base_url=f"http://127.0.0.1:{rt.port}", timeout=10,
                          headers={local_auth.HEADER: rt.secret}) as client:
            early = client.get("/items/1")
            assert early.status_code == 503 and early.headers["Retry-After"] == "1"
            assert client.get("/_local/schedules").json() == {"message": "the runtime is starting"}
            with pytest.raises(local_auth.ControlError, match="still starting"):
                local_auth.ControlClient(rt.port, tmp_path, wait=0.5).request("schedules")
            waited: list[dict] = []
            patient = threading.Thread(
                target=lambda: waited.append(local_auth.ControlClient(rt.port, tmp_path, wait=60).request("schedules")))
            patient.start()
            time.sleep(1)  # let the patient client meet the starting runtime first
            seeding.set()
            patient.join(timeout=60)
            assert waited and "schedules" in waited[0]
            assert client.get("/items/1").status_code == 200
    finally:
        seeding.set()
        starter.join(timeout=60)
        rt.stop()
