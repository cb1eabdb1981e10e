"""The Slack Web API client: one slack_sdk ``WebClient`` per process.

* base URL from ``SLACK_API_URL`` (stand-ins, proxies), token from ``SLACK_BOT_TOKEN`` (a secret,
  fetched lazily: ``SLACK_BOT_TOKEN_SECRET_ID`` in AWS);
* explicit timeout; HTTP 429 retried by slack_sdk's ``RateLimitErrorRetryHandler`` (which sleeps
  for ``Retry-After``) — each retry logged and counted per thread (``rate_limit_retries()``, so a
  job can report how often it was throttled) — connection errors by its ``ConnectionErrorRetryHandler``,
  and 5xx twice with backoff for the idempotent methods only (:class:`IdempotentServerErrorRetryHandler`);
* ``call_slack`` puts every call behind the ``slack`` circuit breaker, so a Slack outage fails
  fast instead of holding every worker for its full timeout;
* with tracing on, every Web API call is a client span ``slack {method}`` (:class:`TracedWebClient`,
  around slack_sdk's one choke point ``api_call``, its retries inside): ``slack.method``,
  ``slack.ok``, ``slack.error`` (Slack's error code) and ``http.response.status_code`` — never the
  token or the message text.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.slack_response import SlackResponse

from insightmesh import tracing
from insightmesh.config import get_secret
from insightmesh.observability import get_logger
from insightmesh.resilience import CircuitBreaker, breaker_for

T = TypeVar("T")
DEFAULT_API_URL: Final = "https://slack.com/api/"
TIMEOUT_SECONDS: Final = 10

_lock = threading.Lock()
_client: WebClient | None = None
_identity: BotIdentity | None = None
_stale = False  # set by reset(): the next client reads the token past the secret cache
_retries = threading.local()  # .count: 429s this thread's calls retried


# Methods that change nothing, or set a message to a given state: sending one twice shows nothing
# twice. chat.postMessage and chat.postEphemeral are not here — a 5xx may hide a message Slack did
# post, and the worker recovers those by their metadata instead (conversation.replies).
IDEMPOTENT_METHODS: Final = frozenset({
    "auth.test", "chat.update", "chat.delete", "conversations.info", "conversations.members",
    "conversations.replies", "users.info", "users.list",
})
SERVER_ERRORS: Final = frozenset({500, 502, 503, 504})


def _method(request: HttpRequest) -> str:
    return request.url.rsplit("/", 1)[-1].split("?", 1)[0]


class IdempotentServerErrorRetryHandler(ServerErrorRetryHandler):
    """Slack's 5xx retried with backoff, for :data:`IDEMPOTENT_METHODS` only: one failed
    chat.update would otherwise fail the request and hold its whole thread on the queue until the
    visibility timeout."""

    def _can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        if response is None or response.status_code not in SERVER_ERRORS or _method(request) not in IDEMPOTENT_METHODS:
            return False
        get_logger().warning("slack server error; retrying", extra={"slack_method": _method(request),
                                                                     "status": response.status_code,
                                                                     "attempt": state.current_attempt + 1})
        return True


class ObservedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (it sleeps for ``Retry-After``), plus a log line and a per-thread
    count of every retry it makes."""

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None, error: Exception | None = None) -> None:
        if response is not None:
            values = next((value for name, value in response.headers.items() if name.lower() == "retry-after"), [])
            retry_after = values[0] if values else None  # slack_sdk keeps every header as a list
            _retries.count = rate_limit_retries() + 1
            method = _method(request)
            get_logger().warning("slack rate limited; retrying after Retry-After",
                                 extra={"slack_method": method, "retry_after": retry_after,
                                        "attempt": state.current_attempt + 1})
        super().prepare_for_next_attempt(state=state, request=request, response=response, error=error)


def rate_limit_retries() -> int:
    """How many HTTP 429s this thread's Slack calls have retried since it started (monotonic;
    a caller takes the difference over its own calls)."""
    count: int = getattr(_retries, "count", 0)
    return count


class TracedWebClient(WebClient):
    """slack_sdk's ``WebClient`` with a client span per Web API call when tracing is on (see the
    module docstring); off, ``api_call`` is slack_sdk's own after one check."""

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        if not tracing.enabled():
            return super().api_call(api_method, **kwargs)
        with tracing.span(f"slack {api_method}", kind="client") as span:
            span.set_attribute("slack.method", api_method)
            try:
                response = super().api_call(api_method, **kwargs)
            except SlackApiError as error:
                _record_response(span, error.response)
                raise
            _record_response(span, response)
            return response


def _record_response(span: tracing.Span, response: SlackResponse) -> None:
    """Slack's verdict on the span: ``ok``, its error code (status ERROR) and the HTTP status."""
    data = response.data if isinstance(response.data, dict) else {}
    ok = bool(data.get("ok", response.status_code == 200))
    span.set_attributes({"slack.ok": ok, "http.response.status_code": int(response.status_code)})
    if not ok:
        code = str(data.get("error") or f"HTTP {response.status_code}")
        span.set_attributes({"slack.error": code, "error.type": code})
        span.set_error(code)


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


def bot_token(*, fresh: bool = False) -> str:
    """The bot token; ``fresh``: read past the secret cache (a reinstall puts a new token in the
    secret, and an uninstalled workspace's cached token is dead)."""
    secret_id = os.environ.get("SLACK_BOT_TOKEN_SECRET_ID")
    if fresh and secret_id and not os.environ.get("SLACK_BOT_TOKEN"):
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_secret(secret_id, force_fetch=True)
        return value if isinstance(value, str) else value.decode()
    return get_secret("SLACK_BOT_TOKEN", default="")


def get_slack_client() -> WebClient:
    global _client, _stale
    with _lock:
        if _client is None:
            token = bot_token(fresh=_stale)
            _stale = False
            if not token or token == "not-configured":  # noqa: S105 - the template's placeholder
                raise SlackNotConfiguredError("SLACK_BOT_TOKEN is not configured")
            _client = TracedWebClient(
                token=token,
                base_url=api_url(),
                timeout=TIMEOUT_SECONDS,
                retry_handlers=[
                    ConnectionErrorRetryHandler(max_retry_count=2),
                    ObservedRateLimitRetryHandler(max_retry_count=3),
                    IdempotentServerErrorRetryHandler(max_retry_count=2),
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


def reset() -> None:
    """Drop the cached client (with its token) and the bot identity: the workspace was uninstalled
    or its token revoked. The next client reads the token from the secret again."""
    global _client, _identity, _stale
    with _lock:
        _client = None
        _identity = None
        _stale = True


def reset_for_tests() -> None:
    global _client, _identity
    with _lock:
        _client = None
        _identity = None
