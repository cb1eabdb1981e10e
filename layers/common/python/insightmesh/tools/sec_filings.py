"""``sec_filings``: SEC EDGAR full-text search and a company's XBRL facts.

* ``what="search"`` — ``GET https://efts.sec.gov/LATEST/search-index?q=<query>`` (the API behind
  EDGAR full-text search): ``{"hits": {"hits": [{"_id": "<accession>:<file>", "_source":
  {"ciks", "display_names", "form", "file_date", "adsh", "file_description", ...}}]}}``; each hit
  links to its document, ``https://www.sec.gov/Archives/edgar/data/<cik>/<accession without
  dashes>/<file>``.
* ``what="facts"`` — the company (a ticker, a name, or a CIK) is found in
  ``https://www.sec.gov/files/company_tickers.json`` (``{"0": {"cik_str", "ticker", "title"}}``,
  cached per process for a day), then ``https://data.sec.gov/api/xbrl/companyfacts/CIK##########.json``
  gives its reported facts; the tool keeps the latest annual (10-K, FY) values of a few concepts.

SEC's fair-access rules: a User-Agent naming the requester with a contact e-mail
(``SEC_USER_AGENT``, required when the tool is used) and at most 10 requests per second — kept
per process by :class:`RateLimiter`. ``SEC_EDGAR_URL`` replaces all three hosts (tests, stand-ins).
Like every outbound call: one client, explicit timeouts, bounded retries honouring
``Retry-After``, a breaker (``sec_edgar``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

import httpx
from pydantic import BaseModel, Field, model_validator

from insightmesh.resilience import RetryableError, RetryPolicy, breaker_for
from insightmesh.tools.base import Source, ToolContext, ToolError, ToolOutput
from insightmesh.tools.http_json import call_resilient, read_json
from insightmesh.tools.settings import SecSettings, sec_settings

MAX_HITS: Final = 10
MAX_RESPONSE_BYTES: Final = 30 * 1024 * 1024  # companyfacts of a large filer runs to ~10 MB
TICKERS_TTL_SECONDS: Final = 24 * 3600
# Concepts summarised by "facts", in order; the first of each group that the company reports wins.
CONCEPTS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("Revenue", ("Revenues", "RevenueFromContractWithCustomerExcludingAssessedTax", "SalesRevenueNet")),
    ("Net income", ("NetIncomeLoss", "ProfitLoss")),
    ("Operating income", ("OperatingIncomeLoss",)),
    ("Total assets", ("Assets",)),
    ("Stockholders' equity", ("StockholdersEquity",)),
    ("Cash and equivalents", ("CashAndCashEquivalentsAtCarryingValue",)),
    ("Diluted EPS", ("EarningsPerShareDiluted",)),
)


class SecError(ToolError):
    """EDGAR refused or failed; the message is safe to show."""


class RateLimiter:
    """At most ``rate`` calls per second in this process (SEC allows 10): each caller waits for
    its slot. Thread-safe; clock and sleep injectable."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate
        self.clock = clock
        self.sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


@dataclass(frozen=True)
class Company:
    cik: int
    ticker: str
    title: str


def _refusal(status: int) -> str:
    if status == 404:
        return "SEC EDGAR has no such record"
    hint = " (SEC refuses requests without a contact in SEC_USER_AGENT)" if status == 403 else ""
    return f"SEC EDGAR refused the request: HTTP {status}{hint}"


