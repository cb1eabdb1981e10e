"""How one case is scored: its retrieval against the expected sources, its answer by an LLM judge.

**Retrieval.** The retrieved passages' documents, in rank order (a document counts once, at the
rank of its best passage), against the case's expected sources (a document matches by id, or by
title case-insensitively):

* ``recall`` — the share of expected sources among the retrieved documents;
* ``hit_at_k`` — 1 when any expected source is among them, else 0;
* ``mrr`` — 1 / the rank of the first expected source (0 when none is retrieved).

A case without expected sources has no retrieval scores (it counts in the answer scores only).

**The answer.** An LLM judge reads the question, the numbered passages the answer was given and
the answer (without its appended Sources list), and grades it with :data:`JUDGE_RUBRIC`, answering
a JSON object of three scores between 0 and 1: ``faithfulness`` (every claim is supported by the
passages), ``answers_question`` and ``cites`` (it cites the passages it uses by number, ``[n]``).
The reply is parsed leniently (the first JSON object in it, in a code fence or not; numbers as
numbers or strings, clamped to 0..1); a reply without the three scores is a
:class:`JudgeReplyError` — the case's error, never the run's. The offline LLM grades the same
prompt deterministically (:mod:`insightmesh.llm.offline`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Final, TypedDict

from insightmesh.knowledge.answers import SOURCES_HEADING, document_numbers
from insightmesh.knowledge.base import Passage
from insightmesh.llm.base import ChatMessage, LlmClient

ANSWER_SCORES: Final = ("faithfulness", "answers_question", "cites")
RETRIEVAL_SCORES: Final = ("recall", "hit_at_k", "mrr")
JUDGE_PASSAGE_CHARS: Final = 1_500
JUDGE_MAX_TOKENS: Final = 300
JUDGE_RUBRIC: Final = (
    "You grade an assistant's answer with this rubric. Reply with JSON only: "
    '{"faithfulness": <0..1>, "answers_question": <0..1>, "cites": <0..1>, "comment": "<one sentence>"}.\n'
    "- faithfulness: every claim of the answer is supported by the numbered passages (1: all, 0: none).\n"
    "- answers_question: the answer addresses the question (1: fully, 0: not at all).\n"
    "- cites: the answer cites the passages it uses by their number, like [1] (1: every use cited, 0: no citation)."
)
_OBJECT: Final = re.compile(r"\{.*?\}", re.DOTALL)


class RetrievalScores(TypedDict):
    recall: float
    hit_at_k: float
    mrr: float


class AnswerScores(TypedDict):
    faithfulness: float
    answers_question: float
    cites: float


class JudgeReplyError(ValueError):
    """The judge's reply holds no JSON object with the three scores."""


def ranked_documents(passages: Sequence[Passage]) -> list[tuple[str, str]]:
    """(document id, title) of the passages' documents, each once, in rank order."""
    seen: dict[str, str] = {}
    for passage in passages:
        seen.setdefault(passage.document_id, passage.title)
    return list(seen.items())


def score_retrieval(passages: Sequence[Passage], *, expected_ids: Sequence[str],
                    expected_titles: Sequence[str]) -> RetrievalScores | None:
    """Recall, hit@k and MRR of ``passages`` (see the module docstring); None without expected sources."""
    wanted_ids = {value for value in expected_ids if value}
    wanted_titles = {value.strip().lower() for value in expected_titles if value.strip()}
    expected = len(wanted_ids) + len(wanted_titles)
    if not expected:
        return None
    found_ids: set[str] = set()
    found_titles: set[str] = set()
    first_rank = 0
    for rank, (document_id, title) in enumerate(ranked_documents(passages), start=1):
        matched = False
        if document_id in wanted_ids:
            found_ids.add(document_id)
            matched = True
        if title.strip().lower() in wanted_titles:
            found_titles.add(title.strip().lower())
            matched = True
        if matched and not first_rank:
            first_rank = rank
    found = len(found_ids) + len(found_titles)
    return RetrievalScores(recall=found / expected, hit_at_k=1.0 if found else 0.0,
                           mrr=1.0 / first_rank if first_rank else 0.0)


def answer_body(answer: str) -> str:
    """The answer without the Sources list the assistant appends (the judge grades what the model wrote)."""
    head, _, _ = answer.partition(f"\n\n{SOURCES_HEADING}")
    return head.strip()


def judge_messages(question: str, passages: Sequence[Passage], answer: str) -> list[ChatMessage]:
    """The judge's one user message: ``## Question``, ``## Passages`` (numbered as the answer saw
    them) and ``## Answer`` sections."""
    numbers = document_numbers(passages)
    listed = "\n\n".join(f"[{numbers[p.document_id]}] {p.title}\n{p.text.strip()[:JUDGE_PASSAGE_CHARS]}"
                         for p in passages) or "(none)"
    return [ChatMessage.user(f"## Question\n{question.strip()}\n\n## Passages\n{listed}\n\n"
                             f"## Answer\n{answer_body(answer)}")]


def _score(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]  # a number or a numeric string; anything else fails
    except (TypeError, ValueError):
        return None
    if number != number:  # NaN
        return None
    return min(max(number, 0.0), 1.0)


def parse_judge_reply(text: str) -> tuple[AnswerScores, str]:
    """The scores and comment of a judge's reply (see the module docstring)."""
    for match in _OBJECT.finditer(text):
        try:
            parsed = json.loads(match.group(0))
        except ValueError:
            continue
        if not isinstance(parsed, dict):
            continue
        scores = {name: _score(parsed.get(name)) for name in ANSWER_SCORES}
        if all(value is not None for value in scores.values()):
            comment = parsed.get("comment")
            return (AnswerScores(faithfulness=scores["faithfulness"] or 0.0,
                                 answers_question=scores["answers_question"] or 0.0, cites=scores["cites"] or 0.0),
                    str(comment)[:300] if comment else "")
    raise JudgeReplyError(f"the judge's reply has no JSON object with {', '.join(ANSWER_SCORES)}: {text[:200]!r}")


def judge(llm: LlmClient, question: str, passages: Sequence[Passage], answer: str) -> tuple[AnswerScores, str]:
    """Grade ``answer`` with ``llm`` as the judge (``JudgeReplyError`` if its reply is malformed)."""
    completion = llm.complete(judge_messages(question, passages, answer), system=JUDGE_RUBRIC,
                              max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)
    return parse_judge_reply(completion.text)


__all__ = ["ANSWER_SCORES", "JUDGE_RUBRIC", "RETRIEVAL_SCORES", "AnswerScores", "JudgeReplyError", "RetrievalScores",
           "answer_body", "judge", "judge_messages", "parse_judge_reply", "ranked_documents", "score_retrieval"]
