"""``web_search``: a query in, up to 10 hits (title, URL, snippet) out, through a provider.

Providers (``WEB_SEARCH_PROVIDER``, see :mod:`insightmesh.tools.settings`), each one HTTP call:

* **Tavily** — ``POST {base}/search`` with ``Authorization: Bearer <key>`` and
  ``{"query", "max_results", "search_depth": "basic", "include_answer": false}``; answers
  ``{"results": [{"title", "url", "content", "score"}, ...]}``. The API is that one call, so the
  ``tavily-python`` SDK (which wraps it with ``requests``, a second HTTP stack without our
  timeouts, retries or breaker) is not used.
* **Brave Search** — ``GET {base}/res/v1/web/search?q=&count=`` with ``X-Subscription-Token``;
  answers ``{"web": {"results": [{"title", "url", "description"}, ...]}}`` (the description
  marks the matched words with ``<strong>``, removed here).
* **SearXNG** — ``GET {base}/search?q=&format=json`` (the instance must enable the JSON format);
  answers ``{"results": [{"title", "url", "content"}, ...]}``. It returns a page of ~20 and has
  no size parameter, so the list is cut here.
* **offline** — deterministic placeholder hits under ``https://example.invalid/`` (a reserved
  name that resolves nowhere), and the tool's text says they are not real, so an answer built
  on them cannot pass for research. Refused in production.

One ``httpx.Client`` per process for every provider (its pool reused), explicit timeouts, at most
3 attempts with backoff honouring ``Retry-After`` (429 and 5xx, transport errors), and a breaker
per provider (``web_search:<provider>``; a 4xx other than 429 is the provider answering, not down).
"""

from __future__ import annotations

import hashlib
import html
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

import httpx
from pydantic import BaseModel, Field

from insightmesh import __version__
from insightmesh.config import ConfigurationError, get_secret
from insightmesh.resilience import RetryableError, RetryPolicy, breaker_for
from insightmesh.tools.base import Source, ToolContext, ToolError, ToolOutput
from insightmesh.tools.http_json import call_resilient, read_json
from insightmesh.tools.settings import (
    KEY_PLACEHOLDER,
    KEY_REQUIRED,
    WebSearchProvider,
    WebSearchSettings,
    web_search_settings,
)

MAX_RESULTS: Final = 10
MAX_SNIPPET_CHARS: Final = 500
MAX_TITLE_CHARS: Final = 200
MAX_RESPONSE_BYTES: Final = 2 * 1024 * 1024
OFFLINE_NOTICE: Final = (
    "[offline web search] WEB_SEARCH_PROVIDER=offline: these are placeholder results, not pages from the "
    "web; nothing was searched. Do not present them as research findings."
)
_TAG: Final = re.compile(r"<[^>]{0,200}>")
_SPACE: Final = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class SearchHit:
    title: str
    url: str
    snippet: str


class WebSearchError(ToolError):
    """The provider refused or failed; the message is safe to show (no key, no body)."""


class SearchProvider(Protocol):
    name: str

    def search(self, query: str, max_results: int) -> list[SearchHit]:
        """At most ``max_results`` hits for ``query``; WebSearchError on failure."""
        ...


# -- the shared HTTP client ----------------------------------------------------------------------

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def http_client() -> httpx.Client:
    """The process-wide client of every search provider (each request sets its own timeout)."""
    global _client
    with _client_lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(
                follow_redirects=False,
                headers={"User-Agent": f"InsightMesh/{__version__} (+web search)", "Accept": "application/json"},
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
                timeout=httpx.Timeout(10.0, connect=3.0),
            )
        return _client


def close_http_client() -> None:
    global _client
    with _client_lock:
        client, _client = _client, None
    if client is not None:
        client.close()


def _clean(text: object, limit: int) -> str:
    if not isinstance(text, str):
        return ""
    return _SPACE.sub(" ", html.unescape(_TAG.sub("", text))).strip()[:limit]


def _hit(title: object, url: object, snippet: object) -> SearchHit | None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    return SearchHit(_clean(title, MAX_TITLE_CHARS) or url, url, _clean(snippet, MAX_SNIPPET_CHARS))


