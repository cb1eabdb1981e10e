"""What the web tools cost per call against the loopback web stand-in (no network beyond 127.0.0.1).

* ``web_search`` through each provider's wire format (Tavily, Brave, SearXNG) and offline;
* ``read_url`` of an HTML page and of the PDF: the whole call (address check, pinned fetch,
  extraction in the isolation child), beside the extraction alone in this process (readability /
  pypdf), so the price of the child process per page shows;
* ``sec_filings`` full-text search and company facts.

Each is called N times (default 30); p50 and p90 in milliseconds are printed. Figures, not a test.

    python benchmarks/web_tools.py [--calls 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "common" / "python"))

import httpx  # noqa: E402

from insightmesh.tools.base import ToolContext  # noqa: E402
from insightmesh.tools.html_text import extract_html  # noqa: E402
from insightmesh.tools.read_url import ReadUrlParameters, ReadUrlTool  # noqa: E402
from insightmesh.tools.sec_filings import EdgarClient, SecFilingsParameters, SecFilingsTool  # noqa: E402
from insightmesh.tools.settings import ReadUrlSettings, SecSettings  # noqa: E402
from insightmesh.tools.web_search import (  # noqa: E402
    BraveProvider,
    OfflineProvider,
    SearxngProvider,
    TavilyProvider,
    WebSearchTool,
)
from tests.standins.web_server import PAGES, PDF_PAGES, PDF_TITLE, WebServer, make_pdf, page_html  # noqa: E402

CONTEXT = ToolContext(user_id="U-bench")


def measure(label: str, calls: int, action: Callable[[], object]) -> None:
    action()  # warm: imports, the isolation server, connections
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p90 = timings[min(len(timings) - 1, int(len(timings) * 0.9))]
    print(f"{label:<44} p50 {statistics.median(timings):8.2f} ms   p90 {p90:8.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args(argv)
    calls = max(1, args.calls)
    with WebServer() as web:
        timeout = httpx.Timeout(5.0)
        print(f"web stand-in on {web.url}; {calls} calls each\n")
        for provider in (TavilyProvider(base_url=web.url, api_key=lambda: "k", timeout=timeout),
                         BraveProvider(base_url=web.url, api_key=lambda: "k", timeout=timeout),
                         SearxngProvider(base_url=web.url, api_key=lambda: "", timeout=timeout),
                         OfflineProvider()):
            tool = WebSearchTool(provider)
            measure(f"web_search ({provider.name})", calls,
                    lambda tool=tool: tool.run(tool.parameters(query="Acme Corp leadership"), CONTEXT))
        reader = ReadUrlTool(ReadUrlSettings(READ_URL_ALLOW_HOSTS=(f"127.0.0.1:{web.port}",)))
        page = f"{web.url}/pages/acme-corp"
        pdf = f"{web.url}/files/acme-annual-report-2025.pdf"
        measure("read_url HTML (fetch + child extraction)", calls,
                lambda: reader.run(ReadUrlParameters(url=page), CONTEXT))
        html = page_html(PAGES[0]).encode()
        measure("  readability in this process", calls, lambda: extract_html(html))
        measure("read_url PDF (fetch + child extraction)", calls,
                lambda: reader.run(ReadUrlParameters(url=pdf), CONTEXT))
        from insightmesh.knowledge.extract import extract_in_process, extraction_limits

        pdf_bytes = make_pdf(PDF_PAGES, PDF_TITLE)
        measure("  pypdf in this process", calls,
                lambda: extract_in_process(pdf_bytes, "application/pdf", limits=extraction_limits()))
        sec = SecFilingsTool(EdgarClient(SecSettings(SEC_USER_AGENT="Bench bench@example.com", SEC_EDGAR_URL=web.url)))
        measure("sec_filings search (≤ 10 req/s limiter)", calls,
                lambda: sec.run(SecFilingsParameters(company="Acme Corp"), CONTEXT))
        measure("sec_filings facts (ticker map cached)", calls,
                lambda: sec.run(SecFilingsParameters(company="ACME", what="facts"), CONTEXT))
        print(f"\nstand-in calls: {sum(web.calls_snapshot().values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
