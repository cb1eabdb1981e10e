"""The web tools' environment: one pydantic-settings model per tool, validated once per process
on the tool's first use (a function that never searches the web never reads these).

``web_search`` (:class:`WebSearchSettings`):

* ``WEB_SEARCH_PROVIDER`` (``offline``): ``offline``, ``tavily``, ``brave`` or ``searxng``.
  ``offline`` answers placeholder hits that say so; like the offline LLM it is a development
  default and **refused in production**.
* ``WEB_SEARCH_URL`` (the provider's: ``https://api.tavily.com``, ``https://api.search.brave.com``;
  SearXNG has none — it is your own instance, so it is required): https only in production.
* ``WEB_SEARCH_API_KEY`` (a secret, read like ``LLM_API_KEY``: the variable, else
  ``WEB_SEARCH_API_KEY_SECRET_ID`` — what the template sets — else ``WEB_SEARCH_API_KEY_PARAMETER``);
  required by Tavily and Brave. Read lazily, per request, from the secrets cache.
* ``WEB_SEARCH_TIMEOUT_SECONDS`` (``10``), ``WEB_SEARCH_CONNECT_TIMEOUT_SECONDS`` (``3``).

``read_url`` (:class:`ReadUrlSettings`):

* ``READ_URL_ALLOW_HOSTS`` (empty): comma-separated ``host[:port]`` whose addresses are not
  checked — loopback stand-ins for tests and ``insightmesh dev``. **Refused in production.**
* ``READ_URL_MAX_BYTES`` (5 MB), ``READ_URL_TIMEOUT_SECONDS`` (15, the whole fetch with its
  redirects), ``READ_URL_MAX_REDIRECTS`` (5), ``READ_URL_MAX_CHARS`` (20,000 characters of text
  for the model), ``READ_URL_MAX_PDF_PAGES`` (50).
* ``READ_URL_CONTACT`` (empty): who to contact about the agent's requests, put in its
  User-Agent ``InsightMesh/<version> (+research agent; contact: <contact>)``.

``sec_filings`` (:class:`SecSettings`):

* ``SEC_USER_AGENT``: SEC requires a User-Agent naming the requester and a contact e-mail
  ("Acme Research admin@acme.example"); required when the tool is used.
* ``SEC_EDGAR_URL`` (unset): one base URL that replaces all three of SEC's hosts
  (``efts.sec.gov`` full-text search, ``www.sec.gov`` files and archives, ``data.sec.gov``
  XBRL), so tests point the tool at a stand-in. https only in production.

An empty value means "not set" (the template passes empty parameters through).
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Final
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from insightmesh import __version__
from insightmesh.config import Environment, load_settings

MB: Final = 1024 * 1024
# What the template's Secrets Manager secret holds until someone sets the parameter.
KEY_PLACEHOLDER: Final = "not-configured"


class WebSearchProvider(StrEnum):
    OFFLINE = "offline"
    TAVILY = "tavily"
    BRAVE = "brave"
    SEARXNG = "searxng"


DEFAULT_SEARCH_URLS: Final[dict[WebSearchProvider, str]] = {
    WebSearchProvider.TAVILY: "https://api.tavily.com",
    WebSearchProvider.BRAVE: "https://api.search.brave.com",
}
KEY_REQUIRED: Final = frozenset({WebSearchProvider.TAVILY, WebSearchProvider.BRAVE})


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _check_base_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL such as https://api.tavily.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not have a query string, fragment or credentials")
    return value.strip().rstrip("/")


_CONFIG: Final = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)


class WebSearchSettings(BaseSettings):
    model_config = _CONFIG

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    WEB_SEARCH_PROVIDER: WebSearchProvider = WebSearchProvider.OFFLINE
    WEB_SEARCH_URL: str | None = None
    WEB_SEARCH_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=60)
    WEB_SEARCH_CONNECT_TIMEOUT_SECONDS: float = Field(default=3.0, gt=0, le=30)

    @field_validator("WEB_SEARCH_URL", mode="before")
    @classmethod
    def _blank(cls, value: object) -> object:
        return _blank_is_none(value)

    @field_validator("WEB_SEARCH_URL")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_base_url(value)

    @model_validator(mode="after")
    def _check(self) -> WebSearchSettings:
        provider = self.WEB_SEARCH_PROVIDER
        if provider is WebSearchProvider.SEARXNG and self.WEB_SEARCH_URL is None:
            raise ValueError("WEB_SEARCH_URL: WEB_SEARCH_PROVIDER=searxng needs the URL of your SearXNG instance")
        if self.ENVIRONMENT is Environment.PRODUCTION:
            if provider is WebSearchProvider.OFFLINE:
                raise ValueError("WEB_SEARCH_PROVIDER=offline is a development default and is refused in production")
            if self.base_url.startswith("http://"):
                raise ValueError("WEB_SEARCH_URL must use https in production")
        return self

    @property
    def base_url(self) -> str:
        return self.WEB_SEARCH_URL or DEFAULT_SEARCH_URLS.get(self.WEB_SEARCH_PROVIDER, "")


class ReadUrlSettings(BaseSettings):
    model_config = _CONFIG

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    READ_URL_ALLOW_HOSTS: Annotated[tuple[str, ...], NoDecode] = ()
    READ_URL_MAX_BYTES: int = Field(default=5 * MB, ge=1024, le=50 * MB)
    READ_URL_TIMEOUT_SECONDS: float = Field(default=15.0, gt=0, le=120)
    READ_URL_MAX_REDIRECTS: int = Field(default=5, ge=0, le=10)
    READ_URL_MAX_CHARS: int = Field(default=20_000, ge=500, le=200_000)
    READ_URL_MAX_PDF_PAGES: int = Field(default=50, ge=1, le=2_000)
    READ_URL_CONTACT: str = Field(default="", max_length=200)

    @field_validator("READ_URL_ALLOW_HOSTS", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().lower() for part in value.split(",") if part.strip())
        return value

    @field_validator("READ_URL_ALLOW_HOSTS")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            parts = urlsplit(f"//{entry}")
            try:
                port = parts.port
            except ValueError as error:
                raise ValueError(f"{entry!r} is not host[:port]") from error
            if not parts.hostname or parts.path or parts.username or (port is not None and port <= 0):
                raise ValueError(f"{entry!r} is not host[:port]")
        return value

    @field_validator("READ_URL_CONTACT")
    @classmethod
    def _contact(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n()"):
            raise ValueError("must be one line without parentheses (it goes into the User-Agent)")
        return value.strip()

    @model_validator(mode="after")
    def _check(self) -> ReadUrlSettings:
        if self.ENVIRONMENT is Environment.PRODUCTION and self.READ_URL_ALLOW_HOSTS:
            raise ValueError(
                "READ_URL_ALLOW_HOSTS admits private addresses (loopback stand-ins) and is refused in production"
            )
        return self

    @property
    def user_agent(self) -> str:
        contact = f"; contact: {self.READ_URL_CONTACT}" if self.READ_URL_CONTACT else ""
        return f"InsightMesh/{__version__} (+research agent{contact})"


class SecSettings(BaseSettings):
    model_config = _CONFIG

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    SEC_USER_AGENT: str | None = Field(default=None, max_length=200)
    SEC_EDGAR_URL: str | None = None
    SEC_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=60)
    SEC_REQUESTS_PER_SECOND: float = Field(default=10.0, gt=0, le=10)  # SEC's fair-access ceiling

    @field_validator("SEC_USER_AGENT", "SEC_EDGAR_URL", mode="before")
    @classmethod
    def _blank(cls, value: object) -> object:
        return _blank_is_none(value)

    @field_validator("SEC_USER_AGENT")
    @classmethod
    def _agent(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if "@" not in value or any(ch in value for ch in "\r\n"):
            raise ValueError("must name the requester and a contact e-mail, e.g. 'Acme Research admin@acme.example'")
        return value

    @field_validator("SEC_EDGAR_URL")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_base_url(value)

    @model_validator(mode="after")
    def _check(self) -> SecSettings:
        if (self.ENVIRONMENT is Environment.PRODUCTION and self.SEC_EDGAR_URL
                and self.SEC_EDGAR_URL.startswith("http://")):
            raise ValueError("SEC_EDGAR_URL must use https in production")
        return self

    def base(self, host: str) -> str:
        """The base URL of SEC's ``host`` (``efts``, ``www`` or ``data``), or ``SEC_EDGAR_URL``."""
        return self.SEC_EDGAR_URL or f"https://{host}.sec.gov"


@lru_cache(maxsize=1)
def web_search_settings() -> WebSearchSettings:
    """Validated once per process; ConfigurationError names the variable at fault."""
    return load_settings(WebSearchSettings)


@lru_cache(maxsize=1)
def read_url_settings() -> ReadUrlSettings:
    return load_settings(ReadUrlSettings)


@lru_cache(maxsize=1)
def sec_settings() -> SecSettings:
    return load_settings(SecSettings)


def check_cold_start() -> None:
    """Validate, at a function's cold start, what production must refuse before any request:
    ``READ_URL_ALLOW_HOSTS`` (ConfigurationError naming it). Web search and SEC settings are
    validated on the tools' first use, so a stack that enables neither needs neither configured."""
    read_url_settings()


def clear_caches() -> None:
    """Forget the validated settings (tests)."""
    web_search_settings.cache_clear()
    read_url_settings.cache_clear()
    sec_settings.cache_clear()
