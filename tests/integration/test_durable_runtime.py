"""Lambda durable functions under the local runtime (insightmesh_local.durable), on a fixture stack:
an execution started through research.launcher runs to completion with its checkpoint log on
disk; a wait suspends it and its timer re-invokes it; a worker killed mid-run is re-invoked and the
completed steps are replayed from the log, not run again; the endpoint refuses a browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from aws_durable_execution_sdk_python_testing.stores.sqlite import SQLiteExecutionStore

from insightmesh_local import local_auth
from insightmesh_local.runtime import LocalRuntime
from tests.helpers import free_port, wait_for

FIXTURE = Path(__file__).parents[1] / "fixtures" / "durable" / "template.yaml"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def step_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("step-logs")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, step_logs: Path):
    logs: list[str] = []
    rt = LocalRuntime(template_path=FIXTURE, port=free_port(), emulator_port=free_port(), stack_name="durable",
                      ttl_interval=3600, log=logs.append, data_dir=tmp_path_factory.mktemp("data"),
                      parameters={"StepLogDir": str(step_logs), "SlowStepSeconds": "60"})
    rt.start()
    rt.logs = logs  # type: ignore[attr-defined]
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def http(runtime: LocalRuntime):
    with httpx.Client(base_url=f"http://127.0.0.1:{runtime.port}", timeout=30,
                      headers={local_auth.HEADER: runtime.secret}) as client:
        yield client


def start(http: httpx.Client, run_id: str) -> None:
    """As the conversation worker does: a function calls research.launcher.start_execution."""
    answer = http.post("/_local/functions/StarterFunction/invoke", json={"run_id": run_id}).json()
    assert answer["ok"], answer
    assert answer["result"] == {"started": run_id}


def execution(http: httpx.Client, name: str) -> dict[str, Any] | None:
    response = http.get(f"/_local/durable/executions/{name}")
    return response.json() if response.status_code == 200 else None


def finished(http: httpx.Client, name: str, timeout: float = 90) -> dict[str, Any]:
    return wait_for(lambda: (e := execution(http, name)) and e["status"] != "RUNNING" and e,
                    timeout=timeout, interval=0.3, what=f"execution {name} to end")


def ran(step_logs: Path, run_id: str) -> list[str]:
    path = step_logs / f"{run_id}.log"
    return path.read_text().splitlines() if path.exists() else []


def operations(described: dict[str, Any]) -> dict[str, str]:
    return {op["Name"]: op["Status"] for op in described.get("operations", []) if op.get("Name")}


def test_an_execution_started_through_the_launcher_runs_to_completion(runtime, http, step_logs) -> None:
    start(http, "done-1")
    done = finished(http, "done-1")

    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["result"]) == {"steps": [1, 2, 3], "branches": ["L", "R"], "slow": "slow-done"}
    # The wait made the function return PENDING; its timer fired and the runtime invoked it again,
    # which replayed the steps before the wait from the log instead of running them again.
    assert done["invocations"] >= 2
    assert sorted(ran(step_logs, "done-1")) == sorted(["one", "two", "left", "right", "slow", "three"])
    steps = operations(done)
    assert steps["nap"] == "SUCCEEDED" and steps["researchers"] == "SUCCEEDED" and steps["three"] == "SUCCEEDED"
    # The checkpoint log is kept on disk, in the SDK testing package's SQLite store.
    assert runtime.durable.state_path.is_file()
    stored = SQLiteExecutionStore(runtime.durable.state_path).load(done["arn"])
    assert {op.name for op in stored.operations if op.name} >= {"one", "two", "nap", "slow", "three"}


def test_starting_the_same_run_twice_is_one_execution(http, step_logs) -> None:
    start(http, "twice-1")
    start(http, "twice-1")
    finished(http, "twice-1")
    named = [e for e in http.get("/_local/durable/executions").json()["executions"] if e["name"] == "twice-1"]
    assert len(named) == 1
    assert ran(step_logs, "twice-1").count("one") == 1


def test_a_killed_worker_is_reinvoked_and_completed_steps_are_not_run_again(runtime, http, step_logs) -> None:
    start(http, "kill-1")
    # Mid-run: "one", "two" and the branches are checkpointed, the slow step is running (60 s).
    wait_for(lambda: "slow" in ran(step_logs, "kill-1"), timeout=60, interval=0.2, what="the slow step to start")
    described = execution(http, "kill-1")
    assert described is not None and described["status"] == "RUNNING"
    assert {k: v for k, v in operations(described).items() if k in ("one", "two")} == \
        {"one": "SUCCEEDED", "two": "SUCCEEDED"}

    killed = http.post("/_local/durable/kill", json={"function": "StepsFunction"}).json()["killed"]
    assert killed["StepsFunction"], killed

    done = finished(http, "kill-1", timeout=60)
    assert done["status"] == "SUCCEEDED", done
    lines = ran(step_logs, "kill-1")
    # Completed steps came from the log; only the interrupted step ran again (at least once).
    assert [lines.count(name) for name in ("one", "two", "left", "right", "three")] == [1, 1, 1, 1, 1]
    assert lines.count("slow") == 2
    assert any("killed worker" in line for line in runtime.logs)


def test_the_durable_endpoint_refuses_a_browser_and_a_caller_without_the_secret(runtime) -> None:
    url = f"{runtime.durable.url}/2015-03-31/functions/StepsFunction/invocations"
    page = httpx.post(url, content=b"{}", headers={"Origin": "http://evil.example",
                                                    local_auth.HEADER: runtime.secret})
    assert page.status_code == 403
    assert httpx.post(url, content=b"{}").status_code == 401
    assert httpx.post(url, content=b"{}", headers={"X-Amz-Security-Token": "guess"}).status_code == 401
    rebinding = httpx.post(url, content=b"{}", headers={"Host": "attacker.example",
                                                        local_auth.HEADER: runtime.secret})
    assert rebinding.status_code == 403
    # With the secret (as boto3 sends it, the session token) and no Origin: served.
    unknown = httpx.post(url.replace("StepsFunction", "NoSuchFunction"), content=b"{}",
                         headers={"X-Amz-Security-Token": runtime.secret})
    assert unknown.status_code == 404 and unknown.headers["X-Amzn-ErrorType"] == "ResourceNotFoundException"
    control = httpx.post(f"http://127.0.0.1:{runtime.port}/_local/durable/kill", json={})
    assert control.status_code == 401


def test_stop_execution_stops_a_running_execution(runtime, http, step_logs, monkeypatch) -> None:
    from insightmesh import aws
    from insightmesh.research import launcher

    start(http, "kill-stop")
    wait_for(lambda: "slow" in ran(step_logs, "kill-stop"), timeout=60, interval=0.2, what="the slow step to start")
    # In this process, as the admin API would: the runtime's Lambda endpoint, with the run's secret.
    for key, value in {**runtime.durable.environment(), "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                       launcher.FUNCTION_ENV: f"{runtime.functions.find('StepsFunction').name}:live"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(aws, "_clients", {})
    launcher.stop_execution("kill-stop")

    stopped = finished(http, "kill-stop", timeout=30)
    assert stopped["status"] == "STOPPED"
    launcher.stop_execution("kill-stop")  # not running any more: nothing to do, no error


def test_an_execution_outlives_the_dev_server_and_resumes_from_its_log(tmp_path, step_logs) -> None:
    """The log is on disk: a run cut off by stopping `insightmesh dev` goes on when it starts again,
    replaying what completed."""
    data = tmp_path / "data"

    def runtime_on(data_dir: Path) -> LocalRuntime:
        rt = LocalRuntime(template_path=FIXTURE, port=free_port(), emulator_port=free_port(), stack_name="durable",
                          ttl_interval=3600, log=lines.append, data_dir=data_dir,
                          parameters={"StepLogDir": str(step_logs), "SlowStepSeconds": "60"})
        rt.start()
        return rt

    lines: list[str] = []
    first = runtime_on(data)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{first.port}", timeout=30,
                          headers={local_auth.HEADER: first.secret}) as client:
            start(client, "kill-restart")
            wait_for(lambda: "slow" in ran(step_logs, "kill-restart"), timeout=60, interval=0.2,
                     what="the slow step to start")
    finally:
        first.stop()  # mid-step: the worker is stopped with the runtime

    second = runtime_on(data)
    try:
        assert any("resumed 1 execution(s)" in line for line in lines), lines
        with httpx.Client(base_url=f"http://127.0.0.1:{second.port}", timeout=30,
                          headers={local_auth.HEADER: second.secret}) as client:
            done = finished(client, "kill-restart", timeout=60)
    finally:
        second.stop()
    assert done["status"] == "SUCCEEDED", done
    log = ran(step_logs, "kill-restart")
    assert [log.count(name) for name in ("one", "two", "left", "right", "three")] == [1, 1, 1, 1, 1]
    assert log.count("slow") == 2


def test_the_cli_lists_and_shows_executions(runtime, http, monkeypatch, capsys) -> None:
    from insightmesh_local import cli

    start(http, "cli-1")
    finished(http, "cli-1")
    monkeypatch.setenv(local_auth.ENVIRONMENT_VARIABLE, runtime.secret)
    capsys.readouterr()
    assert cli.main(["durable", "list", "--port", str(runtime.port)]) == 0
    listed = json.loads(capsys.readouterr().out)["executions"]
    assert "cli-1" in {e["name"] for e in listed}
    assert cli.main(["durable", "show", "cli-1", "--port", str(runtime.port)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "SUCCEEDED" and "nap" in {op.get("Name") for op in shown["operations"]}
    assert cli.main(["durable", "show", "no-such-run", "--port", str(runtime.port)]) != 0
