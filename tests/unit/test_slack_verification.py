"""Slack request signatures (v0 scheme) — insightmesh.slack.verification.

Bodies are signed with insightmesh_local.slack_signing.sign, i.e. exactly as Slack signs them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from insightmesh.slack.verification import MAX_CLOCK_SKEW_SECONDS, verification_failure
from insightmesh_local.slack_signing import (
    DEFAULT_APP_ID,
    DEFAULT_TEAM_ID,
    app_mention_event,
    event_callback,
    json_body,
    sign,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_700_000_000


def clock() -> float:
    return float(NOW)


@pytest.fixture
def body() -> bytes:
    event = app_mention_event("U0USER0001", "C0CHAN0001", "hello", "1700000000.000100")
    return json_body(event_callback(DEFAULT_TEAM_ID, DEFAULT_APP_ID, event))


def test_a_request_signed_with_the_secret_is_accepted(body: bytes) -> None:
    headers = sign(SECRET, body, timestamp=NOW)

    assert verification_failure(headers, body, SECRET, clock=clock) is None


def test_a_form_encoded_body_is_verified_byte_for_byte() -> None:
    body = b"token=x&team_id=T1&text=hello+world%21&command=%2Finsightmesh"
    headers = sign(SECRET, body, timestamp=NOW)

    assert verification_failure(headers, body, SECRET, clock=clock) is None


def test_the_wrong_secret_is_refused(body: bytes) -> None:
    headers = sign("some-other-secret", body, timestamp=NOW)

    assert verification_failure(headers, body, SECRET, clock=clock) == "signature mismatch"


def test_a_tampered_body_is_refused(body: bytes) -> None:
    headers = sign(SECRET, body, timestamp=NOW)
    tampered = body.replace(b"hello", b"HELLO")
    assert tampered != body

    assert verification_failure(headers, tampered, SECRET, clock=clock) == "signature mismatch"


def test_a_tampered_signature_is_refused(body: bytes) -> None:
    headers = sign(SECRET, body, timestamp=NOW)
    signature = headers["X-Slack-Signature"]
    headers["X-Slack-Signature"] = signature[:-1] + ("0" if signature[-1] != "0" else "1")

    assert verification_failure(headers, body, SECRET, clock=clock) == "signature mismatch"


def test_a_signature_replayed_with_another_timestamp_is_refused(body: bytes) -> None:
    headers = sign(SECRET, body, timestamp=NOW - 10)
    headers["X-Slack-Request-Timestamp"] = str(NOW)

    assert verification_failure(headers, body, SECRET, clock=clock) == "signature mismatch"


@pytest.mark.parametrize("offset", [-(MAX_CLOCK_SKEW_SECONDS + 1), MAX_CLOCK_SKEW_SECONDS + 1, -3600, 3600])
def test_a_timestamp_more_than_five_minutes_off_is_refused_either_way(body: bytes, offset: int) -> None:
    headers = sign(SECRET, body, timestamp=NOW + offset)

    failure = verification_failure(headers, body, SECRET, clock=clock)

    assert failure is not None
    assert "stale" in failure


@pytest.mark.parametrize("offset", [-MAX_CLOCK_SKEW_SECONDS, -60, 60, MAX_CLOCK_SKEW_SECONDS])
def test_a_timestamp_within_five_minutes_is_accepted(body: bytes, offset: int) -> None:
    headers = sign(SECRET, body, timestamp=NOW + offset)

    assert verification_failure(headers, body, SECRET, clock=clock) is None


def test_the_injected_clock_decides_staleness(body: bytes) -> None:
    headers = sign(SECRET, body, timestamp=NOW)

    assert verification_failure(headers, body, SECRET, clock=lambda: NOW + 299.0) is None
    assert verification_failure(headers, body, SECRET, clock=lambda: NOW + 301.0) is not None


@pytest.mark.parametrize("stamp", ["yesterday", "1.7e9", " ", "0x6553f100"])
def test_a_non_numeric_timestamp_is_refused(body: bytes, stamp: str) -> None:
    headers = sign(SECRET, body, timestamp=NOW)
    headers["X-Slack-Request-Timestamp"] = stamp

    assert verification_failure(headers, body, SECRET, clock=clock) == "X-Slack-Request-Timestamp is not a number"


def test_an_empty_timestamp_counts_as_missing(body: bytes) -> None:
    headers = sign(SECRET, body, timestamp=NOW)
    headers["X-Slack-Request-Timestamp"] = ""

    failure = verification_failure(headers, body, SECRET, clock=clock)

    assert failure is not None
    assert "missing" in failure


@pytest.mark.parametrize("missing", ["X-Slack-Request-Timestamp", "X-Slack-Signature"])
def test_missing_headers_are_refused(body: bytes, missing: str) -> None:
    headers = sign(SECRET, body, timestamp=NOW)
    del headers[missing]

    failure = verification_failure(headers, body, SECRET, clock=clock)

    assert failure is not None
    assert "missing" in failure


def test_no_headers_at_all_is_refused(body: bytes) -> None:
    assert verification_failure({}, body, SECRET, clock=clock) is not None


@pytest.mark.parametrize("transform", [str.lower, str.upper, str.title, str.swapcase])
def test_header_names_match_in_any_case(body: bytes, transform: Callable[[str], str]) -> None:
    headers = {transform(name): value for name, value in sign(SECRET, body, timestamp=NOW).items()}

    assert verification_failure(headers, body, SECRET, clock=clock) is None


@pytest.mark.parametrize("secret", ["", "not-configured"])
def test_an_unconfigured_secret_refuses_everything(body: bytes, secret: str) -> None:
    # Even a body signed with the placeholder itself: an unconfigured app accepts nothing.
    headers = sign(secret or "anything", body, timestamp=NOW)

    failure = verification_failure(headers, body, secret, clock=clock)

    assert failure == "the Slack signing secret is not configured"


def test_the_reason_never_contains_the_secret(body: bytes) -> None:
    for headers in (sign("wrong", body, timestamp=NOW), sign(SECRET, body, timestamp=NOW - 3600), {}):
        failure = verification_failure(headers, body, SECRET, clock=clock)
        assert failure is not None
        assert SECRET not in failure
