"""infra/template.yaml declares the research function as a durable function that the worker can
start and the admin API can stop (what research.launcher and the local runtime rely on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from insightmesh_local.durable import durable_functions, split_function_name
from insightmesh_local.functions import FunctionSpec
from insightmesh_local.template import Template, load_template

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "infra" / "template.yaml")


def _properties(template: Template, logical_id: str) -> dict[str, Any]:
    return template.resources[logical_id]["Properties"]


def _statements(properties: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in properties.get("Policies", []) if "Statement" in policy for s in policy["Statement"]]


def test_the_research_function_is_durable_on_a_runtime_that_supports_it(template: Template) -> None:
    research = _properties(template, "ResearchFunction")
    assert research["DurableConfig"] == {"ExecutionTimeout": 3600, "RetentionPeriodInDays": 14}
    assert research["Timeout"] == 900
    assert research["AutoPublishAlias"] == "live"
    assert research["Layers"] == [{"Ref": "ResearchLayer"}]
    # Durable functions run on python3.13+; the research function inherits the stack's runtime.
    assert research.get("Runtime", template.function_globals["Runtime"]) in ("python3.13", "python3.14")
    actions = {a for s in _statements(research) for a in s["Action"] if a.startswith("lambda:")}
    assert actions == {"lambda:CheckpointDurableExecution", "lambda:GetDurableExecutionState"}


def test_the_worker_starts_runs_and_the_admin_api_stops_them_by_the_alias(template: Template) -> None:
    for logical_id, needed in (("ConversationWorkerFunction", {"lambda:InvokeFunction"}),
                               ("AdminApiFunction", {"lambda:StopDurableExecution",
                                                     "lambda:ListDurableExecutionsByFunction"})):
        properties = _properties(template, logical_id)
        assert properties["Environment"]["Variables"]["RESEARCH_FUNCTION_NAME"] == \
            {"Fn::Sub": "${ResearchFunction}:live"}
        granted = [s for s in _statements(properties) if needed <= set(s["Action"])]
        assert granted, f"{logical_id} may not {needed}"
        assert {"Fn::Sub": "${ResearchFunction.Arn}:*"} in granted[0]["Resource"]


def test_the_local_runtime_finds_the_durable_function(template: Template) -> None:
    def spec(logical_id: str) -> FunctionSpec:
        return FunctionSpec(logical_id=logical_id, name=f"dev-{logical_id}", code_dir=ROOT, handler="h.h",
                            timeout=900, memory=1024, environment={}, events={})

    found = durable_functions(template, [spec("ResearchFunction"), spec("HealthFunction")])
    assert list(found) == ["dev-ResearchFunction"]
    assert (found["dev-ResearchFunction"].execution_timeout, found["dev-ResearchFunction"].retention_days) == (3600, 14)
    assert split_function_name("dev-ResearchFunction:live") == ("dev-ResearchFunction", "live")
    assert split_function_name("arn:aws:lambda:us-east-1:123456789012:function:dev-ResearchFunction:live") == \
        ("dev-ResearchFunction", "live")
    assert split_function_name("dev-ResearchFunction") == ("dev-ResearchFunction", None)
