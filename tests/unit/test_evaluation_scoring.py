"""How an evaluation case is scored: retrieval metrics, the judge's reply parsed leniently (a
malformed one refused), the offline LLM as a deterministic judge, and what counts as a regression."""

from __future__ import annotations

import json

import pytest

from insightmesh.evaluation.cases import CaseScope
from insightmesh.evaluation.run import regressions, totals_of, viewer_of_principals
from insightmesh.evaluation.scoring import (
    JUDGE_RUBRIC,
    JudgeReplyError,
    answer_body,
    judge,
    judge_messages,
    parse_judge_reply,
    score_retrieval,
)
from insightmesh.knowledge.base import Passage, Viewer
from insightmesh.llm.offline import OfflineClient


def passage(document_id: str, title: str, text: str = "Parental leave is 18 weeks at full pay.") -> Passage:
    return Passage(document_id=document_id, title=title, url=None, text=text, score=1.0, chunk_index=0)


RANKED = [passage("d1", "Holidays"), passage("d1", "Holidays"), passage("d2", "Parental leave"),
          passage("d3", "Travel")]


def test_retrieval_scores_count_each_document_once_at_its_best_rank() -> None:
    assert score_retrieval(RANKED, expected_ids=["d2"], expected_titles=[]) == \
        {"recall": 1.0, "hit_at_k": 1.0, "mrr": 0.5}
    assert score_retrieval(RANKED, expected_ids=["d3", "d9"], expected_titles=[]) == \
        {"recall": 0.5, "hit_at_k": 1.0, "mrr": pytest.approx(1 / 3)}
    assert score_retrieval(RANKED, expected_ids=[], expected_titles=[" parental LEAVE "]) == \
        {"recall": 1.0, "hit_at_k": 1.0, "mrr": 0.5}
    assert score_retrieval(RANKED, expected_ids=["d9"], expected_titles=[]) == \
        {"recall": 0.0, "hit_at_k": 0.0, "mrr": 0.0}
    assert score_retrieval(RANKED, expected_ids=[], expected_titles=[]) is None


@pytest.mark.parametrize("reply", [
    '{"faithfulness": 0.9, "answers_question": 1, "cites": 0, "comment": "ok"}',
    'Here is my grade:\n```json\n{"faithfulness": "0.9", "answers_question": "1", "cites": "0"}\n```',
    '{not json} then {"faithfulness": 0.9, "answers_question": 1.7, "cites": -2}',
])
def test_the_judges_reply_is_parsed_leniently(reply: str) -> None:
    scores, _comment = parse_judge_reply(reply)
    assert scores == {"faithfulness": 0.9, "answers_question": 1.0, "cites": 0.0}


@pytest.mark.parametrize("reply", [
    "LLM: the answer looks fine", '{"faithfulness": 0.9, "cites": 1}', '{"faithfulness": "high", '
    '"answers_question": 1, "cites": 1}', '{"faithfulness": NaN, "answers_question": 1, "cites": 1}', "",
])
def test_a_malformed_judge_reply_is_refused(reply: str) -> None:
    with pytest.raises(JudgeReplyError):
        parse_judge_reply(reply)


def test_the_offline_llm_grades_citations_grounding_and_coverage() -> None:
    offline = OfflineClient()
    passages = [passage("d2", "Parental leave")]
    cited, _ = judge(offline, "How long is parental leave?", passages,
                     "Parental leave is 18 weeks at full pay [1].\n\n*Sources*\n1. Parental leave")
    # "long" is the one word of the question (4+ letters) that the answer does not use.
    assert cited == {"faithfulness": 1.0, "answers_question": 0.67, "cites": 1.0}
    uncited, _ = judge(offline, "How long is parental leave?", passages, "Parental leave lasts eighteen weeks.")
    assert uncited["cites"] == 0.0 and uncited["faithfulness"] < 1.0 and uncited["answers_question"] == 0.67
    # A citation of a passage that was not given is no citation; with no passages there is nothing to cite.
    assert judge(offline, "How long?", passages, "Eighteen [7].")[0]["cites"] == 0.0
    assert judge(offline, "How long?", [], "I do not know.")[0]["cites"] == 1.0
    # Deterministic: the same input, the same grade.
    assert offline.complete(judge_messages("q?", passages, "a [1]"), system=JUDGE_RUBRIC).text == \
        offline.complete(judge_messages("q?", passages, "a [1]"), system=JUDGE_RUBRIC).text
    json.loads(offline.complete(judge_messages("q?", passages, "a"), system=JUDGE_RUBRIC).text)


def test_the_judge_grades_what_the_model_wrote_not_the_appended_sources() -> None:
    assert answer_body("Eighteen weeks [1].\n\n*Sources*\n1. Parental leave") == "Eighteen weeks [1]."


def test_totals_and_regressions() -> None:
    results = [{"recall": 1.0, "cites": 1.0, "error": None}, {"recall": 0.5, "cites": None, "error": "JudgeReplyError"}]
    totals = totals_of(results)
    assert totals == {"cases": 2, "errors": 1, "recall": 0.75, "cites": 1.0}
    assert regressions({"recall": 0.7, "cites": 1.0}, totals, 0.1) == []  # within the threshold
    assert regressions({"recall": 0.6, "cites": 1.0}, totals, 0.1) == [
        {"score": "recall", "before": 0.75, "after": 0.6}]
    assert regressions({"recall": 0.75}, totals, 0.1) == [{"score": "cites", "before": 1.0, "after": None}]


def test_a_fixed_audience_is_rebuilt_from_its_principals() -> None:
    viewer = Viewer("Alice@Example.com", groups=("sales", "sales@example.com"), domains=("partner.org",))
    assert viewer_of_principals(viewer.principals()).principals() == viewer.principals()
    assert viewer_of_principals(["anyone"]).principals() == ["anyone"]


def test_a_scope_is_a_user_or_an_audience_never_both() -> None:
    assert CaseScope(user_id="u-1").principals is None
    for bad in ({}, {"user_id": "u-1", "principals": [["anyone"]]}, {"principals": [[]]}, {"principals": []}):
        with pytest.raises(ValueError):
            CaseScope.model_validate(bad)
