"""The built-in tools by name, as ``module:Class`` strings imported on first use (like
``insightmesh.jobs.registry``): a function that never calls ``read_url`` never imports its
HTML extractor."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from typing import Final

from insightmesh.tools.base import Tool

TOOLS: Final[dict[str, str]] = {
    "knowledge_search": "insightmesh.tools.knowledge_search:KnowledgeSearchTool",
    "web_search": "insightmesh.tools.web_search:WebSearchTool",
    "read_url": "insightmesh.tools.read_url:ReadUrlTool",
    "sec_filings": "insightmesh.tools.sec_filings:SecFilingsTool",
}

_instances: dict[str, Tool] = {}
_lock = threading.Lock()


def tool_names() -> tuple[str, ...]:
    """Every tool name admins may enable, sorted."""
    return tuple(sorted(TOOLS))


def get_tool(name: str) -> Tool:
    """The tool ``name`` (its module imported and the tool made on first use, then reused);
    KeyError for a name the registry does not hold."""
    with _lock:
        tool = _instances.get(name)
    if tool is not None:
        return tool
    module_name, _, class_name = TOOLS[name].partition(":")
    made: Tool = getattr(importlib.import_module(module_name), class_name)()
    with _lock:
        return _instances.setdefault(name, made)


def tools_named(names: Iterable[str]) -> list[Tool]:
    """The tools among ``names`` that the registry holds, in registry order (each once)."""
    wanted = set(names)
    return [get_tool(name) for name in TOOLS if name in wanted]
