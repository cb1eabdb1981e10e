"""How long `insightmesh dev` takes to be ready, from process start, over N runs (default 5).

Two figures per run: until it prints "ready" (emulator up, every resource created, routes
served), and until GET /health first answers 200 (which adds the health function's cold start).
Target on the 2-core dev machine: ready ≤ 5 s.

    python benchmarks/local_runtime.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def one_run() -> tuple[float, float, float]:
    port, emulator = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "insightmesh_local.cli", "dev", "--port", str(port),
                                    "--emulator-port", str(emulator)], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            ready = first_health = 0.0
            deadline = started + 60
            while time.perf_counter() < deadline and not ready:
                log.seek(0)
                if "InsightMesh dev ready" in log.read():
                    ready = time.perf_counter() - started
                time.sleep(0.02)
            while time.perf_counter() < deadline and not first_health:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                        if response.status == 200:
                            first_health = time.perf_counter() - started
                except OSError:
                    time.sleep(0.02)
        finally:
            stop_started = time.perf_counter()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
            stopped = time.perf_counter() - stop_started
    if not ready or not first_health:
        raise SystemExit("insightmesh dev did not become ready within 60 s")
    return ready, first_health, stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    print(f"insightmesh dev, {args.runs} runs, python {sys.version.split()[0]}")
    for label, index in (("to 'ready' line", 0), ("to first /health 200", 1), ("SIGTERM to exit", 2)):
        values = [run[index] for run in runs]
        print(f"{label:<22} median {statistics.median(values):6.2f} s   min {min(values):6.2f} s   "
              f"max {max(values):6.2f} s")


if __name__ == "__main__":
    main()
