"""The Slack Web API client: one slack_sdk ``WebClient`` per process.

* base URL from ``SLACK_API_URL`` (stand-ins, proxies), token from ``SLACK_BOT_TOKEN`` (a secret,
  fetched lazily: ``SLACK_BOT_TOKEN_SECRET_ID`` in AWS);
* explicit timeout; HTTP 429 retried by slack_sdk's ``RateLimitErrorRetryHandler`` (which sleeps
  for ``Retry-After``), connection errors by its ``ConnectionErrorRetryHandler``;
* ``call_slack`` puts every call behind the ``slack`` circuit breaker, so a Slack outage fails
  fast instead of holding every worker for its full timeout.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from insightmesh.config import get_secret
from insightmesh.resilience import CircuitBreaker, breaker_for

T = TypeVar("T")
DEFAULT_API_URL: Final = "https://slack.com/api/"
TIMEOUT_SECONDS: Final = 10

_lock = threading.Lock()
_client: WebClient | None = None
_identity: BotIdentity | None = None


class SlackNotConfiguredError(RuntimeError):
    pass


@dataclass(frozen=True)
class BotIdentity:
    user_id: str
    bot_id: str
    team_id: str


def api_url() -> str:
    url = os.environ.get("SLACK_API_URL") or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


def get_slack_client() -> WebClient:
    global _client
    with _lock:
        if _client is None:
            token = get_secret("SLACK_BOT_TOKEN", default="")
            if not token or token == "not-configured":  # noqa: S105 - the template's placeholder
                raise SlackNotConfiguredError("SLACK_BOT_TOKEN is not configured")
            _client = WebClient(
                token=token,
                base_url=api_url(),
                timeout=TIMEOUT_SECONDS,
                retry_handlers=[
                    ConnectionErrorRetryHandler(max_retry_count=2),
                    RateLimitErrorRetryHandler(max_retry_count=3),
                ],
            )
        return _client


class SlackRequestRefused(Exception):
    """Slack answered ``ok: false`` (not a 5xx): the request was wrong, Slack is up."""

    def __init__(self, error: SlackApiError) -> None:
        super().__init__(str(error))
        self.error = error


def slack_breaker() -> CircuitBreaker:
    return breaker_for("slack", failure_threshold=5, cool_down=30.0, answered=(SlackRequestRefused,))


def call_slack(fn: Callable[[WebClient], T]) -> T:
    """Run one Web API call through the ``slack`` breaker; re-raises Slack's own SlackApiError."""
    client = get_slack_client()

    def attempt() -> T:
        try:
            return fn(client)
        except SlackApiError as error:
            if getattr(error.response, "status_code", 200) >= 500:
                raise
            raise SlackRequestRefused(error) from error

    try:
        return slack_breaker().call(attempt)
    except SlackRequestRefused as refused:
        raise refused.error from None


def bot_identity() -> BotIdentity:
    """Who the bot is, from auth.test, asked once per process."""
    global _identity
    if _identity is None:
        response = call_slack(lambda client: client.auth_test())
        _identity = BotIdentity(
            user_id=str(response.get("user_id", "")),
            bot_id=str(response.get("bot_id", "")),
            team_id=str(response.get("team_id", "")),
        )
    return _identity


def reset_for_tests() -> None:
    global _client, _identity
    with _lock:
        _client = None
        _identity = None
