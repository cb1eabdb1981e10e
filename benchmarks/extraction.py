"""What the child process costs per file, and how fast hostile files are refused.

Part 1 — overhead. For PDF, DOCX, XLSX, PPTX and Markdown, N small files (default 30,
each different) are read twice: ``extract_text`` (a child process with the time and memory limits)
and ``extract_in_process`` (the same readers in this process, parser already imported). The
overhead per file is the difference, printed as p50 and p90 with both timings.

Part 2 — refusals. The hostile files of the tests (a zip bomb, a sheet declaring A1:XFD1048576,
a PDF page tree of a million entries, a deeply nested DOCX) with the default limits: the time to
the refusal or to the capped text.

    python benchmarks/extraction.py [--files 30]
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

from insightmesh.knowledge.extract import (  # noqa: E402
    DOCX,
    MARKDOWN,
    PDF,
    PPTX,
    XLSX,
    ExtractionError,
    ExtractionLimits,
    extract_in_process,
    extract_text,
)
from tests.knowledge_fixtures import docx_bytes, minimal_pdf, pptx_bytes, xlsx_bytes  # noqa: E402
from tests.unit import test_knowledge_extract_limits as hostile  # noqa: E402


def small_file(kind: str, n: int) -> bytes:
    text = f"Document {n}: the quarterly plan for team {n} has {n % 7 + 2} goals."
    if kind == PDF:
        return minimal_pdf([[text, "Second line."]])
    if kind == DOCX:
        return docx_bytes([("h1", f"Plan {n}"), ("p", text)])
    if kind == MARKDOWN:
        return f"# Plan {n}\n\n{text}\n\n## Goals\n\n- one\n- two\n".encode()
    if kind == XLSX:
        return xlsx_bytes({"Plan": [["team", n], ["goals", n % 7 + 2], ["note", text]]})
    return pptx_bytes([(f"Plan {n}", [text], None)])


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000


def overhead(files: int) -> None:
    limits = ExtractionLimits()
    print(f"Child-process overhead per file ({files} small files per format, after the first; ms)")
    print(f"{'format':<6} {'first file':>11} {'isolated p50':>13} {'in-process p50':>15} {'overhead p50':>13} "
          f"{'overhead p90':>13}")
    everything: list[float] = []
    for label, kind in (("PDF", PDF), ("DOCX", DOCX), ("XLSX", XLSX), ("PPTX", PPTX), ("MD", MARKDOWN)):
        contents = [small_file(kind, n) for n in range(files + 1)]
        # The first file starts the fork server (or makes it import this parser): a cold start's cost.
        first = timed(lambda: extract_text(contents[0], kind, limits=limits))  # noqa: B023 - called at once
        extract_in_process(contents[0], kind, limits=limits)  # the parser's import here too, once
        isolated, in_process = [], []
        for content in contents[1:]:
            isolated.append(timed(lambda c=content: extract_text(c, kind, limits=limits)))  # noqa: B023
            in_process.append(timed(lambda c=content: extract_in_process(c, kind, limits=limits)))  # noqa: B023
        differences = [a - b for a, b in zip(isolated, in_process, strict=True)]
        everything.extend(differences)
        print(f"{label:<6} {first:>11.0f} {statistics.median(isolated):>13.0f} {statistics.median(in_process):>15.1f} "
              f"{statistics.median(differences):>13.0f} {percentile(differences, 0.9):>13.0f}")
    print(f"{'all':<6} {'':>11} {'':>13} {'':>15} {statistics.median(everything):>13.0f} "
          f"{percentile(everything, 0.9):>13.0f}")


def refusals() -> None:
    limits = ExtractionLimits()
    cases: list[tuple[str, str, Callable[[], bytes]]] = [
        ("zip bomb (64 MB of zeros in a DOCX)", DOCX,
         lambda: hostile._rezip(docx_bytes([("p", "x")]), add={"word/media/b.bin": b"\0" * (64 << 20)})),
        ("sheet declaring A1:XFD1048576, 200k rows", XLSX, lambda: hostile._billion_cells_sheet(200_000)),
        ("PDF page tree of 10^6 entries", PDF, _page_tree_pdf),
        ("DOCX nested 2,000 tables deep", DOCX, _nested_docx),
    ]
    print("\nHostile files with the default limits")
    for label, kind, build in cases:
        content = build()
        started = time.perf_counter()
        try:
            document = extract_text(content, kind, filename="file", limits=limits)
            outcome = f"read, {len(document.text):,} chars, truncated={document.truncated}"
        except ExtractionError as error:
            outcome = f"refused: {error}"
        print(f"  {label:<42} {len(content):>9,} B  {(time.perf_counter() - started):6.2f} s  {outcome}")


def _page_tree_pdf() -> bytes:
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count 1000000 >>" % b" ".join([b"3 0 R"] * 100),
        b"<< /Type /Pages /Kids [%s] /Count 10000 >>" % b" ".join([b"4 0 R"] * 100),
        b"<< /Type /Pages /Kids [%s] /Count 100 >>" % b" ".join([b"5 0 R"] * 100),
        b"<< /Type /Page /MediaBox [0 0 612 792] >>",
    ]
    return hostile._pdf(objects, root=1)


def _nested_docx() -> bytes:
    depth = 2_000
    return hostile._with_body(b"<w:tbl><w:tr><w:tc>" * depth + b"<w:p/>" + b"</w:tc></w:tr></w:tbl>" * depth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=30)
    arguments = parser.parse_args()
    overhead(arguments.files)
    refusals()


if __name__ == "__main__":
    main()
