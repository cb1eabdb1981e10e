"""Retrieval: the passages of the knowledge base that answer a question, for one viewer.

**Access control is part of the query**, never a filter over its results: Qdrant is asked only
for chunks whose ``acl`` payload (keyword-indexed) contains one of :meth:`Viewer.principals` —
``anyone``, ``user:<e-mail>``, ``domain:<domain>``, and for each of the viewer's groups
``group:<name>`` and, when it has one, ``group:<group e-mail>`` (``MatchAny``). A chunk the
viewer may not see is never a candidate, so it can neither be returned nor crowd out what they
may see (k=1 still finds the best *visible* chunk).
With hybrid search the filter is applied to both prefetches as well as to the fused query.

**Diversity is part of the query too**: ``query_points_groups`` with ``group_by="document_id"``
and ``group_size=per_document`` returns the best ``k`` documents with at most ``per_document``
chunks each; the passages are then those chunks, best first, cut to ``k``.

**Scores.** Offline (sparse only) a score is BM25; hybrid, it is the reciprocal-rank-fusion score
of the dense and sparse rankings. ``score_threshold`` applies to that final score. When the dense
provider fails at query time the search falls back to sparse only (logged), rather than failing.

:func:`viewer_for_user` builds a viewer from the directory: the user's e-mail (``GetItem``), their
groups (``Query Membership.by-user``) by name, and those groups' e-mails (``BatchGetItem``) — so a
document shared with an admin-made group (``group:sales``) reaches its members, and one shared with
a Google group's address reaches the members the directory sync mirrored. An unknown or inactive
user is a viewer without e-mail: they see what is shared with ``anyone`` only. The same viewers
make up a shared conversation's :class:`Audience` (every member must be a viewer of a document).

**Tracing.** With tracing on, each :func:`retrieve` is a ``retrieve knowledge`` span: ``k``, the
number of hits, their scores and document ids (``insightmesh.retrieval.*``); the question only with
message content capture on, redacted as the logs are.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from pynamodb.exceptions import DoesNotExist

from insightmesh import tracing
from insightmesh.knowledge.base import Audience, Passage, Viewer
from insightmesh.knowledge.embedders import get_embedder
from insightmesh.knowledge.embedders.base import EmbeddingError
from insightmesh.knowledge.sparse import sparse_vector
from insightmesh.knowledge.store import ScoredChunk, get_store
from insightmesh.observability import get_logger, redact_text

MAX_K: Final = 50
MAX_PER_DOCUMENT: Final = 10
MAX_QUESTION_CHARS: Final = 4000
GROUP_LOOKUP_THREADS: Final = 8


def _passage(hit: ScoredChunk) -> Passage:
    payload = hit.payload
    return Passage(
        document_id=payload["document_id"], title=payload["title"], url=payload["url"], text=payload["text"],
        score=hit.score, chunk_index=payload["chunk_index"], heading=payload["heading"],
        mime_type=payload["mime_type"] or None,
    )


def retrieve(
    question: str,
    viewer: Viewer | Audience,
    *,
    k: int = 5,
    score_threshold: float | None = None,
    per_document: int = 2,
    sources: Sequence[str] | None = None,
) -> list[Passage]:
    """The ``k`` best passages for ``question`` that ``viewer`` may see — or, for an
    :class:`Audience`, that every one of its readers may see — at most ``per_document`` from one
    document, best first (see the module docstring)."""
    if not tracing.enabled():
        return _retrieve(question, viewer, k, score_threshold, per_document, sources)
    with tracing.span("retrieve knowledge") as span:
        passages = _retrieve(question, viewer, k, score_threshold, per_document, sources)
        if span.is_recording():
            span.set_attributes(retrieval_attributes(question, min(k, MAX_K), passages))
        return passages


def retrieval_attributes(question: str, k: int, passages: Sequence[Passage]) -> dict[str, tracing.AttributeValue]:
    attributes: dict[str, tracing.AttributeValue] = {
        "insightmesh.retrieval.k": k, "insightmesh.retrieval.hits": len(passages),
        "insightmesh.retrieval.scores": [float(passage.score) for passage in passages],
        "insightmesh.retrieval.document_ids": [passage.document_id for passage in passages],
    }
    if tracing.capture_message_content():
        attributes["insightmesh.retrieval.query"] = redact_text(question.strip()[:MAX_QUESTION_CHARS])
    return attributes


def _retrieve(question: str, viewer: Viewer | Audience, k: int, score_threshold: float | None, per_document: int,
              sources: Sequence[str] | None) -> list[Passage]:
    if k < 1 or per_document < 1:
        raise ValueError("k and per_document must be at least 1")
    k, per_document = min(k, MAX_K), min(per_document, MAX_PER_DOCUMENT)
    question = question.strip()[:MAX_QUESTION_CHARS]
    if not question:
        return []
    sparse = sparse_vector(question, query=True)
    dense: list[float] | None = None
    embedder = get_embedder()
    if embedder is not None:
        try:
            dense = embedder.embed([question])[0]
        except EmbeddingError as error:
            get_logger().warning("query embedding failed; searching sparse vectors only",
                                 extra={"error": type(error).__name__, "detail": str(error)[:200]})
    if not sparse[0] and dense is None:
        return []
    audience = viewer if isinstance(viewer, Audience) else Audience.of(viewer)
    hits = get_store().query(readers=audience.principal_sets(), sparse=sparse if sparse[0] else None, dense=dense,
                             groups=k, group_size=per_document, score_threshold=score_threshold, sources=sources)
    return [_passage(hit) for hit in hits[:k]]


def viewer_for_user(user_id: str) -> Viewer:
    """The viewer of directory user ``user_id`` (see the module docstring)."""
    from insightmesh.directory.models import User

    try:
        user = User.get(user_id)
    except DoesNotExist:
        return Viewer(email=None)
    if not user.is_active:
        return Viewer(email=None)
    return _with_groups({user_id: user.email or None})[user_id]


def viewers_for_users(user_ids: Sequence[str]) -> dict[str, Viewer]:
    """The viewers of many directory users at once (a conversation's members): one
    ``BatchGetItem`` per 100 users, their groups (one ``Query Membership.by-user`` each, run
    concurrently: DynamoDB has no batch form of a Query) and one ``BatchGetItem`` per 100 distinct
    groups. An unknown or inactive user is absent from the result."""
    from insightmesh.directory.models import User

    ids = list(dict.fromkeys(user_ids))
    emails: dict[str, str | None] = {}
    for start in range(0, len(ids), 100):  # BatchGetItem takes 100 keys
        for user in User.batch_get(ids[start:start + 100], attributes_to_get=["user_id", "email", "is_active"]):
            if user.is_active:
                emails[str(user.user_id)] = user.email or None
    return _with_groups(emails) if emails else {}


def _with_groups(emails: dict[str, str | None]) -> dict[str, Viewer]:
    from insightmesh.directory.models import Group, Membership

    def names(user_id: str) -> list[str]:
        return [membership.group_name for membership in Membership.by_user.query(user_id)]

    if len(emails) == 1:
        memberships = {user_id: names(user_id) for user_id in emails}
    else:
        with ThreadPoolExecutor(max_workers=min(GROUP_LOOKUP_THREADS, len(emails))) as pool:
            memberships = dict(zip(emails, pool.map(names, emails), strict=True))
    every = sorted({name for found in memberships.values() for name in found})
    group_emails: dict[str, str] = {}
    for start in range(0, len(every), 100):
        for group in Group.batch_get(every[start:start + 100], attributes_to_get=["name", "email"]):
            if group.email and group.email.strip():
                group_emails[str(group.name)] = group.email.strip().lower()

    def groups(names: list[str]) -> tuple[str, ...]:  # each group by name, and by e-mail when it has one
        return tuple(sorted({*names, *(group_emails[name] for name in names if name in group_emails)}))

    return {user_id: Viewer(email=email, groups=groups(memberships[user_id])) for user_id, email in emails.items()}
