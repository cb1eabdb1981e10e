"""A fuzz pass over every public route of `insightmesh dev`: malformed and hostile bodies never
get a 5xx.

One dev server; hypothesis drives the shapes, derandomized and bounded so the pass is
deterministic and quick. Slack routes get random JSON and form shapes (correctly and badly
signed), near-miss Slack payloads with fuzzed fields, wrong content types, oversized bodies and
(through the runtime's invoke endpoint) events whose body is not valid base64. /health, /api/*
and /auth/* get unauthenticated requests with random methods, paths, queries and bodies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.dev_server import DevServer, running
from tests.standins.oidc_server import start as start_oidc

SECRET = "fuzz-signing-secret"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# Bounded and deterministic: the whole module (one dev server) stays well under a minute.
FUZZ = settings(max_examples=60, derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
FUZZ_API = settings(FUZZ, max_examples=30)  # these routes' first calls start three more functions

CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain", "application/octet-stream",
                 "multipart/form-data; boundary=x", "application/json; charset=latin-1", "")

# -- strategies -----------------------------------------------------------------------------------
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
slackish_text = st.sampled_from(["", "U0ALICE", "C0FUZZ", "D0FUZZ", "1796000000.000100", "message", "app_mention",
                                 "im", "channel", "file_share", "<@UBOTLOCAL> hi", "TLOCAL0001", "x" * 5000])
fuzzed = json_values | slackish_text | st.lists(slackish_text, max_size=3)
# What a client can put in a header: visible ASCII and inner spaces (httpx refuses the rest).
header_values = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40) | \
    st.sampled_from(["1e3", "-1", "0x10", "9" * 5000, "1796000000.5", "v0=", "a b"])


@st.composite
def event_callbacks(draw: st.DrawFn) -> dict[str, Any]:
    """An event_callback close enough to Slack's to reach deep into classification."""
    event: dict[str, Any] = {
        "type": draw(st.sampled_from(["message", "app_mention"]) | fuzzed),
        "user": draw(st.sampled_from(["U0ALICE"]) | fuzzed),
        "channel": draw(st.sampled_from(["C0FUZZ", "D0FUZZ"]) | fuzzed),
        "ts": draw(st.sampled_from(["1796000000.000100"]) | fuzzed),
        "text": draw(fuzzed),
    }
    for key in ("thread_ts", "channel_type", "subtype", "bot_id", "bot_profile", "files", "team", "blocks"):
        if draw(st.booleans()):
            event[key] = draw(fuzzed)
    payload: dict[str, Any] = {"type": "event_callback", "event": draw(st.just(event) | fuzzed)}
    for key in ("team_id", "event_id", "authorizations", "api_app_id", "event_time"):
        if draw(st.booleans()):
            payload[key] = draw(fuzzed)
    return payload


@st.composite
def block_actions(draw: st.DrawFn) -> dict[str, Any]:
    """A block_actions payload with fuzzed parts."""
    action = {"action_id": draw(st.sampled_from(["exit_agent", "feedback_up", "feedback_down"]) | fuzzed),
              "value": draw(fuzzed), "action_ts": draw(fuzzed)}
    payload: dict[str, Any] = {"type": draw(st.just("block_actions") | fuzzed)}
    for key, sane in (("team", {"id": "TLOCAL0001"}), ("user", {"id": "U0ALICE"}), ("channel", {"id": "C0FUZZ"}),
                      ("container", {"channel_id": "C0FUZZ", "message_ts": "1796000000.000100"}),
                      ("message", {"ts": "1796000000.000100"}), ("actions", [action]),
                      ("response_url", "https://hooks.slack.com/x"), ("trigger_id", "1.2.3")):
        choice = draw(st.integers(0, 2))
        if choice == 1:
            payload[key] = sane
        elif choice == 2:
            payload[key] = draw(fuzzed if key != "actions" else st.lists(st.just(action) | fuzzed, max_size=3))
    return payload


COMMAND_FIELDS = ("token", "team_id", "team_domain", "channel_id", "channel_name", "user_id", "user_name", "command",
                  "text", "api_app_id", "response_url", "trigger_id", "ssl_check", "is_enterprise_install")
command_forms = st.dictionaries(st.sampled_from(COMMAND_FIELDS) | st.text(max_size=10),
                                st.text(max_size=60) | slackish_text, max_size=14)
raw_bodies = (st.binary(max_size=300) | st.text(max_size=300).map(str.encode)
              | json_values.map(lambda value: json.dumps(value).encode()))


