"""Each function's cold start: handler import and module-level init, in fresh interpreters.

Prints the median, min and max over N runs per function (default 7). The interpreter's own
start-up is excluded: each child process measures only `import handler` from inside itself.
Target on the 2-core dev machine: health ≤ 400 ms.

    python benchmarks/cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "local"))

from insightmesh_local.stack import FUNCTION_TYPES  # noqa: E402
from insightmesh_local.template import load_template, merge_globals  # noqa: E402

CHILD = """
import json, sys, time
sys.path.insert(0, {code_dir!r})
started = time.perf_counter()
import importlib
module = importlib.import_module({module!r})
getattr(module, {function!r})
print(json.dumps({{"init_ms": (time.perf_counter() - started) * 1000}}))
"""

ENV = {
    "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench", "POWERTOOLS_TRACE_DISABLED": "true", "ENVIRONMENT": "development",
    "RATE_LIMIT_TABLE": "bench-rate-limit", "PYTHONDONTWRITEBYTECODE": "0",
}


def measure(code_dir: Path, handler: str, runs: int) -> list[float]:
    module, _, function = handler.rpartition(".")
    script = CHILD.format(code_dir=str(code_dir), module=module, function=function)
    samples = []
    for _ in range(runs):
        env = {"PATH": "/usr/bin:/bin", **ENV}
        output = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                check=True, cwd=code_dir, timeout=60).stdout
        samples.append(json.loads(output.strip().splitlines()[-1])["init_ms"])
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    template = load_template(ROOT / "infra" / "template.yaml")
    print(f"cold start (import + init of handler.py), {args.runs} fresh interpreters each, "
          f"python {sys.version.split()[0]}")
    print(f"{'function':<24}{'median ms':>12}{'min ms':>10}{'max ms':>10}")
    for logical_id, resource in template.of_type(*FUNCTION_TYPES).items():
        properties = merge_globals(template.function_globals, resource["Properties"])
        code_dir = (template.base_dir / properties["CodeUri"]).resolve()
        samples = measure(code_dir, properties["Handler"], args.runs)
        print(f"{logical_id:<24}{statistics.median(samples):>12.1f}{min(samples):>10.1f}{max(samples):>10.1f}")


if __name__ == "__main__":
    main()
