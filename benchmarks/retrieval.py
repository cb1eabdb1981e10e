"""Knowledge base: ingestion throughput, query latency at 10k/100k chunks, retrieval quality.

    python benchmarks/retrieval.py                       # everything (≈ 5-6 minutes on 2 cores)
    python benchmarks/retrieval.py --sizes 10000         # skip the 100k-chunk latency run
    python benchmarks/retrieval.py --sizes 2000 --queries 20 --copies 2 --no-hybrid   # a quick look

Prints figures, asserts nothing. Everything is local: DynamoDB is moto in-process, Qdrant is
qdrant-client's embedded store in a temporary folder (the ``QDRANT_PATH`` mode of development),
dense embeddings (``--hybrid``, on by default) come from the OpenAI-compatible stand-in on
127.0.0.1 (hashed bag-of-words vectors: they exercise the hybrid *path*, not a real model's
quality).

1. **Ingest throughput** — the real pipeline (``ingest_documents``: extract, chunk, sparse vectors,
   [dense batches], Qdrant upserts, a DynamoDB record per document) on the generated corpus, in
   chunks/s and documents/s; then a re-ingestion of the same documents (all unchanged).
2. **Query latency** — ``retrieve()`` end to end (query vector, ACL filter, per-document grouping)
   on N synthetic chunks upserted in bulk with pre-built sparse vectors (a Zipf vocabulary of 20k
   terms, 120 terms a chunk, mixed ACLs, 5 chunks a document), p50/p99 over ``--queries``
   questions, each latency run bounded by ``--max-query-seconds``.
3. **Quality** — hit@5 and MRR of the 40 questions of the generated corpus (one answering document
   each among topic documents and distractors), and of a harder variant (``--copies`` near-duplicate
   copies of every topic, told apart only by a made-up division name in the question).
4. **A public QA data set** — used only if one ships *inside* an installed package (nothing is
   downloaded at run time); otherwise the benchmark says so.

Reading the latency figures: the embedded store searches by brute force in Python (~50 µs a
chunk), so its latency grows linearly — fine for a developer's few thousand chunks, seconds at
100k. Production uses a Qdrant server (``QDRANT_URL``, required there), whose inverted sparse
index and payload indexes answer in milliseconds at that size; the embedded figures are the
floor for development, not a forecast for AWS.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

# Before anything reads the environment: fake AWS, offline embeddings, a table name for the model.
os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_REGION": "us-east-1", "KNOWLEDGE_DOCUMENTS_TABLE": "bench-knowledge-documents",
                   "POWERTOOLS_LOG_LEVEL": "WARNING", "LOG_LEVEL": "WARNING"})
for variable in ("AWS_ENDPOINT_URL", "QDRANT_URL", "EMBEDDING_PROVIDER", "EMBEDDING_BASE_URL", "EMBEDDING_MODEL",
                 "EMBEDDING_DIMENSIONS"):
    os.environ.pop(variable, None)

import logging  # noqa: E402
import warnings  # noqa: E402

logging.disable(logging.INFO)
# Expected here: the embedded store says it is not meant for more than 20,000 points (see above).
warnings.filterwarnings("ignore", message="Local mode is not recommended")

from moto import mock_aws  # noqa: E402

from insightmesh.knowledge import store as store_module  # noqa: E402
from insightmesh.knowledge.base import Viewer  # noqa: E402
from insightmesh.knowledge.chunking import chunk_id  # noqa: E402
from insightmesh.knowledge.models import KnowledgeDocument  # noqa: E402
from insightmesh.knowledge.pipeline import ingest_documents  # noqa: E402
from insightmesh.knowledge.retrieval import retrieve  # noqa: E402
from insightmesh.knowledge.sparse import bm25_weight, term_index  # noqa: E402
from insightmesh.knowledge.store import ChunkPayload, ChunkPoint, get_store  # noqa: E402
from tests.knowledge_corpus import generate_corpus, hit_rate_and_mrr  # noqa: E402

VOCABULARY = 20_000
TERMS_PER_CHUNK = 120
CHUNKS_PER_DOCUMENT = 5
BULK = 1000
VIEWER = Viewer("reader@example.com", groups=("g1@example.com", "g2@example.com"))
# Packages known to ship, or to fetch, public IR/QA data sets; only shipped data would be used.
QA_PACKAGES = ("beir", "ir_datasets", "mteb", "datasets", "natural_questions", "dbqrqa", "nltk")


def use_store(path: str) -> None:
    os.environ["QDRANT_PATH"] = path
    store_module.reset_for_tests()


def fresh_table() -> None:
    if KnowledgeDocument.exists():
        KnowledgeDocument.delete_table()
    KnowledgeDocument.create_table(billing_mode="PAY_PER_REQUEST", wait=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


# -- 1. ingestion -------------------------------------------------------------------------------------

def bench_ingest(workdir: Path, copies: int, label: str) -> None:
    documents, _ = generate_corpus(copies=copies, distractors=40 * copies)
    use_store(str(workdir / f"ingest-{label}"))
    fresh_table()
    started = time.perf_counter()
    report = ingest_documents(documents, sweep_source="local:corpus")
    elapsed = time.perf_counter() - started
    print(f"  {label:8} first run: {report.new} documents, {report.chunks_written} chunks in {elapsed:.2f} s "
          f"= {report.chunks_written / elapsed:,.0f} chunks/s, {report.new / elapsed:,.0f} documents/s "
          f"(failed {report.failed})")
    started = time.perf_counter()
    again = ingest_documents(documents, sweep_source="local:corpus")
    elapsed = time.perf_counter() - started
    print(f"  {label:8} re-run:    {again.unchanged} unchanged documents in {elapsed:.2f} s "
          f"= {again.unchanged / elapsed:,.0f} documents/s (no Qdrant writes)")


# -- 2. query latency ---------------------------------------------------------------------------------

class SyntheticCorpus:
    def __init__(self, seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.words = [f"w{rank}" for rank in range(VOCABULARY)]
        self.indices = [term_index(word) for word in self.words]
        self.cumulative = list(itertools.accumulate(1.0 / (rank + 1) ** 1.07 for rank in range(VOCABULARY)))

    def sparse(self) -> tuple[list[int], list[float]]:
        counts = Counter(self.rng.choices(range(VOCABULARY), cum_weights=self.cumulative, k=TERMS_PER_CHUNK))
        ranks = sorted(counts, key=lambda rank: self.indices[rank])
        return [self.indices[r] for r in ranks], [bm25_weight(counts[r], TERMS_PER_CHUNK) for r in ranks]

    def acl(self, number: int) -> list[str]:
        roll = number % 10
        if roll < 6:
            return ["anyone"]
        if roll < 8:
            return ["domain:example.com"]
        return [f"group:g{number % 50}@example.com"]

    def points(self, start: int, count: int) -> list[ChunkPoint]:
        points = []
        for number in range(start, start + count):
            document = number // CHUNKS_PER_DOCUMENT
            document_id = f"bench:doc-{document}"
            payload = ChunkPayload(
                document_id=document_id, source="bench:synthetic", title=f"Synthetic document {document}",
                url=f"https://docs.example.com/{document}", mime_type="text/plain", acl=self.acl(document),
                chunk_index=number % CHUNKS_PER_DOCUMENT, heading=None,
                text="Synthetic chunk text. " * 30,
            )
            points.append(ChunkPoint(id=chunk_id(document_id, number % CHUNKS_PER_DOCUMENT), payload=payload,
                                     sparse=self.sparse()))
        return points

    def question(self) -> str:
        return " ".join(self.words[rank] for rank in self.rng.sample(range(30, 3000), 4))


def bench_latency(workdir: Path, size: int, queries: int, max_seconds: float) -> None:
    use_store(str(workdir / f"latency-{size}"))
    store = get_store()
    corpus = SyntheticCorpus()
    started = time.perf_counter()
    for start in range(0, size, BULK):
        store.upsert(corpus.points(start, min(BULK, size - start)))
    loading = time.perf_counter() - started
    assert store.count() == size
    print(f"  {size:>7,} chunks: bulk load {loading:.1f} s ({size / loading:,.0f} chunks/s, pre-built sparse vectors)")
    retrieve(corpus.question(), VIEWER)  # warm-up
    latencies: list[float] = []
    empty = 0
    deadline = time.perf_counter() + max_seconds
    while len(latencies) < queries and time.perf_counter() < deadline:
        question = corpus.question()
        began = time.perf_counter()
        passages = retrieve(question, VIEWER, k=5, per_document=2)
        latencies.append((time.perf_counter() - began) * 1000)
        empty += not passages
    print(f"  {size:>7,} chunks: {len(latencies)} queries, p50 {statistics.median(latencies):,.0f} ms, "
          f"p99 {percentile(latencies, 0.99):,.0f} ms, max {max(latencies):,.0f} ms"
          f"{' (stopped at the time bound)' if len(latencies) < queries else ''}; {empty} without results")
    store_module.reset_for_tests()


# -- 3. quality ---------------------------------------------------------------------------------------

def bench_quality(workdir: Path, copies: int, label: str) -> None:
    documents, questions = generate_corpus(copies=copies, distractors=40 * copies)
    use_store(str(workdir / f"quality-{label}-{copies}"))
    fresh_table()
    report = ingest_documents(documents)
    ranked = [[p.document_id for p in retrieve(q.text, VIEWER, k=5)] for q in questions]
    hit5, mrr = hit_rate_and_mrr(ranked, [q.document_id for q in questions], k=5)
    hit1, _ = hit_rate_and_mrr(ranked, [q.document_id for q in questions], k=1)
    print(f"  {label:8} {len(documents):>4} documents ({report.chunks_written} chunks), {len(questions):>3} questions"
          f"{' (near-duplicate topics x' + str(copies) + ')' if copies > 1 else ''}: "
          f"hit@1 {hit1:.3f}  hit@5 {hit5:.3f}  MRR {mrr:.3f}")


# -- 4. public QA data ---------------------------------------------------------------------------------

def public_qa() -> None:
    installed = [name for name in QA_PACKAGES if importlib.util.find_spec(name) is not None]
    print(f"  installed candidates: {', '.join(installed) or 'none'}")
    print("  No public QA data set ships inside a package here: the IR benchmark packages on the registry "
          "(beir, ir-datasets, mteb, datasets) download their corpora at run time, which this environment "
          "cannot do, and the QA-named wheels checked (natural-questions, dbqrqa) hold code only. Skipped; the "
          "generated corpus above stands in.")


# -- main ---------------------------------------------------------------------------------------------

def with_hybrid(enabled: bool, action, *args) -> None:
    if not enabled:
        return
    from tests.standins.openai_server import start

    server, base_url = start()
    os.environ.update({"EMBEDDING_PROVIDER": "openai", "EMBEDDING_BASE_URL": base_url,
                       "EMBEDDING_MODEL": "standin-embedding", "EMBEDDING_DIMENSIONS": "64"})
    try:
        action(*args)
        calls = server.embedding_requests()
        print(f"  hybrid   ({len(calls)} embedding calls, {sum(len(c.json['input']) for c in calls)} texts)")
    finally:
        for variable in ("EMBEDDING_PROVIDER", "EMBEDDING_BASE_URL", "EMBEDDING_MODEL", "EMBEDDING_DIMENSIONS"):
            os.environ.pop(variable, None)
        store_module.reset_for_tests()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="chunk counts of the latency runs (comma-separated)")
    parser.add_argument("--queries", type=int, default=100, help="queries per latency run (at most)")
    parser.add_argument("--max-query-seconds", type=float, default=90.0, help="time bound of each latency run")
    parser.add_argument("--copies", type=int, default=5, help="near-duplicate copies of the topics (quality, ingest)")
    parser.add_argument("--no-hybrid", dest="hybrid", action="store_false", help="skip the dense (stand-in) runs")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="insightmesh-bench-") as folder, mock_aws():
        workdir = Path(folder)
        print("1. ingest throughput (ingest_documents, embedded Qdrant, moto DynamoDB)")
        bench_ingest(workdir, args.copies, "offline")
        with_hybrid(args.hybrid, bench_ingest, workdir, args.copies, "hybrid")
        print("2. query latency (retrieve(): sparse query, ACL filter, grouped by document; embedded store)")
        for size in sizes:
            bench_latency(workdir, size, args.queries, args.max_query_seconds)
        print("3. retrieval quality on the generated corpus")
        bench_quality(workdir, 1, "offline")
        if args.copies > 1:
            bench_quality(workdir, args.copies, "offline")
        with_hybrid(args.hybrid, bench_quality, workdir, 1, "hybrid")
        if args.copies > 1:
            with_hybrid(args.hybrid, bench_quality, workdir, args.copies, "hybrid")
        print("4. public QA data set")
        public_qa()
    print(f"done in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
