"""Google REST APIs for the job types: plain httpx GETs with retries, a breaker and one token refresh.

Shared by ``google_workspace_sync`` (Admin SDK Directory API) and ``gdrive_ingest`` (Drive API v3).
Why not ``google-api-python-client``: it is not a dependency of the layer (it would pull in httplib2,
uritemplate and google-auth for a few GETs), its discovery-document client is untyped, and its
transport bypasses the layer's resilience.

* **One client per process** (:func:`http_client`, connection pool reused) with explicit timeouts.
* **Every call** goes through the API's circuit breaker (:func:`api_breaker`) and a bounded
  :class:`~insightmesh.resilience.RetryPolicy` (``ATTEMPTS`` calls in all): HTTP 429, 5xx, Google's
  rate-limit 403s (``rateLimitExceeded``, ``userRateLimitExceeded``, ``quotaExceeded``) and transport
  errors are retried with backoff, honouring ``Retry-After`` (a demand longer than 30 s is not
  waited for: the call fails). Each retry is logged and counted (:attr:`GoogleApi.retries`). A 429
  or rate-limit 403 proves the API is up: it never counts against the breaker.
* **A 401** fetches the access token again once (it may have been refreshed since) and repeats the
  call (:attr:`GoogleApi.reauthentications`); a second 401 raises :class:`GoogleAuthError`.
* **Other 4xx** raise :class:`GoogleApiError` with the status and Google's ``error.errors[0].reason``.
* **Bodies are read with a cap**: a download larger than ``max_bytes`` is abandoned after
  ``max_bytes + 1`` bytes (or at once from ``Content-Length``) and raises :class:`ContentTooLarge`.

The access token comes from the caller (an :class:`AccessTokenProvider`): a job type's is its
context's ``credential_token`` (the runner resolves the stored credential), or one a test injects.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import httpx

from insightmesh.observability import get_logger
from insightmesh.resilience import (
    CircuitBreaker,
    RetryableError,
    RetryPolicy,
    Timeouts,
    breaker_for,
    call_with_resilience,
    parse_retry_after,
)

TIMEOUTS: Final = Timeouts(connect=3.0, read=20.0)
ATTEMPTS: Final = 4
MAX_RETRY_AFTER: Final = 30.0
RATE_LIMIT_REASONS: Final = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
MAX_JSON_BYTES: Final = 64 * 1024 * 1024  # a JSON answer larger than this is refused (a listing page is ~MBs)
MAX_ERROR_BYTES: Final = 64 * 1024  # of an error body, enough for Google's envelope
USER_AGENT: Final = "insightmesh-jobs/1 (google-api)"


# -- errors and the token --------------------------------------------------------------------------


class GoogleApiError(Exception):
    """A Google API refused a request (or kept failing after the retries)."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class GoogleAuthError(GoogleApiError):
    """HTTP 401 again with a freshly fetched access token: the credential needs attention."""


class ContentTooLarge(GoogleApiError):
    """The body is larger than the caller's ``max_bytes`` (not read further)."""


class RateLimited(RetryableError):
    """429 (or a rate-limit 403): Google answered, it is busy — retried, not a breaker failure."""


class AccessTokenProvider(Protocol):
    def __call__(self, credential_id: str, *, required_scopes: Sequence[str]) -> str: ...



def api_url(variable: str, default: str) -> str:
    """An API's base URL: the environment variable ``variable`` (a stand-in locally), else ``default``."""
    return (os.environ.get(variable) or default).rstrip("/")


# -- the client and the breakers -------------------------------------------------------------------

_http_lock = threading.Lock()
_http: httpx.Client | None = None


def http_client() -> httpx.Client:
    """The process-wide client of the Google APIs (its connection pool is reused)."""
    global _http
    with _http_lock:
        if _http is None or _http.is_closed:
            _http = httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT},
                                 timeout=httpx.Timeout(TIMEOUTS.read, connect=TIMEOUTS.connect))
        return _http


def api_breaker(name: str) -> CircuitBreaker:
    """The process-wide breaker of one Google API (rate limiting is an answer, not a failure)."""
    return breaker_for(name, failure_threshold=5, cool_down=30.0, answered=(RateLimited,))


# -- answers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiPage:
    items: list[Mapping[str, Any]]
    next_token: str  # "" on the last page


@dataclass(frozen=True)
class Reply:
    """One HTTP answer, its body read (at most the cap + 1 bytes)."""

    status: int
    headers: httpx.Headers
    content: bytes
    truncated: bool = False  # the body was larger than the cap: ``content`` is incomplete

    @property
    def media_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.split(";", 1)[0].strip().lower() or None if value else None

    def error_body(self) -> Mapping[str, Any]:
        try:
            payload = json.loads(self.content)
        except ValueError:  # not JSON, or not UTF-8
            return {}
        error = payload.get("error") if isinstance(payload, dict) else None
        return error if isinstance(error, Mapping) else {}

    def reason(self) -> str | None:
        """Google's ``error.errors[0].reason`` (``authError``, ``notFound``, ``rateLimitExceeded``...)."""
        body = self.error_body()
        errors = body.get("errors")
        first = errors[0] if isinstance(errors, list) and errors else None
        reason = first.get("reason") if isinstance(first, Mapping) else body.get("status")
        return reason[:64] if isinstance(reason, str) else None

    def message(self) -> str:
        message = self.error_body().get("message")
        return message[:200] if isinstance(message, str) else ""


