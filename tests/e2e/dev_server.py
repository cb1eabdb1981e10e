"""Starting `insightmesh dev` as a separate process, as a user would, for the e2e tests."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from insightmesh_local import local_auth
from tests.helpers import free_port, wait_for

ROOT = Path(__file__).parents[2]
CLI = [sys.executable, "-m", "insightmesh_local.cli"]
# The e2e servers' control secret: `insightmesh dev` takes it from the environment, as a script that
# starts it would, and the CLI runs of the tests (env=_env()) present it the same way.
LOCAL_TOKEN = secrets.token_urlsafe(24)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env[local_auth.ENVIRONMENT_VARIABLE] = LOCAL_TOKEN
    return env


class DevServer:
    def __init__(self, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port, self.emulator_port = free_port(), free_port()
        # Each server gets its own knowledge base folder unless the test names one: the embedded
        # store is locked to one process, and tests run servers side by side (and next to `make dev`).
        self.data_dir = None if "--data-dir" in extra else tempfile.mkdtemp(prefix="insightmesh-data-")
        if self.data_dir is not None:
            extra = (*extra, "--data-dir", self.data_dir)
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"insightmesh-dev-{self.port}.log"
        self.log = self.log_path.open("w+")
        self.process = subprocess.Popen(
            [*CLI, "dev", "--port", str(self.port), "--emulator-port", str(self.emulator_port), *extra],
            cwd=ROOT, env={**_env(), **(env or {})}, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    @property
    def secret(self) -> str:
        """What /_local/* wants in X-InsightMesh-Local-Token."""
        return LOCAL_TOKEN

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self) -> None:
        wait_for(lambda: "InsightMesh dev ready" in self.output() or self.process.poll() is not None,
                 timeout=30, what="dev ready")
        assert self.process.poll() is None, self.output()

    def stop(self) -> float:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)
        elapsed = time.monotonic() - started
        self.log.close()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return elapsed


