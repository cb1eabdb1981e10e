"""Sparse lexical vectors for chunks and questions: a pure BM25 encoder (no I/O, no settings).

**Sparse vectors are BM25 split in two.** BM25 scores a document for a query as
``Σ_t idf(t) · tf(t)·(k1+1) / (tf(t) + k1·(1 - b + b·|d|/avgdl))``. The right-hand factor depends
only on the document, so it is computed here, at ingestion, as the value of term ``t`` in the
chunk's sparse vector (``k1 = 1.2``, ``b = 0.75``, against a *fixed* average length
:data:`AVERAGE_CHUNK_TERMS`: the corpus average would change with every upsert and force
re-encoding everything). ``idf(t)`` depends on the whole collection, which only Qdrant knows: the
collection's sparse vector is declared with ``modifier=IDF``, so Qdrant multiplies each query
term's weight by ``ln(1 + (N - n(t) + 0.5)/(n(t) + 0.5))`` at query time, from its live counts.
A query vector therefore weights each of its distinct terms ``1.0`` and the dot product Qdrant
computes *is* BM25 — with no vocabulary to store, train or ship.

**Terms are hashed to indices** with BLAKE2b (the first four bytes, masked to 31 bits), never
with Python's ``hash()``, which is salted per process: the index of a term must be the same in the
ingesting Lambda, the answering Lambda and next year's process. Two terms that collide share a
dimension (about one pair in 2³¹/V² for a vocabulary of V terms: negligible), which at worst adds
a little score to a chunk that contains the other term.

**Tokens** are Unicode word runs (letters and digits, no underscores), case-folded, minus a small
English stop-word list, with a light suffix stemmer (plurals, ``-ing``, ``-ed``, a final ``-e``)
so that "policies"/"policy" and "approved"/"approves" meet. It is deliberately simple and the
same for documents and questions, which is all that lexical matching needs.

The dense embedders are :mod:`insightmesh.knowledge.embedders`.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Final

# -- sparse: hashed BM25 term-frequency vectors ---------------------------------------------------

K1: Final = 1.2
B: Final = 0.75
AVERAGE_CHUNK_TERMS: Final = 120.0  # ~1,200-character chunks hold ~120 terms once stop words are gone
INDEX_MASK: Final = 0x7FFF_FFFF  # 31 bits: a valid Qdrant sparse index (u32) in every client and language

STOP_WORDS: Final = frozenset(
    """a about above after again all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just let me more
    most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up us very was we were what when where which while who whom why will
    with would you your yours yourself yourselves""".split()
)

_WORD: Final = re.compile(r"[^\W_]+")


def stem(word: str) -> str:
    """A light English suffix stemmer (see the module docstring); words of 3 letters or fewer,
    and tokens with digits, are left alone."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4 and not word.endswith(("aies", "eies")):
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        word = word[:-1]
    elif word.endswith("s") and not word.endswith(("us", "ss", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) >= 7:
        word = word[:-3]
    elif word.endswith("ed") and len(word) >= 6:
        word = word[:-2]
    if word.endswith("e") and len(word) >= 4:
        word = word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """The terms of ``text``: case-folded Unicode word runs, stop words out, stemmed."""
    return [stem(word) for word in _WORD.findall(text.casefold()) if word not in STOP_WORDS]


def term_index(term: str) -> int:
    """The stable sparse index of ``term`` (BLAKE2b, 31 bits): the same in every process."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big") & INDEX_MASK


def bm25_weight(tf: int, length: int) -> float:
    """BM25's term-frequency saturation for ``tf`` occurrences in a chunk of ``length`` terms."""
    norm = K1 * (1.0 - B + B * length / AVERAGE_CHUNK_TERMS)
    return tf * (K1 + 1.0) / (tf + norm)


def sparse_vector(text: str, *, query: bool = False) -> tuple[list[int], list[float]]:
    """``(indices, values)`` of ``text``, indices ascending.

    A document (``query=False``) weights each term by :func:`bm25_weight`; a query weights each
    distinct term ``1.0`` (Qdrant's IDF modifier supplies the rest of BM25). Empty when ``text``
    has no terms.
    """
    terms = tokenize(text)
    if not terms:
        return [], []
    counts = Counter(term_index(term) for term in terms)
    indices = sorted(counts)
    if query:
        return indices, [1.0] * len(indices)
    return indices, [bm25_weight(counts[index], len(terms)) for index in indices]
