"""Tracing off costs no import: loading the request path — the conversation worker, the slack_ingress
handler (its resolver built), the LLM adapters, the tool loop, retrieval, the Slack client, the
research workflow — and logging a line in a fresh interpreter never imports ``opentelemetry``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

CHILD = """
import importlib.util, json, sys
sys.path[:0] = [{layer!r}]
import insightmesh.conversation.worker
import insightmesh.llm.openai, insightmesh.llm.bedrock, insightmesh.llm.offline
import insightmesh.tools.loop, insightmesh.knowledge.retrieval, insightmesh.slack.client
import insightmesh.research.workflow
spec = importlib.util.spec_from_file_location("slack_ingress_handler", {ingress!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from insightmesh import tracing
from insightmesh.observability import get_logger
with tracing.span("work") as span:
    get_logger("off").info("a line")
print(json.dumps({{"enabled": tracing.enabled(), "handler": hasattr(module, "lambda_handler"),
                   "otel": sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry")}}))
"""

CONTROL = """
import json, sys
sys.path[:0] = [{layer!r}]
from insightmesh import tracing
with tracing.span("work"):
    pass
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry")))
"""


def test_the_request_path_imports_no_opentelemetry_when_tracing_is_off() -> None:
    script = CHILD.format(layer=str(ROOT / "layers" / "common" / "python"),
                          ingress=str(ROOT / "functions" / "slack_ingress" / "handler.py"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update({"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "ENVIRONMENT": "development",
                "POWERTOOLS_TRACE_DISABLED": "true", "RATE_LIMIT_TABLE": "rate-limit"})

    completed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                               timeout=120, cwd=ROOT, check=False)

    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {"enabled": False, "handler": True, "otel": []}


def test_with_an_endpoint_the_sdk_is_loaded_on_first_span() -> None:
    """The control: the same detection sees opentelemetry once tracing is on (so the test above can fail)."""
    script = CONTROL.format(layer=str(ROOT / "layers" / "common" / "python"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_SAMPLER": "always_off"})

    completed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                               timeout=120, cwd=ROOT, check=False)

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "opentelemetry.sdk.trace" in json.loads(completed.stdout.strip().splitlines()[-1])
