"""The cost of a durable checkpoint per step, under the local runtime (insightmesh_local.durable).

A durable function (written to a temporary stack with this script) runs N steps that each return
a small value, then waits 1 s (so it returns PENDING and is invoked again), then returns. Figures:

* **checkpointed step**: the first invocation's loop of N ``context.step`` calls, per step: the
  step's START and SUCCEED checkpoints through boto3 to the runtime's Lambda endpoint on loopback,
  validated by the SDK testing package's checkpoint processor and stored in its SQLite store;
* **replayed step**: the second invocation's same loop, per step: the result comes from the log
  the invocation was given, no checkpoint is sent;
* **plain call**: the same N function calls without the SDK, per call;
* the execution's wall time, from the launcher's Invoke to SUCCEEDED (includes the 1 s wait,
  the re-invocation's cold start and N replays).

In AWS each checkpoint is an HTTPS call to the Lambda service instead of loopback, so expect more
there; the figure that carries over is how many calls a step costs (``--steps`` changes N).

    python benchmarks/durable_checkpoints.py [--steps 100] [--runs 3] [--store sqlite|memory]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  OutDir:
    Type: String
  Steps:
    Type: String
Resources:
  BenchFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: bench/
      Handler: handler.lambda_handler
      Runtime: python3.13
      Timeout: 300
      MemorySize: 512
      DurableConfig:
        ExecutionTimeout: 900
      Environment:
        Variables:
          OUT_DIR: !Ref OutDir
          STEPS: !Ref Steps
"""

HANDLER = '''\
import json
import os
import time

from aws_durable_execution_sdk_python import durable_execution
from aws_durable_execution_sdk_python.config import Duration


def work(i):
    return {"i": i, "ok": True}


@durable_execution
def lambda_handler(event, context):
    n = int(os.environ["STEPS"])
    started = time.perf_counter()
    for i in range(n):
        context.step(lambda _, i=i: work(i), name=f"s{i}")
    steps_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(n):
        work(i)
    plain_s = time.perf_counter() - started
    with open(os.path.join(os.environ["OUT_DIR"], event["run_id"] + ".jsonl"), "a") as out:
        out.write(json.dumps({"steps_s": steps_s, "plain_s": plain_s}) + "\\n")
    context.wait(Duration.from_seconds(1), name="nap")
    return {"steps": n}
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite",
                        help="the checkpoint log on disk (as `insightmesh dev` keeps it) or in memory")
    args = parser.parse_args()

    from insightmesh import aws
    from insightmesh.research import launcher
    from insightmesh_local.runtime import LocalRuntime

    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        (base / "bench").mkdir()
        (base / "bench" / "handler.py").write_text(HANDLER)
        (base / "template.yaml").write_text(TEMPLATE)
        out = base / "out"
        out.mkdir()
        class Runtime(LocalRuntime):
            def start_durable_service(self, template: Any, specs: list[Any], *, persistent: bool) -> None:
                super().start_durable_service(template, specs, persistent=args.store == "sqlite")

        runtime = Runtime(template_path=base / "template.yaml", port=free_port(), emulator_port=free_port(),
                               stack_name="bench", ttl_interval=3600, data_dir=base / "data",
                               parameters={"OutDir": str(out), "Steps": str(args.steps)}, log=lambda line: None)
        runtime.start()
        try:
            os.environ.update({**runtime.durable.environment(), "AWS_ACCESS_KEY_ID": "testing",
                               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": runtime.region,
                               launcher.FUNCTION_ENV: runtime.functions.find("BenchFunction").name})
            aws._clients.clear()
            first: list[float] = []
            replay: list[float] = []
            plain: list[float] = []
            walls: list[float] = []
            for run in range(args.runs):
                run_id = f"bench-{run}"
                started = time.perf_counter()
                launcher.start_execution(run_id)
                arn = wait_for_arn(runtime, run_id)
                runtime.durable.executor.wait_until_complete(arn, timeout=600)
                walls.append(time.perf_counter() - started)
                lines = [json.loads(line) for line in (out / f"{run_id}.jsonl").read_text().splitlines()]
                first.append(lines[0]["steps_s"] / args.steps)
                replay.append(lines[-1]["steps_s"] / args.steps)
                plain.append(lines[0]["plain_s"] / args.steps)
                status = runtime.durable.describe(arn, operations=False)["status"]
                assert status == "SUCCEEDED", status
        finally:
            runtime.stop()

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.3f} ms"

    print(f"durable checkpoints, local runtime ({args.store} store), {args.steps} steps x {args.runs} runs "
          "(median per step)")
    print(f"  checkpointed step (first run) : {ms(first)}")
    print(f"  replayed step (from the log)  : {ms(replay)}")
    print(f"  plain call                    : {statistics.median(plain) * 1e6:.2f} µs")
    print(f"  overhead per checkpointed step: {ms([f - p for f, p in zip(first, plain, strict=True)])}")
    print(f"  execution wall time (start -> SUCCEEDED, incl. the 1 s wait): "
          f"{statistics.median(walls):.2f} s")


def wait_for_arn(runtime: Any, name: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        arn = runtime.durable.find(name)
        if arn:
            return str(arn)
        time.sleep(0.05)
    raise SystemExit(f"execution {name} did not start")


if __name__ == "__main__":
    main()
