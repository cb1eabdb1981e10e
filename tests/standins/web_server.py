"""A stand-in for the web on loopback: three search APIs, pages, a PDF, SEC EDGAR, and the redirects
and oversized answers the read_url security tests need (stdlib ``ThreadingHTTPServer``, 127.0.0.1).

Start it in-process::

    web = WebServer().start()     # web.url = "http://127.0.0.1:<port>"
    ...                           # WEB_SEARCH_URL = SEC_EDGAR_URL = web.url,
                                  # READ_URL_ALLOW_HOSTS = f"127.0.0.1:{web.port}"
    web.stop()

or as a process (for ``insightmesh dev``, the e2e tests and benchmarks):
``python -m tests.standins.web_server --port 8770`` (prints the settings to export).

Two companies live here: **Acme Corp** (ticker ACME, CIK 1999001) and **Globex Corporation**
(GLBX, CIK 1999002). Every hit a search returns points at this server's own pages.

Wire formats (as the providers document them):

* Tavily — ``POST /search`` with ``Authorization: Bearer <key>``, JSON ``{"query", "max_results"}``
  → ``{"query", "results": [{"title", "url", "content", "score", "raw_content": null}],
  "response_time", "images": [], "follow_up_questions": null, "answer": null}``; no key → 401.
* Brave — ``GET /res/v1/web/search?q=&count=`` with ``X-Subscription-Token`` → ``{"type": "search",
  "query": {"original"}, "web": {"type": "search", "results": [{"type": "search_result", "title",
  "url", "description" (matched words in <strong>), "language", "family_friendly"}]}}``; no token → 401.
* SearXNG — ``GET /search?q=&format=json`` → ``{"query", "number_of_results", "results": [{"url",
  "title", "content", "engine", "engines", "score", "category"}], "answers": [], "suggestions": [],
  "infoboxes": [], "unresponsive_engines": []}``; another format → 403 (JSON not enabled), as SearXNG.
* Pages: ``GET /pages/<slug>`` (HTML: navigation, cookie banner and footer around one article),
  ``GET /files/acme-annual-report-2025.pdf`` (two pages of text, title in its metadata).
* EDGAR (SEC answers 403 to a User-Agent without a contact e-mail, and so does this):
  ``GET /LATEST/search-index?q=`` (full-text search, Elasticsearch-shaped ``{"hits": {"total":
  {"value"}, "hits": [{"_id": "<adsh>:<file>", "_source": {"ciks", "display_names", "form",
  "root_forms", "file_date", "adsh", "period_ending", "file_description"}}]}}``),
  ``GET /files/company_tickers.json`` (``{"0": {"cik_str", "ticker", "title"}, ...}``),
  ``GET /api/xbrl/companyfacts/CIK##########.json`` (``{"cik", "entityName", "facts": {"dei": ...,
  "us-gaap": {"<Concept>": {"label", "description", "units": {"USD": [{"end", "val", "accn", "fy",
  "fp", "form", "filed", "frame"?}]}}}}}``), ``GET /Archives/edgar/data/<cik>/<adsh>/<file>`` (the
  filing document) and ``GET /edgar/browse/?CIK=`` (the company's page).
* For the security and limit tests: ``/redirect?to=<url>`` (302), ``/redirect/<n>`` (a chain of n
  302s ending at the Acme page), ``/big?mb=<n>`` (an HTML page of n MB), ``/big.pdf?mb=<n>``,
  ``/slow`` (a page that drips a paragraph every 0.2 s for a minute), ``/image.png``.

Control (not a provider's API): ``GET /_calls`` → ``{"calls": {path: count}, "total", "requests":
[{"method", "path", "host", "user_agent"}]}``,
``POST /_reset`` (forget calls and failures), ``POST /_fail`` ``{"path", "status", "count",
"retry_after"?}`` (the next ``count`` calls of ``path`` answer ``status``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.knowledge_fixtures import minimal_pdf
from tests.standins.http import JsonHandler, ThreadedServer, serve_until_signalled

ACME_CIK = 1999001
GLOBEX_CIK = 1999002


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    company: str
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.paragraphs)


PAGES: tuple[Page, ...] = (
    Page("acme-corp", "Acme Corp — company overview", "Acme Corp", (
        "Acme Corp is an industrial technology company headquartered in Springfield, founded in 1949. "
        "It makes precision anvils, rocket-powered roller skates and logistics software for factories.",
        "Acme Corp employs about 12,400 people in 31 countries and reported revenue of $4.2 billion for "
        "fiscal 2025, up 8% from the year before.",
        "Its largest segment, Acme Logistics, sells warehouse automation to retailers; the company "
        "lists Globex Corporation and Initech as its main competitors.",
    )),
    Page("acme-leadership", "Acme Corp leadership team", "Acme Corp", (
        "Jane Doe is the chief executive officer of Acme Corp. She joined Acme in 2012 from Globex "
        "Corporation and became CEO in 2021.",
        "Wile E. Coyote is Acme Corp's chief technology officer and leads its research laboratory.",
        "The board of Acme Corp has nine members; its chair is Elmer Fudd.",
    )),
    Page("acme-news", "Acme Corp opens a new factory in Ohio", "Acme Corp", (
        "Acme Corp announced on 3 March 2026 a $300 million factory in Dayton, Ohio for its "
        "warehouse robots, creating 900 jobs.",
        "Analysts said the investment answers Globex Corporation's expansion in logistics software.",
    )),
    Page("globex", "Globex Corporation — company overview", "Globex Corporation", (
        "Globex Corporation is a software and energy conglomerate based in Cypress Creek. "
        "Its chief executive is Hank Scorpio.",
        "Globex reported revenue of $7.9 billion for fiscal 2025 and employs 21,000 people.",
    )),
)
PDF_SLUG = "acme-annual-report-2025.pdf"
PDF_TITLE = "Acme Corp Annual Report 2025"
PDF_PAGES: tuple[tuple[str, ...], ...] = (
    ("Acme Corp Annual Report 2025",
     "Revenue grew 8% to $4.2 billion.",
     "Acme Logistics contributed $1.6 billion of revenue."),
    ("Outlook",
     "Acme Corp expects revenue of $4.5 billion in fiscal 2026.",
     "The new Dayton factory opens in 2027."),
)
BOILERPLATE_NAV = "Home | Products | Investors | Careers | Contact us | Sign in"
BOILERPLATE_FOOTER = "© 2026 Example Media Group. Privacy policy. Terms of use. Cookie settings."


def page_html(page: Page) -> str:
    paragraphs = "\n".join(f"<p>{text}</p>" for text in page.paragraphs)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{page.title} | Example Business News</title></head><body>"
        f"<header><nav><a href='/'>Home</a> {BOILERPLATE_NAV}</nav></header>"
        "<div class='cookie-banner'>We use cookies. <button>Accept all</button></div>"
        "<aside class='sidebar'><h3>Trending</h3><ul><li>Ten stocks to watch</li>"
        "<li>Weather this weekend</li></ul></aside>"
        f"<main><article><h1>{page.title}</h1>\n{paragraphs}\n</article></main>"
        f"<footer><p>{BOILERPLATE_FOOTER}</p></footer></body></html>"
    )


def make_pdf(pages: tuple[tuple[str, ...], ...], title: str) -> bytes:
    """A small valid PDF (Helvetica text, one content stream per page, /Info title)."""
    return minimal_pdf(pages, title=title)


COMPANIES: dict[int, dict[str, Any]] = {
    ACME_CIK: {"ticker": "ACME", "title": "Acme Corp", "filings": [
        {"adsh": "0001999001-26-000010", "file": "acme-10k-2025.htm", "form": "10-K", "file_date": "2026-02-20",
         "period_ending": "2025-12-31", "description": "Annual report for fiscal 2025",
         "text": "Acme Corp annual report. Revenue $4.2 billion. Risk factors: competition from Globex Corporation."},
        {"adsh": "0001999001-26-000021", "file": "acme-8k-2026-03.htm", "form": "8-K", "file_date": "2026-03-03",
         "period_ending": "2026-03-03", "description": "Current report: new factory in Dayton, Ohio",
         "text": "Acme Corp announced a $300 million factory in Dayton, Ohio."},
    ], "facts": {"Revenues": [(2024, 3_890_000_000), (2025, 4_200_000_000)],
                 "NetIncomeLoss": [(2024, 310_000_000), (2025, 362_000_000)],
                 "Assets": [(2024, 6_100_000_000), (2025, 6_750_000_000)]},
        "shares": 182_000_000},
    GLOBEX_CIK: {"ticker": "GLBX", "title": "Globex Corporation", "filings": [
        {"adsh": "0001999002-26-000005", "file": "globex-10k-2025.htm", "form": "10-K", "file_date": "2026-02-27",
         "period_ending": "2025-12-31", "description": "Annual report for fiscal 2025",
         "text": "Globex Corporation annual report. Revenue $7.9 billion. Competitors include Acme Corp."},
    ], "facts": {"Revenues": [(2024, 7_400_000_000), (2025, 7_900_000_000)],
                 "NetIncomeLoss": [(2024, 505_000_000), (2025, 640_000_000)],
                 "Assets": [(2024, 11_200_000_000), (2025, 12_050_000_000)]},
        "shares": 403_000_000},
}


def company_facts(cik: int) -> dict[str, Any]:
    company = COMPANIES[cik]
    gaap: dict[str, Any] = {}
    for concept, values in company["facts"].items():
        gaap[concept] = {"label": re.sub(r"(?<!^)(?=[A-Z])", " ", concept), "description": f"{concept} (stand-in)",
                         "units": {"USD": [
                             {"start": f"{year}-01-01", "end": f"{year}-12-31", "val": value,
                              "accn": f"{cik:010d}-{(year + 1) % 100:02d}-000010", "fy": year, "fp": "FY",
                              "form": "10-K", "filed": f"{year + 1}-02-20", "frame": f"CY{year}"}
                             for year, value in values]}}
    dei = {"EntityCommonStockSharesOutstanding": {
        "label": "Entity Common Stock, Shares Outstanding", "description": "shares",
        "units": {"shares": [{"end": "2026-01-31", "val": company["shares"], "accn": f"{cik:010d}-26-000010",
                              "fy": 2025, "fp": "FY", "form": "10-K", "filed": "2026-02-20"}]}}}
    return {"cik": cik, "entityName": company["title"], "facts": {"dei": dei, "us-gaap": gaap}}


def _tokens(text: str) -> set[str]:
    return {token for token in re.findall(r"[a-z0-9]+", text.lower()) if len(token) > 2}


class WebHandler(JsonHandler):
    server: WebServer
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle holds the body for the
    # client's delayed ACK (~40 ms a call), a stand-in artefact the benchmark would report as latency.
    disable_nagle_algorithm = True

    # -- plumbing ------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, {key: values[-1] for key, values in parse_qs(parts.query).items()}
        body = self._read_body() if method == "POST" else b""
        if path.startswith("/_"):
            self._control(method, path, body)
            return
        self.server.count(path, {"method": method, "path": path, "host": self.headers.get("Host", ""),
                                 "user_agent": self.headers.get("User-Agent", "")})
        failure = self.server.take_failure(path)
        if failure is not None:
            status, retry_after = failure
            self._send(status, {"error": f"injected {status}"},
                       headers={"Retry-After": retry_after} if retry_after is not None else None)
            return
        route = self._route(method, path)
        if route is None:
            self._send(404, {"error": "not found"})
            return
        route(path, query, body)

    def _route(self, method: str, path: str) -> Any:
        if method == "POST":
            return self._tavily if path == "/search" else None
        exact = {
            "/search": self._searxng, "/res/v1/web/search": self._brave, "/LATEST/search-index": self._efts,
            "/files/company_tickers.json": self._tickers, f"/files/{PDF_SLUG}": self._pdf, "/redirect": self._redirect,
            "/big": self._big, "/big.pdf": self._big_pdf, "/slow": self._slow, "/image.png": self._image,
            "/edgar/browse/": self._browse, "/": self._home,
        }
        if path in exact:
            return exact[path]
        for prefix, handler in (("/pages/", self._page), ("/redirect/", self._redirect_chain),
                                ("/api/xbrl/companyfacts/", self._facts), ("/Archives/edgar/data/", self._archive)):
            if path.startswith(prefix):
                return handler
        return None

    def _control(self, method: str, path: str, body: bytes) -> None:
        if method == "GET" and path == "/_calls":
            calls = self.server.calls_snapshot()
            self._send(200, {"calls": calls, "total": sum(calls.values()), "requests": self.server.requests()[-200:]})
        elif method == "POST" and path == "/_reset":
            self.server.reset()
            self._send(200, {"ok": True})
        elif method == "POST" and path == "/_fail":
            rule = json.loads(body or b"{}")
            self.server.fail(str(rule["path"]), int(rule.get("status", 500)), int(rule.get("count", 1)),
                             rule.get("retry_after"))
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": "not found"})

    def _html(self, status: int, markup: str, content_type: str = "text/html; charset=utf-8") -> None:
        self._send(status, markup.encode(), headers={"Content-Type": content_type})

    # -- search ----------------------------------------------------------------------------------
    def _ranked(self, query: str, limit: int) -> list[tuple[str, str, str, float]]:
        """(title, url, snippet, score) of the pages and the PDF, best match first."""
        wanted = _tokens(query)
        entries = [(page.title, f"{self.server.url}/pages/{page.slug}", page.paragraphs[0], page.text)
                   for page in PAGES]
        entries.append((PDF_TITLE, f"{self.server.url}/files/{PDF_SLUG}", PDF_PAGES[0][1],
                        " ".join(" ".join(lines) for lines in PDF_PAGES)))
        scored = []
        for order, (title, url, snippet, text) in enumerate(entries):
            score = len(wanted & _tokens(f"{title} {text}")) + 2 * len(wanted & _tokens(title))
            scored.append((-score, order, title, url, snippet, score))
        scored.sort()
        top = max((item[5] for item in scored), default=0) or 1
        return [(title, url, snippet, round(score / top, 3)) for _s, _o, title, url, snippet, score in scored[:limit]]

    def _tavily(self, path: str, query: dict[str, str], body: bytes) -> None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            self._send(401, {"detail": {"error": "Unauthorized: missing or invalid API key."}})
            return
        try:
            request = json.loads(body)
        except ValueError:
            self._send(400, {"detail": {"error": "invalid JSON"}})
            return
        text = str(request.get("query") or "")
        if not text:
            self._send(400, {"detail": {"error": "Query is missing."}})
            return
        limit = max(0, min(int(request.get("max_results", 5)), 20))
        results = [{"title": title, "url": url, "content": snippet, "score": score, "raw_content": None}
                   for title, url, snippet, score in self._ranked(text, limit)]
        self._send(200, {"query": text, "follow_up_questions": None, "answer": None, "images": [],
                         "results": results, "response_time": 0.01})

    def _brave(self, path: str, query: dict[str, str], body: bytes) -> None:
        if not self.headers.get("X-Subscription-Token", "").strip():
            self._send(401, {"type": "ErrorResponse", "error": {"code": "SUBSCRIPTION_TOKEN_INVALID", "status": 401}})
            return
        text = query.get("q", "")
        limit = max(1, min(int(query.get("count", "20")), 20))
        results = []
        for title, url, snippet, _score in self._ranked(text, limit):
            marked = snippet
            for word in sorted(_tokens(text), key=len, reverse=True):
                marked = re.sub(rf"\b({re.escape(word)})\b", r"<strong>\1</strong>", marked, flags=re.IGNORECASE)
            results.append({"type": "search_result", "title": title, "url": url, "description": marked,
                            "language": "en", "family_friendly": True, "is_source_local": False})
        self._send(200, {"type": "search", "query": {"original": text, "more_results_available": False},
                         "web": {"type": "search", "results": results, "family_friendly": True}})

    def _searxng(self, path: str, query: dict[str, str], body: bytes) -> None:
        if query.get("format") != "json":
            self._html(403, "<html><body>Forbidden</body></html>")
            return
        text = query.get("q", "")
        results = [{"url": url, "title": title, "content": snippet, "engine": "standin", "engines": ["standin"],
                    "score": score, "category": "general", "parsed_url": list(urlsplit(url)), "positions": [n]}
                   for n, (title, url, snippet, score) in enumerate(self._ranked(text, 20), 1)]
        self._send(200, {"query": text, "number_of_results": len(results), "results": results, "answers": [],
                         "corrections": [], "infoboxes": [], "suggestions": [], "unresponsive_engines": []})

    # -- pages -----------------------------------------------------------------------------------
    def _home(self, path: str, query: dict[str, str], body: bytes) -> None:
        links = "".join(f"<li><a href='/pages/{page.slug}'>{page.title}</a></li>" for page in PAGES)
        self._html(200, f"<html><head><title>Web stand-in</title></head><body><ul>{links}</ul></body></html>")

    def _page(self, path: str, query: dict[str, str], body: bytes) -> None:
        slug = path.removeprefix("/pages/")
        page = next((page for page in PAGES if page.slug == slug), None)
        if page is None:
            self._html(404, "<html><body>Not found</body></html>")
            return
        self._html(200, page_html(page))

    def _pdf(self, path: str, query: dict[str, str], body: bytes) -> None:
        self._send(200, make_pdf(PDF_PAGES, PDF_TITLE), headers={"Content-Type": "application/pdf"})

    def _image(self, path: str, query: dict[str, str], body: bytes) -> None:
        self._send(200, b"\x89PNG\r\n\x1a\n" + bytes(64), headers={"Content-Type": "image/png"})

    def _redirect(self, path: str, query: dict[str, str], body: bytes) -> None:
        self._send(302, b"", headers={"Location": query.get("to", "/"), "Content-Type": "text/plain"})

    def _redirect_chain(self, path: str, query: dict[str, str], body: bytes) -> None:
        remaining = int(path.removeprefix("/redirect/") or "0")
        location = f"/redirect/{remaining - 1}" if remaining > 1 else "/pages/acme-corp"
        self._send(302, b"", headers={"Location": location, "Content-Type": "text/plain"})

    def _stream(self, content_type: str, head: bytes, filler: bytes, size: int) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(head)
            sent = len(head)
            while sent < size:
                chunk = filler[: size - sent]
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:  # the client stopped reading at its limit
            self.close_connection = True

    def _big(self, path: str, query: dict[str, str], body: bytes) -> None:
        size = int(float(query.get("mb", "6")) * 1024 * 1024)
        filler = b"<p>Acme Corp filler paragraph for the size limit test.</p>\n" * 1000
        self._stream("text/html; charset=utf-8", b"<html><head><title>Big page</title></head><body>", filler, size)

    def _big_pdf(self, path: str, query: dict[str, str], body: bytes) -> None:
        size = int(float(query.get("mb", "6")) * 1024 * 1024)
        self._stream("application/pdf", b"%PDF-1.4\n", b"%" + b"0" * 65535, size)

    def _slow(self, path: str, query: dict[str, str], body: bytes) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            stop = time.monotonic() + 60
            while time.monotonic() < stop and not self.server.stopping.is_set():
                chunk = b"<p>still loading</p>"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                self.server.stopping.wait(0.2)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    # -- EDGAR -----------------------------------------------------------------------------------
    def _sec_agent_ok(self) -> bool:
        if "@" in self.headers.get("User-Agent", ""):
            return True
        self._html(403, "<html><body><h1>Your Request Originates from an Undeclared Automated Tool</h1>"
                        "</body></html>")
        return False

    def _efts(self, path: str, query: dict[str, str], body: bytes) -> None:
        if not self._sec_agent_ok():
            return
        wanted = _tokens(query.get("q", "").replace('"', " "))
        hits = []
        for cik, company in COMPANIES.items():
            for filing in company["filings"]:
                if wanted and wanted <= _tokens(f"{company['title']} {company['ticker']} {filing['text']}"):
                    hits.append({"_index": "edgar_file", "_id": f"{filing['adsh']}:{filing['file']}", "_score": 1.0,
                                 "_source": {"ciks": [f"{cik:010d}"],
                                             "display_names": [f"{company['title']}  ({company['ticker']})  "
                                                               f"(CIK {cik:010d})"],
                                             "form": filing["form"], "root_forms": [filing["form"]],
                                             "file_date": filing["file_date"], "adsh": filing["adsh"],
                                             "period_ending": filing["period_ending"],
                                             "file_description": filing["description"], "file_type": filing["form"]}})
        self._send(200, {"took": 3, "timed_out": False,
                         "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": 1.0, "hits": hits}})

    def _tickers(self, path: str, query: dict[str, str], body: bytes) -> None:
        if not self._sec_agent_ok():
            return
        self._send(200, {str(n): {"cik_str": cik, "ticker": company["ticker"], "title": company["title"]}
                         for n, (cik, company) in enumerate(COMPANIES.items())})

    def _facts(self, path: str, query: dict[str, str], body: bytes) -> None:
        if not self._sec_agent_ok():
            return
        match = re.fullmatch(r"/api/xbrl/companyfacts/CIK(\d{10})\.json", path)
        cik = int(match.group(1)) if match else -1
        if cik not in COMPANIES:
            self._html(404, "<Error><Code>NoSuchKey</Code></Error>", "application/xml")
            return
        self._send(200, company_facts(cik))

    def _archive(self, path: str, query: dict[str, str], body: bytes) -> None:
        if not self._sec_agent_ok():
            return
        for cik, company in COMPANIES.items():
            for filing in company["filings"]:
                if path == f"/Archives/edgar/data/{cik}/{filing['adsh'].replace('-', '')}/{filing['file']}":
                    self._html(200, f"<html><head><title>{company['title']} {filing['form']}</title></head><body>"
                                    f"<h1>{filing['description']}</h1><p>{filing['text']}</p></body></html>")
                    return
        self._html(404, "<html><body>Not found</body></html>")

    def _browse(self, path: str, query: dict[str, str], body: bytes) -> None:
        cik = int(query.get("CIK", "0") or 0)
        company = COMPANIES.get(cik)
        if company is None:
            self._html(404, "<html><body>Not found</body></html>")
            return
        self._html(200, f"<html><head><title>{company['title']} (CIK {cik:010d})</title></head>"
                        f"<body><h1>{company['title']}</h1><p>Filings of {company['title']}.</p></body></html>")


class WebServer(ThreadedServer):
    """The stand-in; :attr:`url` is its base (search, pages and EDGAR all live under it)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), WebHandler)
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self._requests: list[dict[str, str]] = []
        self._failures: dict[str, list[tuple[int, str | None]]] = {}
        self.stopping = threading.Event()

    def count(self, path: str, request: dict[str, str] | None = None) -> None:
        with self._lock:
            self._calls[path] = self._calls.get(path, 0) + 1
            if request is not None:
                self._requests.append(request)
                del self._requests[:-1000]

    def requests(self) -> list[dict[str, str]]:
        """The last 1,000 requests: method, path, Host and User-Agent headers."""
        with self._lock:
            return list(self._requests)

    def calls_snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._calls)

    def calls(self, path: str) -> int:
        with self._lock:
            return self._calls.get(path, 0)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._requests.clear()
            self._failures.clear()

    def fail(self, path: str, status: int, count: int = 1, retry_after: str | None = None) -> None:
        with self._lock:
            self._failures.setdefault(path, []).extend([(status, retry_after)] * count)

    def take_failure(self, path: str) -> tuple[int, str | None] | None:
        with self._lock:
            queue = self._failures.get(path)
            return queue.pop(0) if queue else None

    def stop(self) -> None:
        self.stopping.set()
        super().stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # a client that stopped reading at its limit
            return
        super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.standins.web_server",
                                     description="Web search, pages and SEC EDGAR stand-in on 127.0.0.1 (NOT the web).")
    parser.add_argument("--port", type=int, default=8770)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long (bounded)")
    args = parser.parse_args(argv)
    server = WebServer(port=args.port).start()
    print(f"web stand-in listening on {server.url}; for insightmesh dev:\n"
          f"  WEB_SEARCH_PROVIDER=searxng WEB_SEARCH_URL={server.url} SEC_EDGAR_URL={server.url} "
          f"SEC_USER_AGENT='InsightMesh dev dev@example.com' READ_URL_ALLOW_HOSTS=127.0.0.1:{server.port}", flush=True)
    serve_until_signalled(server, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
