"""The built-in tools by name, as ``module:Class`` strings imported on first use (like
``insightmesh.jobs.registry``): a function that never calls ``read_url`` never imports its
HTML extractor."""

from __future__ import annotations

from typing import Final

TOOLS: Final[dict[str, str]] = {
    "knowledge_search": "insightmesh.tools.knowledge_search:KnowledgeSearchTool",
    "web_search": "insightmesh.tools.web_search:WebSearchTool",
    "read_url": "insightmesh.tools.read_url:ReadUrlTool",
    "sec_filings": "insightmesh.tools.sec_filings:SecFilingsTool",
}
