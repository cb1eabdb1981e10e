"""The fixtures every e2e module shares.

Each module starts one `insightmesh dev` (its ``dev`` fixture, with the environment that module
needs) and its tests share it; the stand-ins it talks to are here:

    @pytest.fixture(scope="module")
    def dev(sandbox, llm, dev_logs):
        with running(env={"SLACK_API_URL": sandbox.url, ...}, log_dir=dev_logs) as server:
            yield server

``http`` is an API client for the module's ``dev``. Servers take free ports and their own data
folders, so modules can run side by side (``pytest -n 2 --dist loadfile``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from insightmesh_local.slack_sandbox import SlackSandbox
from tests.e2e.dev_server import DevServer
from tests.standins.openai_server import OpenAIStandin
from tests.standins.openai_server import start as start_openai


@pytest.fixture(scope="session")
def dev_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the dev servers' logs go: pytest's own temporary folder, which it prunes."""
    return tmp_path_factory.mktemp("dev-logs")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SlackSandbox]:
    """The Slack Web API stand-in (the local runtime's own sandbox) on a free port."""
    with SlackSandbox(port=0) as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAIStandin]:
    """An OpenAI-compatible stand-in on a free port."""
    server, _base_url = start_openai(port=0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(dev: DevServer) -> Iterator[httpx.Client]:
    with dev.http() as client:
        yield client

