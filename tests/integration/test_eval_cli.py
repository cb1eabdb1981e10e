"""`insightmesh eval`: the answer-quality check at the terminal, in-process against moto tables, an
embedded Qdrant and the prompt-following model on loopback (``--here``): a table of per-case scores
and totals, exit 1 when a bad prompt regressed the totals, exit 2 for a bad cases file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from insightmesh.agents.builtin import assistant
from insightmesh.evaluation import cases
from insightmesh.knowledge import answers
from insightmesh_local.cli import main
from tests.integration.test_answer_quality_eval import CITE_INSTRUCTION
from tests.integration.test_answer_quality_eval import model as model  # the fixture
from tests.knowledge_corpus import generate_corpus
from tests.standins.openai_server import OpenAIStandin


@pytest.fixture
def cases_file(knowledge: dict[str, str], tmp_path: Path) -> Path:
    from insightmesh.knowledge.pipeline import ingest_documents

    documents, questions = generate_corpus(distractors=5)
    assert ingest_documents(documents).failed == 0
    lines = ["cases:"]
    for question in questions[:3]:
        lines += [f"  - question: {json.dumps(question.text)}", "    scope: {principals: [[anyone]]}",
                  f"    expected_ids: [{json.dumps(question.document_id)}]"]
    path = tmp_path / "handbook.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_prints_scores_and_exits_1_on_a_regression(cases_file: Path, model: OpenAIStandin,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--here", "--cases", str(cases_file)]) == 0
    out = capsys.readouterr().out
    header, *rows = out.strip().splitlines()
    assert header.split()[:7] == ["case", "recall", "hit@k", "mrr", "faithful", "answers", "cites"]
    assert [row.split()[0] for row in rows[:4]] == ["case-1", "case-2", "case-3", "total"]
    assert rows[3].split()[1:3] == ["1.00", "1.00"] and rows[3].split()[6] == "1.00"  # recall, hit@k, cites
    assert rows[4] == "no earlier run to compare with: this run is the baseline"

    original = answers.knowledge_prompt
    monkeypatch.setattr(assistant, "knowledge_prompt",
                        lambda passages: original(passages).replace(CITE_INSTRUCTION, "mention the documents"))
    assert main(["eval", "--here", "--cases", str(cases_file), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["totals"]["cites"] == 0.0 and [r["score"] for r in summary["regressed"]] == ["cites"]
    assert len(summary["results"]) == 3
    # Recorded like the job's runs: each result under the run's id, and its LLM calls under its agent.
    assert len(cases.run_results(summary["eval_run_id"])) == 3
    from insightmesh.llm.usage import UsageCall

    counted = list(UsageCall.query(f"request#{summary['eval_run_id']}"))
    assert len(counted) == 6 and {(c.agent, c.user_id) for c in counted} == {("answer_quality_eval", None)}


def test_a_bad_cases_file_is_a_usage_error(knowledge: dict[str, str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([{"question": "where?", "scope": {"user_id": "u-1", "principals": [["anyone"]]}}]))
    assert main(["eval", "--here", "--cases", str(path)]) == 2
    assert "case 1" in capsys.readouterr().err
