"""Slack request verification (the v0 signing scheme), with slack_sdk's verifier.

HMAC-SHA256 of ``v0:{timestamp}:{raw body}`` with the signing secret, compared in constant time,
and a five-minute window on ``X-Slack-Request-Timestamp`` against replays. The verifier is
slack_sdk's own; this module only finds the headers (any case) and says why a request failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Final

from slack_sdk.signature import SignatureVerifier

MAX_CLOCK_SKEW_SECONDS: Final = 60 * 5
NOT_CONFIGURED: Final = "not-configured"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verification_failure(
    headers: Mapping[str, str],
    body: bytes,
    signing_secret: str,
    *,
    clock: Callable[[], float] = time.time,
) -> str | None:
    """None when the request is Slack's, else the reason it is not (never the secret)."""
    if not signing_secret or signing_secret == NOT_CONFIGURED:
        return "the Slack signing secret is not configured"
    timestamp = _header(headers, "X-Slack-Request-Timestamp")
    signature = _header(headers, "X-Slack-Signature")
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    try:
        age = abs(clock() - int(timestamp))
    except ValueError:
        return "X-Slack-Request-Timestamp is not a number"
    if age > MAX_CLOCK_SKEW_SECONDS:
        return "stale X-Slack-Request-Timestamp (more than 5 minutes off)"
    verifier = SignatureVerifier(signing_secret, clock=_Clock(clock))  # type: ignore[arg-type]
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        return "signature mismatch"
    return None


class _Clock:
    """slack_sdk's verifier takes a clock object with ``now()`` (duck-typed: its Clock is a class)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock()