class EdgarClient:
    """EDGAR's JSON APIs through one client, the limiter, the retry policy and the breaker."""

    def __init__(self, settings: SecSettings, *, client: httpx.Client | None = None,
                 limiter: RateLimiter | None = None, retry: RetryPolicy | None = None) -> None:
        if not settings.SEC_USER_AGENT:
            raise SecError("sec_filings is not configured: set SEC_USER_AGENT to a name and contact e-mail, "
                           "as SEC requires (e.g. 'Acme Research admin@acme.example')")
        self.settings = settings
        self.client = client or httpx.Client(
            follow_redirects=False, headers={"User-Agent": settings.SEC_USER_AGENT, "Accept": "application/json"},
            timeout=httpx.Timeout(settings.SEC_TIMEOUT_SECONDS, connect=3.0),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=5))
        self.limiter = limiter or RateLimiter(settings.SEC_REQUESTS_PER_SECOND)
        self.retry = retry or RetryPolicy(attempts=3, base_delay=0.5, max_delay=3.0, max_retry_after=10.0)
        self.breaker = breaker_for("sec_edgar", failure_threshold=5, cool_down=60.0, answered=(SecError,))
        self._tickers: tuple[float, list[Company]] | None = None
        self._tickers_lock = threading.Lock()

    def url(self, host: str, path: str) -> str:
        return f"{self.settings.base(host)}{path}"

    def get_json(self, url: str, params: Mapping[str, str] | None = None) -> Any:
        return call_resilient(lambda: self._get(url, params), breaker=self.breaker, retry=self.retry,
                              service="SEC EDGAR", error=SecError)

    def _get(self, url: str, params: Mapping[str, str] | None) -> Any:
        self.limiter.wait()
        try:
            with self.client.stream("GET", url, params=params) as response:
                return read_json(response, service="SEC EDGAR", error=SecError, refusal=_refusal,
                                 max_bytes=MAX_RESPONSE_BYTES, too_large="SEC EDGAR answered more than the tool reads")
        except httpx.TransportError as error:
            raise RetryableError(type(error).__name__) from error

    # -- companies -----------------------------------------------------------------------------
    def companies(self) -> list[Company]:
        with self._tickers_lock:
            cached = self._tickers
            if cached is not None and time.monotonic() - cached[0] < TICKERS_TTL_SECONDS:
                return cached[1]
        payload = self.get_json(self.url("www", "/files/company_tickers.json"))
        rows = payload.values() if isinstance(payload, dict) else ()
        companies = [Company(int(row["cik_str"]), str(row.get("ticker", "")), str(row.get("title", "")))
                     for row in rows if isinstance(row, dict) and str(row.get("cik_str", "")).isdigit()]
        with self._tickers_lock:
            self._tickers = (time.monotonic(), companies)
        return companies

    def find_company(self, name: str) -> Company | None:
        """By CIK (digits), ticker (exact), then name (exact, then prefix, then containing)."""
        wanted = name.strip()
        companies = self.companies()
        if wanted.isdigit():
            return next((c for c in companies if c.cik == int(wanted)), Company(int(wanted), "", f"CIK {wanted}"))
        upper = wanted.upper()
        for company in companies:
            if company.ticker.upper() == upper:
                return company
        folded = _fold(wanted)
        for test in (lambda title: title == folded, lambda title: title.startswith(folded),
                     lambda title: folded in title):
            for company in companies:
                if test(_fold(company.title)):
                    return company
        return None


def _fold(name: str) -> str:
    name = re.sub(r"[^a-z0-9 ]", " ", name.lower())
    name = re.sub(r"\b(inc|corp|corporation|co|ltd|plc|llc|the)\b", " ", name)
    return " ".join(name.split())


def _money(value: float, unit: str) -> str:
    if unit == "USD" and abs(value) >= 1_000_000:
        if abs(value) >= 1_000_000_000:
            return f"${value / 1_000_000_000:,.2f} billion"
        return f"${value / 1_000_000:,.1f} million"
    if unit.startswith("USD"):
        return f"${value:,.2f}"
    return f"{value:,.0f} {unit}"