class HttpSearchProvider:
    """One GET or POST per search through the shared client, the retry policy and the breaker."""

    name: str = "http"

    def __init__(self, *, base_url: str, api_key: Callable[[], str], timeout: httpx.Timeout,
                 retry: RetryPolicy | None = None, client: Callable[[], httpx.Client] = http_client) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retry = retry or RetryPolicy(attempts=3, base_delay=0.3, max_delay=2.0, max_retry_after=5.0)
        self.client = client
        self.breaker = breaker_for(f"web_search:{self.name}", failure_threshold=5, cool_down=30.0,
                                   answered=(WebSearchError,))

    def search(self, query: str, max_results: int) -> list[SearchHit]:
        max_results = max(1, min(max_results, MAX_RESULTS))
        payload = call_resilient(lambda: self._call(query, max_results), breaker=self.breaker, retry=self.retry,
                                 service=f"web search ({self.name})", error=WebSearchError)
        return self.parse(payload)[:max_results]

    def request(self, query: str, max_results: int) -> httpx.Request:
        raise NotImplementedError

    def parse(self, payload: Any) -> list[SearchHit]:
        raise NotImplementedError

    def _call(self, query: str, max_results: int) -> Any:
        request = self.request(query, max_results)
        request.extensions["timeout"] = self.timeout.as_dict()
        try:
            response = self.client().send(request, stream=True)
        except httpx.TransportError as error:
            raise RetryableError(f"{type(error).__name__}") from error
        service = f"web search ({self.name})"
        try:
            return read_json(response, service=service, error=WebSearchError, max_bytes=MAX_RESPONSE_BYTES,
                             refusal=lambda status: f"{service} refused the query: HTTP {status}"
                             + (" (check WEB_SEARCH_API_KEY)" if status in (401, 403) else ""),
                             too_large=f"{service} answered more than {MAX_RESPONSE_BYTES} bytes")
        finally:
            response.close()

    def _key_headers(self, header: str, prefix: str = "") -> dict[str, str]:
        key = self.api_key()
        return {header: f"{prefix}{key}"} if key else {}


def _results(payload: Any, *path: str) -> list[Mapping[str, Any]]:
    node = payload
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return [item for item in node if isinstance(item, dict)] if isinstance(node, list) else []


class TavilyProvider(HttpSearchProvider):
    name = "tavily"

    def request(self, query: str, max_results: int) -> httpx.Request:
        return self.client().build_request(
            "POST", f"{self.base_url}/search",
            json={"query": query, "max_results": max_results, "search_depth": "basic", "include_answer": False},
            headers=self._key_headers("Authorization", "Bearer "))

    def parse(self, payload: Any) -> list[SearchHit]:
        hits = (_hit(item.get("title"), item.get("url"), item.get("content")) for item in _results(payload, "results"))
        return [hit for hit in hits if hit is not None]


class BraveProvider(HttpSearchProvider):
    name = "brave"

    def request(self, query: str, max_results: int) -> httpx.Request:
        return self.client().build_request(
            "GET", f"{self.base_url}/res/v1/web/search", params={"q": query, "count": max_results},
            headers=self._key_headers("X-Subscription-Token"))

    def parse(self, payload: Any) -> list[SearchHit]:
        hits = (_hit(item.get("title"), item.get("url"), item.get("description"))
                for item in _results(payload, "web", "results"))
        return [hit for hit in hits if hit is not None]


class SearxngProvider(HttpSearchProvider):
    name = "searxng"

    def request(self, query: str, max_results: int) -> httpx.Request:
        return self.client().build_request(
            "GET", f"{self.base_url}/search", params={"q": query, "format": "json"},
            headers=self._key_headers("Authorization", "Bearer "))

    def parse(self, payload: Any) -> list[SearchHit]:
        hits = (_hit(item.get("title"), item.get("url"), item.get("content")) for item in _results(payload, "results"))
        return [hit for hit in hits if hit is not None]


class OfflineProvider:
    """Placeholder hits derived from the query alone; they point at nothing real."""

    name = "offline"

    def search(self, query: str, max_results: int) -> list[SearchHit]:
        digest = hashlib.sha256(query.encode()).hexdigest()[:10]
        topic = _clean(query, 80) or "the query"
        return [
            SearchHit(title=f"[offline] Placeholder result {n} for {topic}",
                      url=f"https://example.invalid/offline-search/{digest}/{n}",
                      snippet="Offline web search: no web page was searched; this placeholder has no content.")
            for n in range(1, max(1, min(max_results, MAX_RESULTS, 3)) + 1)
        ]


