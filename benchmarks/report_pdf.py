"""The research report PDF and its delivery: what they cost.

Part 1 — rendering (research/pdf.py, fpdf2 with DejaVu Sans embedded as a subset): the import of
the renderer in a fresh interpreter (what a research function's cold start pays), then p50/p95
render time, size and pages for a realistic 2-page profile, a ~10-page report, and a report at the
renderer's bounds (MAX_SECTIONS / MAX_BODY_CHARS: truncated).

Part 2 — delivery (research/delivery.py) against the Slack sandbox over loopback: Slack calls per
delivery (the look for an earlier share, then files_upload_v2's three steps) and p50 wall time.

    python benchmarks/report_pdf.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "local"))

from insightmesh.agents.base import ReportDocument, ReportSection  # noqa: E402
from insightmesh.tools.base import Source  # noqa: E402

PARAGRAPH = ("Acme Corp makes industrial anvils and rents heavy equipment [1]. Revenue grew 8% to $1.24 billion "
             "in fiscal 2025 [2], and the new CEO has focused the company on recurring revenue [3]. ")
SOURCES = tuple(Source(f"Source {n}", f"https://example.com/articles/{n}/acme-corp") for n in range(1, 13))


def document(sections: int, paragraphs: int) -> ReportDocument:
    body = "\n\n".join(PARAGRAPH * 3 for _ in range(paragraphs)) + "\n\n- one point [1]\n- another point [2]"
    return ReportDocument(title="Acme Corp — company profile", subtitle="profile Acme Corp",
                          sections=tuple(ReportSection(f"Section {n}", body) for n in range(sections)),
                          sources=SOURCES, note="Partial report: the run reached its token cap.")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def timed(fn: Callable[[], object], runs: int) -> tuple[list[float], object]:
    samples, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    probe = "import time; t=time.perf_counter(); import insightmesh.research.pdf; print((time.perf_counter()-t)*1000)"
    imports = [float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                    timeout=120).stdout) for _ in range(5)]
    print(f"import insightmesh.research.pdf (fresh interpreter, fpdf2 + fontTools): "
          f"median {statistics.median(imports):.0f} ms over 5")
    font_dir = ROOT / "layers/common/python/insightmesh/research/fonts"
    fonts = sum(path.stat().st_size for path in font_dir.glob("*.ttf"))
    print(f"fonts shipped in the layer: {fonts / 1024 / 1024:.2f} MB")

    import io

    import pypdf

    from insightmesh.research import pdf

    cases = {"realistic (6 sections)": document(6, 2), "~10 pages (20 sections)": document(20, 4),
             "at the bounds (truncated)": document(pdf.MAX_SECTIONS + 10, 30)}
    print(f"\nrender_pdf, {args.runs} runs each      p50 ms   p95 ms   bytes     pages")
    for name, doc in cases.items():
        pdf.render_pdf(doc)  # the font's cmap and fpdf2's first-use costs out of the samples
        samples, data = timed(lambda doc=doc: pdf.render_pdf(doc), args.runs)
        assert isinstance(data, bytes)
        pages = len(pypdf.PdfReader(io.BytesIO(data)).pages)
        p50, p95 = percentiles(samples)
        print(f"  {name:<28} {p50:8.0f} {p95:8.0f} {len(data):9,d} {pages:6d}")

    from insightmesh.research.delivery import deliver_report
    from insightmesh.slack import client as slack_client
    from insightmesh_local.slack_sandbox import SlackSandbox

    with SlackSandbox(port=0) as sandbox:
        os.environ["SLACK_API_URL"] = sandbox.url
        os.environ["SLACK_BOT_TOKEN"] = "xoxb-benchmark"
        slack_client.reset_for_tests()
        samples = []
        for run in range(args.runs):
            parent = sandbox.add_user_message(channel="C0BENCH", user="U1", text="profile Acme Corp")
            started = time.perf_counter()
            deliver_report(channel_id="C0BENCH", thread_ts=parent["ts"], document=cases["realistic (6 sections)"],
                           filename=f"acme-{run}", summary="**Acme Corp** makes anvils [1].")
            samples.append((time.perf_counter() - started) * 1000)
        calls = Counter(call["method"] for call in sandbox.calls())
    p50, p95 = percentiles(samples)
    print(f"\ndeliver_report (render + upload into a thread, Slack sandbox on loopback), {args.runs} runs: "
          f"p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    print("Slack calls per delivery: " + ", ".join(f"{method} {count / args.runs:g}"
                                                   for method, count in sorted(calls.items())))


if __name__ == "__main__":
    main()
