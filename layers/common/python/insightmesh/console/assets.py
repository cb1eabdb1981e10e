"""The console's static files, fingerprinted by content: ``console.css`` is served as
``/console/static/console.<12 hex of its SHA-256>.css`` with a year-long immutable Cache-Control,
so a deploy that changes a file changes its URL and nothing stale is ever used."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_PREFIX: Final = "/console/static/"
IMMUTABLE: Final = "public, max-age=31536000, immutable"
CONTENT_TYPES: Final = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                        ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Asset:
    name: str  # console.css
    url: str  # /console/static/console.0123456789ab.css
    body: str
    content_type: str


@cache
def assets() -> dict[str, Asset]:
    """Every static file by its source name (read and hashed once per process)."""
    found: dict[str, Asset] = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.suffix not in CONTENT_TYPES:
            continue
        body = path.read_text(encoding="utf-8")
        digest = hashlib.sha256(body.encode()).hexdigest()[:12]
        found[path.name] = Asset(path.name, f"{STATIC_PREFIX}{path.stem}.{digest}{path.suffix}", body,
                                 CONTENT_TYPES[path.suffix])
    return found


def url_for(name: str) -> str:
    return assets()[name].url


def by_fingerprinted_name(name: str) -> Asset | None:
    """The asset ``/console/static/<name>`` names, only under its current fingerprint."""
    return next((asset for asset in assets().values() if asset.url == STATIC_PREFIX + name), None)


__all__ = ["IMMUTABLE", "Asset", "assets", "by_fingerprinted_name", "url_for"]