_PROVIDERS: Final[dict[WebSearchProvider, type[HttpSearchProvider]]] = {
    WebSearchProvider.TAVILY: TavilyProvider,
    WebSearchProvider.BRAVE: BraveProvider,
    WebSearchProvider.SEARXNG: SearxngProvider,
}


def web_search_api_key() -> str:
    """``WEB_SEARCH_API_KEY`` (env, Secrets Manager or SSM, cached); empty when not configured."""
    from aws_lambda_powertools.utilities.parameters import GetParameterError

    try:
        value = get_secret("WEB_SEARCH_API_KEY", default="").strip()
    except GetParameterError as error:
        raise WebSearchError("web search is unavailable: its API key could not be read") from error
    return "" if value == KEY_PLACEHOLDER else value


def build_provider(settings: WebSearchSettings) -> SearchProvider:
    """The provider ``settings`` describe; ConfigurationError when a required key is missing."""
    provider = settings.WEB_SEARCH_PROVIDER
    if provider is WebSearchProvider.OFFLINE:
        return OfflineProvider()
    if provider in KEY_REQUIRED and not web_search_api_key():
        raise ConfigurationError(
            f"WEB_SEARCH_API_KEY: not set (WEB_SEARCH_PROVIDER={provider.value} needs an API key; set "
            "WEB_SEARCH_API_KEY, WEB_SEARCH_API_KEY_SECRET_ID or WEB_SEARCH_API_KEY_PARAMETER)")
    timeout = httpx.Timeout(settings.WEB_SEARCH_TIMEOUT_SECONDS, connect=settings.WEB_SEARCH_CONNECT_TIMEOUT_SECONDS)
    return _PROVIDERS[provider](base_url=settings.base_url, api_key=web_search_api_key, timeout=timeout)


_provider: SearchProvider | None = None
_provider_lock = threading.Lock()


def get_provider() -> SearchProvider:
    """The process's provider, built from the environment on first use (validated then)."""
    global _provider
    with _provider_lock:
        if _provider is None:
            _provider = build_provider(web_search_settings())
        return _provider


def reset_provider() -> None:
    """Forget the provider (tests change the environment)."""
    global _provider
    with _provider_lock:
        _provider = None


class WebSearchParameters(BaseModel):
    query: str = Field(min_length=1, max_length=400, description="What to search the web for.")
    max_results: int = Field(default=5, ge=1, le=MAX_RESULTS, description="How many results (1-10).")


class WebSearchTool:
    name: ClassVar[str] = "web_search"
    description: ClassVar[str] = (
        "Search the public web. Returns titles, URLs and snippets; read a page with read_url before "
        "relying on it, and cite the results you use.")
    parameters: ClassVar[type[BaseModel]] = WebSearchParameters
    timeout_seconds: ClassVar[float] = 30.0

    def __init__(self, provider: SearchProvider | None = None) -> None:
        self._provider = provider

    def allowed(self, context: ToolContext) -> bool:
        # The public web: anyone may search it where admins enabled the tool (context.enabled).
        return context.enables(self.name)

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        if not isinstance(arguments, WebSearchParameters):
            arguments = WebSearchParameters.model_validate(arguments.model_dump())
        provider = self._provider or get_provider()
        context.progress(f"Searching the web for “{_clean(arguments.query, 80)}”")
        hits = provider.search(arguments.query, arguments.max_results)
        offline = provider.name == "offline"
        lines = [OFFLINE_NOTICE] if offline else []
        if not hits:
            lines.append(f"No web results for {arguments.query!r}.")
        for number, hit in enumerate(hits, 1):
            lines.append(f"{number}. {hit.title}\n   {hit.url}\n   {hit.snippet}".rstrip())
        sources = tuple(Source(title=hit.title, url=hit.url, kind="web", snippet=hit.snippet) for hit in hits)
        return ToolOutput(text="\n".join(lines), sources=sources)