@st.composite
def signatures(draw: st.DrawFn, body: bytes) -> dict[str, str]:
    """Correct, wrong-secret, stale, garbled or missing signature headers for ``body``."""
    kind = draw(st.sampled_from(["good", "good", "wrong_secret", "stale", "future", "garbled", "missing",
                                 "bad_timestamp"]))
    if kind == "good":
        return sign(SECRET, body)
    if kind == "wrong_secret":
        return sign("not-the-secret", body)
    if kind == "stale":
        return sign(SECRET, body, int(time.time()) - 3600)
    if kind == "future":
        return sign(SECRET, body, int(time.time()) + 3600)
    if kind == "garbled":
        return {"X-Slack-Request-Timestamp": str(int(time.time())),
                "X-Slack-Signature": draw(st.text(alphabet="v0=abcdef0123456789", max_size=70))}
    if kind == "bad_timestamp":
        return {"X-Slack-Request-Timestamp": draw(header_values),
                "X-Slack-Signature": "v0=" + "0" * 64}
    return {}


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature over the raw bytes (slack_sdk's helper needs UTF-8 bodies; these may not be)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


# -- the server -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dev(dev_logs):
    identity = start_oidc(client_id="insightmesh-fuzz", client_secret="fuzz-client-secret")
    try:
        with running(env={"SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": "xoxb-fuzz",
                          "OIDC_ISSUER": identity.issuer, "OIDC_CLIENT_ID": "insightmesh-fuzz",
                          "OIDC_CLIENT_SECRET": "fuzz-client-secret", "API_RATE_LIMIT_PER_MINUTE": "100000",
                          "API_IP_RATE_LIMIT_PER_MINUTE": "100000"}, log_dir=dev_logs) as server:
            yield server
    finally:
        identity.stop()


@pytest.fixture(scope="module")
def http(dev):
    with dev.http(timeout=30) as client:
        yield client


def send(http: httpx.Client, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    response = http.request(method, path, content=body, headers=headers or {})
    assert response.status_code < 500, (f"{method} {path} -> {response.status_code} {response.text[:300]}\n"
                                        f"headers={headers}\nbody={body[:500] if body else body!r}")
    return response


def signed_post(http: httpx.Client, path: str, body: bytes, content_type: str,
                signature: dict[str, str]) -> httpx.Response:
    headers = {**signature, **({"Content-Type": content_type} if content_type else {})}
    return send(http, "POST", path, body, headers)


# -- Slack routes ---------------------------------------------------------------------------------
SLACK_PATHS = ("/slack/events", "/slack/commands", "/slack/interactions")


@FUZZ
@given(data=st.data(), path=st.sampled_from(SLACK_PATHS), body=raw_bodies, content_type=st.sampled_from(CONTENT_TYPES))
def test_random_bodies_to_slack_routes_never_5xx(http, data, path, body, content_type):
    signed_post(http, path, body, content_type, data.draw(signatures(body)))


@FUZZ
@given(data=st.data(), payload=event_callbacks() | json_values, content_type=st.sampled_from(CONTENT_TYPES))
def test_event_shapes_never_5xx(http, data, payload, content_type):
    body = json.dumps(payload).encode()
    response = signed_post(http, "/slack/events", body, content_type, data.draw(signatures(body)))
    assert response.status_code in (200, 400, 401, 413, 415)


@FUZZ
@given(data=st.data(), form=command_forms | json_values.map(lambda value: {"text": json.dumps(value)}))
def test_slash_command_forms_never_5xx(http, data, form):
    body = urlencode(form).encode()
    response = signed_post(http, "/slack/commands", body, "application/x-www-form-urlencoded",
                           data.draw(signatures(body)))
    assert response.status_code in (200, 400, 401)


@FUZZ
@given(data=st.data(), payload=block_actions() | json_values,
       wrap=st.sampled_from(["payload", "payload", "raw", "other_field"]))
def test_interaction_payloads_never_5xx(http, data, payload, wrap):
    text = json.dumps(payload)
    body = (urlencode({"payload": text}) if wrap == "payload" else text if wrap == "raw"
            else urlencode({"payloads": text})).encode()
    response = signed_post(http, "/slack/interactions", body, "application/x-www-form-urlencoded",
                           data.draw(signatures(body)))
    assert response.status_code in (200, 400, 401)


EVENT = {"type": "message", "user": "U0ALICE", "channel": "D0FUZZ", "ts": "1796000000.000100", "channel_type": "im"}
ACTION = {"type": "block_actions", "team": {"id": "TLOCAL0001"}, "user": {"id": "U0ALICE"}, "channel": {"id": "C0FUZZ"},
          "actions": [{"action_id": "feedback_up", "value": "x"}]}


@pytest.mark.parametrize(("path", "payload"), [
    # Each was a 500 (an unhandled TypeError or AttributeError in slack/events.py) when the fuzzer found it.
    ("/slack/events", {"type": "event_callback", "event": {**EVENT, "type": []}}),  # unhashable event type
    ("/slack/events", {"type": "event_callback", "event": {**EVENT, "subtype": ["file_share"]}}),  # unhashable
    ("/slack/events", {"type": "event_callback", "team_id": "T1", "event": EVENT, "authorizations": 5}),
    ("/slack/interactions", {**ACTION, "message": "not an object"}),
    ("/slack/interactions", {**ACTION, "container": ["not", "an", "object"]}),
    ("/slack/interactions", {**ACTION, "actions": 5}),
    ("/slack/interactions", {**ACTION, "actions": [{"action_id": ["feedback_up"]}]}),  # unhashable action id
])
def test_shapes_the_fuzzer_found_are_answered_without_5xx(http, path, payload):
    text = json.dumps(payload)
    body = (urlencode({"payload": text}) if path == "/slack/interactions" else text).encode()
    content_type = "application/x-www-form-urlencoded" if path == "/slack/interactions" else "application/json"
    response = signed_post(http, path, body, content_type, sign(SECRET, body))
    assert response.status_code in (200, 400), response.text


@pytest.mark.parametrize("path", SLACK_PATHS)
def test_oversized_bodies_are_refused_without_5xx(http, path):
    for body in (b'{"type": "event_callback", "pad": "' + b"x" * 300_000 + b'"}',
                 b"payload=" + b"%7B" * 200_000, b"\x00" * 1_200_000):
        response = signed_post(http, path, body, "application/json", sign(SECRET, body))
        assert response.status_code in (400, 413)


@pytest.mark.parametrize("path", SLACK_PATHS)
def test_wrong_methods_on_slack_routes_never_5xx(http, path):
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
        send(http, method, path, b"{}", {"Content-Type": "application/json"})


@pytest.mark.parametrize("body", ["%%%not base64%%%", "YWJj=ZGVm", "\u00e9t\u00e9", "QUJD" * 3 + "!"])
def test_an_event_whose_body_is_not_valid_base64_is_a_400(dev, http, body):
    """API Gateway base64-encodes non-text bodies itself; a broken one must still not be a 5xx."""
    event = {"version": "2.0", "routeKey": "POST /slack/events", "rawPath": "/slack/events", "rawQueryString": "",
             "headers": {"content-type": "application/octet-stream", **{k.lower(): v for k, v in
                                                                        sign(SECRET, body.encode()).items()}},
             "requestContext": {"http": {"method": "POST", "path": "/slack/events", "sourceIp": "127.0.0.1"},
                                "requestId": "fuzz", "routeKey": "POST /slack/events", "stage": "$default"},
             "body": body, "isBase64Encoded": True}
    response = http.post("/_local/functions/SlackIngressFunction/invoke", json=event, headers=control_headers(dev))
    assert response.status_code == 200, response.text
    invocation = response.json()
    assert invocation["ok"], invocation["error"]
    assert invocation["result"]["statusCode"] == 400, invocation["result"]


def control_headers(dev: DevServer) -> dict[str, str]:
    """The runtime's per-run secret for /_local/*, read from the data dir as the CLI does."""
    token = Path(dev.data_dir or "") / "local-token"
    return {"X-InsightMesh-Local-Token": token.read_text().strip()} if token.is_file() else {}


# -- /health, /api/*, /auth/* without credentials ---------------------------------------------------
API_PATHS = ("/health", "/health/ready", "/health/openapi.json", "/api/me", "/api/agents", "/api/agents/{x}",
             "/api/agents/{x}/grants", "/api/agents/{x}/grants/{x}", "/api/agents/{x}/enable", "/api/groups",
             "/api/groups/{x}", "/api/groups/{x}/members", "/api/groups/{x}/members/{x}", "/api/users",
             "/api/users/{x}", "/api/users/{x}/admin", "/api/audit", "/api/openapi.json", "/api/job-types",
             "/api/jobs", "/api/jobs/{x}", "/api/jobs/{x}/run", "/api/task-runs", "/api/task-runs/{x}",
             "/api/credentials", "/api/credentials/{x}", "/api/{x}", "/auth/login", "/auth/callback", "/auth/logout",
             "/auth/session", "/auth/{x}", "/{x}")
segments = st.text(min_size=1, max_size=20).map(lambda text: quote(text, safe="")) | st.sampled_from(
    ["..", "%2e%2e", "admin", "0" * 300, "%00", "%ff"])
queries = st.dictionaries(st.sampled_from(["cursor", "limit", "state", "code", "next", "q", "x"]) | st.text(max_size=8),
                          st.text(max_size=40) | st.sampled_from(["-1", "0", "1000000", "null", "[]"]), max_size=3)
auth_headers = st.fixed_dictionaries({}, optional={
    "Authorization": st.sampled_from(["Bearer", "Bearer im_garbage", "Basic Zm9vOmJhcg==", "Bearer " + "A" * 5000,
                                      "bearer x.y.z"]),
    "Cookie": st.sampled_from(["session=garbage", "session=", "im_session=a.b.c", "state=x; session=" + "z" * 3000]),
    "Origin": st.sampled_from(["https://evil.example", "null"]),
    "X-Request-Id": header_values,
})


@FUZZ_API
@given(template=st.sampled_from(API_PATHS), parts=st.lists(segments, min_size=2, max_size=2),
       method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]), query=queries,
       body=st.none() | raw_bodies, content_type=st.sampled_from(CONTENT_TYPES), headers=auth_headers)
def test_health_api_and_auth_without_credentials_never_5xx(http, template, parts, method, query, body, content_type,
                                                            headers):
    path = template.replace("{x}", parts[0], 1).replace("{x}", parts[1], 1)
    if query:
        path += "?" + urlencode(query)
    send(http, method, path, body if method not in ("GET", "HEAD") else None,
         {**headers, **({"Content-Type": content_type} if content_type else {})})
