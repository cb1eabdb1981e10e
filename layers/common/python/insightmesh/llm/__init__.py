"""The LLM bounded context: one port (``LlmClient``), three adapters, usage accounting.

```python
from insightmesh.llm import ChatMessage, LlmError, get_llm_client, record_usage

completion = get_llm_client().complete([ChatMessage.user("What is MEDDIC?")], system="Be brief.")
record_usage(agent="help", user_id="U123", usage=completion.usage)
# on LlmError: post error.user_message in the thread
```

Adapters: ``OfflineClient`` (deterministic, no network), ``OpenAICompatibleClient`` (OpenAI,
Ollama, vLLM, LiteLLM, Anthropic's compatible endpoint; httpx) and ``BedrockClient`` (Converse;
boto3). The adapters and the usage table are imported on first access, so importing this package
costs neither httpx, boto3 nor pynamodb.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from insightmesh.llm.base import (
    ChatMessage,
    Completion,
    LlmClient,
    LlmConfigurationError,
    LlmError,
    LlmRequestError,
    LlmUnavailableError,
    Role,
    Usage,
)
from insightmesh.llm.factory import LlmSettings, get_llm_client, load_llm_settings
from insightmesh.llm.offline import OfflineClient

if TYPE_CHECKING:
    from insightmesh.llm.bedrock import BedrockClient
    from insightmesh.llm.openai import OpenAICompatibleClient
    from insightmesh.llm.usage import UsageRecord, record_usage, usage_for

_LAZY = {
    "BedrockClient": "insightmesh.llm.bedrock",
    "OpenAICompatibleClient": "insightmesh.llm.openai",
    "UsageRecord": "insightmesh.llm.usage",
    "record_usage": "insightmesh.llm.usage",
    "usage_for": "insightmesh.llm.usage",
}

__all__ = [
    "BedrockClient",
    "ChatMessage",
    "Completion",
    "LlmClient",
    "LlmConfigurationError",
    "LlmError",
    "LlmRequestError",
    "LlmSettings",
    "LlmUnavailableError",
    "OfflineClient",
    "OpenAICompatibleClient",
    "Role",
    "Usage",
    "UsageRecord",
    "get_llm_client",
    "load_llm_settings",
    "record_usage",
    "usage_for",
]


def __getattr__(name: str) -> Any:
    # Not cached in this module's globals: a test that reloads insightmesh.llm.usage (to rebind
    # the table from the environment) is seen by the next ``insightmesh.llm.UsageRecord``.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
