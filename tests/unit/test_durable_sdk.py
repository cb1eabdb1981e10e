"""The durable function contract, with the SDK's own testing package (in process, time skipped):
steps are checkpointed and replayed, not re-run, across the invocations a wait causes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from aws_durable_execution_sdk_python.execution import InvocationStatus
from aws_durable_execution_sdk_python_testing import DurableFunctionTestRunner

FIXTURE = Path(__file__).parents[1] / "fixtures" / "durable" / "functions" / "steps" / "handler.py"


def _steps_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("durable_steps_fixture", FIXTURE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STEP_LOG_DIR", str(tmp_path))
    handler = _steps_module().lambda_handler
    with DurableFunctionTestRunner(handler=handler, skip_time=True) as runner:
        yield runner, tmp_path


def test_steps_parallel_and_wait_complete_and_each_step_body_runs_once(run) -> None:
    runner, logs = run
    result = runner.run(input=json.dumps({"run_id": "sdk-1", "wait_seconds": 5}), execution_timeout=60)

    assert result.status is InvocationStatus.SUCCEEDED
    assert json.loads(result.result) == {"steps": [1, 2, 3], "branches": ["L", "R"], "slow": "slow-done"}
    # The wait suspended the function (PENDING) and it was invoked again: the replay took "one",
    # "two" and the parallel's branches from the checkpoint log instead of running them again.
    ran = (logs / "sdk-1.log").read_text().splitlines()
    assert sorted(ran) == sorted(["one", "two", "left", "right", "slow", "three"])
    assert result.get_step("one").result == "1"
    assert result.get_step("three").result == "3"
    assert result.get_wait("nap").status.value == "SUCCEEDED"
    assert [op.name for op in result.operations] == ["one", "two", "researchers", "nap", "slow", "three"]
