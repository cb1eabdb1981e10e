"""Browser tests need Debian's Chromium (Playwright's own browser download is never used)."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SKIP_REASON = "Chromium not found at /usr/bin/chromium: the browser tests are skipped (apt-get install chromium)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "tests/browser" in item.nodeid:
            item.add_marker(skip)
