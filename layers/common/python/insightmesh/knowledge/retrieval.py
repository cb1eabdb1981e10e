"""Retrieval: the passages of the knowledge base that answer a question, for one viewer.

**Access control is part of the query**, never a filter over its results: Qdrant is asked only
for chunks whose ``acl`` payload (keyword-indexed) contains one of :meth:`Viewer.principals` —
``anyone``, ``user:<e-mail>``, ``domain:<domain>`` and ``group:<group e-mail>`` for each of the
viewer's groups (``MatchAny``). A chunk the viewer may not see is never a candidate, so it can
neither be returned nor crowd out what they may see (k=1 still finds the best *visible* chunk).
With hybrid search the filter is applied to both prefetches as well as to the fused query.

**Diversity is part of the query too**: ``query_points_groups`` with ``group_by="document_id"``
and ``group_size=per_document`` returns the best ``k`` documents with at most ``per_document``
chunks each; the passages are then those chunks, best first, cut to ``k``.

**Scores.** Offline (sparse only) a score is BM25; hybrid, it is the reciprocal-rank-fusion score
of the dense and sparse rankings. ``score_threshold`` applies to that final score. When the dense
provider fails at query time the search falls back to sparse only (logged), rather than failing.

:func:`viewer_for_user` builds a viewer from the directory: the user's e-mail (``GetItem``), their
groups (``Query Membership.by-user``) and those groups' e-mails (``BatchGetItem``) — a group
without an e-mail (an admin-made group, not mirrored from Google) contributes nothing. An unknown
or inactive user is a viewer without e-mail: they see what is shared with ``anyone`` only.
"""

from __future__ import annotations

from typing import Final

from pynamodb.exceptions import DoesNotExist

from insightmesh.knowledge.base import Passage, Viewer
from insightmesh.knowledge.embeddings import EmbeddingError, get_embedder, sparse_vector
from insightmesh.knowledge.store import ScoredChunk, get_store
from insightmesh.observability import get_logger

MAX_K: Final = 50
MAX_PER_DOCUMENT: Final = 10
MAX_QUESTION_CHARS: Final = 4000


def _passage(hit: ScoredChunk) -> Passage:
    payload = hit.payload
    return Passage(
        document_id=payload["document_id"], title=payload["title"], url=payload["url"], text=payload["text"],
        score=hit.score, chunk_index=payload["chunk_index"], heading=payload["heading"],
        mime_type=payload["mime_type"] or None,
    )


def retrieve(
    question: str,
    viewer: Viewer,
    *,
    k: int = 5,
    score_threshold: float | None = None,
    per_document: int = 2,
) -> list[Passage]:
    """The ``k`` best passages for ``question`` that ``viewer`` may see, at most ``per_document``
    from one document, best first (see the module docstring)."""
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
    hits = get_store().query(principals=viewer.principals(), sparse=sparse if sparse[0] else None, dense=dense,
                             groups=k, group_size=per_document, score_threshold=score_threshold)
    return [_passage(hit) for hit in hits[:k]]


def viewer_for_user(user_id: str) -> Viewer:
    """The viewer of directory user ``user_id`` (see the module docstring)."""
    from insightmesh.directory.models import Group, Membership, User

    try:
        user = User.get(user_id)
    except DoesNotExist:
        return Viewer(email=None)
    if not user.is_active:
        return Viewer(email=None)
    names = [membership.group_name for membership in Membership.by_user.query(user_id)]
    emails: list[str] = []
    for start in range(0, len(names), 100):  # BatchGetItem takes 100 keys
        for group in Group.batch_get(names[start:start + 100], attributes_to_get=["name", "email"]):
            if group.email and group.email.strip():
                emails.append(group.email.strip().lower())
    return Viewer(email=user.email or None, groups=tuple(sorted(set(emails))))
