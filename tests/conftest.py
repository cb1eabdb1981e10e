"""Shared fixtures: every test runs against fake AWS credentials and never reaches real AWS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

# Every variable the shared Settings model reads, cleared so the host environment cannot leak in.
SETTINGS_VARIABLES = (
    "ENVIRONMENT",
    "SERVICE_NAME",
    "APP_VERSION",
    "LOG_LEVEL",
    "ALLOWED_ORIGINS",
    "OAUTH_INSECURE_TRANSPORT",
    "LLM_PROVIDER",
    "MAX_REQUEST_BYTES",
    "HEALTH_CHECK_TIMEOUT_SECONDS",
    "RATE_LIMIT_PER_MINUTE",
    "RATE_LIMIT_TABLE",
    "SECRET_KEY",
    "SECRET_KEY_SECRET_ID",
    "SECRET_KEY_PARAMETER",
    # The knowledge base (insightmesh.knowledge.settings): a developer's exported QDRANT_URL or
    # EMBEDDING_PROVIDER must not leak into the tests.
    "QDRANT_URL",
    "QDRANT_API_KEY",
    "QDRANT_PATH",
    "QDRANT_COLLECTION",
    "EMBEDDING_PROVIDER",
    "EMBEDDING_BASE_URL",
    "EMBEDDING_MODEL",
    "EMBEDDING_DIMENSIONS",
    "EMBEDDING_API_KEY",
    # The web tools (insightmesh.tools.settings): an exported provider, key or allow-list must not leak in.
    "WEB_SEARCH_PROVIDER",
    "WEB_SEARCH_URL",
    "WEB_SEARCH_API_KEY",
    "READ_URL_ALLOW_HOSTS",
    "READ_URL_CONTACT",
    "SEC_USER_AGENT",
    "SEC_EDGAR_URL",
)


@pytest.fixture(autouse=True)
def aws_test_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and region, no custom endpoint, no profile: nothing can reach real AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture(autouse=True)
def _fresh_aws_clients() -> Iterator[None]:
    """insightmesh.aws caches one boto3 client per process; tests start and end without any."""
    from insightmesh import aws

    aws._clients.clear()
    yield
    aws._clients.clear()


@pytest.fixture(autouse=True)
def _fresh_settings_and_secrets() -> Iterator[None]:
    """Settings and fetched secrets are cached per process; each test starts from the environment."""
    from aws_lambda_powertools.utilities import parameters

    from insightmesh.config import get_settings

    get_settings.cache_clear()
    parameters.clear_caches()
    yield
    get_settings.cache_clear()
    parameters.clear_caches()


@pytest.fixture(autouse=True)
def _fresh_knowledge_presence() -> Iterator[None]:
    """The worker remembers whether the knowledge base has documents; each test starts unknowing."""
    from insightmesh.conversation import attachments, audience
    from insightmesh.slack import conversations

    for module in (attachments, audience, conversations):
        module.reset_for_tests()
    yield
    for module in (attachments, audience, conversations):
        module.reset_for_tests()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """How `make test` shares the tests between its workers (pytest-xdist, ``--dist loadfile``).

    Each test file is one unit of work, so a module's fixtures are built once; the e2e and browser
    modules (each starts `insightmesh dev`) are one unit between them. They run one after another,
    as without xdist, so one `insightmesh dev` at a time shares the machine with the other worker's
    tests. xdist hands out the largest units first, so the e2e unit starts at once and the other
    files fill in beside it.
    """
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesWithTheE2eTierAsOne(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]  # the test file, relative to the project
            return "tests/e2e" if path.startswith(("tests/e2e/", "tests/browser/")) else path

    return FilesWithTheE2eTierAsOne(config, log)
