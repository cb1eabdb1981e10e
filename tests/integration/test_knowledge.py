"""The knowledge base end to end: ingestion into an embedded Qdrant, records in moto, retrieval.

Every table of the template is created in moto (the ``tables`` fixture); Qdrant is qdrant-client's
embedded mode in a temporary folder (``QDRANT_PATH``), or in memory, or — to prove the REST path —
the local runtime's REST bridge (``QDRANT_URL``). Dense embeddings come from the OpenAI-compatible
stand-in's ``/v1/embeddings`` on loopback.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from qdrant_client import models

from insightmesh.directory.models import Group, Membership, User
from insightmesh.knowledge import store as store_module
from insightmesh.knowledge.base import ANYONE, SourceDocument, Viewer
from insightmesh.knowledge.chunking import chunk_id
from insightmesh.knowledge.embedders import get_embedder
from insightmesh.knowledge.models import FAILED, INDEXED, KnowledgeDocument
from insightmesh.knowledge.pipeline import ingest_documents, remove_documents
from insightmesh.knowledge.retrieval import retrieve, viewer_for_user
from insightmesh.knowledge.settings import KnowledgeConfigurationError
from insightmesh.knowledge.store import get_store
from tests.knowledge_corpus import generate_corpus, hit_rate_and_mrr
from tests.knowledge_fixtures import docx_bytes, minimal_pdf, pptx_bytes, xlsx_bytes
from tests.standins.openai_server import start as start_openai

SOURCE = "local:/handbook"




def doc(name: str, text: str, *, title: str | None = None, acl: tuple[str, ...] = (ANYONE,),
        mime_type: str = "text/markdown", source: str = SOURCE, content: bytes | None = None) -> SourceDocument:
    return SourceDocument(
        document_id=f"{source}/{name}", source=source, title=title or name.title(), mime_type=mime_type,
        content=content if content is not None else text.encode(), url=f"https://docs.example.com/{name}",
        modified_time=datetime(2026, 11, 1, 9, 30, tzinfo=UTC), acl=acl,
    )


def long_text(topic: str, paragraphs: int) -> str:
    return "\n\n".join(
        f"Section {n} of the {topic} guide. The {topic} process has several steps that every employee follows. "
        f"Step {n} explains who approves what, where the forms live and how long each stage of {topic} takes."
        for n in range(paragraphs)
    )


def point_ids(document_id: str) -> set[str]:
    store = get_store()
    points, _ = store.client.scroll(
        store.collection, limit=1000, with_payload=False,
        scroll_filter=models.Filter(must=[models.FieldCondition(key="document_id",
                                                                match=models.MatchValue(value=document_id))]))
    return {str(point.id) for point in points}


# -- ingestion and re-ingestion -------------------------------------------------------------------


def test_new_unchanged_changed_and_removed_documents(knowledge):
    handbook = doc("handbook", "# Handbook\n\n" + long_text("expenses", 20))
    faq = doc("faq", "The cafeteria opens at noon.", mime_type="text/plain")
    slides = doc("slides", "", mime_type="application/vnd.openxmlformats-officedocument.presentationml.presentation",
                 content=pptx_bytes([("Kickoff", ["Goals for the quarter"], None)]))

    first = ingest_documents([handbook, faq, slides], sweep_source=SOURCE)
    assert (first.seen, first.new, first.changed, first.unchanged, first.failed, first.removed) == (3, 3, 0, 0, 0, 0)
    handbook_chunks = KnowledgeDocument.get(handbook.document_id).chunk_count
    assert handbook_chunks > 2
    assert first.chunks_written == handbook_chunks + 2
    total = get_store().count()
    assert total == first.chunks_written

    record = KnowledgeDocument.get(faq.document_id)
    assert (record.status, record.chunk_count, record.acl, record.source) == (INDEXED, 1, ["anyone"], SOURCE)
    assert record.content_hash and len(record.content_hash) == 64 and record.error is None
    assert record.title == "Faq" and record.url == "https://docs.example.com/faq"
    assert record.modified_time == datetime(2026, 11, 1, 9, 30, tzinfo=UTC)

    again = ingest_documents([handbook, faq, slides], sweep_source=SOURCE)
    assert (again.new, again.changed, again.unchanged, again.removed, again.chunks_written) == (0, 0, 3, 0, 0)
    assert get_store().count() == total, "re-ingesting does not grow the collection"

    # The handbook shrinks: its surplus chunks go; the FAQ changes in place.
    shorter = replace(handbook, content=("# Handbook\n\n" + long_text("expenses", 4)).encode())
    faq_v2 = replace(faq, content=b"The cafeteria opens at 11:30 from Monday.")
    changed = ingest_documents([shorter, faq_v2, slides], sweep_source=SOURCE)
    assert (changed.new, changed.changed, changed.unchanged) == (0, 2, 1)
    new_count = KnowledgeDocument.get(handbook.document_id).chunk_count
    assert new_count < handbook_chunks
    assert point_ids(handbook.document_id) == {chunk_id(handbook.document_id, n) for n in range(new_count)}
    passages = retrieve("When does the cafeteria open?", Viewer("someone@example.com"))
    assert passages[0].document_id == faq.document_id and "11:30" in passages[0].text

    # The slides disappear from the source: the sweep removes their chunks and record.
    swept = ingest_documents([shorter, faq_v2], sweep_source=SOURCE)
    assert (swept.unchanged, swept.removed) == (2, 1)
    assert get_store().count(slides.document_id) == 0
    with pytest.raises(KnowledgeDocument.DoesNotExist):
        KnowledgeDocument.get(slides.document_id)
    assert get_store().count() == new_count + 1


def test_chunk_ids_are_deterministic_and_reingestion_upserts(knowledge):
    document = doc("policy", "# Policy\n\n" + long_text("travel", 12))
    ingest_documents([document])
    count = KnowledgeDocument.get(document.document_id).chunk_count
    expected = {chunk_id(document.document_id, n) for n in range(count)}
    assert point_ids(document.document_id) == expected

    retitled = replace(document, title="Travel policy (2027)")  # changed: every chunk is rewritten
    report = ingest_documents([retitled])
    assert report.changed == 1 and report.chunks_written == count
    assert point_ids(document.document_id) == expected
    assert get_store().count() == count
    assert retrieve("travel policy 2027", Viewer(None))[0].title == "Travel policy (2027)"


def test_every_format_is_ingested_and_found(knowledge):
    documents = [
        doc("report", "", mime_type="application/pdf",
            content=minimal_pdf([["The Zanzibar project budget is 4 million."]], title="Report")),
        doc("plan", "", mime_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            content=docx_bytes([("h1", "Hiring"), ("p", "We hire twelve Quokka engineers in 2027.")])),
        doc("prices", "", mime_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            content=xlsx_bytes({"Prices": [("Product", "Price"), ("Wombat widget", 19)]})),
        doc("deck", "", mime_type="application/vnd.openxmlformats-officedocument.presentationml.presentation",
            content=pptx_bytes([("Narwhal launch", ["Ships in May"], None)])),
        doc("call", "", mime_type="text/vtt",
            content=b"WEBVTT\n\n00:00:05.000 --> 00:00:09.000\n<v Ana>The Pangolin migration is done.\n"),
        doc("subs", "", mime_type="application/x-subrip",
            content=b"1\n00:00:01,000 --> 00:00:02,000\nAxolotl review on Friday\n"),
        doc("sheet-export", "", mime_type="text/csv", content=b"Team,Mascot\nPlatform,Capybara\n"),
    ]
    report = ingest_documents(documents)
    assert (report.new, report.failed) == (len(documents), 0), report.errors
    for question, name in [("Zanzibar budget", "report"), ("Quokka engineers", "plan"),
                           ("Wombat widget price", "prices"), ("Narwhal launch", "deck"),
                           ("Pangolin migration", "call"), ("Axolotl review", "subs"),
                           ("Capybara mascot", "sheet-export")]:
        top = retrieve(question, Viewer(None), k=1)
        assert top and top[0].document_id == f"{SOURCE}/{name}", question
    deck = retrieve("Narwhal launch", Viewer(None), k=1)[0]
    assert deck.heading == "Narwhal launch" and deck.url == "https://docs.example.com/deck"


def test_a_failing_document_is_recorded_and_the_others_succeed(knowledge):
    good = doc("good", "Quarterly goals are set in January.")
    corrupt = doc("broken", "", mime_type="application/pdf", content=b"%PDF-1.7\n1 0 obj << garbage")
    unsupported = doc("image", "", mime_type="image/png", content=b"\x89PNG\r\n")
    also_good = doc("also-good", "Holidays are booked in the HR portal.")
    report = ingest_documents([good, corrupt, unsupported, also_good], sweep_source=SOURCE)
    assert (report.seen, report.new, report.failed) == (4, 2, 2)
    assert set(report.errors) == {corrupt.document_id, unsupported.document_id}
    assert "ExtractionError" in report.errors[corrupt.document_id]
    assert "UnsupportedDocumentError" in report.errors[unsupported.document_id]
    record = KnowledgeDocument.get(corrupt.document_id)
    assert (record.status, record.content_hash, record.chunk_count) == (FAILED, None, 0)
    assert "PDF" in record.error
    # A failed document is retried by the next run (it is not "unchanged"), and not swept.
    again = ingest_documents([good, corrupt, unsupported, also_good], sweep_source=SOURCE)
    assert (again.unchanged, again.failed, again.removed) == (2, 2, 0)
    # Fixed at the source: it is indexed and counted as changed.
    fixed = replace(corrupt, content=minimal_pdf([["Now a readable PDF about onboarding."]]))
    third = ingest_documents([fixed])
    assert (third.changed, third.failed) == (1, 0)
    assert KnowledgeDocument.get(corrupt.document_id).status == INDEXED


def test_a_failed_update_keeps_old_chunks_only_when_the_acl_is_unchanged(knowledge):
    secret = doc("salaries", "Salary bands for engineers are reviewed each spring.",
                 acl=("group:hr@example.com",))
    ingest_documents([secret])
    broken_same_acl = replace(secret, mime_type="application/pdf", content=b"not a pdf")
    assert ingest_documents([broken_same_acl]).failed == 1
    assert get_store().count(secret.document_id) == 1  # still searchable by the same people
    assert KnowledgeDocument.get(secret.document_id).chunk_count == 1

    broken_wider_acl = replace(broken_same_acl, acl=("group:hr@example.com", "anyone"))
    assert ingest_documents([broken_wider_acl]).failed == 1
    broken_narrower = replace(broken_same_acl, acl=("user:cfo@example.com",))
    assert ingest_documents([broken_narrower]).failed == 1
    assert get_store().count(secret.document_id) == 0  # ACL changed: nothing stale stays visible
    assert KnowledgeDocument.get(secret.document_id).chunk_count == 0


def test_should_stop_and_progress(knowledge):
    documents = [doc(f"d{n}", f"Document number {n} about topic {n}.") for n in range(5)]
    ingest_documents(documents, sweep_source=SOURCE)
    reports: list[int] = []
    asked = 0

    def should_stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 2

    report = ingest_documents(documents[1:], sweep_source=SOURCE, should_stop=should_stop,
                              progress=lambda running: reports.append(running.seen))
    assert report.seen == 2 and report.removed == 0, "a stopped run sweeps nothing"
    assert reports == [1, 2]
    assert get_store().count() == 5
    complete = ingest_documents(documents[3:], sweep_source=SOURCE)
    assert complete.removed == 3


def test_remove_documents(knowledge):
    documents = [doc(f"r{n}", f"Removable document {n}.") for n in range(3)]
    ingest_documents(documents)
    assert remove_documents([documents[0].document_id, documents[1].document_id, "local:/never-ingested"]) == 2
    assert get_store().count() == 1
    assert remove_documents([]) == 0


def test_the_embedded_store_persists_and_memory_mode_works(knowledge, monkeypatch):
    ingest_documents([doc("kept", "Persisted across processes.")])
    store_module.reset_for_tests()  # closes the client: as a new process would
    assert get_store().count() == 1
    assert retrieve("persisted processes", Viewer(None))[0].document_id == f"{SOURCE}/kept"

    monkeypatch.setenv("QDRANT_PATH", ":memory:")
    store_module.reset_for_tests()
    assert get_store().count() == 0
    ingest_documents([doc("volatile", "Only in memory.")])
    assert retrieve("only memory", Viewer(None))[0].document_id == f"{SOURCE}/volatile"


def test_the_collection_has_named_dense_and_sparse_vectors_and_payload_indexes(knowledge):
    ingest_documents([doc("x", "Some text.")])
    store = get_store()
    info = store.client.get_collection(store.collection)
    assert store.collection == "insightmesh-knowledge"
    assert info.config.params.vectors == {}
    assert info.config.params.sparse_vectors["sparse"].modifier == models.Modifier.IDF
    store.ensure_collection()  # idempotent
    store._ensured = False
    store.ensure_collection()


# -- access control -------------------------------------------------------------------------------


ACL_DOCUMENTS = [
    ("public", "The office wifi network is called Guest and has no password.", (ANYONE,)),
    ("domain", "The staff wifi network password rotates monthly; ask IT for the wifi password.",
     ("domain:example.com",)),
    ("sales", "Sales wifi password for the demo room is Quarterly2027, wifi for demos only.",
     ("group:sales@example.com",)),
    ("alice", "Alice's personal wifi password notes: wifi password wifi password wifi password.",
     ("user:alice@example.com",)),
]


def ingest_acl_documents() -> None:
    report = ingest_documents([doc(name, text, acl=acl, mime_type="text/plain") for name, text, acl in ACL_DOCUMENTS])
    assert report.new == len(ACL_DOCUMENTS)


def visible(viewer: Viewer, k: int = 10) -> set[str]:
    return {passage.document_id.rsplit("/", 1)[1] for passage in retrieve("wifi password", viewer, k=k)}


def test_each_viewer_sees_only_what_is_shared_with_them(knowledge):
    ingest_acl_documents()
    alice = Viewer("Alice@Example.com", groups=("sales@example.com",))
    bob = Viewer("bob@example.com")
    carol = Viewer("carol@other.org", groups=("Sales@Example.com",))
    outsider = Viewer("mallory@elsewhere.net")
    assert visible(alice) == {"public", "domain", "sales", "alice"}
    assert visible(bob) == {"public", "domain"}
    assert visible(carol) == {"public", "sales"}
    assert visible(outsider) == {"public"}
    assert visible(Viewer(None)) == {"public"}


def test_the_acl_filter_runs_inside_the_query(knowledge, monkeypatch):
    ingest_acl_documents()
    # Alice's note matches "wifi password" far better than anything else...
    assert retrieve("wifi password", Viewer("alice@example.com"), k=1)[0].document_id.endswith("/alice")
    # ...yet with k=1 another viewer still gets the best document *they* may see: had the filter
    # run after a top-1 search, they would get nothing.
    top = retrieve("wifi password", Viewer("bob@example.com"), k=1)
    assert len(top) == 1 and top[0].document_id.endswith("/domain")
    # And the filter is in the request Qdrant receives.
    store = get_store()
    calls: list[dict[str, Any]] = []
    original = store.client.query_points_groups

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(store.client, "query_points_groups", spy)
    retrieve("wifi password", Viewer("bob@example.com", groups=("ops@example.com",)), k=3, per_document=1)
    condition = calls[0]["query_filter"].must[0]
    assert condition.key == "acl"
    assert condition.match.any == ["anyone", "user:bob@example.com", "domain:example.com", "group:ops@example.com"]
    assert (calls[0]["group_by"], calls[0]["group_size"], calls[0]["limit"]) == ("document_id", 1, 3)


def test_per_document_cap_is_applied_in_the_query(knowledge):
    long_doc = doc("long", "# Expenses\n\n" + long_text("expenses", 30))
    short_doc = doc("short", "Expenses for team events are approved by the office manager.")
    ingest_documents([long_doc, short_doc])
    passages = retrieve("expenses approves", Viewer(None), k=5, per_document=2)
    by_document: dict[str, int] = {}
    for passage in passages:
        by_document[passage.document_id] = by_document.get(passage.document_id, 0) + 1
    assert by_document[long_doc.document_id] == 2 and by_document[short_doc.document_id] == 1
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    assert retrieve("expenses", Viewer(None), k=1, per_document=1)[0].document_id in {long_doc.document_id,
                                                                                     short_doc.document_id}
    assert retrieve("expenses", Viewer(None), score_threshold=1000.0) == []
    assert retrieve("the of and", Viewer(None)) == []


def test_viewer_for_user_from_the_directory(knowledge):
    User("U1", email="alice@example.com", display_name="Alice").save()
    User("U2", email="gone@example.com", is_active=False).save()
    Group("gw-sales", email="Sales@Example.com", source="google", external_id="g1").save()
    Group("admins-made", description="no e-mail: an admin's group").save()
    Group("gw-eng", email="eng@example.com", source="google", external_id="g2").save()
    for group in ("gw-sales", "admins-made", "gw-eng"):
        Membership(group, "U1").save()

    viewer = viewer_for_user("U1")  # every group by name, and by e-mail when it has one
    assert viewer == Viewer("alice@example.com", groups=("admins-made", "eng@example.com", "gw-eng", "gw-sales",
                                                         "sales@example.com"))
    assert viewer.principals() == ["anyone", "user:alice@example.com", "domain:example.com", "group:admins-made",
                                   "group:eng@example.com", "group:gw-eng", "group:gw-sales",
                                   "group:sales@example.com"]
    assert viewer_for_user("U-unknown") == Viewer(None)
    assert viewer_for_user("U2") == Viewer(None)


# -- hybrid search with dense embeddings ------------------------------------------------------------


@pytest.fixture
def embeddings_standin(knowledge, monkeypatch):
    server, base_url = start_openai()
    monkeypatch.setenv("EMBEDDING_PROVIDER", "openai")
    monkeypatch.setenv("EMBEDDING_BASE_URL", base_url)
    monkeypatch.setenv("EMBEDDING_MODEL", "standin-embedding")
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "64")
    store_module.reset_for_tests()
    try:
        yield server
    finally:
        store_module.reset_for_tests()
        server.stop()


def test_hybrid_search_fuses_dense_and_sparse_with_rrf_and_batches_embeddings(embeddings_standin, monkeypatch):
    server = embeddings_standin
    big = doc("big", "# Big\n\n" + long_text("procurement", 420))
    small = doc("small", "The Tagus room is booked in Robin.")
    report = ingest_documents([big, small])
    assert report.new == 2 and report.failed == 0, report.errors
    big_chunks = KnowledgeDocument.get(big.document_id).chunk_count
    assert big_chunks > 64
    calls = server.embedding_requests()
    assert len(calls) == math.ceil(report.chunks_written / 64)  # batches of 64, across documents
    assert [len(call.json["input"]) for call in calls][:-1] == [64] * (len(calls) - 1)
    assert all(call.json["dimensions"] == 64 and call.json["model"] == "standin-embedding" for call in calls)
    assert sum(len(call.json["input"]) for call in calls) == report.chunks_written

    store = get_store()
    info = store.client.get_collection(store.collection)
    assert info.config.params.vectors["dense"].size == 64
    assert info.config.params.vectors["dense"].distance == models.Distance.COSINE

    seen: list[dict[str, Any]] = []
    original = store.client.query_points_groups

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(store.client, "query_points_groups", spy)
    passages = retrieve("Which room is booked in Robin?", Viewer("x@example.com"), k=3)
    assert passages[0].document_id == small.document_id
    query = seen[0]
    assert isinstance(query["query"], models.FusionQuery) and query["query"].fusion == models.Fusion.RRF
    usings = [prefetch.using for prefetch in query["prefetch"]]
    assert usings == ["dense", "sparse"]
    assert all(prefetch.filter.must[0].key == "acl" for prefetch in query["prefetch"])
    assert isinstance(query["prefetch"][1].query, models.SparseVector)
    assert len(query["prefetch"][0].query) == 64
    assert server.embedding_requests()[-1].json["input"] == ["Which room is booked in Robin?"]


def test_small_documents_share_embedding_calls(embeddings_standin):
    server = embeddings_standin
    documents = [doc(f"note-{n}", f"Short note number {n} about the {n}th widget.") for n in range(150)]
    report = ingest_documents(documents)
    assert (report.new, report.chunks_written) == (150, 150)
    assert [len(call.json["input"]) for call in server.embedding_requests()] == [64, 64, 22]
    assert get_store().count() == 150


def test_a_refused_text_fails_only_its_own_document(embeddings_standin):
    server = embeddings_standin
    server.set_max_input_tokens(100)  # ~400 characters: the long document's chunks are refused
    documents = [doc("short-a", "Alpha facts."), doc("long", "# Long\n\n" + long_text("refusal", 6)),
                 doc("short-b", "Beta facts.")]
    report = ingest_documents(documents)
    assert (report.new, report.failed) == (2, 1)
    assert list(report.errors) == [f"{SOURCE}/long"] and "HTTP 400" in report.errors[f"{SOURCE}/long"]
    assert retrieve("beta facts", Viewer(None))[0].document_id == f"{SOURCE}/short-b"


def test_hybrid_query_falls_back_to_sparse_when_embeddings_fail(embeddings_standin, monkeypatch):
    server = embeddings_standin
    ingest_documents([doc("rooms", "The Tagus room is booked in Robin.")])
    server.set_mode("invalid")  # 200 without embeddings: a provider answering nonsense
    passages = retrieve("Tagus room Robin", Viewer(None))
    assert passages and passages[0].document_id == f"{SOURCE}/rooms"


def test_an_embedding_refusal_fails_the_document_not_the_run(embeddings_standin):
    server = embeddings_standin
    server.require_api_key("right-key")  # we send none: 401 for every embedding request
    report = ingest_documents([doc("a", "Alpha."), doc("b", "Beta.")])
    assert (report.failed, report.new) == (2, 0)
    assert all("HTTP 401" in message for message in report.errors.values())
    server.require_api_key(None)
    assert ingest_documents([doc("a", "Alpha."), doc("b", "Beta.")]).changed == 2


def test_a_dense_size_mismatch_is_refused_with_a_clear_message(embeddings_standin, monkeypatch):
    ingest_documents([doc("a", "Alpha.")])
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "32")
    store_module.reset_for_tests()
    with pytest.raises(KnowledgeConfigurationError, match=r"QDRANT_COLLECTION.*64-dimensional.*32"):
        retrieve("alpha", Viewer(None))


def test_unknown_models_are_probed_for_their_size(embeddings_standin, monkeypatch):
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "0")
    store_module.reset_for_tests()
    embedder = get_embedder()
    assert embedder is not None and embedder.dimensions() == 64  # the stand-in's default for unknown models
    assert "dimensions" not in embeddings_standin.embedding_requests()[-1].json


# -- through qdrant-client's REST transport ----------------------------------------------------------


def test_everything_works_through_the_rest_client(knowledge, monkeypatch):
    bridge_module = pytest.importorskip("insightmesh_local.qdrant_bridge")
    bridge = bridge_module.QdrantBridge(None).start()
    try:
        monkeypatch.setenv("QDRANT_URL", bridge.url)
        store_module.reset_for_tests()
        assert get_store().remote
        ingest_acl_documents()
        assert visible(Viewer("bob@example.com")) == {"public", "domain"}
        top = retrieve("wifi password", Viewer("bob@example.com"), k=1)
        assert top[0].document_id.endswith("/domain")
        shrunk = doc("public", "Guest wifi.", mime_type="text/plain")
        assert ingest_documents([shrunk]).changed == 1
        assert remove_documents([f"{SOURCE}/alice"]) == 1
        assert get_store().count() == 3
    finally:
        store_module.reset_for_tests()
        bridge.stop()


# -- retrieval quality ------------------------------------------------------------------------------


def test_retrieval_quality_on_a_generated_corpus(knowledge, capsys):
    documents, questions = generate_corpus()
    report = ingest_documents(documents)
    assert report.failed == 0
    ranked = [[p.document_id for p in retrieve(q.text, Viewer("reader@example.com"), k=5)] for q in questions]
    hit5, mrr = hit_rate_and_mrr(ranked, [q.document_id for q in questions], k=5)
    with capsys.disabled():
        print(f"\nretrieval quality (offline BM25, {len(documents)} documents, {report.chunks_written} chunks, "
              f"{len(questions)} questions): hit@5 = {hit5:.3f}, MRR = {mrr:.3f}")
    assert hit5 >= 0.9
    assert mrr >= 0.75


def test_retrieval_quality_hybrid(embeddings_standin, capsys):
    documents, questions = generate_corpus()
    ingest_documents(documents)
    ranked = [[p.document_id for p in retrieve(q.text, Viewer(None), k=5)] for q in questions]
    hit5, mrr = hit_rate_and_mrr(ranked, [q.document_id for q in questions], k=5)
    with capsys.disabled():
        print(f"\nretrieval quality (hybrid RRF with the stand-in's hashed embeddings): hit@5 = {hit5:.3f}, "
              f"MRR = {mrr:.3f}")
    assert hit5 >= 0.8


# -- configuration ------------------------------------------------------------------------------------


def test_production_requires_qdrant_url(knowledge, monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    store_module.reset_for_tests()
    with pytest.raises(KnowledgeConfigurationError, match="QDRANT_URL is required in production"):
        get_store()
    monkeypatch.setenv("QDRANT_URL", "not a url")
    with pytest.raises(KnowledgeConfigurationError, match="QDRANT_URL"):
        get_store()


def test_openai_embeddings_at_openai_need_a_key(knowledge, monkeypatch):
    monkeypatch.setenv("EMBEDDING_PROVIDER", "openai")
    store_module.reset_for_tests()
    with pytest.raises(KnowledgeConfigurationError, match="EMBEDDING_API_KEY"):
        get_embedder()
    monkeypatch.setenv("EMBEDDING_API_KEY", "not-configured")  # the template's placeholder: no key
    get_embedder.cache_clear()
    with pytest.raises(KnowledgeConfigurationError, match="EMBEDDING_API_KEY"):
        get_embedder()


def test_a_locked_embedded_store_names_the_way_out(knowledge, tmp_path, monkeypatch):
    from qdrant_client import QdrantClient

    holder = QdrantClient(path=str(tmp_path / "locked"))
    try:
        monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "locked"))
        store_module.reset_for_tests()
        with pytest.raises(KnowledgeConfigurationError, match=r"open in another process.*QDRANT_URL"):
            get_store()
    finally:
        holder.close()


def test_acl_order_and_case_are_not_changes(knowledge):
    document = doc("shared", "Shared with two groups.", acl=("group:b@example.com", "Group:A@example.com"))
    ingest_documents([document])
    assert KnowledgeDocument.get(document.document_id).acl == ["group:a@example.com", "group:b@example.com"]
    reordered = replace(document, acl=("group:a@example.com", "group:b@example.com", "group:a@example.com"))
    assert ingest_documents([reordered]).unchanged == 1
