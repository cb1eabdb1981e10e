"""The clock every context reads: :func:`utc_now`, an aware UTC ``datetime``.

One function so that a test can replace "now" in the module that reads it
(``monkeypatch.setattr(module, "utc_now", ...)``), and so that no context imports another's
models only to learn the time.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, in UTC (timezone-aware)."""
    return datetime.now(UTC)


__all__ = ["utc_now"]
