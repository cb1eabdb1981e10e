"""`insightmesh eval --cases FILE` against a running `insightmesh dev` (offline LLM): the command
reaches the dev server's tables and the knowledge base it serves, scores a case whose document was
ingested with `insightmesh ingest`, and compares a second run with the first."""

from __future__ import annotations

import json

import pytest

from insightmesh_local.ingest_cli import document_id_for
from tests.e2e.dev_server import running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def dev(sandbox, tmp_path_factory, dev_logs):
    data = tmp_path_factory.mktemp("insightmesh-data")
    with running("--data-dir", str(data), env={"SLACK_SIGNING_SECRET": "e2e-eval-secret",
                                               "SLACK_BOT_TOKEN": "xoxb-e2e-eval", "SLACK_API_URL": sandbox.url,
                                               "LLM_PROVIDER": "offline"}, log_dir=dev_logs) as server:
        yield server


def test_eval_scores_cases_from_a_file_against_the_running_system(dev, tmp_path):
    folder = tmp_path / "handbook"
    folder.mkdir()
    policy = folder / "refund-policy.md"
    policy.write_text("# Refund policy\n\nCustomers may ask for a refund within 45 days of purchase.\n")
    (folder / "travel.txt").write_text("Travel\n\nEconomy class is the rule for flights under six hours.\n")
    ingested = dev.cli("ingest", str(folder), timeout=120)
    assert ingested.returncode == 0, ingested.stderr
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"cases": [
        {"question": "How many days do customers have to ask for a refund?", "scope": {"principals": [["anyone"]]},
         "expected_ids": [document_id_for(policy.resolve())], "notes": "45 days"}]}))

    first = dev.cli("eval", "--cases", str(cases), timeout=120)
    assert first.returncode == 0, first.stderr
    header, case, total, verdict = first.stdout.strip().splitlines()
    assert header.split()[:7] == ["case", "recall", "hit@k", "mrr", "faithful", "answers", "cites"]
    assert case.split()[:4] == ["case-1", "1.00", "1.00", "1.00"] and case.split()[6] == "1.00"
    assert total.startswith("total") and "0 of 1 case(s) failed" in total
    assert verdict == "no earlier run to compare with: this run is the baseline"

    second = dev.cli("eval", "--cases", str(cases), "--json", timeout=120)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["regressed"] == [] and summary["baseline_run_id"] is not None
    assert summary["totals"] == summary["baseline_totals"]  # the same system, the same scores