def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body; ``True`` when there was more (the rest is not read)."""
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return b"", True
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


# -- one API ---------------------------------------------------------------------------------------


class GoogleApi:
    """GETs against one Google REST API (``service`` names it in errors and logs): see the module doc."""

    def __init__(self, *, service: str, base_url: str, token: Callable[[], str], http: httpx.Client,
                 breaker: CircuitBreaker, attempts: int = ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep, timeouts: Timeouts = TIMEOUTS) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._fetch_token = token
        self._token: str | None = None
        self.http = http
        self.breaker = breaker
        self._sleep = sleep
        self.timeouts = timeouts
        self.policy = RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=8.0, max_retry_after=MAX_RETRY_AFTER,
                                  retry_on=(RetryableError,), sleep=self._wait)
        self.retries = 0
        self.reauthentications = 0
        self._last_status: int | None = None

    def page(self, path: str, key: str, params: Mapping[str, str | int | None]) -> ApiPage:
        """One page of a listing: the objects under ``key`` and ``nextPageToken``."""
        payload = self.get(path, params)
        items = payload.get(key)
        token = payload.get("nextPageToken")
        return ApiPage([item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else [],
                       token if isinstance(token, str) else "")

    def get(self, path: str, params: Mapping[str, str | int | None]) -> dict[str, Any]:
        """A JSON object (``GoogleApiError`` for an error status or a body that is not one)."""
        reply = self.fetch(path, params, accept="application/json", max_bytes=MAX_JSON_BYTES)
        try:
            payload = json.loads(reply.content)
        except ValueError as error:
            raise GoogleApiError(f"{self.service}: {path} answered with a body that is not JSON",
                                 status=reply.status) from error
        if not isinstance(payload, dict):
            raise GoogleApiError(f"{self.service}: {path} answered with a non-object body", status=reply.status)
        return payload

    def fetch(self, path: str, params: Mapping[str, str | int | None], *, accept: str = "*/*",
              max_bytes: int) -> Reply:
        """A successful answer (2xx/3xx) with its body; :class:`ContentTooLarge` past ``max_bytes``."""
        url = self.base_url + path
        query = {name: str(value) for name, value in params.items() if value is not None and value != ""}
        reply = self._send(url, query, accept, max_bytes)
        if reply.status == 401:
            get_logger().warning("Google refused the access token; fetching it again",
                                 extra={"service": self.service, "path": path})
            self._token = None
            self.reauthentications += 1
            reply = self._send(url, query, accept, max_bytes)
            if reply.status == 401:
                raise GoogleAuthError(f"{self.service}: HTTP 401 for {path} with a freshly fetched access "
                                      "token; the credential's token is invalid or revoked (reconnect it)",
                                      status=401, reason=reply.reason())
        if reply.status >= 400:
            reason = reply.reason()
            raise GoogleApiError(f"{self.service}: HTTP {reply.status} for {path}"
                                 + (f" ({reason}): {reply.message()}" if reason else ""),
                                 status=reply.status, reason=reason)
        if reply.truncated:
            raise ContentTooLarge(f"{self.service}: {path} answered with more than {max_bytes} bytes",
                                  status=reply.status, reason="tooLarge")
        return reply

    # -- one call --------------------------------------------------------------------------------

    def _token_now(self) -> str:
        if self._token is None:
            token = self._fetch_token()
            if not isinstance(token, str) or not token:
                raise GoogleAuthError("the credential gave no Google access token")
            self._token = token
        return self._token

    def _send(self, url: str, query: Mapping[str, str], accept: str, max_bytes: int) -> Reply:
        headers = {"Authorization": f"Bearer {self._token_now()}", "Accept": accept}
        timeout = httpx.Timeout(self.timeouts.read, connect=self.timeouts.connect)

        def attempt() -> Reply:
            try:
                with self.http.stream("GET", url, params=query, headers=headers, timeout=timeout) as response:
                    limit = max_bytes if response.status_code < 400 else MAX_ERROR_BYTES
                    content, truncated = _read(response, limit)
                    reply = Reply(response.status_code, response.headers, content, truncated)
            except (httpx.TransportError, httpx.DecodingError) as error:
                self._last_status = None
                raise RetryableError(f"{self.service} unreachable ({type(error).__name__})") from error
            self._last_status = reply.status
            retry_after = parse_retry_after(reply.headers.get("Retry-After"))
            if reply.status == 429 or (reply.status == 403 and reply.reason() in RATE_LIMIT_REASONS):
                raise RateLimited(f"HTTP {reply.status} (rate limited)", retry_after=retry_after)
            if reply.status >= 500:
                raise RetryableError(f"HTTP {reply.status}", retry_after=retry_after)
            return reply

        try:
            return call_with_resilience(self.breaker, attempt, retry=self.policy)
        except RetryableError as error:
            raise GoogleApiError(f"{self.service}: {url.removeprefix(self.base_url)} still failing "
                                 f"after {self.policy.attempts} attempts: {error}",
                                 status=self._last_status) from error

    def _wait(self, seconds: float) -> None:
        self.retries += 1
        get_logger().warning(f"{self.service} call failed; retrying",
                             extra={"status": self._last_status, "wait_seconds": round(seconds, 3),
                                    "retry": self.retries})
        self._sleep(seconds)
