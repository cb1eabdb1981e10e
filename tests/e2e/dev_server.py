"""Starting `insightmesh dev` as a separate process, as a user would, for the e2e tests.

``running(...)`` is the usual way in (tests/e2e/conftest.py builds each module's server with it):
a ready server on free ports with its own data folder, stopped at the end. ``DevServer`` stays
available for the tests that drive start and stop themselves.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from insightmesh_local import local_auth
from insightmesh_local import slack_signing as slack
from tests.helpers import free_port, wait_for

ROOT = Path(__file__).parents[2]
CLI = [sys.executable, "-m", "insightmesh_local.cli"]
# The e2e servers' control secret: `insightmesh dev` takes it from the environment, as a script that
# starts it would, and the CLI runs of the tests (env=_env()) present it the same way.
LOCAL_TOKEN = secrets.token_urlsafe(24)
# How long a start may take on a loaded machine (a bound, not an expectation: ~5 s is usual).
READY_TIMEOUT = 90.0
# A free port can be taken by another process between the probe and the server's bind (tests run
# in parallel): such a start is retried on new ports.
START_ATTEMPTS = 3


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env[local_auth.ENVIRONMENT_VARIABLE] = LOCAL_TOKEN
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One `insightmesh` command as a user types it, from the project folder, with the e2e secret."""
    return subprocess.run([*CLI, *args], cwd=ROOT, env=_env() if env is None else env, capture_output=True,
                          text=True, timeout=timeout)


class DevServer:
    def __init__(self, *extra: str, env: dict[str, str] | None = None, log_dir: Path | None = None) -> None:
        self.extra, self.env = extra, env
        self.port, self.emulator_port = free_port(), free_port()
        # Each server gets its own knowledge base folder unless the test names one: the embedded
        # store is locked to one process, and tests run servers side by side (and next to `make dev`).
        self.data_dir = None if "--data-dir" in extra else tempfile.mkdtemp(prefix="insightmesh-data-")
        if self.data_dir is not None:
            extra = (*extra, "--data-dir", self.data_dir)
        folder = log_dir if log_dir is not None else Path(os.environ.get("TMPDIR", "/tmp"))
        self.log_path = folder / f"insightmesh-dev-{self.port}.log"
        self.log = self.log_path.open("w+")
        self.process = subprocess.Popen(
            [*CLI, "dev", "--port", str(self.port), "--emulator-port", str(self.emulator_port), *extra],
            cwd=ROOT, env={**_env(), **(env or {})}, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    @property
    def secret(self) -> str:
        """What /_local/* wants in X-InsightMesh-Local-Token."""
        return LOCAL_TOKEN

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self) -> None:
        wait_for(lambda: "InsightMesh dev ready" in self.output() or self.process.poll() is not None,
                 timeout=READY_TIMEOUT, what="dev ready")
        assert self.process.poll() is None, self.output()

    def lost_a_port_race(self) -> bool:
        """The process ended because a port it was given was taken meanwhile."""
        if self.process.poll() is None:
            return False
        output = self.output()
        return "is in use (pass --" in output or "Address already in use" in output

    def stop(self) -> float:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)
        elapsed = time.monotonic() - started
        self.close()
        return elapsed

    def close(self) -> None:
        self.log.close()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- talking to it ----------------------------------------------------------------------------------

    def http(self, **options: Any) -> httpx.Client:
        """An HTTP client for the API (the caller closes it: ``with dev.http() as http:``)."""
        return httpx.Client(base_url=self.url, **{"timeout": 20, **options})

    def cli(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """An `insightmesh` command aimed at this server (``--port``)."""
        return run_cli(*args, "--port", str(self.port), env=env, timeout=timeout)

    def aws(self, service: str) -> Any:
        """A boto3 client for the server's embedded AWS emulator."""
        import boto3

        return boto3.client(service, region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{self.emulator_port}",
                            aws_access_key_id="testing", aws_secret_access_key="testing")


def start(*extra: str, env: dict[str, str] | None = None, log_dir: Path | None = None) -> DevServer:
    """A ready server; a start that lost a port to another process is retried on new ports."""
    for attempt in range(1, START_ATTEMPTS + 1):
        server = DevServer(*extra, env=env, log_dir=log_dir)
        try:
            server.wait_ready()
            return server
        except AssertionError:
            lost = server.lost_a_port_race()
            shutdown(server)
            if not lost or attempt == START_ATTEMPTS:
                raise
        except BaseException:
            shutdown(server)
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def slack_llm_env(sandbox: Any, llm: Any, *, secret: str, bot_token: str = "xoxb-e2e", **extra: str) -> dict[str, str]:
    """The env of an ``insightmesh dev`` that takes Slack events signed with ``secret``, answers
    through the Slack sandbox and asks the OpenAI stand-in ``llm``; ``extra`` adds or overrides."""
    return {"SLACK_SIGNING_SECRET": secret, "SLACK_BOT_TOKEN": bot_token, "SLACK_API_URL": sandbox.url,
            "LLM_PROVIDER": "openai", "LLM_BASE_URL": llm.base_url, "LLM_API_KEY": "sk-e2e-key-0000000000",
            "LLM_MODEL": "e2e-model", **extra}


def post_event(http: httpx.Client, secret: str, event: dict[str, Any], *, headers: dict[str, str] | None = None,
               timestamp: int | None = None) -> httpx.Response:
    """A Slack event callback, signed with ``secret`` as Slack signs it, posted to /slack/events."""
    body = slack.json_body(slack.event_callback(slack.DEFAULT_TEAM_ID, slack.DEFAULT_APP_ID, event))
    return http.post("/slack/events", content=body,
                     headers={**slack.signed_headers(secret, body, "application/json", timestamp), **(headers or {})})


def shutdown(server: DevServer) -> None:
    if server.process.poll() is None:
        server.stop()
    else:
        server.close()


@contextmanager
def running(*extra: str, env: dict[str, str] | None = None, log_dir: Path | None = None) -> Iterator[DevServer]:
    """``insightmesh dev`` with ``extra`` arguments and ``env`` on top of the e2e environment, ready."""
    server = start(*extra, env=env, log_dir=log_dir)
    try:
        yield server
    finally:
        shutdown(server)
