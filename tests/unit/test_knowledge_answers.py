"""Answers from passages (insightmesh.knowledge.answers) and the knowledge settings — no network."""

from __future__ import annotations

import pytest

from insightmesh.knowledge.answers import (
    NOTHING_FOUND,
    best_sentences,
    extractive_answer,
    knowledge_prompt,
    sources_section,
)
from insightmesh.knowledge.base import Passage
from insightmesh.knowledge.settings import KnowledgeConfigurationError, load_knowledge_settings


def passage(document_id: str, text: str, *, title: str = "Doc", url: str | None = None, score: float = 1.0,
            heading: str | None = None, index: int = 0) -> Passage:
    return Passage(document_id=document_id, title=title, url=url, text=text, score=score, chunk_index=index,
                   heading=heading)


PASSAGES = [
    passage("d1", "Parental leave lasts 18 weeks. It is paid in full. Ask HR for the form.",
            title="Handbook", url="https://docs.example.com/handbook", heading="Leave"),
    passage("d2", "Travel is booked through Navan.", title="Travel [2027]", url=None, score=0.8),
    passage("d1", "Leave can be split into two blocks.", title="Handbook", url="https://docs.example.com/handbook",
            score=0.7, index=3),
    passage("d3", "Unrelated text about printers.", title="Printing (how)", url="https://x.example.com/a b(c)",
            score=0.5),
]


def test_sources_section_lists_each_document_once_in_rank_order():
    assert sources_section(PASSAGES) == (
        "*Sources*\n"
        "1. [Handbook](https://docs.example.com/handbook)\n"
        "2. Travel \\[2027\\]\n"
        "3. [Printing (how)](https://x.example.com/a%20b%28c%29)"
    )
    assert sources_section([]) == ""
    unsafe = passage("d9", "x", title="Evil", url="javascript:alert(1)")
    assert sources_section([unsafe]) == "*Sources*\n1. Evil"


def test_extractive_answer_quotes_the_relevant_sentences_then_the_sources():
    answer = extractive_answer("How many weeks of parental leave?", PASSAGES)
    assert answer.startswith("Here is what I found in the knowledge base:")
    assert "**Handbook — Leave** [1]\n> Parental leave lasts 18 weeks." in answer
    assert "**Travel [2027]** [2]\n> Travel is booked through Navan." in answer
    assert "printers" not in answer  # only the best three passages are quoted
    assert answer.endswith(sources_section(PASSAGES))


def test_extractive_answer_when_nothing_was_found():
    assert extractive_answer("anything", []) == NOTHING_FOUND
    assert "nothing in the knowledge base" in NOTHING_FOUND


def test_best_sentences_keep_text_order_and_trim():
    text = "Alpha one. Beta parental. Gamma leave parental. Delta. " + "Long " * 200 + "end."
    assert best_sentences("parental leave", text, limit=2) == ["Beta parental.", "Gamma leave parental."]
    assert best_sentences("zzz", "First. Second. Third. Fourth.", limit=2) == ["First.", "Second."]
    trimmed = best_sentences("long", "Long " * 200 + "end.")[0]
    assert trimmed.endswith("…") and len(trimmed) <= 301


def test_knowledge_prompt_numbers_by_document_and_asks_for_citations():
    prompt = knowledge_prompt(PASSAGES)
    assert "cite" in prompt and "[1]" in prompt
    assert "[1] Handbook — Leave (https://docs.example.com/handbook)\nParental leave lasts 18 weeks." in prompt
    assert "[2] Travel [2027]\nTravel is booked through Navan." in prompt
    assert "[1] Handbook (https://docs.example.com/handbook)\nLeave can be split into two blocks." in prompt
    assert "[3] Printing (how)" in prompt
    assert knowledge_prompt([]) == ""
    huge = [passage(f"d{n}", "word " * 1000) for n in range(40)]
    assert len(knowledge_prompt(huge)) <= 16_500


# -- settings ---------------------------------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch):
    for name in ("QDRANT_URL", "QDRANT_PATH", "QDRANT_COLLECTION", "EMBEDDING_PROVIDER", "EMBEDDING_BASE_URL",
                 "EMBEDDING_MODEL", "EMBEDDING_DIMENSIONS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults(clean_environment):
    settings = load_knowledge_settings()
    assert settings.QDRANT_URL is None and settings.QDRANT_PATH == ".insightmesh/qdrant"
    assert settings.QDRANT_COLLECTION == "insightmesh-knowledge"
    assert settings.EMBEDDING_PROVIDER == "offline" and settings.EMBEDDING_DIMENSIONS == 0
    clean_environment.setenv("EMBEDDING_PROVIDER", "bedrock")
    clean_environment.setenv("QDRANT_URL", "")  # the template's empty parameter: unset
    settings = load_knowledge_settings()
    assert settings.embedding_model == "amazon.titan-embed-text-v2:0" and settings.QDRANT_URL is None


def test_production_requires_qdrant_url(clean_environment):
    clean_environment.setenv("ENVIRONMENT", "production")
    with pytest.raises(KnowledgeConfigurationError, match="QDRANT_URL is required in production"):
        load_knowledge_settings()
    clean_environment.setenv("QDRANT_URL", "https://qdrant.internal.example.com:6333/")
    assert load_knowledge_settings().QDRANT_URL == "https://qdrant.internal.example.com:6333"


@pytest.mark.parametrize(("name", "value"), [
    ("QDRANT_URL", "ftp://qdrant"), ("EMBEDDING_PROVIDER", "cohere"), ("EMBEDDING_DIMENSIONS", "-1"),
    ("QDRANT_COLLECTION", "bad name/with slash"),
])
def test_bad_values_name_the_variable(clean_environment, name, value):
    clean_environment.setenv(name, value)
    with pytest.raises(KnowledgeConfigurationError, match=name):
        load_knowledge_settings()