def _latest_annual(concept: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    units = concept.get("units")
    if not isinstance(units, dict):
        return None
    best: tuple[str, Mapping[str, Any]] | None = None
    for unit, values in units.items():
        for fact in values if isinstance(values, list) else ():
            if not isinstance(fact, dict) or fact.get("form") not in ("10-K", "10-K/A", "20-F", "40-F"):
                continue
            if fact.get("fp") not in ("FY", None) or not isinstance(fact.get("val"), int | float):
                continue
            if best is None or str(fact.get("end", "")) > str(best[1].get("end", "")):
                best = (unit, fact)
    return best


class SecFilingsParameters(BaseModel):
    query: str | None = Field(default=None, max_length=300,
                              description="Words or a \"quoted phrase\" to find in filings (what=search).")
    company: str | None = Field(default=None, max_length=120,
                                description="A company name, ticker or CIK (what=facts; or search by name).")
    what: Literal["search", "facts"] = Field(
        default="search", description="search: full-text search of filings; facts: reported financials.")

    @model_validator(mode="after")
    def _one(self) -> SecFilingsParameters:
        if not (self.query or "").strip() and not (self.company or "").strip():
            raise ValueError("give a query or a company")
        return self


class SecFilingsTool:
    name: ClassVar[str] = "sec_filings"
    description: ClassVar[str] = (
        "Search SEC EDGAR filings of US public companies (what=search, by words or company name), or get "
        "a company's latest reported annual financials (what=facts, by name, ticker or CIK).")
    parameters: ClassVar[type[BaseModel]] = SecFilingsParameters
    timeout_seconds: ClassVar[float] = 40.0

    _shared: ClassVar[EdgarClient | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, client: EdgarClient | None = None) -> None:
        self._client = client

    def allowed(self, context: ToolContext) -> bool:
        return context.enables(self.name)

    def edgar(self) -> EdgarClient:
        if self._client is not None:
            return self._client
        with SecFilingsTool._shared_lock:
            if SecFilingsTool._shared is None:
                SecFilingsTool._shared = EdgarClient(sec_settings())
            return SecFilingsTool._shared

    @classmethod
    def reset(cls) -> None:
        with cls._shared_lock:
            cls._shared = None

    def run(self, arguments: BaseModel, context: ToolContext) -> ToolOutput:
        if not isinstance(arguments, SecFilingsParameters):
            arguments = SecFilingsParameters.model_validate(arguments.model_dump())
        edgar = self.edgar()
        if arguments.what == "facts":
            return self._facts(edgar, (arguments.company or arguments.query or "").strip(), context)
        return self._search(edgar, arguments, context)

    def _search(self, edgar: EdgarClient, arguments: SecFilingsParameters, context: ToolContext) -> ToolOutput:
        query = (arguments.query or "").strip()
        company = (arguments.company or "").strip()
        if company and not query:
            query = f'"{company}"'
        elif company:
            query = f'"{company}" {query}'
        context.progress(f"Searching SEC filings for {query[:80]}")
        payload = edgar.get_json(edgar.url("efts", "/LATEST/search-index"), {"q": query})
        hits = payload.get("hits", {}).get("hits", []) if isinstance(payload, dict) else []
        lines: list[str] = []
        sources: list[Source] = []
        for hit in hits if isinstance(hits, list) else []:
            if len(sources) >= MAX_HITS:
                break
            source = hit.get("_source") if isinstance(hit, dict) else None
            if not isinstance(source, dict):
                continue
            accession, _, filename = str(hit.get("_id", "")).partition(":")
            ciks = source.get("ciks") or []
            if not accession or not filename or not ciks or not str(ciks[0]).isdigit():
                continue
            name = re.sub(r"\s+", " ", str((source.get("display_names") or ["?"])[0])).strip()
            form = str(source.get("form") or source.get("file_type") or "filing")
            filed = str(source.get("file_date") or "")
            url = edgar.url("www", f"/Archives/edgar/data/{int(ciks[0])}/{accession.replace('-', '')}/{filename}")
            description = str(source.get("file_description") or "")
            title = f"{name} — {form} filed {filed}".strip()
            lines.append(f"{len(sources) + 1}. {title}\n   {url}" + (f"\n   {description}" if description else ""))
            sources.append(Source(title=title, url=url, kind="filing", snippet=description))
        if not sources:
            return ToolOutput(text=f"No SEC filings match {query!r}.")
        total = payload.get("hits", {}).get("total", {}).get("value", len(sources))
        return ToolOutput(text=f"SEC EDGAR full-text search for {query!r}: {total} filings; the first "
                               f"{len(sources)}:\n" + "\n".join(lines), sources=tuple(sources))

    def _facts(self, edgar: EdgarClient, name: str, context: ToolContext) -> ToolOutput:
        context.progress(f"Reading SEC financial data for {name[:80]}")
        company = edgar.find_company(name)
        if company is None:
            return ToolOutput(text=f"No SEC registrant matches {name!r} (only US-listed companies file with SEC).")
        try:
            payload = edgar.get_json(edgar.url("data", f"/api/xbrl/companyfacts/CIK{company.cik:010d}.json"))
        except SecError as error:
            if "no such record" in str(error):
                return ToolOutput(text=f"SEC has no XBRL financial data for {company.title} (CIK {company.cik}).")
            raise
        facts = payload.get("facts", {}) if isinstance(payload, dict) else {}
        gaap = facts.get("us-gaap", {}) if isinstance(facts, dict) else {}
        entity = str(payload.get("entityName") or company.title) if isinstance(payload, dict) else company.title
        lines = [f"{entity} (CIK {company.cik:010d}{', ' + company.ticker if company.ticker else ''}): latest annual "
                 "figures reported to SEC (XBRL company facts)"]
        for label, names in CONCEPTS:
            for concept in names:
                found = _latest_annual(gaap.get(concept, {})) if isinstance(gaap, dict) else None
                if found is not None:
                    unit, fact = found
                    lines.append(f"- {label}: {_money(float(fact['val']), unit)} (fiscal {fact.get('fy', '?')}, "
                                 f"period ending {fact.get('end', '?')}, "
                                 f"{fact.get('form')} filed {fact.get('filed', '?')})")
                    break
        dei = facts.get("dei", {}) if isinstance(facts, dict) else {}
        shares = dei.get("EntityCommonStockSharesOutstanding", {}) if isinstance(dei, dict) else {}
        units = shares.get("units", {}).get("shares", []) if isinstance(shares, dict) else []
        latest = max((fact for fact in units if isinstance(fact, dict) and isinstance(fact.get("val"), int)),
                     key=lambda fact: str(fact.get("end", "")), default=None)
        if latest is not None:
            lines.append(f"- Shares outstanding: {latest['val']:,} (as of {latest.get('end', '?')})")
        if len(lines) == 1:
            lines.append("- No annual figures of the usual concepts were found.")
        url = edgar.url("www", f"/edgar/browse/?CIK={company.cik}")
        source = Source(title=f"{entity} — SEC filings and financial data", url=url, kind="filing",
                        snippet="; ".join(line.removeprefix("- ") for line in lines[1:3]))
        return ToolOutput(text="\n".join(lines), sources=(source,))
