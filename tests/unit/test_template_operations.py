"""infra/template.yaml, operations: every function's log group is kept LogRetentionDays, and the
dashboard's body is a JSON document that covers every function, the API, the queues, the LLM's
tokens and cost, the breakers and the nightly eval."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from insightmesh_local.template import Template, load_template

TEMPLATE = Path(__file__).parents[2] / "infra" / "template.yaml"
# The values CloudWatch Logs accepts for a retention (PutRetentionPolicy's retentionInDays).
CLOUDWATCH_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                             2192, 2557, 2922, 3288, 3653]
PSEUDO = {"AWS::Region": "eu-west-1", "AWS::StackName": "insightmesh", "AWS::AccountId": "123456789012"}
_SUB_VAR = re.compile(r"\$\{([^!}][^}]*)\}")


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(TEMPLATE)


def _functions(template: Template) -> dict[str, dict[str, Any]]:
    return template.of_type("AWS::Serverless::Function")


def test_every_function_logs_to_its_own_group_kept_log_retention_days(template):
    groups = template.of_type("AWS::Logs::LogGroup")
    names = set()
    assert len(_functions(template)) >= 11  # ResearchFunction (durable) and BootstrapFunction included
    for logical_id, function in _functions(template).items():
        group_ref = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
        assert isinstance(group_ref, dict) and group_ref.get("Ref") in groups, f"{logical_id} has no log group"
        group = groups[group_ref["Ref"]]["Properties"]
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}, logical_id
        name = group["LogGroupName"]["Fn::Sub"]
        # Not the group Lambda creates by itself on a first invocation (a stack resource of that
        # name fails with AlreadyExists on an existing stack or when Bootstrap runs during a deploy).
        assert name != f"/aws/lambda/${{{logical_id}}}" and "${AWS::StackName}" in name, name
        names.add(name)
    assert len(names) == len(_functions(template))


def test_log_retention_days_is_a_parameter_of_the_values_cloudwatch_accepts(template):
    parameter = template.parameters["LogRetentionDays"]
    assert parameter["Default"] == 30
    assert parameter["AllowedValues"] == CLOUDWATCH_RETENTION_DAYS


def _dashboard_body(template: Template) -> tuple[dict[str, Any], set[str]]:
    """The dashboard's body with each ${Name} or ${Name.Attribute} replaced by a stand-in; the names."""
    [dashboard] = template.of_type("AWS::CloudWatch::Dashboard").values()
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(text, str)
    referenced: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in PSEUDO:
            return PSEUDO[key]
        referenced.add(key.split(".", 1)[0])
        return f"physical-{key.replace('.', '-')}"

    return json.loads(_SUB_VAR.sub(replace, text)), referenced


def _metrics(body: dict[str, Any]) -> list[list[Any]]:
    return [row for widget in body["widgets"] for row in widget["properties"].get("metrics", [])]


def _expressions(body: dict[str, Any]) -> list[str]:
    return [item["expression"] for row in _metrics(body) for item in row
            if isinstance(item, dict) and "expression" in item]


def test_the_dashboard_body_is_json_and_names_only_resources_of_the_stack(template):
    body, referenced = _dashboard_body(template)
    assert referenced <= set(template.resources), referenced - set(template.resources)
    for widget in body["widgets"]:
        assert widget["x"] + widget["width"] <= 24
        assert widget["properties"]["region"] == PSEUDO["AWS::Region"]


def test_the_dashboard_shows_every_function_invocations_errors_and_duration_p50_p99(template):
    body, _ = _dashboard_body(template)
    seen: dict[str, set[str]] = {}
    for row in _metrics(body):
        if row[:1] == ["AWS/Lambda"]:
            options = row[4] if len(row) > 4 else {}
            seen.setdefault(row[3], set()).add(f"{row[1]}:{options.get('stat', '')}")
    for logical_id in _functions(template):
        stats = seen.get(f"physical-{logical_id}", set())
        assert {"Invocations:", "Errors:", "Duration:p50", "Duration:p99"} <= stats, logical_id


def test_the_dashboard_shows_the_api_the_queues_and_the_dead_letter_queues(template):
    body, _ = _dashboard_body(template)
    rows = {(row[0], row[1], row[3]) for row in _metrics(body) if isinstance(row[0], str)}
    api = "physical-HttpApi"
    assert {("AWS/ApiGateway", "Count", api), ("AWS/ApiGateway", "5xx", api),
            ("AWS/ApiGateway", "Latency", api)} <= rows
    assert {
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "physical-ConversationQueue-QueueName"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "physical-JobQueue-QueueName"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "physical-ConversationDeadLetterQueue-QueueName"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "physical-JobDeadLetterQueue-QueueName"),
    } <= rows


@pytest.mark.parametrize("metric", ["LlmInputTokens", "LlmOutputTokens", "LlmCostUSD", "BreakerOpen",
                                    "EvalRegressed"])
def test_the_emf_metrics_are_searched_so_every_model_and_dependency_shows(template, metric):
    body, _ = _dashboard_body(template)
    wanted = f"Namespace=\"InsightMesh\" MetricName=\"{metric}\""
    assert any(e.startswith("SEARCH('") and wanted in e for e in _expressions(body)), metric


def test_the_recent_errors_widget_reads_every_function_log_group(template):
    body, _ = _dashboard_body(template)
    [logs] = [w for w in body["widgets"] if w["type"] == "log"]
    sources = set(re.findall(r"SOURCE '([^']+)'", logs["properties"]["query"]))
    groups = {f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for f in _functions(template).values()}
    assert sources == {f"physical-{group}" for group in groups}
