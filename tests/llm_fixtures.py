"""The OpenAI-compatible stand-in (tests/standins/openai_server.py) and a client pointed at it: one set-up
for the modules that test the OpenAI-compatible LLM client over loopback HTTP.

``from tests.llm_fixtures import openai_client, openai_standin  # noqa: F401`` in a test module, then ask
for ``standin`` (a started stand-in; the breaker registry is empty before and after, the shared HTTP
clients closed after) and build clients with ``openai_client(standin, ...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from insightmesh import resilience
from insightmesh.llm.openai import OpenAICompatibleClient, close_http_clients
from insightmesh.resilience import CircuitBreaker, Timeouts
from tests.standins.openai_server import OpenAIStandin, start


@pytest.fixture(name="standin")
def openai_standin() -> Iterator[OpenAIStandin]:
    server, _ = start()
    resilience._breakers.clear()
    try:
        yield server
    finally:
        server.stop()
        close_http_clients()
        resilience._breakers.clear()


def openai_client(standin: OpenAIStandin, *, breaker_name: str = "llm:test", failure_threshold: int = 3,
                  **options: Any) -> OpenAICompatibleClient:
    """A ``gpt-4o-mini`` client for ``standin``: short timeouts, no real sleeps between retries, and its
    own breaker (``breaker_name``, opening after ``failure_threshold`` failures). ``options`` are
    OpenAICompatibleClient's keyword arguments and replace these defaults (a ``breaker`` given is used
    instead of the test breaker)."""
    settings: dict[str, Any] = {
        "base_url": standin.base_url,
        "model": "gpt-4o-mini",
        "timeouts": Timeouts(connect=1.0, read=2.0),
        "breaker": CircuitBreaker(breaker_name, failure_threshold=failure_threshold, cool_down=30.0),
        "sleep": lambda _s: None,
    }
    settings.update(options)
    return OpenAICompatibleClient(**settings)
